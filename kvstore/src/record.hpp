// Records, the unit of history in a chunk (FORMAT.md "Records"): viewing one
// in a mapping with its bounds checked, and its checksum.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "crc32c.hpp"
#include "format.hpp"

namespace kvstore::detail {

// A record as found in a chunk, its key and value viewed in the mapping.
struct RecordView {
  std::uint64_t offset;  // file offset of the record
  std::uint64_t size;    // padded size
  RecordType type;
  std::uint8_t flags;
  std::string_view key;
  std::string_view value;
};

// Throws Error(corrupt) for a record at `offset` that is out of bounds or malformed.
[[noreturn]] void throw_bad_record(const std::string& path, std::uint64_t offset, bool out_of_bounds);
// crc32c of a record: everything after the crc field up to the end of the value.
[[nodiscard]] std::uint32_t record_crc(const RecordHeader& h, std::string_view key, std::string_view value);

// Why a record could not be viewed.
enum class RecordFault : std::uint8_t { none, out_of_bounds, malformed };

// Bounds-checks the record at `offset` of a mapping of `size` bytes at `base`
// and views it in `out`. No throw: a salvage scan tries every 8-byte offset of
// a damaged stretch, and an exception per try was most of its time.
[[nodiscard]] inline RecordFault view_record(const char* base, std::uint64_t size, std::uint64_t offset,
                                             RecordView& out) noexcept {
  if (offset < kHeaderSize || offset % kRecordAlign != 0 || offset > size - sizeof(RecordHeader)) {
    return RecordFault::out_of_bounds;
  }
  RecordHeader h;
  std::memcpy(&h, base + offset, sizeof h);
  const std::uint64_t total = record_size(h.key_size, h.value_size);
  if (total > size - offset || (h.type != static_cast<std::uint8_t>(RecordType::put) &&
                                h.type != static_cast<std::uint8_t>(RecordType::erase))) {
    return RecordFault::malformed;
  }
  const char* p = base + offset + sizeof h;
  out = RecordView{offset, total, static_cast<RecordType>(h.type), h.flags, {p, h.key_size}, {p + h.key_size, h.value_size}};
  return RecordFault::none;
}

// view_record that throws Error(corrupt). Inline: every get passes here.
[[nodiscard]] inline RecordView read_record(const char* base, std::uint64_t size, std::uint64_t offset,
                                            const std::string& path) {
  RecordView r{};
  const RecordFault f = view_record(base, size, offset, r);
  if (f != RecordFault::none) throw_bad_record(path, offset, f == RecordFault::out_of_bounds);
  return r;
}

// Whether two keys are equal; inline for keys of 8 to 16 bytes (two loads
// each), where a call to memcmp was a tenth of a get's instructions.
[[nodiscard]] inline bool same_key(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  if (n >= 8 && n <= 16) {
    std::uint64_t a0 = 0, a1 = 0, b0 = 0, b1 = 0;
    std::memcpy(&a0, a.data(), 8);
    std::memcpy(&b0, b.data(), 8);
    std::memcpy(&a1, a.data() + n - 8, 8);
    std::memcpy(&b1, b.data() + n - 8, 8);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  return n == 0 || std::memcmp(a.data(), b.data(), n) == 0;  // an empty key's data may be null
}

// record_crc of a record laid out whole at `record` (header, key, value one
// after the other, as in a chunk): one pass, where record_crc's three calls
// cost a get or a put ~60 instructions more.
[[nodiscard]] inline std::uint32_t laid_out_record_crc(const char* record, std::uint64_t key_size,
                                                       std::uint64_t value_size) noexcept {
  constexpr std::size_t kAfterCrc = offsetof(RecordHeader, crc) + sizeof(RecordHeader::crc);
  return crc32c(0, record + kAfterCrc, sizeof(RecordHeader) - kAfterCrc + key_size + value_size);
}

// Whether the record's checksum holds (`r` comes from view_record: laid out whole).
[[nodiscard]] inline bool record_intact(const RecordView& r) noexcept {
  const char* record = r.key.data() - sizeof(RecordHeader);
  std::uint32_t crc = 0;
  std::memcpy(&crc, record + offsetof(RecordHeader, crc), sizeof crc);
  return crc == laid_out_record_crc(record, r.key.size(), r.value.size());
}
// "0x1f40": how offsets appear in messages.
[[nodiscard]] std::string hex_offset(std::uint64_t v);

}  // namespace kvstore::detail
