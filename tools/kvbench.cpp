// kvbench: kvstore against LMDB, Kyoto Cabinet (HashDB) and Tkrzw (HashDBM),
// with a heap std::unordered_map for reference, on the same keys in one run.
// Each workload is cut into slices and the engines take turns slice by slice,
// so that machine noise and cache pollution fall on all of them alike. Every
// read checks its answer. Results: ns/op, and kvstore's ratio to the better
// of Kyoto Cabinet and Tkrzw ("best") and to LMDB. Then the coordination calls
// (increment, compare_exchange, transact, increment from 2 processes,
// wait_for_change wake-up) against LMDB and Tkrzw, min(N, 200000) ops each;
// `--only coordination` runs just those.
//
//   kvbench [-n N] [--key-size 16] [--value-size 100] [--seed S] [--dir D] [--json FILE] [--plot FILE.png]
//           [--only coordination|maintenance|churn] [--no-stall-watch]
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
#include <kvstore/store.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvbench_coordination.hpp"
#include "kvbench_die.hpp"
#include "kvbench_engines.hpp"
#include "kvbench_maintenance.hpp"
#include "kvbench_stalls.hpp"
#include "kvbench_slices.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ------------------------------------------------------------------ workloads

struct Data {
  std::vector<std::string> keys;    // stored
  std::vector<std::string> misses;  // never stored, same length and alphabet
  std::vector<std::string> values;  // values[i] for keys[i]
  std::vector<std::string> updated;
};

std::string random_bytes(std::mt19937_64& rng, std::size_t n) {
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>('a' + rng() % 26);
  return s;
}

using Op = std::function<void(Engine&, std::size_t)>;

// Runs `count` ops over every engine, interleaved in `slices` turns; returns ns/op per engine.
std::vector<double> run(std::vector<Engine*>& engines, std::size_t count, const Op& op, int slices = 10) {
  return time_in_slices(engines.size(), count, slices, [&](std::size_t e, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) op(*engines[e], i);
    engines[e]->flush();
  });
}

// Aggregate reads/s of `procs` processes, each opening the store itself.
double parallel_reads(const std::function<std::unique_ptr<Engine>()>& make, const Data& d, int procs,
                      std::size_t per_proc) {
  int fds[2];
  if (::pipe(fds) != 0) die("pipe");
  std::vector<pid_t> pids;
  for (int p = 0; p < procs; ++p) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      auto e = make();
      e->open();
      std::mt19937_64 rng(static_cast<std::uint64_t>(p) + 77);
      const auto t0 = Clock::now();
      for (std::size_t i = 0; i < per_proc; ++i) {
        const std::size_t j = rng() % d.keys.size();
        if (!e->get(d.keys[j], nullptr)) die("a stored key is missing");
      }
      const double s = std::chrono::duration<double>(Clock::now() - t0).count();
      const double rate = static_cast<double>(per_proc) / s;
      (void)::write(fds[1], &rate, sizeof rate);
      e->close();
      ::_exit(0);
    }
    pids.push_back(pid);
  }
  double total = 0;
  for (int p = 0; p < procs; ++p) {
    double r = 0;
    if (::read(fds[0], &r, sizeof r) == sizeof r) total += r;
  }
  for (const pid_t pid : pids) ::waitpid(pid, nullptr, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  return total;
}

// What one run shares: its parameters, the data, the files' place, the results.
struct Bench {
  std::size_t n = 1'000'000;
  std::size_t key_size = 16;
  std::size_t value_size = 100;
  std::uint64_t seed = 20261124;
  fs::path dir;
  Data d;
  std::vector<std::size_t> order;  // the keys in a random order
  double raw = 0;                  // bytes of keys and values
  std::uint64_t lmdb_map = 0;
  nlohmann::ordered_json results;
  std::vector<std::pair<std::string, std::vector<double>>> table;  // workload -> ns/op per engine
};

void make_data(Bench& b) {
  std::mt19937_64 rng(b.seed);
  for (std::size_t i = 0; i < b.n; ++i) {
    std::string k = random_bytes(rng, b.key_size);
    k.replace(0, 8, std::to_string(10'000'000 + i).substr(0, 8));  // unique
    b.d.keys.push_back(std::move(k));
    b.d.values.push_back(random_bytes(rng, b.value_size));
    b.d.updated.push_back(random_bytes(rng, b.value_size));
    std::string m = random_bytes(rng, b.key_size);
    m.replace(0, 8, std::to_string(30'000'000 + i).substr(0, 8));
    b.d.misses.push_back(std::move(m));
  }
  b.order.resize(b.n);
  for (std::size_t i = 0; i < b.n; ++i) b.order[i] = i;
  std::shuffle(b.order.begin(), b.order.end(), rng);
  b.raw = static_cast<double>(b.n * (b.key_size + b.value_size));
  b.lmdb_map = std::max<std::uint64_t>(1ULL << 30, b.n * (b.key_size + b.value_size) * 8);
}

