// Where a bounded walk of the file's bookkeeping (the allocator's blocks, the
// chunk list) reads its bytes: the mapping, or the file itself through pread.
//
// The first attach walks one block header per chunk, each in a page of its
// own. Touched through a fresh mapping, every such page costs a page fault:
// 35-85 us each on this machine's guest (page-table pages and fault-around),
// 6-13 ms for the ~185 pages of a 1M-key store, against ~3 us for a pread.
// Through FileBytes the walk maps nothing, and a later get faults in only
// the pages it reads.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>

namespace kvstore::detail {

class ByteSource {
 public:
  ByteSource() = default;
  ByteSource(const ByteSource&) = delete;
  ByteSource& operator=(const ByteSource&) = delete;
  virtual ~ByteSource() = default;
  // Bytes [0, size()) may be read.
  [[nodiscard]] virtual std::uint64_t size() const noexcept = 0;
  // Copies bytes [at, at + n) to `out`; the caller keeps at + n <= size().
  // Throws Error: io when the file cannot be read, corrupt when it is
  // shorter than `size()` says.
  virtual void read(std::uint64_t at, void* out, std::size_t n) const = 0;
};

// A mapping's bytes (kvtool check, which reads every page anyway; tests).
class MappedBytes final : public ByteSource {
 public:
  MappedBytes(const char* base, std::uint64_t size) noexcept : base_(base), size_(size) {}
  [[nodiscard]] std::uint64_t size() const noexcept override { return size_; }
  void read(std::uint64_t at, void* out, std::size_t n) const override;

 private:
  const char* base_;
  std::uint64_t size_;
};

// The file's bytes through pread, in pieces of kPiece bytes, each read once.
// Small pieces: what the walks read is a few dozen bytes a block, and memory
// touched for the first time costs a page fault too (a 4 KiB buffer a chunk
// header took 20 us a header here, against 3 us for a piece).
class FileBytes final : public ByteSource {
 public:
  // `fd` stays open while this lives; `size` bytes of it are read (at most).
  FileBytes(int fd, std::uint64_t size, const std::string& path) noexcept : fd_(fd), size_(size), path_(path) {}
  [[nodiscard]] std::uint64_t size() const noexcept override { return size_; }
  void read(std::uint64_t at, void* out, std::size_t n) const override;

 private:
  static constexpr std::uint64_t kPiece = 256;
  using Piece = std::array<char, kPiece>;
  [[nodiscard]] const Piece& piece(std::uint64_t number) const;

  int fd_;
  std::uint64_t size_;
  const std::string& path_;
  mutable std::unordered_map<std::uint64_t, Piece> pieces_;
};

}  // namespace kvstore::detail
