// What kvbench's coordination workloads share (kvbench_coordination.cpp, one
// process at a time; kvbench_processes.cpp, several): the contenders' files,
// the operation sequences, and the slice-interleaved timing and report.
#pragma once

#include <lmdb.h>
#include <time.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <kvstore/store.hpp>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <string_view>
#include <tkrzw_dbm_hash.h>
#include <vector>

#include "kvbench_die.hpp"
#include "kvbench_slices.hpp"

namespace kvbench_coord {

namespace fs = std::filesystem;

// The coordination calls (increment, compare_exchange, transact,
// wait_for_change) against what LMDB and Tkrzw offer for the same job. Same
// rules as above: the contenders take turns slice by slice on the same
// sequence of operations, and every answer is checked, here against a model
// of what each contender's store must hold. Counters are decimal text
// (kvstore's format; LMDB parses and formats it; Tkrzw's Increment keeps an
// 8-byte big-endian integer instead, its own format).

constexpr std::size_t kPool = 1000;                // counter and account keys
constexpr std::uint64_t kCoordMap = 1ULL << 30;    // LMDB map size for these files
constexpr std::int64_t kOpening = 1'000'000;       // each account's opening balance

inline void lmdb_check(int rc, const char* what) {
  if (rc != 0) die(std::string("lmdb ") + what + ": " + mdb_strerror(rc));
}

// A bare LMDB environment, opened as LmdbEngine opens it (NOSYNC, WRITEMAP),
// for one write transaction per operation.
class LmdbFile {
 public:
  LmdbFile(const fs::path& p, std::uint64_t map_size) {
    lmdb_check(mdb_env_create(&env_), "env_create");
    lmdb_check(mdb_env_set_mapsize(env_, map_size), "set_mapsize");
    lmdb_check(mdb_env_open(env_, p.c_str(), MDB_NOSUBDIR | MDB_NOSYNC | MDB_WRITEMAP | MDB_NOTLS, 0644), "env_open");
    MDB_txn* t = begin();
    lmdb_check(mdb_dbi_open(t, nullptr, 0, &dbi_), "dbi_open");
    commit(t);
  }
  ~LmdbFile() { mdb_env_close(env_); }
  LmdbFile(const LmdbFile&) = delete;
  LmdbFile& operator=(const LmdbFile&) = delete;

  MDB_txn* begin(unsigned flags = 0) {
    MDB_txn* t = nullptr;
    lmdb_check(mdb_txn_begin(env_, nullptr, flags, &t), "txn_begin");
    return t;
  }
  static void commit(MDB_txn* t) { lmdb_check(mdb_txn_commit(t), "txn_commit"); }
  std::optional<std::string_view> get(MDB_txn* t, std::string_view k) const {
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    MDB_val val{};
    const int rc = mdb_get(t, dbi_, &key, &val);
    if (rc == MDB_NOTFOUND) return std::nullopt;
    lmdb_check(rc, "get");
    return std::string_view(static_cast<const char*>(val.mv_data), val.mv_size);
  }
  void put(MDB_txn* t, std::string_view k, std::string_view v) {
    MDB_val key{k.size(), const_cast<char*>(k.data())};
    MDB_val val{v.size(), const_cast<char*>(v.data())};
    lmdb_check(mdb_put(t, dbi_, &key, &val, 0), "put");
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_dbi dbi_ = 0;
};

inline std::int64_t parse_i64(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) die("not a decimal counter: '" + std::string(s) + "'");
  return v;
}

// LMDB's increment: one write transaction (begin, get, parse, put, commit).
inline std::int64_t lmdb_increment(LmdbFile& lm, std::string_view key) {
  MDB_txn* t = lm.begin();
  const auto old = lm.get(t, key);
  const std::int64_t now = (old ? parse_i64(*old) : 0) + 1;
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, now);
  lm.put(t, key, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  LmdbFile::commit(t);
  return now;
}

inline kvstore::Store open_kv(const fs::path& p) {
  kvstore::Options o;
  o.initial_size = 1 << 20;
  return kvstore::Store::open(p, o);
}

inline void open_tkrzw(tkrzw::HashDBM& db, const fs::path& p) {
  tkrzw::HashDBM::TuningParameters t;
  t.num_buckets = static_cast<std::int64_t>(kPool * 8);
  if (db.OpenAdvanced(p.string(), true, tkrzw::File::OPEN_TRUNCATE, t) != tkrzw::Status::SUCCESS) die("tkrzw open");
}

inline std::vector<std::string> pool_keys(const char* prefix) {
  std::vector<std::string> keys;
  char buf[32];
  for (std::size_t i = 0; i < kPool; ++i) {
    std::snprintf(buf, sizeof buf, "%s%08zu", prefix, i);
    keys.emplace_back(buf);
  }
  return keys;
}

inline std::vector<std::uint32_t> random_picks(std::size_t ops, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint32_t> pick(ops);
  for (auto& p : pick) p = static_cast<std::uint32_t>(rng() % kPool);
  return pick;
}

inline std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Contender {
  std::string name;
  std::function<void(std::size_t)> op;
};

// `count` ops over every contender, interleaved in `slices` turns; ns/op per contender.
inline std::vector<double> interleave(const std::vector<Contender>& cs, std::size_t count, int slices = 10) {
  return time_in_slices(cs.size(), count, slices, [&](std::size_t c, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) cs[c].op(i);
  });
}

struct Ratio {
  const char* label;
  std::size_t num;
  std::size_t den;
};

inline void report(const std::string& workload, const std::vector<Contender>& cs, const std::vector<double>& ns,
            const std::vector<Ratio>& ratios, nlohmann::ordered_json& out) {
  std::printf("%s\n", workload.c_str());
  for (std::size_t c = 0; c < cs.size(); ++c) {
    std::printf("  %-40s %8.0f ns/op\n", cs[c].name.c_str(), ns[c]);
    out["ns_per_op"][cs[c].name] = ns[c];
  }
  std::printf("  ratios:");
  for (std::size_t r = 0; r < ratios.size(); ++r) {
    const double v = ns[ratios[r].num] / ns[ratios[r].den];
    std::printf("%s %s %.2f", r == 0 ? "" : ",", ratios[r].label, v);
    out["ratios"][ratios[r].label] = v;
  }
  std::printf("\n");
}

// 1. Increment of a random counter of the pool: kvstore increment, a plain
// kvstore put of the same value (the cost increment should match), LMDB (one
// write transaction each) and Tkrzw HashDBM::Increment.
// Increments from two processes at once, and wait_for_change wake-ups (kvbench_processes.cpp).
void bench_parallel_increment(const fs::path& dir, std::size_t per_proc, std::uint64_t seed, nlohmann::ordered_json& out);
void bench_wakeup(const fs::path& dir, int rounds, nlohmann::ordered_json& out);

}  // namespace kvbench_coord
