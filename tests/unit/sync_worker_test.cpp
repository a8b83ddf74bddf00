// The sync thread of a writable handle (sync_worker.hpp): who starts the
// write-back of a staged sync (the writer, unless a start waited for the
// device lately), and that a sync completes whoever starts it.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "../support/temp_dir.hpp"
#include "sync_worker.hpp"

using kvstore::detail::BeginPolicy;
using kvstore::detail::FileRange;
using kvstore::detail::RecordsEnd;
using kvstore::detail::SyncWorker;
using namespace std::chrono_literals;

namespace {

TEST(BeginPolicy, TheWriterBeginsUntilABeginIsSlowThenTheThreadForAWhile) {
  BeginPolicy p;
  const auto t = BeginPolicy::Clock::now();
  EXPECT_TRUE(p.writer_begins(t));
  p.began(t, t + 1ms);  // an ordinary start: 1 ms a MiB
  EXPECT_TRUE(p.writer_begins(t + 1ms));
  p.began(t, t + BeginPolicy::kSlow + 1ms);  // behind a busy device
  const auto after = t + BeginPolicy::kSlow + 1ms;
  EXPECT_FALSE(p.writer_begins(after));
  EXPECT_FALSE(p.writer_begins(after + BeginPolicy::kFor - 1ms));
  EXPECT_TRUE(p.writer_begins(after + BeginPolicy::kFor));
  p.began(after + BeginPolicy::kFor, after + BeginPolicy::kFor + 2ms);  // fast again: stays with the writer
  EXPECT_TRUE(p.writer_begins(after + BeginPolicy::kFor + 2ms));
}

// Stages a sync of a file's first MiB on `w`, starts it as a writer would
// (unless `start` is false: a writer that never comes back to it), and waits
// for its outcome. Returns what start() said.
bool sync_once(SyncWorker& w, int fd, SyncWorker::Outcome& outcome, bool start = true) {
  const std::vector<FileRange> ranges{{0, 1 << 20}};
  EXPECT_TRUE(w.stage(fd, ranges, RecordsEnd{1, 1 << 20}));
  const bool began = start && w.start();
  RecordsEnd reached;
  const auto deadline = std::chrono::steady_clock::now() + 60s;  // a liveness bound, not a speed one
  do {
    w.wait(100ms);
    outcome = w.collect(reached);
  } while (outcome == SyncWorker::Outcome::busy && std::chrono::steady_clock::now() < deadline);
  if (outcome == SyncWorker::Outcome::done) {
    EXPECT_EQ(reached.used, std::uint64_t{1} << 20);
  }
  return began;
}

class SyncWorkerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = (dir_.path() / "f").string();
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    ASSERT_GE(fd_, 0);
    const std::string mib(1 << 20, 'x');
    ASSERT_EQ(::pwrite(fd_, mib.data(), mib.size(), 0), static_cast<ssize_t>(mib.size()));
  }
  void TearDown() override { ::close(fd_); }

  kvstore::test::TempDir dir_;
  std::string path_;
  int fd_ = -1;
};

TEST_F(SyncWorkerTest, TheWriterStartsTheWriteBackAndTheThreadFinishesIt) {
  SyncWorker w;
  SyncWorker::Outcome outcome{};
  EXPECT_TRUE(sync_once(w, fd_, outcome));
  EXPECT_EQ(outcome, SyncWorker::Outcome::done);
  EXPECT_EQ(w.done_count(), 1u);
}

TEST_F(SyncWorkerTest, AfterASlowStartTheThreadStartsItAndStillFinishesIt) {
  BeginPolicy slow;
  slow.hand_off_until = BeginPolicy::Clock::now() + 1h;
  SyncWorker w(slow);
  for (int i = 1; i <= 3; ++i) {
    SyncWorker::Outcome outcome{};
    EXPECT_FALSE(sync_once(w, fd_, outcome)) << "sync " << i;
    EXPECT_EQ(outcome, SyncWorker::Outcome::done) << "sync " << i;
    EXPECT_EQ(w.done_count(), static_cast<std::uint64_t>(i));
  }
}

TEST_F(SyncWorkerTest, ASyncNobodyStartsIsTakenOverByTheThread) {
  SyncWorker w;
  SyncWorker::Outcome outcome{};
  (void)sync_once(w, fd_, outcome, false);
  EXPECT_EQ(outcome, SyncWorker::Outcome::done);
  EXPECT_FALSE(w.start());  // nothing staged any more
}

}  // namespace
