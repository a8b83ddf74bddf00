// A full disk: a small tmpfs mounted by the test (needs CAP_SYS_ADMIN; skipped
// with a message otherwise). Growing fails with no_space, the store stays
// readable and consistent, and writing resumes once there is room again.
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <kvstore/store.hpp>
#include <string>

#include "../support/temp_dir.hpp"

namespace {

struct Mount {
  std::string dir;
  bool ok = false;
  explicit Mount(std::string d) : dir(std::move(d)) {
    std::filesystem::create_directory(dir);
    ok = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=2m") == 0;
  }
  Mount(const Mount&) = delete;
  Mount& operator=(const Mount&) = delete;
  ~Mount() {
    if (ok) ::umount2(dir.c_str(), MNT_DETACH);
  }
};

}  // namespace

TEST(FullDisk, NoSpaceIsAnErrorAndWritingResumes) {
  kvstore::test::TempDir d;
  Mount m(d.file("small"));
  if (!m.ok) GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << "): full-disk test skipped";
  const std::string path = m.dir + "/s.kv";
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  kvstore::Store s = kvstore::Store::open(path, o);
  int stored = 0;
  try {
    for (;; ++stored) s.put(std::string("k").append(std::to_string(stored)), std::string(500, 'd'));
  } catch (const kvstore::Error& e) {
    EXPECT_EQ(e.code(), kvstore::Errc::no_space) << e.what();
  }
  EXPECT_GT(stored, 100);
  EXPECT_EQ(s.size(), static_cast<std::size_t>(stored));
  EXPECT_EQ(s.get("k0"), std::string(500, 'd'));
  EXPECT_EQ(s.get("k" + std::to_string(stored - 1)), std::string(500, 'd'));
  EXPECT_TRUE(s.check().empty());
  // Another process's view: a fresh handle opens it fine.
  EXPECT_EQ(kvstore::Store::open(path, o).size(), static_cast<std::size_t>(stored));
  // Room again: writing resumes.
  ASSERT_EQ(::mount("tmpfs", m.dir.c_str(), "tmpfs", MS_REMOUNT, "size=16m"), 0) << std::strerror(errno);
  for (int i = 0; i < 1000; ++i) s.put("more" + std::to_string(i), std::string(500, 'e'));
  EXPECT_EQ(s.size(), static_cast<std::size_t>(stored + 1000));
  EXPECT_TRUE(s.check().empty());
}
