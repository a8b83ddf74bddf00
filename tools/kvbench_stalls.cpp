#include "kvbench_stalls.hpp"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <cstdio>

namespace kvbench {

namespace {
std::atomic<bool> g_off{false};
}  // namespace

void StallWatch::turn_off() noexcept { g_off.store(true); }

StallWatch::StallWatch() {
  if (g_off.load()) return;
  thread_ = std::thread([this] { watch(); });
  while (!started_.load(std::memory_order_acquire)) std::this_thread::yield();
}

StallWatch::~StallWatch() { stop(); }

void StallWatch::stop() {
  done_.store(true, std::memory_order_relaxed);
  if (thread_.joinable()) thread_.join();
}

void StallWatch::watch() {
  sched_param p{};
  p.sched_priority = sched_get_priority_max(SCHED_FIFO);
  real_time_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
  started_.store(true, std::memory_order_release);
  if (!real_time_) return;
  constexpr auto kSleep = std::chrono::milliseconds(1);
  // Later than this: a stall (on the idle machine, one wake-up in 30 s was
  // later than that: 4.3 ms).
  constexpr auto kLate = std::chrono::milliseconds(4);
  auto before = Clock::now();
  while (!done_.load(std::memory_order_relaxed)) {
    std::this_thread::sleep_for(kSleep);
    const auto now = Clock::now();
    if (now - before > kSleep + kLate) stalls_.emplace_back(before + kSleep, now);
    before = now;
  }
}

bool StallWatch::overlaps(Clock::time_point from, Clock::time_point to) const noexcept {
  // The first stall that ends after `from`, then whether it begins before `to`.
  const auto it = std::upper_bound(stalls_.begin(), stalls_.end(), from,
                                   [](Clock::time_point t, const auto& s) { return t < s.second; });
  return it != stalls_.end() && it->first < to;
}

double StallWatch::longest_ms() const noexcept {
  double ms = 0;
  for (const auto& [b, e] : stalls_) ms = std::max(ms, std::chrono::duration<double, std::milli>(e - b).count());
  return ms;
}

void SlowCalls::report(const StallWatch& w, nlohmann::ordered_json& out, bool print) const {
  if (!w.real_time()) {
    if (print) std::printf("  %-14s (CPU stalls not watched: turned off, or no real-time priority)\n", "");
    return;
  }
  double worst = worst_fast_us_;
  std::size_t in_stalls = 0;
  for (const auto& [start, us] : slow_) {
    const auto end = start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double, std::micro>(us));
    if (w.overlaps(start, end)) {
      ++in_stalls;
    } else {
      worst = std::max(worst, us);
    }
  }
  if (print) std::printf("  %-14s %zu calls overlapped a CPU stall; worst of the others %9.1f us\n", "", in_stalls, worst);
  out["calls_in_stalls"] = in_stalls;
  out["worst_outside_stalls_us"] = worst;
}

}  // namespace kvbench
