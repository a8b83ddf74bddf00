// Targeted damage to what the open, recovery and put paths resolve from the
// file: the index pointer and size, the last chunk, the allocator's segment
// size. A clean file so damaged is refused at open (Errc::corrupt); the same
// damage in a file whose writer died is either recovered from the records,
// losing nothing, or refused. Never a crash or a wrong answer.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <fstream>
#include <kvstore/store.hpp>
#include <string>

#include "../support/temp_dir.hpp"
#include "format.hpp"
#include "../support/files.hpp"

namespace {

using kvstore::test::read_file;
using kvstore::test::write_file;

using kvstore::detail::FileHeader;

constexpr int kKeys = 3000;

std::uint64_t u64(const std::string& f, std::uint64_t at) {
  std::uint64_t v = 0;
  std::memcpy(&v, f.data() + at, 8);
  return v;
}
void set64(std::string& f, std::uint64_t at, std::uint64_t v) { std::memcpy(f.data() + at, &v, 8); }
// An offset_ptr stored at `field` resolves to `field + raw` (raw 1: null).
std::uint64_t target(const std::string& f, std::uint64_t field) { return field + u64(f, field); }
void point(std::string& f, std::uint64_t field, std::uint64_t to) { set64(f, field, to - field); }

// Root fields (FORMAT.md "Root").
constexpr std::uint64_t kTable = 8, kSlotCount = 16, kFirstChunk = 64, kLastChunk = 72;

class Targeted : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = dir_.file("t.kv");
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    kvstore::Store s = kvstore::Store::open(path_, o);
    for (int i = 0; i < kKeys; ++i) s.put("key" + std::to_string(i), std::string(100, static_cast<char>('a' + i % 26)));
    good_ = read_file(path_);
    root_ = u64(good_, offsetof(FileHeader, root_offset));
  }
  // As a writer that died appending records (same boot: in-place recovery first).
  static void died_writing(std::string& f) {
    std::uint32_t one = 1, zero = 0;
    std::memcpy(f.data() + offsetof(FileHeader, writing), &one, 4);
    std::memcpy(f.data() + offsetof(FileHeader, clean), &zero, 4);
    std::memcpy(f.data() + offsetof(FileHeader, boot_id), kvstore::detail::current_boot_id(), 16);
  }
  void expect_refused(const std::string& f, const char* why) {
    write_file(path_, f);
    std::filesystem::remove(path_ + ".lock");
    try {
      kvstore::Store s = kvstore::Store::open(path_);
      s.put("x", "y");
      ADD_FAILURE() << why << ": opened and written";
    } catch (const kvstore::Error& e) {
      EXPECT_EQ(e.code(), kvstore::Errc::corrupt) << e.what();
    }
  }
  // Damage a clean file is refused for, and a dead writer's file (the same
  // damage) is recovered from.
  void expect_refused_then_recovered(std::string f, const char* why) {
    expect_refused(f, why);
    died_writing(f);
    expect_recovered(f);
  }
  // Recovery from the records: every key back, the store sound and writable.
  void expect_recovered(const std::string& f) {
    write_file(path_, f);
    std::filesystem::remove(path_ + ".lock");
    kvstore::Store s = kvstore::Store::open(path_);
    EXPECT_EQ(s.size(), static_cast<std::size_t>(kKeys));
    EXPECT_EQ(s.get("key0"), std::string(100, 'a'));
    EXPECT_EQ(s.get("key2999"), std::string(100, static_cast<char>('a' + 2999 % 26)));
    EXPECT_TRUE(s.check().empty());
    for (int i = 0; i < 500; ++i) s.put("more" + std::to_string(i), std::string(200, 'm'));
    EXPECT_EQ(s.get("more499"), std::string(200, 'm'));
    EXPECT_TRUE(s.check().empty());
  }

  // good_ as the last handle leaves it: synced, marked durable, clean and sealed.
  std::string closed_good() {
    write_file(path_, good_);
    std::filesystem::remove(path_ + ".lock");
    { kvstore::Store s = kvstore::Store::open(path_); }
    return read_file(path_);
  }

  kvstore::test::TempDir dir_;
  std::string path_;
  std::string good_;
  std::uint64_t root_ = 0;
};

TEST_F(Targeted, NullIndex) {
  std::string f = good_;
  set64(f, root_ + kTable, 1);
  expect_refused_then_recovered(f, "null index");
}

TEST_F(Targeted, IndexOutsideTheFile) {
  std::string f = good_;
  set64(f, root_ + kTable, std::uint64_t{1} << 40);
  expect_refused_then_recovered(f, "index outside the file");
}

TEST_F(Targeted, IndexSizeWrapsTheBoundsCheck) {
  // 2^60 slots of 16 bytes: the byte count wraps to 0 and passed the old check.
  std::string f = good_;
  set64(f, root_ + kSlotCount, std::uint64_t{1} << 60);
  expect_refused_then_recovered(f, "index size wraps");
}

