#include "data_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <new>
#include <random>
#include <bit>

#include "allocator_check.hpp"
#include "crash_point.hpp"
#include "file_writer.hpp"
#include "crc32c.hpp"
#include "hash.hpp"
#include "hash_index.hpp"
#include "kvstore/error.hpp"
#include "latest_index.hpp"
#include "lock_ofd.hpp"

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kMaxGrowStep = std::uint64_t{1} << 30;
constexpr std::uint64_t kGeometricLimit = std::uint64_t{64} << 20;
// Past it, an eighth of the file at a time: a store that reclaims space as it
// goes settles at its size plus at most one step of unused room.
constexpr std::uint64_t kLinearStep = std::uint64_t{16} << 20;

}  // namespace

// ---------------------------------------------------------------- open/create

DataFile DataFile::create(const std::string& path, std::uint64_t size, std::uint64_t max_size) {
  size = round_up(std::max(size, kMinValidSize), kPageSize);
  DataFile d;
  d.path_ = path;
  d.writable_ = true;
  d.max_size_ = max_size;
  d.fd_ = Fd(::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (!d.fd_) throw_errno(path, "create", errno);
  try {
    allocate_file(d.fd_.get(), size, path);
    d.map_ = Mapping(d.fd_.get(), size, true, path);
    d.format(size);
  } catch (...) {
    ::unlink(path.c_str());
    throw;
  }
  return d;
}

DataFile DataFile::create_image(const std::string& path, std::uint64_t size, std::uint64_t max_size) {
  size = round_up(std::max(size, kMinValidSize), kPageSize);
  DataFile d;
  d.path_ = path;
  d.writable_ = true;
  d.max_size_ = max_size;
  d.map_ = Mapping::anonymous(size, path);
  d.format(size);
  return d;
}

void DataFile::format(std::uint64_t size) {
  auto* h = new (map_.base()) FileHeader{};
  SegmentBuffer segment(bip::create_only, map_.base() + kHeaderSize, size - kHeaderSize);
  void* r = segment.allocate(root_bytes(kFormatVersion), std::nothrow);
  void* t = segment.allocate(HashIndex::kInitialSlots * sizeof(Slot), std::nothrow);
  if (r == nullptr || t == nullptr) throw Error(Errc::invalid_argument, path_ + ": initial size too small");
  std::memset(t, 0, HashIndex::kInitialSlots * sizeof(Slot));
  auto* root = new (r) Root{};
  new (root + 1) IndexGrowth{};
  root->magic = kRootMagic;
  root->table = static_cast<Slot*>(t);
  root->slot_count = HashIndex::kInitialSlots;
  root_offset_ = static_cast<std::uint64_t>(static_cast<char*>(r) - map_.base());
  std::random_device rd;
  seed_ = (std::uint64_t{rd()} << 32) ^ rd();
  init_header(*h, size, root_offset_, seed_);
}

DataFile DataFile::open(const std::string& path, bool writable, std::uint64_t max_size) {
  DataFile d;
  d.path_ = path;
  d.max_size_ = max_size;
  d.writable_ = writable;
  d.fd_ = Fd(::open(path.c_str(), (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC));
  if (!d.fd_ && writable && (errno == EACCES || errno == EROFS || errno == EPERM)) {
    d.writable_ = false;
    d.fd_ = Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  }
  if (!d.fd_) {
    if (errno == EISDIR) throw Error(Errc::not_a_store, path + ": is a directory");
    throw_errno(path, "open", errno);
  }
  d.map_opened();
  // The root is validated by the caller once it knows the file needs no
  // recovery: after a power cut it may point at pages that never reached the
  // disk, and recovery reads only what the chunks prove.
  return d;
}

DataFile DataFile::open_again(const DataFile& f) {
  DataFile d;
  d.path_ = f.path_;
  d.max_size_ = f.max_size_;
  d.writable_ = false;
  // A duplicate shares f's open file description, and with it f's lock on
  // the open byte (mark_open): the lock lasts while either is open.
  d.fd_ = Fd(::fcntl(f.fd_.get(), F_DUPFD_CLOEXEC, 0));
  if (!d.fd_) throw_errno(f.path_, "open again", errno);
  d.map_opened();
  return d;
}

void DataFile::map_opened() {
  mark_open();
  const HeaderCheck hc = read_and_validate_header(fd_.get(), path_);
  map_ = Mapping(fd_.get(), hc.file_size, writable_, path_);
  root_offset_ = hc.root_offset;
  seed_ = hc.hash_seed;
  short_file_ = hc.short_file;
}

namespace {
constexpr off_t kOpenByte = 0;  // FORMAT.md "Lock file": the data file's only lock
}  // namespace

void DataFile::mark_open() const noexcept {
  // Failing (a file system without OFD locks) costs only who pays the release.
  (void)ofd_lock(fd_.get(), F_RDLCK, kOpenByte);
}

bool DataFile::open_elsewhere() const noexcept { return ofd_held_elsewhere(fd_.get(), kOpenByte); }

void DataFile::validate_root() const {
  const Root& r = root();
  if (r.magic != kRootMagic) throw Error(Errc::corrupt, path_ + ": bad root", root_offset_);
  const std::uint64_t n = r.slot_count;
  if (n == 0 || (n & (n - 1)) != 0 || n > map_.size() / sizeof(Slot) || r.keys >= n) {
    throw Error(Errc::corrupt, path_ + ": bad index size " + std::to_string(n), root_offset_);
  }
  if (resolve(r.table, n * sizeof(Slot)) == nullptr) {
    throw Error(Errc::corrupt, path_ + ": index missing", root_offset_);
  }
  (void)resolve(r.first_chunk, sizeof(ChunkHeader));
  (void)resolve(r.last_chunk, sizeof(ChunkHeader));
  if (const IndexGrowth* g = growth()) {
    const bool bad = g->shadow == nullptr ? g->progress != 0
                                          : g->progress > 3 * n || resolve(g->shadow, 2 * n * sizeof(Slot)) == nullptr;
    if (bad) throw Error(Errc::corrupt, path_ + ": bad index growth state", root_offset_);
  }
}

void DataFile::adopt_size() {
  const std::uint64_t want = header().file_size.load(std::memory_order_acquire);
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) throw_errno(path_, "stat", errno);
  if (want < kMinValidSize || want % kPageSize != 0 || want > static_cast<std::uint64_t>(st.st_size)) {
    throw Error(Errc::corrupt, path_ + ": published size " + std::to_string(want) +
                                   " does not match the file (" + std::to_string(st.st_size) + ")");
  }
  if (want != map_.size()) map_.resize(want, path_);
  validate_root();
}

// ---------------------------------------------------------------- records

std::uint64_t DataFile::append(std::string_view key, std::string_view value, RecordType type,
                               std::uint8_t flags) {
  const ChunkLog::Appended at = chunks().append(key, value, type, flags);
  note_dirty(at.chunk, sizeof(ChunkHeader));
  note_dirty(at.record, record_size(key.size(), value.size()));
  return at.record;
}

// ---------------------------------------------------------------- space

std::uint64_t DataFile::grown_size(std::uint64_t at_least) const noexcept {
  const std::uint64_t old = map_.size();
  // Double while small (few grows from 64 KiB), then add an eighth: less
  // unused disk behind a large store, and a shorter fallocate for the put
  // that happens to grow it.
  std::uint64_t step = old < kGeometricLimit ? old : std::max(kLinearStep, old / 8);
  step = std::min(std::max(step, at_least + 64 * 1024), std::max(kMaxGrowStep, at_least + 64 * 1024));
  return round_up(old + step, kPageSize);
}

void DataFile::grow(std::uint64_t at_least) {
  const std::uint64_t old = map_.size();
  std::uint64_t want = grown_size(at_least);
  if (want > max_size_) {
    want = max_size_ / kPageSize * kPageSize;
    if (want < old + at_least + 4096) {
      throw Error(Errc::store_full, path_ + ": would pass the maximum file size of " +
                                        std::to_string(max_size_) + " bytes");
    }
  }
  if (!map_.is_anonymous()) allocate_file(fd_.get(), want, path_);
  crash_point("grow.extended");
  map_.resize(want, path_);
  const std::uint64_t segment_end = kHeaderSize + segment()->get_size();
  segment()->grow(want - segment_end);
  crash_point("grow.segment");
  FileHeader& h = header();
  h.file_size.store(want, std::memory_order_release);
  h.generation.fetch_add(1, std::memory_order_acq_rel);
  ++h.grows;
  full_sync_ = true;  // the new size must reach the disk too (Sync::always)
}

std::uint64_t DataFile::free_bytes() const noexcept { return segment()->get_free_memory(); }

void* DataFile::allocate(std::uint64_t bytes) {
  const AllocatorPhase phase(*this);
  for (;;) {
    if (void* p = segment()->allocate(bytes, std::nothrow)) return p;
    grow(bytes + 1024);
  }
}

void DataFile::reserve_records(std::uint64_t bytes) {
  if (chunks().reserve(bytes, [this](std::uint64_t n) { return allocate(n); })) {
    full_sync_ = true;  // the links must reach the disk with the first record (Sync::always)
    chunk_filled_ = true;
  }
}

// ---------------------------------------------------------------- index

void DataFile::bad_index() const {
  // Every caller walks slot_count slots from the table: both come from the
  // file, so the size is checked before it sizes the bounds check (recovery
  // reads the index of a file whose root it has not validated).
  const Root& r = root();
  const std::uint64_t n = r.slot_count;
  if (n == 0 || (n & (n - 1)) != 0 || n > map_.size() / sizeof(Slot)) {
    throw Error(Errc::corrupt, path_ + ": bad index size " + std::to_string(n), root_offset_);
  }
  if (resolve(r.table, n * sizeof(Slot)) == nullptr) throw Error(Errc::corrupt, path_ + ": index missing", root_offset_);
  throw Error(Errc::corrupt, path_ + ": bad index", root_offset_);  // not reached: resolve threw
}

std::uint64_t DataFile::probe(std::string_view key, std::uint64_t hash, bool& found, RecordView& rec) const {
  // The record compared is the one found: callers view it only once.
  const std::uint64_t i = index().probe(
      hash,
      [&](std::uint64_t offset) {
        rec = record_at(offset);
        return same_key(rec.key, key);
      },
      found);
  if (i == HashIndex::kFull) throw Error(Errc::corrupt, path_ + ": index has no free slot", root_offset_);
  return i;
}

bool DataFile::find(std::string_view key, RecordView& out) const {
  // The record viewed once: every instruction here sits between a get's
  // cache misses and the next get's. 840 of them a hit kept the CPU from
  // overlapping one get's misses with the next's (a loop of gets over 1M
  // keys took 3.7x as long as the same lookups in a bare table).
  bool found = false;
  (void)probe(key, key_hash(key, seed_), found, out);
  if (!found) return false;
  if (out.type != RecordType::put || !record_intact(out)) {
    throw Error(Errc::corrupt, path_ + ": record at " + hex_offset(out.offset) + " fails its checksum; run kvtool check",
                out.offset);
  }
  return true;
}

void DataFile::reserve_slots(std::uint64_t extra_keys) {
  (void)index();  // checks slot_count, which slots_for() below doubles
  const Root& r = root();
  // A damaged key count that passed validate_root and then wrapped below zero
  // would make the doubling below overflow (n to 0: an endless loop).
  if (r.keys >= r.slot_count) {
    throw Error(Errc::corrupt, path_ + ": key count " + std::to_string(r.keys) + " does not fit the index of " +
                                   std::to_string(r.slot_count) + " slots; run kvtool check",
                root_offset_);
  }
  if (growth() != nullptr) {
    if (HashIndex::fits(r.keys + extra_keys, r.slot_count)) {
      // A step only while a doubling is under way or due (grow_index_a_step's
      // own first test, here to spare most puts the call).
      if (growth()->shadow != nullptr || (r.keys + extra_keys) * 8 > r.slot_count * 5) {
        grow_index_a_step(r.keys + extra_keys);
      }
      return;
    }
    // More keys at once than the steps can keep up with (a large batch): the
    // index doubles (or more) all at once, below.
    drop_index_growth();
  }
  const Root& r_now = root();
  const std::uint64_t n = HashIndex::slots_for(r_now.keys + extra_keys, r_now.slot_count);
  if (n == r_now.slot_count) return;
  auto* fresh = static_cast<Slot*>(allocate(n * sizeof(Slot)));
  // The zeroing is most of a doubling's time: the first touch of each page
  // of the new table (at 1M slots, 44 of 60 ms even after the populate).
  map_.populate_writable(static_cast<std::uint64_t>(reinterpret_cast<char*>(fresh) - map_.base()),
                         n * sizeof(Slot));
  std::memset(fresh, 0, n * sizeof(Slot));
  Root& root_now = root();
  const HashIndex old = index();
  old.rehash_into(HashIndex(fresh, n));
  crash_point("rehash.filled");
  const AllocatorPhase phase(*this);
  root_now.table = fresh;
  root_now.slot_count = n;
  segment()->deallocate(&old[0]);
}

void DataFile::index_put(std::uint64_t hash, std::uint64_t record_offset, const RecordView& r) {
  bool found = false;
  RecordView old{};  // the record the slot found holds
  const std::uint64_t i = probe(r.key, hash, found, old);
  Slot& s = index()[i];
  Root& root_now = root();
  const std::uint64_t was = found ? s.offset : 0;
  if (found) {
    root_now.dead_bytes += old.size;
    root_now.value_bytes -= old.value.size();
  } else {
    s.hash = hash;
    ++root_now.keys;
    root_now.key_bytes += r.key.size();
  }
  root_now.value_bytes += r.value.size();
  s.offset = record_offset;
  mirror_slot(i, hash, was, record_offset);
}

bool DataFile::index_erase(std::string_view key, std::uint64_t hash) {
  bool found = false;
  const std::uint64_t slot = probe(key, hash, found);
  if (found) remove_slot(slot);
  return found;
}

void DataFile::remove_slot(std::uint64_t i) {
  const HashIndex ix = index();
  Root& r = root();
  const RecordView old = record_at(ix[i].offset);
  r.dead_bytes += old.size;
  r.key_bytes -= old.key.size();
  r.value_bytes -= old.value.size();
  if (r.keys != 0) --r.keys;  // a damaged count must not wrap: see reserve_slots
  crash_point("erase.counted");
  const Slot gone = ix[i];
  mirror_slot(i, gone.hash, gone.offset, 0);
  ix.remove(i, [&](std::uint64_t from, std::uint64_t to) { mirror_move(from, to, ix[to]); });
}

// ---------------------------------------------------------------- mutations

bool DataFile::put(std::string_view key, std::string_view value, std::uint8_t flags) {
  if (key.size() > kMaxKeySize || value.size() > kMaxValueSize) {
    throw Error(Errc::invalid_argument, path_ + ": key or value too large");
  }
  const std::uint64_t hash = key_hash(key, seed_);
  reserve_slots(1);
  reserve_records(record_size(key.size(), value.size()));
  const std::uint64_t offset = append(key, value, RecordType::put, flags);
  const std::uint64_t keys_before = root().keys;
  index_put(hash, offset, record_at(offset));
  crash_point("put.indexed");
  return root().keys == keys_before;
}

bool DataFile::erase(std::string_view key, std::uint8_t flags) {
  const std::uint64_t hash = key_hash(key, seed_);
  bool found = false;
  const std::uint64_t slot = probe(key, hash, found);
  if (!found) return false;
  const std::uint64_t size = record_size(key.size(), 0);
  reserve_records(size);  // may grow the file, never moves the index: `slot` stays right
  append(key, {}, RecordType::erase, flags);
  root().dead_bytes += size;  // a tombstone is dead from birth; compaction drops it
  remove_slot(slot);
  return true;
}

void DataFile::copy_in(const RecordView& r) {
  if (r.type == RecordType::erase) {
    (void)erase(r.key, 0);
  } else {
    (void)put(r.key, r.value, 0);
  }
}

void DataFile::apply(const std::vector<Op>& ops) {
  if (ops.empty()) return;
  std::uint64_t bytes = 0;
  for (const Op& op : ops) {
    if (op.key.size() > kMaxKeySize || op.value.size() > kMaxValueSize) {
      throw Error(Errc::invalid_argument, path_ + ": key or value too large");
    }
    bytes += record_size(op.key.size(), op.erase ? 0 : op.value.size());
  }
  // Make all the room first, so that nothing below can fail half way.
  reserve_slots(ops.size());
  reserve_records(bytes);
  std::vector<std::uint64_t> offsets;
  offsets.reserve(ops.size());
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const auto flags = static_cast<std::uint8_t>(kInBatch | (i == 0 ? kBatchBegin : 0) |
                                                 (i + 1 == ops.size() ? kBatchEnd : 0));
    offsets.push_back(append(ops[i].key, ops[i].erase ? std::string_view{} : ops[i].value,
                             ops[i].erase ? RecordType::erase : RecordType::put, flags));
    if (i == ops.size() / 2) crash_point("batch.half");
  }
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const std::uint64_t hash = key_hash(ops[i].key, seed_);
    if (ops[i].erase) {
      root().dead_bytes += record_size(ops[i].key.size(), 0);
      index_erase(ops[i].key, hash);
    } else {
      index_put(hash, offsets[i], record_at(offsets[i]));
    }
  }
}

