// Readers with read permission only: the store's files belong to root with
// mode 0644 in a directory of mode 0555, and each reader child drops to the
// user and group 65534 (nobody) before it opens the store read-only, so it
// can write neither the data file nor the lock file and holds no reader slot.
// A root writer meanwhile rewrites a batch of keys that must stay equal, puts
// and erases values that carry their own checksum, grows the file from 64 KiB
// and compacts it: no reader may ever see a broken invariant, crash or hang.
// Root is needed (to own the files and to drop privileges): skipped otherwise.
//
// Cross-process only, by design: the optimistic reads race with the writer
// on purpose (a seqlock), which ThreadSanitizer would report within a process.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <kvstore/kvstore.h>
#include <kvstore/store.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

namespace {

using kvstore::test::spawn;
using kvstore::test::wait_all;
using kvstore::test::wait_for;

constexpr uid_t kNobody = 65534;
constexpr int kGroup = 8;          // keys g/0..g/7, always written together
constexpr int kFillers = 300;      // keys f/0..f/299, put and erased one by one

// Child exit statuses, so a failure says what went wrong.
constexpr int kOk = 0;
constexpr int kPrivileged = 10;      // the drop failed, or the files are writable anyway
constexpr int kBadValue = 11;        // a value fails its own checksum
constexpr int kBrokenBatch = 12;     // the batch's keys differ (a half-made change was seen)
constexpr int kTooFewRounds = 13;    // the reader did not read while the writer wrote
constexpr int kNoCompaction = 14;    // ... nor across a compaction
constexpr int kNoGrowth = 15;        // ... nor across a grow
constexpr int kTimedOut = 16;
constexpr int kWrongFinal = 17;
constexpr int kWrongError = 18;
constexpr int kRefused = 19;

std::uint64_t fnv(std::string_view s) {
  std::uint64_t h = 1469598103934665603ULL;
  for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ULL;
  return h;
}

// "<round>|<payload>|<fnv of what precedes>": a value that proves itself.
std::string value_of(std::uint64_t round, std::uint64_t salt) {
  std::string v = std::to_string(round) + "|";
  v.append(static_cast<std::size_t>(10 + (round * 37 + salt * 11) % 900), static_cast<char>('a' + (round + salt) % 26));
  v += "|" + std::to_string(fnv(v));
  return v;
}
bool intact(std::string_view v) {
  const std::size_t bar = v.rfind('|');
  const bool ok = bar != std::string_view::npos && v.substr(bar + 1) == std::to_string(fnv(v.substr(0, bar)));
  if (!ok) std::fprintf(stderr, "value fails its checksum: %.*s\n", static_cast<int>(std::min<std::size_t>(v.size(), 200)), v.data());
  return ok;
}
std::uint64_t round_of(std::string_view v) { return std::stoull(std::string(v.substr(0, v.find('|')))); }

std::string group_key(int i) { return "g/" + std::to_string(i); }

// The same check of the group through the C API's view: KVSTORE_BUSY from a
// get means a writer moved the state since the view began (a slot-less handle).
struct CView {
  int bad = 0;
};
int c_view_group(const kvstore_view* view, void* ctx) {
  auto* c = static_cast<CView*>(ctx);
  c->bad = 0;
  const void* first = nullptr;
  std::size_t first_len = 0;
  const int rc0 = kvstore_view_get(view, "g/0", 3, &first, &first_len);
  if (rc0 != KVSTORE_OK && rc0 != KVSTORE_NOTFOUND) return rc0;
  for (int i = 0; i < 8; ++i) {
    const std::string k = group_key(i);
    const void* v = nullptr;
    std::size_t len = 0;
    const int rc = kvstore_view_get(view, k.data(), k.size(), &v, &len);
    if (rc != KVSTORE_OK && rc != KVSTORE_NOTFOUND) return rc;
    if ((rc == KVSTORE_OK) != (rc0 == KVSTORE_OK)) c->bad = 12;
    if (rc == KVSTORE_OK && rc0 == KVSTORE_OK &&
        std::string_view(static_cast<const char*>(v), len) != std::string_view(static_cast<const char*>(first), first_len)) {
      c->bad = 12;
    }
  }
  return KVSTORE_OK;
}
std::string filler_key(std::uint64_t i) { return "f/" + std::to_string(i % kFillers); }

kvstore::Options writer_options() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.lock_timeout = std::chrono::milliseconds(30'000);
  return o;
}
kvstore::Options reader_options() {
  kvstore::Options o;
  o.create = false;
  o.read_only = true;
  o.lock_timeout = std::chrono::milliseconds(30'000);
  return o;
}

// In a child: become nobody, and prove that the store's files are now out of
// reach for writing (else the test would test nothing).
bool drop_privileges(const std::string& store) {
  if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return false;
  if (::geteuid() != kNobody || ::setuid(0) == 0) return false;
  for (const std::string& f : {store, store + ".lock"}) {
    const int fd = ::open(f.c_str(), O_RDWR | O_CLOEXEC);
    if (fd >= 0 || errno != EACCES) {
      if (fd >= 0) ::close(fd);
      return false;
    }
  }
  const std::string dir = std::filesystem::path(store).parent_path().string();
  return ::access(dir.c_str(), W_OK) != 0;
}

class ReadOnly : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root: the files must belong to another user than the reader";
    ::umask(022);
    // mkdtemp made the temp dir 0700: nobody must be able to pass through it.
    std::filesystem::permissions(tmp_.path(), std::filesystem::perms(0755));
    dir_ = tmp_.path() / "store";
    std::filesystem::create_directory(dir_);
    path_ = (dir_ / "s.kv").string();
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::permissions(dir_, std::filesystem::perms(0755), ec);
  }
  // Files 0644 (root's), directory 0555: root still writes (it bypasses
  // permissions), nobody may only read.
  void lock_down() {
    for (const auto& e : std::filesystem::directory_iterator(dir_)) {
      std::filesystem::permissions(e.path(), std::filesystem::perms(0644));
    }
    std::filesystem::permissions(dir_, std::filesystem::perms(0555));
  }

