// Slot-less access to the lock file (lock.hpp, "Slot-less readers"): opening
// it read-only, or going without one; the seqlock that validates optimistic
// reads; telling a dead writer from a slow one.
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/stat.h>

#include <cerrno>
#include <thread>

#include "kvstore/error.hpp"
#include "lock.hpp"
#include "lock_futex.hpp"
#include "lock_ofd.hpp"

namespace kvstore::detail {

void LockFile::open_read_only(std::chrono::steady_clock::time_point deadline) {
  access_ = Access::none;
  slot_index_ = ~std::uint32_t{0};  // no slot: attached() counts every live one
  fd_ = Fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  const auto go_without = [&] {
    fd_ = Fd();
    map_ = Mapping();
    private_ = std::make_unique<LockShared>();
    shared_ = private_.get();
    access_ = Access::none;
    // Identity for refuse_reentry(): the data file's (the lock file's path minus ".lock").
    struct stat st {};
    const std::string data = path_.substr(0, path_.size() - 5);
    if (::stat(data.c_str(), &st) == 0) identity_ = identity_of(st);
  };
  if (!fd_) {
    if (errno == ENOENT) return go_without();
    throw_errno(path_, "open lock file", errno);
  }
  for (;;) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) throw_errno(path_, "stat lock file", errno);
    identity_ = identity_of(st);
    const bool attached = anyone_attached();
    std::uint64_t magic = 0;
    if (static_cast<std::uint64_t>(st.st_size) == sizeof(LockShared)) {
      // Safe to map: a first attacher rebuilds a lock file of this size in
      // place, never truncating it (see the constructor).
      map_ = Mapping(fd_.get(), sizeof(LockShared), false, path_);
      shared_ = reinterpret_cast<LockShared*>(map_.base());  // NOLINT: the lock file's one object
      magic = __atomic_load_n(&shared_->magic, __ATOMIC_ACQUIRE);
      if (compatible(*shared_)) {
        access_ = Access::read_only;
        return;
      }
      map_ = Mapping();
      shared_ = nullptr;
    }
    // Nobody attached: the file is stale or from another build, and tells
    // nothing about a writer (there is none). Read the data file alone.
    if (!attached) return go_without();
    if (magic != 0) throw_incompatible();
    // A live handle is setting it up right now (the magic is written last).
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Errc::busy, path_ + ": the lock file was not set up within " +
                                  std::to_string(timeout_.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool LockFile::attach_in_progress() const noexcept {
  if (!fd_) return false;
  return ofd_held_elsewhere(fd_.get(), kAttachMutexByte);
}

std::uint64_t LockFile::settled_change_count() const noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  for (;;) {
    const std::uint64_t n = shared_->change_count.load(std::memory_order_acquire);
    // A rebuild zeroes the count (and only while the attach byte is held): a
    // nonzero count is a real one; a zero one is, once no attach is under way.
    if (n != 0 || !attach_in_progress()) {
      const std::uint64_t again = shared_->change_count.load(std::memory_order_acquire);
      if (again == n) return n;
      continue;
    }
    if (std::chrono::steady_clock::now() >= deadline) return n;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

bool LockFile::writer_died(std::uint64_t odd_seq) const noexcept {
  // The writer mutex is robust: when its owner dies the kernel clears the
  // owner's thread id in the lock word and sets FUTEX_OWNER_DIED (glibc keeps
  // that word in __data.__lock). A writer that released the lock made the word
  // even first, so odd + no live owner, with write_seq unchanged across both
  // looks, is a death. So is odd with no handle attached at all (the lock file
  // outlived a crash, perhaps a reboot, where no kernel cleaned up).
  const bool attached = anyone_attached();
  const int word = __atomic_load_n(&shared_->writer.__data.__lock, __ATOMIC_ACQUIRE);
  std::atomic_thread_fence(std::memory_order_acquire);
  if (shared_->write_seq.load(std::memory_order_relaxed) != odd_seq) return false;
  const auto w = static_cast<std::uint32_t>(word);
  return !attached || (w & FUTEX_OWNER_DIED) != 0 || (w & FUTEX_TID_MASK) == 0;
}

std::uint64_t LockFile::read_begin(std::chrono::steady_clock::time_point deadline) const {
  for (std::uint32_t spins = 0;; ++spins) {
    const std::uint64_t s = shared_->write_seq.load(std::memory_order_acquire);
    if ((s & 1) == 0) return s;
    if (spins < 64) {
      cpu_relax();
      continue;
    }
    if ((spins & 7) == 0 && writer_died(s)) {
      throw Error(Errc::busy, path_ + ": a writer died while changing the store; it needs recovery by a "
                                      "process that may write it (any read-write open recovers it)");
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Errc::busy, path_ + ": a writer held the store for longer than " +
                                  std::to_string(timeout_.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(spins < 256 ? 20 : 200));
  }
}

}  // namespace kvstore::detail
