// Space reclaimed as the store is written (Options::max_dead_fraction,
// reclaim.cpp): the file stays bounded under overwrite and erase churn with
// nobody calling compact(), and nothing live is lost on the way.
#include <gtest/gtest.h>

#include <cstring>
#include <kvstore/store.hpp>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <atomic>

#include "../support/files.hpp"
#include "../support/temp_dir.hpp"
#include "byte_source.hpp"
#include "crc32c.hpp"
#include "data_file.hpp"
#include "format.hpp"

using kvstore::Options;
using kvstore::Store;
using kvstore::test::TempDir;

namespace {

std::string key_of(std::uint64_t i) { return "key" + std::to_string(i); }
std::string value_of(std::uint64_t i, std::uint64_t round) {
  return std::string(100, static_cast<char>('a' + round % 26)) + std::to_string(i);
}

// Overwrites random keys of `keys` loaded ones, `rounds` times as many puts as
// keys, keeping `model` in step.
void churn(Store& s, std::map<std::string, std::string>& model, std::uint64_t keys, std::uint64_t rounds,
           std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::uint64_t n = 0; n < keys * rounds; ++n) {
    const std::uint64_t i = rng() % keys;
    const std::string v = value_of(i, n);
    s.put(key_of(i), v);
    model[key_of(i)] = v;
  }
}

// Every pair of `model`, nothing else, and a clean check.
void expect_holds(const Store& s, const std::map<std::string, std::string>& model) {
  EXPECT_TRUE(s.check().empty());
  ASSERT_EQ(s.size(), model.size());
  for (const auto& [k, v] : model) {
    const auto got = s.get(k);
    ASSERT_TRUE(got) << k;
    ASSERT_EQ(*got, v) << k;
  }
}

// A small file whose dead bytes count from the first: reclaiming at the
// share alone (min_dead_bytes has its own test).
Options small() {
  Options o;
  o.initial_size = 64 * 1024;
  o.min_dead_bytes = 0;
  return o;
}

double dead_share(const kvstore::Stats& st) {
  return static_cast<double>(st.dead_bytes) / static_cast<double>(st.record_bytes);
}

}  // namespace

TEST(Reclaim, OverwriteChurnKeepsTheDeadShareNearTheLimit) {
  TempDir d;
  Options o = small();
  std::map<std::string, std::string> model;
  {
    Store s = Store::open(d.file("s.kv"), o);
    constexpr std::uint64_t kKeys = 20000;
    for (std::uint64_t i = 0; i < kKeys; ++i) {
      s.put(key_of(i), value_of(i, 0));
      model[key_of(i)] = value_of(i, 0);
    }
    churn(s, model, kKeys, 2, 1);
    const std::uint64_t settled = s.stats().file_size;
    churn(s, model, kKeys, 4, 2);
    const kvstore::Stats st = s.stats();
    // A chunk's worth of slack over the limit: the oldest chunk's dead records
    // count until the chunk is freed whole.
    EXPECT_LT(dead_share(st), Options{}.max_dead_fraction + 0.1) << st.dead_bytes << " of " << st.record_bytes;
    // Freed chunks are used again: four more rounds of overwrites need no new space.
    EXPECT_EQ(st.file_size, settled);
    expect_holds(s, model);
  }
  const Store again = Store::open(d.file("s.kv"), o);
  expect_holds(again, model);
}

TEST(Reclaim, TurnedOffTheDeadRecordsStay) {
  TempDir d;
  Options o = small();
  o.max_dead_fraction = 0;
  Store s = Store::open(d.file("s.kv"), o);
  std::map<std::string, std::string> model;
  constexpr std::uint64_t kKeys = 5000;
  for (std::uint64_t i = 0; i < kKeys; ++i) s.put(key_of(i), value_of(i, 0));
  churn(s, model, kKeys, 5, 2);
  EXPECT_GT(dead_share(s.stats()), 0.7);
}

TEST(Reclaim, RejectsALimitOutsideZeroToOne) {
  TempDir d;
  for (const double bad : {-0.1, 1.0, 2.0, std::nan("")}) {
    Options o;
    o.max_dead_fraction = bad;
    EXPECT_THROW({ Store s = Store::open(d.file("s.kv"), o); }, kvstore::Error) << bad;
  }
}

