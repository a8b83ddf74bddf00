#include "hash_index.hpp"

#include <algorithm>

namespace kvstore::detail {

void HashIndex::remove(std::uint64_t i) const noexcept {
  // Backward-shift deletion: pull later entries of the run into the hole so that
  // every key stays reachable from its home slot without tombstones.
  std::uint64_t j = i;
  for (std::uint64_t n = 0; n < mask_; ++n) {  // bounded: a damaged index may have no empty slot
    j = (j + 1) & mask_;
    if (slots_[j].offset == 0) break;
    const std::uint64_t home = slots_[j].hash & mask_;
    const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
    if (stays) continue;
    slots_[i] = slots_[j];
    i = j;
  }
  slots_[i] = Slot{0, 0};
}

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
