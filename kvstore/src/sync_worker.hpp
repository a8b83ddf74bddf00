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

class SyncWorker {
 public:
  SyncWorker() = default;
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
  // the staged ranges and hands the wait and the flush to the thread.
  void start() noexcept;
  // Syncs staged (and so counted) so far, and the last one done: a change
  // made before a sync was staged is durable once that sync is done.
  [[nodiscard]] std::uint64_t staged_count() const noexcept { return staged_count_; }
  [[nodiscard]] std::uint64_t done_count() const noexcept { return done_count_; }
  // Blocks until the sync staged last is over, or for `most` at most.
  void wait(std::chrono::milliseconds most);

 private:
  void run();
  // SYNC_FILE_RANGE_WRITE of the staged ranges.
  void begin_write_back() noexcept;

  enum class State { idle, staged, starting, queued, running, done, failed };
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
