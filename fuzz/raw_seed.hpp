// The one convention shared by the raw-file fuzzer and its seed maker: a
// header whose boot id is kBootIdSentinel gets the running kernel's boot id
// before the file is written. Without it, a committed seed could never reach
// recovery "in the same boot" (FORMAT.md, "What a crash leaves behind"),
// since the boot id changes with every boot of the fuzzing machine.
#pragma once

#include <cstddef>
#include <cstring>
#include <string>

#include "format.hpp"

namespace kvstore::fuzz {

inline constexpr unsigned char kBootIdSentinel[16] = {'s', 'a', 'm', 'e', '-', 'b', 'o', 'o',
                                                      't', '-', 's', 'e', 'n', 't', 'r', 'y'};

inline void substitute_boot_id(std::string& file, const unsigned char* boot_id) {
  constexpr std::size_t at = offsetof(detail::FileHeader, boot_id);
  if (file.size() >= at + sizeof kBootIdSentinel &&
      std::memcmp(file.data() + at, kBootIdSentinel, sizeof kBootIdSentinel) == 0) {
    std::memcpy(file.data() + at, boot_id, sizeof kBootIdSentinel);
  }
}

}  // namespace kvstore::fuzz
