// The write lock: the robust writer mutex and the ticket queue in front of it
// (lock.hpp, "Writers"), and what a writer does once it holds the mutex.
#include <algorithm>
#include <cerrno>
#include <ctime>

#include "kvstore/error.hpp"
#include "lock.hpp"
#include "lock_futex.hpp"

namespace kvstore::detail {
namespace {

// A queue whose head has not moved for this long, with the mutex free, is jumped.
constexpr auto kQueueStall = std::chrono::milliseconds(20);
// A queue head kept from the mutex this long closes the fast path (Go's sync.Mutex
// uses 1 ms; on two cores shared by ten processes that is a scheduling delay, not starvation).
constexpr auto kStarving = std::chrono::milliseconds(10);
// Attempts a turned-away reader makes before it queues (wait_and_enter_read).
constexpr int kReadRetries = 8;
// How often a reader at the head of the queue looks whether the holder of
// the mutex admits readers.
constexpr auto kReaderLook = std::chrono::milliseconds(1);

timespec realtime_deadline(std::chrono::microseconds timeout) {
  timespec ts{};
  ::clock_gettime(CLOCK_REALTIME, &ts);
  const auto us = timeout.count();
  ts.tv_sec += static_cast<time_t>(us / 1'000'000);
  ts.tv_nsec += static_cast<long>((us % 1'000'000) * 1'000);
  if (ts.tv_nsec >= 1'000'000'000) {
    ts.tv_sec += 1;
    ts.tv_nsec -= 1'000'000'000;
  }
  return ts;
}

// Whether a lock call's result `rc` means we hold the mutex now; a dead
// previous owner (EOWNERDEAD) is reported through `r` after making it usable.
// The dead owner may also have put a new data file in place without telling
// the other handles (a compaction killed between its rename and the epoch's
// bump): the epoch moves on, and every handle looks at the path again.
bool took_mutex(LockShared& shared, int rc, LockFile::WriteResult& r) noexcept {
  if (rc == EOWNERDEAD) {
    pthread_mutex_consistent(&shared.writer);
    shared.file_epoch.fetch_add(1, std::memory_order_acq_rel);
    r = LockFile::WriteResult::owner_died;
    return true;
  }
  return rc == 0;
}

// Ticket order with wrap-around: is `a` at or before `b`?
bool not_after(std::uint32_t a, std::uint32_t b) noexcept { return static_cast<std::int32_t>(a - b) <= 0; }

}  // namespace

LockFile::WriteResult LockFile::lock_mutex(bool for_read) {
  auto lock_until = [&](std::chrono::steady_clock::time_point until) {
    const auto left = std::chrono::duration_cast<std::chrono::microseconds>(until - std::chrono::steady_clock::now());
    const timespec ts = realtime_deadline(std::max(left, std::chrono::microseconds(0)));
    return pthread_mutex_timedlock(&shared_->writer, &ts);
  };
  // Fast path, while nobody starves: take the mutex if it is free, ahead of
  // any queue. Letting a running thread take it again is what keeps a
  // stream of writes from paying a context switch per write.
  WriteResult r = WriteResult::ok;
  if (shared_->starving.load(std::memory_order_acquire) == 0 &&
      took_mutex(*shared_, pthread_mutex_trylock(&shared_->writer), r)) {
    return r;
  }
  // The clock only from here: the fast path is most writes.
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + timeout_;
  const std::uint32_t ticket = shared_->next_ticket.fetch_add(1, std::memory_order_acq_rel);
  if (!wait_for_turn(ticket, deadline, r)) {
    // Head of the queue. Should the fast path keep beating us to the mutex
    // for longer than kStarving, close it until the queue is served in order.
    const auto starving_at = std::chrono::steady_clock::now() + kStarving;
    int rc = 0;
    if (for_read) {
      // A holder of the writer mutex alone (lock_writers: a compaction's
      // last catch-up, and its syncs) admits readers, for as long as it
      // holds it: a reader at the head goes in beside it and passes its
      // turn on, instead of waiting for all of it (a get waited 8.8 ms so).
      for (;;) {
        rc = lock_until(std::min(deadline, std::chrono::steady_clock::now() + kReaderLook));
        if (rc != ETIMEDOUT || std::chrono::steady_clock::now() >= deadline) break;
        if (try_enter_read()) {
          serve_from(ticket + 1);
          return WriteResult::entered_read;
        }
        if (std::chrono::steady_clock::now() >= starving_at) shared_->starving.store(1, std::memory_order_release);
      }
    } else {
      rc = lock_until(std::min(deadline, starving_at));
      if (rc == ETIMEDOUT && std::chrono::steady_clock::now() < deadline) {
        shared_->starving.store(1, std::memory_order_release);
        rc = lock_until(deadline);
      }
    }
    if (!took_mutex(*shared_, rc, r)) {
      serve_from(ticket + 1);  // let the queue go on without us
      if (rc == ETIMEDOUT) throw_busy();
      throw_errno(path_, "lock", rc);
    }
  }
  // Back to the fast path once the queue moves quickly again or is empty.
  if (std::chrono::steady_clock::now() - start < kStarving ||
      shared_->next_ticket.load(std::memory_order_acquire) == ticket + 1) {
    shared_->starving.store(0, std::memory_order_release);
  }
  serve_from(ticket + 1);
  return r;
}

bool LockFile::wait_for_turn(std::uint32_t ticket, std::chrono::steady_clock::time_point deadline,
                             WriteResult& r) {
  std::uint32_t seen = shared_->serving.load(std::memory_order_acquire);
  auto moved = std::chrono::steady_clock::now();
  for (std::uint32_t spins = 0; !not_after(ticket, seen); ++spins) {
    if (spins < 128) {
      cpu_relax();
    } else {
      futex_wait_for(shared_->serving, seen, std::chrono::microseconds(2000));
      const auto now = std::chrono::steady_clock::now();
      if (now - moved >= kQueueStall) {
        // The queue has not moved. If the mutex is held, a long operation
        // (a compaction) is under way: keep waiting. If it is free, the
        // ticket whose turn it is belongs to a waiter that died: jump it.
        if (took_mutex(*shared_, pthread_mutex_trylock(&shared_->writer), r)) return true;
        moved = now;
      }
      if (now >= deadline) {
        throw_busy();  // our ticket stays in the queue; those behind it jump it after kQueueStall
      }
    }
    const std::uint32_t now_serving = shared_->serving.load(std::memory_order_acquire);
    if (now_serving != seen) {
      seen = now_serving;
      moved = std::chrono::steady_clock::now();
    }
  }
  return false;
}

void LockFile::throw_busy() const {
  throw Error(Errc::busy, path_ + ": write lock not granted within " + std::to_string(timeout_.count()) + " ms");
}

void LockFile::serve_from(std::uint32_t ticket) noexcept {
  // Only forward: a locker that jumped the queue may hold a later ticket.
  std::uint32_t cur = shared_->serving.load(std::memory_order_acquire);
  while (!not_after(ticket, cur) &&
         !shared_->serving.compare_exchange_weak(cur, ticket, std::memory_order_acq_rel)) {
  }
  if (shared_->next_ticket.load(std::memory_order_acquire) != ticket) futex_wake_all(shared_->serving);
}

LockFile::WriteResult LockFile::lock_write() {
  if (slotless()) throw Error(Errc::read_only, path_ + ": lock file is not writable");
  const WriteResult r = lock_mutex();
  exclude_readers_too();
  return r;
}

void LockFile::unlock_write() noexcept {
  seq_exit();
  shared_->writer_active.store(0, std::memory_order_seq_cst);
  pthread_mutex_unlock(&shared_->writer);
}

LockFile::WriteResult LockFile::wait_and_enter_read() {
  // The writer that turned us away usually leaves within microseconds, and
  // one holding only the writer mutex (lock_writers) admits readers: retry a
  // few times before queueing behind the writers, which is what keeps a
  // stream of writes from starving this read.
  for (int attempt = 0; attempt < kReadRetries; ++attempt) {
    for (int spins = 0; spins < 256 && shared_->writer_active.load(std::memory_order_acquire) != 0; ++spins) {
      cpu_relax();
    }
    if (try_enter_read()) return WriteResult::ok;
  }
  const WriteResult r = lock_mutex(true);
  if (r == WriteResult::entered_read) return WriteResult::ok;
  if (r == WriteResult::ok) {
    // Enter while holding the mutex (no writer can be active now): the writer
    // queued next must then wait for this read, so a reader blocked by
    // writers gets its turn in ticket order and is never starved by them.
    slot_->readers.fetch_add(1, std::memory_order_seq_cst);
    pthread_mutex_unlock(&shared_->writer);
    return r;
  }
  seq_enter();
  exclude_readers();  // the writer died: we hold its mutex now, and act as the writer
  return r;
}

}  // namespace kvstore::detail
