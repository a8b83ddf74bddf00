// Space reclamation as the store is written (FORMAT.md "Reclaiming space"):
// the live records of the oldest chunk are appended again, a slice per
// write, and once none is left the chunk is cut off the list and freed. Paid
// in small steps by the writers, so that no put waits for a whole compaction.
#include <algorithm>

#include "crash_point.hpp"
#include "data_file.hpp"
#include "hash.hpp"

namespace kvstore::detail {

bool DataFile::may_reclaim() const noexcept {
  // A version 1 file stays one that a version 1 build reads (format.hpp).
  const Root& r = root();
  return writable_ && header().format_version >= 2 && r.first_chunk != r.last_chunk;
}

DataFile::Reclaimed DataFile::reclaim(std::uint64_t budget, const std::function<bool()>& may_free) {
  if (!may_reclaim()) return Reclaimed::nothing;
  // The chunk appended to is never the one cleaned (may_reclaim), so the
  // records looked at here never change; a copy goes to the end of the list.
  const ChunkHeader* first = resolve(root().first_chunk, sizeof(ChunkHeader));
  if (first == nullptr || !chunks().plausible(*first)) {
    throw Error(Errc::corrupt, path_ + ": the first chunk is damaged; run kvtool check");
  }
  if (first->ordinal != reclaim_ordinal_) {  // another handle freed the one we were at
    reclaim_ordinal_ = first->ordinal;
    reclaim_pos_ = 0;
  }
  // By offset: an append may grow the file, and the mapping may move.
  const std::uint64_t data = static_cast<std::uint64_t>(reinterpret_cast<const char*>(first + 1) - map_.base());
  const std::uint64_t used = first->used.load(std::memory_order_acquire);
  const std::uint64_t start = reclaim_pos_;
  while (reclaim_pos_ < used && reclaim_pos_ - start < budget) {
    RecordView rec{};
    if (view_record(map_.base(), map_.size(), data + reclaim_pos_, rec) != RecordFault::none ||
        rec.size > used - reclaim_pos_ || !record_intact(rec)) {
      throw Error(Errc::corrupt, path_ + ": record at " + hex_offset(data + reclaim_pos_) +
                                     " fails its checksum; run kvtool check", data + reclaim_pos_);
    }
    if (rec.type == RecordType::put) move_if_live(rec);
    reclaim_pos_ += rec.size;
  }
  if (reclaim_pos_ < used) return Reclaimed::moved;
  if (!may_free() || !free_first_chunk()) return Reclaimed::waiting;
  return Reclaimed::freed;
}

void DataFile::move_if_live(const RecordView& rec) {
  bool found = false;
  const std::uint64_t i = probe(rec.key, key_hash(rec.key, seed_), found);
  if (!found || index()[i].offset != rec.offset) return;  // overwritten or erased since
  // `rec` stays readable if this grows the file: a mapping that moves keeps
  // its old range mapped (mapping.hpp). The index does not move: `i` stays.
  reserve_records(rec.size);
  const std::uint64_t at = append(rec.key, rec.value, RecordType::put, 0);
  index()[i].offset = at;
  root().dead_bytes += rec.size;  // the original
  crash_point("reclaim.moved");
}

bool DataFile::free_first_chunk() {
  // The copies must be on disk before the originals can go: a power cut
  // between would lose both. And the unlinking must be on disk before the
  // chunk is handed back: a root read back from the disk may still lead to
  // it, and the allocator may give its bytes to new records at once.
  // A step of the sync per write: 2 MiB took 6.7 ms here, most of it for the
  // pages write-protected again (a TLB flush each).
  constexpr std::uint64_t kSyncStep = 512 * 1024;
  if (!sync_records(kSyncStep)) return false;
  const AllocatorPhase phase(*this);  // a writer that dies in here leaves a full rebuild
  ChunkHeader* c = chunks().unlink_first();
  crash_point("reclaim.unlinked");
  map_.sync(root_offset_, sizeof(Root), path_);
  c->magic = 0;  // a salvage, which finds chunks by their magic, must not find this one
  segment()->deallocate(c);
  crash_point("reclaim.freed");
  return true;
}

}  // namespace kvstore::detail
