// The lock file itself: its layout, attaching (the first attacher rebuilds it)
// and detaching. The rest of LockFile, one concept a file: lock_writer_queue.cpp
// (the writer mutex and its ticket queue), lock_reader_slots.cpp (reader slots
// and the writer's wait for them), lock_change.cpp (change notification) and
// lock_read_only.cpp (slot-less access, validated by write_seq).
#include "lock.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstring>

#include "kvstore/error.hpp"
#include "lock_ofd.hpp"

namespace kvstore::detail {
namespace {

constexpr std::uint64_t kLockMagic = 0x4b434f4c53564bULL;  // "KVSLOCK"
// 3: change_count, change_seq, change_waiters; 4: write_seq; 5: pacing, and
// every open data file descriptor holds its open lock, which a compaction
// relies on before it truncates the file it replaced (an older build's
// mapping of it would fault).
constexpr std::uint32_t kLockVersion = 5;

// FORMAT.md "Lock file" gives this offset: slot-less readers of other builds rely on it.
static_assert(offsetof(LockShared, write_seq) == 272);
static_assert(offsetof(LockShared, slots) == 320);
static_assert(offsetof(LockShared, paced_until) == 144 && offsetof(LockShared, paced_gap) == 160);
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
  const bool reuse_in_place = size_for_attach();
  map_ = Mapping(fd_.get(), sizeof(LockShared), true, lock_path);
  shared_ = reinterpret_cast<LockShared*>(map_.base());  // NOLINT: the lock file's one object
  if (first_) {
    rebuild(reuse_in_place);
  } else if (!compatible(*shared_)) {
    throw_incompatible();
  }
  if (!ofd_lock(fd_.get(), F_RDLCK, kAttachedByte)) throw_errno(lock_path, "lock attach byte", errno);
  claim_slot();
}

LockFile::~LockFile() = default;  // unmapping and closing drop every OFD lock

bool LockFile::size_for_attach() {
  struct stat st {};
  if (::fstat(fd_.get(), &st) != 0) throw_errno(path_, "stat lock file", errno);
  identity_ = identity_of(st);
  const bool right_size = static_cast<std::uint64_t>(st.st_size) == sizeof(LockShared);
  if (!first_) {
    if (!right_size) throw_incompatible();
    return false;
  }
  // Nobody else is attached: whatever the file holds is stale. Start afresh;
  // in place when the size is right: a slot-less reader may have it mapped,
  // and truncating it under that mapping would be a SIGBUS there.
  if (!right_size && (::ftruncate(fd_.get(), 0) != 0 || ::ftruncate(fd_.get(), sizeof(LockShared)) != 0)) {
    throw_errno(path_, "truncate lock file", errno);
  }
  return right_size;
}

void LockFile::rebuild(bool in_place) {
  // Zero everything but write_seq, which goes on from where it was (any
  // value will do, even a stale one): were it reset, a slot-less reader
  // could see the same value before and after a change. A truncated file
  // is all zeros already. (All zeros is the initial state of every field;
  // the mutex is initialised below.)
  if (in_place) {
    std::memset(static_cast<void*>(shared_), 0, offsetof(LockShared, write_seq));
    std::memset(static_cast<void*>(&shared_->slots[0]), 0, sizeof shared_->slots);
  }
  pthread_mutexattr_t attr;
  pthread_mutexattr_init(&attr);
  pthread_mutexattr_setpshared(&attr, PTHREAD_PROCESS_SHARED);
  pthread_mutexattr_setrobust(&attr, PTHREAD_MUTEX_ROBUST);
  const int rc = pthread_mutex_init(&shared_->writer, &attr);
  pthread_mutexattr_destroy(&attr);
  if (rc != 0) throw_errno(path_, "pthread_mutex_init", rc);
  shared_->slot_count = kReaderSlots;
  shared_->version = kLockVersion;
  shared_->magic = kLockMagic;
}

bool LockFile::compatible(const LockShared& shared) noexcept {
  // The magic is written last (rebuild): acquire, then the rest.
  return __atomic_load_n(&shared.magic, __ATOMIC_ACQUIRE) == kLockMagic && shared.version == kLockVersion &&
         shared.slot_count == kReaderSlots;
}

void LockFile::throw_incompatible() const {
  throw Error(Errc::version_mismatch, path_ + ": lock file in use by an incompatible kvstore build");
}

std::pair<std::uint64_t, std::uint64_t> LockFile::identity_of(const struct stat& st) noexcept {
  return {static_cast<std::uint64_t>(st.st_dev), static_cast<std::uint64_t>(st.st_ino)};
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

bool LockFile::anyone_attached() const noexcept {
  if (!fd_) return false;
  return ofd_held_elsewhere(fd_.get(), kAttachedByte);
}

}  // namespace kvstore::detail
