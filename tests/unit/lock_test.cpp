// LockFile on its own, across processes: the ticket queue's order, writers
// that readers or other writers stream past, and processes killed while they
// hold the lock, wait for it, or sit inside a read. Each process attaches its
// own LockFile (a child never uses one it inherited: that one's OFD locks are
// the parent's). The test watches the queue through its own read-only mapping
// of the lock file (the layout is LockShared, FORMAT.md "Lock file").
//
// No assertion here is about time. Timeouts (kPatience) only keep a broken
// lock from hanging the run; sleeps only shape the schedule.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"
#include "lock.hpp"

using kvstore::detail::LockFile;
using kvstore::detail::LockShared;
using kvstore::test::spawn;
using kvstore::test::TempDir;
using WriteResult = LockFile::WriteResult;
using namespace std::chrono_literals;

namespace {

// Far longer than any wait should take: only a broken lock reaches it.
constexpr auto kPatience = std::chrono::milliseconds(60'000);
constexpr int kMaxChildren = 16;

std::unique_ptr<LockFile> attach(const std::string& path) {
  auto lock = std::make_unique<LockFile>(path, kPatience);
  lock->finish_attach();
  return lock;
}

// Polls `done` until it holds (true) or kPatience passes (false).
template <class Done>
bool eventually(Done done) {
  const auto deadline = std::chrono::steady_clock::now() + kPatience;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(100us);
  }
  return true;
}

// Blocks a child until `flag` is set; false after kPatience (the parent failed).
bool await(const std::atomic<int>& flag) {
  return eventually([&] { return flag.load() != 0; });
}

// What the processes of one test tell each other, in shared anonymous memory.
struct Board {
  std::atomic<int> ready[kMaxChildren];  // child -> parent: attached (and, where asked, inside)
  std::atomic<int> go[kMaxChildren];     // parent -> child: go on
  std::atomic<int> stop;                 // parent -> children: leave your loop
  std::atomic<int> order_len;            // who took the lock, in order
  std::atomic<int> order[kMaxChildren];
  std::atomic<std::uint32_t> serving_seen[kMaxChildren];  // `serving` as a locker found it once in
  std::atomic<int> result[kMaxChildren];                  // a WriteResult, as int
  std::atomic<int> inside;                                // streaming children inside right now
  std::atomic<long> done;                                 // their turns completed

  void took_turn(int id) { order[order_len.fetch_add(1)].store(id); }
};

class SharedBoard {
 public:
  SharedBoard() {
    void* p =
        ::mmap(nullptr, sizeof(Board), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
    board_ = new (p) Board{};
  }
  SharedBoard(const SharedBoard&) = delete;
  SharedBoard& operator=(const SharedBoard&) = delete;
  ~SharedBoard() { ::munmap(board_, sizeof(Board)); }
  Board& operator*() const noexcept { return *board_; }

 private:
  Board* board_;
};

// The test's own view of the lock file's shared state: read only.
class LockView {
 public:
  explicit LockView(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) throw std::runtime_error("open " + path);
    void* p = ::mmap(nullptr, sizeof(LockShared), PROT_READ, MAP_SHARED, fd, 0);
    ::close(fd);
    if (p == MAP_FAILED) throw std::runtime_error("mmap " + path);
    shared_ = static_cast<const LockShared*>(p);
  }
  LockView(const LockView&) = delete;
  LockView& operator=(const LockView&) = delete;
  ~LockView() { ::munmap(const_cast<LockShared*>(shared_), sizeof(LockShared)); }  // NOLINT
  const LockShared* operator->() const noexcept { return shared_; }
  [[nodiscard]] std::uint32_t next_ticket() const noexcept { return shared_->next_ticket.load(); }

 private:
  const LockShared* shared_;
};

// Children that are SIGKILLed and reaped when the test ends, whatever happened.
class Children {
 public:
  Children() = default;
  Children(const Children&) = delete;
  Children& operator=(const Children&) = delete;
  ~Children() {
    for (const pid_t pid : pids_) {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        (void)kvstore::test::wait_for(pid);
      }
    }
  }
  int start(const std::function<int()>& fn) {
    pids_.push_back(spawn(fn));
    return static_cast<int>(pids_.size()) - 1;
  }
  // Exit status of child `i` (128 + signal if killed).
  int wait(int i) {
    return kvstore::test::wait_for(std::exchange(pids_[static_cast<std::size_t>(i)], 0));
  }
  int kill(int i) {
    ::kill(pids_[static_cast<std::size_t>(i)], SIGKILL);
    return wait(i);
  }