TEST(Reclaim, EraseChurnFreesChunksAndKeepsTheSurvivors) {
  TempDir d;
  Options o = small();
  Store s = Store::open(d.file("s.kv"), o);
  std::map<std::string, std::string> model;
  std::mt19937_64 rng(3);
  std::uint64_t next = 0;
  // A sliding window of keys: each round puts new keys and erases old ones.
  for (std::uint64_t round = 0; round < 40; ++round) {
    for (int n = 0; n < 1000; ++n, ++next) {
      s.put(key_of(next), value_of(next, round));
      model[key_of(next)] = value_of(next, round);
    }
    for (auto it = model.begin(); it != model.end() && model.size() > 3000;) {
      if (rng() % 2 == 0) {
        EXPECT_TRUE(s.erase(it->first));
        it = model.erase(it);
      } else {
        ++it;
      }
    }
  }
  const kvstore::Stats st = s.stats();
  EXPECT_LT(dead_share(st), 0.35) << st.dead_bytes << " of " << st.record_bytes;
  expect_holds(s, model);
}

TEST(Reclaim, BatchesAndSyncAlwaysKeepEveryValue) {
  TempDir d;
  Options o = small();
  o.sync = kvstore::Sync::always;
  Store s = Store::open(d.file("s.kv"), o);
  std::map<std::string, std::string> model;
  std::mt19937_64 rng(4);
  for (std::uint64_t round = 0; round < 60; ++round) {
    std::vector<kvstore::BatchOp> batch;
    for (int n = 0; n < 100; ++n) {
      const std::uint64_t i = rng() % 1000;
      const bool erase = rng() % 4 == 0;
      batch.push_back({key_of(i), value_of(i, round), erase});
    }
    s.apply(batch);
    for (const kvstore::BatchOp& op : batch) {
      if (op.erase) {
        model.erase(op.key);
      } else {
        model[op.key] = op.value;
      }
    }
  }
  // Not the limit itself: a write frees one chunk at most, and at this size
  // a batch of 100 fills most of a chunk (0.39-0.43 measured; 0.84 without
  // reclaiming).
  EXPECT_LT(dead_share(s.stats()), 0.5);
  expect_holds(s, model);
}

TEST(Reclaim, AForEachInProgressKeepsItsRecords) {
  // A for_each reads its snapshot's records without the lock: chunks freed
  // under it would hand it other records. Another handle churns meanwhile.
  TempDir d;
  Options o = small();
  Store s = Store::open(d.file("s.kv"), o);
  constexpr std::uint64_t kKeys = 3000;
  for (std::uint64_t i = 0; i < kKeys; ++i) s.put(key_of(i), value_of(i, 0));
  std::atomic<bool> done{false};
  std::thread writer([&] {
    Store w = Store::open(d.file("s.kv"), o);
    std::mt19937_64 rng(5);
    for (std::uint64_t n = 0; !done.load(); ++n) {
      const std::uint64_t i = rng() % kKeys;
      w.put(key_of(i), value_of(i, n));
    }
  });
  const std::uint64_t before = s.stats().record_bytes;
  for (int pass = 0; pass < 20; ++pass) {
    std::uint64_t seen = 0;
    // A record freed under it fails its checksum (Error) or is another key's.
    EXPECT_NO_THROW(s.for_each([&](std::string_view k, std::string_view v) {
      // Every value ends with its key's number: a record from elsewhere would not.
      const std::string_view number = k.substr(3);
      EXPECT_TRUE(v.size() > number.size() && v.substr(v.size() - number.size()) == number) << k;
      ++seen;
      if (seen % 500 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let the writer run
      return true;
    }));
    EXPECT_EQ(seen, kKeys);
  }
  done = true;
  writer.join();
  EXPECT_GT(s.stats().record_bytes, before / 2);  // the writer wrote
  EXPECT_TRUE(s.check().empty());
}

TEST(Reclaim, AVersion1FileIsNeverReclaimed) {
  // Such a file must stay readable by a version 1 build, which knows no
  // chunk list that starts past ordinal 0.
  TempDir d;
  Options o = small();
  const std::string path = d.file("v1.kv");
  Store::open(path, o).put("seed", "x");
  std::string bytes = kvstore::test::read_file(path);
  const std::uint32_t v1 = 1;
  std::memcpy(bytes.data() + offsetof(kvstore::detail::FileHeader, format_version), &v1, 4);
  const std::uint64_t fp = kvstore::detail::layout_fingerprint(1);
  std::memcpy(bytes.data() + offsetof(kvstore::detail::FileHeader, fingerprint), &fp, 8);
  const std::uint32_t crc = kvstore::detail::crc32c(0, bytes.data(), kvstore::detail::kHeaderCrcBytes);
  std::memcpy(bytes.data() + kvstore::detail::kHeaderCrcBytes, &crc, 4);
  kvstore::test::write_file(path, bytes);
  std::map<std::string, std::string> model{{"seed", "x"}};
  {
    Store s = Store::open(path, o);
    churn(s, model, 3000, 4, 6);
    EXPECT_GT(dead_share(s.stats()), 0.6);
    expect_holds(s, model);
  }
  EXPECT_EQ(kvstore::test::read_file(path)[offsetof(kvstore::detail::FileHeader, format_version)], 1);
}

TEST(Reclaim, AfterACompactTheChurnStaysWithinTwiceTheLiveBytes) {
  // compact() lays the live records out in chunks no larger than the
  // writers' own: a chunk is freed only once all of it has been moved, and
  // with one chunk of them all the file had to hold both copies of most
  // records (2.96x the raw bytes at 1M keys, against 2.09 from a fresh load).
  TempDir d;
  Store s = Store::open(d.file("s.kv"), small());
  std::map<std::string, std::string> model;
  constexpr std::uint64_t kKeys = 40000;
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    s.put(key_of(i), value_of(i, 0));
    model[key_of(i)] = value_of(i, 0);
  }
  s.compact();
  const std::uint64_t live = s.stats().record_bytes;
  // The records the file must hold at the worst moment of the churn (its
  // size proper grows in doublings at this scale, which would hide it).
  std::uint64_t most = 0;
  std::mt19937_64 rng(4);
  for (std::uint64_t n = 0; n < 3 * kKeys; ++n) {
    const std::uint64_t i = rng() % kKeys;
    s.put(key_of(i), value_of(i, n));
    model[key_of(i)] = value_of(i, n);
    most = std::max(most, s.stats().record_bytes);
  }
  // Measured: 1.50x here; 2.13x with one chunk.
  EXPECT_LT(most, 2 * live);
  expect_holds(s, model);
}

