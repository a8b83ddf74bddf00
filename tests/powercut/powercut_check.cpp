// The checker of the power-cut test (powercut_test.sh): one crash image, as
// the machine would find it after a reboot. It opens the store the normal way
// (default Options: no repair, no special flag), runs check(), and compares
// the contents with the writer's history (powercut::Sequence):
//   - prefix: is there an n such that the store holds exactly the result of
//     ops [0, n)? (a batch or transaction is one op: all of it or none);
//   - acknowledged: ACKED ops had returned before the clone was taken; with
//     Sync::always every one of them must be in (n >= ACKED).
// A refused image is then repaired (Store::repair, as kvtool check --repair
// would) and compared again: information only, not a goal.
//
//   powercut_check STORE always|none LINES_AT_CLONE FINAL_LINES
//
// LINES_AT_CLONE / FINAL_LINES: the writer log's line count before the clone
// and after the writer was killed ("opened" + one line per acknowledged op).
// Prints one line of key=value fields; exit 0 when the image meets the goal
// of its mode, 1 when not, 2 on a usage error.
#include <sys/stat.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <kvstore/store.hpp>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "format.hpp"
#include "powercut_ops.hpp"

namespace {

using Contents = std::unordered_map<std::string, std::size_t>;  // key -> hash of the value

std::size_t value_hash(std::string_view v) {
  return std::hash<std::string_view>{}(v);
}

struct Verdict {
  bool prefix = false;           // some n makes the store equal to ops [0, n)
  std::uint64_t lo = 0, hi = 0;  // the range of such n (erases of absent keys change nothing)
  std::uint64_t best_n = 0;      // otherwise: the n with the fewest differing keys
  std::size_t best_diff = 0;
  // Keys whose acknowledged state (after ops [0, ACKED)) the store does not
  // hold, and which no later op wrote: acknowledged writes lost or undone.
  std::size_t lost_keys = 0;
};

// Replays the history once, keeping the number of keys on which the model
// after n ops and the store differ: O(total size of the history).
Verdict compare(const Contents& store, std::uint64_t acked, std::uint64_t ops) {
  std::unordered_map<std::string, bool> same;  // keys written so far: model == store?
  std::size_t diff = store.size();             // before any op the model is empty
  Verdict v;
  v.best_diff = diff + 1;
  std::vector<std::string> differ_at_acked;
  std::unordered_set<std::string> written_later;
  powercut::Sequence seq;
  for (std::uint64_t n = 0;; ++n) {
    if (diff == 0) {
      if (!v.prefix) v.lo = n;
      v.prefix = true;
      v.hi = n;
    }
    if (diff < v.best_diff) {
      v.best_diff = diff;
      v.best_n = n;
    }
    if (n == acked) {
      for (const auto& [k, h] : store) {
        if (same.find(k) == same.end()) differ_at_acked.push_back(k);
      }
      for (const auto& [k, eq] : same) {
        if (!eq) differ_at_acked.push_back(k);
      }
    }
    if (n == ops) break;
    const powercut::Op op = seq.next();
    for (const powercut::Write& w : op.writes) {
      const auto it = store.find(w.key);
      const bool now =
          w.value ? (it != store.end() && it->second == value_hash(*w.value)) : it == store.end();
      const auto [slot, fresh] = same.try_emplace(w.key, it == store.end());
      if (slot->second && !now) ++diff;
      if (!slot->second && now) --diff;
      slot->second = now;
      if (n >= acked) written_later.insert(w.key);
    }
  }
  for (const std::string& k : differ_at_acked) {
    if (written_later.count(k) == 0) ++v.lost_keys;
  }
  return v;
}

std::string uuid_text(const unsigned char* id) {
  std::string s;
  char b[3];
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) s += '-';
    std::snprintf(b, sizeof b, "%02x", id[i]);
    s += b;
  }
  return s;
}

// No spaces, so that the line stays key=value fields a shell can split.
std::string field(std::string s) {
  for (char& c : s) {
    if (c == ' ' || c == '\n' || c == '\t') c = '_';
  }
  return s;
}

