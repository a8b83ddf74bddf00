// The persisted hash of a key: XXH3-64 of the key bytes with the seed stored in
// the file header. It is part of the on-disk format (FORMAT.md pins test
// vectors), so it must never change for a given format version. std::hash and
// boost::hash are not stable across builds and must not shape the file.
#pragma once

#include <cstdint>
#include <string_view>

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace kvstore::detail {

[[nodiscard]] inline std::uint64_t key_hash(std::string_view key, std::uint64_t seed) noexcept {
  return XXH3_64bits_withSeed(key.data(), key.size(), seed);
}

}  // namespace kvstore::detail
