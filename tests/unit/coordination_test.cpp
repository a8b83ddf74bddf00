// Unit tests of the coordination calls: transact, view, increment,
// compare_exchange, insert, change_count, wait_for_change, and the refusal of
// a callback that calls back into its own store.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <kvstore/store.hpp>
#include <limits>
#include <stdexcept>
#include <string>
#include <thread>

#include "../support/errors.hpp"
#include "../support/temp_dir.hpp"

using kvstore::Errc;
using kvstore::Error;
using kvstore::Options;
using kvstore::Store;
using kvstore::Transaction;
using kvstore::View;
using kvstore::test::code_of;
using kvstore::test::TempDir;
using kvstore::test::tiny;
using namespace std::chrono_literals;

TEST(Transact, CommitsEveryWriteTogether) {
  TempDir d;
  Store s = Store::open(d.file("t.kv"), tiny());
  s.put("a", "1");
  s.put("gone", "x");
  const std::uint64_t before = s.change_count();
  s.transact([](Transaction& t) {
    EXPECT_EQ(t.get("a"), "1");
    t.put("a", "2");
    EXPECT_EQ(t.get("a"), "2");  // its own write
    t.put("b", std::string("\0b", 2));
    EXPECT_TRUE(t.erase("gone"));
    EXPECT_FALSE(t.erase("gone"));
    EXPECT_FALSE(t.contains("gone"));
    EXPECT_FALSE(t.erase("never"));
    t.put("temp", "t");
    EXPECT_TRUE(t.erase("temp"));  // put and erased inside: the store never sees it
  });
  EXPECT_EQ(s.get("a"), "2");
  EXPECT_EQ(s.get("b"), std::string("\0b", 2));
  EXPECT_FALSE(s.contains("gone"));
  EXPECT_FALSE(s.contains("temp"));
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(s.change_count(), before + 1);  // one commit, one change
  EXPECT_TRUE(s.check().empty());
}

TEST(Transact, ThrowingCallbackWritesNothing) {
  TempDir d;
  Store s = Store::open(d.file("t.kv"), tiny());
  s.put("a", "1");
  const std::uint64_t before = s.change_count();
  const auto record_bytes = s.stats().record_bytes;
  EXPECT_THROW(s.transact([](Transaction& t) {
    t.put("a", "2");
    t.put("b", "2");
    throw std::runtime_error("changed my mind");
  }),
               std::runtime_error);
  EXPECT_EQ(s.get("a"), "1");
  EXPECT_FALSE(s.contains("b"));
  EXPECT_EQ(s.change_count(), before);
  EXPECT_EQ(s.stats().record_bytes, record_bytes);
  // The lock was released: another write goes through.
  s.put("c", "3");
  EXPECT_EQ(s.get("c"), "3");
}

TEST(Transact, ReadOnlyOrEmptyTransactionsChangeNothing) {
  TempDir d;
  Store s = Store::open(d.file("t.kv"), tiny());
  s.put("a", "1");
  const std::uint64_t before = s.change_count();
  s.transact([](Transaction& t) { EXPECT_TRUE(t.contains("a")); });
  s.transact([](Transaction& t) { EXPECT_FALSE(t.erase("absent")); });
  EXPECT_EQ(s.change_count(), before);
}

TEST(Transact, ManyKeysGrowTheFileInOneBatch) {
  TempDir d;
  Store s = Store::open(d.file("t.kv"), tiny());
  s.transact([](Transaction& t) {
    for (int i = 0; i < 5000; ++i) t.put("k" + std::to_string(i), std::string(100, 'v'));
  });
  EXPECT_EQ(s.size(), 5000u);
  EXPECT_GT(s.stats().grows, 0u);
  EXPECT_TRUE(s.check().empty());
  Store reopened = Store::open(d.file("t.kv"), tiny());
  EXPECT_EQ(reopened.get("k4999"), std::string(100, 'v'));
}