 private:
  std::vector<pid_t> pids_;
};

// One test's cast: a lock file, the parent's handle, its view of the shared
// state, the board, and the children (declared last: killed first).
struct Scene {
  TempDir dir;
  std::string path = dir.file("t.lock");
  std::unique_ptr<LockFile> lock = attach(path);  // slot 0
  LockView view{path};
  SharedBoard shared;
  Board& board = *shared;
  Children kids;
};

// A child that waits for `go`, takes the write lock, notes its turn (and
// `serving` as it finds it, if given a view), holds the lock briefly and
// leaves. Exit 0 if that all went as it should, 2 if the owner had died.
int queued_writer(const std::string& path, Board& b, int id, const LockView* view = nullptr) {
  auto lock = attach(path);
  b.ready[id] = 1;
  if (!await(b.go[id])) return 3;
  const WriteResult r = lock->lock_write();
  b.took_turn(id);
  // While we hold the mutex nobody moves `serving` (no head times out here).
  if (view != nullptr) b.serving_seen[id] = (*view)->serving.load();
  b.result[id] = static_cast<int>(r);
  // Held long enough that a waiter woken by our turn tries the mutex while
  // we hold it (see TicketQueue below).
  std::this_thread::sleep_for(2ms);
  lock->unlock_write();
  return r == WriteResult::ok ? 0 : 2;
}

// The same for a reader: a read that found a writer in the way queues too.
int queued_reader(const std::string& path, Board& b, int id, const LockView* view = nullptr) {
  auto lock = attach(path);
  b.ready[id] = 1;
  if (!await(b.go[id])) return 3;
  if (lock->try_enter_read()) return 4;  // the parent holds the write lock: must not get in
  const WriteResult r = lock->wait_and_enter_read();
  b.took_turn(id);
  // As for a writer, if nobody queued behind us (that one may take the mutex
  // as soon as we let it go).
  if (view != nullptr) b.serving_seen[id] = (*view)->serving.load();
  b.result[id] = static_cast<int>(r);
  if (r != WriteResult::ok) {
    lock->unlock_write();  // we were handed a dead writer's lock
    return 2;
  }
  std::this_thread::sleep_for(2ms);
  lock->exit_read();
  return 0;
}

// Where a child waits to be killed.
[[noreturn]] void linger() {
  for (;;) ::pause();
}

// Lets child `id` go and waits until it has drawn its ticket; returns the ticket.
std::uint32_t let_queue(Board& b, const LockView& view, int id) {
  const std::uint32_t ticket = view.next_ticket();
  b.go[id] = 1;
  EXPECT_TRUE(eventually([&] { return view.next_ticket() == ticket + 1; }))
      << "child " << id << " never queued";
  return ticket;
}

void await_ready(Board& b, int children) {
  for (int i = 0; i < children; ++i) {
    ASSERT_TRUE(await(b.ready[i])) << "child " << i << " never attached";
  }
}

// One turn of a streaming child, under the lock (a read or the write lock).
void hold_briefly(Board& b) {
  b.inside.fetch_add(1);
  std::this_thread::sleep_for(1ms);
  b.inside.fetch_sub(1);
  b.done.fetch_add(1);
}

// With `children` children streaming through the lock (each running `body`
// until told to stop): the parent's writer must get in (busy after kPatience
// means starved), nobody may be inside or finish a turn while it holds the
// lock, and the stream goes on after it.
void write_into_stream(Scene& s, int children, const std::function<int(LockFile&)>& body) {
  for (int id = 0; id < children; ++id) {
    s.kids.start([&, id] {
      auto mine = attach(s.path);
      s.board.ready[id] = 1;
      return body(*mine);
    });
  }
  await_ready(s.board, children);
  // Let them stream first, so that our writer arrives into a busy lock.
  ASSERT_TRUE(eventually([&] { return s.board.done.load() >= 50; }));
  EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
  const long done = s.board.done.load();
  EXPECT_EQ(s.board.inside.load(), 0) << "someone is inside while the writer holds the lock";
  std::this_thread::sleep_for(5ms);
  EXPECT_EQ(s.board.inside.load(), 0) << "someone got in while the writer held the lock";
  EXPECT_EQ(s.board.done.load(), done);
  s.lock->unlock_write();
  EXPECT_TRUE(eventually([&] { return s.board.done.load() > done + 10; }))
      << "the stream did not go on";
  s.board.stop = 1;
  for (int id = 0; id < children; ++id) EXPECT_EQ(s.kids.wait(id), 0) << "child " << id;
}

