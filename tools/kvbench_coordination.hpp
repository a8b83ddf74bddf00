// kvbench's coordination workloads (kvbench_coordination.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

// Runs every coordination workload in `dir`, min(ops, 200000) operations
// each, prints the table and fills `out`. Exits 1 on a wrong answer.
void run_coordination(const std::filesystem::path& dir, std::size_t ops, std::size_t value_size,
                      std::uint64_t seed, nlohmann::ordered_json& out);
