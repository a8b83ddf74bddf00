#include "mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>
#include <utility>

#include "kvstore/error.hpp"

namespace kvstore::detail {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

void throw_errno(const std::string& path, const std::string& what, int err) {
  const Errc code = (err == ENOSPC || err == EDQUOT) ? Errc::no_space : Errc::io;
  throw Error(code, path + ": " + what + ": " + std::strerror(err), kNoOffset,
              std::error_code(err, std::system_category()));
}

Mapping::Mapping(int fd, std::uint64_t size, bool writable, const std::string& path) {
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  void* p = ::mmap(nullptr, size, prot, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw_errno(path, "mmap", errno);
  base_ = static_cast<char*>(p);
  size_ = size;
}

Mapping::Mapping(Mapping&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)), size_(std::exchange(o.size_, 0)) {}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, size_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, size_);
}

void Mapping::resize(std::uint64_t new_size, const std::string& path) {
  void* p = ::mremap(base_, size_, new_size, MREMAP_MAYMOVE);
  if (p == MAP_FAILED) throw_errno(path, "mremap", errno);
  base_ = static_cast<char*>(p);
  size_ = new_size;
}

void Mapping::sync(std::uint64_t offset, std::uint64_t length, const std::string& path) const {
  const std::uint64_t page = 4096;
  const std::uint64_t begin = offset & ~(page - 1);
  std::uint64_t end = offset + length;
  if (end > size_) end = size_;
  if (end <= begin) return;
  if (::msync(base_ + begin, end - begin, MS_SYNC) != 0) throw_errno(path, "msync", errno);
}

void Mapping::prefault(std::uint64_t offset, std::uint64_t length) const noexcept {
#ifdef MADV_POPULATE_WRITE
  const std::uint64_t page = 4096;
  const std::uint64_t begin = offset & ~(page - 1);
  const std::uint64_t end = offset + length > size_ ? size_ : offset + length;
  if (end > begin) ::madvise(base_ + begin, end - begin, MADV_POPULATE_WRITE);
#else
  (void)offset;
  (void)length;
#endif
}

void allocate_file(int fd, std::uint64_t size, const std::string& path) {
  off_t current = ::lseek(fd, 0, SEEK_END);
  if (current < 0) throw_errno(path, "lseek", errno);
  if (static_cast<std::uint64_t>(current) >= size) return;
  int rc = ::fallocate(fd, 0, current, static_cast<off_t>(size) - current);
  if (rc != 0 && (errno == EOPNOTSUPP || errno == ENOSYS)) {
    rc = ::posix_fallocate(fd, current, static_cast<off_t>(size) - current);
    if (rc != 0) throw_errno(path, "posix_fallocate", rc);
    return;
  }
  if (rc != 0) throw_errno(path, "fallocate", errno);
}

}  // namespace kvstore::detail
