// The hash index: a view over a table of slots (FORMAT.md "Index"), wherever
// the table lives (the mapped file, or private memory while a file is being
// rebuilt). Open addressing with linear probing and backward-shift deletion
// (no tombstones), at a load factor of at most 3/4. It knows slots only: a
// key is compared through a callback, so the index never reads a record.
#pragma once

#include <cstdint>
#include <vector>

#include "layout.hpp"

namespace kvstore::detail {

class HashIndex {
 public:
  static constexpr std::uint64_t kInitialSlots = 64;
  // Returned by probe() when every slot is taken (only a damaged table is full).
  static constexpr std::uint64_t kFull = ~std::uint64_t{0};

  // `count` is a power of two; the caller has checked that `slots` holds it.
  HashIndex(Slot* slots, std::uint64_t count) noexcept : slots_(slots), mask_(count - 1) {}

  // The load-factor rule: the smallest power of two, at least `at_least`,
  // that holds `keys` at a load of at most 3/4.
  [[nodiscard]] static std::uint64_t slots_for(std::uint64_t keys, std::uint64_t at_least = kInitialSlots) noexcept {
    std::uint64_t n = at_least;
    while (keys * 4 > n * 3) n *= 2;
    return n;
  }
  [[nodiscard]] static bool fits(std::uint64_t keys, std::uint64_t slots) noexcept { return keys * 4 <= slots * 3; }

  [[nodiscard]] std::uint64_t count() const noexcept { return mask_ + 1; }
  [[nodiscard]] Slot& operator[](std::uint64_t i) const noexcept { return slots_[i]; }

  // The slot holding the key (found), or the empty slot where it would go.
  // `is_key(offset)` says whether the record at `offset` has the key; it is
  // asked only when the stored hash matches. kFull if no slot is empty.
  template <class IsKey>
  [[nodiscard]] std::uint64_t probe(std::uint64_t hash, IsKey&& is_key, bool& found) const {
    for (std::uint64_t n = 0; n <= mask_; ++n) {
      const std::uint64_t i = (hash + n) & mask_;
      const Slot& s = slots_[i];
      if (s.offset == 0) {
        found = false;
        return i;
      }
      if (s.hash == hash && is_key(s.offset)) {
        found = true;
        return i;
      }
    }
    found = false;
    return kFull;
  }

  // Adds a key the index does not hold (rehash, rebuild, in-place repair):
  // no key comparison. The caller keeps the load within the rule.
  void insert_new(std::uint64_t hash, std::uint64_t offset) const noexcept {
    std::uint64_t i = hash & mask_;
    while (slots_[i].offset != 0) i = (i + 1) & mask_;
    slots_[i] = Slot{hash, offset};
  }

  // Empties slot `i` and closes the gap behind it (backward shift), telling
  // `moved(from, to)` of every entry it moves.
  template <class Moved>
  void remove(std::uint64_t i, Moved&& moved) const noexcept {
    // Pull later entries of the run into the hole so that every key stays
    // reachable from its home slot without tombstones.
    std::uint64_t j = i;
    for (std::uint64_t n = 0; n < mask_; ++n) {  // bounded: a damaged index may have no empty slot
      j = (j + 1) & mask_;
      if (slots_[j].offset == 0) break;
      const std::uint64_t home = slots_[j].hash & mask_;
      const bool stays = (i <= j) ? (i < home && home <= j) : (i < home || home <= j);
      if (stays) continue;
      slots_[i] = slots_[j];
      moved(j, i);
      i = j;
    }
    slots_[i] = Slot{0, 0};
  }
  void remove(std::uint64_t i) const noexcept {
    remove(i, [](std::uint64_t, std::uint64_t) {});
  }
  // The slot holding the record at `offset` (its key hashing to `hash`), or
  // kFull: no key comparison, records have one offset each.
  [[nodiscard]] std::uint64_t find_offset(std::uint64_t hash, std::uint64_t offset) const noexcept {
    for (std::uint64_t n = 0; n <= mask_; ++n) {
      const std::uint64_t i = (hash + n) & mask_;
      if (slots_[i].offset == offset) return i;
      if (slots_[i].offset == 0) break;
    }
    return kFull;
  }
  // Every occupied slot of this index, re-placed in `to` (a larger, empty index).
  void rehash_into(const HashIndex& to) const noexcept;
  // Offsets of every indexed record, in file order.
  [[nodiscard]] std::vector<std::uint64_t> live_offsets() const;
  // fn(slot index, slot) for every occupied slot.
  template <class F>
  void for_each(F&& fn) const {
    for (std::uint64_t i = 0; i <= mask_; ++i) {
      if (slots_[i].offset != 0) fn(i, slots_[i]);
    }
  }

 private:
  Slot* slots_;
  std::uint64_t mask_;
};

}  // namespace kvstore::detail
