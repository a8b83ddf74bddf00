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

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kMinChunk = 16 * 1024;
constexpr std::uint64_t kMaxChunk = 8 * 1024 * 1024;
constexpr std::uint64_t kMaxGrowStep = std::uint64_t{1} << 30;
constexpr std::uint64_t kGeometricLimit = std::uint64_t{64} << 20;

constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t to) { return (v + to - 1) / to * to; }

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
  void* r = segment.allocate(sizeof(Root), std::nothrow);
  void* t = segment.allocate(HashIndex::kInitialSlots * sizeof(Slot), std::nothrow);
  if (r == nullptr || t == nullptr) throw Error(Errc::invalid_argument, path_ + ": initial size too small");
  std::memset(t, 0, HashIndex::kInitialSlots * sizeof(Slot));
  auto* root = new (r) Root{};
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
  const HeaderCheck hc = read_and_validate_header(d.fd_.get(), path);
  d.map_ = Mapping(d.fd_.get(), hc.file_size, d.writable_, path);
  d.root_offset_ = hc.root_offset;
  d.seed_ = hc.hash_seed;
  d.short_file_ = hc.short_file;
  // The root is validated by the caller once it knows the file needs no
  // recovery: after a power cut it may point at pages that never reached the
  // disk, and recovery reads only what the chunks prove.
  return d;
}

template <class T>
T* DataFile::resolve(const bip::offset_ptr<T>& p, std::uint64_t bytes) const {
  T* raw = p.get();
  if (raw == nullptr) return nullptr;
  const auto a = reinterpret_cast<std::uintptr_t>(raw);          // NOLINT
  const auto b = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
  const std::uint64_t size = map_.size();
  if (a < b + kHeaderSize || a - b > size || bytes > size - (a - b) || a % alignof(T) != 0) {
    throw Error(Errc::corrupt, path_ + ": pointer leaves the file (at " + hex_offset(a - b) + ")",
                a >= b ? a - b : kNoOffset);
  }
  return raw;
}

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
}

std::string DataFile::without_path(const Error& e) const {
  const std::string m = e.what();
  return m.rfind(path_ + ": ", 0) == 0 ? m.substr(path_.size() + 2) : m;
}

std::string DataFile::problem_for_writes(bool last_chunk_at_end) const {
  // The blocks writes rely on: the root and the index (freed when it
  // doubles), the last chunk (appended to), and every other chunk (were one
  // in free space, a new block would overwrite records the index points at).
  // Appends go to root.last_chunk and a new chunk is linked after it: were it
  // not the end of the list, its records would replay out of order, and the
  // new link would cut off the chunks after it (lost to the next recovery).
  // One read per chunk, on the page the allocator walk reads anyway.
  std::vector<HeldBlock> held{{root_offset_, sizeof(Root), "root"}};
  try {
    const auto base = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
    held.push_back({reinterpret_cast<std::uintptr_t>(&index()[0]) - base, root().slot_count * sizeof(Slot), "index"});  // NOLINT
    const ChunkHeader* tail = nullptr;
    scan_chunk_list([&](const ChunkHeader& c) {
      tail = &c;
      held.push_back({reinterpret_cast<std::uintptr_t>(&c) - base, sizeof(ChunkHeader) + c.capacity, "chunk"});  // NOLINT
    });
    if (last_chunk_at_end && tail != resolve(root().last_chunk, sizeof(ChunkHeader))) {
      return "the last chunk is not the end of the chunk list";
    }
  } catch (const Error& e) {
    return without_path(e);
  }
  return check_allocator(map_.base(), map_.size(), std::move(held));
}

std::string DataFile::chunk_tail_problem() const {
  try {
    const ChunkHeader* tail = nullptr;
    scan_chunk_list([&](const ChunkHeader& c) { tail = &c; });
    if (tail != resolve(root().last_chunk, sizeof(ChunkHeader))) {
      return "the last chunk is not the end of the chunk list";
    }
  } catch (const Error& e) {
    return without_path(e);
  }
  return {};
}