void record(Bench& b, const std::vector<Engine*>& engines, const std::string& name, const std::vector<double>& ns) {
  b.table.emplace_back(name, ns);
  for (std::size_t e = 0; e < engines.size(); ++e) b.results["ns_per_op"][name][engines[e]->name()] = ns[e];
}

// load, get-hit, get-miss, update and the three YCSB mixes, every engine interleaved.
void bench_point_ops(Bench& b, std::vector<Engine*>& engines) {
  const Data& d = b.d;
  const std::vector<std::size_t>& order = b.order;
  const std::size_t n = b.n;
  record(b, engines, "load", run(engines, n, [&](Engine& e, std::size_t i) { e.put(d.keys[order[i]], d.values[order[i]]); }));
  record(b, engines, "get-hit", run(engines, n, [&](Engine& e, std::size_t i) {
           if (!e.get(d.keys[order[i]], &d.values[order[i]])) die(std::string(e.name()) + ": missing key");
         }));
  record(b, engines, "get-miss", run(engines, n, [&](Engine& e, std::size_t i) {
           if (e.get(d.misses[order[i]], nullptr)) die(std::string(e.name()) + ": found a key never stored");
         }));
  record(b, engines, "update", run(engines, n, [&](Engine& e, std::size_t i) { e.put(d.keys[order[i]], d.updated[order[i]]); }));
  std::mt19937_64 ycsb(b.seed + 1);
  std::vector<std::uint8_t> coin(n);
  for (auto& c : coin) c = static_cast<std::uint8_t>(ycsb() % 100);
  // After "update", every key holds d.updated; YCSB writes put d.updated again so reads stay checkable.
  auto ycsb_mix = [&](int read_percent) {
    return [&, read_percent](Engine& e, std::size_t i) {
      const std::size_t j = order[(i * 7) % n];
      if (coin[i] < read_percent) {
        if (!e.get(d.keys[j], &d.updated[j])) die("missing key in YCSB");
      } else {
        e.put(d.keys[j], d.updated[j]);
      }
    };
  };
  record(b, engines, "ycsb-a", run(engines, n, ycsb_mix(50)));
  record(b, engines, "ycsb-b", run(engines, n, ycsb_mix(95)));
  record(b, engines, "ycsb-c", run(engines, n, ycsb_mix(100)));
}

// Disk use of every engine, then kvstore's compaction: its time and the size after.
void bench_disk_and_compact(Bench& b, const std::vector<Engine*>& engines, KvEngine& kv) {
  for (Engine* e : engines) e->flush();
  for (Engine* e : engines) {
    if (std::string(e->name()) != "std::unordered_map") b.results["disk_per_raw"][e->name()] = static_cast<double>(e->disk_bytes()) / b.raw;
  }
  b.results["kvstore"]["disk_per_raw_before_compact"] = static_cast<double>(kv.disk_bytes()) / b.raw;
  const auto t0 = Clock::now();
  kv.store().compact();
  b.results["kvstore"]["compact_s"] = std::chrono::duration<double>(Clock::now() - t0).count();
  b.results["kvstore"]["disk_per_raw_after_compact"] = static_cast<double>(kv.disk_bytes()) / b.raw;
}

// Three rounds of random overwrites with nobody compacting: the file sizes
// after them, and what each put waited (kvstore reclaims space meanwhile).
void bench_churn(Bench& b, const std::vector<Engine*>& engines) {
  std::vector<ChurnContender> contenders;
  for (Engine* e : engines) {
    if (std::string(e->name()) == "std::unordered_map") continue;
    // d.updated again: every later check of a value stays valid.
    contenders.push_back({e->name(), [&b, e](std::size_t k, std::size_t) { e->put(b.d.keys[k], b.d.updated[k]); },
                          [e] { e->flush(); }, [e] { return e->disk_bytes(); }});
  }
  run_churn(contenders, b.n, 3, b.raw, b.seed + 3, b.results["churn"]);
}