  kvstore::test::TempDir tmp_;
  std::filesystem::path dir_;
  std::string path_;
};

// The writer: rounds of one batch over the group (all equal), a filler put and
// now and then an erase, a compaction every 150 rounds, for `seconds`; then
// "done" holding the last round. Waits for `readers` bytes on `ready` first.
int run_writer(const std::string& path, int ready_fd, int readers, double seconds) {
  for (int n = 0; n < readers;) {
    char c = 0;
    if (::read(ready_fd, &c, 1) != 1) return 1;
    ++n;
  }
  kvstore::Store s = kvstore::Store::open(path, writer_options());
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  std::uint64_t round = 1;
  for (; std::chrono::steady_clock::now() < until || round < 400; ++round) {
    std::vector<kvstore::BatchOp> ops;
    for (int i = 0; i < kGroup; ++i) ops.push_back({group_key(i), value_of(round, 0), false});
    s.apply(ops);
    s.put(filler_key(round), value_of(round, 1));
    if (round % 3 == 0) (void)s.erase(filler_key(round * 7 + 13));
    if (round % 150 == 0) s.compact();
  }
  s.put("done", std::to_string(round - 1));
  return 0;
}

// A reader as nobody: views of the group, single gets, full scans and stats,
// until it reads "done". Checks every value and the group's equality.
int run_reader(const std::string& path, int ready_fd) {
  if (!drop_privileges(path)) return kPrivileged;
  kvstore::Store s = kvstore::Store::open(path, reader_options());
  kvstore_options copt;
  kvstore_options_init(&copt);
  copt.create = 0;
  copt.read_only = 1;
  copt.lock_timeout_ms = 30'000;
  kvstore_db* cdb = nullptr;
  if (kvstore_open(path.c_str(), &copt, &cdb) != KVSTORE_OK) return kWrongError;
  std::uint64_t c_views = 0, c_busy = 0;
  if (::write(ready_fd, "r", 1) != 1) return 1;
  std::set<std::uint64_t> rounds;
  std::uint64_t min_size = ~std::uint64_t{0}, max_size = 0, compactions0 = s.stats().compactions, compactions = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  std::uint64_t iters = 0;
  for (std::uint64_t iter = 0;; ++iter, ++iters) {
    if (std::chrono::steady_clock::now() > deadline) return kTimedOut;
    int bad = kOk;
    std::uint64_t seen = 0;
    s.view([&](const kvstore::View& v) {
      bad = kOk;  // the callback may run again: only its last run counts
      const std::optional<std::string_view> first = v.get(group_key(0));
      for (int i = 0; i < kGroup; ++i) {
        const std::optional<std::string_view> x = v.get(group_key(i));
        if (x.has_value() != first.has_value() || (x && *x != *first)) bad = kBrokenBatch;
        if (x && !intact(*x)) bad = kBadValue;
      }
      seen = first && intact(*first) ? round_of(*first) : 0;
    });
    if (bad != kOk) return bad;
    if (seen != 0) rounds.insert(seen);
    if (const auto f = s.get(filler_key(iter * 13)); f && !intact(*f)) return kBadValue;
    if (iter % 4 == 0) {
      CView cv;
      const int rc = kvstore_view_run(cdb, c_view_group, &cv);
      if (rc == KVSTORE_BUSY) {
        ++c_busy;  // a writer came between: the answer given so far was still of one state
      } else if (rc != KVSTORE_OK) {
        std::fprintf(stderr, "C view: %s (%s)\n", kvstore_strerror(rc), kvstore_last_error());
        return kWrongError;
      } else if (cv.bad != 0) {
        return cv.bad;
      } else {
        ++c_views;
      }
    }
    if (iter % 25 == 0) {
      int scan_bad = kOk;
      s.for_each([&](std::string_view k, std::string_view v) {
        if (k != "done" && !intact(v)) scan_bad = kBadValue;
        return true;
      });
      if (scan_bad != kOk) return scan_bad;
      const kvstore::Stats st = s.stats();
      min_size = std::min(min_size, st.file_size);
      max_size = std::max(max_size, st.file_size);
      compactions = st.compactions;
    }
    if (const auto done = s.get("done")) {
      const std::uint64_t last = std::stoull(*done);
      const std::optional<std::string> g = s.get(group_key(kGroup - 1));
      if (!g || *g != value_of(last, 0)) return kWrongFinal;
      break;
    }
  }
  std::fprintf(stderr, "reader %d: %zu distinct rounds seen in %llu reads, file %llu..%llu bytes, %llu compactions seen\n",
               static_cast<int>(::getpid()), rounds.size(), static_cast<unsigned long long>(iters), static_cast<unsigned long long>(min_size),
               static_cast<unsigned long long>(max_size), static_cast<unsigned long long>(compactions - compactions0));
  std::fprintf(stderr, "reader %d: C views: %llu complete, %llu ended busy\n", static_cast<int>(::getpid()),
               static_cast<unsigned long long>(c_views), static_cast<unsigned long long>(c_busy));
  kvstore_close(cdb);
  if (rounds.size() < 20) return kTooFewRounds;
  if (c_views == 0) return kTooFewRounds;
  if (compactions == compactions0) return kNoCompaction;
  if (max_size == min_size) return kNoGrowth;
  return kOk;
}

