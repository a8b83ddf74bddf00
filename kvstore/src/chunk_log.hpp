// The record chunks of one mapped file (FORMAT.md "Chunks"): the chunk list
// and its checks, appending records, and reading them back in order or, for a
// salvage, wherever a record proves itself by its checksum. A view handed the
// mapping, where the root lies and, to add a chunk, an allocator: it knows
// nothing of the index, the header's state or DataFile.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "byte_source.hpp"
#include "format.hpp"
#include "kvstore/error.hpp"
#include "layout.hpp"
#include "mapping.hpp"
#include "record.hpp"

namespace kvstore::detail {

// How a replay of the records treats damage.
enum class Replay {
  strict,   // the chunk list in order; a damaged record ends its chunk (reported)
  salvage,  // chunks found by their magic, damaged bytes skipped (an explicit repair)
  to_tear,  // after a power cut: damage before the durable mark is reported, and
            // the first damage after it ends history (ChunkLog::scan_to_tear)
};

// The largest chunk the writers open, and the most records a rebuild puts in
// one chunk. Also the unit of space reclamation (reclaim.cpp): a freed chunk
// costs a sync of the records written while it was cleaned, about two
// chunks' worth, and a chunk is freed only once all of it has been moved.
inline constexpr std::uint64_t kMaxChunkBytes = 1024 * 1024;

// Where the records end: `chunks` chunks, the last holding `used` bytes of
// records (what a durable mark and a compaction's copy name).
struct RecordsEnd {
  std::uint64_t chunks = 0;
  std::uint64_t used = 0;
};

// Whether `bytes` at file offset `at` (read from the file: any value) lie
// wholly inside a file of `size` bytes, past the header, aligned to `align`
// (a power of two dividing the mapping's base).
[[nodiscard]] inline bool lies_in_file(std::uint64_t size, std::uint64_t at, std::uint64_t bytes,
                                       std::uint64_t align) noexcept {
  return at >= kHeaderSize && at <= size && bytes <= size - at && at % align == 0;
}

// Resolves a pointer read from the file, checked to lie wholly inside the
// mapping, past the header, and aligned. Throws Error(corrupt).
template <class T>
[[nodiscard]] T* resolve_in(const Mapping& map, const std::string& path, const bip::offset_ptr<T>& p,
                            std::uint64_t bytes) {
  T* raw = p.get();
  if (raw == nullptr) return nullptr;
  const auto a = reinterpret_cast<std::uintptr_t>(raw);         // NOLINT
  const auto b = reinterpret_cast<std::uintptr_t>(map.base());  // NOLINT
  if (a < b || !lies_in_file(map.size(), a - b, bytes, alignof(T))) {
    throw Error(Errc::corrupt, path + ": pointer leaves the file (at " + hex_offset(a - b) + ")",
                a >= b ? a - b : kNoOffset);
  }
  return raw;
}

class ChunkLog {
 public:
  using RecordFn = std::function<void(const RecordView&)>;
  using ProblemFn = std::function<void(const std::string&)>;
  // Hands out `bytes` of the segment; may grow the file and move the mapping.
  using Allocate = std::function<void*(std::uint64_t bytes)>;

  ChunkLog(const Mapping& map, std::uint64_t root_offset, const std::string& path) noexcept
      : map_(map), root_offset_(root_offset), path_(path) {}

  // --- the list
  // Whether `c` looks like a chunk header whose records lie inside the mapping.
  [[nodiscard]] bool plausible(const ChunkHeader& c) const noexcept;
  // The chunk appends go to, checked. Throws Error(corrupt). Inline: twice a put.
  [[nodiscard]] ChunkHeader* last() const {
    ChunkHeader* c = root().last_chunk.get();
    const auto at = reinterpret_cast<std::uintptr_t>(c);              // NOLINT
    const auto base = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
    if (c == nullptr || at < base || !lies_in_file(map_.size(), at - base, sizeof(ChunkHeader), alignof(ChunkHeader)) ||
        !plausible_at(at - base, *c) || c->used.load(std::memory_order_relaxed) % kRecordAlign != 0) [[unlikely]] {
      bad_last();
    }
    return c;
  }
  // The first chunk, and the one after `c` (which must not be the last),
  // checked: plausible, the next with the next ordinal. Throw Error(corrupt).
  [[nodiscard]] ChunkHeader* first() const;
  [[nodiscard]] ChunkHeader* next(const ChunkHeader& c) const;
  [[nodiscard]] RecordsEnd end() const;
  // Calls fn for each chunk along the list until it returns false. Throws
  // Error(corrupt) on a damaged link. (scan_to_tear walks it on its own: it
  // tells damage before the durable mark from a tear after it.)
  void for_each(const std::function<bool(const ChunkHeader&)>& fn) const;
  // The same walk with the headers read from `bytes` (a copy of each, handed
  // to fn with its file offset): the first attach reads them through pread
  // instead of faulting in a page of the mapping per chunk (byte_source.hpp).
  void for_each_in(const ByteSource& bytes,
                   const std::function<bool(std::uint64_t at, const ChunkHeader&)>& fn) const;

