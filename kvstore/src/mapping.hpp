// RAII over a data file: its descriptor and its shared read-write mapping.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace kvstore::detail {

// An owned file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  [[nodiscard]] int get() const noexcept { return fd_; }
  int release() noexcept {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

// Throws Error(io or no_space) describing errno for `what` on `path`.
[[noreturn]] void throw_errno(const std::string& path, const std::string& what, int err);

// A range of a file.
struct FileRange {
  std::uint64_t offset;
  std::uint64_t length;
};

// Writes `ranges` of the file behind `fd` back, waits for them, then makes
// them durable with one flush of the device (with the file's first page).
// Needs no mapping, so any thread may call it while another remaps the file.
// Returns 0 or the errno of the call that failed.
// `first_page`, if given, is a read-only shared mapping of the file's first
// page kept for this: mapping and unmapping one each time takes the process's
// mmap lock for writing, which every page fault of its other threads then
// queues behind.
[[nodiscard]] int write_back_and_flush(int fd, const std::vector<FileRange>& ranges,
                                       void* first_page = nullptr) noexcept;

// A MAP_SHARED mapping of the first `size` bytes of a file (or anonymous
// memory standing in for one, see anonymous()), inside a larger
// reservation of address space so that growing maps the new tail in place:
// the base never moves, pages already faulted stay mapped, and nothing that
// tracks addresses (other threads, ThreadSanitizer) sees memory change hands.
class Mapping {
 public:
  Mapping() = default;
  // Reserves at least `reserve` bytes of address space.
  Mapping(int fd, std::uint64_t size, bool writable, const std::string& path,
          std::uint64_t reserve = 0);
  // Private zero-filled memory laid out like a mapping of a file: a new file's
  // image is built here and written with pwrite, which costs a fraction of
  // dirtying a shared file mapping page by page.
  static Mapping anonymous(std::uint64_t size, const std::string& path);
  Mapping(Mapping&& o) noexcept;
  Mapping& operator=(Mapping&& o) noexcept;
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping();

  [[nodiscard]] char* base() const noexcept { return base_; }
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  // Changes the mapped length: in place within the reservation, else by a
  // fresh mapping at a new base (the old one stays mapped until destruction,
  // so that views taken before stay valid).
  void resize(std::uint64_t new_size, const std::string& path);
  // msync(MS_SYNC) of [offset, offset+length), rounded out to pages.
  void sync(std::uint64_t offset, std::uint64_t length, const std::string& path) const;
  [[nodiscard]] bool is_anonymous() const noexcept { return fd_ < 0; }
  // Unmaps the pages of [offset, offset+length) but keeps the range reserved
  // (MADV_DONTNEED): a later access faults the page in again from the file.
  // A file mapping only (an anonymous one would lose its contents).
  void drop_pages(std::uint64_t offset, std::uint64_t length) const noexcept;
  // Faults the pages of [offset, offset+length) in, writable, in one call
  // (MADV_POPULATE_WRITE), for a caller about to write all of them: it spares
  // a trap per page (the worst put while growing to 1M keys went from 68 to
  // 55 ms here; the rest is the first touch of each page, dear in this guest).
  void populate_writable(std::uint64_t offset, std::uint64_t length) const noexcept;

 private:
  // MADV_RANDOM over [offset, offset+length), a writable file mapping's grown part.
  void read_no_pages_around(std::uint64_t offset, std::uint64_t length) const noexcept;

  char* base_ = nullptr;
  std::uint64_t size_ = 0;
  std::uint64_t reserved_ = 0;
  // Where the part this mapping grew the file by begins (read_no_pages_around).
  std::uint64_t grown_from_ = 0;
  int fd_ = -1;
  bool writable_ = false;
  std::vector<Mapping> outgrown_;
};

// Zeroed private memory for a large temporary table, in huge pages where the
// kernel allows: random accesses into tens of MiB of 4 KiB pages each cost a
// TLB miss, which under virtualisation is dearer than the cache miss.
class AnonymousMemory {
 public:
  AnonymousMemory() = default;
  explicit AnonymousMemory(std::uint64_t bytes);
  AnonymousMemory(AnonymousMemory&& o) noexcept;
  AnonymousMemory& operator=(AnonymousMemory&& o) noexcept;
  AnonymousMemory(const AnonymousMemory&) = delete;
  AnonymousMemory& operator=(const AnonymousMemory&) = delete;
  ~AnonymousMemory();
  [[nodiscard]] char* data() const noexcept { return data_; }

 private:
  char* data_ = nullptr;
  std::uint64_t size_ = 0;
};

// Extends the file to `size` bytes with real blocks (fallocate), so that a
// full disk is an Error(no_space) now rather than a SIGBUS later.
void allocate_file(int fd, std::uint64_t size, const std::string& path);

}  // namespace kvstore::detail