TEST_F(ReadOnly, ReadersWithoutWritePermissionNeverSeeAHalfMadeChange) {
  {
    kvstore::Store s = kvstore::Store::open(path_, writer_options());
    s.put("seed", value_of(0, 5));  // a value like the others
  }
  lock_down();
  int ready[2];
  ASSERT_EQ(::pipe(ready), 0);
  constexpr int kReaders = 2;
  std::vector<pid_t> pids;
  for (int r = 0; r < kReaders; ++r) pids.push_back(spawn([&] { return run_reader(path_, ready[1]); }));
  pids.push_back(spawn([&] { return run_writer(path_, ready[0], kReaders, 3.0); }));
  ::close(ready[0]);
  ::close(ready[1]);
  const std::vector<int> st = wait_all(pids);
  for (int r = 0; r < kReaders; ++r) EXPECT_EQ(st[static_cast<std::size_t>(r)], kOk) << "reader " << r;
  EXPECT_EQ(st.back(), kOk) << "writer";
  // The files stayed root's; the readers wrote nothing.
  struct stat lock_st {};
  ASSERT_EQ(::stat((path_ + ".lock").c_str(), &lock_st), 0);
  EXPECT_EQ(lock_st.st_uid, 0u);
  const kvstore::Store s = kvstore::Store::open(path_, writer_options());
  EXPECT_TRUE(s.check().empty());
}

