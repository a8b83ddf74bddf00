// The persisted functions and the header checks: values pinned by FORMAT.md.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <kvstore/store.hpp>
#include <string>

#include "../support/temp_dir.hpp"
#include "crc32c.hpp"
#include "format.hpp"
#include "hash.hpp"

using kvstore::test::TempDir;
namespace detail = kvstore::detail;

TEST(Format, Crc32cCheckValue) {
  EXPECT_EQ(detail::crc32c(0, "123456789", 9), 0xE3069283u);  // RFC 3720 / iSCSI check value
  EXPECT_EQ(detail::crc32c(0, "", 0), 0u);
  // Continuation gives the same as one pass.
  EXPECT_EQ(detail::crc32c(detail::crc32c(0, "1234", 4), "56789", 5), 0xE3069283u);
  // Every length and alignment through the 8-byte loop and the byte tail.
  std::string data(100, '\0');
  for (std::size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  for (std::size_t n = 0; n < data.size(); ++n) {
    std::uint32_t bytewise = 0;
    for (std::size_t i = 0; i < n; ++i) bytewise = detail::crc32c(bytewise, data.data() + i, 1);
    EXPECT_EQ(detail::crc32c(0, data.data(), n), bytewise) << n;
  }
}

TEST(Format, KeyHashTestVectors) {
  EXPECT_EQ(detail::key_hash("", 0), 0x2d06800538d394c2ULL);
  EXPECT_EQ(detail::key_hash("kvstore", 0), 0x34ab09b66bddeab9ULL);
  EXPECT_EQ(detail::key_hash("kvstore", 0x0123456789abcdefULL), 0x703323d79e174449ULL);
}

TEST(Format, HeaderLayout) {
  EXPECT_EQ(sizeof(detail::FileHeader), 192u);
  EXPECT_EQ(offsetof(detail::FileHeader, file_size), 64u);
  EXPECT_EQ(offsetof(detail::FileHeader, state), 80u);
  EXPECT_EQ(offsetof(detail::FileHeader, state_crc), 84u);
  EXPECT_EQ(offsetof(detail::FileHeader, durable_chunks), 88u);
  EXPECT_EQ(offsetof(detail::FileHeader, durable_used), 96u);
  EXPECT_EQ(offsetof(detail::FileHeader, durable_crc), 104u);
  EXPECT_EQ(offsetof(detail::FileHeader, writing), 128u);
  EXPECT_EQ(offsetof(detail::FileHeader, clean), 132u);
  EXPECT_EQ(offsetof(detail::FileHeader, boot_id), 168u);
  EXPECT_EQ(detail::kHeaderCrcBytes, 48u);
  EXPECT_EQ(sizeof(detail::RecordHeader), 16u);
  EXPECT_EQ(detail::record_size(16, 100), 136u);
}

// A header exactly as another version would write it (valid checksum) is
// refused as incompatible, not as corrupt.
TEST(Format, OtherVersionOrBuildIsVersionMismatch) {
  TempDir d;
  const std::string path = d.file("s.kv");
  kvstore::Store::open(path).put("k", "v");
  std::string bytes;
  {
    std::ifstream in(path, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  auto rewrite = [&](std::size_t at, std::uint32_t value) {
    std::string b = bytes;
    std::memcpy(b.data() + at, &value, 4);
    const std::uint32_t crc = detail::crc32c(0, b.data(), detail::kHeaderCrcBytes);
    std::memcpy(b.data() + detail::kHeaderCrcBytes, &crc, 4);
    std::ofstream(d.file("v.kv"), std::ios::binary | std::ios::trunc).write(b.data(), static_cast<std::streamsize>(b.size()));
    std::filesystem::remove(d.file("v.kv.lock"));
    try {
      (void)kvstore::Store::open(d.file("v.kv"));
    } catch (const kvstore::Error& e) {
      return e.code();
    }
    return kvstore::Errc::invalid_argument;
  };
  EXPECT_EQ(rewrite(8, 4), kvstore::Errc::version_mismatch);       // a newer format_version
  EXPECT_EQ(rewrite(8, 0), kvstore::Errc::version_mismatch);       // no format_version
  EXPECT_EQ(rewrite(16, 0x12345), kvstore::Errc::version_mismatch);  // fingerprint
}