  // --- reading records
  // Replays every record of every chunk in order (strict or salvage), damage
  // reported through `problem`. With `until`, a strict replay stops there: it
  // then needs no lock, since records before the end never change (a
  // compaction's copy). Returns false if the chunk list itself is broken.
  bool scan(const RecordFn& fn, const ProblemFn& problem, Replay mode, const RecordsEnd* until = nullptr) const;
  // After a power cut: the records up to the first damage after the durable
  // `mark`; damage before it is reported. False if history ended at a tear.
  bool scan_to_tear(const RecordFn& fn, const ProblemFn& problem, const DurableMark& mark) const;
  // The records appended after `from`, in order, up to `until` (any lock, as
  // scan's) or to the end (write lock). Throws Error(corrupt) at a damaged one.
  void scan_since(const RecordsEnd& from, const RecordsEnd* until, const RecordFn& fn) const;
  // One chunk's records from `from` up to `limit`. A damaged record ends the
  // chunk, unless `salvage`: then the scan resumes at the next record that
  // passes its checksum. Returns where it stopped (the chunk's `used` if at its end).
  std::uint64_t scan_chunk(const ChunkHeader& c, const RecordFn& fn, const ProblemFn& problem, bool salvage,
                           std::uint64_t from = 0, std::uint64_t limit = UINT64_MAX) const;

  // --- appending (write lock)
  // Room for `bytes` of records in the last chunk: if they do not fit, a new
  // chunk from `allocate`, linked at the end. Returns whether it linked one.
  bool reserve(std::uint64_t bytes, const Allocate& allocate);
  struct Appended {
    std::uint64_t record;  // file offset of the record
    std::uint64_t chunk;   // ... and of the header of its chunk, whose length changed
  };
  // Appends one record to the last chunk, where reserve() made room.
  Appended append(std::string_view key, std::string_view value, RecordType type, std::uint8_t flags);
  // Cuts the first chunk (not the last) off the list and takes its records
  // out of the counters; returns it, still allocated (reclaim.cpp frees it).
  ChunkHeader* unlink_first();

 private:
  [[nodiscard]] Root& root() const noexcept {
    return *reinterpret_cast<Root*>(map_.base() + root_offset_);  // NOLINT: validated offset
  }
  template <class T>
  [[nodiscard]] T* resolve(const bip::offset_ptr<T>& p, std::uint64_t bytes) const {
    return resolve_in(map_, path_, p, bytes);
  }
  [[nodiscard]] std::uint64_t offset_of(const void* p) const noexcept {
    return static_cast<std::uint64_t>(static_cast<const char*>(p) - map_.base());
  }
  // plausible() for a header read from file offset `at`.
  [[nodiscard]] bool plausible_at(std::uint64_t at, const ChunkHeader& c) const noexcept {
    if (at > map_.size() || sizeof(ChunkHeader) > map_.size() - at) return false;
    const std::uint64_t room = map_.size() - at - sizeof(ChunkHeader);
    return c.magic == kChunkMagic && c.capacity <= room && c.used.load(std::memory_order_acquire) <= c.capacity;
  }
  // Throws the Error that last() found cause for.
  [[noreturn]] void bad_last() const;
  // The list walk: `header(at)` gives the header at file offset `at`.
  template <class Header>
  void walk(const Header& header, const std::function<bool(std::uint64_t, const ChunkHeader&)>& fn) const;
  // The first chunk's ordinal (0 until chunks are reclaimed), or 0 when the
  // first link or chunk is damaged (the walk then reports chunk 0 damaged).
  [[nodiscard]] std::uint64_t first_ordinal() const noexcept;
  // The records in salvage order: chunks found by their magic, by ordinal.
  void salvage(const RecordFn& fn, const ProblemFn& problem) const;

  const Mapping& map_;
  std::uint64_t root_offset_;
  const std::string& path_;
};

}  // namespace kvstore::detail
