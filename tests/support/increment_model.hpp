// What Store::increment must do, computed apart from the library (for the
// property test and the ops fuzzer): the new value, or nullopt when it must
// refuse (not an optional '-' then digits, outside int64, or an overflow).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace kvstore::test {

inline std::optional<std::int64_t> expected_increment(const std::optional<std::string>& value, std::int64_t delta) {
  std::int64_t v = 0;
  if (value) {
    const std::string& t = *value;
    const bool negative = !t.empty() && t[0] == '-';
    const std::size_t first = negative ? 1 : 0;
    if (first == t.size()) return std::nullopt;
    // Accumulated as a negative number, so that INT64_MIN fits.
    for (std::size_t i = first; i < t.size(); ++i) {
      if (t[i] < '0' || t[i] > '9' || __builtin_mul_overflow(v, 10, &v) || __builtin_sub_overflow(v, t[i] - '0', &v)) {
        return std::nullopt;
      }
    }
    if (!negative && __builtin_mul_overflow(v, -1, &v)) return std::nullopt;
  }
  std::int64_t r = 0;
  if (__builtin_add_overflow(v, delta, &r)) return std::nullopt;
  return r;
}

}  // namespace kvstore::test
