// Processes that coordinate through one store: a counter, compare-and-swap
// loops, a bank whose transfers are killed at random while auditors check the
// total inside views, and a durable work queue whose consumers sleep in
// wait_for_change and are killed at random. Every child opens its own Store
// after fork() and leaves with _exit.
#include <gtest/gtest.h>
#include <signal.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <kvstore/store.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

namespace {

using kvstore::Store;
using kvstore::Transaction;
using kvstore::View;
using kvstore::test::spawn;
using kvstore::test::wait_all;
using kvstore::test::wait_for;
using namespace std::chrono_literals;

kvstore::Options opts() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.lock_timeout = 60s;
  return o;
}

std::int64_t to_int(const std::optional<std::string>& v) { return v ? std::stoll(*v) : 0; }

// CLOCK_MONOTONIC in ns: one clock for every process of the machine.
std::int64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

// Kills one of `pids` (chosen by `rng`) after a random 1-15 ms, replaces it
// with a fresh `make()`, `kills` times; returns how many kills found their
// victim still running (the others had finished their work).
int kill_at_random(std::vector<pid_t>& pids, const std::function<pid_t()>& make, int kills, std::mt19937& rng) {
  int landed = 0;
  for (int k = 0; k < kills; ++k) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1 + rng() % 15));
    pid_t& victim = pids[rng() % pids.size()];
    ::kill(victim, SIGKILL);
    const int status = wait_for(victim);
    if (status == 128 + SIGKILL) {
      ++landed;
    } else if (status != 0) {
      ADD_FAILURE() << "child ended with status " << status;
    }
    victim = make();
  }
  return landed;
}

}  // namespace

TEST(SharedState, ProcessesIncrementOneCounterExactly) {
  kvstore::test::TempDir d;
  const std::string path = d.file("counter.kv");
  constexpr int kProcs = 4;
  constexpr int kEach = 2500;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(spawn([&] {
      Store s = Store::open(path, opts());
      for (int i = 0; i < kEach; ++i) s.increment("hits", 1);
      return 0;
    }));
  }
  for (const int st : wait_all(pids)) EXPECT_EQ(st, 0);
  Store s = Store::open(path, opts());
  EXPECT_EQ(s.get("hits"), std::to_string(kProcs * kEach));
}

TEST(SharedState, CompareExchangeLoopsLoseNothing) {
  kvstore::test::TempDir d;
  const std::string path = d.file("cas.kv");
  constexpr int kProcs = 4;
  constexpr int kEach = 500;
  std::vector<pid_t> pids;
  for (int p = 0; p < kProcs; ++p) {
    pids.push_back(spawn([&] {
      Store s = Store::open(path, opts());
      int retries = 0;
      for (int i = 0; i < kEach; ++i) {
        for (;;) {  // read, compute, swap if nobody came between
          const std::optional<std::string> old = s.get("n");
          const std::string next = std::to_string(to_int(old) + 1);
          if (s.compare_exchange("n", old ? std::optional<std::string_view>(*old) : std::nullopt, next)) break;
          ++retries;
        }
      }
      s.increment("retries", retries);
      return 0;
    }));
  }
  for (const int st : wait_all(pids)) EXPECT_EQ(st, 0);
  Store s = Store::open(path, opts());
  EXPECT_EQ(s.get("n"), std::to_string(kProcs * kEach));
  std::printf("compare_exchange: %d increments by %d processes, %s retries\n", kProcs * kEach, kProcs,
              s.get("retries").value_or("0").c_str());
}