// Reads from 1 and 2 processes (kvstore and LMDB: the multi-process engines).
void bench_parallel_reads(Bench& b) {
  // 2M reads a process (kvstore's took 0.65 s, a stall of either CPU then
  // weighed enough to read x1.55 once in five runs; 1.2 s before session 14).
  const std::size_t per_proc = std::min<std::size_t>(2 * b.n, 2'000'000);
  auto make_kv = [&] { return std::unique_ptr<Engine>(new KvEngine(b.dir / "kvstore.kv")); };
  auto make_lmdb = [&] { return std::unique_ptr<Engine>(new LmdbEngine(b.dir / "lmdb.mdb", b.lmdb_map)); };
  b.results["reads_per_s"] = {{"kvstore_1", parallel_reads(make_kv, b.d, 1, per_proc)},
                              {"lmdb_1", parallel_reads(make_lmdb, b.d, 1, per_proc)},
                              {"kvstore_2", parallel_reads(make_kv, b.d, 2, per_proc)},
                              {"lmdb_2", parallel_reads(make_lmdb, b.d, 2, per_proc)}};
}

// Open + first get of the populated store.
void bench_open_first_get(Bench& b, KvEngine& kv, LmdbEngine& lmdb) {
  auto open_first_get = [&](Engine& e, const std::string& k) {
    const auto t = Clock::now();
    e.open();
    if (!e.get(k, nullptr)) die("first get missed");
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t).count();
    e.close();
    return us;
  };
  const std::string& key = b.d.keys[b.order[0]];
  b.results["open_first_get_us"] = {{"kvstore", open_first_get(kv, key)}, {"lmdb", open_first_get(lmdb, key)}};
}

// A short session's close: open, overwrite kSession keys, close, timed for
// kvstore's durable close and its close without a sync
// (Options::sync_on_close = false), and for LMDB's (MDB_NOSYNC: no sync
// either) as it is and after mdb_env_sync, timed apart. Unmapping pages
// still dirty costs what a sync would have cleaned, so each kind is compared
// with its own: durable with LMDB's sync + close, no sync with no sync.
void bench_session_close(Bench& b, KvEngine& kv, LmdbEngine& lmdb) {
  constexpr std::size_t kSession = 100'000;
  std::size_t from = 0;
  auto session = [&](Engine& e, bool sync_first) {
    e.open();
    for (std::size_t i = from; i < from + kSession; ++i) e.put(b.d.keys[b.order[i % b.n]], b.d.updated[b.order[i % b.n]]);
    from += kSession;
    double sync_us = 0;
    if (sync_first) {
      const auto s = Clock::now();
      e.sync_to_disk();
      sync_us = std::chrono::duration<double, std::micro>(Clock::now() - s).count();
    }
    const auto t = Clock::now();
    e.close();
    return std::pair{std::chrono::duration<double, std::micro>(Clock::now() - t).count(), sync_us};
  };
  nlohmann::ordered_json& r = b.results["session_close_us"];
  r["puts"] = kSession;
  r["kvstore"] = session(kv, false).first;
  kv.set_sync_on_close(false);
  r["kvstore_no_sync"] = session(kv, false).first;
  kv.set_sync_on_close(true);
  r["lmdb_no_sync"] = session(lmdb, false).first;
  const auto [close_us, sync_us] = session(lmdb, true);
  r["lmdb"] = close_us;
  r["lmdb_sync"] = sync_us;
}

