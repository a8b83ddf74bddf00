// Recovery after an unclean stop: replaying the records with batch semantics,
// the in-place repair of the index after a writer died outside the allocator,
// and the checks that tell a dead writer's or a power cut's traces from
// damage of another kind (which recovery refuses to paper over).
#include "data_file.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include "batch_replay.hpp"
#include "crash_point.hpp"
#include "hash.hpp"
#include "kvstore/error.hpp"
#include "latest_index.hpp"

namespace kvstore::detail {

bool DataFile::damage_is_torn_tail() const {
  // The only damage a power cut leaves: records written after the last sync,
  // torn, at the end of the chunk being appended to, which is the last one.
  // Anything else (damage in an earlier chunk, or an intact record after the
  // damage) is not a torn tail.
  const ChunkLog log = chunks();
  std::vector<const ChunkHeader*> found;
  try {
    log.for_each([&](const ChunkHeader& c) {
      found.push_back(&c);
      return true;
    });
  } catch (const Error&) {
    // The list ends at a damaged link: what precedes it is judged as usual.
  }
  for (std::size_t n = 0; n < found.size(); ++n) {
    bool damaged = false;
    bool intact_after_damage = false;
    (void)log.scan_chunk(
        *found[n], [&](const RecordView&) { intact_after_damage = intact_after_damage || damaged; },
        [&](const std::string&) { damaged = true; }, true);
    if (damaged && (n + 1 != found.size() || intact_after_damage)) return false;
  }
  return true;
}

// Replays history with batch semantics: records of an unfinished batch never count.
LatestIndex DataFile::replay(const std::function<void(const std::string&)>& problem,
                             std::uint64_t* record_bytes, Replay mode, const RecordsEnd* until) const {
  // root().keys only sizes the first allocation; bounded, since it may be damaged.
  LatestIndex latest(std::min<std::uint64_t>(root().keys, map_.size() / 64) + 1024,
                     [this](std::uint64_t offset) { return record_at(offset); }, map_.size());
  BatchReplay batches;
  auto record = [&](const RecordView& r) {
    latest.mark_visited(r.offset);
    if (record_bytes != nullptr) *record_bytes += r.size;
    batches.feed(r, [&](const RecordView& c) { latest.note(key_hash(c.key, seed_), c); });
  };
  auto damage = [&](const std::string& p) {
    batches.damaged();
    problem(p);
  };
  if (mode == Replay::to_tear) {
    (void)chunks().scan_to_tear(record, damage, durable_mark(header()));
  } else {
    (void)chunks().scan(record, damage, mode, until);
  }
  latest.finish();
  return latest;
}

DataFile::History DataFile::read_history(Replay mode, bool compare_index, const RecordsEnd* until) const {
  std::vector<std::string> problems;
  LatestIndex latest = replay([&](const std::string& p) { problems.push_back(p); }, nullptr, mode, until);
  const std::uint64_t unknown = compare_index ? indexed_keys_unknown_to(latest) : 0;
  return History{std::move(latest), std::move(problems), unknown};
}

std::uint64_t DataFile::indexed_keys_unknown_to(const LatestIndex& latest) const {
  // Index slots pointing at offsets where the replay found no record: the
  // chunks' own bookkeeping (a length, a link) was damaged so that whole runs
  // of records went unseen. A dead writer never does that: the index only
  // ever points at complete records. (Offsets only: no record is read.)
  std::uint64_t unknown = 0;
  try {
    index().for_each([&](std::uint64_t, const Slot& s) { unknown += latest.visited(s.offset) ? 0U : 1U; });
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
  const LatestIndex latest = replay([&](const std::string&) { clean_scan = false; }, &bytes, Replay::strict);
  if (!clean_scan || indexed_keys_unknown_to(latest) != 0) return false;  // not a dead writer's mess
  Root& r = root();
  if (!HashIndex::fits(latest.live_keys(), r.slot_count)) return false;
  const HashIndex ix = index();
  std::memset(&ix[0], 0, ix.count() * sizeof(Slot));
  latest.for_each_live([&](std::uint64_t hash, std::uint64_t offset) {
    ix.insert_new(hash, offset);
    crash_point("repair_index.inserting");
  });
  // A doubling under way starts over: its copies were of the index just rebuilt.
  if (IndexGrowth* g = growth(); g != nullptr && g->shadow != nullptr) g->progress = 0;
  // A writer that died between linking a new chunk and publishing it as the
  // last one left root.last_chunk short of the end (the chunks after it are
  // empty): appends go to the real end again. The scan just followed the list.
  const ChunkHeader* tail = nullptr;
  std::uint64_t count = 0;
  chunks().for_each([&](const ChunkHeader& c) {
    tail = &c;
    ++count;
    return true;
  });
  r.last_chunk = const_cast<ChunkHeader*>(tail);  // NOLINT: the mapping is ours to write
  r.chunks = count;
  r.keys = latest.live_keys();
  r.key_bytes = latest.live_key_bytes();
  r.value_bytes = latest.live_value_bytes();
  r.record_bytes = bytes;
  r.dead_bytes = bytes - latest.live_record_bytes();
  FileHeader& h = header();
  ++h.recoveries;
  h.writing.store(kIdle);
  return true;
}

}  // namespace kvstore::detail
