// The index doubling a step per write (index_growth.cpp): while a doubling is
// under way, every insert, overwrite, erase (with the backward shifts it
// makes) and reclaiming move must reach the growing table too, or keys go
// missing when it becomes the index. Checked against a model across many
// doublings, through the public API only.
#include <gtest/gtest.h>

#include <kvstore/store.hpp>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"

using kvstore::Options;
using kvstore::Store;
using kvstore::test::TempDir;

namespace {

using Model = std::map<std::string, std::string>;

void expect_same(const Store& s, const Model& model, const std::string& when) {
  ASSERT_EQ(s.size(), model.size()) << when;
  for (const auto& [k, v] : model) ASSERT_EQ(s.get(k), v) << k << " " << when;
  std::size_t seen = 0;
  s.for_each([&](std::string_view k, std::string_view v) {
    const auto it = model.find(std::string(k));
    EXPECT_TRUE(it != model.end() && it->second == v) << k << " " << when;
    ++seen;
    return true;
  });
  EXPECT_EQ(seen, model.size()) << when;
}

// Random puts (new keys and overwrites) and erases, a few keys apart so that
// runs of the table form and are shifted back, with the checks in between.
void mixed_ops(Store& s, Model& model, int ops, std::uint64_t seed, int key_space) {
  std::mt19937_64 rng(seed);
  for (int n = 0; n < ops; ++n) {
    const std::string k = "k" + std::to_string(rng() % static_cast<std::uint64_t>(key_space));
    if (rng() % 4 == 0) {
      EXPECT_EQ(s.erase(k), model.erase(k) == 1) << k;
    } else {
      const std::string v = std::to_string(n) + std::string(rng() % 40, 'v');
      s.put(k, v);
      model[k] = v;
    }
    if (n % 5000 == 4999) expect_same(s, model, "after op " + std::to_string(n));
  }
}

// A store whose index starts at 64 slots: a dozen doublings ahead of 40,000 keys.
Options small_store() {
  Options o;
  o.initial_size = 64 * 1024;
  return o;
}

}  // namespace

TEST(IndexGrowth, MixedWritesAcrossManyDoublingsLoseNothing) {
  TempDir d;
  const std::string path = d.file("g.kv");
  Model model;
  {
    Store s = Store::open(path, small_store());
    mixed_ops(s, model, 60000, 1, 40000);
    expect_same(s, model, "at the end");
    EXPECT_TRUE(s.check().empty());
  }
  Store again = Store::open(path);
  expect_same(again, model, "after reopening");
  EXPECT_TRUE(again.check().empty());
}

TEST(IndexGrowth, ReclaimingMovesDuringADoublingLoseNothing) {
  TempDir d;
  Options o = small_store();
  o.max_dead_fraction = 0.05;  // records move while the index grows
  o.min_dead_bytes = 0;
  Store s = Store::open(d.file("r.kv"), o);
  Model model;
  mixed_ops(s, model, 40000, 2, 3000);  // few keys, many overwrites: much to reclaim
  mixed_ops(s, model, 40000, 3, 30000);  // then growth
  expect_same(s, model, "at the end");
  EXPECT_TRUE(s.check().empty());
}

TEST(IndexGrowth, ABatchLargerThanTheStepsDoublesAtOnce) {
  TempDir d;
  Store s = Store::open(d.file("b.kv"), small_store());
  Model model;
  mixed_ops(s, model, 3000, 4, 3000);  // leaves a doubling under way, likely
  std::vector<kvstore::BatchOp> batch;
  for (int i = 0; i < 20000; ++i) {
    const std::string k = "batch" + std::to_string(i);
    batch.push_back({k, "b" + std::to_string(i), false});
    model[k] = "b" + std::to_string(i);
  }
  s.apply(batch);
  mixed_ops(s, model, 3000, 5, 3000);
  expect_same(s, model, "at the end");
  EXPECT_TRUE(s.check().empty());
}

// An erase shifts the rest of its run back, and an entry may cross from the
// slots not yet copied to the copied ones (or back, around the end of the
// table): rare in one doubling, so many small stores each grow a few times.
TEST(IndexGrowth, ErasesThatShiftEntriesAcrossTheCopyLoseNothing) {
  TempDir d;
  for (int store = 0; store < 60 && !HasFailure(); ++store) {
    const std::string path = d.file("e" + std::to_string(store) + ".kv");
    Model model;
    {
      Store s = Store::open(path, small_store());
      mixed_ops(s, model, 4000, 100 + static_cast<std::uint64_t>(store), 2500);
      expect_same(s, model, "store " + std::to_string(store));
    }
    std::filesystem::remove(path);
  }
}
