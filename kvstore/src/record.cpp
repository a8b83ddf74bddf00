#include "record.hpp"

#include <cstdio>
#include <cstring>

#include "crc32c.hpp"
#include "kvstore/error.hpp"

namespace kvstore::detail {

std::string hex_offset(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

std::uint32_t record_crc(const RecordHeader& h, std::string_view key, std::string_view value) {
  std::uint32_t c = crc32c(0, reinterpret_cast<const char*>(&h) + 4, sizeof h - 4);  // NOLINT
  c = crc32c(c, key.data(), key.size());
  return crc32c(c, value.data(), value.size());
}

void throw_bad_record(const std::string& path, std::uint64_t offset, bool out_of_bounds) {
  if (out_of_bounds) {
    throw Error(Errc::corrupt, path + ": record offset " + hex_offset(offset) + " out of bounds", offset);
  }
  throw Error(Errc::corrupt, path + ": bad record at " + hex_offset(offset), offset);
}

}  // namespace kvstore::detail
