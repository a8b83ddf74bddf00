// What the kernel is told about a mapping of a data file (mapping.cpp): the
// part a writable handle grows the file by asks for no read-around (a fault
// there, in fallocated and unwritten blocks, zeroed the whole read-ahead
// window around it in the put that happened to fault), the rest keeps it, and
// so does a read-only mapping. Read back from the process's own
// /proc/self/smaps, where "rr" among a VMA's flags is VM_RAND_READ
// (MADV_RANDOM).
#include <fcntl.h>
#include <unistd.h>

#include <cstdint>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "../support/temp_dir.hpp"
#include "mapping.hpp"

using kvstore::detail::Fd;
using kvstore::detail::Mapping;
using kvstore::test::TempDir;

namespace {

struct Vma {
  std::uintptr_t begin;
  std::uintptr_t end;
  std::vector<std::string> flags;
};

std::vector<Vma> vmas() {
  std::vector<Vma> out;
  std::ifstream in("/proc/self/smaps");
  std::string line;
  while (std::getline(in, line)) {
    unsigned long long b = 0;
    unsigned long long e = 0;
    char dash = 0;
    std::istringstream head(line);
    if (line.rfind("VmFlags:", 0) == 0) {
      std::istringstream f(line.substr(8));
      std::string flag;
      while (f >> flag) out.back().flags.push_back(flag);
    } else if ((head >> std::hex >> b >> dash >> e) && dash == '-') {
      out.push_back({static_cast<std::uintptr_t>(b), static_cast<std::uintptr_t>(e), {}});
    }
  }
  return out;
}

// Whether every page of [p, p + bytes) lies in a VMA with the flag "rr"
// (false if any page does not). Fails the test if part of the range is not
// mapped at all.
bool reads_no_pages_around(const char* p, std::uint64_t bytes) {
  auto at = reinterpret_cast<std::uintptr_t>(p);
  const std::uintptr_t end = at + bytes;
  const std::vector<Vma> all = vmas();
  while (at < end) {
    bool found = false;
    for (const Vma& v : all) {
      if (at < v.begin || at >= v.end) continue;
      found = true;
      bool rr = false;
      for (const std::string& f : v.flags) rr = rr || f == "rr";
      if (!rr) return false;
      at = v.end;
      break;
    }
    if (!found) {
      ADD_FAILURE() << "address " << std::hex << at << " is not mapped";
      return false;
    }
  }
  return true;
}

Fd open_file(const std::string& path, std::uint64_t size) {
  Fd fd(::open(path.c_str(), O_RDWR | O_CREAT, 0644));
  EXPECT_TRUE(fd);
  EXPECT_EQ(::ftruncate(fd.get(), static_cast<off_t>(size)), 0);
  return fd;
}

}  // namespace

TEST(Mapping, AWritableMappingAsksForNoReadAroundWhereItGrew) {
  constexpr std::uint64_t kKiB = 1024;
  TempDir dir;
  const std::string path = dir.file("w.kv");
  Fd fd = open_file(path, 64 * kKiB);
  Mapping m(fd.get(), 64 * kKiB, true, path);
  EXPECT_FALSE(reads_no_pages_around(m.base(), 64 * kKiB));
  ASSERT_EQ(::ftruncate(fd.get(), 1024 * kKiB), 0);
  m.resize(1024 * kKiB, path);  // in place: a mapping of the tail of its own
  EXPECT_FALSE(reads_no_pages_around(m.base(), 64 * kKiB));
  EXPECT_TRUE(reads_no_pages_around(m.base() + 64 * kKiB, 960 * kKiB));
  ASSERT_EQ(::ftruncate(fd.get(), 64 * 1024 * kKiB), 0);
  // Past the reservation: a new mapping of the whole file, in which all that
  // this mapping grew stays without read-around.
  m.resize(64 * 1024 * kKiB, path);
  EXPECT_FALSE(reads_no_pages_around(m.base(), 64 * kKiB));
  EXPECT_TRUE(reads_no_pages_around(m.base() + 64 * kKiB, 64 * 1024 * kKiB - 64 * kKiB));
}

TEST(Mapping, AReadOnlyMappingKeepsReadAroundWhereItGrew) {
  TempDir dir;
  const std::string path = dir.file("r.kv");
  Fd fd = open_file(path, 64 * 1024);
  Mapping m(fd.get(), 64 * 1024, false, path);
  ASSERT_EQ(::ftruncate(fd.get(), 1024 * 1024), 0);
  m.resize(1024 * 1024, path);
  EXPECT_FALSE(reads_no_pages_around(m.base(), m.size()));
}
