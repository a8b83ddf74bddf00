// Hostile files: hundreds of damaged copies of a real store (bit flips,
// truncations, zeroed pages, appended garbage, damage with the header checksum
// repaired so that it reaches the segment), each opened, checked, read,
// written and repaired in a child process with a time limit. A crash or a hang
// fails; so does a wrong answer from a store that check() calls sound; and
// repair must keep every record that was not damaged.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <kvstore/store.hpp>
#include <map>
#include <random>
#include <string>

#include "../support/temp_dir.hpp"
#include "crc32c.hpp"
#include "format.hpp"
#include "../support/files.hpp"

namespace {

using kvstore::test::read_file;
using kvstore::test::write_file;

enum Verdict { kFine = 0, kWrongAnswer = 10, kRepairLost = 11 };

// Everything a user might do with the file; exits with a Verdict.
int exercise(const std::string& path, const std::map<std::string, std::string>& pairs) {
  bool sound = false;
  try {
    kvstore::Store s = kvstore::Store::open(path);
    sound = s.check().empty();
    for (const auto& [k, v] : pairs) {
      try {
        if (s.get(k) != v && sound) return kWrongAnswer;
      } catch (const kvstore::Error&) {
        if (sound) return kWrongAnswer;
      }
    }
    s.for_each([](std::string_view, std::string_view) { return true; });
    s.put("written after", "the damage");
    (void)s.erase("key7");
    if (s.get("written after") != "the damage") return kWrongAnswer;
  } catch (const kvstore::Error&) {
    // refused: a fine answer
  }
  try {
    (void)kvstore::Store::repair(path);
    kvstore::Store s = kvstore::Store::open(path);
    if (!s.check().empty()) return kRepairLost;
  } catch (const kvstore::Error&) {
  }
  return kFine;
}

}  // namespace

TEST(Mutation, DamagedFilesNeverCrashHangOrLie) {
  kvstore::test::TempDir d;
  const std::string base = d.file("base.kv");
  std::map<std::string, std::string> pairs;
  {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    kvstore::Store s = kvstore::Store::open(base, o);
    for (int i = 0; i < 2000; ++i) {
      const std::string k = "key" + std::to_string(i);
      const std::string v(static_cast<std::size_t>(i * 13 % 1500), static_cast<char>('a' + i % 26));
      s.put(k, v);
      pairs[k] = v;
    }
    for (int i = 0; i < 2000; i += 7) {
      s.erase("key" + std::to_string(i));
      pairs.erase("key" + std::to_string(i));
    }
  }
  const std::string good = read_file(base);
  std::mt19937 rng(4242);
  const int files = 400;
  int crashes = 0, hangs = 0, lies = 0;
  for (int n = 0; n < files; ++n) {
    std::string bad = good;
    const int kind = n % 6;
    auto at = [&](std::size_t limit) { return std::uniform_int_distribution<std::size_t>(0, limit - 1)(rng); };
    switch (kind) {
      case 0:  // bit flips anywhere
        for (int f = 0; f < 1 + n % 8; ++f) bad[at(bad.size())] ^= static_cast<char>(1 << (rng() % 8));
        break;
      case 1:  // truncation
        bad.resize(at(bad.size()));
        break;
      case 2:  // a zeroed page
        std::memset(bad.data() + at(bad.size() / 4096) * 4096, 0, 4096);
        break;
      case 3:  // appended garbage
        for (int g = 0; g < 5000; ++g) bad.push_back(static_cast<char>(rng()));
        break;
      case 4:  // damage past the header, with the header's checksum made right again
      case 5:
        for (int f = 0; f < 1 + n % 16; ++f) bad[4096 + at(bad.size() - 4096)] = static_cast<char>(rng());
        if (kind == 5) bad[64 + at(24)] = static_cast<char>(rng());  // and the mutable header fields
        {
          const std::uint32_t crc = kvstore::detail::crc32c(0, bad.data(), kvstore::detail::kHeaderCrcBytes);
          std::memcpy(bad.data() + kvstore::detail::kHeaderCrcBytes, &crc, 4);
        }
        break;
    }
    const std::string path = d.file("m" + std::to_string(n) + ".kv");
    write_file(path, bad);
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(20);  // a hang is a failure, reported as SIGALRM
      ::_exit(exercise(path, pairs));
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGALRM) {
      ++hangs;
      ADD_FAILURE() << "hang on mutated file " << n << " (kind " << kind << ")";
    } else if (WIFSIGNALED(status)) {
      ++crashes;
      ADD_FAILURE() << "signal " << WTERMSIG(status) << " on mutated file " << n << " (kind " << kind << ")";
    } else if (WEXITSTATUS(status) != kFine) {
      ++lies;
      ADD_FAILURE() << "verdict " << WEXITSTATUS(status) << " on mutated file " << n << " (kind " << kind << ")";
    }
    std::filesystem::remove(path);
    std::filesystem::remove(path + ".lock");
  }
  std::printf("mutated files: %d, crashes %d, hangs %d, wrong answers %d\n", files, crashes, hangs, lies);
}

