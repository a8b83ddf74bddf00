// The record chunks (chunk_log.hpp).
#include "chunk_log.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <new>
#include <vector>

#include "crash_point.hpp"

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kMinChunk = 16 * 1024;

}  // namespace

std::uint64_t ChunkLog::scan_chunk(const ChunkHeader& c, const RecordFn& fn, const ProblemFn& problem, bool salvage,
                                   std::uint64_t from, std::uint64_t limit) const {
  const std::uint64_t data = offset_of(&c) + sizeof(ChunkHeader);
  const std::uint64_t used = std::min(c.used.load(std::memory_order_acquire), limit);
  // The record at `pos`, if it is whole and passes its checksum.
  auto intact_at = [&](std::uint64_t pos, RecordView& r) {
    return view_record(map_.base(), map_.size(), data + pos, r) == RecordFault::none && r.size <= used - pos &&
           record_intact(r);
  };
  for (std::uint64_t pos = from; pos < used;) {
    RecordView r{};
    if (intact_at(pos, r)) {
      fn(r);
      pos += r.size;
      continue;
    }
    if (!salvage) {
      problem("record at " + hex_offset(data + pos) + " in chunk " + std::to_string(c.ordinal) +
              " fails its checksum or bounds; the rest of the chunk is skipped");
      return pos;
    }
    // Salvage: the damaged record's sizes cannot be trusted, so look for the
    // next record that proves itself by its checksum, 8 bytes at a time.
    const std::uint64_t bad = pos;
    for (pos += kRecordAlign; pos < used && !intact_at(pos, r); pos += kRecordAlign) {
    }
    problem("bytes " + hex_offset(data + bad) + " to " + hex_offset(data + pos) + " in chunk " + std::to_string(c.ordinal) +
            " hold no intact record; skipped");
  }
  return used;
}

void ChunkLog::bad_last() const {
  // Appends write where this header says: a damaged length or capacity must
  // stop them before they write outside the chunk (found by the file fuzzer).
  (void)resolve(root().last_chunk, sizeof(ChunkHeader));  // throws if it leaves the file
  throw Error(Errc::corrupt, path_ + ": the last chunk is damaged; run kvtool check");
}

ChunkHeader* ChunkLog::first() const {
  ChunkHeader* c = resolve(root().first_chunk, sizeof(ChunkHeader));
  if (c == nullptr || !plausible(*c)) {
    throw Error(Errc::corrupt, path_ + ": the first chunk is damaged; run kvtool check");
  }
  return c;
}

ChunkHeader* ChunkLog::next(const ChunkHeader& c) const {
  ChunkHeader* n = resolve(c.next, sizeof(ChunkHeader));
  if (n == nullptr || !plausible(*n) || n->ordinal != c.ordinal + 1) {
    throw Error(Errc::corrupt, path_ + ": chunk " + std::to_string(c.ordinal + 1) + " is damaged");
  }
  return n;
}

bool ChunkLog::plausible(const ChunkHeader& c) const noexcept { return plausible_at(offset_of(&c), c); }

bool ChunkLog::scan(const RecordFn& fn, const ProblemFn& problem, Replay mode, const RecordsEnd* until) const {
  if (mode == Replay::salvage) {
    salvage(fn, problem);
    return true;
  }
  if (until != nullptr && until->chunks == 0) return true;
  try {
    for_each([&](const ChunkHeader& c) {
      // Up to `until` only: the list is not followed past that chunk, whose
      // link a writer may be setting now, to a chunk this mapping may not reach.
      const bool last = until != nullptr && c.ordinal + 1 == until->chunks;
      (void)scan_chunk(c, fn, problem, false, 0, last ? until->used : UINT64_MAX);
      return !last;
    });
  } catch (const Error& e) {
    problem(e.what());
    return false;
  }
  return true;
}

void ChunkLog::salvage(const RecordFn& fn, const ProblemFn& problem) const {
  // The chunk list cannot be trusted: find chunks by their magic, in the
  // order of their ordinals. None is stale: a reclaimed chunk loses its magic
  // before it is freed (reclaim.cpp).
  std::vector<const ChunkHeader*> found;
  for (std::uint64_t at = kHeaderSize; at + sizeof(ChunkHeader) <= map_.size(); at += 8) {
    const auto* c = reinterpret_cast<const ChunkHeader*>(map_.base() + at);  // NOLINT
    if (plausible(*c)) found.push_back(c);
  }
  std::stable_sort(found.begin(), found.end(),
                   [](const ChunkHeader* a, const ChunkHeader* b) { return a->ordinal < b->ordinal; });
  for (const ChunkHeader* c : found) (void)scan_chunk(*c, fn, problem, true);
}

