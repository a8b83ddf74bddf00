// Records, the unit of history in a chunk (FORMAT.md "Records"): viewing one
// in a mapping with its bounds checked, and its checksum.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

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

// Bounds-checks the record at `offset` of a mapping of `size` bytes at `base`
// and views it. Throws Error(corrupt).
[[nodiscard]] RecordView read_record(const char* base, std::uint64_t size, std::uint64_t offset,
                                     const std::string& path);
// crc32c of a record: everything after the crc field up to the end of the value.
[[nodiscard]] std::uint32_t record_crc(const RecordHeader& h, std::string_view key, std::string_view value);
// Whether the record's checksum holds.
[[nodiscard]] bool record_intact(const RecordView& r) noexcept;
// "0x1f40": how offsets appear in messages.
[[nodiscard]] std::string hex_offset(std::uint64_t v);

}  // namespace kvstore::detail
