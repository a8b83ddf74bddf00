// kvbench's maintenance workloads (kvbench_maintenance.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

// How long a reader and a writer thread wait, call by call, while another
// process compacts the store back to back; prints the figures and fills `out`.
// Exits 1 on a wrong answer.
void run_maintenance(const std::filesystem::path& dir, std::size_t n, std::size_t value_size, std::uint64_t seed,
                     nlohmann::ordered_json& out);

// One engine's part in the churn workload: put(i, round) overwrites key i,
// disk_bytes() measures its files.
struct ChurnContender {
  std::string name;
  std::function<void(std::size_t key, std::size_t round)> put;
  std::function<void()> flush;
  std::function<std::uint64_t()> disk_bytes;
};

// Space reclaimed as it goes: `rounds` x n random overwrites of n loaded keys,
// nobody compacting, the contenders taking turns slice by slice; each put
// timed. Prints disk bytes / raw bytes after it and the put latencies.
void run_churn(std::vector<ChurnContender>& contenders, std::size_t n, std::size_t rounds, double raw_bytes,
               std::uint64_t seed, nlohmann::ordered_json& out);
