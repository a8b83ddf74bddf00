// Several threads on one Store (and on two Stores of one file), mixed
// operations, grows and compactions. Run under ThreadSanitizer by the test command.
#include <gtest/gtest.h>

#include <atomic>
#include <kvstore/store.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../support/temp_dir.hpp"

namespace {

constexpr int kThreads = 4;
constexpr int kKeys = 1500;

std::string key_of(int t, int i) { return "t" + std::to_string(t) + ":" + std::to_string(i); }
std::string value_of(int t, int i) { return std::string(static_cast<std::size_t>((i * 13 + t) % 600), static_cast<char>('a' + t)); }

kvstore::Options tiny() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  return o;
}

// Each thread owns its key range: it puts all, erases every third, and checks
// its own keys and some of the others' as it goes; thread 0 compacts.
void work(kvstore::Store& s, int t, std::atomic<int>& errors) {
  for (int i = 0; i < kKeys; ++i) {
    s.put(key_of(t, i), value_of(t, i));
    if (i % 3 == 2 && !s.erase(key_of(t, i - 1))) ++errors;
    if (s.get(key_of(t, i)) != value_of(t, i)) ++errors;
    std::string seen;
    if (!s.visit(key_of(t, i), [&](std::string_view v) { seen = v; }) || seen != value_of(t, i)) ++errors;
    if (i % 500 == 0) {
      std::size_t n = 0;
      s.for_each([&](std::string_view, std::string_view) { return ++n < 100; });
      (void)s.stats();
    }
    if (t == 0 && i % 700 == 699) s.compact();
  }
}

void expect_final(const kvstore::Store& s) {
  int wrong = 0;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kKeys; ++i) {
      const bool erased = i % 3 == 1 && i + 1 < kKeys;
      const auto v = s.get(key_of(t, i));
      if (erased ? v.has_value() : v != value_of(t, i)) ++wrong;
    }
  }
  EXPECT_EQ(wrong, 0);
  EXPECT_TRUE(s.check().empty());
}

}  // namespace

TEST(Threads, OneStoreManyThreads) {
  kvstore::test::TempDir d;
  kvstore::Store s = kvstore::Store::open(d.file("t.kv"), tiny());
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { work(s, t, errors); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  expect_final(s);
  EXPECT_GT(s.stats().compactions, 0u);
}

TEST(Threads, TwoStoresOfOneFileInOneProcess) {
  kvstore::test::TempDir d;
  kvstore::Store a = kvstore::Store::open(d.file("t.kv"), tiny());
  kvstore::Store b = kvstore::Store::open(d.file("t.kv"), tiny());
  std::atomic<int> errors{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back([&, t] { work(t % 2 == 0 ? a : b, t, errors); });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  expect_final(a);
  expect_final(b);
}
