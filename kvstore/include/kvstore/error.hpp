// kvstore::Error: the one exception type the library throws.
//
// Every failure a caller can act on carries an Errc: a corrupt, foreign, full or
// busy store is an outcome to branch on (as LMDB's and leveldb's status codes),
// delivered as an exception so the API stays value-returning. A missing key is
// std::optional, never an Error.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>

namespace kvstore {

enum class Errc {
  invalid_argument,  // bad option or argument                       (kvtool exit 2)
  not_a_store,       // bad magic: not a kvstore file, or empty/foreign (exit 3)
  version_mismatch,  // other format version, byte order or build ABI (exit 3)
  corrupt,           // a bound, checksum or invariant failed         (exit 3)
  io,                // the OS refused (sys() says why)               (exit 4)
  no_space,          // the disk is full                              (exit 4)
  store_full,        // would pass Options::max_file_size             (exit 4)
  busy,              // lock not granted within Options::lock_timeout (exit 4)
  read_only,         // a write through a read-only handle            (exit 4)
};

// A short stable name for the code, e.g. "corrupt".
[[nodiscard]] std::string_view to_string(Errc code) noexcept;

inline constexpr std::uint64_t kNoOffset = ~std::uint64_t{0};

// An error precise enough to act on: code() for programs, what() for people.
// what() reads "<path>: <detail>" when a file is involved; to_string(code())
// names the code (kvtool prints both).
class Error : public std::runtime_error {
 public:
  Error(Errc code, const std::string& message, std::uint64_t offset = kNoOffset,
        std::error_code sys = {});
  [[nodiscard]] Errc code() const noexcept { return code_; }
  // File offset of the offending bytes, or kNoOffset.
  [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }
  // The OS error behind io / no_space, if any.
  [[nodiscard]] std::error_code sys() const noexcept { return sys_; }

 private:
  Errc code_;
  std::uint64_t offset_;
  std::error_code sys_;
};

}  // namespace kvstore
