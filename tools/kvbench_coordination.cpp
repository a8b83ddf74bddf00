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

#include "kvbench_contenders.hpp"
#include "kvbench_coordination.hpp"
#include "kvbench_die.hpp"
#include "kvbench_slices.hpp"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace kvbench_coord {
namespace {

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

// Balances a store must hold, and the last transfer logged under each account.
struct TransferModel {
  std::vector<std::int64_t> balance = std::vector<std::int64_t>(kPool, kOpening);
  std::vector<std::size_t> last = std::vector<std::size_t>(kPool, SIZE_MAX);
  void apply(std::size_t i, std::uint32_t a, std::uint32_t b, std::int64_t amt) {
    balance[a] -= amt, balance[b] += amt;
    last[a] = last[b] = i;
  }
};

// The transfer workload's stores, each funded alike, its picks and a model per store.
class Transfer {
 public:
  Transfer(const fs::path& dir, std::size_t ops, std::size_t value_size, std::uint64_t seed)
      : value_size_(value_size), from_(random_picks(ops, seed + 2)), to_(random_picks(ops, seed + 3)),
        kv_(open_kv(dir / "coord-transfer.kv")), kva_(open_kv(dir / "coord-transfer-apply.kv")),
        lm_(dir / "coord-transfer.mdb", kCoordMap) {
    for (std::size_t i = 0; i < ops; ++i) {
      if (to_[i] == from_[i]) to_[i] = static_cast<std::uint32_t>((to_[i] + 1) % kPool);
    }
    open_tkrzw(tk_, dir / "coord-transfer.tkh");
    const std::string opening = std::to_string(kOpening);
    MDB_txn* t = lm_.begin();
    for (const auto& a : accounts_) {
      kv_.put(a, opening);
      kva_.put(a, opening);
      lm_.put(t, a, opening);
      if (tk_.Set(a, opening) != tkrzw::Status::SUCCESS) die("tkrzw set");
    }
    LmdbFile::commit(t);
  }

  std::vector<Contender> contenders();
  // Every balance and log record of every store against its model; money is
  // conserved; and a transaction whose callback throws writes nothing.
  void verify();

 private:
  static std::int64_t amount(std::size_t i) { return static_cast<std::int64_t>(1 + i % 100); }
  [[nodiscard]] std::string log_value(std::size_t i) const {
    std::string v = "transfer " + std::to_string(i);
    v.resize(std::max(value_size_, v.size()), '.');
    return v;
  }
  void kvstore_transact(std::size_t i);
  void lmdb_transfer(std::size_t i);
  void check(const char* who, const TransferModel& m,
             const std::function<std::optional<std::string>(const std::string&)>& get) const;

