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


RecordView read_record(const char* base, std::uint64_t size, std::uint64_t offset,
                       const std::string& path) {
  if (offset < kHeaderSize || offset % kRecordAlign != 0 || offset > size - sizeof(RecordHeader)) {
    throw Error(Errc::corrupt, path + ": record offset " + hex_offset(offset) + " out of bounds", offset);
  }
  RecordHeader h;
  std::memcpy(&h, base + offset, sizeof h);
  const std::uint64_t total = record_size(h.key_size, h.value_size);
  if (total > size - offset ||
      (h.type != static_cast<std::uint8_t>(RecordType::put) &&
       h.type != static_cast<std::uint8_t>(RecordType::erase))) {
    throw Error(Errc::corrupt, path + ": bad record at " + hex_offset(offset), offset);
  }
  const char* p = base + offset + sizeof h;
  return RecordView{offset,
                    total,
                    static_cast<RecordType>(h.type),
                    h.flags,
                    {p, h.key_size},
                    {p + h.key_size, h.value_size}};
}

bool record_intact(const RecordView& r) noexcept {
  RecordHeader h;
  std::memcpy(&h, r.key.data() - sizeof h, sizeof h);
  return h.crc == record_crc(h, r.key, r.value);
}

}  // namespace kvstore::detail
