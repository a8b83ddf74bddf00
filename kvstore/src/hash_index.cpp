#include "hash_index.hpp"

#include <algorithm>

namespace kvstore::detail {

void HashIndex::rehash_into(const HashIndex& to) const noexcept {
  for_each([&](std::uint64_t, const Slot& s) { to.insert_new(s.hash, s.offset); });
}

std::vector<std::uint64_t> HashIndex::live_offsets() const {
  std::vector<std::uint64_t> out;
  for_each([&](std::uint64_t, const Slot& s) { out.push_back(s.offset); });
  // File order: the caller then reads the records sequentially.
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace kvstore::detail
