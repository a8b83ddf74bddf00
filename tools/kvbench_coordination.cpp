// kvbench's coordination workloads: increment, compare_exchange, a 4-key
// transaction, increments from two processes, and wait_for_change wake-ups,
// against what LMDB and Tkrzw offer for the same job (README "Coordination calls").
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

#include "kvbench_coordination.hpp"
#include "kvbench_die.hpp"
#include "kvbench_slices.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// ------------------------------------------------------------------ coordination
//
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

void lmdb_check(int rc, const char* what) {
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

std::int64_t parse_i64(std::string_view s) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size()) die("not a decimal counter: '" + std::string(s) + "'");
  return v;
}

// LMDB's increment: one write transaction (begin, get, parse, put, commit).
std::int64_t lmdb_increment(LmdbFile& lm, std::string_view key) {
  MDB_txn* t = lm.begin();
  const auto old = lm.get(t, key);
  const std::int64_t now = (old ? parse_i64(*old) : 0) + 1;
  char buf[24];
  const auto r = std::to_chars(buf, buf + sizeof buf, now);
  lm.put(t, key, std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)));
  LmdbFile::commit(t);
  return now;
}

kvstore::Store open_kv(const fs::path& p) {
  kvstore::Options o;
  o.initial_size = 1 << 20;
  return kvstore::Store::open(p, o);
}

void open_tkrzw(tkrzw::HashDBM& db, const fs::path& p) {
  tkrzw::HashDBM::TuningParameters t;
  t.num_buckets = static_cast<std::int64_t>(kPool * 8);
  if (db.OpenAdvanced(p.string(), true, tkrzw::File::OPEN_TRUNCATE, t) != tkrzw::Status::SUCCESS) die("tkrzw open");
}

std::vector<std::string> pool_keys(const char* prefix) {
  std::vector<std::string> keys;
  char buf[32];
  for (std::size_t i = 0; i < kPool; ++i) {
    std::snprintf(buf, sizeof buf, "%s%08zu", prefix, i);
    keys.emplace_back(buf);
  }
  return keys;
}

std::vector<std::uint32_t> random_picks(std::size_t ops, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::uint32_t> pick(ops);
  for (auto& p : pick) p = static_cast<std::uint32_t>(rng() % kPool);
  return pick;
}

std::uint64_t now_ns() {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1'000'000'000ULL + static_cast<std::uint64_t>(ts.tv_nsec);
}

struct Contender {
  std::string name;
  std::function<void(std::size_t)> op;
};

// `count` ops over every contender, interleaved in `slices` turns; ns/op per contender.
std::vector<double> interleave(const std::vector<Contender>& cs, std::size_t count, int slices = 10) {
  return time_in_slices(cs.size(), count, slices, [&](std::size_t c, std::size_t from, std::size_t to) {
    for (std::size_t i = from; i < to; ++i) cs[c].op(i);
  });
}

struct Ratio {
  const char* label;
  std::size_t num;
  std::size_t den;
};

