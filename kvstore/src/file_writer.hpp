// Writes a new data file with pwrite instead of through a shared mapping.
// Dirtying a fresh file through a mapping costs a page fault, a block
// allocation and later a TLB shootdown per 4 KiB page; streaming the bulk of
// it (the records) through a small buffer, writing the rest from an image in
// private memory and starting writeback early costs a fraction of that.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "mapping.hpp"

namespace kvstore::detail {

class FileWriter {
 public:
  // Creates `path` (which must not exist) with `size` bytes of real blocks.
  FileWriter(std::string path, std::uint64_t size);
  FileWriter(const FileWriter&) = delete;
  FileWriter& operator=(const FileWriter&) = delete;
  // Removes the file unless finish() succeeded.
  ~FileWriter();

  // Appended bytes go to the file from `offset` on.
  void set_stream_begin(std::uint64_t offset) noexcept { stream_at_ = offset; }
  void append(const void* data, std::uint64_t bytes);
  // File offset the next appended byte goes to.
  [[nodiscard]] std::uint64_t stream_position() const noexcept { return stream_at_ + buffer_.size(); }
  // Writes `bytes` from `data` at `offset`.
  void write(const char* data, std::uint64_t bytes, std::uint64_t offset);
  // Flushes the stream, sets the length to `size`, makes it all durable and
  // hands over the descriptor.
  Fd finish(std::uint64_t size);

 private:
  void flush();
  std::string path_;
  Fd fd_;
  std::vector<char> buffer_;
  std::uint64_t stream_at_ = 0;
  std::uint64_t started_ = 0;  // bytes whose writeback has been started
  bool finished_ = false;
};

}  // namespace kvstore::detail
