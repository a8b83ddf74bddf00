// A thread of a writable handle that waits for the device while the writers
// go on (reclaim.cpp). Reclaiming frees a chunk only once the copies of its
// live records are on disk, and hands the chunk to the allocator only once
// the root that no longer leads to it is: a put waited for each of those
// syncs, up to 230 ms behind other write-back, and every reader with it for
// the root's (2 ms each, under the write lock).
//
// The writer starts the write-back itself, after its lock
// (SYNC_FILE_RANGE_WRITE): writing a page back write-protects it, and done
// from a second thread while the writer runs on the other CPU, each page
// costs a TLB shootdown that the writer's own faults then queue behind
// (1M-key churn after a compact: 33.6-38 s against 27-31 s). The thread only
// waits for that write-back and flushes the device.
//
// Unless the device is congested: starting write-back waits for the block
// layer to take the requests, and behind another process's writes a put
// waited 47.7 ms for it (kvbench's compaction with a `dd` writing beside it).
// After a start that took long, the thread starts them for a while (see
// BeginPolicy): the TLB shootdowns cost far less than such a wait. Not
// always: that made kvbench's bulk load 30% slower (1.1 -> 1.47 us a put).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <sys/types.h>

#include "chunk_log.hpp"
#include "mapping.hpp"

namespace kvstore::detail {

// Who starts the write-back of the next sync: the writer, unless a start
// took over kSlow lately (within kFor). Pure, for the tests' sake.
struct BeginPolicy {
  using Clock = std::chrono::steady_clock;
  static constexpr std::chrono::milliseconds kSlow{4};  // a scheduler tick here: a put's worst otherwise
  static constexpr std::chrono::seconds kFor{1};
  Clock::time_point hand_off_until{};

  [[nodiscard]] bool writer_begins(Clock::time_point now) const noexcept { return now >= hand_off_until; }
  void began(Clock::time_point from, Clock::time_point to) noexcept {
    if (to - from > kSlow) hand_off_until = to + kFor;
  }
};

class SyncWorker {
 public:
  SyncWorker() = default;
  explicit SyncWorker(BeginPolicy policy) : policy_(policy) {}
  SyncWorker(const SyncWorker&) = delete;
  SyncWorker& operator=(const SyncWorker&) = delete;
  // Stops the thread once its sync is over.
  ~SyncWorker();

  enum class Outcome { idle, busy, done, failed };
  // What became of the sync staged last: busy until it is over; then done
  // (with where its records end) or failed once, after which the worker is
  // idle again. Write lock.
  Outcome collect(RecordsEnd& reached);
  // Whether a sync is staged, queued or running, without the mutex.
  [[nodiscard]] bool busy() const noexcept { return busy_.load(std::memory_order_acquire); }
  // Write lock, worker idle: stages a sync of `ranges` of the file behind
  // `fd` (duplicated: the handle's descriptor may close first), records
  // ending at `reached`. This thread starts it once it lets the lock go
  // (start()). False if no thread could be started: the caller syncs itself.
  [[nodiscard]] bool stage(int fd, const std::vector<FileRange>& ranges, const RecordsEnd& reached);
  // After the lock, by the thread that staged it: starts the write-back of
  // the staged ranges and hands the wait and the flush to the thread; or,
  // while the device is slow to take writes (BeginPolicy), hands it all to
  // the thread. Returns whether it started the write-back itself.
  bool start() noexcept;
  // Syncs staged (and so counted) so far, and the last one done: a change
  // made before a sync was staged is durable once that sync is done.
  [[nodiscard]] std::uint64_t staged_count() const noexcept { return staged_count_; }
  [[nodiscard]] std::uint64_t done_count() const noexcept { return done_count_; }
  // Blocks until the sync staged last is over, or for `most` at most.
  void wait(std::chrono::milliseconds most);

 private:
  void run();
  // SYNC_FILE_RANGE_WRITE of the staged ranges, timed for the policy. Called
  // with `lock` held: lets the mutex go for the calls, then takes it back.
  void begin_write_back(std::unique_lock<std::mutex>& lock) noexcept;

  // staged: waiting for the writer's start(); handed: the thread starts it;
  // starting: the writer is starting it; queued: started, for the thread to
  // wait for and flush.
  enum class State { idle, staged, handed, starting, queued, running, done, failed };
  BeginPolicy policy_;
  std::mutex m_;
  std::condition_variable changed_;
  State state_ = State::idle;
  std::atomic<bool> busy_{false};  // neither idle, done nor failed
  bool stop_ = false;
  // Kept between syncs, so that the thread never allocates or frees: a
  // process that forks while a thread holds an allocator's lock leaves its
  // child that lock held.
  std::vector<FileRange> ranges_;
  RecordsEnd reached_;
  std::uint64_t staged_count_ = 0;  // write lock
  std::uint64_t done_count_ = 0;    // write lock
  Fd fd_;
  // The file's first page, mapped once for the flush (write_back_and_flush).
  struct FirstPage {
    void* at = nullptr;
    FirstPage() = default;
    FirstPage(const FirstPage&) = delete;
    FirstPage& operator=(const FirstPage&) = delete;
    ~FirstPage();
  } first_page_;
  std::unique_ptr<std::thread> thread_;
  pid_t owner_ = 0;  // the process the thread runs in
};

}  // namespace kvstore::detail
