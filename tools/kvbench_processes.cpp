// kvbench's coordination workloads across processes: increments from two
// processes at once (throughput and latency percentiles of each contender),
// and how soon wait_for_change wakes a waiting process after a commit.
#include <lmdb.h>
#include <signal.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <kchashdb.h>
#include <kvstore/store.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <tkrzw_dbm_hash.h>
#include <tkrzw_str_util.h>
#include <unordered_map>
#include <vector>

#include "kvbench_contenders.hpp"
#include "kvbench_die.hpp"
#include "kvbench_slices.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace kvbench_coord {
namespace {

struct LatencyFigures {
  double ops_per_s = 0;
  double p50_us = 0, p99_us = 0, p999_us = 0, worst_us = 0;
  double first_op_us = 0;  // the slowest child's first op on its fresh handle (not in the figures above)
};

// A child process's increment, on a handle it opens itself.
using IncrementFactory = std::function<std::function<std::int64_t(const std::string&)>()>;

// 4. `procs` processes at once, each doing `per_proc` increments on random
// counters of one file, every one timed. Total ops/s over the wall time from
// the common start to the last finish; latency over every op of every child.
// Each child first does one increment before the common start, timed apart:
// the first write of a session (all handles were closed) clears the file's
// clean flag with a synchronous msync of the header, once, by design, and
// LMDB's first write transaction of a handle has its own start-up costs.
LatencyFigures parallel_increments(const IncrementFactory& make, const std::vector<std::string>& keys, int procs,
                                   std::size_t per_proc, std::uint64_t seed) {
  const std::size_t slots = static_cast<std::size_t>(procs) * (per_proc + 3);
  void* mem = ::mmap(nullptr, slots * sizeof(std::uint64_t), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  auto* shared = static_cast<std::uint64_t*>(mem);  // per child: start, end, first op, then per_proc latencies (ns)
  int ready[2], go[2];
  if (::pipe(ready) != 0 || ::pipe(go) != 0) die("pipe");
  std::vector<pid_t> pids;
  for (int p = 0; p < procs; ++p) {
    const pid_t pid = ::fork();
    if (pid < 0) die("fork");
    if (pid == 0) {
      std::uint64_t* mine = shared + static_cast<std::size_t>(p) * (per_proc + 3);
      const auto inc = make();
      const auto pick = random_picks(per_proc, seed + 100 + static_cast<std::uint64_t>(p));
      std::vector<std::int64_t> last(kPool, 0);
      const std::uint64_t f0 = now_ns();
      last[pick[0]] = inc(keys[pick[0]]);
      mine[2] = now_ns() - f0;
      char c = 1;
      if (::write(ready[1], &c, 1) != 1 || ::read(go[0], &c, 1) != 1) ::_exit(2);
      mine[0] = now_ns();
      for (std::size_t i = 0; i < per_proc; ++i) {
        const std::uint64_t t0 = now_ns();
        const std::int64_t v = inc(keys[pick[i]]);
        mine[3 + i] = now_ns() - t0;
        if (v <= last[pick[i]]) {
          std::fprintf(stderr, "kvbench: a counter went backwards\n");
          ::_exit(3);
        }
        last[pick[i]] = v;
      }
      mine[1] = now_ns();
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  char c = 0;
  for (int p = 0; p < procs; ++p) {
    if (::read(ready[0], &c, 1) != 1) die("a child did not start");
  }
  std::vector<char> gos(static_cast<std::size_t>(procs), 1);
  if (::write(go[1], gos.data(), gos.size()) != static_cast<ssize_t>(gos.size())) die("go pipe");
  for (const pid_t pid : pids) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("an increment child failed");
  }
  for (int fd : {ready[0], ready[1], go[0], go[1]}) ::close(fd);
  std::uint64_t start = UINT64_MAX, end = 0, first = 0;
  std::vector<std::uint64_t> lat;
  lat.reserve(static_cast<std::size_t>(procs) * per_proc);
  for (int p = 0; p < procs; ++p) {
    const std::uint64_t* mine = shared + static_cast<std::size_t>(p) * (per_proc + 3);
    start = std::min(start, mine[0]);
    end = std::max(end, mine[1]);
    first = std::max(first, mine[2]);
    lat.insert(lat.end(), mine + 3, mine + 3 + per_proc);
  }
  ::munmap(mem, slots * sizeof(std::uint64_t));
  std::sort(lat.begin(), lat.end());
  auto at = [&](double q) { return static_cast<double>(lat[std::min(lat.size() - 1, static_cast<std::size_t>(q * static_cast<double>(lat.size())))]) / 1e3; };
  LatencyFigures f;
  f.ops_per_s = static_cast<double>(lat.size()) / (static_cast<double>(end - start) / 1e9);
  f.p50_us = at(0.5);
  f.p99_us = at(0.99);
  f.p999_us = at(0.999);
  f.worst_us = static_cast<double>(lat.back()) / 1e3;
  f.first_op_us = static_cast<double>(first) / 1e3;
  return f;
}

// 4. Increment from 1 and from 2 processes at once, kvstore and LMDB (Tkrzw
// HashDBM is single-process); the counter totals are verified after each run.
}  // namespace

void bench_parallel_increment(const fs::path& dir, std::size_t per_proc, std::uint64_t seed, nlohmann::ordered_json& out) {
  const auto keys = pool_keys("mp:");
  const fs::path kv_path = dir / "coord-mp.kv", lm_path = dir / "coord-mp.mdb";
  const IncrementFactory make_kv = [&] {
    auto s = std::make_shared<kvstore::Store>(open_kv(kv_path));
    return std::function<std::int64_t(const std::string&)>([s](const std::string& k) { return s->increment(k); });
  };
  const IncrementFactory make_lm = [&] {
    auto l = std::make_shared<LmdbFile>(lm_path, kCoordMap);
    return std::function<std::int64_t(const std::string&)>([l](const std::string& k) { return lmdb_increment(*l, k); });
  };
  auto kv_total = [&] {
    kvstore::Store s = open_kv(kv_path);
    std::int64_t t = 0;
    for (const auto& k : keys) t += s.get(k) ? parse_i64(*s.get(k)) : 0;
    return t;
  };
  auto lm_total = [&] {
    LmdbFile l(lm_path, kCoordMap);
    MDB_txn* rt = l.begin(MDB_RDONLY);
    std::int64_t t = 0;
    for (const auto& k : keys) {
      const auto v = l.get(rt, k);
      t += v ? parse_i64(*v) : 0;
    }
    mdb_txn_abort(rt);
    return t;
  };
  std::printf("increment from 1 and 2 processes at once (%zu ops each, %zu counters, totals verified):\n", per_proc, kPool);
  std::printf("  %-8s %5s %12s %8s %8s %10s %10s %14s\n", "engine", "procs", "total ops/s", "p50 us", "p99 us", "p99.9 us",
              "worst us", "first op us");
  std::int64_t done = 0;
  for (const int procs : {1, 2}) {
    // Interleaved: kvstore, then LMDB, at each process count.
    const auto kv = parallel_increments(make_kv, keys, procs, per_proc, seed);
    const auto lm = parallel_increments(make_lm, keys, procs, per_proc, seed);
    done += procs * static_cast<std::int64_t>(per_proc + 1);
    if (kv_total() != done || lm_total() != done) die("parallel increment totals differ from the ops done");
    for (const auto& [name, f] : {std::pair<const char*, LatencyFigures>{"kvstore", kv}, {"lmdb", lm}}) {
      std::printf("  %-8s %5d %12.0f %8.1f %8.1f %10.1f %10.1f %14.1f\n", name, procs, f.ops_per_s, f.p50_us, f.p99_us,
                  f.p999_us, f.worst_us, f.first_op_us);
      out[name][std::to_string(procs)] = {{"ops_per_s", f.ops_per_s}, {"p50_us", f.p50_us}, {"p99_us", f.p99_us},
                                          {"p999_us", f.p999_us}, {"worst_us", f.worst_us}, {"first_op_us", f.first_op_us}};
    }
  }
  const double kv1 = out["kvstore"]["1"]["ops_per_s"], kv2 = out["kvstore"]["2"]["ops_per_s"];
  const double lm1 = out["lmdb"]["1"]["ops_per_s"], lm2 = out["lmdb"]["2"]["ops_per_s"];
  std::printf("  ratios: kvstore/lmdb ops/s 1 proc %.2f, 2 procs %.2f; 2 procs/1 proc kvstore x%.2f, lmdb x%.2f\n", kv1 / lm1,
              kv2 / lm2, kv2 / kv1, lm2 / lm1);
  out["ratios"] = {{"kvstore/lmdb_1", kv1 / lm1}, {"kvstore/lmdb_2", kv2 / lm2}, {"kvstore_2/1", kv2 / kv1}, {"lmdb_2/1", lm2 / lm1}};
}

// 5. Wake-up latency: a child blocks in wait_for_change; the parent reads
// CLOCK_MONOTONIC just before it puts that time (and the round) into the
// store; the child reads the clock as it wakes and the time from the store.
// The same through a pipe (the child blocked in read) gives the OS's floor.
// Also returns, in `commit_us`, how long the parent's put (or pipe write)
// itself took: the part of the wake-up spent before anyone is woken; and in
// `first_put_us` the parent's first put on its fresh handle, made before the
// rounds (the first write of a session msyncs the header: see
// parallel_increments).
std::vector<double> wake_latencies(const fs::path& path, int rounds, bool via_store, std::vector<double>& commit_us,
                                   std::vector<double>& first_put_us) {
  int ready[2], wake[2];
  if (::pipe(ready) != 0 || ::pipe(wake) != 0) die("pipe");
  void* mem = ::mmap(nullptr, static_cast<std::size_t>(rounds) * sizeof(std::uint64_t), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) die("mmap");
  auto* lat = static_cast<std::uint64_t*>(mem);
  const pid_t pid = ::fork();
  if (pid < 0) die("fork");
  if (pid == 0) {
    std::optional<kvstore::Store> s;
    if (via_store) s.emplace(open_kv(path));
    char c = 1;
    for (int r = 0; r < rounds; ++r) {
      std::uint64_t sent = 0, woke = 0;
      if (via_store) {
        std::uint64_t seen = s->change_count();
        if (::write(ready[1], &c, 1) != 1) ::_exit(2);
        const std::string want = std::to_string(r) + " ";
        for (;;) {  // the parent's warm-up put may wake us first: wait on for this round's
          const std::uint64_t now = s->wait_for_change(seen, std::chrono::milliseconds(10'000));
          if (now == seen) ::_exit(3);  // timed out
          woke = now_ns();
          const auto v = s->get("wake");
          if (v && v->compare(0, want.size(), want) == 0) {
            sent = static_cast<std::uint64_t>(parse_i64(std::string_view(*v).substr(want.size())));
            break;
          }
          seen = now;
        }
      } else {
        if (::write(ready[1], &c, 1) != 1) ::_exit(2);
        if (::read(wake[0], &sent, sizeof sent) != sizeof sent) ::_exit(3);
        woke = now_ns();
      }
      lat[r] = woke - sent;
    }
    ::_exit(0);
  }
  std::optional<kvstore::Store> s;
  if (via_store) {
    s.emplace(open_kv(path));
    const std::uint64_t t0 = now_ns();
    s->put("warm-up", "1");
    first_put_us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
  }
  char c = 0;
  for (int r = 0; r < rounds; ++r) {
    if (::read(ready[0], &c, 1) != 1) die("the waiting child is gone");
    ::usleep(1000);  // let it block
    const std::uint64_t t0 = now_ns();
    if (via_store) {
      s->put("wake", std::to_string(r) + " " + std::to_string(t0));
    } else if (::write(wake[1], &t0, sizeof t0) != sizeof t0) {
      die("wake pipe");
    }
    commit_us.push_back(static_cast<double>(now_ns() - t0) / 1e3);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) die("the waiting child failed (status " + std::to_string(status) + ")");
  for (int fd : {ready[0], ready[1], wake[0], wake[1]}) ::close(fd);
  std::vector<double> us(lat, lat + rounds);
  ::munmap(mem, static_cast<std::size_t>(rounds) * sizeof(std::uint64_t));
  for (double& v : us) v /= 1e3;
  std::sort(us.begin(), us.end());
  return us;
}

void bench_wakeup(const fs::path& dir, int rounds, nlohmann::ordered_json& out) {
  // Interleaved in 4 turns, like the slices above.
  std::vector<double> store, pipe, store_commit, pipe_commit, first_put;
  for (int turn = 0; turn < 4; ++turn) {
    const auto a = wake_latencies(dir / "coord-wake.kv", rounds / 4, true, store_commit, first_put);
    const auto b = wake_latencies(dir / "coord-wake.kv", rounds / 4, false, pipe_commit, first_put);
    store.insert(store.end(), a.begin(), a.end());
    pipe.insert(pipe.end(), b.begin(), b.end());
  }
  std::printf("wake-up latency, another process (%d rounds; us from the clock read before the put to the waiter's wake;\n"
              "  'of which commit': the put or pipe write alone, in the parent):\n",
              rounds / 4 * 4);
  const std::pair<const char*, std::vector<double>*> rows[] = {{"kvstore put -> wait_for_change", &store},
                                                               {"  of which commit (put)", &store_commit},
                                                               {"pipe write -> read (OS floor)", &pipe},
                                                               {"  of which commit (write)", &pipe_commit}};
  const char* keys[] = {"kvstore", "kvstore_put", "pipe", "pipe_write"};
  for (std::size_t r = 0; r < 4; ++r) {
    auto& v = *rows[r].second;
    std::sort(v.begin(), v.end());
    const auto at = [&](double q) { return v[std::min(v.size() - 1, static_cast<std::size_t>(q * static_cast<double>(v.size())))]; };
    std::printf("  %-40s median %7.1f  p99 %7.1f  worst %7.1f\n", rows[r].first, at(0.5), at(0.99), v.back());
    out[keys[r]] = {{"median_us", at(0.5)}, {"p99_us", at(0.99)}, {"worst_us", v.back()}};
  }
  std::sort(first_put.begin(), first_put.end());
  std::printf("  first put of each of the 4 sessions (header msync; before the rounds, not above): %.0f %.0f %.0f %.0f us\n",
              first_put[0], first_put[1], first_put[2], first_put[3]);
  out["kvstore_first_put_of_session_us"] = first_put;
}

}  // namespace kvbench_coord