bool ChunkLog::scan_to_tear(const RecordFn& fn, const ProblemFn& problem, const DurableMark& mark) const {
  // After a power cut pages written since the last sync may be lost, in any
  // order. Everything before the durable mark had reached the disk: damage
  // there is damage (reported; the caller refuses). The first damage after
  // it, in a record, a chunk header or a link, is where the writes the power
  // cut lost begin: history ends there, so the store that recovery makes is
  // the store as it was at one moment (a prefix of its history), never newer
  // writes over lost older ones.
  auto before_mark = [&](std::uint64_t ordinal, std::uint64_t pos) {
    return ordinal + 1 < mark.chunks || (ordinal + 1 == mark.chunks && pos < mark.used);
  };
  if (root().magic != kRootMagic) {
    problem("bad root");
    return false;
  }
  const bip::offset_ptr<ChunkHeader>* link = &root().first_chunk;
  std::uint64_t ordinal = first_ordinal();
  for (;; ++ordinal) {
    const ChunkHeader* c = nullptr;
    bool whole = true;
    try {
      c = resolve(*link, sizeof(ChunkHeader));
    } catch (const Error&) {
      whole = false;
    }
    if (whole && c == nullptr) break;  // the end of the list
    if (!whole || !plausible(*c) || c->ordinal != ordinal) {
      if (ordinal < mark.chunks) problem("chunk " + std::to_string(ordinal) + " before the durable mark is damaged");
      return false;
    }
    const std::uint64_t used = c->used.load(std::memory_order_acquire);
    if (ordinal + 1 == mark.chunks && used < mark.used) {
      problem("chunk " + std::to_string(ordinal) + " ends before the durable mark");
    }
    std::string damage;
    const std::uint64_t end = scan_chunk(*c, fn, [&](const std::string& p) { damage = p; }, false);
    if (end < used) {
      if (before_mark(ordinal, end)) problem(damage);
      return false;
    }
    if (ordinal + 1 < mark.chunks && used < c->capacity) {
      // A closed chunk ends where its next record did not fit: an intact
      // record right after `used` means the length was cut short.
      const std::uint64_t at = offset_of(c + 1) + used;
      RecordView r{};
      if (view_record(map_.base(), map_.size(), at, r) == RecordFault::none && r.size <= c->capacity - used &&
          record_intact(r)) {
        problem("chunk " + std::to_string(ordinal) + "'s length hides records after it");
      }
    }
    link = &c->next;
  }
  if (ordinal < mark.chunks) problem("the chunk list ends before the durable mark");
  return true;
}

RecordsEnd ChunkLog::end() const {
  if (root().last_chunk == nullptr) return {};
  const ChunkHeader* c = last();
  return {c->ordinal + 1, c->used.load(std::memory_order_acquire)};
}

void ChunkLog::scan_since(const RecordsEnd& from, const RecordsEnd* until, const RecordFn& fn) const {
  auto damaged = [&](const std::string& p) { throw Error(Errc::corrupt, path_ + ": " + p); };
  if (until != nullptr && until->chunks == 0) return;
  // The chunk `from` names holds new records past from.used; the ones after it are new.
  const std::uint64_t first = from.chunks == 0 ? 0 : from.chunks - 1;
  for_each([&](const ChunkHeader& c) {
    const bool last = until != nullptr && c.ordinal + 1 == until->chunks;
    if (c.ordinal >= first) {
      (void)scan_chunk(c, fn, damaged, false, c.ordinal + 1 == from.chunks ? from.used : 0,
                       last ? until->used : UINT64_MAX);
    }
    return !last;
  });
}

std::uint64_t ChunkLog::first_ordinal() const noexcept {
  try {
    const ChunkHeader* c = resolve(root().first_chunk, sizeof(ChunkHeader));
    return c != nullptr && plausible(*c) ? c->ordinal : 0;
  } catch (const Error&) {
    return 0;
  }
}

template <class Header>
void ChunkLog::walk(const Header& header, const std::function<bool(std::uint64_t, const ChunkHeader&)>& fn) const {
  const ChunkHeader* first = resolve(root().first_chunk, sizeof(ChunkHeader));  // not read: checked only
  if (first == nullptr) return;
  std::uint64_t at = offset_of(first);
  // The first chunk's ordinal (0 until chunks are reclaimed); 0 if it is
  // damaged, which the loop then reports as chunk 0.
  std::uint64_t ordinal = 0;
  if (const ChunkHeader& c = header(at); plausible_at(at, c)) ordinal = c.ordinal;
  for (;; ++ordinal) {
    const ChunkHeader& c = header(at);
    if (!plausible_at(at, c) || c.ordinal != ordinal) {
      throw Error(Errc::corrupt, path_ + ": chunk " + std::to_string(ordinal) + " is damaged");
    }
    if (!fn(at, c)) return;
    // An offset_ptr holds the distance from its own place in the file; 1 is null.
    const auto distance = static_cast<std::uint64_t>(c.next.get_offset());
    if (distance == 1) return;
    const std::uint64_t next = at + offsetof(ChunkHeader, next) + distance;  // wraps harmlessly: checked
    if (!lies_in_file(map_.size(), next, sizeof(ChunkHeader), alignof(ChunkHeader))) {
      throw Error(Errc::corrupt, path_ + ": pointer leaves the file (at " + hex_offset(next) + ")", next);
    }
    at = next;
  }
}