// The ticket queue has one deliberate way out of order: a waiter that finds
// it has not moved for 20 ms with the mutex free takes the mutex (a dead
// head's queue must not stall). In these tests that takes a waiter held up
// by the scheduler for several ms just as the mutex changes hands. It leaves
// a trace (the locker it overtook finds `serving` already past its own ticket
// once in), and only a round out of order with that trace is run again,
// twice at most.
struct Round {
  bool in_order;
  bool jumped;
};

void until_served_in_order(const std::function<Round(Scene&)>& round) {
  for (int attempt = 0; attempt < 3; ++attempt) {
    Scene s;
    const Round r = round(s);
    if (::testing::Test::HasFatalFailure() || r.in_order) return;
    ASSERT_TRUE(r.jumped) << "served out of turn with no waiter jumping a stalled queue";
    std::printf("round %d: a waiter jumped the queue as the mutex changed hands; again\n", attempt);
  }
  FAIL() << "every round was served out of turn";
}

}  // namespace

// Six lockers (five writers, then a reader) queue about 1 ms apart while the
// parent holds the write lock, and it lets go 12 ms after the first queued;
// each must get its turn in the order it queued. Without the tickets, the
// order would be the kernel's on the mutex, and by then that is not the order
// of arrival: a locker gives up its first, 10 ms, attempt at the mutex and
// tries again behind those that came after it.
TEST(TicketQueue, LockersAreServedInTheOrderTheyQueued) {
  constexpr int kLockers = 6;
  constexpr int kReader = kLockers - 1;
  until_served_in_order([&](Scene& s) {
    for (int id = 0; id < kLockers; ++id) {
      s.kids.start([&, id] {
        return id == kReader ? queued_reader(s.path, s.board, id, &s.view)
                             : queued_writer(s.path, s.board, id, &s.view);
      });
    }
    await_ready(s.board, kLockers);
    EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
    std::uint32_t ticket[kLockers];
    ticket[0] = let_queue(s.board, s.view, 0);
    const auto first_queued = std::chrono::steady_clock::now();
    for (int id = 1; id < kLockers; ++id) {
      std::this_thread::sleep_for(1ms);
      ticket[id] = let_queue(s.board, s.view, id);
    }
    std::this_thread::sleep_until(first_queued + 12ms);
    s.lock->unlock_write();
    Round r{true, false};
    for (int id = 0; id < kLockers; ++id) EXPECT_EQ(s.kids.wait(id), 0) << "locker " << id;
    EXPECT_EQ(s.board.order_len.load(), kLockers);
    for (int turn = 0; turn < kLockers; ++turn) {
      const int id = s.board.order[turn].load();
      r.in_order = r.in_order && id == turn;  // they queued in id order
      r.jumped = r.jumped || s.board.serving_seen[id].load() != ticket[id] + 1;
    }
    return r;
  });
}

// Starvation mode: a head kept from the mutex past its first, 10 ms, attempt
// closes the fast path. A holder that lets go and at once takes the lock
// again (a thread in a loop; the mutex is not fair, so it would usually win)
// must then queue behind the head and get the lock only after it.
TEST(TicketQueue, AReleaserTakingTheLockAgainQueuesBehindAStarvingHead) {
  until_served_in_order([&](Scene& s) {
    s.kids.start([&] { return queued_writer(s.path, s.board, 0, &s.view); });
    await_ready(s.board, 1);
    EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
    const std::uint32_t ticket = let_queue(s.board, s.view, 0);
    EXPECT_TRUE(eventually([&] { return s.view->starving.load() == 1; }))
        << "the head never starved";
    s.lock->unlock_write();
    EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
    const bool head_first = s.board.order_len.load() == 1;
    s.lock->unlock_write();
    EXPECT_EQ(s.kids.wait(0), 0);
    return Round{head_first, s.board.serving_seen[0].load() != ticket + 1};
  });
}

