// Crash safety: kill -9 at random moments and at every named crash point,
// and recovery itself killed part way (the workload: crash_workload.hpp).
//
// Environment: KVSTORE_CRASH_ITERATIONS (per crash point, default 100) and
// KVSTORE_KILL_CYCLES (random kills, default 200) size the runs; the soak
// test (label soak) uses KVSTORE_SOAK_CYCLES (default 10000).
#include "crash_workload.hpp"

namespace {

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
    {"reclaim.moved", 20},      {"reclaim.unlinked", 2},    {"reclaim.freed", 2},
    {"grow_index.copied", 40},  {"grow_index.switched", 1},
};

// Every crash_point("...") in the library's sources is killed at by a test:
// the list above, RecoveryKilledMidwayIsRecoveredAgain or
// CompactorKilledWhileItPacesAWriterLosesNothing below.
TEST(CrashPoints, EveryPointInTheSourcesIsExercised) {
  std::set<std::string> tested{"repair_index.inserting", "compact.synced"};
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


// A compaction that the writers kept busy syncs its copy between paced rounds
// of catch-up (compaction.cpp): killed there, in another process than the
// writer, it loses nothing, leaves the file as it was, and its pacing of the
// writer ends by itself (the writer finishes). The writer puts and
// acknowledges through a pipe (no compactions of its own: they would replace
// the file under the compactor, whose rounds would then start over unsynced).
TEST(Crash, CompactorKilledWhileItPacesAWriterLosesNothing) {
  TempDir dir;
  const std::string path = dir.file("store.kv");
  {
    // Enough live data that a copy takes a while, and the writer appends meanwhile.
    kvstore::Store s = kvstore::Store::open(path, small_store());
    std::vector<kvstore::BatchOp> fill;
    for (int i = 0; i < 50000; ++i) fill.push_back({"fill/" + std::to_string(i), std::string(100, 'f'), false});
    s.apply(fill);
  }
  auto key = [](int run, long i) { return "w" + std::to_string(run) + "/" + std::to_string(i); };
  auto value = [](long i) { return std::string(static_cast<std::size_t>(50 + i % 150), static_cast<char>('a' + i % 26)); };
  // Whether a compaction reaches its sync depends on how much the writer
  // appends during it: runs go on until two were killed there (at most ten).
  int killed = 0;
  int runs = 0;
  constexpr int kMaxRuns = 10;
  for (; runs < kMaxRuns && killed < 2 && !HasFailure(); ++runs) {
    const int run = runs;
    int acks[2];
    ASSERT_EQ(::pipe(acks), 0);
    const pid_t writer = ::fork();
    if (writer == 0) {
      ::close(acks[0]);
      try {
        kvstore::Store s = kvstore::Store::open(path, small_store());
        for (long i = 0; i < 30000; ++i) {
          s.put(key(run, i), value(i));
          if (::write(acks[1], &i, sizeof i) != sizeof i) ::_exit(5);
        }
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);
    }
    ::close(acks[1]);
    const pid_t compactor = ::fork();
    if (compactor == 0) {
      ::setenv("KVSTORE_CRASH_AT", "compact.synced:1", 1);
      try {
        kvstore::Store s = kvstore::Store::open(path, small_store());
        for (int n = 0; n < 50; ++n) s.compact();
      } catch (...) {
        ::_exit(3);
      }
      ::_exit(0);  // never reached the point
    }
    long last = -1;
    long v = 0;
    while (::read(acks[0], &v, sizeof v) == sizeof v) last = v;
    ::close(acks[0]);
    int status = 0;
    ::waitpid(writer, &status, 0);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "writer failed with status " << status;
    ::waitpid(compactor, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) ++killed;
    ASSERT_EQ(last, 29999);
    kvstore::Store s = kvstore::Store::open(path, small_store());
    for (long i = 0; i <= last; ++i) ASSERT_EQ(s.get(key(run, i)), value(i)) << "run " << run << " key " << i;
    EXPECT_EQ(s.get("fill/49999"), std::string(100, 'f'));
    EXPECT_TRUE(s.check().empty());
  }
  std::printf("compactor killed at compact.synced in %d of %d runs, lost 0\n", killed, runs);
  EXPECT_GE(killed, 2) << "the compactions rarely reached compact.synced";
}

// A compaction killed once its new file is at the path but before it told
// the other handles (its rename is durable, the epoch not yet bumped): the
// handle that takes over the dead compactor's lock, by a write or by opening
// the store, must not be the only one to look at the path again. Another
// handle that went on with the old, unlinked file would have its later
// writes lost.
class CompactorKilledAfterItsRename : public ::testing::TestWithParam<bool> {};

TEST_P(CompactorKilledAfterItsRename, LeavesNoHandleOnTheOldFile) {
  const bool opener_takes_over = GetParam();
  TempDir dir;
  const std::string path = dir.file("store.kv");
  std::vector<kvstore::BatchOp> fill;
  for (int i = 0; i < 2000; ++i) fill.push_back({"fill/" + std::to_string(i), std::string(100, 'f'), false});
  kvstore::Store x = kvstore::Store::open(path, small_store());
  x.apply(fill);
  std::optional<kvstore::Store> y;
  if (!opener_takes_over) y.emplace(kvstore::Store::open(path, small_store()));
  const pid_t compactor = ::fork();
  if (compactor == 0) {
    ::setenv("KVSTORE_CRASH_AT", "publish.after_rename:1", 1);
    try {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      s.compact();
    } catch (...) {
      ::_exit(3);
    }
    ::_exit(0);  // never reached the point
  }
  int status = 0;
  ::waitpid(compactor, &status, 0);
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL) << "status " << status;
  if (opener_takes_over) y.emplace(kvstore::Store::open(path, small_store()));  // takes the dead lock
  y->put("by/y", "1");  // or takes it here
  x.put("by/x", "2");  // takes the lock after y: must write to the new file too
  EXPECT_EQ(x.get("by/y"), "1");
  EXPECT_EQ(y->get("by/x"), "2");
  kvstore::Store fresh = kvstore::Store::open(path, small_store());
  EXPECT_EQ(fresh.get("by/x"), "2");
  EXPECT_EQ(fresh.get("by/y"), "1");
  EXPECT_EQ(fresh.get("fill/1999"), std::string(100, 'f'));
  EXPECT_TRUE(fresh.check().empty());
}

INSTANTIATE_TEST_SUITE_P(TakenOverBy, CompactorKilledAfterItsRename, ::testing::Values(false, true),
                         [](const auto& taker) { return taker.param ? "AnOpen" : "AWrite"; });
