// Unit tests of every public function of kvstore::Store, with bad arguments
// (bad files: bad_file_test.cpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <fstream>
#include <kvstore/store.hpp>
#include <random>
#include <set>
#include <stdexcept>
#include <vector>
#include <string>

#include "../support/errors.hpp"
#include "../support/temp_dir.hpp"
#include "../support/files.hpp"

using kvstore::Errc;
using kvstore::Error;
using kvstore::Options;
using kvstore::Store;
using kvstore::test::code_of;
using kvstore::test::TempDir;
using kvstore::test::tiny;

using kvstore::test::write_file;

TEST(Store, PutGetEraseContainsSize) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  EXPECT_EQ(s.size(), 0u);
  EXPECT_FALSE(s.get("a"));
  s.put("a", "1");
  s.put("b", "2");
  EXPECT_EQ(s.get("a"), "1");
  EXPECT_TRUE(s.contains("b"));
  EXPECT_EQ(s.size(), 2u);
  s.put("a", "one");  // replace
  EXPECT_EQ(s.get("a"), "one");
  EXPECT_EQ(s.size(), 2u);
  EXPECT_TRUE(s.erase("a"));
  EXPECT_FALSE(s.erase("a"));
  EXPECT_FALSE(s.contains("a"));
  EXPECT_EQ(s.size(), 1u);
}

TEST(Store, BinaryKeysEmptyKeyEmptyValue) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  const std::string nul_key("a\0b\0", 4);
  std::string all_bytes;
  for (int c = 0; c < 256; ++c) all_bytes.push_back(static_cast<char>(c));
  s.put(nul_key, all_bytes);
  s.put("", "empty key");
  s.put("empty value", "");
  EXPECT_EQ(s.get(nul_key), all_bytes);
  EXPECT_FALSE(s.contains(std::string("a\0b", 3)));  // a prefix is another key
  EXPECT_EQ(s.get(""), "empty key");
  EXPECT_EQ(s.get("empty value"), "");
  EXPECT_TRUE(s.contains("empty value"));
}

TEST(Store, LargeValues) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  std::string big(8 << 20, '\0');
  std::mt19937 rng(1);
  for (char& c : big) c = static_cast<char>(rng());
  s.put("big", big);
  s.put("big2", big.substr(3));
  EXPECT_EQ(s.get("big"), big);
  EXPECT_EQ(s.get("big2"), big.substr(3));
  EXPECT_TRUE(s.check().empty());
}

TEST(Store, VisitSeesValueWithoutCopy) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  s.put("k", "value");
  std::string seen;
  EXPECT_TRUE(s.visit("k", [&](std::string_view v) { seen = v; }));
  EXPECT_EQ(seen, "value");
  EXPECT_FALSE(s.visit("missing", [&](std::string_view) { ADD_FAILURE() << "called for a missing key"; }));
}

TEST(Store, ForEachVisitsEveryPairOnceAndMayCallBack) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  for (int i = 0; i < 1000; ++i) s.put("k" + std::to_string(i), std::to_string(i));
  std::map<std::string, std::string> seen;
  s.for_each([&](std::string_view k, std::string_view v) {
    EXPECT_TRUE(seen.emplace(std::string(k), std::string(v)).second) << "seen twice: " << k;
    if (seen.size() == 10) s.put("added-during-iteration", "x");  // allowed: the lock is not held
    return true;
  });
  EXPECT_EQ(seen.size(), 1000u);  // a snapshot: the key added meanwhile is not in it
  for (int i = 0; i < 1000; ++i) EXPECT_EQ(seen["k" + std::to_string(i)], std::to_string(i));
  int calls = 0;
  s.for_each([&](std::string_view, std::string_view) { return ++calls < 5; });
  EXPECT_EQ(calls, 5);
}