TEST(Reclaim, DeadBytesUnderTheFloorAreLeftAlone) {
  // A small store rewritten often: at the share alone, most of the oldest
  // chunk would still be live, appended again chunk after chunk.
  TempDir d;
  Options o = small();
  o.min_dead_bytes = 512 * 1024;
  Store s = Store::open(d.file("s.kv"), o);
  std::map<std::string, std::string> model;
  constexpr std::uint64_t kKeys = 500;  // ~60 KB of live records
  for (std::uint64_t i = 0; i < kKeys; ++i) {
    s.put(key_of(i), value_of(i, 0));
    model[key_of(i)] = value_of(i, 0);
  }
  std::mt19937_64 rng(5);
  std::uint64_t most = 0;
  bool reclaimed = false;  // dead bytes dropped at some write
  std::uint64_t dead_before = 0;
  for (std::uint64_t n = 0; n < 60 * kKeys; ++n) {  // ~3.6 MB of overwrites
    const std::uint64_t i = rng() % kKeys;
    s.put(key_of(i), value_of(i, n + 1));
    model[key_of(i)] = value_of(i, n + 1);
    const kvstore::Stats st = s.stats();
    if (st.dead_bytes < dead_before) {
      reclaimed = true;
      // Nothing was freed before the dead bytes passed the floor.
      EXPECT_GT(dead_before, o.min_dead_bytes);
    }
    dead_before = st.dead_bytes;
    most = std::max(most, st.dead_bytes);
  }
  EXPECT_TRUE(reclaimed);
  // Past the floor, reclaiming keeps up: the floor, plus the oldest chunk,
  // whose dead records count until it is freed whole (an eighth of the
  // records at this size), plus a write's slack.
  EXPECT_LT(most, o.min_dead_bytes + 256 * 1024) << most;
  expect_holds(s, model);
}

// A chunk reclaiming cuts off the list is handed to the allocator only once
// a later sync has made the root without it durable (reclaim.cpp), or as its
// handle closes: after the close, every allocated block is one the store
// holds, and nothing reclaimed stays allocated.
TEST(Reclaim, ClosingFreesTheChunksItCutOff) {
  TempDir d;
  const std::string path = d.file("r.kv");
  std::map<std::string, std::string> model;
  {
    Store s = Store::open(path, small());
    churn(s, model, 500, 20, 11);
    EXPECT_LT(dead_share(s.stats()), 0.5);  // it did reclaim
  }
  Store s = Store::open(path, small());
  expect_holds(s, model);
  const kvstore::Stats st = s.stats();
  const kvstore::detail::DataFile f = kvstore::detail::DataFile::open(path, false, Options{}.max_file_size);
  std::uint64_t tail = 0;
  const auto held = f.held_blocks(kvstore::detail::MappedBytes(f.base(), f.mapped_size()), tail);
  std::uint64_t held_bytes = 0;
  for (const auto& b : held) held_bytes += b.bytes;
  // The allocator's own bookkeeping takes ~4 KiB here; a chunk left
  // allocated would take at least 16 KiB more.
  EXPECT_GE(st.used_bytes, held_bytes);
  EXPECT_LT(st.used_bytes - held_bytes, 16 * 1024) << held.size() << " blocks held";
}
