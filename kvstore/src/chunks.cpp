// The record chunks (FORMAT.md "Chunks"): the chunk list and its checks, and
// reading a chunk's records in order, or, for a salvage, wherever a record
// proves itself by its checksum.
#include "data_file.hpp"

#include <algorithm>
#include <vector>

#include "kvstore/error.hpp"

namespace kvstore::detail {

std::uint64_t DataFile::scan_chunk(const ChunkHeader& c, const std::function<void(const RecordView&)>& fn,
                                   const std::function<void(const std::string&)>& problem, bool salvage,
                                   std::uint64_t from, std::uint64_t limit) const {
  const auto at = static_cast<std::uint64_t>(reinterpret_cast<const char*>(&c) - map_.base());  // NOLINT
  const std::uint64_t data = at + sizeof(ChunkHeader);
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
                    const std::function<void(const std::string&)>& problem, Replay mode,
                    const RecordsEnd* until) const {
  if (mode == Replay::to_tear) return scan_to_tear(fn, problem);
  if (until != nullptr) {
    // Up to `until` only: the list is not followed past that chunk, whose
    // link a writer may be setting now, to a chunk this mapping may not reach.
    try {
      walk_chunks(*until, [&](const ChunkHeader& c, std::uint64_t from, std::uint64_t limit) {
        (void)scan_chunk(c, fn, problem, false, from, limit);
      });
    } catch (const Error& e) {
      problem(e.what());
      return false;
    }
    return true;
  }
  if (mode == Replay::salvage) {
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
    scan_chunk_list([&](const ChunkHeader& c) {
      (void)scan_chunk(c, fn, problem, false);
      return true;
    });
  } catch (const Error& e) {
    problem(e.what());
    return false;
  }
  return true;
}

bool DataFile::scan_to_tear(const std::function<void(const RecordView&)>& fn,
                            const std::function<void(const std::string&)>& problem) const {
  // After a power cut pages written since the last sync may be lost, in any
  // order. Everything before the durable mark had reached the disk: damage
  // there is damage (reported; the caller refuses). The first damage after
  // it, in a record, a chunk header or a link, is where the writes the power
  // cut lost begin: history ends there, so the store that recovery makes is
  // the store as it was at one moment (a prefix of its history), never newer
  // writes over lost older ones.
  const DurableMark mark = durable_mark(header());
  auto before_mark = [&](std::uint64_t ordinal, std::uint64_t pos) {
    return ordinal + 1 < mark.chunks || (ordinal + 1 == mark.chunks && pos < mark.used);
  };
  if (root().magic != kRootMagic) {
    problem("bad root");
    return false;
  }
  const bip::offset_ptr<ChunkHeader>* link = &root().first_chunk;
  std::uint64_t ordinal = 0;
  for (;; ++ordinal) {
    const ChunkHeader* c = nullptr;
    bool whole = true;
    try {
      c = resolve(*link, sizeof(ChunkHeader));
    } catch (const Error&) {
      whole = false;
    }
    if (whole && c == nullptr) break;  // the end of the list
    if (!whole || !chunk_plausible(*c) || c->ordinal != ordinal) {
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
      const std::uint64_t at =
          static_cast<std::uint64_t>(reinterpret_cast<const char*>(c + 1) - map_.base()) + used;  // NOLINT
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

DataFile::RecordsEnd DataFile::records_end() const {
  const ChunkHeader* c = last_chunk_or_none();
  if (c == nullptr) return {};
  return {c->ordinal + 1, c->used.load(std::memory_order_acquire)};
}

const ChunkHeader* DataFile::last_chunk_or_none() const {
  return root().last_chunk == nullptr ? nullptr : last_chunk();
}

void DataFile::walk_chunks(const RecordsEnd& end,
                           const std::function<void(const ChunkHeader&, std::uint64_t, std::uint64_t)>& fn) const {
  if (end.chunks == 0) return;
  scan_chunk_list([&](const ChunkHeader& c) {
    const bool last = c.ordinal + 1 == end.chunks;
    fn(c, 0, last ? end.used : UINT64_MAX);
    return !last;  // the link after `end` is not followed: a writer may be setting it
  });
}

void DataFile::scan_since(const RecordsEnd& from, const RecordsEnd* until,
                          const std::function<void(const RecordView&)>& fn) const {
  auto damaged = [&](const std::string& p) { throw Error(Errc::corrupt, path_ + ": " + p); };
  if (until != nullptr && until->chunks == 0) return;
  // The chunk `from` names holds new records past from.used; the ones after it are new.
  const std::uint64_t first = from.chunks == 0 ? 0 : from.chunks - 1;
  scan_chunk_list([&](const ChunkHeader& c) {
    const bool last = until != nullptr && c.ordinal + 1 == until->chunks;
    if (c.ordinal >= first) {
      (void)scan_chunk(c, fn, damaged, false, c.ordinal + 1 == from.chunks ? from.used : 0,
                       last ? until->used : UINT64_MAX);
    }
    return !last;
  });
}

std::uint64_t DataFile::free_bytes() const noexcept { return segment()->get_free_memory(); }

void DataFile::scan_chunk_list(const std::function<bool(const ChunkHeader&)>& fn) const {
  const ChunkHeader* c = resolve(root().first_chunk, sizeof(ChunkHeader));
  for (std::uint64_t ordinal = 0; c != nullptr; ++ordinal) {
    if (!chunk_plausible(*c) || c->ordinal != ordinal) {
      throw Error(Errc::corrupt, path_ + ": chunk " + std::to_string(ordinal) + " is damaged");
    }
    if (!fn(*c)) return;
    c = resolve(c->next, sizeof(ChunkHeader));
  }
}

}  // namespace kvstore::detail
