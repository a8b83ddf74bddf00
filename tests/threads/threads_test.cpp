// Several threads on one Store (and on two Stores of one file), mixed
// operations, grows and compactions. Run under ThreadSanitizer by the test command.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <kvstore/store.hpp>
#include <optional>
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

// Readers keep reading acknowledged keys while writers grow the file from
// 64 KiB and a second handle of the same file compacts it again and again:
// every read must see its key, through remaps and file replacements alike.
TEST(Threads, ReadersDuringGrowsAndCompactions) {
  kvstore::test::TempDir d;
  kvstore::Store a = kvstore::Store::open(d.file("t.kv"), tiny());
  kvstore::Store b = kvstore::Store::open(d.file("t.kv"), tiny());
  constexpr int kWriters = 2;
  std::atomic<int> acknowledged[kWriters] = {};
  std::atomic<int> writers_done{0};
  std::atomic<int> errors{0};
  std::atomic<long> reads{0};
  std::atomic<int> compactions{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kKeys; ++i) {
        a.put(key_of(t, i), value_of(t, i));
        acknowledged[t].store(i + 1, std::memory_order_release);
        if (i == kKeys / 2) {
          // Halfway, until the readers and the compactor have been at work: the
          // test is of their overlap with the writes, and on a busy machine the
          // writers once finished before a reader had run at all (0 reads).
          while (reads.load() == 0 || compactions.load() == 0) std::this_thread::yield();
        }
      }
      ++writers_done;
    });
  }
  for (int r = 0; r < 2; ++r) {
    threads.emplace_back([&, r] {
      for (unsigned n = 0; writers_done.load() < kWriters; ++n) {
        const int t = static_cast<int>(n % kWriters);
        const int upto = acknowledged[t].load(std::memory_order_acquire);
        if (upto == 0) continue;
        const int i = static_cast<int>((n * 7919 + static_cast<unsigned>(r)) % static_cast<unsigned>(upto));
        if (a.get(key_of(t, i)) != value_of(t, i)) ++errors;
        ++reads;
      }
    });
  }
  threads.emplace_back([&] {
    while (writers_done.load() < kWriters) {
      b.compact();
      ++compactions;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  });
  for (auto& th : threads) th.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_GT(compactions.load(), 0);
  for (int t = 0; t < kWriters; ++t) {
    for (int i = 0; i < kKeys; ++i) EXPECT_EQ(b.get(key_of(t, i)), value_of(t, i));
  }
  EXPECT_TRUE(a.check().empty());
}

// Coordination from threads of two handles: counters by increment and by
// transaction, a transfer pair audited inside views, and a waiter woken by
// each commit. Under TSan this checks the lock-file counter and the futex
// handshake as well as the transaction path.
TEST(Threads, CoordinationCallsAcrossThreadsAndHandles) {
  kvstore::test::TempDir d;
  const std::string path = d.file("c.kv");
  kvstore::Store a = kvstore::Store::open(path, tiny());
  kvstore::Store b = kvstore::Store::open(path, tiny());
  a.transact([](kvstore::Transaction& t) {
    t.put("x", "500");
    t.put("y", "500");
  });
  constexpr int kEach = 300;
  std::atomic<int> errors{0};
  std::atomic<bool> done{false};
  std::uint64_t woken = 0;
  // The count before any worker starts, and at least one wait: a waiter
  // thread scheduled only after the workers finished must still see a change.
  const std::uint64_t before = b.change_count();
  std::thread waiter([&] {
    std::uint64_t seen = before;
    do {
      const std::uint64_t now = b.wait_for_change(seen, std::chrono::milliseconds(50));
      if (now != seen) ++woken;
      seen = now;
    } while (!done.load());
  });
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      kvstore::Store& s = t % 2 == 0 ? a : b;
      for (int i = 0; i < kEach; ++i) {
        s.increment("by_increment", 1);
        s.transact([&](kvstore::Transaction& tx) {
          tx.put("by_transaction", std::to_string(std::stoll(tx.get("by_transaction").value_or("0")) + 1));
          // Move one unit between x and y, one way or the other.
          const std::int64_t x = std::stoll(*tx.get("x"));
          const std::int64_t y = std::stoll(*tx.get("y"));
          const std::int64_t move = (t + i) % 2 == 0 ? 1 : -1;
          tx.put("x", std::to_string(x - move));
          tx.put("y", std::to_string(y + move));
        });
        s.view([&](const kvstore::View& v) {
          if (std::stoll(std::string(*v.get("x"))) + std::stoll(std::string(*v.get("y"))) != 1000) ++errors;
        });
        if (s.compare_exchange("cas", std::nullopt, std::to_string(t))) s.erase("cas");
      }
    });
  }
  for (std::thread& th : threads) th.join();
  done.store(true);
  waiter.join();
  EXPECT_EQ(errors.load(), 0);
  EXPECT_EQ(a.get("by_increment"), std::to_string(kThreads * kEach));
  EXPECT_EQ(b.get("by_transaction"), std::to_string(kThreads * kEach));
  EXPECT_GT(woken, 0u);
  EXPECT_TRUE(a.check().empty());
}

// Overwrites from several threads of one handle keep reclaiming space: each
// write may move records, queue a sync of them for after its lock, or run a
// sync another thread queued, while a reader checks values throughout.
TEST(Threads, OverwritesFromManyThreadsReclaimAsTheyGo) {
  kvstore::test::TempDir d;
  kvstore::Options o = tiny();
  o.min_dead_bytes = 0;  // at the share alone: this store's dead bytes stay under the floor
  kvstore::Store s = kvstore::Store::open(d.file("t.kv"), o);
  constexpr int kShared = 2000;
  auto value = [](int i, int round) { return std::string(100, static_cast<char>('a' + round % 26)) + std::to_string(i); };
  for (int i = 0; i < kShared; ++i) s.put(std::to_string(i), value(i, 0));
  std::atomic<int> errors{0};
  std::atomic<bool> done{false};
  std::thread reader([&] {
    for (int n = 0; !done.load(); ++n) {
      const int i = n % kShared;
      const std::optional<std::string> v = s.get(std::to_string(i));
      if (!v || v->size() < 100 || v->substr(100) != std::to_string(i)) ++errors;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int round = 1; round <= 8; ++round) {
        for (int i = t; i < kShared; i += kThreads) s.put(std::to_string(i), value(i, round));
      }
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  EXPECT_EQ(errors.load(), 0);
  const kvstore::Stats st = s.stats();
  // 9 values a key were written; without reclaiming, 8 of them would be dead.
  EXPECT_LT(static_cast<double>(st.dead_bytes), 0.5 * static_cast<double>(st.record_bytes));
  for (int i = 0; i < kShared; ++i) EXPECT_EQ(s.get(std::to_string(i)), value(i, 8)) << i;
  EXPECT_TRUE(s.check().empty());
}