void DataFile::verify_for_writes() const {
  if (const std::string p = problem_for_writes(true); !p.empty()) {
    throw Error(Errc::corrupt, path_ + ": " + p + "; run kvtool check --repair");
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

RecordView DataFile::record_at(std::uint64_t offset) const {
  return read_record(map_.base(), map_.size(), offset, path_);
}

std::uint64_t DataFile::append(std::string_view key, std::string_view value, RecordType type,
                               std::uint8_t flags) {
  ChunkHeader* c = last_chunk();
  const std::uint64_t size = record_size(key.size(), value.size());
  const std::uint64_t used = c->used.load(std::memory_order_relaxed);
  char* data = reinterpret_cast<char*>(c) + sizeof(ChunkHeader);  // NOLINT
  char* p = data + used;
  RecordHeader h{};
  h.type = static_cast<std::uint8_t>(type);
  h.flags = flags;
  h.key_size = static_cast<std::uint32_t>(key.size());
  h.value_size = static_cast<std::uint32_t>(value.size());
  h.crc = record_crc(h, key, value);
  std::memcpy(p, &h, sizeof h);
  crash_point("append.partial");
  if (!key.empty()) std::memcpy(p + sizeof h, key.data(), key.size());
  if (!value.empty()) std::memcpy(p + sizeof h + key.size(), value.data(), value.size());
  const std::uint64_t pad = size - sizeof h - key.size() - value.size();
  if (pad != 0) std::memset(p + sizeof h + key.size() + value.size(), 0, pad);
  // The record counts (for recovery) only once it is complete.
  c->used.store(used + size, std::memory_order_release);
  crash_point("append.done");
  root().record_bytes += size;
  const auto offset = static_cast<std::uint64_t>(p - map_.base());
  note_dirty(static_cast<std::uint64_t>(reinterpret_cast<char*>(c) - map_.base()),  // NOLINT
             sizeof(ChunkHeader));
  note_dirty(offset, size);
  return offset;
}

// ---------------------------------------------------------------- space

void DataFile::grow(std::uint64_t at_least) {
  const std::uint64_t old = map_.size();
  // Double while small (few grows from 64 KiB), then add a quarter: less
  // unused disk behind a large store, and a shorter fallocate for the put
  // that happens to grow it.
  std::uint64_t step = old < kGeometricLimit ? old : std::max(kGeometricLimit, old / 4);
  step = std::min(std::max(step, at_least + 64 * 1024), std::max(kMaxGrowStep, at_least + 64 * 1024));
  std::uint64_t want = round_up(old + step, kPageSize);
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

// Marks the header while the segment allocator (or a grow) is being changed:
// a writer that dies inside must be recovered by a full rebuild. Restores the
// phase before it, also when the change fails cleanly.
class DataFile::AllocatorPhase {
 public:
  explicit AllocatorPhase(DataFile& f) : f_(f), before_(f.header().writing.load(std::memory_order_relaxed)) {
    if (before_ != kIdle) f_.header().writing.store(kAllocator, std::memory_order_relaxed);
  }
  AllocatorPhase(const AllocatorPhase&) = delete;
  AllocatorPhase& operator=(const AllocatorPhase&) = delete;
  ~AllocatorPhase() {
    if (before_ != kIdle) f_.header().writing.store(before_, std::memory_order_relaxed);
  }

 private:
  DataFile& f_;
  std::uint32_t before_;
};

void* DataFile::allocate(std::uint64_t bytes) {
  const AllocatorPhase phase(*this);
  for (;;) {
    if (void* p = segment()->allocate(bytes, std::nothrow)) return p;
    grow(bytes + 1024);
  }
}

void DataFile::reserve_records(std::uint64_t bytes) {
  Root& r = root();
  if (r.last_chunk != nullptr) {
    const ChunkHeader* last = last_chunk();
    if (last->capacity - last->used.load(std::memory_order_relaxed) >= bytes) return;
  }
  std::uint64_t capacity = std::clamp<std::uint64_t>(r.record_bytes / 8, kMinChunk, kMaxChunk);
  capacity = std::max(capacity, round_up(bytes, kRecordAlign));
  void* p = nullptr;
  try {
    p = allocate(sizeof(ChunkHeader) + capacity);
  } catch (const Error& e) {
    if (e.code() != Errc::store_full || capacity == bytes) throw;
    capacity = round_up(bytes, kRecordAlign);
    p = allocate(sizeof(ChunkHeader) + capacity);
  }
  crash_point("chunk.allocated");
  Root& root_now = root();  // allocate() may have remapped
  auto* c = new (p) ChunkHeader{};
  c->magic = kChunkMagic;
  c->capacity = capacity;
  c->used.store(0, std::memory_order_relaxed);
  c->next = nullptr;
  ChunkHeader* last = resolve(root_now.last_chunk, sizeof(ChunkHeader));
  c->ordinal = last != nullptr ? last->ordinal + 1 : 0;
  if (last != nullptr) {
    last->next = c;
  } else {
    root_now.first_chunk = c;
  }
  root_now.last_chunk = c;
  ++root_now.chunks;
  full_sync_ = true;  // the links must reach the disk with the first record (Sync::always)
}

// ---------------------------------------------------------------- index

HashIndex DataFile::index() const {
  // Every caller walks slot_count slots from here: both come from the file,
  // so the size is checked before it sizes the bounds check (recovery reads
  // the index of a file whose root it has not validated).
  const Root& r = root();
  const std::uint64_t n = r.slot_count;
  if (n == 0 || (n & (n - 1)) != 0 || n > map_.size() / sizeof(Slot)) {
    throw Error(Errc::corrupt, path_ + ": bad index size " + std::to_string(n), root_offset_);
  }
  Slot* t = resolve(r.table, n * sizeof(Slot));
  if (t == nullptr) throw Error(Errc::corrupt, path_ + ": index missing", root_offset_);
  return {t, n};
}

std::uint64_t DataFile::probe(std::string_view key, std::uint64_t hash, bool& found) const {
  const std::uint64_t i =
      index().probe(hash, [&](std::uint64_t offset) { return record_at(offset).key == key; }, found);
  if (i == HashIndex::kFull) throw Error(Errc::corrupt, path_ + ": index has no free slot", root_offset_);
  return i;
}

bool DataFile::find(std::string_view key, RecordView& out) const {
  bool found = false;
  const std::uint64_t i = probe(key, key_hash(key, seed_), found);
  if (!found) return false;
  out = record_at(index()[i].offset);
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
  const std::uint64_t n = HashIndex::slots_for(r.keys + extra_keys, r.slot_count);
  if (n == r.slot_count) return;
  auto* fresh = static_cast<Slot*>(allocate(n * sizeof(Slot)));
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
  const std::uint64_t i = probe(r.key, hash, found);
  Slot& s = index()[i];
  Root& root_now = root();
  if (found) {
    const RecordView old = record_at(s.offset);
    root_now.dead_bytes += old.size;
    root_now.value_bytes -= old.value.size();
  } else {
    s.hash = hash;
    ++root_now.keys;
    root_now.key_bytes += r.key.size();
  }
  root_now.value_bytes += r.value.size();
  s.offset = record_offset;
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
  ix.remove(i);
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
  map_.sync(0, map_.size(), path_);
  if (::fdatasync(fd_.get()) != 0) throw_errno(path_, "fdatasync", errno);
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
  full_sync_ = false;
  tail_begin_ = 0;
  tail_end_ = 0;
}

// ---------------------------------------------------------------- iteration

std::vector<std::uint64_t> DataFile::live_offsets() const { return index().live_offsets(); }

void DataFile::scan_chunk(const ChunkHeader& c, const std::function<void(const RecordView&)>& fn,
                          const std::function<void(const std::string&)>& problem, bool salvage) const {
  const auto at = static_cast<std::uint64_t>(reinterpret_cast<const char*>(&c) - map_.base());  // NOLINT
  const std::uint64_t data = at + sizeof(ChunkHeader);
  const std::uint64_t used = c.used.load(std::memory_order_acquire);
  // The record at `pos`, if it is whole and passes its checksum.
  auto intact_at = [&](std::uint64_t pos, RecordView& r) {
    try {
      r = record_at(data + pos);
    } catch (const Error&) {
      return false;
    }
    return r.size <= used - pos && record_intact(r);
  };
  for (std::uint64_t pos = 0; pos < used;) {
    RecordView r{};
    if (intact_at(pos, r)) {
      fn(r);
      pos += r.size;
      continue;
    }
    if (!salvage) {
      problem("record at " + hex_offset(data + pos) + " in chunk " + std::to_string(c.ordinal) +
              " fails its checksum or bounds; the rest of the chunk is skipped");
      return;
    }
    // Salvage: the damaged record's sizes cannot be trusted, so look for the
    // next record that proves itself by its checksum, 8 bytes at a time.
    const std::uint64_t bad = pos;
    for (pos += kRecordAlign; pos < used && !intact_at(pos, r); pos += kRecordAlign) {
    }
    problem("bytes " + hex_offset(data + bad) + " to " + hex_offset(data + pos) + " in chunk " + std::to_string(c.ordinal) +
            " hold no intact record; skipped");
  }
}

bool DataFile::damage_is_torn_tail() const {
  // The only damage a power cut leaves: records written after the last sync,
  // torn, at the end of the chunk being appended to, which is the last one.
  // Anything else (damage in an earlier chunk, or an intact record after the
  // damage) is not a torn tail.
  std::vector<const ChunkHeader*> chunks;
  try {
    scan_chunk_list([&](const ChunkHeader& c) { chunks.push_back(&c); });
  } catch (const Error&) {
    // The list ends at a damaged link: what precedes it is judged as usual.
  }
  for (std::size_t n = 0; n < chunks.size(); ++n) {
    bool damaged = false;
    bool intact_after_damage = false;
    scan_chunk(
        *chunks[n], [&](const RecordView&) { intact_after_damage = intact_after_damage || damaged; },
        [&](const std::string&) { damaged = true; }, true);
    if (damaged && (n + 1 != chunks.size() || intact_after_damage)) return false;
  }
  return true;
}

ChunkHeader* DataFile::last_chunk() const {
  // Appends write where this header says: a damaged length or capacity must
  // stop them before they write outside the chunk (found by the file fuzzer).
  ChunkHeader* c = resolve(root().last_chunk, sizeof(ChunkHeader));
  if (c == nullptr || !chunk_plausible(*c) || c->used.load(std::memory_order_relaxed) % kRecordAlign != 0) {
    throw Error(Errc::corrupt, path_ + ": the last chunk is damaged; run kvtool check");
  }
  return c;
}

bool DataFile::chunk_plausible(const ChunkHeader& c) const noexcept {
  const auto at = static_cast<std::uint64_t>(reinterpret_cast<const char*>(&c) - map_.base());  // NOLINT
  if (at + sizeof(ChunkHeader) > map_.size()) return false;
  const std::uint64_t room = map_.size() - at - sizeof(ChunkHeader);
  return c.magic == kChunkMagic && c.capacity <= room && c.used.load(std::memory_order_acquire) <= c.capacity;
}

bool DataFile::scan(const std::function<void(const RecordView&)>& fn,
                    const std::function<void(const std::string&)>& problem, bool salvage) const {
  if (salvage) {
    // The chunk list cannot be trusted: find chunks by their magic, in the
    // order of their ordinals (chunks are never freed, so none is stale).
    std::vector<const ChunkHeader*> found;
    for (std::uint64_t at = kHeaderSize; at + sizeof(ChunkHeader) <= map_.size(); at += 8) {
      const auto* c = reinterpret_cast<const ChunkHeader*>(map_.base() + at);  // NOLINT
      if (chunk_plausible(*c)) found.push_back(c);
    }
    std::stable_sort(found.begin(), found.end(),
                     [](const ChunkHeader* a, const ChunkHeader* b) { return a->ordinal < b->ordinal; });
    for (const ChunkHeader* c : found) scan_chunk(*c, fn, problem, true);
    return true;
  }
  try {
    scan_chunk_list([&](const ChunkHeader& c) { scan_chunk(c, fn, problem, false); });
  } catch (const Error& e) {
    problem(e.what());
    return false;
  }
  return true;
}

std::uint64_t DataFile::free_bytes() const noexcept { return segment()->get_free_memory(); }

// Replays history with batch semantics: records of an unfinished batch never count.
LatestIndex DataFile::replay(const std::function<void(const std::string&)>& problem,
                             std::uint64_t* record_bytes, bool salvage) const {
  // root().keys only sizes the first allocation; bounded, since it may be damaged.
  LatestIndex latest(std::min<std::uint64_t>(root().keys, map_.size() / 64) + 1024,
                     [this](std::uint64_t offset) { return record_at(offset); }, map_.size());
  std::vector<RecordView> pending;
  scan(
      [&](const RecordView& r) {
        latest.mark_visited(r.offset);
        if (record_bytes != nullptr) *record_bytes += r.size;
        // A batch's records are appended together under the write lock, so any
        // record outside it means the batch before was abandoned.
        if ((r.flags & kInBatch) == 0 || (r.flags & kBatchBegin) != 0) pending.clear();
        if ((r.flags & kInBatch) == 0) {
          latest.note(key_hash(r.key, seed_), r);
          return;
        }
        pending.push_back(r);
        if ((r.flags & kBatchEnd) != 0) {
          for (const RecordView& p : pending) latest.note(key_hash(p.key, seed_), p);
          pending.clear();
        }
      },
      problem, salvage);
  latest.finish();
  return latest;
}

std::uint64_t DataFile::indexed_keys_unknown_to(const LatestIndex& latest) const {
  // Index slots pointing at offsets where the replay found no record: the
  // chunks' own bookkeeping (a length, a link) was damaged so that whole runs
  // of records went unseen. A dead writer never does that: the index only
  // ever points at complete records. (Offsets only: no record is read.)
  std::uint64_t unknown = 0;
  try {
    index().for_each([&](std::uint64_t, const Slot& s) { unknown += latest.visited(s.offset) ? 0 : 1; });
  } catch (const Error&) {
    // No usable index to compare with.
  }
  return unknown;
}

bool DataFile::repair_index() {
  try {
    validate_root();
  } catch (const Error&) {
    return false;
  }
  // In place means the allocator is used again as it is: if it is damaged,
  // the full rebuild (which reads only records) is the recovery instead.
  // (The last chunk may be one short of the end: set right below.)
  if (!problem_for_writes(false).empty()) return false;
  bool clean_scan = true;
  std::uint64_t bytes = 0;
  const LatestIndex latest = replay([&](const std::string&) { clean_scan = false; }, &bytes, false);
  if (!clean_scan || indexed_keys_unknown_to(latest) != 0) return false;  // not a dead writer's mess
  Root& r = root();
  if (!HashIndex::fits(latest.live_keys(), r.slot_count)) return false;
  const HashIndex ix = index();
  std::memset(&ix[0], 0, ix.count() * sizeof(Slot));
  latest.for_each_live([&](std::uint64_t hash, std::uint64_t offset) {
    ix.insert_new(hash, offset);
    crash_point("repair_index.inserting");
  });
  // A writer that died between linking a new chunk and publishing it as the
  // last one left root.last_chunk short of the end (the chunks after it are
  // empty): appends go to the real end again. The scan just followed the list.
  const ChunkHeader* tail = nullptr;
  std::uint64_t chunks = 0;
  scan_chunk_list([&](const ChunkHeader& c) {
    tail = &c;
    ++chunks;
  });
  r.last_chunk = const_cast<ChunkHeader*>(tail);  // NOLINT: the mapping is ours to write
  r.chunks = chunks;
  r.keys = latest.live_keys();
  r.key_bytes = latest.live_key_bytes();
  r.value_bytes = latest.live_value_bytes();
  r.record_bytes = bytes;
  r.dead_bytes = bytes - latest.live_record_bytes();
  return true;
}

DataFile DataFile::rebuild(const DataFile& source, const std::string& path, std::uint64_t max_size,
                           std::vector<std::string>* problems, bool salvage, std::uint64_t* unknown_keys) {
  const LatestIndex latest = source.replay(
      [&](const std::string& p) {
        if (problems != nullptr) problems->push_back(p);
      },
      nullptr, salvage);
  if (unknown_keys != nullptr) *unknown_keys = source.indexed_keys_unknown_to(latest);
  // The live records in file order, as a bitmap of their offsets (one bit per
  // 8 bytes): the copy below then reads the source sequentially, with no sort.
  std::vector<std::uint64_t> live((source.map_.size() / kRecordAlign + 63) / 64);
  latest.for_each_live([&](std::uint64_t, std::uint64_t offset) {
    live[offset / kRecordAlign / 64] |= std::uint64_t{1} << (offset / kRecordAlign % 64);
  });
  const std::uint64_t live_keys = latest.live_keys();
  const std::uint64_t live_bytes = latest.live_record_bytes();
  const std::uint64_t estimate = kHeaderSize + 64 * 1024 + HashIndex::slots_for(live_keys) * sizeof(Slot) +
                                 sizeof(ChunkHeader) + live_bytes;
  // The records stream straight to the new file; the rest (header, allocator,
  // index) is built in private memory and written after them (file_writer.hpp).
  DataFile d = create_image(path, std::max(estimate, kMinFileSize), std::max(max_size, estimate + kPageSize));
  // Same seed: the hashes computed while replaying index the new file as they are.
  d.seed_ = source.seed_;
  d.header().hash_seed = source.seed_;
  d.header().header_crc = crc32c(0, &d.header(), kHeaderCrcBytes);
  d.reserve_slots(live_keys);
  std::uint64_t records_begin = 0;
  if (live_bytes > 0) {
    // One chunk of exactly the live bytes: nothing is left over to shrink away.
    auto* c = new (d.allocate(sizeof(ChunkHeader) + live_bytes)) ChunkHeader{};
    c->magic = kChunkMagic;
    c->capacity = live_bytes;
    c->used.store(live_bytes, std::memory_order_relaxed);
    c->next = nullptr;
    c->ordinal = 0;
    d.root().first_chunk = c;
    d.root().last_chunk = c;
    d.root().chunks = 1;
    records_begin = static_cast<std::uint64_t>(reinterpret_cast<char*>(c + 1) - d.map_.base());  // NOLINT
  }
  FileWriter out(path, d.map_.size());
  out.set_stream_begin(records_begin);
  const std::uint64_t records_end = records_begin + live_bytes;
  const HashIndex table = d.index();
  const std::uint64_t mask = table.count() - 1;
  auto copy = [&](const RecordView& r, std::uint64_t hash) {
    const std::uint64_t offset = out.stream_position();
    if (r.size > records_end - offset) {
      throw Error(Errc::corrupt, source.path_ + ": live records outgrow their count");  // cannot happen
    }
    if (r.flags == 0) {
      out.append(source.map_.base() + r.offset, r.size);  // copied whole, checksum and all
    } else {
      // A batch's flags are dropped (the batch is complete): a new checksum.
      RecordHeader h;
      std::memcpy(&h, source.map_.base() + r.offset, sizeof h);
      h.flags = 0;
      h.crc = record_crc(h, r.key, r.value);
      static constexpr char kZeros[kRecordAlign] = {};
      out.append(&h, sizeof h);
      out.append(r.key.data(), r.key.size());
      out.append(r.value.data(), r.value.size());
      out.append(kZeros, r.size - sizeof h - r.key.size() - r.value.size());
    }
    table.insert_new(hash, offset);
    crash_point("rebuild.copying");
  };
  // Records in groups, each record's slot prefetched before the group is
  // copied: the inserts are random, the copy sequential.
  constexpr std::size_t kGroup = 32;
  std::array<std::pair<RecordView, std::uint64_t>, kGroup> group;
  std::size_t grouped = 0;
  for (std::uint64_t w = 0; w < live.size(); ++w) {
    for (std::uint64_t bits = live[w]; bits != 0; bits &= bits - 1) {
      const RecordView r = source.record_at((w * 64 + std::countr_zero(bits)) * kRecordAlign);
      const std::uint64_t hash = key_hash(r.key, d.seed_);
      __builtin_prefetch(&table[hash & mask], 1);
      group[grouped++] = {r, hash};
      if (grouped == kGroup) {
        for (const auto& [rec, h] : group) copy(rec, h);
        grouped = 0;
      }
    }
  }
  for (std::size_t g = 0; g < grouped; ++g) copy(group[g].first, group[g].second);
  if (out.stream_position() != records_end) {
    throw Error(Errc::corrupt, source.path_ + ": live records fall short of their count");  // cannot happen
  }
  Root& root = d.root();
  root.keys = live_keys;
  root.key_bytes = latest.live_key_bytes();
  root.value_bytes = latest.live_value_bytes();
  root.record_bytes = live_bytes;
  // Give back the free tail of the segment. The few bytes between the
  // segment's end and the page boundary stay outside the segment until the
  // next grow() takes them in.
  d.segment()->shrink_to_fit();
  const std::uint64_t new_size =
      round_up(std::max(kHeaderSize + d.segment()->get_size(), kMinValidSize), kPageSize);
  FileHeader& to = d.header();
  const FileHeader& from = source.header();
  to.file_size.store(new_size);
  to.compactions = from.compactions;
  to.recoveries = from.recoveries;
  to.last_compact_unix = from.last_compact_unix;
  to.change_count = from.change_count;
  to.generation.store(from.generation.load() + 1);
  d.max_size_ = max_size;
  // Everything but the records, which are in the file already.
  const std::uint64_t gap_begin = live_bytes > 0 ? records_begin : new_size;
  const std::uint64_t gap_end = live_bytes > 0 ? records_end : new_size;
  out.write(d.map_.base(), gap_begin, 0);
  out.write(d.map_.base() + gap_end, new_size - gap_end, gap_end);
  d.fd_ = out.finish(new_size);
  d.map_ = Mapping(d.fd_.get(), new_size, true, path);
  return d;
}

// ---------------------------------------------------------------- check

std::vector<std::string> DataFile::check() const {
  std::vector<std::string> problems;
  auto problem = [&](const std::string& p) { problems.push_back(p); };
  const FileHeader& h = header();
  if (h.header_crc != crc32c(0, &h, kHeaderCrcBytes)) problem("header checksum mismatch");
  try {
    validate_root();
  } catch (const Error& e) {
    problem(e.what());
    return problems;
  }
  std::uint64_t bytes = 0;
  const LatestIndex latest = replay(problem, &bytes, false);
  const std::uint64_t live_keys = latest.live_keys();
  const Root& r = root();
  if (const std::string p = chunk_tail_problem(); !p.empty()) problem(p);
  if (bytes != r.record_bytes) {
    problem("record bytes: root says " + std::to_string(r.record_bytes) + ", chunks hold " +
            std::to_string(bytes));
  }
  // The index against the records: same keys, each pointing at its latest record.
  std::uint64_t indexed = 0;
  std::uint64_t key_bytes = 0;
  std::uint64_t value_bytes = 0;
  try {
    const HashIndex t = index();
    for (std::uint64_t i = 0; i < t.count() && problems.size() < 100; ++i) {
      if (t[i].offset == 0) continue;
      ++indexed;
      const RecordView rec = record_at(t[i].offset);
      key_bytes += rec.key.size();
      value_bytes += rec.value.size();
      if (rec.type != RecordType::put || !record_intact(rec)) {
        problem("slot " + std::to_string(i) + ": record at " + hex_offset(rec.offset) + " is damaged");
        continue;
      }
      if (t[i].hash != key_hash(rec.key, seed_)) {
        problem("slot " + std::to_string(i) + ": stored hash does not match its key");
        continue;
      }
      bool found = false;
      if (probe(rec.key, t[i].hash, found) != i || !found) {
        problem("slot " + std::to_string(i) + ": key not reachable from its home slot");
      }
      const std::uint64_t newest = latest.find_live(t[i].hash, rec.key);
      if (newest == 0) {
        problem("slot " + std::to_string(i) + ": indexed key has no live record in the chunks");
      } else if (newest != rec.offset) {
        problem("slot " + std::to_string(i) + ": index points at an old record of its key");
      }
    }
  } catch (const Error& e) {
    problem(e.what());
  }
  if (indexed != r.keys) {
    problem("index holds " + std::to_string(indexed) + " keys, root counts " + std::to_string(r.keys));
  }
  if (live_keys != indexed) {
    problem("records hold " + std::to_string(live_keys) + " live keys, index holds " +
            std::to_string(indexed));
  }
  if (key_bytes != r.key_bytes || value_bytes != r.value_bytes) problem("byte counters are off");
  check_allocations(problem);
  return problems;
}

void DataFile::check_allocations(const std::function<void(const std::string&)>& problem) const {
  // The allocator's bookkeeping against ours: the blocks we hold (root, index,
  // chunks) lie inside the segment, do not overlap, and fit in what the
  // allocator counts as handed out; then the allocator's own blocks and free
  // tree, each of ours an allocated block among them (a bounded walk:
  // allocator_check.hpp).
  struct Block {
    std::uint64_t begin;
    std::uint64_t end;
    const char* what;
  };
  std::vector<Block> blocks{{root_offset_, root_offset_ + sizeof(Root), "root"}};
  try {
    const auto base = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
    const auto t = reinterpret_cast<std::uintptr_t>(&index()[0]) - base;   // NOLINT
    blocks.push_back({t, t + root().slot_count * sizeof(Slot), "index"});
    scan_chunk_list([&](const ChunkHeader& c) {
      const auto at = reinterpret_cast<std::uintptr_t>(&c) - base;  // NOLINT
      blocks.push_back({at, at + sizeof(ChunkHeader) + c.capacity, "chunk"});
    });
  } catch (const Error& e) {
    problem(e.what());
    return;
  }
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) { return a.begin < b.begin; });
  std::uint64_t held = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    held += blocks[i].end - blocks[i].begin;
    if (blocks[i].begin < kHeaderSize || blocks[i].end > map_.size()) {
      problem(std::string(blocks[i].what) + " at " + hex_offset(blocks[i].begin) + " lies outside the segment");
    }
    if (i > 0 && blocks[i].begin < blocks[i - 1].end) {
      problem(std::string(blocks[i].what) + " at " + hex_offset(blocks[i].begin) + " overlaps the " +
              blocks[i - 1].what + " at " + hex_offset(blocks[i - 1].begin));
    }
  }
  const std::uint64_t segment_size = segment()->get_size();
  const std::uint64_t free = segment()->get_free_memory();
  if (segment_size > map_.size() - kHeaderSize || free > segment_size) {
    problem("allocator counters are impossible: segment " + std::to_string(segment_size) + " bytes, free " +
            std::to_string(free));
  } else if (held > segment_size - free) {
    problem("allocator counts " + std::to_string(segment_size - free) + " bytes in use, but the store holds " +
            std::to_string(held));
  }
  std::vector<HeldBlock> held_blocks;
  held_blocks.reserve(blocks.size());
  for (const Block& b : blocks) held_blocks.push_back({b.begin, b.end - b.begin, b.what});
  if (const std::string p = check_allocator(map_.base(), map_.size(), std::move(held_blocks)); !p.empty()) problem(p);
}

void DataFile::scan_chunk_list(const std::function<void(const ChunkHeader&)>& fn) const {
  const ChunkHeader* c = resolve(root().first_chunk, sizeof(ChunkHeader));
  for (std::uint64_t ordinal = 0; c != nullptr; ++ordinal) {
    if (!chunk_plausible(*c) || c->ordinal != ordinal) {
      throw Error(Errc::corrupt, path_ + ": chunk " + std::to_string(ordinal) + " is damaged");
    }
    fn(*c);
    c = resolve(c->next, sizeof(ChunkHeader));
  }
}

}  // namespace kvstore::detail