TEST(SharedState, BankTotalHoldsWhileTransfersAreKilled) {
  kvstore::test::TempDir d;
  const std::string path = d.file("bank.kv");
  constexpr int kAccounts = 16;
  constexpr std::int64_t kStart = 1000;
  constexpr std::int64_t kTotal = kAccounts * kStart;
  const auto account = [](int i) { return "acct/" + std::to_string(i); };
  {
    Store s = Store::open(path, opts());
    s.transact([&](Transaction& t) {
      for (int i = 0; i < kAccounts; ++i) t.put(account(i), std::to_string(kStart));
    });
  }
  std::atomic<unsigned> seed{1};
  const auto transferer = [&] {
    const unsigned my_seed = seed++;
    return spawn([&, my_seed] {
      Store s = Store::open(path, opts());
      std::mt19937 rng(my_seed);
      for (;;) {  // until killed
        const int from = static_cast<int>(rng() % kAccounts);
        const int to = static_cast<int>(rng() % kAccounts);
        const std::int64_t amount = 1 + static_cast<std::int64_t>(rng() % 50);
        s.transact([&](Transaction& t) {
          const std::int64_t a = to_int(t.get(account(from)));
          if (a < amount) return;  // no overdrafts
          t.put(account(from), std::to_string(a - amount));
          t.put(account(to), std::to_string(to_int(t.get(account(to))) + amount));
          t.put("transfers", std::to_string(to_int(t.get("transfers")) + 1));
        });
      }
      return 0;
    });
  };
  // Auditors sum every account inside one view (a torn transfer would show)
  // until the parent says stop.
  std::vector<pid_t> auditors;
  for (int a = 0; a < 2; ++a) {
    auditors.push_back(spawn([&] {
      Store s = Store::open(path, opts());
      for (int n = 0; !s.contains("stop"); ++n) {
        s.increment("audits", 1);
        std::int64_t sum = 0;
        s.view([&](const View& v) {
          for (int i = 0; i < kAccounts; ++i) sum += std::stoll(std::string(v.get(account(i)).value_or("0")));
        });
        if (sum != kTotal) {
          std::fprintf(stderr, "audit %d saw a total of %lld\n", n, static_cast<long long>(sum));
          return 2;
        }
        std::this_thread::sleep_for(200us);
      }
      return 0;
    }));
  }
  std::vector<pid_t> transferers;
  for (int t = 0; t < 3; ++t) transferers.push_back(transferer());
  std::mt19937 rng(42);
  const int landed = kill_at_random(transferers, transferer, 40, rng);
  for (const pid_t p : transferers) ::kill(p, SIGKILL);
  wait_all(transferers);
  Store(Store::open(path, opts())).put("stop", "");
  for (const int st : wait_all(auditors)) EXPECT_EQ(st, 0);

  Store s = Store::open(path, opts());
  std::int64_t sum = 0;
  for (int i = 0; i < kAccounts; ++i) sum += to_int(s.get(account(i)));
  EXPECT_EQ(sum, kTotal);
  EXPECT_TRUE(s.check().empty());
  EXPECT_GT(to_int(s.get("transfers")), 0);
  std::printf("bank: %d transfer processes killed (%llu recoveries), %s transfers committed, %s audits all saw %lld\n",
              landed, static_cast<unsigned long long>(s.stats().recoveries), s.get("transfers").value_or("0").c_str(),
              s.get("audits").value_or("0").c_str(), static_cast<long long>(kTotal));
}

