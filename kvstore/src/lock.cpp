#include "lock.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>

#include "crash_point.hpp"
#include "kvstore/error.hpp"

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kLockMagic = 0x4b434f4c53564bULL;  // "KVSLOCK"
constexpr std::uint32_t kLockVersion = 1;
// OFD lock bytes (FORMAT.md "Lock file"): they need not lie inside the file.
constexpr off_t kAttachMutexByte = 0;  // exclusive while attaching or detaching
constexpr off_t kAttachedByte = 1;     // shared by every attached handle
constexpr off_t kSlotByteBase = 1024;  // + i: held exclusively by the owner of slot i

bool ofd_lock(int fd, short type, off_t byte) noexcept {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

// Polls for the lock: F_OFD_SETLKW cannot time out, and a bounded wait is a promise.
bool ofd_lock_until(int fd, short type, off_t byte,
                    std::chrono::steady_clock::time_point deadline) noexcept {
  while (!ofd_lock(fd, type, byte)) {
    if (errno != EAGAIN && errno != EACCES && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

timespec realtime_deadline(std::chrono::milliseconds timeout) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const auto ms = timeout.count();
  ts.tv_sec += static_cast<time_t>(ms / 1000);
  ts.tv_nsec += static_cast<long>((ms % 1000) * 1'000'000);
  if (ts.tv_nsec >= 1'000'000'000) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1'000'000'000;
  }
  return ts;
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

LockFile::LockFile(const std::string& lock_path, std::chrono::milliseconds timeout)
    : path_(lock_path), timeout_(timeout) {
  fd_ = Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666));
  if (!fd_) throw_errno(lock_path, "open lock file", errno);
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  if (!ofd_lock_until(fd_.get(), F_WRLCK, kAttachMutexByte, deadline)) {
    throw Error(Errc::busy, lock_path + ": timed out waiting to attach");
  }
  attach_held_ = true;
  first_ = ofd_lock(fd_.get(), F_WRLCK, kAttachedByte);
  const int fd = fd_.get();
  if (first_) {
    // Nobody else is attached: whatever the file holds is stale. Start afresh.
    if (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, sizeof(LockShared)) != 0) {
      throw_errno(lock_path, "truncate lock file", errno);
    }
  } else {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno(lock_path, "stat lock file", errno);
    if (static_cast<std::uint64_t>(st.st_size) != sizeof(LockShared)) {
      throw Error(Errc::version_mismatch,
                  lock_path + ": lock file in use by an incompatible kvstore build");
    }
  }
  map_ = Mapping(fd, sizeof(LockShared), true, lock_path);
  shared_ = reinterpret_cast<LockShared*>(map_.base());  // NOLINT: the lock file's one object
  if (first_) {
    new (shared_) LockShared{};
    pthread_mutexattr_t attr;
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
    const int rc = pthread_mutex_init(&shared_->writer, &attr);
    pthread_mutexattr_destroy(&attr);
    if (rc != 0) throw_errno(lock_path, "pthread_mutex_init", rc);
    shared_->slot_count = kReaderSlots;
    shared_->version = kLockVersion;
    shared_->magic = kLockMagic;
  } else if (shared_->magic != kLockMagic || shared_->version != kLockVersion ||
             shared_->slot_count != kReaderSlots) {
    throw Error(Errc::version_mismatch,
                lock_path + ": lock file in use by an incompatible kvstore build");
  }
  if (!ofd_lock(fd, F_RDLCK, kAttachedByte)) throw_errno(lock_path, "lock attach byte", errno);
  for (std::uint32_t i = 0; i < kReaderSlots; ++i) {
    if (ofd_lock(fd, F_WRLCK, kSlotByteBase + static_cast<off_t>(i))) {
      slot_index_ = i;
      slot_ = &shared_->slots[i];
      break;
    }
  }
  if (slot_ == nullptr) {
    throw Error(Errc::busy, lock_path + ": all " + std::to_string(kReaderSlots) +
                                " reader slots are taken (too many open handles)");
  }
  crash_point("attach.slot_claimed");
  // A dead previous owner may have left a count behind; the slot is ours now.
  slot_->readers.store(0, std::memory_order_seq_cst);
  std::uint32_t high = shared_->slot_high.load();
  while (high < slot_index_ + 1 && !shared_->slot_high.compare_exchange_weak(high, slot_index_ + 1)) {
  }
}

LockFile::~LockFile() = default;  // unmapping and closing drop every OFD lock

void LockFile::finish_attach() noexcept {
  if (attach_held_) {
    ofd_lock(fd_.get(), F_UNLCK, kAttachMutexByte);
    attach_held_ = false;
  }
}

bool LockFile::begin_detach() noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  if (!ofd_lock_until(fd_.get(), F_WRLCK, kAttachMutexByte, deadline)) return false;
  attach_held_ = true;
  // Upgrading our shared lock succeeds only if no other handle holds one.
  return ofd_lock(fd_.get(), F_WRLCK, kAttachedByte);
}

