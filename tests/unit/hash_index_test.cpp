// HashIndex on its own: probing, the backward-shift delete across the table's
// wrap-around, rehashing, the load-factor rule. Keys are their own offsets here.
#include <gtest/gtest.h>

#include <map>
#include <random>
#include <vector>

#include "hash_index.hpp"

using kvstore::detail::HashIndex;
using kvstore::detail::Slot;

namespace {

// A key k lives at offset 8k (offsets are never 0) and is found by its hash.
std::uint64_t find(const HashIndex& ix, std::uint64_t hash, std::uint64_t key, bool& found) {
  return ix.probe(hash, [&](std::uint64_t offset) { return offset == key * 8; }, found);
}

}  // namespace

TEST(HashIndex, LoadFactorRule) {
  EXPECT_EQ(HashIndex::slots_for(0), 64u);
  EXPECT_EQ(HashIndex::slots_for(48), 64u);
  EXPECT_EQ(HashIndex::slots_for(49), 128u);
  EXPECT_EQ(HashIndex::slots_for(49, 256), 256u);
  EXPECT_TRUE(HashIndex::fits(48, 64));
  EXPECT_FALSE(HashIndex::fits(49, 64));
}

TEST(HashIndex, DeletesKeepEveryOtherKeyReachable) {
  // Many keys on few home slots, near the end of the table, so that runs wrap
  // around: each delete must shift the right entries back, and only those.
  std::vector<Slot> table(64);
  const HashIndex ix(table.data(), table.size());
  std::map<std::uint64_t, std::uint64_t> model;  // key -> hash
  std::mt19937_64 rng(5);
  for (std::uint64_t key = 1; key <= 40; ++key) {
    const std::uint64_t hash = 56 + rng() % 12;  // homes 56..63 and 0..3
    bool found = true;
    const std::uint64_t i = find(ix, hash, key, found);
    ASSERT_FALSE(found);
    ASSERT_NE(i, HashIndex::kFull);
    ix[i] = Slot{hash, key * 8};
    model[key] = hash;
  }
  for (int round = 0; round < 40; ++round) {
    auto victim = model.begin();
    std::advance(victim, static_cast<long>(rng() % model.size()));
    bool found = false;
    const std::uint64_t i = find(ix, victim->second, victim->first, found);
    ASSERT_TRUE(found);
    ix.remove(i);
    model.erase(victim);
    for (const auto& [key, hash] : model) {
      (void)find(ix, hash, key, found);
      ASSERT_TRUE(found) << "key " << key << " lost after round " << round;
    }
    std::uint64_t occupied = 0;
    ix.for_each([&](std::uint64_t, const Slot&) { ++occupied; });
    ASSERT_EQ(occupied, model.size());
  }
}

TEST(HashIndex, FullTableIsReportedNotLooped) {
  std::vector<Slot> table(4);
  const HashIndex ix(table.data(), table.size());
  for (std::uint64_t k = 1; k <= 4; ++k) ix.insert_new(k, k * 8);
  bool found = true;
  EXPECT_EQ(find(ix, 1, 99, found), HashIndex::kFull);
  EXPECT_FALSE(found);
}

TEST(HashIndex, RehashKeepsEveryKeyAndLiveOffsetsAreInFileOrder) {
  std::vector<Slot> small(64);
  const HashIndex from(small.data(), small.size());
  for (std::uint64_t k = 1; k <= 48; ++k) from.insert_new(k * 0x9E3779B97F4A7C15ULL, k * 8);
  std::vector<Slot> big(128);
  const HashIndex to(big.data(), big.size());
  from.rehash_into(to);
  for (std::uint64_t k = 1; k <= 48; ++k) {
    bool found = false;
    (void)find(to, k * 0x9E3779B97F4A7C15ULL, k, found);
    EXPECT_TRUE(found) << k;
  }
  const std::vector<std::uint64_t> offsets = to.live_offsets();
  ASSERT_EQ(offsets.size(), 48u);
  for (std::size_t i = 0; i < offsets.size(); ++i) EXPECT_EQ(offsets[i], (i + 1) * 8);
}
