// The batch rule of a replay (FORMAT.md "Records", flags): a record outside
// any batch counts at once; a batch's records count only once its last record
// is there. Shared by recovery's replay and a compaction's catch-up, which
// read the same history and must agree on what it holds.
#pragma once

#include <vector>

#include "record.hpp"

namespace kvstore::detail {

class BatchReplay {
 public:
  // Hands `r` to `count` if it counts now, or a whole batch's records, in
  // order, when `r` completes it.
  template <class Count>
  void feed(const RecordView& r, Count&& count) {
    // A batch's records are appended together under the write lock, so any
    // record outside it, or another batch's first, means the batch being
    // collected was abandoned (its writer died).
    if ((r.flags & kInBatch) == 0 || (r.flags & kBatchBegin) != 0) pending_.clear();
    if ((r.flags & kInBatch) == 0) {
      count(r);
      return;
    }
    pending_.push_back(r);
    if ((r.flags & kBatchEnd) != 0) {
      for (const RecordView& p : pending_) count(p);
      pending_.clear();
    }
  }
  // Damaged bytes may have held part of the batch being collected (a salvage
  // resumes after them): it can no longer be proven whole.
  void damaged() noexcept { pending_.clear(); }

 private:
  std::vector<RecordView> pending_;
};

}  // namespace kvstore::detail