LockFile::WriteResult LockFile::lock_mutex() {
  const timespec ts = realtime_deadline(timeout_);
  const int rc = pthread_mutex_timedlock(&shared_->writer, &ts);
  if (rc == 0) return WriteResult::ok;
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&shared_->writer);
    return WriteResult::owner_died;
  }
  if (rc == ETIMEDOUT) {
    throw Error(Errc::busy, path_ + ": write lock not granted within " +
                                std::to_string(timeout_.count()) + " ms");
  }
  throw_errno(path_, "lock", rc);
}

void LockFile::exclude_readers() {
  shared_->writer_active.store(1, std::memory_order_seq_cst);
  try {
    wait_for_readers();
  } catch (...) {
    unlock_write();
    throw;
  }
}

LockFile::WriteResult LockFile::lock_write() {
  const WriteResult r = lock_mutex();
  exclude_readers();
  return r;
}

void LockFile::unlock_write() noexcept {
  shared_->writer_active.store(0, std::memory_order_seq_cst);
  pthread_mutex_unlock(&shared_->writer);
}

LockFile::WriteResult LockFile::wait_for_writer() {
  const WriteResult r = lock_mutex();
  if (r == WriteResult::ok) {
    pthread_mutex_unlock(&shared_->writer);
    return r;
  }
  exclude_readers();  // the writer died: we hold its mutex now, and act as the writer
  return r;
}

bool LockFile::slot_owner_alive(std::uint32_t i) const noexcept {
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kSlotByteBase + static_cast<off_t>(i);
  fl.l_len = 1;
  if (::fcntl(fd_.get(), F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume alive
  return fl.l_type != F_UNLCK;
}

void LockFile::wait_for_readers() {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  const std::uint32_t high = shared_->slot_high.load(std::memory_order_seq_cst);
  for (std::uint32_t i = 0; i < high; ++i) {
    ReaderSlot& s = shared_->slots[i];
    for (std::uint32_t spins = 0; s.readers.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins < 256) {
        cpu_relax();
        continue;
      }
      // Slow: a reader is long inside, or dead. Our own slot's owner is us, and
      // the kernel would not report our own lock, so never skip it.
      if (i != slot_index_ && (spins & 255) == 0 && !slot_owner_alive(i)) break;
      if (std::chrono::steady_clock::now() >= deadline) {
        throw Error(Errc::busy, path_ + ": readers did not leave within " +
                                    std::to_string(timeout_.count()) + " ms");
      }
      if (spins < 2048) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
}

std::uint32_t LockFile::attached() const noexcept {
  std::uint32_t n = 1;  // this handle
  const std::uint32_t high = shared_->slot_high.load();
  for (std::uint32_t i = 0; i < high; ++i) {
    if (i != slot_index_ && slot_owner_alive(i)) ++n;
  }
  return n;
}

}  // namespace kvstore::detail