// Recovery after an unclean stop: a writer is killed while it puts; the
// next open rebuilds the store if the kill landed inside a change (tried
// until one did), and is timed.
void bench_recovery_after_kill(Bench& b) {
  double recovery_ms = -1;
  std::uint64_t recovery_keys = 0;
  for (int attempt = 0; attempt < 20 && recovery_ms < 0; ++attempt) {
    const pid_t pid = ::fork();
    if (pid == 0) {
      KvEngine w(b.dir / "kvstore.kv");
      w.open();
      for (std::size_t i = 0;; i = (i + 1) % b.n) w.put(b.d.keys[i], b.d.updated[i]);
    }
    ::usleep(200'000);
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    const auto t = Clock::now();
    kvstore::Store s = kvstore::Store::open(b.dir / "kvstore.kv");
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (s.stats().recoveries > 0) {
      recovery_ms = ms;
      recovery_keys = s.size();
    }
  }
  b.results["kvstore"]["recovery_ms"] = recovery_ms;
  b.results["kvstore"]["recovery_keys"] = recovery_keys;
}

// The other recovery path: a writer killed inside the allocator, a power cut
// or a damaged header make the next open rebuild the whole file from its
// records. A kill lands there too rarely to wait for, so the same rebuild is
// timed through Store::repair, which differs only in finding the chunks by
// their magic instead of following their list.
void bench_full_rebuild_recovery(Bench& b) {
  const std::string path = (b.dir / "kvstore.kv").string();
  const auto t = Clock::now();
  (void)kvstore::Store::repair(path);
  b.results["kvstore"]["rebuild_recovery_ms"] = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
  if (kvstore::Store::open(path).size() != b.n) die("the full rebuild lost keys");
}

// kvstore only: batch load through apply(), worst single put while growing, Sync::always.
void bench_kvstore_only(Bench& b) {
  const Data& d = b.d;
  KvEngine kvb(b.dir / "kvstore-batch.kv");
  kvb.open();
  auto t0 = Clock::now();
  std::vector<kvstore::BatchOp> batch;
  for (std::size_t i = 0; i < b.n; ++i) {
    batch.push_back({d.keys[b.order[i]], d.values[b.order[i]], false});
    if (batch.size() == 1000 || i + 1 == b.n) {
      kvb.apply(batch);
      batch.clear();
    }
  }
  b.results["kvstore"]["batch_load_ns"] =
      std::chrono::duration<double, std::nano>(Clock::now() - t0).count() / static_cast<double>(b.n);
  kvb.close();
  KvEngine grow(b.dir / "kvstore-grow.kv", kvstore::Sync::none, 64 * 1024);  // from the smallest store
  grow.open();
  double worst_us = 0;
  kvbench::SlowCalls slow;
  kvbench::StallWatch watch;
  for (std::size_t i = 0; i < b.n; ++i) {
    const auto t = Clock::now();
    grow.put(d.keys[i], d.values[i]);
    const double us = std::chrono::duration<double, std::micro>(Clock::now() - t).count();
    worst_us = std::max(worst_us, us);
    slow.add(t, us);
  }
  watch.stop();
  grow.close();
  b.results["kvstore"]["worst_put_while_growing_us"] = worst_us;
  slow.report(watch, b.results["kvstore"]["growing"], false);
  const std::size_t sync_n = std::min<std::size_t>(b.n, 2000);
  KvEngine kvs(b.dir / "kvstore-sync.kv", kvstore::Sync::always);
  kvs.open();
  t0 = Clock::now();
  for (std::size_t i = 0; i < sync_n; ++i) kvs.put(d.keys[i], d.values[i]);
  b.results["kvstore"]["sync_always_put_us"] =
      std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / static_cast<double>(sync_n);
  kvs.close();
}

void report(Bench& b, const std::vector<Engine*>& engines) {
  nlohmann::ordered_json& r = b.results;
  std::printf("\nns/op (lower is better); ratios: kvstore / best of (kyotocabinet, tkrzw), kvstore / lmdb\n");
  std::printf("%-10s", "workload");
  for (Engine* e : engines) std::printf(" %13s", e->name());
  std::printf(" %8s %8s\n", "vs best", "vs lmdb");
  for (const auto& [name, ns] : b.table) {
    std::printf("%-10s", name.c_str());
    for (double v : ns) std::printf(" %13.0f", v);
    const double best = std::min(ns[2], ns[3]);
    std::printf(" %8.2f %8.2f\n", ns[0] / best, ns[0] / ns[1]);
    r["ratio_vs_best"][name] = ns[0] / best;
    r["ratio_vs_lmdb"][name] = ns[0] / ns[1];
  }
  const auto num = [](const nlohmann::ordered_json& j) { return j.get<double>(); };
  const nlohmann::ordered_json& rps = r["reads_per_s"];
  const double kv1 = num(rps["kvstore_1"]), kv2 = num(rps["kvstore_2"]), lm1 = num(rps["lmdb_1"]), lm2 = num(rps["lmdb_2"]);
  std::printf("\nreads/s, 1 process -> 2 processes: kvstore %.2fM -> %.2fM (x%.2f), lmdb %.2fM -> %.2fM (x%.2f)\n",
              kv1 / 1e6, kv2 / 1e6, kv2 / kv1, lm1 / 1e6, lm2 / 1e6, lm2 / lm1);
  std::printf("open + first get of the populated store: kvstore %.0f us, lmdb %.0f us\n",
              num(r["open_first_get_us"]["kvstore"]), num(r["open_first_get_us"]["lmdb"]));
  std::printf("close of the store after the churn (durable): kvstore %.0f us; lmdb %.0f us, and its sync before %.0f us\n",
              num(r["close_warm_us"]["kvstore"]), num(r["close_warm_us"]["lmdb"]), num(r["close_warm_us"]["lmdb_sync"]));
  const nlohmann::ordered_json& sc = r["session_close_us"];
  std::printf("close after a session of %.0f overwrites: durable: kvstore %.0f us, lmdb %.0f us after its sync of %.0f us; "
              "without a sync: kvstore %.0f us (sync_on_close = false), lmdb %.0f us\n",
              num(sc["puts"]), num(sc["kvstore"]), num(sc["lmdb"]), num(sc["lmdb_sync"]), num(sc["kvstore_no_sync"]),
              num(sc["lmdb_no_sync"]));
  const nlohmann::ordered_json& kv = r["kvstore"];
  std::printf("kvstore load through apply() (1000 a batch): %.0f ns/op; Sync::always put: %.0f us/op\n",
              num(kv["batch_load_ns"]), num(kv["sync_always_put_us"]));
  std::printf("kvstore worst single put while growing from 64 KiB: %.0f us", num(kv["worst_put_while_growing_us"]));
  if (kv.contains("growing") && kv["growing"].is_object()) {
    std::printf(" (%.0f us outside CPU stalls, %.0f puts overlapped one)", num(kv["growing"]["worst_outside_stalls_us"]),
                num(kv["growing"]["calls_in_stalls"]));
  }
  std::printf("; compaction: %.2f s\n", num(kv["compact_s"]));
  if (num(kv["recovery_ms"]) >= 0) {
    std::printf("kvstore recovery after a writer was killed mid-put: %.0f ms for %llu keys\n", num(kv["recovery_ms"]),
                static_cast<unsigned long long>(kv["recovery_keys"].get<std::uint64_t>()));
  } else {
    std::printf("kvstore recovery: no kill landed inside a change in 20 tries (nothing to rebuild)\n");
  }
  std::printf("kvstore full rebuild from the records (Store::repair; a writer killed inside the allocator, a power cut): %.0f ms for %zu keys\n",
              num(kv["rebuild_recovery_ms"]), b.n);
  std::printf("disk bytes / raw bytes (before erase): kvstore %.2f -> %.2f after compact, lmdb %.2f, kyotocabinet %.2f, tkrzw %.2f\n",
              num(kv["disk_per_raw_before_compact"]), num(kv["disk_per_raw_after_compact"]), num(r["disk_per_raw"]["lmdb"]),
              num(r["disk_per_raw"]["kyotocabinet"]), num(r["disk_per_raw"]["tkrzw"]));
}

void plot(const Bench& b, const std::string& plot_path) {
  const fs::path dat = b.dir / "plot.dat";
  std::ofstream out(dat);
  for (const auto& [name, ns] : b.table) {
    out << name;
    for (double v : ns) out << ' ' << v;
    out << '\n';
  }
  out.close();
  const fs::path gp = b.dir / "plot.gp";
  std::ofstream(gp) << "set terminal png size 1000,500\nset output '" << plot_path
                    << "'\nset style data histograms\nset style fill solid\nset ylabel 'ns/op'\n"
                       "set key top left\nset termoption noenhanced\nplot '" << dat.string() << "' using 2:xtic(1) title 'kvstore', '' using 3 title 'lmdb', "
                       "'' using 4 title 'kyotocabinet', '' using 5 title 'tkrzw', '' using 6 title 'unordered_map'\n";
  if (std::system(("gnuplot " + gp.string()).c_str()) != 0) std::fprintf(stderr, "kvbench: gnuplot failed\n");
}

}  // namespace

