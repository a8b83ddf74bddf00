// Write pacing (lock.hpp): while a compaction catches up, writers of every
// handle take turns at a fixed gap, so that the catch-up converges and the
// writers then wait only for its short last step.
#include <algorithm>
#include <cerrno>

#include "lock.hpp"
#include <time.h>

namespace kvstore::detail {
namespace {

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

constexpr std::int64_t kMaxPacing = 1'000'000'000;  // the longest deadline anyone may set, in ns
constexpr std::int64_t kMaxGap = 10'000'000;        // the longest gap between writes, in ns

}  // namespace

void LockFile::pace_writes(std::chrono::microseconds gap,
                           std::chrono::milliseconds how_long) noexcept {
  if (access_ != Access::full) return;
  const std::int64_t span = std::min<std::int64_t>(kMaxPacing, how_long.count() * 1'000'000);
  shared_->paced_gap.store(std::min<std::int64_t>(kMaxGap, gap.count() * 1000),
                           std::memory_order_relaxed);
  shared_->paced_until.store(monotonic_ns() + span, std::memory_order_release);
}

void LockFile::stop_pacing() noexcept {
  if (access_ != Access::full) return;
  shared_->paced_until.store(0, std::memory_order_release);
}

bool LockFile::writes_paced() const noexcept {
  if (access_ != Access::full) return false;
  const std::int64_t until = shared_->paced_until.load(std::memory_order_acquire);
  if (until == 0) return false;  // the common case: one load, of a line every writer reads anyway
  const std::int64_t now = monotonic_ns();
  // Past, or further ahead than anyone may set it: a process in another time
  // namespace, or a damaged word. Pacing is an optimisation; never trust it
  // to hold writers back longer.
  return now < until && until - now <= kMaxPacing;
}

void LockFile::wait_for_pace() const noexcept {
  if (!writes_paced()) return;
  const std::int64_t now = monotonic_ns();
  // Take the next turn: turns are paced_gap apart, whoever asks.
  const std::int64_t gap =
      std::clamp<std::int64_t>(shared_->paced_gap.load(std::memory_order_relaxed), 0, kMaxGap);
  std::int64_t next = shared_->paced_next.load(std::memory_order_relaxed);
  std::int64_t turn = 0;
  do {
    turn = std::max(next, now);
    if (turn - now > kMaxPacing) turn = now;  // a stale or damaged turn: start afresh
  } while (!shared_->paced_next.compare_exchange_weak(next, turn + gap, std::memory_order_relaxed));
  if (turn <= now) return;
  const timespec at{static_cast<time_t>(turn / 1'000'000'000),
                    static_cast<long>(turn % 1'000'000'000)};
  while (::clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, nullptr) == EINTR) {
  }
}

}  // namespace kvstore::detail
