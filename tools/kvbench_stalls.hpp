// CPU stalls, told apart from the engines' own waits. On this project's
// machine (a 2-core guest, a kernel without preemption) a thread of the
// highest real-time priority that sleeps 1 ms at a time sometimes wakes many
// milliseconds late while the benchmark writes: the guest's CPU did not run
// (perf recorded no sample at all on it for 29 ms, between two samples in
// user code), or it ran kernel code that did not yield, which may be the
// engine's own. StallWatch records those gaps, and SlowCalls tells which of a
// phase's slow calls overlapped one, so that kvbench can print the worst call
// both with and without them. The worst of all calls is the figure that
// counts; the other says how much of it the machine may explain.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace kvbench {

using Clock = std::chrono::steady_clock;

class StallWatch {
 public:
  // Starts the watching thread. Without the right to real-time priority it
  // could be late for the benchmark's own threads: then it records nothing
  // (real_time() false), and nothing is told apart; nor once turned off.
  StallWatch();
  // For every StallWatch made after (kvbench --no-stall-watch). The watch is
  // not free: its thread preempts the one it shares a CPU with every
  // millisecond, which moved the compaction benchmark's 99.9th-percentile put
  // from 0.12-0.16 ms without it to 1.03-1.25 ms with it, and gave the
  // scheduler points to run a waiting reader (worst get 8.0-12.1 ms without,
  // 4.7-8.1 with, outside stalls; session 13, 8 runs each).
  static void turn_off() noexcept;
  StallWatch(const StallWatch&) = delete;
  StallWatch& operator=(const StallWatch&) = delete;
  ~StallWatch();
  // Stops the thread; what it recorded stays readable.
  void stop();
  [[nodiscard]] bool real_time() const noexcept { return real_time_; }
  // Call after stop().
  [[nodiscard]] bool overlaps(Clock::time_point from, Clock::time_point to) const noexcept;
  [[nodiscard]] std::size_t count() const noexcept { return stalls_.size(); }
  [[nodiscard]] double longest_ms() const noexcept;

 private:
  void watch();

  std::atomic<bool> done_{false};
  std::atomic<bool> started_{false};
  bool real_time_ = false;
  std::vector<std::pair<Clock::time_point, Clock::time_point>> stalls_;  // in time order
  std::thread thread_;
};

// The slow calls of one kind (over 1 ms, with when they began), and the worst of the rest.
class SlowCalls {
 public:
  void add(Clock::time_point start, double us) {
    if (us > kSlowUs) {
      slow_.emplace_back(start, us);
    } else if (us > worst_fast_us_) {
      worst_fast_us_ = us;
    }
  }
  // Adds the worst call that overlapped no stall, and how many did, to `out`
  // ("worst_outside_stalls_us", "calls_in_stalls"; nothing if the watch had
  // no real-time priority), and prints them if `print`.
  void report(const StallWatch& w, nlohmann::ordered_json& out, bool print = true) const;

 private:
  static constexpr double kSlowUs = 1000;
  std::vector<std::pair<Clock::time_point, double>> slow_;
  double worst_fast_us_ = 0;
};

}  // namespace kvbench
