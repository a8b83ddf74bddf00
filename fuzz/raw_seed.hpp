// The one convention shared by the raw-file fuzzer and its seed maker: a
// header whose boot id is kBootIdSentinel gets the running kernel's boot id
// before the file is written. Without it, a committed seed could never reach
// recovery "in the same boot" (FORMAT.md, "What a crash leaves behind"),
// since the boot id changes with every boot of the fuzzing machine.
#pragma once

#include <cstddef>
#include <cstring>

#include "format.hpp"

namespace kvstore::fuzz {

inline constexpr unsigned char kBootIdSentinel[16] = {'s', 'a', 'm', 'e', '-', 'b', 'o', 'o',
                                                      't', '-', 's', 'e', 'n', 't', 'r', 'y'};

// The largest input the raw-file fuzzer takes (its -max_len, fuzz/CMakeLists.txt),
// and so the largest seed: below 128 KiB, libFuzzer's copy of an input stays in
// ASan's size-class allocator instead of a mapping made and unmapped per execution.
inline constexpr std::size_t kMaxRawInput = 120 * 1024;

inline constexpr std::size_t kBootIdAt = offsetof(detail::FileHeader, boot_id);

// Whether the file's header holds the sentinel (its boot id is then to be replaced).
inline bool has_boot_id_sentinel(const void* file, std::size_t size) {
  return size >= kBootIdAt + sizeof kBootIdSentinel &&
         std::memcmp(static_cast<const char*>(file) + kBootIdAt, kBootIdSentinel, sizeof kBootIdSentinel) == 0;
}

}  // namespace kvstore::fuzz
