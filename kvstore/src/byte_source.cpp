#include "byte_source.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "kvstore/error.hpp"
#include "mapping.hpp"

namespace kvstore::detail {

void MappedBytes::read(std::uint64_t at, void* out, std::size_t n) const { std::memcpy(out, base_ + at, n); }

void FileBytes::read(std::uint64_t at, void* out, std::size_t n) const {
  auto* to = static_cast<char*>(out);
  while (n > 0) {
    const std::uint64_t in_piece = at % kPiece;
    const std::size_t take = std::min<std::uint64_t>(n, kPiece - in_piece);
    std::memcpy(to, piece(at / kPiece).data() + in_piece, take);
    to += take;
    at += take;
    n -= take;
  }
}

const FileBytes::Piece& FileBytes::piece(std::uint64_t number) const {
  if (const auto found = pieces_.find(number); found != pieces_.end()) return found->second;
  Piece p{};
  const std::uint64_t at = number * kPiece;
  const std::uint64_t want = std::min(kPiece, size_ - std::min(size_, at));
  std::uint64_t got = 0;
  while (got < want) {
    const ssize_t r = ::pread(fd_, p.data() + got, want - got, static_cast<off_t>(at + got));
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) throw_errno(path_, "read", errno);
    // Shorter than the mapping says: the mapping would have raised SIGBUS.
    if (r == 0) throw Error(Errc::corrupt, path_ + ": the file ends inside its segment");
    got += static_cast<std::uint64_t>(r);
  }
  return pieces_.emplace(number, p).first->second;
}

}  // namespace kvstore::detail