int main(int argc, char** argv) {
  Bench b;
  std::string dir_opt;
  std::string json_path;
  std::string plot_path;
  std::string only;
  CLI::App app{"kvbench: kvstore against LMDB, Kyoto Cabinet and Tkrzw, interleaved in one run"};
  app.add_option("-n", b.n, "keys (default 1000000)");
  app.add_option("--key-size", b.key_size, "bytes per key (default 16)");
  app.add_option("--value-size", b.value_size, "bytes per value (default 100)");
  app.add_option("--seed", b.seed, "random seed");
  app.add_option("--dir", dir_opt, "where the files go (default: a fresh directory under /tmp)");
  app.add_option("--json", json_path, "also write the results as JSON");
  app.add_option("--plot", plot_path, "also draw the results with gnuplot (PNG)");
  app.add_option("--only", only, "run only this group of workloads: coordination, maintenance, churn")
      ->check(CLI::IsMember({"coordination", "maintenance", "churn"}));
  bool no_stall_watch = false;
  app.add_flag("--no-stall-watch", no_stall_watch,
               "time the latency phases without the real-time thread that tells CPU stalls apart (it perturbs them)");
  CLI11_PARSE(app, argc, argv);
  if (no_stall_watch) kvbench::StallWatch::turn_off();
  if (b.n < 100 || b.key_size < 8) die("need -n >= 100 and --key-size >= 8");

  b.dir = dir_opt.empty() ? fs::path(::mkdtemp((fs::temp_directory_path() / "kvbench-XXXXXX").string().data()))
                          : fs::path(dir_opt);
  fs::create_directories(b.dir);
  std::printf("kvbench: n=%zu key=%zuB value=%zuB seed=%llu dir=%s\n", b.n, b.key_size, b.value_size,
              static_cast<unsigned long long>(b.seed), b.dir.c_str());
  b.results["params"] = {{"n", b.n}, {"key_size", b.key_size}, {"value_size", b.value_size}, {"seed", b.seed}};
  const std::size_t coord_ops = std::min<std::size_t>(b.n, 200'000);
  auto finish = [&] {
    if (!json_path.empty()) std::ofstream(json_path) << b.results.dump(2) << '\n';
    if (dir_opt.empty()) fs::remove_all(b.dir);
    return 0;
  };
  if (only == "coordination") {
    run_coordination(b.dir, coord_ops, b.value_size, b.seed, b.results["coordination"]);
    return finish();
  }

  if (only == "maintenance") {
    run_maintenance(b.dir, b.n, b.value_size, b.seed, b.results["maintenance"]);
    return finish();
  }

  make_data(b);
  KvEngine kv(b.dir / "kvstore.kv");
  LmdbEngine lmdb(b.dir / "lmdb.mdb", b.lmdb_map);
  KyotoEngine kc(b.dir / "kyoto.kch", b.n);
  TkrzwEngine tk(b.dir / "tkrzw.tkh", b.n);
  HeapEngine heap;
  std::vector<Engine*> engines{&kv, &lmdb, &kc, &tk, &heap};
  for (Engine* e : engines) e->open();
  if (only == "churn") {
    record(b, engines, "load", run(engines, b.n, [&](Engine& e, std::size_t i) { e.put(b.d.keys[b.order[i]], b.d.values[b.order[i]]); }));
    bench_churn(b, engines);
    return finish();
  }
  bench_point_ops(b, engines);
  bench_disk_and_compact(b, engines, kv);
  bench_churn(b, engines);
  // Closing a warm store: after the churn, with its pages dirty. kvstore's
  // close leaves the file durable (what it promises after a power cut); LMDB
  // with MDB_NOSYNC syncs nothing, so its sync before the close is timed too.
  for (Engine* e : engines) {
    const auto t = Clock::now();
    if (e == &lmdb) {
      e->sync_to_disk();
      b.results["close_warm_us"]["lmdb_sync"] = std::chrono::duration<double, std::micro>(Clock::now() - t).count();
    }
    const auto c = Clock::now();
    e->close();
    b.results["close_warm_us"][e->name()] = std::chrono::duration<double, std::micro>(Clock::now() - c).count();
  }
  bench_parallel_reads(b);
  bench_open_first_get(b, kv, lmdb);
  bench_session_close(b, kv, lmdb);
  bench_recovery_after_kill(b);
  bench_full_rebuild_recovery(b);
  for (Engine* e : engines) e->open();
  record(b, engines, "erase", run(engines, b.n, [&](Engine& e, std::size_t i) { e.erase(b.d.keys[b.order[i]]); }));
  for (Engine* e : engines) e->close();
  bench_kvstore_only(b);
  report(b, engines);
  run_coordination(b.dir, coord_ops, b.value_size, b.seed, b.results["coordination"]);
  run_maintenance(b.dir, b.n, b.value_size, b.seed, b.results["maintenance"]);
  if (!plot_path.empty()) plot(b, plot_path);
  return finish();
}
