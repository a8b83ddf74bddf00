#include "file_writer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace kvstore::detail {
namespace {
// Records gathered before they are written (a page per pwrite, write()), and
// the unit in which write-back is started early (flush()); small enough to
// stay in cache.
constexpr std::uint64_t kStreamBuffer = std::uint64_t{2} << 20;
}  // namespace

FileWriter::FileWriter(std::string path, std::uint64_t size) : path_(std::move(path)) {
  fd_ = Fd(::open(path_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (!fd_) throw_errno(path_, "create", errno);
  try {
    allocate_file(fd_.get(), size, path_);  // a full disk fails here, not half way
  } catch (...) {
    ::unlink(path_.c_str());
    throw;
  }
  // No more than the file can hold: a compacted small store is a few KiB, and
  // touching a 2 MiB buffer cost it most of its page faults (seen by the fuzzer).
  buffer_.reserve(std::min(kStreamBuffer, size));
}

FileWriter::~FileWriter() {
  if (!finished_) ::unlink(path_.c_str());
}

void FileWriter::append(const void* data, std::uint64_t bytes) {
  const auto* p = static_cast<const char*>(data);
  while (bytes > 0) {
    const std::uint64_t n = std::min(bytes, kStreamBuffer - buffer_.size());
    buffer_.insert(buffer_.end(), p, p + n);
    p += n;
    bytes -= n;
    if (buffer_.size() == kStreamBuffer) flush();
  }
}

void FileWriter::flush() {
  if (buffer_.empty()) return;
  write(buffer_.data(), buffer_.size(), stream_at_);
  stream_at_ += buffer_.size();
  buffer_.clear();
  // Let the disk work while we produce the rest; finish() waits for it.
  if (stream_at_ - started_ >= 8 * kStreamBuffer) {
    ::sync_file_range(fd_.get(), static_cast<off_t>(started_), static_cast<off_t>(stream_at_ - started_),
                      SYNC_FILE_RANGE_WRITE);
    started_ = stream_at_;
  }
}

void FileWriter::write(const char* data, std::uint64_t bytes, std::uint64_t offset) {
  // A page per pwrite. The page cache takes the size of its folios from the
  // length of each write (ext4 on recent kernels: 6.18 here), and a sync of a page
  // of a large folio write-protects all of it: after a compaction written in
  // 2 MiB pwrites, every sync of the root or of a chunk made the writers
  // fault on up to 512 pages each (3M overwrites: 722k page faults and 21.4 s,
  // against 353k and 10.0 s written a page at a time). The extra syscalls
  // cost little: three compactions of 1M keys took 815, 400 and 388 ms, and
  // 503, 399 and 400 ms, against 438, 406 and 335 ms in 2 MiB writes.
  constexpr std::uint64_t kPage = 4096;
  while (bytes > 0) {
    const ssize_t n = ::pwrite(fd_.get(), data, std::min(bytes, kPage - offset % kPage), static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) throw_errno(path_, "write", n < 0 ? errno : EIO);
    data += n;
    bytes -= static_cast<std::uint64_t>(n);
    offset += static_cast<std::uint64_t>(n);
  }
}

Fd FileWriter::finish(std::uint64_t size) {
  flush();
  if (::ftruncate(fd_.get(), static_cast<off_t>(size)) != 0) throw_errno(path_, "truncate", errno);
  if (::fdatasync(fd_.get()) != 0) throw_errno(path_, "fdatasync", errno);
  finished_ = true;
  return std::move(fd_);
}

}  // namespace kvstore::detail
