// Record pins (lock.hpp): readers of records without the lock hold one,
// writers ask for one before they free a chunk.
#include <fcntl.h>

#include <cerrno>

#include "lock.hpp"
#include "lock_ofd.hpp"

namespace kvstore::detail {

LockFile::RecordPin LockFile::pin_records() const {
  if (access_ == Access::none) return {};
  // Opened again: a lock on our own descriptor is invisible to our own
  // F_OFD_GETLK, and this handle's writers must see the pin.
  Fd fd(::open(path_.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno(path_, "open lock file", errno);
  if (!ofd_lock(fd.get(), F_RDLCK, kRecordPinByte)) throw_errno(path_, "lock the record pin byte", errno);
  return RecordPin(std::move(fd));
}

bool LockFile::records_pinned() const noexcept {
  return access_ != Access::none && ofd_held_elsewhere(fd_.get(), kRecordPinByte);
}

}  // namespace kvstore::detail
