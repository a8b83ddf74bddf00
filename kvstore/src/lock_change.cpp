// Change notification (Store::change_count, Store::wait_for_change): a count
// in the lock file, bumped under the writer mutex, and a futex on its low bits
// that waiters in every process sleep on (lock.hpp, LockShared).
#include <algorithm>
#include <thread>

#include "lock.hpp"
#include "lock_futex.hpp"

namespace kvstore::detail {

void LockFile::set_change_count(std::uint64_t count) noexcept {
  shared_->change_count.store(count, std::memory_order_release);
  shared_->change_seq.store(static_cast<std::uint32_t>(count), std::memory_order_release);
}

std::uint64_t LockFile::publish_change() noexcept {
  // seq_cst throughout: a waiter announces itself (change_waiters) and then
  // reads the count; we write the count and then read change_waiters. In the
  // single order of these four operations one of us sees the other's write,
  // so either the waiter sees the new count or we see the waiter and wake it.
  const std::uint64_t n = shared_->change_count.load(std::memory_order_relaxed) + 1;
  shared_->change_count.store(n, std::memory_order_seq_cst);
  shared_->change_seq.fetch_add(1, std::memory_order_seq_cst);
  if (shared_->change_waiters.load(std::memory_order_seq_cst) != 0) futex_wake_all(shared_->change_seq);
  return n;
}

std::uint64_t LockFile::wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const noexcept {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  if (slotless()) return poll_for_change(seen, deadline);
  for (;;) {
    shared_->change_waiters.fetch_add(1, std::memory_order_seq_cst);
    const std::uint32_t seq = shared_->change_seq.load(std::memory_order_seq_cst);
    const std::uint64_t now_count = shared_->change_count.load(std::memory_order_seq_cst);
    const auto left = deadline - std::chrono::steady_clock::now();
    if (now_count == seen && left > std::chrono::nanoseconds::zero()) {
      // Returns at once if a change bumped change_seq after we read it.
      futex_wait_for(shared_->change_seq, seq, left);
    }
    shared_->change_waiters.fetch_sub(1, std::memory_order_seq_cst);
    const std::uint64_t count = shared_->change_count.load(std::memory_order_acquire);
    if (count != seen || std::chrono::steady_clock::now() >= deadline) return count;
  }
}

std::uint64_t LockFile::poll_for_change(std::uint64_t seen, std::chrono::steady_clock::time_point deadline) const
    noexcept {
  // A read-only mapping cannot announce a waiter, so committers do not wake
  // us: poll in short futex sleeps (a wake meant for others still ends one).
  for (;;) {
    const std::uint32_t seq = shared_->change_seq.load(std::memory_order_acquire);
    const std::uint64_t count = change_count();
    const auto left = deadline - std::chrono::steady_clock::now();
    if (count != seen || left <= std::chrono::nanoseconds::zero()) return count;
    if (access_ == Access::none) {
      std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(5)));
    } else {
      futex_wait_for(shared_->change_seq, seq, std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(5)));
    }
  }
}

}  // namespace kvstore::detail