TEST(Store, ApplyIsAllOrNothing) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  s.put("gone", "x");
  s.apply({{"a", "1", false}, {"b", "2", false}, {"gone", "", true}, {"a", "3", false}});
  EXPECT_EQ(s.get("a"), "3");
  EXPECT_EQ(s.get("b"), "2");
  EXPECT_FALSE(s.contains("gone"));
  s.apply({});
  EXPECT_EQ(s.size(), 2u);
  // A batch that cannot fit leaves the store as it was.
  Options capped = tiny();
  capped.max_file_size = 256 * 1024;
  Store c = Store::open(d.file("c.kv"), capped);
  c.put("keep", "me");
  std::vector<kvstore::BatchOp> huge;
  for (int i = 0; i < 10; ++i) huge.push_back({"k" + std::to_string(i), std::string(100'000, 'x'), false});
  EXPECT_EQ(code_of([&] { c.apply(huge); }), Errc::store_full);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(c.get("keep"), "me");
  EXPECT_TRUE(c.check().empty());
}

TEST(Store, PersistsAcrossReopen) {
  TempDir d;
  const std::string path = d.file("s.kv");
  {
    Store s = Store::open(path, tiny());
    for (int i = 0; i < 5000; ++i) s.put("k" + std::to_string(i), std::string(static_cast<std::size_t>(i % 100), 'v'));
    s.erase("k7");
  }
  Store s = Store::open(path, tiny());
  EXPECT_EQ(s.size(), 4999u);
  EXPECT_EQ(s.get("k4999"), std::string(99, 'v'));
  EXPECT_FALSE(s.contains("k7"));
  EXPECT_EQ(s.stats().recoveries, 0u);  // closed cleanly: no rebuild
}

// Options::sync_on_close = false: the last close leaves the file unclean and
// unsynced. An open in the same boot uses it as it is; an open after a reboot
// (the boot id cleared, as a power cut's next boot would find it) rebuilds
// the index and, with every page written, finds every write.
TEST(Store, CloseWithoutSyncLeavesTheFileAsItIs) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Options no_sync = tiny();
  no_sync.sync_on_close = false;
  {
    Store s = Store::open(path, no_sync);
    for (int i = 0; i < 5000; ++i) s.put("k" + std::to_string(i), std::string(static_cast<std::size_t>(i % 100), 'v'));
    s.erase("k7");
  }
  auto clean_flag = [](const std::string& bytes) {
    std::uint32_t clean = 0;
    std::memcpy(&clean, bytes.data() + 132, sizeof clean);  // FileHeader::clean (format_test.cpp)
    return clean;
  };
  std::string bytes = kvstore::test::read_file(path);
  EXPECT_EQ(clean_flag(bytes), 0u);
  std::memset(bytes.data() + 168, 0, 16);  // FileHeader::boot_id: another boot
  const std::string rebooted = d.file("rebooted.kv");
  kvstore::test::write_file(rebooted, bytes);
  for (const std::string& p : {path, rebooted}) {
    Store s = Store::open(p, tiny());
    EXPECT_EQ(s.size(), 4999u) << p;
    EXPECT_EQ(s.get("k4999"), std::string(99, 'v')) << p;
    EXPECT_FALSE(s.contains("k7")) << p;
    EXPECT_TRUE(s.check().empty()) << p;
    EXPECT_EQ(s.stats().recoveries, p == path ? 0u : 1u) << p;
  }
  // The default close, after those opens, marked both clean.
  EXPECT_NE(clean_flag(kvstore::test::read_file(path)), 0u);
  EXPECT_NE(clean_flag(kvstore::test::read_file(rebooted)), 0u);
}

TEST(Store, GrowsFrom64KiBPastHundredMiB) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  EXPECT_EQ(s.stats().file_size, 64u * 1024);
  const std::string value(1000, 'g');
  for (int i = 0; i < 120'000; ++i) s.put("key" + std::to_string(i), value);
  const kvstore::Stats st = s.stats();
  EXPECT_GT(st.file_size, 100u << 20);
  EXPECT_GE(st.grows, 10u);
  EXPECT_EQ(st.keys, 120'000u);
  EXPECT_EQ(s.get("key0"), value);
  EXPECT_EQ(s.get("key119999"), value);
}

TEST(Store, CompactShrinksFileOnlineAndKeepsData) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Store s = Store::open(path, tiny());
  Store other = Store::open(path, tiny());
  for (int i = 0; i < 20'000; ++i) s.put("k" + std::to_string(i), std::string(200, 'x'));
  for (int i = 0; i < 20'000; i += 2) s.erase("k" + std::to_string(i));
  const auto before = std::filesystem::file_size(path);
  s.compact();
  const auto after = std::filesystem::file_size(path);
  EXPECT_LT(after, before / 2);
  EXPECT_EQ(s.stats().compactions, 1u);
  EXPECT_EQ(s.stats().dead_bytes, 0u);
  // The other handle adopts the new file by itself, for reads and for writes.
  EXPECT_EQ(other.size(), 10'000u);
  EXPECT_EQ(other.get("k1"), std::string(200, 'x'));
  EXPECT_FALSE(other.contains("k0"));
  other.put("new", "value");
  EXPECT_EQ(s.get("new"), "value");
  EXPECT_TRUE(s.check().empty());
}

TEST(Store, TwoHandlesInOneProcessSeeEachOther) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Store a = Store::open(path, tiny());
  Store b = Store::open(path, tiny());
  a.put("from-a", "1");
  b.put("from-b", "2");
  for (int i = 0; i < 20'000; ++i) a.put("grow" + std::to_string(i), std::string(300, 'z'));  // b remaps
  EXPECT_EQ(b.get("from-a"), "1");
  EXPECT_EQ(a.get("from-b"), "2");
  EXPECT_EQ(b.get("grow19999"), std::string(300, 'z'));
  EXPECT_EQ(a.stats().processes, 2u);
}

TEST(Store, MoveKeepsTheHandle) {
  TempDir d;
  Store a = Store::open(d.file("s.kv"), tiny());
  a.put("k", "v");
  Store b = std::move(a);
  EXPECT_EQ(b.get("k"), "v");
  Store c = Store::open(d.file("t.kv"), tiny());
  c = std::move(b);
  EXPECT_EQ(c.get("k"), "v");
}

TEST(Store, ReadOnlyRefusesWrites) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Store::open(path, tiny()).put("k", "v");
  Options ro;
  ro.read_only = true;
  Store s = Store::open(path, ro);
  EXPECT_EQ(s.get("k"), "v");
  EXPECT_EQ(code_of([&] { s.put("k", "w"); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { (void)s.erase("k"); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { s.compact(); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { s.apply({{"x", "y", false}}); }), Errc::read_only);
  EXPECT_EQ(s.get("k"), "v");
}

TEST(Store, MissingFileWithoutCreate) {
  TempDir d;
  Options o;
  o.create = false;
  EXPECT_EQ(code_of([&] { (void)Store::open(d.file("nope.kv"), o); }), Errc::io);
  EXPECT_FALSE(std::filesystem::exists(d.file("nope.kv")));
  Options ro;
  ro.read_only = true;
  EXPECT_EQ(code_of([&] { (void)Store::open(d.file("nope.kv"), ro); }), Errc::io);
}

TEST(Store, BadOptions) {
  TempDir d;
  Options o;
  o.initial_size = 2 << 20;
  o.max_file_size = 1 << 20;
  EXPECT_EQ(code_of([&] { (void)Store::open(d.file("s.kv"), o); }), Errc::invalid_argument);
  EXPECT_EQ(code_of([&] { (void)Store::open("", Options{}); }), Errc::invalid_argument);
}

TEST(Store, StoreFullAtMaxFileSize) {
  TempDir d;
  Options o = tiny();
  o.max_file_size = 1 << 20;
  Store s = Store::open(d.file("s.kv"), o);
  int stored = 0;
  const Errc code = code_of([&] {
    for (;; ++stored) s.put("k" + std::to_string(stored), std::string(1000, 'f'));
  });
  EXPECT_EQ(code, Errc::store_full);
  EXPECT_GT(stored, 500);
  EXPECT_EQ(s.size(), static_cast<std::size_t>(stored));  // nothing lost, nothing half-stored
  EXPECT_TRUE(s.check().empty());
  EXPECT_LE(s.stats().file_size, 1u << 20);
}

TEST(Store, SyncAndStats) {
  TempDir d;
  Options o = tiny();
  o.sync = kvstore::Sync::always;
  Store s = Store::open(d.file("s.kv"), o);
  s.put("k", "value");
  s.sync();
  const kvstore::Stats st = s.stats();
  EXPECT_EQ(st.keys, 1u);
  EXPECT_EQ(st.key_bytes, 1u);
  EXPECT_EQ(st.value_bytes, 5u);
  EXPECT_EQ(st.sync, kvstore::Sync::always);
  EXPECT_GE(st.generation, 1u);
  EXPECT_EQ(st.processes, 1u);
  EXPECT_GT(st.table_slots, 0u);
  EXPECT_GT(st.load_factor, 0.0);
  EXPECT_EQ(st.file_size, std::filesystem::file_size(d.file("s.kv")));
  EXPECT_EQ(s.path(), d.file("s.kv"));
}

// ------------------------------------------------------- options and handles

// options.hpp: initial_size is "at least 64 KiB; rounded up to 4 KiB". A
// smaller request is either refused as invalid_argument or raised to 64 KiB;
// it never yields a smaller file.
TEST(Options, InitialSizeBelow64KiBIsRaisedOrRefused) {
  TempDir d;
  for (const std::uint64_t size : {std::uint64_t{0}, std::uint64_t{1000}, std::uint64_t{4096}, std::uint64_t{60000}}) {
    Options o;
    o.initial_size = size;
    const std::string path = d.file("small" + std::to_string(size) + ".kv");
    try {
      Store s = Store::open(path, o);
      EXPECT_GE(s.stats().file_size, 64u * 1024) << "initial_size " << size;
      EXPECT_GE(std::filesystem::file_size(path), 64u * 1024) << "initial_size " << size;
      s.put("k", std::string(100'000, 'v'));  // and it still grows from there
      EXPECT_EQ(s.get("k"), std::string(100'000, 'v'));
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Errc::invalid_argument) << "initial_size " << size << ": " << e.what();
    }
  }
}

TEST(Options, InitialSizeIsRoundedUpToAPage) {
  TempDir d;
  Options o;
  o.initial_size = 70'000;
  Store s = Store::open(d.file("s.kv"), o);
  const std::uint64_t size = std::filesystem::file_size(d.file("s.kv"));
  EXPECT_EQ(size % 4096, 0u);
  EXPECT_GE(size, 70'000u);
  EXPECT_LT(size, 70'000u + 4096);
  EXPECT_EQ(s.stats().file_size, size);
}

TEST(Options, MoreBadOptions) {
  TempDir d;
  Options small_max;
  small_max.initial_size = 64 * 1024;
  small_max.max_file_size = 32 * 1024;
  EXPECT_EQ(code_of([&] { (void)Store::open(d.file("a.kv"), small_max); }), Errc::invalid_argument);
  Options negative;
  negative.lock_timeout = std::chrono::milliseconds(-1);
  EXPECT_EQ(code_of([&] { (void)Store::open(d.file("b.kv"), negative); }), Errc::invalid_argument);
  EXPECT_FALSE(std::filesystem::exists(d.file("a.kv")));
  EXPECT_FALSE(std::filesystem::exists(d.file("b.kv")));
}

TEST(Options, CreateFalseOpensAnExistingStore) {
  TempDir d;
  Store::open(d.file("s.kv"), tiny()).put("k", "v");
  Options o;
  o.create = false;
  EXPECT_EQ(Store::open(d.file("s.kv"), o).get("k"), "v");
}

TEST(Store, MoveAssignmentClosesTheStoreItReplaces) {
  TempDir d;
  Store a = Store::open(d.file("a.kv"), tiny());
  Store b = Store::open(d.file("b.kv"), tiny());
  a.put("in-a", "1");
  b.put("in-b", "2");
  {
    Store probe = Store::open(d.file("a.kv"), tiny());
    EXPECT_EQ(probe.stats().processes, 2u);
  }
  a = std::move(b);  // a's old handle on a.kv is closed here
  EXPECT_EQ(a.get("in-b"), "2");
  EXPECT_EQ(a.path(), d.file("b.kv"));
  Store probe = Store::open(d.file("a.kv"), tiny());
  EXPECT_EQ(probe.stats().processes, 1u);
  EXPECT_EQ(probe.get("in-a"), "1");
}

TEST(Store, CallbackExceptionsPropagateAndReleaseTheLock) {
  TempDir d;
  Options quick = tiny();
  quick.lock_timeout = std::chrono::milliseconds(2000);
  Store s = Store::open(d.file("s.kv"), quick);
  Store other = Store::open(d.file("s.kv"), quick);
  s.put("k", "v");
  s.put("l", "w");
  EXPECT_THROW(s.visit("k", [](std::string_view) { throw std::logic_error("from visit"); }), std::logic_error);
  other.put("after-visit", "1");  // busy (or a hang) here would mean the read lock leaked
  EXPECT_THROW(s.for_each([](std::string_view, std::string_view) -> bool { throw std::logic_error("from for_each"); }),
               std::logic_error);
  other.put("after-for_each", "1");
  s.put("same-handle", "1");
  EXPECT_EQ(s.size(), 5u);
  EXPECT_EQ(other.get("k"), "v");
}

TEST(Store, ReadOnlyHandleFollowsGrowthAndCompaction) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Store w = Store::open(path, tiny());
  Options ro = tiny();
  ro.read_only = true;
  Store r = Store::open(path, ro);
  const std::uint64_t generation = r.stats().generation;
  for (int i = 0; i < 5000; ++i) w.put("k" + std::to_string(i), std::string(500, 'r'));
  EXPECT_EQ(r.size(), 5000u);
  EXPECT_EQ(r.get("k4999"), std::string(500, 'r'));
  for (int i = 0; i < 5000; i += 2) w.erase("k" + std::to_string(i));
  w.compact();
  EXPECT_EQ(r.size(), 2500u);
  EXPECT_EQ(r.get("k1"), std::string(500, 'r'));
  EXPECT_FALSE(r.contains("k0"));
  EXPECT_GT(r.stats().generation, generation);
  EXPECT_EQ(code_of([&] { r.put("x", "y"); }), Errc::read_only);
  EXPECT_FALSE(w.contains("x"));
}

TEST(Store, StatsCountDeadBytesUntilCompaction) {
  TempDir d;
  Options o = tiny();
  o.max_dead_fraction = 0;  // nothing reclaimed as it goes (reclaim_test.cpp)
  Store s = Store::open(d.file("s.kv"), o);
  for (int i = 0; i < 100; ++i) s.put("k" + std::to_string(i), std::string(1000, 'a'));
  const kvstore::Stats fresh = s.stats();
  EXPECT_EQ(fresh.keys, 100u);
  EXPECT_EQ(fresh.value_bytes, 100'000u);
  EXPECT_GE(fresh.record_bytes, 100'000u);
  for (int i = 0; i < 50; ++i) s.put("k" + std::to_string(i), "short");  // overwrite
  for (int i = 50; i < 60; ++i) s.erase("k" + std::to_string(i));
  const kvstore::Stats churned = s.stats();
  EXPECT_EQ(churned.keys, 90u);
  EXPECT_EQ(churned.value_bytes, 50u * 5 + 40u * 1000);
  EXPECT_GE(churned.dead_bytes, 60'000u);
  EXPECT_GT(churned.used_bytes, 0u);
  EXPECT_GT(churned.free_bytes, 0u);
  s.compact();
  const kvstore::Stats compacted = s.stats();
  EXPECT_EQ(compacted.dead_bytes, 0u);
  EXPECT_EQ(compacted.keys, 90u);
  EXPECT_LT(compacted.record_bytes, churned.record_bytes);
  EXPECT_GT(compacted.last_compact_unix, 0u);
  EXPECT_GT(compacted.generation, churned.generation);
}

TEST(Store, EraseOfTheEmptyKeyAndOverwriteWithEmptyValue) {
  TempDir d;
  Store s = Store::open(d.file("s.kv"), tiny());
  s.put("", "x");
  s.put("k", "long value");
  s.put("k", "");
  EXPECT_EQ(s.get("k"), "");
  EXPECT_TRUE(s.erase(""));
  EXPECT_FALSE(s.contains(""));
  EXPECT_FALSE(s.erase(""));
  EXPECT_EQ(s.size(), 1u);
  std::string seen = "unset";
  EXPECT_TRUE(s.visit("k", [&](std::string_view v) { seen = v; }));
  EXPECT_EQ(seen, "");
}

TEST(Error, CodeNamesAndMessages) {
  const Errc all[] = {Errc::invalid_argument, Errc::not_a_store, Errc::version_mismatch, Errc::corrupt, Errc::io,
                      Errc::no_space,         Errc::store_full,  Errc::busy,             Errc::read_only};
  std::set<std::string_view> names;
  for (const Errc c : all) {
    EXPECT_FALSE(kvstore::to_string(c).empty());
    names.insert(kvstore::to_string(c));
  }
  EXPECT_EQ(names.size(), std::size(all));
  EXPECT_EQ(kvstore::to_string(Errc::corrupt), "corrupt");
  TempDir d;
  write_file(d.file("junk.kv"), std::string(100'000, 'j'));
  try {
    (void)Store::open(d.file("junk.kv"), tiny());
    ADD_FAILURE() << "opened a file of junk";
  } catch (const std::runtime_error& e) {  // Error is a std::runtime_error
    const auto* err = dynamic_cast<const Error*>(&e);
    ASSERT_NE(err, nullptr);
    EXPECT_EQ(err->code(), Errc::not_a_store);
    EXPECT_NE(std::string(e.what()).find(d.file("junk.kv")), std::string::npos) << e.what();
  }
}
