#include "mapping.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
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

namespace {
constexpr std::uint64_t kPage = 4096;
// Address space is cheap (128 TiB per process) but not free: reserve room for
// growth up to 64 GiB, or twice the file, whichever is more.
constexpr std::uint64_t kDefaultReserve = std::uint64_t{64} << 30;

void* reserve_range(void* at, std::uint64_t bytes, int extra_flags) {
  return ::mmap(at, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | extra_flags, -1, 0);
}

// Maps [at, at+bytes) of the reservation: the file from `offset`, or, for an
// anonymous mapping (fd < 0), fresh zeroed memory in huge pages where the
// kernel allows (a page fault costs far more than zeroing a page here).
void* map_range(char* at, std::uint64_t bytes, int fd, std::uint64_t offset, bool writable) {
  const int prot = PROT_READ | (writable ? PROT_WRITE : 0);
  if (fd >= 0) return ::mmap(at, bytes, prot, MAP_SHARED | MAP_FIXED, fd, static_cast<off_t>(offset));
  void* p = ::mmap(at, bytes, prot, MAP_PRIVATE | MAP_ANONYMOUS | (at != nullptr ? MAP_FIXED : 0), -1, 0);
#ifdef MADV_HUGEPAGE
  if (p != MAP_FAILED) ::madvise(p, bytes, MADV_HUGEPAGE);
#endif
  return p;
}
}  // namespace

Mapping::Mapping(int fd, std::uint64_t size, bool writable, const std::string& path,
                 std::uint64_t reserve)
    : fd_(fd), writable_(writable) {
  std::uint64_t want = std::max({reserve, size * 2, std::min(kDefaultReserve, size * 64)});
  want = (want + kPage - 1) / kPage * kPage;
  void* r = reserve_range(nullptr, want, 0);
  if (r == MAP_FAILED) {
    want = (size + kPage - 1) / kPage * kPage;  // no room for growth in place: map just the file
    r = reserve_range(nullptr, want, 0);
    if (r == MAP_FAILED) throw_errno(path, "reserve address space", errno);
  }
  void* p = map_range(static_cast<char*>(r), size, fd, 0, writable);
  if (p == MAP_FAILED) {
    const int err = errno;
    ::munmap(r, want);
    throw_errno(path, "mmap", err);
  }
  base_ = static_cast<char*>(p);
  size_ = size;
  reserved_ = want;
  grown_from_ = size;
}

Mapping Mapping::anonymous(std::uint64_t size, const std::string& path) {
  return Mapping(-1, size, true, path);
}

Mapping::Mapping(Mapping&& o) noexcept
    : base_(std::exchange(o.base_, nullptr)),
      size_(std::exchange(o.size_, 0)),
      reserved_(std::exchange(o.reserved_, 0)),
      grown_from_(o.grown_from_),
      fd_(o.fd_),
      writable_(o.writable_),
      outgrown_(std::move(o.outgrown_)) {}

Mapping& Mapping::operator=(Mapping&& o) noexcept {
  if (this != &o) {
    if (base_ != nullptr) ::munmap(base_, reserved_);
    base_ = std::exchange(o.base_, nullptr);
    size_ = std::exchange(o.size_, 0);
    reserved_ = std::exchange(o.reserved_, 0);
    grown_from_ = o.grown_from_;
    fd_ = o.fd_;
    writable_ = o.writable_;
    outgrown_ = std::move(o.outgrown_);
  }
  return *this;
}

Mapping::~Mapping() {
  if (base_ != nullptr) ::munmap(base_, reserved_);
}

void Mapping::resize(std::uint64_t new_size, const std::string& path) {
  if (new_size > reserved_) {
    // All that this handle grew the file by, not only the new part: a grown
    // part not yet written (an index doubling's new table, say) stays so.
    Mapping bigger(fd_, new_size, writable_, path);
    bigger.grown_from_ = grown_from_;
    bigger.read_no_pages_around(grown_from_, new_size - grown_from_);
    bigger.outgrown_ = std::move(outgrown_);
    bigger.outgrown_.push_back(std::move(*this));
    *this = std::move(bigger);
    return;
  }
  if (new_size > size_) {
    void* p = map_range(base_ + size_, new_size - size_, fd_, size_, writable_);
    if (p == MAP_FAILED) throw_errno(path, "mmap", errno);
    read_no_pages_around(size_, new_size - size_);
  } else if (new_size < size_) {
    if (reserve_range(base_ + new_size, size_ - new_size, MAP_FIXED) == MAP_FAILED) {
      throw_errno(path, "unmap", errno);
    }
    grown_from_ = std::min(grown_from_, new_size);
  }
  size_ = new_size;
}

