// Dead lock owners and a stalled consumer: a reader or writer killed while it
// holds the lock, or a wait_for_change caller that stops, blocks nobody.
#include "crash_workload.hpp"

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