// Writers looping on the lock (each takes it again as soon as it lets go)
// must let a writer that comes along in, and never two at a time. (Whether
// that takes starvation mode depends on the scheduler: the test above is the
// one that needs it.)
TEST(TicketQueue, LoopingWritersLetAnotherWriterIn) {
  Scene s;
  write_into_stream(s, 2, [&](LockFile& mine) {
    while (s.board.stop.load() == 0) {
      mine.lock_write();
      hold_briefly(s.board);
      mine.unlock_write();
    }
    return 0;
  });
}

// Readers streaming in (two threads a process, so that no slot ever drains by
// itself) must not keep a writer out: once it has announced itself, new
// reads wait behind it, and the ones inside drain.
TEST(ReaderSlots, StreamingReadersDoNotStarveAWriter) {
  Scene s;
  write_into_stream(s, 2, [&](LockFile& mine) {
    std::atomic<bool> failed = false;
    auto read_loop = [&](std::chrono::microseconds offset) {
      std::this_thread::sleep_for(offset);  // the two threads' reads overlap
      while (s.board.stop.load() == 0) {
        if (!mine.try_enter_read() && mine.wait_and_enter_read() != WriteResult::ok) {
          failed = true;
          return;
        }
        hold_briefly(s.board);
        mine.exit_read();
      }
    };
    std::thread other(read_loop, 500us);
    read_loop(0us);
    other.join();
    return failed ? 2 : 0;
  });
}

// A writer killed holding the lock: the robust mutex hands it on, and exactly
// one of those waiting for it (a writer, or a reader that found the writer in
// its way) is told the owner died; it then holds the write lock. After that,
// the lock works as before.
TEST(DeadLocker, AHolderKilledWithTheLockIsReportedToOneWaiter) {
  Scene s;
  const int holder = s.kids.start([&]() -> int {
    auto mine = attach(s.path);
    mine->lock_write();
    s.board.ready[0] = 1;
    linger();
  });
  ASSERT_TRUE(await(s.board.ready[0]));
  s.kids.start([&] { return queued_writer(s.path, s.board, 1); });
  s.kids.start([&] { return queued_reader(s.path, s.board, 2); });
  ASSERT_TRUE(await(s.board.ready[1]));
  ASSERT_TRUE(await(s.board.ready[2]));
  let_queue(s.board, s.view, 1);
  let_queue(s.board, s.view, 2);
  EXPECT_EQ(s.kids.kill(holder), 128 + SIGKILL);
  const int writer_status = s.kids.wait(1);
  const int reader_status = s.kids.wait(2);
  ASSERT_EQ(s.board.order_len.load(), 2);
  const int first = s.board.order[0].load();
  const int second = s.board.order[1].load();
  EXPECT_EQ(s.board.result[first].load(), static_cast<int>(WriteResult::owner_died));
  EXPECT_EQ(s.board.result[second].load(), static_cast<int>(WriteResult::ok));
  EXPECT_EQ(first == 1 ? writer_status : reader_status, 2);  // exits 2 on owner_died
  EXPECT_EQ(second == 1 ? writer_status : reader_status, 0);
  // Survivors go on, the parent too: the death was reported once, not again.
  EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
  s.lock->unlock_write();
  ASSERT_TRUE(s.lock->try_enter_read());
  s.lock->exit_read();
}

// Waiters killed while queued (one at the head, one further back) hold
// tickets that will never be used: the queue jumps them once it has stood
// still with the mutex free, and everyone alive gets the lock.
TEST(DeadLocker, WaitersKilledInTheQueueDoNotBlockTheOthers) {
  Scene s;
  constexpr int kLockers = 4;  // 0 and 2 die in the queue, 1 and 3 live
  for (int id = 0; id < kLockers; ++id)
    s.kids.start([&, id] { return queued_writer(s.path, s.board, id); });
  await_ready(s.board, kLockers);
  ASSERT_EQ(s.lock->lock_write(), WriteResult::ok);
  for (int id = 0; id < kLockers; ++id) let_queue(s.board, s.view, id);
  EXPECT_EQ(s.kids.kill(0), 128 + SIGKILL);
  EXPECT_EQ(s.kids.kill(2), 128 + SIGKILL);
  s.lock->unlock_write();
  EXPECT_EQ(s.kids.wait(1), 0);
  EXPECT_EQ(s.kids.wait(3), 0);
  ASSERT_EQ(s.board.order_len.load(), 2);
  EXPECT_NE(s.board.order[0].load(), s.board.order[1].load());
  for (int turn = 0; turn < 2; ++turn)
    EXPECT_EQ(s.board.order[turn].load() % 2, 1) << "a dead waiter took a turn";
  // The queue is usable again: the parent and a new process both get the lock.
  EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
  s.lock->unlock_write();
  s.board.go[5] = 1;
  const int late = s.kids.start([&] { return queued_writer(s.path, s.board, 5); });
  EXPECT_EQ(s.kids.wait(late), 0);
  EXPECT_EQ(s.board.order_len.load(), 3);
}

