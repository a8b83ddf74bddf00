// A data file this handle stopped using (another handle replaced it, or it
// was remapped), let go a step at a time by the calls that follow.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "data_file.hpp"

namespace kvstore::detail {

// Unmapping a large, well-used file at once takes long here: 13-32 ms for 1M
// keys (its page tables are torn down page by page, with a TLB shootdown for
// the other threads), which the get or put that found the file replaced
// would wait for. So each call after it drops the mappings of the next 2 MiB
// (MADV_DONTNEED: the data stays in the file and the page cache, and whoever
// still reads the file, such as a for_each in progress, faults it back in),
// and the file goes once nothing is left mapped.
class Retiring {
 public:
  Retiring() = default;
  Retiring(const Retiring&) = delete;
  Retiring& operator=(const Retiring&) = delete;

  // Takes `file` over (null: nothing to do). One still being let go goes at once.
  void add(std::shared_ptr<DataFile> file) noexcept {
    if (file != nullptr) replace(std::move(file));
  }
  // One step; a load and a branch when there is nothing to do.
  void step() noexcept {
    if (pending_.load(std::memory_order_relaxed)) step_slow();
  }
  // Lets the file go at once.
  void clear() noexcept { replace(nullptr); }

 private:
  void replace(std::shared_ptr<DataFile> file) noexcept;
  void step_slow() noexcept;

  std::atomic<bool> pending_{false};
  std::mutex mutex_;
  std::shared_ptr<DataFile> file_;  // under mutex_
  std::uint64_t done_ = 0;          // bytes of it dropped so far
};

// A writable descriptor of the file `file` has open, by `path` while the path
// still names it (same device and inode); invalid if not.
[[nodiscard]] Fd open_writable_twin(const std::string& path, const DataFile& file) noexcept;

// Frees the file behind `fd`, which must be unlinked and open nowhere else
// (DataFile::open_elsewhere), a few MiB at a time from its end with a pause
// between: freeing 150 MB of page cache at once holds a CPU in the kernel
// for 55-100 ms here. Best effort: what is left goes with the last close.
void shrink_in_steps(const Fd& fd) noexcept;

}  // namespace kvstore::detail
