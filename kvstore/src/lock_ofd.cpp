#include "lock_ofd.hpp"

#include <fcntl.h>

#include <cerrno>
#include <thread>

namespace kvstore::detail {
namespace {

struct flock one_byte(short type, off_t byte) noexcept {
  struct flock fl {};
  fl.l_type = type;
  fl.l_whence = SEEK_SET;
  fl.l_start = byte;
  fl.l_len = 1;
  return fl;
}

}  // namespace

bool ofd_lock(int fd, short type, off_t byte) noexcept {
  struct flock fl = one_byte(type, byte);
  return ::fcntl(fd, F_OFD_SETLK, &fl) == 0;
}

bool ofd_lock_until(int fd, short type, off_t byte,
                    std::chrono::steady_clock::time_point deadline) noexcept {
  while (!ofd_lock(fd, type, byte)) {
    if (errno != EAGAIN && errno != EACCES && errno != EINTR) return false;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
  return true;
}

bool ofd_held_elsewhere(int fd, off_t byte) noexcept {
  struct flock fl = one_byte(F_WRLCK, byte);  // conflicts with any lock, shared or exclusive
  if (::fcntl(fd, F_OFD_GETLK, &fl) != 0) return true;  // cannot tell: assume so
  return fl.l_type != F_UNLCK;
}

}  // namespace kvstore::detail