struct Reading {
  std::vector<std::string> problems;
  std::uint64_t recoveries = 0;
  Verdict verdict;
};

Reading read_store(kvstore::Store& s, std::uint64_t acked, std::uint64_t ops) {
  Reading r;
  r.problems = s.check();
  r.recoveries = s.stats().recoveries;
  Contents contents;
  s.for_each([&](std::string_view k, std::string_view v) {
    contents.emplace(std::string(k), value_hash(v));
    return true;
  });
  r.verdict = compare(contents, acked, ops);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 5) {
    std::fprintf(stderr, "usage: powercut_check STORE always|none LINES_AT_CLONE FINAL_LINES\n");
    return 2;
  }
  const std::string path = argv[1];
  const bool always = std::string(argv[2]) == "always";
  const std::uint64_t lines = std::strtoull(argv[3], nullptr, 10);
  const std::uint64_t final_lines = std::strtoull(argv[4], nullptr, 10);
  const bool opened = lines >= 1;  // Store::open had returned before the clone
  const std::uint64_t acked = opened ? lines - 1 : 0;
  // The op in flight when the writer was killed may have reached the store.
  const std::uint64_t ops = final_lines >= 1 ? final_lines : 1;

  // What the library itself reads as the boot id (format.cpp), so that the
  // script can prove this run looks like another boot.
  std::printf("boot_id=%s opened=%d acked=%llu",
              uuid_text(kvstore::detail::current_boot_id()).c_str(), opened ? 1 : 0,
              static_cast<unsigned long long>(acked));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    // Default open would create an empty store here: say that it is missing instead.
    std::printf(" exists=0 ok=%d\n", opened ? 0 : 1);
    return opened ? 1 : 0;
  }
  std::printf(" exists=1");

  bool ok = true;
  try {
    kvstore::Store s = kvstore::Store::open(path);
    const Reading r = read_store(s, acked, ops);
    const Verdict& v = r.verdict;
    const std::uint64_t missing = v.prefix && v.hi < acked ? acked - v.hi : 0;
    std::printf(" open=ok recoveries=%llu check=%s prefix=%d",
                static_cast<unsigned long long>(r.recoveries),
                r.problems.empty() ? "clean" : field(r.problems[0]).c_str(), v.prefix ? 1 : 0);
    if (v.prefix) {
      std::printf(" n=%llu..%llu missing_acked_ops=%llu", static_cast<unsigned long long>(v.lo),
                  static_cast<unsigned long long>(v.hi), static_cast<unsigned long long>(missing));
    } else {
      std::printf(" nearest_n=%llu differing_keys=%zu", static_cast<unsigned long long>(v.best_n),
                  v.best_diff);
    }
    std::printf(" lost_acked_keys=%zu", v.lost_keys);
    ok = r.problems.empty() && v.prefix;
    if (always) ok = ok && missing == 0 && v.lost_keys == 0;
  } catch (const std::exception& e) {
    ok = false;
    std::printf(" open=refused error=%s", field(e.what()).c_str());
    // Information only: does an explicit repair (kvtool check --repair) get it back?
    try {
      (void)kvstore::Store::repair(path);
      kvstore::Store s = kvstore::Store::open(path);
      const Reading r = read_store(s, acked, ops);
      const Verdict& v = r.verdict;
      std::printf(
          " repair=ok repair_check=%s repair_prefix=%d repair_n=%llu repair_lost_acked_keys=%zu",
          r.problems.empty() ? "clean" : "dirty", v.prefix ? 1 : 0,
          static_cast<unsigned long long>(v.prefix ? v.hi : v.best_n), v.lost_keys);
    } catch (const std::exception& e2) {
      std::printf(" repair=failed repair_error=%s", field(e2.what()).c_str());
    }
  }
  std::printf(" ok=%d\n", ok ? 1 : 0);
  return ok ? 0 : 1;
}