void ChunkLog::for_each(const std::function<bool(const ChunkHeader&)>& fn) const {
  walk([&](std::uint64_t at) -> const ChunkHeader& { return *reinterpret_cast<const ChunkHeader*>(map_.base() + at); },  // NOLINT
       [&](std::uint64_t, const ChunkHeader& c) { return fn(c); });
}

void ChunkLog::for_each_in(const ByteSource& bytes,
                           const std::function<bool(std::uint64_t at, const ChunkHeader&)>& fn) const {
  alignas(ChunkHeader) unsigned char copy[sizeof(ChunkHeader)];
  walk(
      [&](std::uint64_t at) -> const ChunkHeader& {
        bytes.read(at, copy, sizeof copy);
        return *std::launder(reinterpret_cast<const ChunkHeader*>(copy));  // NOLINT: bytes of a ChunkHeader
      },
      fn);
}

bool ChunkLog::reserve(std::uint64_t bytes, const Allocate& allocate) {
  if (root().last_chunk != nullptr) {
    const ChunkHeader* c = last();
    if (c->capacity - c->used.load(std::memory_order_relaxed) >= bytes) return false;
  }
  // A chunk an eighth of the records so far, within bounds: few chunks for a
  // large store, little unused room for a small one.
  std::uint64_t capacity = std::clamp<std::uint64_t>(root().record_bytes / 8, kMinChunk, kMaxChunkBytes);
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
  Root& r = root();  // allocate() may have moved the mapping
  ChunkHeader* prev = r.last_chunk == nullptr ? nullptr : last();  // checked: its room is zeroed below
  ChunkHeader* c = init_chunk(p, capacity, 0, prev != nullptr ? prev->ordinal + 1 : 0);
  if (prev != nullptr) {
    // The room the closed chunk leaves unused may hold records of a chunk
    // freed there before (reclaim.cpp): zeroed, so that a record found after
    // `used` still means a length that hides records (after a power cut).
    const std::uint64_t used = prev->used.load(std::memory_order_relaxed);
    std::memset(reinterpret_cast<char*>(prev + 1) + used, 0, prev->capacity - used);  // NOLINT
    prev->next = c;
    // Not written back here (sync_file_range, SYNC_FILE_RANGE_WRITE): that
    // blocked the put that closed the chunk for 5-9 ms here once the device
    // was busy (80 such puts growing to 1M keys, the worst 8.5-10 ms; 4.6 ms
    // without). It made reclaiming's later syncs shorter: churn puts were
    // 10% faster with it, and their 99.9th percentile twice as slow.
  } else {
    r.first_chunk = c;
  }
  r.last_chunk = c;
  ++r.chunks;
  return true;
}

ChunkLog::Appended ChunkLog::append(std::string_view key, std::string_view value, RecordType type,
                                    std::uint8_t flags) {
  ChunkHeader* c = last();
  const std::uint64_t size = record_size(key.size(), value.size());
  const std::uint64_t used = c->used.load(std::memory_order_relaxed);
  char* p = reinterpret_cast<char*>(c + 1) + used;  // NOLINT: reserve() made room
  RecordHeader h{};
  h.type = static_cast<std::uint8_t>(type);
  h.flags = flags;
  h.key_size = static_cast<std::uint32_t>(key.size());
  h.value_size = static_cast<std::uint32_t>(value.size());
  std::memcpy(p, &h, sizeof h);  // crc 0 until the record is whole
  crash_point("append.partial");
  if (!key.empty()) std::memcpy(p + sizeof h, key.data(), key.size());
  if (!value.empty()) std::memcpy(p + sizeof h + key.size(), value.data(), value.size());
  const std::uint64_t pad = size - sizeof h - key.size() - value.size();
  if (pad != 0) std::memset(p + sizeof h + key.size() + value.size(), 0, pad);
  const std::uint32_t crc = laid_out_record_crc(p, key.size(), value.size());  // over the bytes just written
  std::memcpy(p + offsetof(RecordHeader, crc), &crc, sizeof crc);
  // The record counts (for recovery) only once it is complete.
  c->used.store(used + size, std::memory_order_release);
  crash_point("append.done");
  root().record_bytes += size;
  return {offset_of(p), offset_of(c)};
}

ChunkHeader* ChunkLog::unlink_first() {
  Root& r = root();
  ChunkHeader* c = first();
  if (c == r.last_chunk.get()) throw Error(Errc::corrupt, path_ + ": the first chunk is damaged; run kvtool check");
  ChunkHeader* next = this->next(*c);
  const std::uint64_t used = c->used.load(std::memory_order_relaxed);
  r.first_chunk = next;
  --r.chunks;
  r.record_bytes -= std::min(r.record_bytes, used);
  r.dead_bytes -= std::min(r.dead_bytes, used);  // every record in it is dead by now
  return c;
}

}  // namespace kvstore::detail
