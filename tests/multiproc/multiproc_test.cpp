// Many processes on one store that starts at 64 KiB: writers with distinct
// keys, readers checking throughout, a compactor; a handle opened before all
// of it must read everything without reopening.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <kvstore/store.hpp>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"

namespace {

constexpr int kWriters = 8;
constexpr int kKeys = 4000;

std::string key_of(int w, int i) { return "w" + std::to_string(w) + "/" + std::to_string(i); }
std::string value_of(int w, int i) { return std::string(static_cast<std::size_t>(10 + (i * 31 + w) % 700), static_cast<char>('A' + (w + i) % 50)); }

kvstore::Options tiny() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.lock_timeout = std::chrono::milliseconds(30'000);
  return o;
}

// Runs `fn` in a child process; the child opens its own Store.
pid_t spawn(const std::function<int()>& fn) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    int rc = 1;
    try {
      rc = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", ::getpid(), e.what());
    }
    ::_exit(rc);
  }
  return pid;
}

int wait_all(const std::vector<pid_t>& pids) {
  int failed = 0;
  for (const pid_t p : pids) {
    int status = 0;
    ::waitpid(p, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
  }
  return failed;
}

int writer(const std::string& path, int w) {
  kvstore::Store s = kvstore::Store::open(path, tiny());
  for (int i = 0; i < kKeys; ++i) s.put(key_of(w, i), value_of(w, i));
  s.put("done/" + std::to_string(w), "1");
  return 0;
}

// Reads while the writers run: every value it finds must be the right one.
int reader(const std::string& path) {
  kvstore::Store s = kvstore::Store::open(path, tiny());
  long seen = 0;
  for (int round = 0;; ++round) {
    int done = 0;
    for (int w = 0; w < kWriters; ++w) {
      if (s.contains("done/" + std::to_string(w))) ++done;
      for (int i = round % 13; i < kKeys; i += 13) {
        const auto v = s.get(key_of(w, i));
        if (v && *v != value_of(w, i)) return 2;
        seen += v.has_value();
      }
    }
    if (done == kWriters) break;
  }
  return seen > 0 ? 0 : 3;
}

void expect_everything(const kvstore::Store& s) {
  int missing = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < kKeys; ++i) {
      if (s.get(key_of(w, i)) != value_of(w, i)) ++missing;
    }
  }
  EXPECT_EQ(missing, 0);
  EXPECT_EQ(s.size(), static_cast<std::size_t>(kWriters * (kKeys + 1)));
  EXPECT_TRUE(s.check().empty());
}

}  // namespace

TEST(MultiProcess, EightWritersAndReadersWhileGrowing) {
  kvstore::test::TempDir d;
  const std::string path = d.file("m.kv");
  kvstore::Store early = kvstore::Store::open(path, tiny());
  const std::uint64_t generation_before = early.stats().generation;
  std::vector<pid_t> pids;
  for (int w = 0; w < kWriters; ++w) pids.push_back(spawn([&, w] { return writer(path, w); }));
  for (int r = 0; r < 2; ++r) pids.push_back(spawn([&] { return reader(path); }));
  EXPECT_EQ(wait_all(pids), 0);
  // The handle opened before every grow reads it all, without reopening.
  expect_everything(early);
  const kvstore::Stats st = early.stats();
  EXPECT_GT(st.generation, generation_before + 5) << "the file should have grown many times";
  EXPECT_GT(st.file_size, 4u << 20);
  std::printf("8 writers: %zu keys, file %llu bytes, generation %llu\n", early.size(),
              static_cast<unsigned long long>(st.file_size), static_cast<unsigned long long>(st.generation));
}

TEST(MultiProcess, CompactWhileWritersRunLosesNothing) {
  kvstore::test::TempDir d;
  const std::string path = d.file("m.kv");
  kvstore::Store early = kvstore::Store::open(path, tiny());
  std::vector<pid_t> writers;
  for (int w = 0; w < kWriters; ++w) writers.push_back(spawn([&, w] { return writer(path, w); }));
  const pid_t compactor = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    int n = 0;
    while (s.size() < static_cast<std::size_t>(kWriters * kKeys)) {
      s.compact();
      ++n;
    }
    return n > 1 ? 0 : 4;  // it must really have compacted under the writers
  });
  EXPECT_EQ(wait_all(writers), 0);
  EXPECT_EQ(wait_all({compactor}), 0);
  expect_everything(early);
  EXPECT_GT(early.stats().compactions, 1u);
}