// A process killed inside a read leaves its slot's count at 1. Writers skip
// the slot once the kernel says its owner is gone, and the next handle to
// attach takes the slot over, count cleared.
TEST(ReaderSlots, ASlotOfAReaderKilledInsideIsSkippedThenReclaimed) {
  Scene s;
  const int reader = s.kids.start([&]() -> int {
    auto mine = attach(s.path);  // slot 1
    if (!mine->try_enter_read()) return 4;
    s.board.ready[0] = 1;
    linger();
  });
  ASSERT_TRUE(await(s.board.ready[0]));
  ASSERT_EQ(s.view->slot_high.load(), 2u);
  EXPECT_EQ(s.view->slots[1].readers.load(), 1u);
  EXPECT_EQ(s.lock->attached(), 2u);
  EXPECT_EQ(s.kids.kill(reader), 128 + SIGKILL);
  EXPECT_EQ(s.view->slots[1].readers.load(), 1u);  // left behind
  EXPECT_EQ(s.lock->attached(), 1u);               // but not counted as a handle
  EXPECT_EQ(s.lock->lock_write(),
            WriteResult::ok);  // with kPatience: busy means it waited for the dead
  s.lock->unlock_write();
  // The next handle to attach takes the lowest free slot: the dead reader's.
  auto next = attach(s.path);
  EXPECT_EQ(s.view->slot_high.load(), 2u);
  EXPECT_EQ(s.view->slots[1].readers.load(), 0u);
  EXPECT_EQ(s.lock->attached(), 2u);
  ASSERT_TRUE(next->try_enter_read());
  EXPECT_EQ(s.view->slots[1].readers.load(), 1u);
  next->exit_read();
  EXPECT_EQ(s.view->slots[1].readers.load(), 0u);
}

// The write lock in two steps (a compaction's last catch-up): holding only
// the writer mutex admits readers and holds writers; exclude_readers_too then
// turns readers away until unlock_write.
TEST(TwoStep, AWritersOnlyHolderAdmitsReadersAndHoldsWriters) {
  Scene s;
  Board& b = s.board;
  ASSERT_EQ(s.lock->lock_writers(), WriteResult::ok);
  const int writer = s.kids.start([&] {
    auto lock = attach(s.path);
    b.ready[0] = 1;
    const WriteResult r = lock->lock_write();
    b.took_turn(0);
    lock->unlock_write();
    return r == WriteResult::ok ? 0 : 2;
  });
  const int reader = s.kids.start([&] {
    auto lock = attach(s.path);
    if (!await(b.go[1])) return 3;
    if (!lock->try_enter_read()) return 4;  // nobody is writing: a reader gets in at once
    lock->exit_read();
    b.done.fetch_add(1);
    if (!await(b.go[2])) return 3;
    return lock->try_enter_read() ? 5 : 0;  // now the parent holds the whole write lock
  });
  ASSERT_TRUE(eventually([&] { return b.ready[0].load() == 1 && s.view.next_ticket() != 0; }))
      << "the writer should queue behind the writers-only holder";
  b.go[1] = 1;
  ASSERT_TRUE(eventually([&] { return b.done.load() == 1; })) << "a reader should get in";
  EXPECT_EQ(b.order_len.load(), 0) << "a writer got in past the writers-only holder";
  s.lock->exclude_readers_too();
  EXPECT_EQ(s.view->writer_active.load(), 1U);
  b.go[2] = 1;
  EXPECT_EQ(s.kids.wait(reader), 0) << "the reader should be turned away by the whole write lock";
  EXPECT_EQ(b.order_len.load(), 0);
  s.lock->unlock_write();
  EXPECT_EQ(s.kids.wait(writer), 0);
  EXPECT_EQ(b.order_len.load(), 1);
}

