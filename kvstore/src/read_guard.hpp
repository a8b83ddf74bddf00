// Optimistic reads for handles without a reader slot (LockFile::slotless():
// the user may read the lock file but not write it, or no lock file exists).
// A ReadGuard marks the start of one attempt; valid() says whether what was
// read since is one committed state. Store::Impl runs every read of such a
// handle as attempts until one validates (see Store::Impl::optimistic).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "data_file.hpp"
#include "lock.hpp"

namespace kvstore::detail {

// Thrown to start an attempt over. Not a std::exception, so that nothing
// between the throw and Store::Impl::optimistic takes it for an error.
struct ReadRetry {};

// Thrown by View::get when a writer moved the state since the view began: an
// Error (busy), so that the C API and Python report it as such when it
// escapes there; a C++ callback it escapes runs again.
class ViewMoved : public Error {
 public:
  using Error::Error;
};

class ReadGuard {
 public:
  // Waits until no writer holds the lock (LockFile::read_begin: busy at the
  // deadline, or at once if the writer died).
  ReadGuard(const LockFile& lock, const DataFile& file, std::chrono::steady_clock::time_point deadline)
      : lock_(lock), file_(file), seq_(lock.read_begin(deadline)) {
    if (lock.access() == LockFile::Access::none) {
      const FileHeader& h = file.header();
      changes_ = __atomic_load_n(&h.change_count, __ATOMIC_ACQUIRE);
      generation_ = h.generation.load(std::memory_order_acquire);
    }
  }

  // Whether no writer can have changed the data file since the constructor.
  // With a lock file: its write_seq did not move. Without one (Access::none,
  // which Store::Impl allows only for a clean file): the data file is still
  // clean, live, idle, at the same change count and generation. A writer
  // clears `clean` before its first change to a clean file (Store::Impl::Change),
  // every commit moves the change count, every grow the generation, and a
  // compaction or recovery retires the file.
  [[nodiscard]] bool valid() const noexcept {
    if (!lock_.read_unchanged(seq_)) return false;
    if (lock_.access() != LockFile::Access::none) return true;
    const FileHeader& h = file_.header();
    return h.clean.load(std::memory_order_relaxed) == 1 && h.writing.load(std::memory_order_relaxed) == kIdle &&
           h.state.load(std::memory_order_relaxed) == static_cast<std::uint32_t>(FileState::live) &&
           __atomic_load_n(&h.change_count, __ATOMIC_RELAXED) == changes_ &&
           h.generation.load(std::memory_order_relaxed) == generation_;
  }
  // Throws ViewMoved unless valid().
  void check_view(const std::string& path) const {
    if (!valid()) {
      throw ViewMoved(Errc::busy, path + ": a writer changed the store during this view (a read-only handle "
                                         "without a reader slot cannot hold writers off); run the view again");
    }
  }

 private:
  const LockFile& lock_;
  const DataFile& file_;
  std::uint64_t seq_;
  std::uint64_t changes_ = 0;
  std::uint64_t generation_ = 0;
};

}  // namespace kvstore::detail
