// The lock file's OFD byte locks: which byte says what, and taking, polling
// for and testing one. The kernel, not the file's contents, says who is alive:
// it drops a process's OFD locks when the process dies (lock.hpp).
#pragma once

#include <sys/types.h>

#include <chrono>

namespace kvstore::detail {

// OFD lock bytes (FORMAT.md "Lock file"): they need not lie inside the file.
inline constexpr off_t kAttachMutexByte = 0;  // exclusive while attaching or detaching
inline constexpr off_t kAttachedByte = 1;     // shared by every attached handle
inline constexpr off_t kRecordPinByte = 2;    // shared while records are read without the lock
inline constexpr off_t kSlotByteBase = 1024;  // + i: held exclusively by the owner of slot i

// Takes (F_RDLCK, F_WRLCK) or drops (F_UNLCK) the lock on `byte` without waiting.
bool ofd_lock(int fd, short type, off_t byte) noexcept;
// Polls for the lock: F_OFD_SETLKW cannot time out, and a bounded wait is a promise.
bool ofd_lock_until(int fd, short type, off_t byte, std::chrono::steady_clock::time_point deadline) noexcept;
// Whether another open file description holds a lock on `byte` (our own are
// not reported). When the kernel cannot tell: true.
[[nodiscard]] bool ofd_held_elsewhere(int fd, off_t byte) noexcept;

}  // namespace kvstore::detail