// A reader that queued for the mutex (a writer was inside) and finds a
// writers-only holder there when its turn comes goes in beside that holder,
// instead of waiting until it lets go (a compaction's last catch-up and its
// syncs: a get waited 8.8 ms behind them in a trace).
TEST(TwoStep, AQueuedReaderGetsInBesideAWritersOnlyHolder) {
  Scene s;
  Board& b = s.board;
  ASSERT_EQ(s.lock->lock_write(), WriteResult::ok);  // the writer inside
  const int holder = s.kids.start([&] {
    auto lock = attach(s.path);
    b.ready[0] = 1;
    if (lock->lock_writers() != WriteResult::ok) return 2;
    b.inside = 1;
    if (!await(b.go[0])) return 3;  // holds the writer mutex until the parent says
    lock->unlock_writers();
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return b.ready[0].load() == 1 && s.view.next_ticket() == 1; }))
      << "the writers-only locker should queue behind the writer";
  const int reader = s.kids.start([&] {
    auto lock = attach(s.path);
    b.ready[1] = 1;
    if (lock->try_enter_read()) return 4;  // the writer is inside: turned away
    if (lock->wait_and_enter_read() != WriteResult::ok) return 5;
    const bool beside = b.inside.load() == 1 && b.go[0].load() == 0;
    lock->exit_read();
    b.done.fetch_add(1);
    return beside ? 0 : 6;
  });
  ASSERT_TRUE(eventually([&] { return b.ready[1].load() == 1 && s.view.next_ticket() == 2; }))
      << "the reader should queue behind the writers-only locker";
  s.lock->unlock_write();
  ASSERT_TRUE(eventually([&] { return b.inside.load() == 1; }));
  EXPECT_TRUE(eventually([&] { return b.done.load() == 1; }))
      << "the reader should get in while the writers-only holder holds the mutex";
  b.go[0] = 1;
  EXPECT_EQ(s.kids.wait(holder), 0);
  EXPECT_EQ(s.kids.wait(reader), 0);
  // The reader passed its turn on: the queue is empty and the lock free.
  EXPECT_EQ(s.view->serving.load(), s.view.next_ticket());
  EXPECT_EQ(s.lock->lock_write(), WriteResult::ok);
  s.lock->unlock_write();
}

// Write pacing (lock_pacing.cpp): while a compaction paces the writers, every
// handle's writes begin a gap apart; the pacing ends when it is stopped, or
// by itself when its span runs out, as when the pacer dies.
TEST(Pacing, WritesOfEveryHandleBeginAGapApart) {
  Scene s;
  EXPECT_FALSE(s.lock->writes_paced());
  s.lock->pace_writes(2ms, 1000ms);
  EXPECT_TRUE(s.lock->writes_paced());
  constexpr int kTurns = 10;
  const int child = s.kids.start([&] {
    auto lock = attach(s.path);
    if (!lock->writes_paced()) return 2;  // the pacing is in the shared lock file
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < kTurns; ++i) lock->wait_for_pace();
    // Turns are handed out a gap apart and none returns before its own: a
    // lower bound, which no scheduling delay can break.
    return std::chrono::steady_clock::now() - start >= (kTurns - 1) * 2ms ? 0 : 3;
  });
  EXPECT_EQ(s.kids.wait(child), 0);
  s.lock->stop_pacing();
  EXPECT_FALSE(s.lock->writes_paced());
}

TEST(Pacing, APacerThatDiesStopsPacingWhenItsSpanEnds) {
  Scene s;
  Board& b = s.board;
  const int pacer = s.kids.start([&] {
    auto lock = attach(s.path);
    lock->pace_writes(1ms, 300ms);
    b.ready[0] = lock->writes_paced() ? 1 : 2;
    ::kill(::getpid(), SIGKILL);  // dies pacing, without a word
    return 0;
  });
  ASSERT_TRUE(eventually([&] { return b.ready[0].load() != 0; }));
  EXPECT_EQ(b.ready[0].load(), 1) << "the pacer saw no pacing";
  (void)s.kids.wait(pacer);
  EXPECT_TRUE(eventually([&] { return !s.lock->writes_paced(); })) << "pacing outlived its span";
  s.lock->wait_for_pace();  // returns at once: nothing to wait for
}
