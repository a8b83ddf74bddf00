// Crash-safety harness: kill -9 at random moments and at every named crash
// point, dead lock owners, a stalled consumer, and a simulated power cut.
//
// A child process runs a deterministic workload (puts, erases, batches,
// compactions, large values that force grows) and reports each finished
// operation through a pipe. After the child dies the parent replays the
// acknowledged operations into a std::map model and checks the store against
// it: every acknowledged write is there, nothing else is, and the one
// operation in flight at the kill either happened entirely or not at all.
//
// Environment: KVSTORE_CRASH_ITERATIONS (per crash point, default 100) and
// KVSTORE_KILL_CYCLES (random kills, default 200) size the runs; the soak
// test (label soak) uses KVSTORE_SOAK_CYCLES (default 10000).
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

namespace fs = std::filesystem;

namespace {

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::atoi(v) : fallback;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "kvcrash-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  [[nodiscard]] std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

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

std::uint64_t mix(std::uint64_t a, std::uint64_t b) {
  std::uint64_t x = a * 0x9E3779B97F4A7C15ULL ^ (b + 0x632BE59BD9B4E019ULL);
  x ^= x >> 31;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 29;
  return x;
}

std::string key_of(std::uint64_t j) {
  std::string k = "key" + std::to_string(j);
  if (j % 7 == 0) k += std::string("\0bin", 4);  // binary keys too
  return k;
}

std::string value_of(std::uint64_t seed, std::uint64_t i, std::size_t len) {
  std::string v(len, '\0');
  std::uint64_t x = mix(seed, i);
  for (std::size_t n = 0; n < len; ++n) v[n] = static_cast<char>((x >> ((n % 8) * 8)) + n);
  return v;
}

// Operation i of the workload with this seed: the child performs it, the
// parent regenerates it to know what was acknowledged.
Op make_op(std::uint64_t seed, std::uint64_t i) {
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

void perform(kvstore::Store& s, const Op& op) {
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

void apply_to(Model& m, const Op& op) {
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

kvstore::Options small_store(kvstore::Sync sync = kvstore::Sync::none) {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.sync = sync;
  o.lock_timeout = std::chrono::milliseconds(20'000);
  return o;
}

// Runs ops [first, first + count) in a child that acknowledges each through
// the returned pipe. The child opens the store itself.
struct Child {
  pid_t pid = -1;
  int acks = -1;
};

Child start_writer(const std::string& path, std::uint64_t seed, std::uint64_t first,
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

Outcome finish(const Child& c, std::uint64_t first) {
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
void verify(const kvstore::Store& s, Model& model, const std::optional<Op>& in_flight,
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
void cycle(const std::string& path, std::uint64_t seed, std::uint64_t& next, Model& model,
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

void kill_cycles(int cycles, std::uint64_t seed) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  Model model;
  std::uint64_t next = 0;
  std::mt19937 rng(static_cast<unsigned>(seed));
  std::optional<kvstore::Store> attached;
  for (int c = 0; c < cycles && !::testing::Test::HasFailure(); ++c) {
    // Alternate: half the cycles with a second process attached throughout
    // (recovery through EOWNERDEAD), half with none (recovery at first open).
    if (c % 2 == 0) {
      attached.emplace(kvstore::Store::open(path, small_store()));
    } else {
      attached.reset();
    }
    const int delay = std::uniform_int_distribution<int>(0, 20'000)(rng);
    cycle(path, seed, next, model, "", delay, attached ? &*attached : nullptr, nullptr);
  }
  std::printf("kill cycles: %d, seed %llu, ops acknowledged %llu, keys at the end %zu, lost 0\n",
              cycles, static_cast<unsigned long long>(seed), static_cast<unsigned long long>(next),
              model.size());
}

}  // namespace

TEST(Crash, RandomKillsLoseNothing) { kill_cycles(env_int("KVSTORE_KILL_CYCLES", 200), 7); }

TEST(CrashSoak, RandomKillsLoseNothing) { kill_cycles(env_int("KVSTORE_SOAK_CYCLES", 10'000), 11); }

// Every named crash point, at a random pass, with and without a second process attached.
class CrashPoint : public ::testing::TestWithParam<std::pair<const char*, int>> {};

TEST_P(CrashPoint, RecoversEveryAcknowledgedWrite) {
  const auto [point, max_hits] = GetParam();
  const int iterations = env_int("KVSTORE_CRASH_ITERATIONS", 100);
  TempDir dir;
  const std::string path = dir.file("store.kv");
  Model model;
  std::uint64_t next = 0;
  std::mt19937 rng(1234);
  int reached = 0;
  for (int it = 0; it < iterations && !HasFailure(); ++it) {
    if (it % 10 == 9) {  // start afresh now and then, so that early-life points recur
      fs::remove(path);
      model.clear();
    }
    const int hit = std::uniform_int_distribution<int>(1, max_hits)(rng);
    std::optional<kvstore::Store> attached;
    if (it % 2 == 0) attached.emplace(kvstore::Store::open(path, small_store()));
    cycle(path, 100 + static_cast<std::uint64_t>(it), next, model,
          std::string(point) + ":" + std::to_string(hit), -1, attached ? &*attached : nullptr, &reached);
  }
  std::printf("crash point %s: %d of %d runs killed there, lost 0\n", point, reached, iterations);
  EXPECT_GE(reached, iterations / 2) << "the workload rarely reaches " << point;
}

// Each point with the most passes a workload run makes through it (the kill
// lands at a random one of them).
const std::pair<const char*, int> kPoints[] = {
    {"append.partial", 300}, {"append.done", 300},          {"put.indexed", 200},
    {"erase.counted", 30},   {"batch.half", 30},            {"grow.extended", 3},
    {"grow.segment", 3},     {"chunk.allocated", 4},        {"rehash.filled", 2},
    {"publish.before_rename", 3}, {"publish.after_rename", 3}, {"rebuild.copying", 20},
    {"attach.slot_claimed", 1}, {"compact.copied", 3},     {"compact.caught_up", 3},
    {"compact.round", 3},       {"compact.catching_up", 3},
};

// Every crash_point("...") in the library's sources is killed at by a test:
// the list above, or RecoveryKilledMidwayIsRecoveredAgain below.
TEST(CrashPoints, EveryPointInTheSourcesIsExercised) {
  std::set<std::string> tested{"repair_index.inserting"};
  for (const auto& [name, hits] : kPoints) tested.insert(name);
  // (A plain search: std::regex draws GCC 12 -Wmaybe-uninitialized warnings from libstdc++.)
  const std::string call = "crash_point(\"";
  std::size_t found = 0;
  for (const auto& entry : fs::directory_iterator(KVSTORE_SOURCE_DIR)) {
    std::ifstream in(entry.path());
    const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    for (std::size_t at = text.find(call); at != std::string::npos; at = text.find(call, at + 1)) {
      const std::size_t begin = at + call.size();
      const std::string name = text.substr(begin, text.find('"', begin) - begin);
      ++found;
      EXPECT_TRUE(tested.count(name) == 1)
          << "crash point " << name << " (" << entry.path().filename().string() << ") is never killed at";
    }
  }
  EXPECT_GE(found, tested.size());
}

INSTANTIATE_TEST_SUITE_P(
    Points, CrashPoint, ::testing::ValuesIn(kPoints),
    [](const auto& point) {
      std::string n = point.param.first;
      for (char& ch : n) {
        if (ch == '.') ch = '_';
      }
      return n;
    });

// Recovery itself killed part way, then recovered again.
TEST(Crash, RecoveryKilledMidwayIsRecoveredAgain) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  Model model;
  std::uint64_t next = 0;
  int killed_in_recovery = 0;
  int killed_in_rebuild = 0;
  for (int it = 0; it < 20 && !HasFailure(); ++it) {
    // A writer dies in the middle of a put (even iterations: the index is then
    // repaired in place) or of a grow (odd: the file is rebuilt): the next open
    // must recover ...
    const bool in_place = it % 2 == 0;
    if (!in_place) {  // a fresh 64 KiB store, so that the writer soon grows it
      std::filesystem::remove(path);
      model.clear();
    }
    const Child c = start_writer(path, 900 + static_cast<std::uint64_t>(it), next, 400,
                                 in_place ? "put.indexed:" + std::to_string(20 + it * 7) : std::string("grow.segment:1"));
    const Outcome o = finish(c, next);
    if (!o.killed) {  // the workload never grew this time: nothing to recover
      for (std::uint64_t i = next; static_cast<std::int64_t>(i) <= o.last_ack; ++i) {
        apply_to(model, make_op(900 + static_cast<std::uint64_t>(it), i));
      }
      next = static_cast<std::uint64_t>(o.last_ack + 1);
      continue;
    }
    for (std::uint64_t i = next; static_cast<std::int64_t>(i) <= o.last_ack; ++i) {
      apply_to(model, make_op(900 + static_cast<std::uint64_t>(it), i));
    }
    const Op in_flight = make_op(900 + static_cast<std::uint64_t>(it), static_cast<std::uint64_t>(o.last_ack + 1));
    // ... and that recovery is killed while it rebuilds the index or copies records.
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::setenv("KVSTORE_CRASH_AT",
               (in_place ? "repair_index.inserting:" + std::to_string(1 + it) : std::string("rebuild.copying:1")).c_str(),
               1);
      try {
        kvstore::Store s = kvstore::Store::open(path, small_store());
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) {
      ++killed_in_recovery;
      killed_in_rebuild += in_place ? 0 : 1;
    }
    kvstore::Store s = kvstore::Store::open(path, small_store());
    verify(s, model, in_flight, "recovery killed, iteration " + std::to_string(it));
    next = static_cast<std::uint64_t>(o.last_ack + 2);
  }
  std::printf("recoveries killed midway: %d of 20 (%d in-place index repairs, %d full rebuilds)\n",
              killed_in_recovery, killed_in_recovery - killed_in_rebuild, killed_in_rebuild);
  EXPECT_GE(killed_in_recovery - killed_in_rebuild, 9);
  EXPECT_GE(killed_in_rebuild, 1);
}

// ------------------------------------------------------------------ lock owners

namespace {

// Forks a child that opens the store, signals through the pipe once it is
// inside `hold` (which never returns), and waits to be killed.
pid_t start_holder(const std::string& path, int ready_fd,
                   void (*hold)(kvstore::Store&, int ready_fd)) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    try {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      hold(s, ready_fd);
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);
  }
  return pid;
}

// Kills and reaps the child when the test ends, however it ends.
struct Reaper {
  pid_t pid;
  explicit Reaper(pid_t p) : pid(p) {}
  Reaper(const Reaper&) = delete;
  Reaper& operator=(const Reaper&) = delete;
  ~Reaper() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
  }
  void kill_now() {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
};

void wait_ready(int fd) {
  char c = 0;
  ASSERT_EQ(::read(fd, &c, 1), 1) << "holder died before it was ready";
}

kvstore::Options quick_timeout() {
  kvstore::Options o = small_store();
  o.lock_timeout = std::chrono::milliseconds(300);
  return o;
}

}  // namespace

TEST(LockOwner, DeadReaderDoesNotBlockWriters) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  kvstore::Store s = kvstore::Store::open(path, small_store());
  s.put("k", "v");
  kvstore::Store w = kvstore::Store::open(path, quick_timeout());
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Reaper reader{start_holder(path, fds[1], [](kvstore::Store& st, int ready) {
    (void)st.visit("k", [&](std::string_view) {
      (void)::write(ready, "r", 1);
      for (;;) ::pause();  // dies inside the read section
    });
  })};
  wait_ready(fds[0]);
  // While the reader lives, a writer with a short timeout is refused: the lock is real.
  try {
    w.put("k", "blocked");
    ADD_FAILURE() << "a put went through while a reader held the lock";
  } catch (const kvstore::Error& e) {
    EXPECT_EQ(e.code(), kvstore::Errc::busy);
  }
  reader.kill_now();
  // Dead: the kernel dropped its slot's lock, and writers go on.
  EXPECT_NO_THROW(w.put("k", "after"));
  EXPECT_EQ(s.get("k"), "after");
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(LockOwner, DeadWriterDoesNotBlockAnyone) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  kvstore::Store s = kvstore::Store::open(path, quick_timeout());
  for (int round = 0; round < 20; ++round) {
    s.put("before" + std::to_string(round), "x");
    const Child c = start_writer(path, 77, static_cast<std::uint64_t>(round) * 1000, 400,
                                 "put.indexed:" + std::to_string(1 + round));
    const Outcome o = finish(c, static_cast<std::uint64_t>(round) * 1000);
    ASSERT_TRUE(o.killed);
    // The writer died holding the write lock; both reads and writes go on.
    EXPECT_EQ(s.get("before" + std::to_string(round)), "x");
    EXPECT_NO_THROW(s.put("after" + std::to_string(round), "y"));
  }
  EXPECT_TRUE(s.check().empty());
}

TEST(LockOwner, StalledConsumerDoesNotBlockWriters) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  kvstore::Store s = kvstore::Store::open(path, quick_timeout());
  for (int i = 0; i < 100; ++i) s.put(std::string("k").append(std::to_string(i)), "v");
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  Reaper consumer{start_holder(path, fds[1], [](kvstore::Store& st, int ready) {
    st.for_each([&](std::string_view, std::string_view) {
      (void)::write(ready, "r", 1);
      for (;;) ::pause();  // a consumer that stopped reading
      return true;
    });
  })};
  wait_ready(fds[0]);
  EXPECT_NO_THROW(s.put("while-stalled", "v"));
  EXPECT_NO_THROW(s.compact());
  consumer.kill_now();
  ::close(fds[0]);
  ::close(fds[1]);
}

// ------------------------------------------------------------------ power cut

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

// A power cut as a file of pages: each page as it was at the last sync or as
// written since, at random, the length either way. `first_from_written`: the
// header page as written since (a session's first change syncs it before any
// other write, so the disk never holds an older header with newer pages).
std::string cut_pages(const std::string& synced, const std::string& written, bool first_from_written,
                      std::mt19937& rng) {
  const std::size_t page = 4096;
  const std::size_t length = (rng() % 2 == 0) ? synced.size() : written.size();
  std::string mixed(length, '\0');
  for (std::size_t at = 0; at < length; at += page) {
    const std::string& from = (at == 0 && first_from_written) || rng() % 2 == 0 ? written : synced;
    if (at < from.size()) mixed.replace(at, std::min(page, from.size() - at), from, at, std::min(page, from.size() - at));
  }
  // A power cut means a new boot: clear the boot id the header remembers.
  std::memset(mixed.data() + 168, 0, 16);
  return mixed;
}

// Sync::always: pages as of the last acknowledged put mixed with pages written
// after it. Every put acknowledged before the cut survives, and the store
// recovers by itself (the durable mark tells a torn tail from damage).
TEST(PowerCut, SyncAlwaysKeepsAcknowledgedWrites) {
  std::mt19937 rng(99);
  for (int round = 0; round < 60 && !HasFailure(); ++round) {
    TempDir dir;
    const std::string path = dir.file("store.kv");
    const int acked = std::uniform_int_distribution<int>(1, 300)(rng);
    const int later = std::uniform_int_distribution<int>(1, 300)(rng);
    std::string synced;
    std::string written;
    {
      kvstore::Store s = kvstore::Store::open(path, small_store(kvstore::Sync::always));
      for (int i = 0; i < acked; ++i) s.put(key_of(static_cast<std::uint64_t>(i)), value_of(1, static_cast<std::uint64_t>(i), static_cast<std::size_t>(10 + i % 500)));
      synced = read_file(path);
      // Writes after the last acknowledgement: updates, erases, new keys.
      kvstore::Store late = kvstore::Store::open(path, small_store(kvstore::Sync::none));
      for (int i = 0; i < later; ++i) {
        const auto j = static_cast<std::uint64_t>(i * 3);
        if (i % 5 == 4) {
          (void)late.erase(key_of(j));
        } else {
          late.put(key_of(j), value_of(2, j, static_cast<std::size_t>(10 + i % 3000)));
        }
      }
      written = read_file(path);
    }
    const std::string mixed = cut_pages(synced, written, false, rng);
    const std::string cut = dir.file("cut.kv");
    std::ofstream(cut, std::ios::binary).write(mixed.data(), static_cast<std::streamsize>(mixed.size()));
    try {
      kvstore::Store s = kvstore::Store::open(cut, small_store(kvstore::Sync::always));
      std::size_t lost = 0;
      for (int i = 0; i < acked; ++i) {
        const auto j = static_cast<std::uint64_t>(i);
        const std::optional<std::string> got = s.get(key_of(j));
        // Written after the cut or not: either version is fine, absence only if erased later.
        const bool touched_later = j % 3 == 0 && static_cast<int>(j / 3) < later;
        const bool erased_later = touched_later && (j / 3) % 5 == 4;
        if (got == value_of(1, j, static_cast<std::size_t>(10 + i % 500))) continue;
        if (touched_later && got == value_of(2, j, 10 + (j / 3) % 3000)) continue;
        if (erased_later && !got) continue;
        ++lost;
      }
      EXPECT_EQ(lost, 0u) << "round " << round << ": acknowledged writes lost";
      EXPECT_GE(s.stats().recoveries, 1u) << "round " << round << ": the cut went unnoticed";
      EXPECT_TRUE(s.check().empty()) << "round " << round;
    } catch (const kvstore::Error& e) {
      ADD_FAILURE() << "round " << round << ": did not recover by itself: " << e.what();
    }
  }
}

// Sync::none: a cleanly closed store, then a session of unsynced changes (new
// keys, erases of old ones, two-key batches), cut at random pages. The store
// recovers by itself, checks clean, and holds a prefix of the session's
// changes: every change up to some point, none after it.
TEST(PowerCut, SyncNoneRecoversAPrefix) {
  std::mt19937 rng(7);
  constexpr std::uint64_t kOld = 400;
  int full = 0;
  for (int round = 0; round < 60 && !HasFailure(); ++round) {
    TempDir dir;
    const std::string path = dir.file("store.kv");
    const auto ops = static_cast<std::uint64_t>(std::uniform_int_distribution<int>(1, 350)(rng));
    auto fresh_key = [](std::uint64_t i, int part) { return "new" + std::to_string(i) + "." + std::to_string(part); };
    {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      for (std::uint64_t j = 0; j < kOld; ++j) s.put(key_of(j), value_of(1, j, 10 + j % 700));
    }
    const std::string synced = read_file(path);
    std::string written;
    {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      for (std::uint64_t i = 0; i < ops; ++i) {
        if (i % 5 == 4) {
          ASSERT_TRUE(s.erase(key_of(i)));
        } else if (i % 7 == 6) {
          s.apply({{fresh_key(i, 0), value_of(3, i, 40)}, {fresh_key(i, 1), value_of(4, i, 2000)}});
        } else {
          s.put(fresh_key(i, 0), value_of(3, i, 10 + i * 37 % 2500));
        }
      }
      written = read_file(path);
    }
    const std::string mixed = cut_pages(synced, written, true, rng);
    const std::string cut = dir.file("cut.kv");
    std::ofstream(cut, std::ios::binary).write(mixed.data(), static_cast<std::streamsize>(mixed.size()));
    try {
      kvstore::Store s = kvstore::Store::open(cut, small_store());
      // Which changes are visible, in order.
      std::vector<bool> seen(ops);
      for (std::uint64_t i = 0; i < ops; ++i) {
        if (i % 5 == 4) {
          seen[i] = !s.get(key_of(i));
        } else if (i % 7 == 6) {
          const bool a = s.get(fresh_key(i, 0)) == value_of(3, i, 40);
          const bool b = s.get(fresh_key(i, 1)) == value_of(4, i, 2000);
          EXPECT_EQ(a, b) << "round " << round << ": half a batch at change " << i;
          seen[i] = a;
        } else {
          seen[i] = s.get(fresh_key(i, 0)) == value_of(3, i, 10 + i * 37 % 2500);
        }
      }
      const auto n = static_cast<std::uint64_t>(std::find(seen.begin(), seen.end(), false) - seen.begin());
      EXPECT_EQ(std::count(seen.begin() + static_cast<std::ptrdiff_t>(n), seen.end(), true), 0)
          << "round " << round << ": changes after " << n << " survived without it: not a prefix";
      for (std::uint64_t j = 0; j < kOld; ++j) {
        if (j < n && j % 5 == 4) continue;  // erased by a surviving change
        EXPECT_EQ(s.get(key_of(j)), value_of(1, j, 10 + j % 700)) << "round " << round << ": old key " << j;
      }
      EXPECT_TRUE(s.check().empty()) << "round " << round;
      full += n == ops ? 1 : 0;
    } catch (const kvstore::Error& e) {
      ADD_FAILURE() << "round " << round << ": did not recover by itself: " << e.what();
    }
  }
  std::printf("power cuts (Sync::none): 60, every change kept in %d\n", full);
}
