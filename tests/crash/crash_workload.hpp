// The crash harness's workload (crash_test.cpp, lock_owner_test.cpp,
// power_cut_test.cpp): a child process runs a deterministic workload (puts,
// erases, batches, compactions, large values that force grows) and reports
// each finished operation through a pipe. After the child dies the parent
// replays the acknowledged operations into a std::map model and checks the
// store against it: every acknowledged write is there, nothing else is, and
// the one operation in flight at the kill either happened entirely or not at all.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <kvstore/store.hpp>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>


#include "../support/temp_dir.hpp"

namespace fs = std::filesystem;

namespace crash_harness {

using kvstore::test::TempDir;

inline int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

// ------------------------------------------------------------------ workload

struct Change {
  std::string key;
  std::optional<std::string> value;  // nullopt: erase
};

struct Op {
  enum Kind { single, batch, transaction, increment, compact } kind = single;
  std::vector<Change> changes;  // one for single and increment, several for batch and transaction
  std::int64_t delta = 0;       // increment
};

inline std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  return x;
}

inline std::string key_of(std::uint64_t j) {
  std::string k = "key" + std::to_string(j);
  if (j % 7 == 0) k += std::string("\0bin", 4);  // binary keys too
  return k;
}

inline std::string value_of(std::uint64_t seed, std::uint64_t i, std::size_t len) {
  std::string v(len, '\0');
  std::uint64_t x = mix(seed, i);
  for (std::size_t n = 0; n < len; ++n) v[n] = static_cast<char>((x >> ((n % 8) * 8)) + n);
  return v;
}

// Operation i of the workload with this seed: the child performs it, the
// parent regenerates it to know what was acknowledged.
inline Op make_op(std::uint64_t seed, std::uint64_t i) {
  const std::uint64_t r = mix(seed, i);
  const std::uint64_t pick = r % 40;
  auto key = [&](std::uint64_t salt) { return key_of(mix(r, salt) % 500); };
  Op op;
  if (pick < 24) {
    op.changes.push_back({key(1), value_of(seed, i, (r >> 20) % 300)});
  } else if (pick < 26) {
    op.changes.push_back({key(1), value_of(seed, i, 8192 + (r >> 20) % 40000)});  // forces grows
  } else if (pick < 32) {
    op.changes.push_back({key(1), std::nullopt});
  } else if (pick == 38) {
    // Counters of their own: every other key holds bytes that are no number.
    op.kind = Op::increment;
    op.changes.push_back({"counter" + std::to_string(r % 5), std::nullopt});
    op.delta = static_cast<std::int64_t>((r >> 8) % 1000) - 500;
  } else if (pick < 39) {
    // Batches through apply() and through transact(): one batch in the file either way.
    op.kind = pick < 35 ? Op::batch : Op::transaction;
    const std::uint64_t n = 2 + (r >> 24) % 7;
    for (std::uint64_t b = 0; b < n; ++b) {
      if (mix(r, b + 100) % 4 == 0) {
        op.changes.push_back({key(b + 10), std::nullopt});
      } else {
        op.changes.push_back({key(b + 10), value_of(seed, i * 16 + b, mix(r, b) % 200)});
      }
    }
  } else {
    op.kind = Op::compact;
  }
  return op;
}

inline void perform(kvstore::Store& s, const Op& op) {
  switch (op.kind) {
    case Op::single:
      if (op.changes[0].value) {
        s.put(op.changes[0].key, *op.changes[0].value);
      } else {
        (void)s.erase(op.changes[0].key);
      }
      break;
    case Op::batch: {
      std::vector<kvstore::BatchOp> ops;
      for (const Change& c : op.changes) ops.push_back({c.key, c.value.value_or(""), !c.value});
      s.apply(ops);
      break;
    }
    case Op::transaction:
      s.transact([&](kvstore::Transaction& t) {
        for (const Change& c : op.changes) {
          if (c.value) {
            t.put(c.key, *c.value);
          } else {
            (void)t.erase(c.key);
          }
        }
      });
      break;
    case Op::increment:
      (void)s.increment(op.changes[0].key, op.delta);
      break;
    case Op::compact:
      s.compact();
      break;
  }
}

using Model = std::map<std::string, std::string>;

inline void apply_to(Model& m, const Op& op) {
  if (op.kind == Op::increment) {
    std::string& v = m[op.changes[0].key];
    v = std::to_string((v.empty() ? 0 : std::stoll(v)) + op.delta);
    return;
  }
  for (const Change& c : op.changes) {
    if (c.value) {
      m[c.key] = *c.value;
    } else {
      m.erase(c.key);
    }
  }
}

