// Whole-file verification (kvtool check) and what a first attach proves
// before any write trusts the file: the header, the index against the
// records, the counters, the chunk list's end, the allocator (allocator_check.hpp).
#include "data_file.hpp"

#include <algorithm>
#include <vector>

#include "allocator_check.hpp"
#include "crc32c.hpp"
#include "hash.hpp"
#include "kvstore/error.hpp"
#include "latest_index.hpp"

namespace kvstore::detail {

std::string DataFile::without_path(const Error& e) const {
  const std::string m = e.what();
  return m.rfind(path_ + ": ", 0) == 0 ? m.substr(path_.size() + 2) : m;
}

std::vector<HeldBlock> DataFile::held_blocks(const ByteSource& bytes, std::uint64_t& tail) const {
  const auto base = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
  std::vector<HeldBlock> held{{root_offset_, root_bytes(header().format_version), "root"}};
  held.push_back({reinterpret_cast<std::uintptr_t>(&index()[0]) - base, root().slot_count * sizeof(Slot), "index"});  // NOLINT
  if (const IndexGrowth* g = growth(); g != nullptr && g->shadow != nullptr) {
    held.push_back({reinterpret_cast<std::uintptr_t>(&shadow()[0]) - base, 2 * root().slot_count * sizeof(Slot),  // NOLINT
                    "growing index"});
  }
  tail = 0;
  chunks().for_each_in(bytes, [&](std::uint64_t at, const ChunkHeader& c) {
    tail = at;
    held.push_back({at, sizeof(ChunkHeader) + c.capacity, "chunk"});
    return true;
  });
  return held;
}

std::uint64_t DataFile::last_chunk_offset() const {
  const ChunkHeader* last = resolve(root().last_chunk, sizeof(ChunkHeader));  // not read: checked only
  return last == nullptr ? 0 : static_cast<std::uint64_t>(reinterpret_cast<const char*>(last) - map_.base());
}

std::string DataFile::problem_for_writes(bool last_chunk_at_end) const {
  // The blocks writes rely on: the root and the index (freed when it
  // doubles), the last chunk (appended to), and every other chunk (were one
  // in free space, a new block would overwrite records the index points at).
  // Appends go to root.last_chunk and a new chunk is linked after it: were it
  // not the end of the list, its records would replay out of order, and the
  // new link would cut off the chunks after it (lost to the next recovery).
  // One read per chunk, on the page the allocator walk reads anyway; through
  // pread, so that the walk faults in no page of the mapping (byte_source.hpp).
  const FileBytes bytes(fd_.get(), map_.size(), path_);
  try {
    std::uint64_t tail = 0;
    std::vector<HeldBlock> held = held_blocks(bytes, tail);
    if (last_chunk_at_end && tail != last_chunk_offset()) return "the last chunk is not the end of the chunk list";
    return check_allocator(bytes, std::move(held));
  } catch (const Error& e) {
    if (e.code() != Errc::corrupt) throw;  // the file could not be read: not a verdict on it
    return without_path(e);
  }
}

std::string DataFile::chunk_tail_problem() const {
  try {
    const ChunkHeader* tail = nullptr;
    chunks().for_each([&](const ChunkHeader& c) {
      tail = &c;
      return true;
    });
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

// ---------------------------------------------------------------- check

std::vector<std::string> DataFile::check() const {
  std::vector<std::string> problems;
  auto problem = [&](const std::string& p) { problems.push_back(p); };
  const FileHeader& h = header();
  if (h.header_crc != crc32c(0, &h, kHeaderCrcBytes)) problem("header checksum mismatch");
  if (h.clean.load() != 0 && !sealed(h)) problem("the header's state fails its checksum");
  try {
    validate_root();
  } catch (const Error& e) {
    problem(e.what());
    return problems;
  }
  std::uint64_t bytes = 0;
  const LatestIndex latest = replay(problem, &bytes, Replay::strict);
  const std::uint64_t live_keys = latest.live_keys();
  const Root& r = root();
  if (const std::string p = chunk_tail_problem(); !p.empty()) problem(p);
  try {
    if (const DurableMark m = durable_mark(h); m.valid && m.chunks > chunks().end().chunks) {
      problem("the durable mark names chunk " + std::to_string(m.chunks - 1) + ", past the last one");
    }
  } catch (const Error& e) {
    problem(e.what());
  }
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
  // The allocator's bookkeeping against ours: the blocks we hold
  // (held_blocks) lie inside the segment, do not overlap, and fit in what the
  // allocator counts as handed out; then the allocator's own blocks and free
  // tree, each of ours an allocated block among them (a bounded walk:
  // allocator_check.hpp).
  const MappedBytes bytes(map_.base(), map_.size());
  std::vector<HeldBlock> blocks;
  try {
    std::uint64_t tail = 0;
    blocks = held_blocks(bytes, tail);
  } catch (const Error& e) {
    problem(e.what());
    return;
  }
  std::sort(blocks.begin(), blocks.end(), [](const HeldBlock& a, const HeldBlock& b) { return a.offset < b.offset; });
  std::uint64_t held = 0;
  for (std::size_t i = 0; i < blocks.size(); ++i) {
    held += blocks[i].bytes;
    if (blocks[i].offset < kHeaderSize || blocks[i].offset + blocks[i].bytes > map_.size()) {
      problem(std::string(blocks[i].what) + " at " + hex_offset(blocks[i].offset) + " lies outside the segment");
    }
    if (i > 0 && blocks[i].offset < blocks[i - 1].offset + blocks[i - 1].bytes) {
      problem(std::string(blocks[i].what) + " at " + hex_offset(blocks[i].offset) + " overlaps the " +
              blocks[i - 1].what + " at " + hex_offset(blocks[i - 1].offset));
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
  if (const std::string p = check_allocator(bytes, std::move(blocks)); !p.empty()) problem(p);
}

}  // namespace kvstore::detail