void DataFile::sync_all() const {
  // fdatasync alone: on Linux a store through a shared mapping dirties the
  // page cache when it faults, and fdatasync writes every dirty page of the
  // file. An msync(MS_SYNC) of the whole mapping before it did the same work
  // with a device flush of its own (4-8 ms here), inside a compaction's lock.
  if (::fdatasync(fd_.get()) != 0) throw_errno(path_, "fdatasync", errno);
}

void DataFile::mark_durable() noexcept {
  // Written after the sync it describes, and not synced itself: the header
  // page reaches the disk with some later sync or writeback, and the claim is
  // true whenever it lands. A mark behind the truth only makes recovery after
  // a power cut more lenient about the bytes in between (never lossy: it still
  // keeps every intact record up to the first tear).
  RecordsEnd end;
  try {
    end = chunks().end();
  } catch (const Error&) {
    return;  // no trustworthy chunk to name: the old mark stays
  }
  FileHeader& h = header();
  if (h.durable_chunks != end.chunks || h.durable_used != end.used || !durable_mark(h).valid) {
    set_durable_mark(h, end.chunks, end.used);
  }
  reseal(h);  // a clean file changed by a compaction's catch-up, too
}

void DataFile::note_dirty(std::uint64_t offset, std::uint64_t length) noexcept {
  if (tail_end_ == 0) {
    tail_begin_ = offset;
    tail_end_ = offset + length;
  } else {
    tail_begin_ = std::min(tail_begin_, offset);
    tail_end_ = std::max(tail_end_, offset + length);
  }
}