TEST(Transact, ReadOnlyHandleIsRefused) {
  TempDir d;
  { Store s = Store::open(d.file("t.kv"), tiny()); }
  Options ro = tiny();
  ro.read_only = true;
  Store s = Store::open(d.file("t.kv"), ro);
  EXPECT_EQ(code_of([&] { s.transact([](Transaction& t) { t.put("a", "b"); }); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { s.increment("n", 1); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { s.insert("n", "1"); }), Errc::read_only);
  EXPECT_EQ(code_of([&] { s.compare_exchange("n", std::nullopt, "1"); }), Errc::read_only);
}

TEST(View, SeesOneStateWithoutCopying) {
  TempDir d;
  Store s = Store::open(d.file("v.kv"), tiny());
  s.put("a", "alpha");
  s.put("b", "beta");
  s.view([](const View& v) {
    const std::optional<std::string_view> a = v.get("a");
    ASSERT_TRUE(a);
    EXPECT_EQ(*a, "alpha");
    EXPECT_TRUE(v.contains("b"));
    EXPECT_FALSE(v.get("c"));
    EXPECT_EQ(v.size(), 2u);
  });
  const Store& cs = s;
  std::size_t n = 0;
  cs.view([&](const View& v) { n = v.size(); });
  EXPECT_EQ(n, 2u);
}

TEST(View, WritersOfOtherHandlesWaitUntilItEnds) {
  TempDir d;
  Store s = Store::open(d.file("v.kv"), tiny());
  Store other = Store::open(d.file("v.kv"), tiny());
  s.put("x", "0");
  std::atomic<bool> inside{false};
  std::atomic<bool> written{false};
  std::thread writer;
  s.view([&](const View& v) {
    writer = std::thread([&] {
      while (!inside.load()) std::this_thread::yield();
      other.put("x", "1");
      written.store(true);
    });
    inside.store(true);
    // The writer is blocked for as long as we are inside: every read here
    // sees the state the view began with.
    for (int i = 0; i < 200; ++i) {
      EXPECT_EQ(v.get("x"), "0");
      std::this_thread::sleep_for(100us);
    }
    EXPECT_FALSE(written.load());
  });
  writer.join();
  EXPECT_EQ(s.get("x"), "1");
}

TEST(Increment, DecimalTextFromAbsentAsZero) {
  TempDir d;
  Store s = Store::open(d.file("i.kv"), tiny());
  EXPECT_EQ(s.increment("n", 5), 5);
  EXPECT_EQ(s.increment("n", -7), -2);
  EXPECT_EQ(s.get("n"), "-2");
  EXPECT_EQ(s.increment("n", 0), -2);
  s.put("m", "0041");
  EXPECT_EQ(s.increment("m", 1), 42);
  EXPECT_EQ(s.get("m"), "42");
  s.put("max", std::to_string(std::numeric_limits<std::int64_t>::max() - 1));
  EXPECT_EQ(s.increment("max", 1), std::numeric_limits<std::int64_t>::max());
}

TEST(Increment, NotANumberOrOverflowChangesNothing) {
  TempDir d;
  Store s = Store::open(d.file("i.kv"), tiny());
  for (const char* bad : {"", "abc", "12a", " 1", "1 ", "+1", "--1", "99999999999999999999", "1.5"}) {
    s.put("n", bad);
    const std::uint64_t before = s.change_count();
    EXPECT_EQ(code_of([&] { s.increment("n", 1); }), Errc::invalid_argument) << '"' << bad << '"';
    EXPECT_EQ(s.get("n"), bad);
    EXPECT_EQ(s.change_count(), before);
  }
  s.put("n", std::to_string(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(code_of([&] { s.increment("n", 1); }), Errc::invalid_argument);
  s.put("n", std::to_string(std::numeric_limits<std::int64_t>::min()));
  EXPECT_EQ(code_of([&] { s.increment("n", -1); }), Errc::invalid_argument);
  EXPECT_EQ(s.get("n"), std::to_string(std::numeric_limits<std::int64_t>::min()));
}

TEST(CompareExchange, EveryCase) {
  TempDir d;
  Store s = Store::open(d.file("c.kv"), tiny());
  EXPECT_TRUE(s.compare_exchange("k", std::nullopt, "1"));   // absent -> 1
  EXPECT_FALSE(s.compare_exchange("k", std::nullopt, "2"));  // not absent
  EXPECT_FALSE(s.compare_exchange("k", "0", "2"));           // wrong value
  EXPECT_EQ(s.get("k"), "1");
  EXPECT_TRUE(s.compare_exchange("k", "1", "2"));
  EXPECT_EQ(s.get("k"), "2");
  EXPECT_TRUE(s.compare_exchange("k", "2", std::nullopt));  // erase
  EXPECT_FALSE(s.contains("k"));
  EXPECT_FALSE(s.compare_exchange("k", "2", "3"));
  const std::uint64_t before = s.change_count();
  EXPECT_TRUE(s.compare_exchange("k", std::nullopt, std::nullopt));  // absent stays absent
  EXPECT_EQ(s.change_count(), before);
  s.put("e", "");
  EXPECT_FALSE(s.compare_exchange("e", std::nullopt, "x"));  // empty is not absent
  EXPECT_TRUE(s.compare_exchange("e", "", "x"));
}

TEST(Insert, OnlyWhenAbsent) {
  TempDir d;
  Store s = Store::open(d.file("n.kv"), tiny());
  EXPECT_TRUE(s.insert("k", "first"));
  EXPECT_FALSE(s.insert("k", "second"));
  EXPECT_EQ(s.get("k"), "first");
  s.erase("k");
  EXPECT_TRUE(s.insert("k", "third"));
  EXPECT_EQ(s.get("k"), "third");
}

TEST(ChangeCount, CountsCommittedChangesAndSurvivesReopen) {
  TempDir d;
  const std::string path = d.file("cc.kv");
  std::uint64_t last = 0;
  {
    Store s = Store::open(path, tiny());
    Store other = Store::open(path, tiny());
    const std::uint64_t c0 = s.change_count();
    s.put("a", "1");
    EXPECT_EQ(other.change_count(), c0 + 1);
    EXPECT_FALSE(s.erase("absent"));
    EXPECT_EQ(s.change_count(), c0 + 1);
    other.erase("a");
    s.apply({{"x", "1", false}, {"y", "2", false}});
    EXPECT_FALSE(s.insert("x", "3"));
    EXPECT_FALSE(s.compare_exchange("x", "9", "3"));
    EXPECT_EQ(s.change_count(), c0 + 3);
    s.compact();  // no pair changes
    EXPECT_EQ(s.change_count(), c0 + 3);
    last = s.change_count();
  }
  Store s = Store::open(path, tiny());
  EXPECT_EQ(s.change_count(), last);
  s.increment("n", 1);
  EXPECT_EQ(s.change_count(), last + 1);
}

TEST(WaitForChange, TimesOutWithTheSameCount) {
  TempDir d;
  Store s = Store::open(d.file("w.kv"), tiny());
  const std::uint64_t c = s.change_count();
  EXPECT_EQ(s.wait_for_change(c, 20ms), c);
  EXPECT_EQ(s.wait_for_change(c, 0ms), c);
  EXPECT_EQ(s.wait_for_change(c, -5ms), c);
  EXPECT_EQ(s.wait_for_change(c + 7, 10s), c);  // already different: at once
}

TEST(WaitForChange, WakesOnACommitThroughAnotherHandle) {
  TempDir d;
  Store s = Store::open(d.file("w.kv"), tiny());
  Store other = Store::open(d.file("w.kv"), tiny());
  const std::uint64_t c = s.change_count();
  std::uint64_t woke_with = c;
  std::thread waiter([&] { woke_with = s.wait_for_change(c, 60s); });
  std::this_thread::sleep_for(20ms);
  other.put("k", "v");
  waiter.join();
  EXPECT_EQ(woke_with, c + 1);
}

TEST(Reentry, CallbacksThatCallTheirOwnStoreGetAClearError) {
  TempDir d;
  const std::string path = d.file("r.kv");
  Store s = Store::open(path, tiny());
  Store same_file = Store::open(path, tiny());
  TempDir d2;
  Store elsewhere = Store::open(d2.file("other.kv"), tiny());
  s.put("k", "v");
  s.transact([&](Transaction& t) {
    EXPECT_EQ(code_of([&] { (void)s.get("k"); }), Errc::invalid_argument);
    EXPECT_EQ(code_of([&] { same_file.put("k", "w"); }), Errc::invalid_argument);
    EXPECT_EQ(code_of([&] { (void)same_file.wait_for_change(0, 1ms); }), Errc::invalid_argument);
    EXPECT_EQ(code_of([&] { (void)Store::open(path, tiny()); }), Errc::invalid_argument);
    elsewhere.put("fine", "another file");  // a different store is no problem
    t.put("k", "w");
  });
  EXPECT_EQ(s.get("k"), "w");
  s.view([&](const View&) { EXPECT_EQ(code_of([&] { s.put("k", "x"); }), Errc::invalid_argument); });
  s.visit("k", [&](std::string_view) { EXPECT_EQ(code_of([&] { (void)same_file.size(); }), Errc::invalid_argument); });
  // Outside the callbacks, everything works again.
  EXPECT_EQ(same_file.get("k"), "w");
  EXPECT_EQ(elsewhere.get("fine"), "another file");
}

TEST(Transact, ALongCallbackMakesOthersBusyNotStuck) {
  TempDir d;
  Options quick = tiny();
  quick.lock_timeout = 50ms;
  Store s = Store::open(d.file("b.kv"), tiny());
  Store other = Store::open(d.file("b.kv"), quick);
  std::atomic<bool> inside{false};
  std::atomic<bool> leave{false};
  std::thread holder([&] {
    s.transact([&](Transaction& t) {
      inside.store(true);
      while (!leave.load()) std::this_thread::sleep_for(1ms);
      t.put("k", "held");
    });
  });
  while (!inside.load()) std::this_thread::yield();
  EXPECT_EQ(code_of([&] { other.put("k", "x"); }), Errc::busy);
  EXPECT_EQ(code_of([&] { (void)other.get("k"); }), Errc::busy);
  leave.store(true);
  holder.join();
  EXPECT_EQ(other.get("k"), "held");
}
