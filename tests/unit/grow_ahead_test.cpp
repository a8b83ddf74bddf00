// Growing ahead (grow_ahead.cpp): once the free space runs low, a writer
// allocates the blocks of the file's next grow after its lock, past the end
// of the file, so that the put that grows it only sets the size (inside the
// lock, the allocation waited for the device: 24 ms). Seen from outside: at
// every grow, the blocks of the new size were allocated already (its first
// 4 MiB, for a grow of more).
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <kvstore/store.hpp>
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>

#include "../support/temp_dir.hpp"

using kvstore::Options;
using kvstore::Store;
using kvstore::test::TempDir;

namespace {

struct Usage {
  std::int64_t size = 0;       // st_size
  std::int64_t allocated = 0;  // bytes of blocks, past the end too
};

Usage usage(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return {};
  return {st.st_size, static_cast<std::int64_t>(st.st_blocks) * 512};
}

// Whether this file system allocates past the end of a file (tmpfs, ext4 and XFS do).
bool allocates_past_the_end(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return false;
  const bool ok = ::fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, 1 << 20) == 0;
  ::close(fd);
  ::unlink(path.c_str());
  return ok;
}

}  // namespace

TEST(GrowAhead, EveryGrowFindsItsBlocksAllocated) {
  TempDir dir;
  if (!allocates_past_the_end(dir.file("probe"))) GTEST_SKIP() << "no FALLOC_FL_KEEP_SIZE here";
  const std::string path = dir.file("s.kv");
  Options o;
  o.initial_size = 64 * 1024;
  Store s = Store::open(path, o);
  const std::string value(100, 'v');
  Usage before = usage(path);
  int grows = 0;
  int ahead = 0;
  for (int i = 0; i < 100'000; ++i) {
    char key[24];
    std::snprintf(key, sizeof key, "key%013d", i);
    s.put(key, value);
    const Usage now = usage(path);
    if (now.size != before.size) {
      ++grows;
      // The first grow, from 64 KiB, needs more than a step (index and
      // records at once), which nothing could have known ahead.
      if (before.allocated >= std::min(now.size, before.size + (std::int64_t{4} << 20))) ++ahead;
    }
    before = now;
  }
  ASSERT_GE(grows, 5);
  EXPECT_GE(ahead, grows - 1) << "grows: " << grows;
  EXPECT_EQ(s.size(), 100'000U);
}