void report(const std::string& workload, const std::vector<Contender>& cs, const std::vector<double>& ns,
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
void bench_increment(const fs::path& dir, std::size_t ops, std::uint64_t seed, nlohmann::ordered_json& out) {
  const auto keys = pool_keys("counter:");
  const auto pick = random_picks(ops, seed);
  kvstore::Store inc = open_kv(dir / "coord-increment.kv");
  kvstore::Store put = open_kv(dir / "coord-put.kv");
  LmdbFile lm(dir / "coord-increment.mdb", kCoordMap);
  tkrzw::HashDBM tk;
  open_tkrzw(tk, dir / "coord-increment.tkh");
  std::vector<std::int64_t> m_inc(kPool), m_put(kPool), m_lm(kPool), m_tk(kPool);  // what each must hold
  const std::vector<Contender> cs{
      {"kvstore increment",
       [&](std::size_t i) {
         if (inc.increment(keys[pick[i]]) != ++m_inc[pick[i]]) die("kvstore increment returned a wrong value");
       }},
      {"kvstore put (same value, no read)", [&](std::size_t i) { put.put(keys[pick[i]], std::to_string(++m_put[pick[i]])); }},
      {"lmdb txn (get, parse, put, commit)",
       [&](std::size_t i) {
         if (lmdb_increment(lm, keys[pick[i]]) != ++m_lm[pick[i]]) die("lmdb increment read a wrong value");
       }},
      {"tkrzw Increment",
       [&](std::size_t i) {
         std::int64_t now = 0;
         if (tk.Increment(keys[pick[i]], 1, &now) != tkrzw::Status::SUCCESS || now != ++m_tk[pick[i]]) {
           die("tkrzw Increment returned a wrong value");
         }
       }},
  };
  const auto ns = interleave(cs, ops);
  // Every counter of every engine, and their totals.
  std::int64_t kv_total = 0, put_total = 0, lm_total = 0, tk_total = 0;
  MDB_txn* rt = lm.begin(MDB_RDONLY);
  for (std::size_t k = 0; k < kPool; ++k) {
    const auto a = inc.get(keys[k]);
    const auto b = put.get(keys[k]);
    const auto c = lm.get(rt, keys[k]);
    std::string d;
    const bool in_tk = tk.Get(keys[k], &d) == tkrzw::Status::SUCCESS;
    const std::int64_t va = a ? parse_i64(*a) : 0, vb = b ? parse_i64(*b) : 0, vc = c ? parse_i64(*c) : 0;
    const auto vd = in_tk ? static_cast<std::int64_t>(tkrzw::StrToIntBigEndian(d)) : 0;
    if (va != m_inc[k] || vb != m_put[k] || vc != m_lm[k] || vd != m_tk[k]) die("a counter holds a wrong value after increment");
    kv_total += va, put_total += vb, lm_total += vc, tk_total += vd;
  }
  mdb_txn_abort(rt);
  const auto want = static_cast<std::int64_t>(ops);
  if (kv_total != want || put_total != want || lm_total != want || tk_total != want) die("counter totals differ from the ops done");
  report("increment (" + std::to_string(ops) + " ops, " + std::to_string(kPool) + " counters, totals verified)", cs, ns,
         {{"increment/put", 0, 1}, {"vs lmdb", 0, 2}, {"vs tkrzw", 0, 3}}, out);
}

// 2. compare_exchange in a CAS-increment loop: the client keeps the last value
// it saw of each counter as the expected one (with one writer the first try
// must succeed: a failure is a wrong answer). kvstore compare_exchange, Tkrzw
// CompareExchange, LMDB one write transaction (get, compare, put, commit).
void bench_cas(const fs::path& dir, std::size_t ops, std::uint64_t seed, nlohmann::ordered_json& out) {
  const auto keys = pool_keys("cas:");
  const auto pick = random_picks(ops, seed + 1);
  kvstore::Store kv = open_kv(dir / "coord-cas.kv");
  LmdbFile lm(dir / "coord-cas.mdb", kCoordMap);
  tkrzw::HashDBM tk;
  open_tkrzw(tk, dir / "coord-cas.tkh");
  {  // every counter starts at "0" (untimed)
    MDB_txn* t = lm.begin();
    for (const auto& k : keys) {
      kv.put(k, "0");
      lm.put(t, k, "0");
      if (tk.Set(k, "0") != tkrzw::Status::SUCCESS) die("tkrzw set");
    }
    LmdbFile::commit(t);
  }
  std::vector<std::int64_t> m_kv(kPool), m_lm(kPool), m_tk(kPool);
  const std::vector<Contender> cs{
      {"kvstore compare_exchange",
       [&](std::size_t i) {
         const auto k = pick[i];
         const std::string expected = std::to_string(m_kv[k]), desired = std::to_string(m_kv[k] + 1);
         if (!kv.compare_exchange(keys[k], expected, desired)) die("kvstore compare_exchange failed with one writer");
         ++m_kv[k];
       }},
      {"lmdb txn (get, compare, put, commit)",
       [&](std::size_t i) {
         const auto k = pick[i];
         const std::string expected = std::to_string(m_lm[k]), desired = std::to_string(m_lm[k] + 1);
         MDB_txn* t = lm.begin();
         const auto cur = lm.get(t, keys[k]);
         if (!cur || *cur != expected) die("lmdb compare failed with one writer");
         lm.put(t, keys[k], desired);
         LmdbFile::commit(t);
         ++m_lm[k];
       }},
      {"tkrzw CompareExchange",
       [&](std::size_t i) {
         const auto k = pick[i];
         const std::string expected = std::to_string(m_tk[k]), desired = std::to_string(m_tk[k] + 1);
         if (tk.CompareExchange(keys[k], expected, desired) != tkrzw::Status::SUCCESS) {
           die("tkrzw CompareExchange failed with one writer");
         }
         ++m_tk[k];
       }},
  };
  const auto ns = interleave(cs, ops);
  std::int64_t totals[3] = {0, 0, 0};
  MDB_txn* rt = lm.begin(MDB_RDONLY);
  for (std::size_t k = 0; k < kPool; ++k) {
    std::string d;
    const auto a = kv.get(keys[k]);
    const auto b = lm.get(rt, keys[k]);
    if (!a || !b || tk.Get(keys[k], &d) != tkrzw::Status::SUCCESS) die("a CAS counter vanished");
    if (parse_i64(*a) != m_kv[k] || parse_i64(*b) != m_lm[k] || parse_i64(d) != m_tk[k]) die("a CAS counter holds a wrong value");
    totals[0] += m_kv[k], totals[1] += m_lm[k], totals[2] += m_tk[k];
  }
  mdb_txn_abort(rt);
  for (const auto t : totals) {
    if (t != static_cast<std::int64_t>(ops)) die("CAS counter totals differ from the ops done");
  }
  // A stale expected value must fail, and change nothing.
  const std::string stale = std::to_string(m_kv[0] + 7);
  if (kv.compare_exchange(keys[0], stale, "x")) die("kvstore compare_exchange succeeded on a wrong expected value");
  if (tk.CompareExchange(keys[0], stale, "x") == tkrzw::Status::SUCCESS) die("tkrzw CompareExchange succeeded on a wrong value");
  if (kv.get(keys[0]) != std::to_string(m_kv[0])) die("a failed compare_exchange changed the value");
  report("compare_exchange, CAS-increment loop (" + std::to_string(ops) + " ops, " + std::to_string(kPool) +
             " counters, expected value cached by the client, totals verified)",
         cs, ns, {{"vs lmdb", 0, 1}, {"vs tkrzw", 0, 2}}, out);
}

// Tkrzw record processors for the transfer: add `delta` to a decimal balance
// (remembering what was there), or set a value.
class TkAdd final : public tkrzw::DBM::RecordProcessor {
 public:
  std::int64_t delta = 0;
  std::optional<std::int64_t> seen;
  std::string_view ProcessFull(std::string_view, std::string_view value) override {
    seen = parse_i64(value);
    out_ = std::to_string(*seen + delta);
    return out_;
  }
  std::string_view ProcessEmpty(std::string_view) override {
    seen.reset();
    return NOOP;
  }

 private:
  std::string out_;
};

class TkSet final : public tkrzw::DBM::RecordProcessor {
 public:
  std::string_view value;
  std::string_view ProcessFull(std::string_view, std::string_view) override { return value; }
  std::string_view ProcessEmpty(std::string_view) override { return value; }
};

// 3. A transfer between two of kPool accounts: read both balances, write both,
// and put a log record under each account (4 keys, one atomic change).
// kvstore transact; kvstore apply of the same 4 writes without the reads (the
// floor transact is measured against); LMDB one write transaction; Tkrzw
// ProcessMulti (it has no transaction: ProcessMulti locks the records' hash
// buckets for the call, so other threads see all or none of it, but a crash
// halfway can keep half of it and it is one process only).
void bench_transfer(const fs::path& dir, std::size_t ops, std::size_t value_size, std::uint64_t seed,
                    nlohmann::ordered_json& out) {
  const auto accounts = pool_keys("acct:");
  const auto logs = pool_keys("log:");
  const auto from = random_picks(ops, seed + 2);
  auto to = random_picks(ops, seed + 3);
  for (std::size_t i = 0; i < ops; ++i) {
    if (to[i] == from[i]) to[i] = static_cast<std::uint32_t>((to[i] + 1) % kPool);
  }
  auto amount = [](std::size_t i) { return static_cast<std::int64_t>(1 + i % 100); };
  auto log_value = [value_size](std::size_t i) {
    std::string v = "transfer " + std::to_string(i);
    v.resize(std::max(value_size, v.size()), '.');
    return v;
  };
  kvstore::Store kv = open_kv(dir / "coord-transfer.kv");
  kvstore::Store kva = open_kv(dir / "coord-transfer-apply.kv");
  LmdbFile lm(dir / "coord-transfer.mdb", kCoordMap);
  tkrzw::HashDBM tk;
  open_tkrzw(tk, dir / "coord-transfer.tkh");
  {
    const std::string opening = std::to_string(kOpening);
    MDB_txn* t = lm.begin();
    for (const auto& a : accounts) {
      kv.put(a, opening);
      kva.put(a, opening);
      lm.put(t, a, opening);
      if (tk.Set(a, opening) != tkrzw::Status::SUCCESS) die("tkrzw set");
    }
    LmdbFile::commit(t);
  }
  // Balances each store must hold, and the last transfer logged under each account.
  struct Model {
    std::vector<std::int64_t> balance = std::vector<std::int64_t>(kPool, kOpening);
    std::vector<std::size_t> last = std::vector<std::size_t>(kPool, SIZE_MAX);
    void apply(std::size_t i, std::uint32_t a, std::uint32_t b, std::int64_t amt) {
      balance[a] -= amt, balance[b] += amt;
      last[a] = last[b] = i;
    }
  };
  Model m_kv, m_kva, m_lm, m_tk;
  TkAdd debit, credit;
  TkSet log_a, log_b;
  const std::vector<Contender> cs{
      {"kvstore transact",
       [&](std::size_t i) {
         const auto a = from[i], b = to[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);
         kv.transact([&](kvstore::Transaction& tx) {
           const auto x = tx.get(accounts[a]), y = tx.get(accounts[b]);
           if (!x || !y || parse_i64(*x) != m_kv.balance[a] || parse_i64(*y) != m_kv.balance[b]) {
             die("kvstore transact read a wrong balance");
           }
           tx.put(accounts[a], std::to_string(parse_i64(*x) - amt));
           tx.put(accounts[b], std::to_string(parse_i64(*y) + amt));
           tx.put(logs[a], log);
           tx.put(logs[b], log);
         });
         m_kv.apply(i, a, b, amt);
       }},
      {"kvstore apply (same 4 writes, no reads)",
       [&](std::size_t i) {
         const auto a = from[i], b = to[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);
         kva.apply({{accounts[a], std::to_string(m_kva.balance[a] - amt), false},
                    {accounts[b], std::to_string(m_kva.balance[b] + amt), false},
                    {logs[a], log, false},
                    {logs[b], log, false}});
         m_kva.apply(i, a, b, amt);
       }},
      {"lmdb write txn",
       [&](std::size_t i) {
         const auto a = from[i], b = to[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);
         MDB_txn* t = lm.begin();
         const auto x = lm.get(t, accounts[a]), y = lm.get(t, accounts[b]);
         if (!x || !y || parse_i64(*x) != m_lm.balance[a] || parse_i64(*y) != m_lm.balance[b]) {
           die("lmdb read a wrong balance");
         }
         const std::int64_t nx = parse_i64(*x) - amt, ny = parse_i64(*y) + amt;
         lm.put(t, accounts[a], std::to_string(nx));
         lm.put(t, accounts[b], std::to_string(ny));
         lm.put(t, logs[a], log);
         lm.put(t, logs[b], log);
         LmdbFile::commit(t);
         m_lm.apply(i, a, b, amt);
       }},
      {"tkrzw ProcessMulti",
       [&](std::size_t i) {
         const auto a = from[i], b = to[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);
         debit.delta = -amt, credit.delta = amt;
         log_a.value = log, log_b.value = log;
         const std::vector<std::pair<std::string_view, tkrzw::DBM::RecordProcessor*>> procs{
             {accounts[a], &debit}, {accounts[b], &credit}, {logs[a], &log_a}, {logs[b], &log_b}};
         if (tk.ProcessMulti(procs, true) != tkrzw::Status::SUCCESS) die("tkrzw ProcessMulti failed");
         if (debit.seen != m_tk.balance[a] || credit.seen != m_tk.balance[b]) die("tkrzw read a wrong balance");
         m_tk.apply(i, a, b, amt);
       }},
  };
  const auto ns = interleave(cs, ops);
  // Every balance and log record of every store against its model; money is conserved.
  MDB_txn* rt = lm.begin(MDB_RDONLY);
  auto check = [&](const char* who, const Model& m, const std::function<std::optional<std::string>(const std::string&)>& get) {
    std::int64_t total = 0;
    for (std::size_t k = 0; k < kPool; ++k) {
      const auto v = get(accounts[k]);
      if (!v || parse_i64(*v) != m.balance[k]) die(std::string(who) + ": wrong balance after the transfers");
      total += m.balance[k];
      const auto l = get(logs[k]);
      if (m.last[k] == SIZE_MAX ? l.has_value() : l != log_value(m.last[k])) die(std::string(who) + ": wrong log record");
    }
    if (total != kOpening * static_cast<std::int64_t>(kPool)) die(std::string(who) + ": money was not conserved");
  };
  check("kvstore transact", m_kv, [&](const std::string& k) { return kv.get(k); });
  check("kvstore apply", m_kva, [&](const std::string& k) { return kva.get(k); });
  check("lmdb", m_lm, [&](const std::string& k) -> std::optional<std::string> {
    const auto v = lm.get(rt, k);
    return v ? std::optional<std::string>(*v) : std::nullopt;
  });
  check("tkrzw", m_tk, [&](const std::string& k) -> std::optional<std::string> {
    std::string v;
    return tk.Get(k, &v) == tkrzw::Status::SUCCESS ? std::optional<std::string>(v) : std::nullopt;
  });
  mdb_txn_abort(rt);
  // A transaction whose callback throws writes nothing.
  const auto before = kv.change_count();
  try {
    kv.transact([&](kvstore::Transaction& tx) {
      tx.put(accounts[0], "0");
      throw std::runtime_error("abandon");
    });
  } catch (const std::runtime_error&) {
  }
  if (kv.change_count() != before || kv.get(accounts[0]) != std::to_string(m_kv.balance[0])) die("an abandoned transact wrote");
  report("transfer: 4-key transaction, read 2 balances + write 2 + 2 log puts (" + std::to_string(ops) + " ops, " +
             std::to_string(kPool) + " accounts, balances and logs verified)",
         cs, ns, {{"transact/apply", 0, 1}, {"vs lmdb", 0, 2}, {"vs tkrzw", 0, 3}}, out);
}

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

// Every coordination workload, each printing its own figures.
}  // namespace

void run_coordination(const fs::path& dir, std::size_t ops, std::size_t value_size, std::uint64_t seed,
                      nlohmann::ordered_json& out) {
  std::printf("\ncoordination calls (kvstore Sync::none; lmdb NOSYNC|WRITEMAP, one write txn per op; tkrzw HashDBM)\n");
  bench_increment(dir, ops, seed, out["increment"]);
  bench_cas(dir, ops, seed, out["compare_exchange"]);
  bench_transfer(dir, ops, value_size, seed, out["transfer"]);
  bench_parallel_increment(dir, ops, seed, out["parallel_increment"]);
  bench_wakeup(dir, 1000, out["wakeup"]);
}

