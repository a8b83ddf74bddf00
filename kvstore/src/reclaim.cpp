// Space reclamation as the store is written (FORMAT.md "Reclaiming space"):
// the live records of the oldest chunk are appended again, a slice per
// write, and once none is left the chunk is cut off the list and freed. Paid
// in small steps by the writers, so that no put waits for a whole compaction.
#include <algorithm>
#include <array>
#include <chrono>
#include <utility>

#include "crash_point.hpp"
#include "data_file.hpp"
#include "hash.hpp"

namespace kvstore::detail {
namespace {

// Records synced by a write that syncs itself (no sync thread, or its sync
// failed): 2 MiB took 6.7 ms here, most of it for the pages write-protected
// again (a TLB flush each).
constexpr std::uint64_t kSyncStep = 512 * 1024;
// ... and by a step of the sync thread.
constexpr std::uint64_t kBackgroundSyncStep = 2 * 1024 * 1024;
// Records looked at together by look_ahead, their index slots prefetched.
constexpr std::size_t kReclaimBatch = 16;
// Chunks at the end that write-behind leaves alone (unsynced_records).
constexpr std::uint64_t kWriteBehindLag = 3;

// What this thread's write left for after its lock: a sync it staged, to be
// started; a sync to wait for, because the writers outran reclaiming.
thread_local bool t_staged_sync = false;
thread_local bool t_waits_for_sync = false;

}  // namespace

bool DataFile::may_reclaim() const noexcept {
  // A version 1 file stays one that a version 1 build reads (format.hpp).
  const Root& r = root();
  return writable_ && header().format_version >= 2 && r.first_chunk != r.last_chunk;
}

void DataFile::reclaim(std::uint64_t budget, const std::function<bool()>& pinned, bool keep_up) {
  // The copies must be on disk before the originals can go: a power cut
  // between would lose both. The handle's sync thread waits for that sync
  // while the writers go on (sync_worker.hpp), and meanwhile they look at
  // the chunks after it, so that the wait is not dead time for reclaiming.
  // A chunk is then cut off the list, and handed to the allocator once a
  // later sync has made the root without it durable (release_unlinked).
  release_unlinked();
  if (!may_reclaim()) return;
  // Only this write lock's holder cuts chunks off, below: the oldest stays put meanwhile.
  const std::uint64_t oldest = chunks().first()->ordinal;
  forget_freed(oldest);
  look_ahead(budget, pinned);
  if (cleaned_.empty() || cleaned_.front().ordinal != oldest) return;
  // Where the copies end: here, or before (another handle may have moved some).
  const RecordsEnd copies = cleaned_.front().moved_to;
  if (!durable_through(copies) && (sync_in_background(copies, keep_up) || !durable_through(copies))) return;
  if (pinned()) return;
  unlink_first_chunk();
  cleaned_.erase(cleaned_.begin());
}

void DataFile::forget_freed(std::uint64_t oldest) {
  // Chunks go from the front of the list only, by us or by another handle.
  while (!cleaned_.empty() && cleaned_.front().ordinal < oldest) cleaned_.erase(cleaned_.begin());
  if (reclaim_ordinal_ < oldest) {
    reclaim_ordinal_ = oldest;
    reclaim_pos_ = 0;
  }
}

SyncWorker::Outcome DataFile::collect_sync() {
  RecordsEnd reached;
  const SyncWorker::Outcome o = sync_worker_->collect(reached);
  // True now; another handle may have moved the mark past it meanwhile.
  if (o == SyncWorker::Outcome::done && !durable_through(reached)) {
    set_durable_mark(header(), reached.chunks, reached.used);
  }
  return o;
}

bool DataFile::stage_sync(std::uint64_t leave) {
  const DurableMark mark = durable_mark(header());
  if (!mark.valid) return false;
  RecordsEnd reached;
  std::vector<FileRange> ranges = unsynced_records(mark, kBackgroundSyncStep, reached, leave);
  if (reached.chunks == mark.chunks && reached.used == mark.used) ranges.clear();  // nothing new
  // The root, for the chunks cut off the list: they go to the allocator once it is durable.
  if (!unlinked_.empty()) ranges.push_back({root_offset_, sizeof(Root)});
  if (ranges.empty() || !sync_worker_->stage(fd_.get(), ranges, reached)) return false;
  t_staged_sync = true;
  return true;
}

bool DataFile::sync_in_background(const RecordsEnd& copies, bool keep_up) {
  switch (collect_sync()) {
    case SyncWorker::Outcome::busy:
      t_waits_for_sync = keep_up;
      return false;
    case SyncWorker::Outcome::done:
      if (durable_through(copies)) return false;
      break;  // the next step at once
    case SyncWorker::Outcome::failed:
      sync_records(kSyncStep);  // again, here: its error reaches the caller
      return true;
    case SyncWorker::Outcome::idle:
      break;
  }
  if (!stage_sync(0)) {
    sync_records(kSyncStep);
    return true;
  }
  t_waits_for_sync = keep_up;
  return false;
}

void DataFile::write_behind() {
  // Reclaiming may free a chunk only once the durable mark has passed its
  // copies, and the mark moves in list order: after a bulk load, through
  // every record loaded. Synced as they are appended, they are on disk by
  // then, and the first free waits for a chunk or two, not for 136 MB (a
  // writer waited 150-230 ms for that, or the file grew 0.23x while the
  // writers went on). A step each time a chunk fills, when the thread is free.
  // It costs the writer 1 ms a MiB (the write-back it starts), 15-20% of a
  // bulk load. Begun only once something is dead, the writers caught up
  // with it in the update phases instead (3.3x the best hash file, against
  // 1.9x).
  if (!chunk_filled_ || sync_worker_->busy()) return;
  if (collect_sync() == SyncWorker::Outcome::busy) return;
  chunk_filled_ = false;
  (void)stage_sync(kWriteBehindLag);  // if it cannot, reclaiming syncs itself
}

bool DataFile::work_after_lock() noexcept {
  const bool grow = plan_grow_ahead();  // not short-circuited: it notes what to allocate
  return grow || t_staged_sync || t_waits_for_sync;
}

void DataFile::do_work_after_lock() noexcept {
  grow_ahead();
  if (std::exchange(t_staged_sync, false)) sync_worker_->start();
  // Bounded: a sync behind a busy device took up to 70 ms, and a writer that
  // waited for all of it stalled as long. Each write that finds the writers
  // ahead waits its turn, so they slow down to the device's pace instead.
  constexpr std::chrono::milliseconds kMostWait{4};
  if (std::exchange(t_waits_for_sync, false)) sync_worker_->wait(kMostWait);
}

void DataFile::unlink_first_chunk() {
  // Not handed to the allocator yet: a root read back from the disk may
  // still lead to it, and the allocator may give its bytes to new records at
  // once. Syncing the root here held every reader and writer for 2 ms.
  const AllocatorPhase phase(*this);  // a writer that dies in here leaves a full rebuild
  ChunkHeader* c = chunks().unlink_first();
  unlinked_.push_back({static_cast<std::uint64_t>(reinterpret_cast<char*>(c) - map_.base()),
                       sync_worker_->staged_count() + 1});
  crash_point("reclaim.unlinked");
}

void DataFile::release_unlinked() {
  // A handle that dies first leaks them, a chunk or two: allocated blocks
  // that nothing leads to, which the allocator walk allows and the next
  // compaction drops.
  if (unlinked_.empty()) return;
  if (collect_sync() == SyncWorker::Outcome::busy) return;
  const std::uint64_t durable = sync_worker_->done_count();
  std::size_t n = 0;
  while (n < unlinked_.size() && unlinked_[n].after_sync <= durable) ++n;
  free_unlinked(n);
  // A sync staged after the unlinking makes the root durable.
  if (!unlinked_.empty() && !sync_worker_->busy()) (void)stage_sync(kWriteBehindLag);
}

void DataFile::free_unlinked(std::size_t n) {
  if (n == 0) return;
  const AllocatorPhase phase(*this);  // a writer that dies in here leaves a full rebuild
  for (std::size_t i = 0; i < n; ++i) {
    auto* c = reinterpret_cast<ChunkHeader*>(map_.base() + unlinked_[i].offset);  // NOLINT: a block we unlinked
    c->magic = 0;  // a salvage, which finds chunks by their magic, must not find this one
    segment()->deallocate(c);
    crash_point("reclaim.freed");
  }
  unlinked_.erase(unlinked_.begin(), unlinked_.begin() + static_cast<std::ptrdiff_t>(n));
}

void DataFile::release_unlinked_now() {
  if (unlinked_.empty()) return;
  map_.sync(root_offset_, sizeof(Root), path_);
  free_unlinked(unlinked_.size());
}

void DataFile::look_ahead(std::uint64_t& budget, const std::function<bool()>& pinned) {
  // The chunk appended to is never the one cleaned, so the records looked at
  // here never change; a copy goes to the end of the list. Found by walking
  // from the first: a handful of links, and no offset kept that a chunk
  // freed by another handle could make stale.
  const ChunkHeader* c = chunks().first();
  while (c->ordinal < reclaim_ordinal_ && c->next != nullptr) c = chunks().next(*c);
  if (c->ordinal != reclaim_ordinal_) {  // not on the list (a recovery rewrote it): start again
    cleaned_.clear();
    c = chunks().first();
    reclaim_ordinal_ = c->ordinal;
    reclaim_pos_ = 0;
  }
  while (budget > 0 && cleaned_.size() < kLookAhead && c->next != nullptr) {
    // While records are pinned nothing is freed, and a compaction would catch
    // up on the copies too: about three bytes of moved records per byte its
    // writers wrote (measured here).
    if (reclaim_pos_ == 0 && pinned()) return;
    // By offset: an append may grow the file, and the mapping may move.
    const std::uint64_t at = static_cast<std::uint64_t>(reinterpret_cast<const char*>(c) - map_.base());
    const std::uint64_t data = at + sizeof(ChunkHeader);
    const std::uint64_t used = c->used.load(std::memory_order_acquire);
    const std::uint64_t ordinal = c->ordinal;
    while (reclaim_pos_ < used && budget > 0) {
      // A batch of records, each one's index slot prefetched before any is
      // looked up: the records lie in file order, the slots at random, and
      // one after the other each lookup was a cache miss of its own (a
      // third of an overwrite's time, perf). reclaim_pos_ moves past a
      // record only once it is dealt with: a move may throw (a full disk).
      struct Looked {
        RecordView rec;
        std::uint64_t hash;
      };
      std::array<Looked, kReclaimBatch> batch;
      std::size_t n = 0;
      const HashIndex ix = index();
      for (std::uint64_t pos = reclaim_pos_, left = budget; n < batch.size() && pos < used && left > 0;) {
        RecordView& rec = batch[n].rec;
        if (view_record(map_.base(), map_.size(), data + pos, rec) != RecordFault::none ||
            rec.size > used - pos || !record_intact(rec)) {
          if (n > 0) break;  // the records before it first
          throw Error(Errc::corrupt, path_ + ": record at " + hex_offset(data + pos) +
                                         " fails its checksum; run kvtool check", data + pos);
        }
        batch[n].hash = rec.type == RecordType::put ? key_hash(rec.key, seed_) : 0;
        if (rec.type == RecordType::put) __builtin_prefetch(&ix[batch[n].hash & (ix.count() - 1)]);
        pos += rec.size;
        left -= std::min(left, rec.size);
        ++n;
      }
      for (std::size_t k = 0; k < n; ++k) {
        if (batch[k].rec.type == RecordType::put) move_if_live(batch[k].rec, batch[k].hash);
        reclaim_pos_ += batch[k].rec.size;
        budget -= std::min(budget, batch[k].rec.size);
      }
    }
    if (reclaim_pos_ < used) return;
    cleaned_.push_back({ordinal, chunks().end()});
    reclaim_ordinal_ = ordinal + 1;
    reclaim_pos_ = 0;
    c = chunks().next(*reinterpret_cast<const ChunkHeader*>(map_.base() + at));  // NOLINT: the mapping may have moved
  }
}

bool DataFile::durable_through(const RecordsEnd& end) const noexcept {
  const DurableMark m = durable_mark(header());
  return m.valid && (m.chunks > end.chunks || (m.chunks == end.chunks && m.used >= end.used));
}

void DataFile::move_if_live(const RecordView& rec, std::uint64_t hash) {
  // Live while a slot holds its offset. Offsets only: comparing keys would
  // read the record an overwritten key's slot now points at (a cache miss
  // for every dead version looked at).
  const std::uint64_t i = index().find_offset(hash, rec.offset);
  if (i == HashIndex::kFull) return;  // overwritten or erased since
  // `rec` stays readable if this grows the file: a mapping that moves keeps
  // its old range mapped (mapping.hpp). The index does not move: `i` stays.
  reserve_records(rec.size);
  const std::uint64_t at = append(rec.key, rec.value, RecordType::put, 0);
  index()[i].offset = at;
  mirror_slot(i, index()[i].hash, rec.offset, at);
  root().dead_bytes += rec.size;  // the original
  crash_point("reclaim.moved");
}

}  // namespace kvstore::detail
