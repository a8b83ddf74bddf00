// kvbench's maintenance workloads: what users of a live store wait for while
// another process compacts it. A reader and a writer thread time every call
// of theirs until a child process has compacted the store three times back
// to back; the figures are the percentiles and the worst of those calls.
#include "kvbench_maintenance.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <kvstore/store.hpp>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "kvbench_die.hpp"
#include "kvbench_stalls.hpp"

namespace {

using kvbench::Clock;

// 16 bytes, as kvbench's other keys: "key" and 13 digits.
std::string key_of(std::size_t i) {
  std::string digits = std::to_string(i);
  return "key" + std::string(13 - std::min<std::size_t>(13, digits.size()), '0') + digits;
}

struct Percentiles {
  std::size_t calls = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, worst_us = 0;
};

Percentiles percentiles(std::vector<double> us) {
  Percentiles p;
  p.calls = us.size();
  if (us.empty()) return p;
  std::sort(us.begin(), us.end());
  auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(us.size())))]; };
  p.p50_us = at(0.5);
  p.p99_us = at(0.99);
  p.p999_us = at(0.999);
  p.worst_us = us.back();
  return p;
}

void print(const std::string& what, const Percentiles& p, nlohmann::ordered_json& out) {
  std::printf("  %-14s %9zu calls   p50 %8.1f us   p99 %8.1f us   p99.9 %8.1f us   worst %9.1f us\n", what.c_str(), p.calls,
              p.p50_us, p.p99_us, p.p999_us, p.worst_us);
  out[what] = {{"calls", p.calls}, {"p50_us", p.p50_us}, {"p99_us", p.p99_us}, {"p999_us", p.p999_us}, {"worst_us", p.worst_us}};
}

void print_stalls(const kvbench::StallWatch& w, nlohmann::ordered_json& out) {
  if (!w.real_time()) return;
  std::printf("  CPU stalls (a real-time thread woke over 4 ms late): %zu, the longest %.1f ms\n", w.count(),
              w.longest_ms());
  out["cpu_stalls"] = {{"count", w.count()}, {"longest_ms", w.longest_ms()}};
}

}  // namespace

void run_maintenance(const std::filesystem::path& dir, std::size_t n, std::size_t value_size, std::uint64_t seed,
                     nlohmann::ordered_json& out) {
  const std::filesystem::path path = dir / "maintenance.kv";
  const std::string value(value_size, 'v');
  const std::string updated(value_size, 'u');
  {
    kvstore::Store s = kvstore::Store::open(path);
    std::vector<kvstore::BatchOp> batch;
    for (std::size_t i = 0; i < n; ++i) {
      batch.push_back({key_of(i), value, false});
      if (batch.size() == 1000 || i + 1 == n) {
        s.apply(batch);
        batch.clear();
      }
    }
  }
  constexpr int kRounds = 3;
  int fds[2];
  if (::pipe(fds) != 0) die("pipe");
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(fds[0]);
    kvstore::Store s = kvstore::Store::open(path);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // the users are timing by now
    for (int r = 0; r < kRounds; ++r) {
      const auto t = Clock::now();
      s.compact();
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
      if (::write(fds[1], &ms, sizeof ms) != sizeof ms) ::_exit(2);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  kvstore::Store s = kvstore::Store::open(path);
  std::atomic<bool> done{false};
  std::vector<double> get_us;
  std::vector<double> put_us;
  kvbench::SlowCalls slow_gets;
  kvbench::SlowCalls slow_puts;
  kvbench::StallWatch watch;
  std::thread reader([&] {
    std::mt19937_64 rng(seed);
    while (!done.load(std::memory_order_relaxed)) {
      const std::string k = key_of(rng() % n);
      const auto t = Clock::now();
      const std::optional<std::string> v = s.get(k);
      get_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
      slow_gets.add(t, get_us.back());
      if (!v || (*v != value && *v != updated)) die("maintenance: a get returned a wrong value");
    }
  });
  std::thread writer([&] {
    std::mt19937_64 rng(seed + 1);
    while (!done.load(std::memory_order_relaxed)) {
      const std::string k = key_of(rng() % n);
      const auto t = Clock::now();
      s.put(k, updated);
      put_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
      slow_puts.add(t, put_us.back());
    }
  });
  std::vector<double> compact_ms;
  double ms = 0;
  while (::read(fds[0], &ms, sizeof ms) == sizeof ms) compact_ms.push_back(ms);
  int status = 0;
  ::waitpid(child, &status, 0);
  done = true;
  reader.join();
  writer.join();
  watch.stop();
  ::close(fds[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0 || compact_ms.size() != kRounds) die("maintenance: the compacting process failed");
  if (s.size() != n) die("maintenance: keys lost");
  std::printf("\nwhile another process compacts %zu keys %d times back to back (compactions: %.0f %.0f %.0f ms):\n", n,
              kRounds, compact_ms[0], compact_ms[1], compact_ms[2]);
  out["compact_ms"] = compact_ms;
  print("get", percentiles(std::move(get_us)), out);
  slow_gets.report(watch, out["get"]);
  print("put", percentiles(std::move(put_us)), out);
  slow_puts.report(watch, out["put"]);
  print_stalls(watch, out);
}

void run_churn(std::vector<ChurnContender>& contenders, std::size_t n, std::size_t rounds, double raw_bytes,
               std::uint64_t seed, nlohmann::ordered_json& out) {
  constexpr std::size_t kSlices = 10;
  const std::size_t puts = n * rounds;
  std::vector<std::vector<double>> us(contenders.size());
  for (auto& v : us) v.reserve(puts);
  std::vector<kvbench::SlowCalls> slow(contenders.size());
  kvbench::StallWatch watch;
  std::mt19937_64 rng(seed);
  std::vector<std::size_t> keys(puts);
  for (std::size_t& k : keys) k = rng() % n;
  for (std::size_t slice = 0; slice < kSlices; ++slice) {
    const std::size_t from = puts * slice / kSlices;
    const std::size_t to = puts * (slice + 1) / kSlices;
    for (std::size_t c = 0; c < contenders.size(); ++c) {
      for (std::size_t i = from; i < to; ++i) {
        const auto t = Clock::now();
        contenders[c].put(keys[i], i / n);
        us[c].push_back(std::chrono::duration<double, std::micro>(Clock::now() - t).count());
        slow[c].add(t, us[c].back());
      }
      contenders[c].flush();
    }
  }
  watch.stop();
  std::printf("\nchurn: %zu random overwrites of %zu keys, nobody compacting (disk bytes / raw bytes after; each put timed):\n",
              puts, n);
  for (std::size_t c = 0; c < contenders.size(); ++c) {
    const double ratio = static_cast<double>(contenders[c].disk_bytes()) / raw_bytes;
    std::printf("  %-14s disk/raw %.2f\n", contenders[c].name.c_str(), ratio);
    out["disk_per_raw"][contenders[c].name] = ratio;
    print(contenders[c].name, percentiles(std::move(us[c])), out["put"]);
    slow[c].report(watch, out["put"][contenders[c].name]);
  }
  print_stalls(watch, out);
}
