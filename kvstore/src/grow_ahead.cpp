// Growing ahead: the blocks of the file's next grow are allocated after a
// write lock, not inside the one whose write needs them.
//
// grow() extends the file with fallocate under the write lock. When ext4
// has not read the bitmap of the block group it allocates from, that read
// waits for the device: behind a compaction's writes and syncs, a put that
// grew the file waited 24 ms for it in kvbench, and every get waited for
// that put's lock. So once the free space runs low, the writer that sees it
// allocates the blocks of the next grow beyond the end of the file
// (FALLOC_FL_KEEP_SIZE: the size, which readers map up to, does not change),
// after its lock; the grow then only sets the size. If that allocation
// fails, the grow allocates as before and reports the error.
//
// Only the first kAhead bytes of a larger grow: blocks past the end count as
// disk used, and a store that reclaims as it goes may never grow again (a
// whole step ahead, an eighth of the file, left kvbench's churn after a
// compaction at 2.08x the raw bytes once, against 1.85x). The rest is
// allocated under the lock, mostly from the block group just read; the
// whole step did better there (a compaction benchmark's worst get 4.2-8.3 ms
// in 30 runs, against 4.7-14.7 ms in 10 runs with 4 MiB), but kept the
// room from the disk.
#include <fcntl.h>

#include <algorithm>
#include <utility>

#include "data_file.hpp"

namespace kvstore::detail {
namespace {

// Low free space: less than this, or half of a small file (a grow doubles it,
// and a chunk may take a good part of what is left).
constexpr std::uint64_t kLowFree = std::uint64_t{4} << 20;
// At most this far past the end.
constexpr std::uint64_t kAhead = std::uint64_t{4} << 20;

struct GrowAhead {
  int fd = -1;
  std::uint64_t from = 0;
  std::uint64_t to = 0;
};
thread_local GrowAhead t_grow_ahead;

}  // namespace

bool DataFile::plan_grow_ahead() noexcept {
  if (!writable_ || map_.is_anonymous()) return false;
  const std::uint64_t size = map_.size();
  if (free_bytes() >= std::min(kLowFree, size / 2)) return false;  // most writes: room enough
  const std::uint64_t to = std::min({grown_size(0), size + kAhead, max_size_ / kPageSize * kPageSize});
  if (to <= size || to <= allocated_ahead_) return false;
  allocated_ahead_ = to;  // once per handle and size; should it fail, grow() allocates
  t_grow_ahead = {fd_.get(), size, to};
  return true;
}

void DataFile::grow_ahead() noexcept {
  const GrowAhead g = std::exchange(t_grow_ahead, GrowAhead{});
  if (g.fd < 0) return;
  // Best effort by design: see above.
  (void)::fallocate(g.fd, FALLOC_FL_KEEP_SIZE, static_cast<off_t>(g.from), static_cast<off_t>(g.to - g.from));
}

}  // namespace kvstore::detail