inline kvstore::Options small_store(kvstore::Sync sync = kvstore::Sync::none) {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.sync = sync;
  o.max_dead_fraction = 0.1;  // reclaiming often, so that kills land inside it
  o.min_dead_bytes = 0;
  o.lock_timeout = std::chrono::milliseconds(20'000);
  return o;
}

// Runs ops [first, first + count) in a child that acknowledges each through
// the returned pipe. The child opens the store itself.
struct Child {
  pid_t pid = -1;
  int acks = -1;
};

inline Child start_writer(const std::string& path, std::uint64_t seed, std::uint64_t first,
                   std::uint64_t count, const std::string& crash_at) {
  int fds[2];
  if (::pipe(fds) != 0) std::abort();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (!crash_at.empty()) ::setenv("KVSTORE_CRASH_AT", crash_at.c_str(), 1);
    try {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      for (std::uint64_t i = first; i < first + count; ++i) {
        perform(s, make_op(seed, i));
        const std::uint64_t done = i;
        if (::write(fds[1], &done, sizeof done) != sizeof done) ::_exit(5);
      }
    } catch (const std::exception& e) {
      std::fprintf(stderr, "writer: %s\n", e.what());
      ::_exit(3);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  return {pid, fds[0]};
}

// Waits for the child and returns the last acknowledged op (or first - 1) and
// whether it was killed.
struct Outcome {
  std::int64_t last_ack;
  bool killed;
  int status;
};

inline Outcome finish(const Child& c, std::uint64_t first) {
  std::int64_t last = static_cast<std::int64_t>(first) - 1;
  std::uint64_t v = 0;
  while (::read(c.acks, &v, sizeof v) == sizeof v) last = static_cast<std::int64_t>(v);
  ::close(c.acks);
  int status = 0;
  ::waitpid(c.pid, &status, 0);
  return {last, WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL, status};
}

// Checks `s` against the model, given that `in_flight` may or may not have
// happened (entirely). Updates the model to what the store shows.
inline void verify(const kvstore::Store& s, Model& model, const std::optional<Op>& in_flight,
            const std::string& where) {
  Model after = model;
  bool may_have_happened = false;
  if (in_flight && in_flight->kind != Op::compact) {
    apply_to(after, *in_flight);
    may_have_happened = true;
  }
  // Which of the two states does the store show for the in-flight keys?
  bool matches_before = true;
  bool matches_after = may_have_happened;
  if (in_flight) {
    for (const Change& c : in_flight->changes) {
      const std::optional<std::string> got = s.get(c.key);
      const auto b = model.find(c.key);
      const auto a = after.find(c.key);
      const std::optional<std::string> want_b = b == model.end() ? std::nullopt : std::optional(b->second);
      const std::optional<std::string> want_a = a == after.end() ? std::nullopt : std::optional(a->second);
      matches_before = matches_before && got == want_b;
      matches_after = matches_after && got == want_a;
    }
  }
  ASSERT_TRUE(matches_before || matches_after)
      << where << ": the operation in flight was applied partially";
  if (!matches_before) model = after;
  // Every acknowledged key holds its value, and nothing else is stored.
  std::size_t wrong = 0;
  for (const auto& [k, v] : model) {
    const std::optional<std::string> got = s.get(k);
    if (got != v) ++wrong;
  }
  EXPECT_EQ(wrong, 0u) << where << ": acknowledged writes lost or wrong";
  EXPECT_EQ(s.size(), model.size()) << where;
  std::size_t extra = 0;
  s.for_each([&](std::string_view k, std::string_view) {
    if (model.find(std::string(k)) == model.end()) ++extra;
    return true;
  });
  EXPECT_EQ(extra, 0u) << where << ": keys that were never acknowledged";
  const std::vector<std::string> problems = s.check();
  EXPECT_TRUE(problems.empty()) << where << ": check: " << (problems.empty() ? "" : problems[0]);
}

// One cycle: a writer runs from op `next`, dies (crash point or kill after
// `kill_after_us`), and the store is verified, through `attached` if given
// (a handle that stayed open all along) and through a fresh open.
inline void cycle(const std::string& path, std::uint64_t seed, std::uint64_t& next, Model& model,
           const std::string& crash_at, int kill_after_us, kvstore::Store* attached,
           int* reached) {
  const std::uint64_t count = 400;
  Child c = start_writer(path, seed, next, count, crash_at);
  if (kill_after_us >= 0) {
    std::this_thread::sleep_for(std::chrono::microseconds(kill_after_us));
    ::kill(c.pid, SIGKILL);
  }
  const Outcome o = finish(c, next);
  ASSERT_TRUE(o.killed || (WIFEXITED(o.status) && WEXITSTATUS(o.status) == 0))
      << "writer failed with status " << o.status;
  for (std::uint64_t i = next; static_cast<std::int64_t>(i) <= o.last_ack; ++i) {
    apply_to(model, make_op(seed, i));
  }
  std::optional<Op> in_flight;
  if (o.killed) in_flight = make_op(seed, static_cast<std::uint64_t>(o.last_ack + 1));
  if (o.killed && reached != nullptr) ++*reached;
  const std::string where = "seed " + std::to_string(seed) + " op " + std::to_string(o.last_ack + 1) +
                            (crash_at.empty() ? "" : " at " + crash_at);
  if (attached != nullptr) {
    verify(*attached, model, in_flight, where + " (attached handle)");
    in_flight.reset();  // resolved by the first verification
  }
  {
    kvstore::Store fresh = kvstore::Store::open(path, small_store());
    verify(fresh, model, in_flight, where + " (fresh open)");
  }
  next = static_cast<std::uint64_t>(o.last_ack + 2);
}

}  // namespace crash_harness

using namespace crash_harness;  // NOLINT: the tests are written against it