  std::size_t value_size_;
  std::vector<std::string> accounts_ = pool_keys("acct:");
  std::vector<std::string> logs_ = pool_keys("log:");
  std::vector<std::uint32_t> from_;
  std::vector<std::uint32_t> to_;
  kvstore::Store kv_;
  kvstore::Store kva_;
  LmdbFile lm_;
  tkrzw::HashDBM tk_;
  TransferModel m_kv_, m_kva_, m_lm_, m_tk_;
  TkAdd debit_, credit_;
  TkSet log_a_, log_b_;
};

void Transfer::kvstore_transact(std::size_t i) {
  const auto a = from_[i], b = to_[i];
  const auto amt = amount(i);
  const std::string log = log_value(i);
  kv_.transact([&](kvstore::Transaction& tx) {
    const auto x = tx.get(accounts_[a]), y = tx.get(accounts_[b]);
    if (!x || !y || parse_i64(*x) != m_kv_.balance[a] || parse_i64(*y) != m_kv_.balance[b]) {
      die("kvstore transact read a wrong balance");
    }
    tx.put(accounts_[a], std::to_string(parse_i64(*x) - amt));
    tx.put(accounts_[b], std::to_string(parse_i64(*y) + amt));
    tx.put(logs_[a], log);
    tx.put(logs_[b], log);
  });
  m_kv_.apply(i, a, b, amt);
}

void Transfer::lmdb_transfer(std::size_t i) {
  const auto a = from_[i], b = to_[i];
  const auto amt = amount(i);
  const std::string log = log_value(i);
  MDB_txn* t = lm_.begin();
  const auto x = lm_.get(t, accounts_[a]), y = lm_.get(t, accounts_[b]);
  if (!x || !y || parse_i64(*x) != m_lm_.balance[a] || parse_i64(*y) != m_lm_.balance[b]) {
    die("lmdb read a wrong balance");
  }
  const std::int64_t nx = parse_i64(*x) - amt, ny = parse_i64(*y) + amt;
  lm_.put(t, accounts_[a], std::to_string(nx));
  lm_.put(t, accounts_[b], std::to_string(ny));
  lm_.put(t, logs_[a], log);
  lm_.put(t, logs_[b], log);
  LmdbFile::commit(t);
  m_lm_.apply(i, a, b, amt);
}

std::vector<Contender> Transfer::contenders() {
  return {
      {"kvstore transact", [this](std::size_t i) { kvstore_transact(i); }},
      {"kvstore apply (same 4 writes, no reads)",
       [this](std::size_t i) {
         const auto a = from_[i], b = to_[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);
         kva_.apply({{accounts_[a], std::to_string(m_kva_.balance[a] - amt), false},
                     {accounts_[b], std::to_string(m_kva_.balance[b] + amt), false},
                     {logs_[a], log, false},
                     {logs_[b], log, false}});
         m_kva_.apply(i, a, b, amt);
       }},
      {"lmdb write txn", [this](std::size_t i) { lmdb_transfer(i); }},
      {"tkrzw ProcessMulti",
       [this](std::size_t i) {
         const auto a = from_[i], b = to_[i];
         const auto amt = amount(i);
         const std::string log = log_value(i);  // viewed by the processors until ProcessMulti returns
         debit_.delta = -amt, credit_.delta = amt;
         log_a_.value = log, log_b_.value = log;
         const std::vector<std::pair<std::string_view, tkrzw::DBM::RecordProcessor*>> procs{
             {accounts_[a], &debit_}, {accounts_[b], &credit_}, {logs_[a], &log_a_}, {logs_[b], &log_b_}};
         if (tk_.ProcessMulti(procs, true) != tkrzw::Status::SUCCESS) die("tkrzw ProcessMulti failed");
         if (debit_.seen != m_tk_.balance[a] || credit_.seen != m_tk_.balance[b]) die("tkrzw read a wrong balance");
         m_tk_.apply(i, a, b, amt);
       }},
  };
}

void Transfer::check(const char* who, const TransferModel& m,
                     const std::function<std::optional<std::string>(const std::string&)>& get) const {
  std::int64_t total = 0;
  for (std::size_t k = 0; k < kPool; ++k) {
    const auto v = get(accounts_[k]);
    if (!v || parse_i64(*v) != m.balance[k]) die(std::string(who) + ": wrong balance after the transfers");
    total += m.balance[k];
    const auto l = get(logs_[k]);
    if (m.last[k] == SIZE_MAX ? l.has_value() : l != log_value(m.last[k])) die(std::string(who) + ": wrong log record");
  }
  if (total != kOpening * static_cast<std::int64_t>(kPool)) die(std::string(who) + ": money was not conserved");
}

void Transfer::verify() {
  MDB_txn* rt = lm_.begin(MDB_RDONLY);
  check("kvstore transact", m_kv_, [&](const std::string& k) { return kv_.get(k); });
  check("kvstore apply", m_kva_, [&](const std::string& k) { return kva_.get(k); });
  check("lmdb", m_lm_, [&](const std::string& k) -> std::optional<std::string> {
    const auto v = lm_.get(rt, k);
    return v ? std::optional<std::string>(*v) : std::nullopt;
  });
  check("tkrzw", m_tk_, [&](const std::string& k) -> std::optional<std::string> {
    std::string v;
    return tk_.Get(k, &v) == tkrzw::Status::SUCCESS ? std::optional<std::string>(v) : std::nullopt;
  });
  mdb_txn_abort(rt);
  const auto before = kv_.change_count();
  try {
    kv_.transact([&](kvstore::Transaction& tx) {
      tx.put(accounts_[0], "0");
      throw std::runtime_error("abandon");
    });
  } catch (const std::runtime_error&) {
  }
  if (kv_.change_count() != before || kv_.get(accounts_[0]) != std::to_string(m_kv_.balance[0])) {
    die("an abandoned transact wrote");
  }
}

// 3. A transfer between two of kPool accounts: read both balances, write both,
// and put a log record under each account (4 keys, one atomic change).
// kvstore transact; kvstore apply of the same 4 writes without the reads (the
// floor transact is measured against); LMDB one write transaction; Tkrzw
// ProcessMulti (it has no transaction: ProcessMulti locks the records' hash
// buckets for the call, so other threads see all or none of it, but a crash
// halfway can keep half of it and it is one process only).
void bench_transfer(const fs::path& dir, std::size_t ops, std::size_t value_size, std::uint64_t seed,
                    nlohmann::ordered_json& out) {
  Transfer t(dir, ops, value_size, seed);
  const std::vector<Contender> cs = t.contenders();
  const auto ns = interleave(cs, ops);
  t.verify();
  report("transfer: 4-key transaction, read 2 balances + write 2 + 2 log puts (" + std::to_string(ops) + " ops, " +
             std::to_string(kPool) + " accounts, balances and logs verified)",
         cs, ns, {{"transact/apply", 0, 1}, {"vs lmdb", 0, 2}, {"vs tkrzw", 0, 3}}, out);
}

}  // namespace
}  // namespace kvbench_coord

// Every coordination workload, each printing its own figures.

void run_coordination(const fs::path& dir, std::size_t ops, std::size_t value_size, std::uint64_t seed,
                      nlohmann::ordered_json& out) {
  std::printf("\ncoordination calls (kvstore Sync::none; lmdb NOSYNC|WRITEMAP, one write txn per op; tkrzw HashDBM)\n");
  using namespace kvbench_coord;
  bench_increment(dir, ops, seed, out["increment"]);
  bench_cas(dir, ops, seed, out["compare_exchange"]);
  bench_transfer(dir, ops, value_size, seed, out["transfer"]);
  bench_parallel_increment(dir, ops, seed, out["parallel_increment"]);
  bench_wakeup(dir, 1000, out["wakeup"]);
}

