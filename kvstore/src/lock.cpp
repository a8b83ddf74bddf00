#include "lock.hpp"

#include <fcntl.h>
#include <sched.h>
#include <linux/futex.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <ctime>
#include <new>
#include <thread>

#include "crash_point.hpp"
#include "kvstore/error.hpp"

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kLockMagic = 0x4b434f4c53564bULL;  // "KVSLOCK"
constexpr std::uint32_t kLockVersion = 4;  // 3: change_count, change_seq, change_waiters; 4: write_seq
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

// A queue whose head has not moved for this long, with the mutex free, is jumped.
constexpr auto kQueueStall = std::chrono::milliseconds(20);
// A queue head kept from the mutex this long closes the fast path (Go's sync.Mutex
// uses 1 ms; on two cores shared by ten processes that is a scheduling delay, not starvation).
constexpr auto kStarving = std::chrono::milliseconds(10);
// Attempts a turned-away reader makes before it queues (wait_and_enter_read).
constexpr int kReadRetries = 8;

void futex_wait(std::atomic<std::uint32_t>& word, std::uint32_t expected, std::chrono::microseconds at_most) noexcept {
  timespec ts{0, static_cast<long>(at_most.count() * 1000)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);  // NOLINT
}

// The same, for any wait: a relative timeout of whole seconds and nanoseconds.
void futex_wait_for(std::atomic<std::uint32_t>& word, std::uint32_t expected,
                    std::chrono::nanoseconds at_most) noexcept {
  const auto ns = std::max<std::int64_t>(at_most.count(), 0);
  timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAIT, expected, &ts, nullptr, 0);  // NOLINT
}

void futex_wake_all(std::atomic<std::uint32_t>& word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<std::uint32_t*>(&word), FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);  // NOLINT
}

// Whether a lock call's result `rc` means we hold the mutex now; a dead
// previous owner (EOWNERDEAD) is reported through `r` after making it usable.
bool took_mutex(pthread_mutex_t& m, int rc, LockFile::WriteResult& r) noexcept {
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&m);
    r = LockFile::WriteResult::owner_died;
    return true;
  }
  return rc == 0;
}

// Ticket order with wrap-around: is `a` at or before `b`?
bool not_after(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) <= 0; }

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// FORMAT.md "Lock file" gives this offset: slot-less readers of other builds rely on it.
static_assert(offsetof(LockShared, write_seq) == 272);
static_assert(offsetof(LockShared, slots) == 320);
static_assert(offsetof(LockShared, change_waiters) + 4 == offsetof(LockShared, write_seq));

}  // namespace

