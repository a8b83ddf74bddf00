// Space reclamation as the store is written (FORMAT.md "Reclaiming space"):
// the live records of the oldest chunk are appended again, a slice per
// write, and once none is left the chunk is cut off the list and freed. Paid
// in small steps by the writers, so that no put waits for a whole compaction.
#include <algorithm>
#include <utility>

#include "crash_point.hpp"
#include "data_file.hpp"
#include "hash.hpp"

namespace kvstore::detail {
namespace {

// Records synced per write while a freed chunk waits for its copies to be
// durable: 2 MiB took 6.7 ms here, most of it for the pages write-protected
// again (a TLB flush each).
constexpr std::uint64_t kSyncStep = 512 * 1024;

// Set when this thread's reclaiming found the sync it needs queued or running
// for another thread of the handle: its write then waits for it after the lock.
thread_local bool t_waits_for_sync = false;

}  // namespace

bool DataFile::may_reclaim() const noexcept {
  // A version 1 file stays one that a version 1 build reads (format.hpp).
  const Root& r = root();
  return writable_ && header().format_version >= 2 && r.first_chunk != r.last_chunk;
}

void DataFile::reclaim(std::uint64_t budget, const std::function<bool()>& pinned) {
  // The copies must be on disk before the originals can go: a power cut
  // between would lose both. That sync goes a step per write, after the
  // write lock (5-10 ms here, which every reader waited for under the lock);
  // the free then needs a flush of its own in the lock, which finds little
  // left to write (0.2-1.5 ms). No write waits for two. Chunk after chunk
  // while the budget lasts.
  bool flushed = false;
  while (may_reclaim()) {
    if (!look_at_oldest(budget, pinned)) return;
    // Where the copies end: here, or before (another handle may have moved some).
    if (reclaim_moved_to_.chunks == 0) reclaim_moved_to_ = chunks().end();
    if (flushed || pinned()) return;
    if (!durable_through(reclaim_moved_to_) &&
        (sync_records_after_unlock() || !durable_through(reclaim_moved_to_))) {
      return;
    }
    flushed = true;
    free_first_chunk();
  }
}

bool DataFile::sync_records_after_unlock() {
  QueuedSync& q = *deferred_;
  std::unique_lock lock(q.m);
  switch (q.state) {
    case QueuedSync::State::queued:
    case QueuedSync::State::running:  // another thread of this handle, after its lock
      t_waits_for_sync = true;
      return false;
    case QueuedSync::State::done:
      q.state = QueuedSync::State::idle;
      // True now; another handle may have moved the mark past it meanwhile.
      if (!durable_through(q.reached)) set_durable_mark(header(), q.reached.chunks, q.reached.used);
      return false;
    case QueuedSync::State::failed:
      q.state = QueuedSync::State::idle;
      lock.unlock();
      sync_records(kSyncStep);  // again, here: its error reaches the caller
      return true;
    case QueuedSync::State::idle:
      break;
  }
  const DurableMark mark = durable_mark(header());
  if (!mark.valid) {
    lock.unlock();
    sync_records(kSyncStep);
    return true;
  }
  q.ranges = unsynced_records(mark, kSyncStep, q.reached);
  q.state = QueuedSync::State::queued;
  q.queued.store(true, std::memory_order_release);
  return false;
}

bool DataFile::work_after_lock() const noexcept {
  return t_waits_for_sync || (deferred_ && deferred_->queued.load(std::memory_order_acquire));
}

void DataFile::do_work_after_lock() noexcept {
  QueuedSync& q = *deferred_;
  std::unique_lock lock(q.m);
  if (q.state == QueuedSync::State::queued) {
    q.state = QueuedSync::State::running;
    q.queued.store(false, std::memory_order_relaxed);
    const std::vector<FileRange> ranges = std::move(q.ranges);
    lock.unlock();
    const int err = write_back_and_flush(fd_.get(), ranges);
    lock.lock();
    q.state = err == 0 ? QueuedSync::State::done : QueuedSync::State::failed;
    q.finished.notify_all();
  } else if (std::exchange(t_waits_for_sync, false)) {
    q.finished.wait(lock, [&] {
      return q.state != QueuedSync::State::queued && q.state != QueuedSync::State::running;
    });
  }
  t_waits_for_sync = false;
}

bool DataFile::look_at_oldest(std::uint64_t& budget, const std::function<bool()>& pinned) {
  // The chunk appended to is never the one cleaned (may_reclaim), so the
  // records looked at here never change; a copy goes to the end of the list.
  const ChunkHeader* first = resolve(root().first_chunk, sizeof(ChunkHeader));
  if (first == nullptr || !chunks().plausible(*first)) {
    throw Error(Errc::corrupt, path_ + ": the first chunk is damaged; run kvtool check");
  }
  if (first->ordinal != reclaim_ordinal_) {  // freed, by us or by another handle
    reclaim_ordinal_ = first->ordinal;
    reclaim_pos_ = 0;
    reclaim_moved_to_ = {};
  }
  // While records are pinned nothing is freed, and a compaction would catch
  // up on the copies too: about three bytes of moved records per byte its
  // writers wrote (measured here).
  if (reclaim_pos_ == 0 && pinned()) return false;
  // By offset: an append may grow the file, and the mapping may move.
  const std::uint64_t data = static_cast<std::uint64_t>(reinterpret_cast<const char*>(first + 1) - map_.base());
  const std::uint64_t used = first->used.load(std::memory_order_acquire);
  while (reclaim_pos_ < used && budget > 0) {
    RecordView rec{};
    if (view_record(map_.base(), map_.size(), data + reclaim_pos_, rec) != RecordFault::none ||
        rec.size > used - reclaim_pos_ || !record_intact(rec)) {
      throw Error(Errc::corrupt, path_ + ": record at " + hex_offset(data + reclaim_pos_) +
                                     " fails its checksum; run kvtool check", data + reclaim_pos_);
    }
    if (rec.type == RecordType::put) move_if_live(rec);
    reclaim_pos_ += rec.size;
    budget -= std::min(budget, rec.size);
  }
  return reclaim_pos_ >= used;
}

bool DataFile::durable_through(const RecordsEnd& end) const noexcept {
  const DurableMark m = durable_mark(header());
  return m.valid && (m.chunks > end.chunks || (m.chunks == end.chunks && m.used >= end.used));
}

void DataFile::move_if_live(const RecordView& rec) {
  // Live while a slot holds its offset. Offsets only: comparing keys would
  // read the record an overwritten key's slot now points at (a cache miss
  // for every dead version looked at).
  const std::uint64_t i = index().find_offset(key_hash(rec.key, seed_), rec.offset);
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

void DataFile::free_first_chunk() {
  // The unlinking must be on disk before the chunk is handed back: a root
  // read back from the disk may still lead to it, and the allocator may give
  // its bytes to new records at once.
  const AllocatorPhase phase(*this);  // a writer that dies in here leaves a full rebuild
  ChunkHeader* c = chunks().unlink_first();
  crash_point("reclaim.unlinked");
  map_.sync(root_offset_, sizeof(Root), path_);
  c->magic = 0;  // a salvage, which finds chunks by their magic, must not find this one
  segment()->deallocate(c);
  crash_point("reclaim.freed");
}

}  // namespace kvstore::detail