TEST_F(Targeted, IndexInsideAChunk) {
  // In bounds, aligned, but not a block of its own: a rehash would free it.
  std::string f = good_;
  point(f, root_ + kTable, target(f, root_ + kFirstChunk) + 64);
  set64(f, root_ + kSlotCount, 64);
  set64(f, root_ + 24, 0);  // keys, so that the root passes its own checks
  expect_refused(f, "index inside a chunk");
}

TEST_F(Targeted, IndexIsTheLastChunk) {
  // Both allocated blocks, but the same one: index writes would overwrite records.
  std::string f = good_;
  point(f, root_ + kTable, target(f, root_ + kLastChunk));
  set64(f, root_ + kSlotCount, 64);
  set64(f, root_ + 24, 0);
  expect_refused(f, "index is the last chunk");
}

// The index growth fields after the Root (format version 3, FORMAT.md "Index growth").
constexpr std::uint64_t kShadow = 88, kProgress = 96;

TEST_F(Targeted, GrowingIndexOutsideTheFile) {
  std::string f = good_;
  set64(f, root_ + kShadow, std::uint64_t{1} << 40);
  expect_refused_then_recovered(f, "growing index outside the file");
}

TEST_F(Targeted, GrowthProgressWithoutAGrowingIndex) {
  std::string f = good_;
  set64(f, root_ + kShadow, 1);  // null
  set64(f, root_ + kProgress, 5);
  expect_refused_then_recovered(f, "progress without a growing index");
}

TEST_F(Targeted, GrowthProgressPastItsEnd) {
  std::string f = good_;
  point(f, root_ + kShadow, target(f, root_ + kTable));  // in bounds, at least
  set64(f, root_ + kProgress, std::uint64_t{1} << 62);
  expect_refused_then_recovered(f, "progress past its end");
}

TEST_F(Targeted, GrowingIndexIsTheIndex) {
  // In bounds and aligned, but the table's own block (and too small for it):
  // zeroing it would wipe the index. The first attach finds the blocks overlap.
  std::string f = good_;
  point(f, root_ + kShadow, target(f, root_ + kTable));
  set64(f, root_ + kProgress, 0);
  expect_refused(f, "growing index is the index");
}

TEST_F(Targeted, LastChunkNotTheEnd) {
  std::string f = good_;
  ASSERT_NE(target(f, root_ + kFirstChunk), target(f, root_ + kLastChunk)) << "the store needs several chunks";
  point(f, root_ + kLastChunk, target(f, root_ + kFirstChunk));
  // Recovered by the in-place repair, which puts it back at the end.
  expect_refused_then_recovered(f, "last chunk not the end of the list");
}

TEST_F(Targeted, SegmentSizeDamaged) {
  // The allocator's segment size (at kHeaderSize + 48): its end block is no
  // longer where it says, and the next grow would free through garbage.
  std::string f = good_;
  set64(f, kvstore::detail::kHeaderSize + 48, u64(f, kvstore::detail::kHeaderSize + 48) - 4096);
  // Recovered by the full rebuild: in place would reuse the allocator.
  expect_refused_then_recovered(f, "segment size");
}

TEST_F(Targeted, KeyCountTooLow) {
  // root.keys 0 over a full index passes the root's checks; erasing then took
  // it below zero, and the next put's index doubling never ended.
  std::string f = good_;
  set64(f, root_ + 24, 0);
  write_file(path_, f);
  std::filesystem::remove(path_ + ".lock");
  try {
    kvstore::Store s = kvstore::Store::open(path_);
    for (int i = 0; i < 10; ++i) {
      try {
        (void)s.erase("key" + std::to_string(i));
        (void)s.erase("key" + std::to_string(i + 100));
        s.put("new" + std::to_string(i), "v");
        s.apply({{"b" + std::to_string(i), "1", false}, {"key" + std::to_string(i + 10), "", true}});
      } catch (const kvstore::Error& e) {
        EXPECT_EQ(e.code(), kvstore::Errc::corrupt) << e.what();
      }
    }
    EXPECT_LT(s.size(), static_cast<std::size_t>(kKeys));
    EXPECT_FALSE(s.check().empty());
  } catch (const kvstore::Error& e) {
    EXPECT_EQ(e.code(), kvstore::Errc::corrupt) << e.what();
  }
}

TEST_F(Targeted, CheckNamesTheDamage) {
  std::string f = good_;
  point(f, root_ + kLastChunk, target(f, root_ + kFirstChunk));
  write_file(path_, f);
  const std::vector<std::string> problems = kvstore::Store::repair(path_);
  bool named = false;
  for (const std::string& p : problems) named = named || p.find("last chunk") != std::string::npos;
  EXPECT_TRUE(named) << (problems.empty() ? "no problem found" : problems[0]);
  expect_recovered(read_file(path_));
}

