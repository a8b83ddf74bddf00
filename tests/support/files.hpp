// Whole files as strings: how the tests read a store's bytes and write back
// damaged ones.
#pragma once

#include <fstream>
#include <iterator>
#include <string>

namespace kvstore::test {

inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

}  // namespace kvstore::test