void DataFile::sync_tail() {
  if (full_sync_) {
    sync_all();
  } else if (tail_end_ != 0) {
    map_.sync(tail_begin_, tail_end_ - tail_begin_, path_);
  }
  mark_durable();
  full_sync_ = false;
  tail_begin_ = 0;
  tail_end_ = 0;
}

std::vector<FileRange> DataFile::unsynced_records(const DurableMark& mark, std::uint64_t budget,
                                                  RecordsEnd& reached, std::uint64_t leave) const {
  // Records before the durable mark are on disk already; the rest lies in the
  // mark's chunk and those after it. Far less than sync_all(), which also
  // writes every index page the puts since the last sync dirtied (recovery
  // after a power cut rebuilds the index from the records: it needs none).
  std::vector<FileRange> ranges;
  reached = {mark.chunks, mark.used};
  std::uint64_t bytes = 0;
  std::uint64_t until = UINT64_MAX;  // the first chunk left alone
  if (leave != 0) {
    const std::uint64_t count = chunks().end().chunks;
    until = count - std::min(leave, count);
  }
  chunks().for_each([&](const ChunkHeader& c) {
    if (c.ordinal + 1 < mark.chunks) return true;
    if (bytes >= budget || c.ordinal >= until) return false;
    // The header too: `used` and the link moved.
    const std::uint64_t used = c.used.load(std::memory_order_relaxed);
    ranges.push_back({static_cast<std::uint64_t>(reinterpret_cast<const char*>(&c) - map_.base()),
                      sizeof(ChunkHeader) + used});
    bytes += used - (c.ordinal + 1 == mark.chunks ? std::min(used, mark.used) : 0);
    reached = {c.ordinal + 1, used};
    return true;
  });
  return ranges;
}

void DataFile::sync_records(std::uint64_t budget) {
  // Chunk by chunk, moving the mark as it goes: after a bulk load the first
  // call may find a hundred MiB unsynced, and no single write may wait for all.
  FileHeader& h = header();
  const DurableMark mark = durable_mark(h);
  if (!mark.valid) {
    sync_all();
    mark_durable();
    return;
  }
  RecordsEnd reached;
  // The same write-back and flush as a sync queued for after the lock
  // (reclaim.cpp); the header page with it holds the published size (a chunk
  // may lie in a grown part).
  if (const int err = write_back_and_flush(fd_.get(), unsynced_records(mark, budget, reached)); err != 0) {
    throw_errno(path_, "sync", err);
  }
  if (reached.chunks != mark.chunks || reached.used != mark.used) set_durable_mark(h, reached.chunks, reached.used);
}

// ---------------------------------------------------------------- reads

std::vector<std::uint64_t> DataFile::live_offsets() const { return index().live_offsets(); }

}  // namespace kvstore::detail
