#include "kvstore/error.hpp"

namespace kvstore {

std::string_view to_string(Errc code) noexcept {
  switch (code) {
    case Errc::invalid_argument: return "invalid argument";
    case Errc::not_a_store: return "not a kvstore file";
    case Errc::version_mismatch: return "incompatible format";
    case Errc::corrupt: return "corrupt";
    case Errc::io: return "I/O error";
    case Errc::no_space: return "no space left";
    case Errc::store_full: return "store full";
    case Errc::busy: return "busy";
    case Errc::read_only: return "read-only";
  }
  return "unknown error";
}

Error::Error(Errc code, const std::string& message, std::uint64_t offset, std::error_code sys)
    : std::runtime_error(message), code_(code), offset_(offset), sys_(sys) {}

}  // namespace kvstore
