// kvbench's maintenance workloads (kvbench_maintenance.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <nlohmann/json.hpp>

// How long a reader and a writer thread wait, call by call, while another
// process compacts the store back to back; prints the figures and fills `out`.
// Exits 1 on a wrong answer.
void run_maintenance(const std::filesystem::path& dir, std::size_t n, std::size_t value_size, std::uint64_t seed,
                     nlohmann::ordered_json& out);
