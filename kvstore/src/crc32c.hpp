// CRC-32C (Castagnoli), the checksum of every record and of the file header.
// Uses the SSE4.2 instruction when the CPU has it, a table otherwise; both give
// the same values (pinned by a unit test against the RFC 3720 check value).
#pragma once

#include <cstddef>
#include <cstdint>

namespace kvstore::detail {

// Continues a CRC: crc32c(crc32c(0, a), b) == crc32c(0, a+b).
[[nodiscard]] std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size) noexcept;

}  // namespace kvstore::detail
