// kvbench's one way of timing contenders against each other: each does the
// same `count` operations, cut into `slices` turns taken in rotation, so that
// machine noise and cache pollution fall on all of them alike.
#pragma once

#include <chrono>
#include <cstddef>
#include <vector>

// `run(c, from, to)` performs operations [from, to) of contender c (and
// whatever must finish inside the timing, such as a flush). Returns ns/op
// per contender.
template <class Run>
std::vector<double> time_in_slices(std::size_t contenders, std::size_t count, int slices, Run&& run) {
  std::vector<double> ns(contenders, 0);
  for (int s = 0; s < slices; ++s) {
    const std::size_t from = count * static_cast<std::size_t>(s) / static_cast<std::size_t>(slices);
    const std::size_t to = count * static_cast<std::size_t>(s + 1) / static_cast<std::size_t>(slices);
    for (std::size_t c = 0; c < contenders; ++c) {
      const auto t0 = std::chrono::steady_clock::now();
      run(c, from, to);
      ns[c] += std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    }
  }
  for (double& v : ns) v /= static_cast<double>(count);
  return ns;
}