LockFile::LockFile(const std::string& lock_path, std::chrono::milliseconds timeout, bool read_only_fallback)
    : path_(lock_path), timeout_(timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  fd_ = Fd(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666));
  if (!fd_) {
    const int err = errno;
    if (read_only_fallback && (err == EACCES || err == EPERM || err == EROFS)) {
      open_read_only(deadline);
      return;
    }
    throw_errno(lock_path, "open lock file", err);
  }
  if (!ofd_lock_until(fd_.get(), F_WRLCK, kAttachMutexByte, deadline)) {
    throw Error(Errc::busy, lock_path + ": timed out waiting to attach");
  }
  attach_held_ = true;
  first_ = ofd_lock(fd_.get(), F_WRLCK, kAttachedByte);
  const int fd = fd_.get();
  bool reuse_in_place = false;
  if (first_) {
    // Nobody else is attached: whatever the file holds is stale. Start afresh;
    // in place when the size is right: a slot-less reader may have it mapped,
    // and truncating it under that mapping would be a SIGBUS there.
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno(lock_path, "stat lock file", errno);
    reuse_in_place = static_cast<std::uint64_t>(st.st_size) == sizeof(LockShared);
    if (!reuse_in_place && (::ftruncate(fd, 0) != 0 || ::ftruncate(fd, sizeof(LockShared)) != 0)) {
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
  {
    struct stat st {};
    if (::fstat(fd, &st) != 0) throw_errno(lock_path, "stat lock file", errno);
    identity_ = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
  }
  map_ = Mapping(fd, sizeof(LockShared), true, lock_path);
  shared_ = reinterpret_cast<LockShared*>(map_.base());  // NOLINT: the lock file's one object
  if (first_) {
    // Zero everything but write_seq, which goes on from where it was (any
    // value will do, even a stale one): were it reset, a slot-less reader
    // could see the same value before and after a change. A truncated file
    // is all zeros already. (All zeros is the initial state of every field;
    // the mutex is initialised below.)
    if (reuse_in_place) {
      std::memset(static_cast<void*>(shared_), 0, offsetof(LockShared, write_seq));
      std::memset(static_cast<void*>(&shared_->slots[0]), 0, sizeof shared_->slots);
    }
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
    if (::stat(data.c_str(), &st) == 0) {
      identity_ = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
    }
  };
  if (!fd_) {
    if (errno == ENOENT) return go_without();
    throw_errno(path_, "open lock file", errno);
  }
  for (;;) {
    struct stat st {};
    if (::fstat(fd_.get(), &st) != 0) throw_errno(path_, "stat lock file", errno);
    identity_ = {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
    const bool attached = anyone_attached();
    std::uint64_t magic = 0;
    if (static_cast<std::uint64_t>(st.st_size) == sizeof(LockShared)) {
      // Safe to map: a first attacher rebuilds a lock file of this size in
      // place, never truncating it (see the constructor).
      map_ = Mapping(fd_.get(), sizeof(LockShared), false, path_);
      shared_ = reinterpret_cast<LockShared*>(map_.base());  // NOLINT: the lock file's one object
      magic = __atomic_load_n(&shared_->magic, __ATOMIC_ACQUIRE);
      if (magic == kLockMagic && shared_->version == kLockVersion && shared_->slot_count == kReaderSlots) {
        access_ = Access::read_only;
        return;
      }
      map_ = Mapping();
      shared_ = nullptr;
    }
    // Nobody attached: the file is stale or from another build, and tells
    // nothing about a writer (there is none). Read the data file alone.
    if (!attached) return go_without();
    if (magic != 0) {
      throw Error(Errc::version_mismatch, path_ + ": lock file in use by an incompatible kvstore build");
    }
    // A live handle is setting it up right now (the magic is written last).
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Errc::busy, path_ + ": the lock file was not set up within " +
                                  std::to_string(timeout_.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

bool LockFile::anyone_attached() const noexcept {
  if (!fd_) return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kAttachedByte;
  fl.l_len = 1;
  if (::fcntl(fd_.get(), F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume so
  return fl.l_type != F_UNLCK;
}

bool LockFile::attach_in_progress() const noexcept {
  if (!fd_) return false;
  struct flock fl {};
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = kAttachMutexByte;
  fl.l_len = 1;
  if (::fcntl(fd_.get(), F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume so
  return fl.l_type != F_UNLCK;
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

void LockFile::finish_attach() noexcept {
  if (slotless()) return;
  if (attach_held_) {
    ofd_lock(fd_.get(), F_UNLCK, kAttachMutexByte);
    attach_held_ = false;
  }
}

bool LockFile::begin_detach() noexcept {
  if (slotless()) return false;  // never attached: nothing to tidy
  const auto deadline = std::chrono::steady_clock::now() + timeout_;
  if (!ofd_lock_until(fd_.get(), F_WRLCK, kAttachMutexByte, deadline)) return false;
  attach_held_ = true;
  // Upgrading our shared lock succeeds only if no other handle holds one.
  return ofd_lock(fd_.get(), F_WRLCK, kAttachedByte);
}

LockFile::WriteResult LockFile::lock_mutex() {
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout_;
  auto lock_until = [&](std::chrono::steady_clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
    const timespec ts = realtime_deadline(std::max(left, std::chrono::milliseconds(0)));
    return pthread_mutex_timedlock(&shared_->writer, &ts);
  };
  // Fast path, while nobody starves: take the mutex if it is free, ahead of
  // any queue. Letting a running thread take it again is what keeps a
  // stream of writes from paying a context switch per write.
  WriteResult r = WriteResult::ok;
  if (shared_->starving.load(std::memory_order_acquire) == 0 &&
      took_mutex(shared_->writer, pthread_mutex_trylock(&shared_->writer), r)) {
    return r;
  }
  const std::uint32_t ticket = shared_->next_ticket.fetch_add(1, std::memory_order_acq_rel);
  if (!wait_for_turn(ticket, deadline, r)) {
    // Head of the queue. Should the fast path keep beating us to the mutex
    // for longer than kStarving, close it until the queue is served in order.
    int rc = lock_until(std::min(deadline, std::chrono::steady_clock::now() + kStarving));
    if (rc == ETIMEDOUT && std::chrono::steady_clock::now() < deadline) {
      shared_->starving.store(1, std::memory_order_release);
      rc = lock_until(deadline);
    }
    if (!took_mutex(shared_->writer, rc, r)) {
      serve_from(ticket + 1);  // let the queue go on without us
      if (rc == ETIMEDOUT) throw_busy();
      throw_errno(path_, "lock", rc);
    }
  }
  // Back to the fast path once the queue moves quickly again or is empty.
  if (std::chrono::steady_clock::now() - start < kStarving ||
      shared_->next_ticket.load(std::memory_order_acquire) == ticket + 1) {
    shared_->starving.store(0, std::memory_order_release);
  }
  serve_from(ticket + 1);
  return r;
}

bool LockFile::wait_for_turn(std::uint32_t ticket, std::chrono::steady_clock::time_point deadline,
                             WriteResult& r) {
  std::uint32_t seen = shared_->serving.load(std::memory_order_acquire);
  auto moved = std::chrono::steady_clock::now();
  for (std::uint32_t spins = 0; !not_after(ticket, seen); ++spins) {
    if (spins < 128) {
      cpu_relax();
    } else {
      futex_wait(shared_->serving, seen, std::chrono::microseconds(2000));
      const auto now = std::chrono::steady_clock::now();
      if (now - moved >= kQueueStall) {
        // The queue has not moved. If the mutex is held, a long operation
        // (a compaction) is under way: keep waiting. If it is free, the
        // ticket whose turn it is belongs to a waiter that died: jump it.
        if (took_mutex(shared_->writer, pthread_mutex_trylock(&shared_->writer), r)) return true;
        moved = now;
      }
      if (now >= deadline) {
        throw_busy();  // our ticket stays in the queue; those behind it jump it after kQueueStall
      }
    }
    const std::uint32_t now_serving = shared_->serving.load(std::memory_order_acquire);
    if (now_serving != seen) {
      seen = now_serving;
      moved = std::chrono::steady_clock::now();
    }
  }
  return false;
}

void LockFile::throw_busy() const {
  throw Error(Errc::busy, path_ + ": write lock not granted within " + std::to_string(timeout_.count()) + " ms");
}

void LockFile::serve_from(std::uint32_t ticket) noexcept {
  // Only forward: a locker that jumped the queue may hold a later ticket.
  std::uint32_t cur = shared_->serving.load(std::memory_order_acquire);
  while (!not_after(ticket, cur) &&
         !shared_->serving.compare_exchange_weak(cur, ticket, std::memory_order_acq_rel)) {
  }
  if (shared_->next_ticket.load(std::memory_order_acquire) != ticket) futex_wake_all(shared_->serving);
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
  if (slotless()) throw Error(Errc::read_only, path_ + ": lock file is not writable");
  const WriteResult r = lock_mutex();
  exclude_readers_too();
  return r;
}

void LockFile::unlock_write() noexcept {
  seq_exit();
  shared_->writer_active.store(0, std::memory_order_seq_cst);
  pthread_mutex_unlock(&shared_->writer);
}

LockFile::WriteResult LockFile::wait_and_enter_read() {
  // The writer that turned us away usually leaves within microseconds, and
  // one holding only the writer mutex (lock_writers) admits readers: retry a
  // few times before queueing behind the writers, which is what keeps a
  // stream of writes from starving this read.
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    for (int spins = 0; spins < 256 && shared_->writer_active.load(std::memory_order_acquire) != 0; ++spins) {
      cpu_relax();
    }
    if (try_enter_read()) return WriteResult::ok;
  }
  const WriteResult r = lock_mutex();
  if (r == WriteResult::ok) {
    // Enter while holding the mutex (no writer can be active now): the writer
    // queued next must then wait for this read, so a reader blocked by
    // writers gets its turn in ticket order and is never starved by them.
    slot_->readers.fetch_add(1, std::memory_order_seq_cst);
    pthread_mutex_unlock(&shared_->writer);
    return r;
  }
  seq_enter();
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

void LockFile::set_change_count(std::uint64_t count) noexcept {
  shared_->change_count.store(count, std::memory_order_release);
  shared_->change_seq.store(static_cast<std::uint32_t>(count), std::memory_order_release);
}

std::uint64_t LockFile::publish_change() noexcept {
  // seq_cst throughout: a waiter announces itself (change_waiters) and then
  // reads the count; we write the count and then read change_waiters. In the
  // single order of these four operations one of us sees the other's write,
  // so either the waiter sees the new count or we see the waiter and wake it.
  const std::uint64_t n = shared_->change_count.load(std::memory_order_relaxed) + 1;
  shared_->change_count.store(n, std::memory_order_seq_cst);
  shared_->change_seq.fetch_add(1, std::memory_order_seq_cst);
  if (shared_->change_waiters.load(std::memory_order_seq_cst) != 0) futex_wake_all(shared_->change_seq);
  return n;
}

std::uint64_t LockFile::wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (slotless()) {
    // A read-only mapping cannot announce a waiter, so committers do not wake
    // us: poll in short futex sleeps (a wake meant for others still ends one).
    for (;;) {
      const std::uint32_t seq = shared_->change_seq.load(std::memory_order_acquire);
      const std::uint64_t count =
          access_ == Access::read_only ? settled_change_count() : shared_->change_count.load(std::memory_order_acquire);
      const auto left = deadline - std::chrono::steady_clock::now();
      if (count != seen || left <= std::chrono::nanoseconds::zero()) return count;
      if (access_ == Access::none) {
        std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(5)));
      } else {
        futex_wait_for(shared_->change_seq, seq, std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(5)));
      }
    }
  }
  for (;;) {
    shared_->change_waiters.fetch_add(1, std::memory_order_seq_cst);
    const std::uint32_t seq = shared_->change_seq.load(std::memory_order_seq_cst);
    const std::uint64_t now_count = shared_->change_count.load(std::memory_order_seq_cst);
    const auto left = deadline - std::chrono::steady_clock::now();
    if (now_count == seen && left > std::chrono::nanoseconds::zero()) {
      // Returns at once if a change bumped change_seq after we read it.
      futex_wait_for(shared_->change_seq, seq, left);
    }
    shared_->change_waiters.fetch_sub(1, std::memory_order_seq_cst);
    const std::uint64_t count = shared_->change_count.load(std::memory_order_acquire);
    if (count != seen || std::chrono::steady_clock::now() >= deadline) return count;
  }
}

std::uint32_t LockFile::attached() const noexcept {
  std::uint32_t n = 1;  // this handle
  if (access_ == Access::none) return n;
  const std::uint32_t high = shared_->slot_high.load();
  for (std::uint32_t i = 0; i < high; ++i) {
    if (i != slot_index_ && slot_owner_alive(i)) ++n;
  }
  return n;
}

}  // namespace kvstore::detail