// A writer killed while it holds the write lock leaves the seqlock word odd.
// A reader without write permission cannot recover the store: it must say so
// (busy) quickly, not wait out its lock_timeout nor hang; once a writer has
// opened the store (and recovered it), it reads again.
TEST_F(ReadOnly, DeadWriterIsReportedNotWaitedFor) {
  {
    kvstore::Store s = kvstore::Store::open(path_, writer_options());
    s.put("k", "v1");
  }
  lock_down();
  const pid_t writer = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path_, writer_options());
    s.transact([&](kvstore::Transaction& t) {
      t.put("k", "never");
      ::kill(::getpid(), SIGKILL);  // dies holding the write lock
    });
    return 1;
  });
  ASSERT_EQ(wait_for(writer), 128 + SIGKILL);
  int go[2];
  ASSERT_EQ(::pipe(go), 0);
  const pid_t reader = spawn([&] {
    if (!drop_privileges(path_)) return kPrivileged;
    kvstore::Options o = reader_options();
    o.lock_timeout = std::chrono::milliseconds(20'000);
    const auto t0 = std::chrono::steady_clock::now();
    try {
      const kvstore::Store s = kvstore::Store::open(path_, o);
      (void)s.get("k");
      return kWrongError;  // it read from a store whose writer died mid-change
    } catch (const kvstore::Error& e) {
      if (e.code() != kvstore::Errc::busy || std::string(e.what()).find("died") == std::string::npos) {
        std::fprintf(stderr, "reader: %s\n", e.what());
        return kWrongError;
      }
    }
    if (std::chrono::steady_clock::now() - t0 > std::chrono::seconds(5)) return kTimedOut;
    char c = 0;
    if (::read(go[0], &c, 1) != 1) return 1;  // the parent has opened the store as a writer
    const kvstore::Store s = kvstore::Store::open(path_, o);
    const std::optional<std::string> v = s.get("k");
    return v == "v1" ? kOk : kWrongFinal;
  });
  ::close(go[0]);
  // Give the reader time to fail on its own before a writer repairs the lock.
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  {
    kvstore::Store s = kvstore::Store::open(path_, writer_options());
    EXPECT_EQ(s.get("k"), std::optional<std::string>("v1"));
    ASSERT_EQ(::write(go[1], "g", 1), 1);
    EXPECT_EQ(wait_for(reader), kOk);
  }
  ::close(go[1]);
}

// No lock file, and none can be made: a store closed cleanly is read from the
// data file alone; one that was not closed cleanly is refused (busy), since
// nothing would show a writer's changes.
TEST_F(ReadOnly, NoLockFileReadsOnlyACleanStore) {
  {
    kvstore::Store s = kvstore::Store::open(path_, writer_options());
    s.put("k", "v");
  }
  std::filesystem::remove(path_ + ".lock");
  lock_down();
  auto read_as_nobody = [&] {
    return wait_for(spawn([&] {
      if (::setgroups(0, nullptr) != 0 || ::setgid(kNobody) != 0 || ::setuid(kNobody) != 0) return kPrivileged;
      try {
        const kvstore::Store s = kvstore::Store::open(path_, reader_options());
        if (s.get("k") != std::optional<std::string>("v") || s.size() != 1) return kWrongFinal;
        if (::access((path_ + ".lock").c_str(), F_OK) == 0) return kPrivileged;
        return kOk;
      } catch (const kvstore::Error& e) {
        std::fprintf(stderr, "reader: %s\n", e.what());
        return e.code() == kvstore::Errc::busy ? kRefused : kWrongError;
      }
    }));
  };
  EXPECT_EQ(read_as_nobody(), kOk);
  // Unclean: a writer still has it open (root; it makes the lock file, which
  // nobody would then use: remove it again while the writer holds its handle).
  kvstore::Store w = kvstore::Store::open(path_, writer_options());
  w.put("k", "v");
  std::filesystem::permissions(dir_, std::filesystem::perms(0755));
  std::filesystem::remove(path_ + ".lock");
  std::filesystem::permissions(dir_, std::filesystem::perms(0555));
  EXPECT_EQ(read_as_nobody(), kRefused);
}

}  // namespace