// Repair keeps every record that was not damaged, even with the root destroyed.
TEST(Mutation, RepairSalvagesIntactRecords) {
  kvstore::test::TempDir d;
  const std::string path = d.file("r.kv");
  {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    kvstore::Store s = kvstore::Store::open(path, o);
    for (int i = 0; i < 3000; ++i) s.put("key" + std::to_string(i), std::string(100, 'r'));
  }
  std::string bytes = read_file(path);
  std::uint64_t root = 0;
  std::memcpy(&root, bytes.data() + 32, 8);
  std::memset(bytes.data() + root, 0xff, 88);  // the root: index and chunk links gone
  write_file(path, bytes);
  try {
    (void)kvstore::Store::open(path);
    ADD_FAILURE() << "a destroyed root went unnoticed";
  } catch (const kvstore::Error& e) {
    EXPECT_EQ(e.code(), kvstore::Errc::corrupt);
  }
  const std::vector<std::string> found = kvstore::Store::repair(path);
  EXPECT_FALSE(found.empty());
  kvstore::Store s = kvstore::Store::open(path);
  EXPECT_EQ(s.size(), 3000u);
  EXPECT_EQ(s.get("key2999"), std::string(100, 'r'));
  EXPECT_TRUE(s.check().empty());
}

// A damaged record in the middle of a chunk: recovery after a dead writer
// refuses rather than drop the records behind it, and repair keeps all of
// them but the damaged one.
TEST(Mutation, RepairSkipsOnlyTheDamagedRecord) {
  kvstore::test::TempDir d;
  const std::string path = d.file("r.kv");
  {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    kvstore::Store s = kvstore::Store::open(path, o);
    for (int i = 0; i < 3000; ++i) s.put("key" + std::to_string(i), std::string(100, 'r'));
  }
  std::string bytes = read_file(path);
  const std::string needle = "key1500" + std::string(100, 'r');
  const std::size_t at = bytes.find(needle);
  ASSERT_NE(at, std::string::npos);
  bytes[at + 50] ^= 0x55;                 // a value byte of key1500
  bytes[128] = 1;                         // and a writer that died while writing
  write_file(path, bytes);
  try {
    (void)kvstore::Store::open(path);
    ADD_FAILURE() << "recovery went ahead over a damaged record";
  } catch (const kvstore::Error& e) {
    EXPECT_EQ(e.code(), kvstore::Errc::corrupt);
    EXPECT_NE(std::string(e.what()).find("check --repair"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(path), bytes) << "the refused recovery changed the file";
  const std::vector<std::string> found = kvstore::Store::repair(path);
  EXPECT_FALSE(found.empty());
  kvstore::Store s = kvstore::Store::open(path);
  EXPECT_EQ(s.size(), 2999u);
  EXPECT_FALSE(s.contains("key1500"));
  EXPECT_EQ(s.get("key1501"), std::string(100, 'r'));
  EXPECT_EQ(s.get("key2999"), std::string(100, 'r'));
  EXPECT_TRUE(s.check().empty());
}