void Mapping::read_no_pages_around(std::uint64_t offset, std::uint64_t length) const noexcept {
  // A grown part of the file is fallocated and unwritten: a fault there made
  // the kernel zero the page cache for the whole read-ahead window around it
  // (8 MiB on this machine's disk), 25-36 ms for the put that happened to
  // fault there (perf: memset under ext4_mpage_readpages). Read-around is
  // left on for the rest, which it reads in large steps into a cold cache.
  if (is_anonymous() || !writable_ || length == 0) return;
  const std::uint64_t begin = offset & ~(kPage - 1);
  (void)::madvise(base_ + begin, offset + length - begin, MADV_RANDOM);  // a hint: best effort
}

void Mapping::sync(std::uint64_t offset, std::uint64_t length, const std::string& path) const {
  if (is_anonymous()) return;  // no file behind it yet

  const std::uint64_t begin = offset & ~(kPage - 1);
  std::uint64_t end = offset + length;
  if (end > size_) end = size_;
  if (end <= begin) return;
  if (::msync(base_ + begin, end - begin, MS_SYNC) != 0) throw_errno(path, "msync", errno);
}

void Mapping::drop_pages(std::uint64_t offset, std::uint64_t length) const noexcept {
  if (is_anonymous() || offset >= size_) return;
  length = std::min(length, size_ - offset);
  // Best effort by design: pages left mapped go with the mapping.
  (void)::madvise(base_ + (offset & ~(kPage - 1)), length, MADV_DONTNEED);
}

void Mapping::populate_writable(std::uint64_t offset, std::uint64_t length) const noexcept {
#ifdef MADV_POPULATE_WRITE
  if (!writable_ || offset >= size_) return;
  length = std::min(length, size_ - offset);
  const std::uint64_t begin = offset & ~(kPage - 1);
  // Best effort by design: a kernel without it (before 5.14) leaves the
  // pages to fault one by one.
  (void)::madvise(base_ + begin, offset + length - begin, MADV_POPULATE_WRITE);
#else
  (void)offset;
  (void)length;
#endif
}

int write_back_and_flush(int fd, const std::vector<FileRange>& ranges, void* first_page) noexcept {
  constexpr unsigned kWait = SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER;
  for (const FileRange& r : ranges) {
    while (::sync_file_range(fd, static_cast<off64_t>(r.offset), static_cast<off64_t>(r.length), kWait) != 0) {
      if (errno != EINTR) return errno;
    }
  }
  // The flush: an msync of a range is the one call that flushes the device
  // without writing every dirty page of the file (fdatasync would write the
  // whole index too). Through a mapping of our own, which no remap moves.
  if (first_page != nullptr) return ::msync(first_page, kPage, MS_SYNC) == 0 ? 0 : errno;
  void* p = ::mmap(nullptr, kPage, PROT_READ, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return ::fdatasync(fd) == 0 ? 0 : errno;
  const int err = ::msync(p, kPage, MS_SYNC) == 0 ? 0 : errno;
  ::munmap(p, kPage);
  return err;
}

AnonymousMemory::AnonymousMemory(std::uint64_t bytes) : size_(bytes) {
  void* p = map_range(nullptr, bytes, -1, 0, true);
  if (p == MAP_FAILED) throw std::bad_alloc();
  data_ = static_cast<char*>(p);
}

AnonymousMemory::AnonymousMemory(AnonymousMemory&& o) noexcept
    : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}

AnonymousMemory& AnonymousMemory::operator=(AnonymousMemory&& o) noexcept {
  if (this != &o) {
    if (data_ != nullptr) ::munmap(data_, size_);
    data_ = std::exchange(o.data_, nullptr);
    size_ = std::exchange(o.size_, 0);
  }
  return *this;
}

AnonymousMemory::~AnonymousMemory() {
  if (data_ != nullptr) ::munmap(data_, size_);
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