// The queue: q/tail and q/head are counters, item/<i> the pending items, and
// a consumer's take erases item/<i>, advances q/head and records done/<i>
// (who took it) in the same transaction, so a kill leaves the item either
// pending or done, never both, never neither.
TEST(SharedState, WorkQueueTakesEveryItemExactlyOnceThroughKills) {
  kvstore::test::TempDir d;
  const std::string path = d.file("queue.kv");
  constexpr int kProducers = 2;
  constexpr int kItems = 600;  // per producer
  constexpr std::int64_t kAll = kProducers * kItems;
  std::vector<pid_t> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.push_back(spawn([&, p] {
      Store s = Store::open(path, opts());
      for (int i = 0; i < kItems; ++i) {
        s.transact([&](Transaction& t) {
          const std::int64_t tail = to_int(t.get("q/tail"));
          t.put("item/" + std::to_string(tail), "from " + std::to_string(p));
          t.put("q/tail", std::to_string(tail + 1));
        });
        if (i % 4 == 0) std::this_thread::sleep_for(1ms);  // let the consumers drain and sleep
      }
      s.increment("producers_done", 1);
      return 0;
    }));
  }
  std::atomic<int> consumer_id{0};
  const auto consumer = [&] {
    const int me = consumer_id++;
    return spawn([&, me] {
      Store s = Store::open(path, opts());
      for (;;) {
        const std::uint64_t seen = s.change_count();
        bool took = false;
        bool finished = false;
        s.transact([&](Transaction& t) {
          const std::int64_t head = to_int(t.get("q/head"));
          const std::int64_t tail = to_int(t.get("q/tail"));
          if (head == tail) {
            finished = to_int(t.get("producers_done")) == kProducers;
            return;
          }
          const std::string item = "item/" + std::to_string(head);
          if (!t.erase(item)) throw std::runtime_error(item + " is missing");
          t.put("q/head", std::to_string(head + 1));
          t.put("done/" + std::to_string(head), std::to_string(me));
          took = true;
        });
        if (finished) return 0;
        if (!took) (void)s.wait_for_change(seen, 10s);  // no polling: woken by the next commit
      }
    });
  };
  std::vector<pid_t> consumers;
  for (int c = 0; c < 3; ++c) consumers.push_back(consumer());
  std::mt19937 rng(7);
  const int landed = kill_at_random(consumers, consumer, 25, rng);
  for (const int st : wait_all(producers)) EXPECT_EQ(st, 0);
  for (const int st : wait_all(consumers)) EXPECT_EQ(st, 0);

  Store s = Store::open(path, opts());
  EXPECT_EQ(to_int(s.get("q/tail")), kAll);
  EXPECT_EQ(to_int(s.get("q/head")), kAll);
  int done = 0;
  int pending = 0;
  s.for_each([&](std::string_view k, std::string_view) {
    done += k.starts_with("done/") ? 1 : 0;
    pending += k.starts_with("item/") ? 1 : 0;
    return true;
  });
  EXPECT_EQ(done, kAll);
  EXPECT_EQ(pending, 0);
  for (std::int64_t i = 0; i < kAll; ++i) ASSERT_TRUE(s.contains("done/" + std::to_string(i))) << i;
  EXPECT_TRUE(s.check().empty());
  std::printf("queue: %lld items, each taken once; %d consumers killed (%llu recoveries)\n",
              static_cast<long long>(kAll), landed, static_cast<unsigned long long>(s.stats().recoveries));
}

// How long a process asleep in wait_for_change takes to wake after another
// process commits. Reported, not bounded: the machine is shared.
TEST(SharedState, WaitForChangeWakesAnotherProcess) {
  kvstore::test::TempDir d;
  const std::string path = d.file("wake.kv");
  constexpr int kRounds = 200;
  { Store s = Store::open(path, opts()); }
  const pid_t waiter = spawn([&] {
    Store s = Store::open(path, opts());
    for (int round = 0; round < kRounds; ++round) {
      std::uint64_t seen = s.change_count();
      s.put("ready", std::to_string(round));  // the parent stamps only after this
      seen += 1;
      for (;;) {
        const std::uint64_t now = s.wait_for_change(seen, 10s);
        const std::int64_t woke = now_ns();
        const std::optional<std::string> stamp = s.get("stamp/" + std::to_string(round));
        if (stamp) {
          s.put("latency/" + std::to_string(round), std::to_string(woke - std::stoll(*stamp)));
          break;
        }
        seen = now;
      }
    }
    return 0;
  });
  Store s = Store::open(path, opts());
  for (int round = 0; round < kRounds; ++round) {
    while (s.get("ready") != std::to_string(round)) (void)s.wait_for_change(s.change_count(), 100ms);
    std::this_thread::sleep_for(1ms);  // the waiter is asleep by now
    s.put("stamp/" + std::to_string(round), std::to_string(now_ns()));
  }
  ASSERT_EQ(wait_for(waiter), 0);
  std::vector<std::int64_t> lat;
  for (int round = 0; round < kRounds; ++round) {
    const std::optional<std::string> v = s.get("latency/" + std::to_string(round));
    ASSERT_TRUE(v) << round;
    lat.push_back(std::stoll(*v));
  }
  std::sort(lat.begin(), lat.end());
  std::printf("wait_for_change wake-up across processes, %d rounds: median %.1f us, p99 %.1f us, worst %.1f us\n",
              kRounds, static_cast<double>(lat[lat.size() / 2]) / 1e3,
              static_cast<double>(lat[lat.size() * 99 / 100]) / 1e3, static_cast<double>(lat.back()) / 1e3);
}