// Random damage confined to the allocator's bookkeeping (its header, every
// block header, every free block's tree node): what the walk must catch
// before Boost follows it. Each file is opened and written hard (puts that
// grow the file and double the index, erases, compaction) in a child under a
// time limit; it must end in an answer or an Error, never a signal, and a
// store that opened must answer right.
TEST_F(Targeted, AllocatorBytesDamaged) {
  const std::uint64_t seg = kvstore::detail::kHeaderSize;
  std::vector<std::uint64_t> words;  // offsets of 8-byte words the allocator reads
  for (std::uint64_t w = 0; w < 56; w += 8) words.push_back(seg + w);
  const std::uint64_t size = u64(good_, seg + 48);
  const std::uint64_t first = seg + 128;
  const std::uint64_t end = first + ((size - 128) / 16 - 1) * 16;
  for (std::uint64_t b = first; b <= end;) {
    const std::uint64_t word = u64(good_, b + 8);
    words.push_back(b);
    words.push_back(b + 8);
    if ((word >> 63) == 0) {  // free: its tree node
      for (std::uint64_t w = 16; w < 40; w += 8) words.push_back(b + w);
    }
    if (b == end) break;
    b += (word & ((std::uint64_t{1} << 62) - 1)) * 16;
  }
  ASSERT_GT(words.size(), 20u);
  std::mt19937_64 rng(20261205);
  int signals = 0;
  for (int n = 0; n < 300; ++n) {
    std::string f = good_;
    for (int d = 0; d < 1 + n % 3; ++d) {
      const std::uint64_t at = words[rng() % words.size()] + rng() % 8;
      if (rng() % 2 == 0) {
        f[at] = static_cast<char>(f[at] ^ (1 << (rng() % 8)));
      } else {
        f[at] = static_cast<char>(rng());
      }
    }
    write_file(path_, f);
    std::filesystem::remove(path_ + ".lock");
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::alarm(30);
      int verdict = 0;
      try {
        kvstore::Store s = kvstore::Store::open(path_);
        for (int i = 0; i < 3000; ++i) s.put("grow" + std::to_string(i), std::string(150, 'g'));
        for (int i = 0; i < kKeys; i += 3) (void)s.erase("key" + std::to_string(i));
        s.compact();
        if (s.get("grow2999") != std::string(150, 'g') || s.get("key1") != std::string(100, 'b') ||
            s.contains("key3")) {
          verdict = 10;
        }
      } catch (const kvstore::Error&) {
      }
      ::_exit(verdict);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
      ++signals;
      ADD_FAILURE() << "signal " << WTERMSIG(status) << " on damaged allocator " << n;
    } else {
      EXPECT_EQ(WEXITSTATUS(status), 0) << "wrong answer on damaged allocator " << n;
    }
  }
  std::printf("damaged allocators: 300, signals %d\n", signals);
}

}  // namespace

// The mutable part of a clean header is sealed by a checksum: damage to any
// of its fields sends the file to a full rebuild from the records (which
// loses nothing here), never to a decision made on the damaged value.
TEST_F(Targeted, DamagedHeaderStateIsNotActedOn) {
  const std::pair<std::size_t, std::uint8_t> damage[] = {
      {offsetof(FileHeader, generation), 0x40},     {offsetof(FileHeader, durable_used), 0x08},
      {offsetof(FileHeader, durable_chunks), 0x01}, {offsetof(FileHeader, clean), 0x02},
      {offsetof(FileHeader, grows), 0x10},          {offsetof(FileHeader, change_count) + 7, 0x80},
      {offsetof(FileHeader, boot_id) + 3, 0x01},    {offsetof(FileHeader, state_crc), 0x01},
  };
  const std::string closed = closed_good();
  for (const auto& [at, bit] : damage) {
    std::string f = closed;
    f[at] = static_cast<char>(f[at] ^ bit);
    write_file(path_, f);
    std::filesystem::remove(path_ + ".lock");
    {
      kvstore::Store s = kvstore::Store::open(path_);
      EXPECT_EQ(s.stats().recoveries, 1u) << "damage at header offset " << at << " was trusted";
    }
    expect_recovered(read_file(path_));
  }
}

// After a power cut (unclean, another boot) the durable mark decides: damage
// before it is damage and is refused; without damage the store recovers.
TEST_F(Targeted, DamageBeforeTheDurableMarkIsRefusedAfterAPowerCut) {
  std::string f = closed_good();
  const std::uint32_t zero = 0;
  std::memcpy(f.data() + offsetof(FileHeader, clean), &zero, 4);
  std::memset(f.data() + offsetof(FileHeader, boot_id), 0, 16);
  EXPECT_GT(u64(f, offsetof(FileHeader, durable_chunks)), 0u);
  const std::uint64_t first_chunk = target(f, root_ + kFirstChunk);
  std::string damaged = f;
  damaged[first_chunk + 40 + 100] = static_cast<char>(damaged[first_chunk + 40 + 100] ^ 1);
  expect_refused(damaged, "a damaged record before the durable mark");
  expect_recovered(f);
}
