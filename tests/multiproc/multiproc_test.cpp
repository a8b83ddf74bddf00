// Many processes on one store that starts at 64 KiB: writers with distinct
// keys, readers checking throughout, a compactor; a handle opened before all
// of it must read everything without reopening.
//
// Every child opens the store itself after fork() and leaves with _exit.
// Readers register before any writer starts (writers wait for them), so they
// really run while the file grows. KVSTORE_MULTIPROC_KEYS sets the keys per
// writer (default 12000).
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <kvstore/store.hpp>
#include <string>
#include <thread>
#include <vector>

#include "../support/process.hpp"
#include "../support/temp_dir.hpp"

namespace {

using kvstore::test::spawn;
using kvstore::test::wait_all;

constexpr int kWriters = 8;
constexpr int kReaders = 2;

// Child exit statuses, so a failure says what went wrong.
constexpr int kOk = 0;
constexpr int kWrongValue = 2;
constexpr int kNeverSawPartial = 3;
constexpr int kNeverRemapped = 4;
constexpr int kTooFewCompactions = 5;
constexpr int kWrongErase = 6;

int keys_per_writer() {
  const char* v = std::getenv("KVSTORE_MULTIPROC_KEYS");
  return v != nullptr && std::atoi(v) > 0 ? std::atoi(v) : 12000;
}

std::string key_of(int w, int i) { return "w" + std::to_string(w) + "/" + std::to_string(i); }
std::string value_of(int w, int i) {
  std::string v(static_cast<std::size_t>(10 + (i * 31 + w) % 1500), static_cast<char>('A' + (w + i) % 50));
  v += key_of(w, i);  // the value names its key: a value under the wrong key shows
  return v;
}
// In the compaction test every fourth key is erased again by its writer.
bool erased_in_compact_test(int i) { return i % 4 == 3; }

kvstore::Options tiny() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.lock_timeout = std::chrono::milliseconds(60'000);
  return o;
}

std::string ready_key(int r) { return "ready/" + std::to_string(r); }
std::string done_key(int w) { return "done/" + std::to_string(w); }

void wait_for_readers(const kvstore::Store& s, int readers) {
  for (int r = 0; r < readers; ++r) {
    while (!s.contains(ready_key(r))) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

int writer(const std::string& path, int w, int readers, bool erase_some) {
  kvstore::Store s = kvstore::Store::open(path, tiny());
  wait_for_readers(s, readers);
  const int keys = keys_per_writer();
  for (int i = 0; i < keys; ++i) {
    s.put(key_of(w, i), value_of(w, i));
    if (i % 97 == 0 && s.get(key_of(w, i)) != value_of(w, i)) return kWrongValue;
    if (erase_some && erased_in_compact_test(i) && !s.erase(key_of(w, i))) return kWrongErase;
  }
  s.put(done_key(w), "1");
  return kOk;
}

// Reads while the writers run: every value it finds must be the right one.
// It must see the store part-written at least once, and see it grow.
int reader(const std::string& path, int r, bool erase_some) {
  kvstore::Store s = kvstore::Store::open(path, tiny());
  s.put(ready_key(r), "1");
  const std::uint64_t generation_at_start = s.stats().generation;
  const int keys = keys_per_writer();
  bool saw_partial = false;
  for (int round = 0;; ++round) {
    int done = 0;
    for (int w = 0; w < kWriters; ++w) done += s.contains(done_key(w)) ? 1 : 0;
    int found = 0;     // keys that stay, found
    int expected = 0;  // keys that stay, sampled this round
    for (int w = 0; w < kWriters; ++w) {
      for (int i = round % 7; i < keys; i += 7) {
        const bool stays = !(erase_some && erased_in_compact_test(i));
        expected += stays ? 1 : 0;
        const auto v = s.get(key_of(w, i));
        if (v) {
          found += stays ? 1 : 0;
          if (*v != value_of(w, i)) return kWrongValue;
        }
      }
    }
    if (done == kWriters) break;
    // Writers still running at the start of the round: unless every one of
    // them finished during it, the round saw a part-written store.
    if (found < expected) saw_partial = true;
  }
  if (!saw_partial) return kNeverSawPartial;
  if (s.stats().generation == generation_at_start) return kNeverRemapped;
  return kOk;
}

// Fails with a count of the keys that are wrong.
void expect_everything(const kvstore::Store& s, bool erase_some) {
  const int keys = keys_per_writer();
  int wrong = 0;
  std::size_t live = 0;
  for (int w = 0; w < kWriters; ++w) {
    for (int i = 0; i < keys; ++i) {
      const auto v = s.get(key_of(w, i));
      if (erase_some && erased_in_compact_test(i)) {
        wrong += v.has_value() ? 1 : 0;
      } else {
        wrong += v != value_of(w, i) ? 1 : 0;
        ++live;
      }
    }
    EXPECT_TRUE(s.contains(done_key(w))) << w;
  }
  EXPECT_EQ(wrong, 0);
  std::size_t iterated = 0;
  s.for_each([&](std::string_view, std::string_view) {
    ++iterated;
    return true;
  });
  const std::size_t extra = kWriters + kReaders;  // done/ and ready/ keys
  EXPECT_EQ(s.size(), live + extra);
  EXPECT_EQ(iterated, live + extra);
  const auto problems = s.check();
  EXPECT_TRUE(problems.empty()) << problems.front();
}

}  // namespace

TEST(MultiProcess, EightWritersAndReadersWhileGrowing) {
  kvstore::test::TempDir d;
  const std::string path = d.file("m.kv");
  kvstore::Store early = kvstore::Store::open(path, tiny());
  ASSERT_EQ(early.stats().file_size, 64u * 1024);
  const std::uint64_t generation_before = early.stats().generation;
  std::vector<pid_t> pids;
  for (int r = 0; r < kReaders; ++r) pids.push_back(spawn([&, r] { return reader(path, r, false); }));
  for (int w = 0; w < kWriters; ++w) pids.push_back(spawn([&, w] { return writer(path, w, kReaders, false); }));
  const std::vector<int> statuses = wait_all(pids);
  for (std::size_t i = 0; i < statuses.size(); ++i) {
    EXPECT_EQ(statuses[i], kOk) << (i < kReaders ? "reader " : "writer ") << i;
  }
  // The handle opened before every grow reads it all, without reopening.
  expect_everything(early, false);
  const kvstore::Stats st = early.stats();
  EXPECT_GE(st.generation, generation_before + 8) << "the file should have grown many times";
  EXPECT_GT(st.file_size, 32u << 20);
  std::printf("%d writers, %d readers: %zu keys, file %llu bytes, generation %llu -> %llu\n", kWriters,
              kReaders, early.size(), static_cast<unsigned long long>(st.file_size),
              static_cast<unsigned long long>(generation_before), static_cast<unsigned long long>(st.generation));
}

TEST(MultiProcess, CompactWhileWritersRunLosesNothing) {
  kvstore::test::TempDir d;
  const std::string path = d.file("m.kv");
  kvstore::Store early = kvstore::Store::open(path, tiny());
  std::vector<pid_t> pids;
  pids.push_back(spawn([&] { return reader(path, 0, true); }));
  pids.push_back(spawn([&] { return reader(path, 1, true); }));
  const pid_t compactor = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    wait_for_readers(s, kReaders);
    // Back to back (writers wait only for each one's last catch-up), at
    // least three; it must really have compacted under the writers.
    int n = 0;
    int under_writers = 0;
    for (;;) {
      bool all_done = true;
      for (int w = 0; w < kWriters; ++w) all_done = all_done && s.contains(done_key(w));
      if (all_done && n >= 3) break;
      s.compact();
      ++n;
      under_writers += all_done ? 0 : 1;
    }
    return under_writers >= 1 ? kOk : kTooFewCompactions;
  });
  for (int w = 0; w < kWriters; ++w) pids.push_back(spawn([&, w] { return writer(path, w, kReaders, true); }));
  const std::vector<int> statuses = wait_all(pids);
  for (std::size_t i = 0; i < statuses.size(); ++i) EXPECT_EQ(statuses[i], kOk) << "child " << i;
  EXPECT_EQ(kvstore::test::wait_for(compactor), kOk) << "compactor";
  expect_everything(early, true);
  const kvstore::Stats st = early.stats();
  EXPECT_GT(st.compactions, 2u);
  std::printf("compact under %d writers: %llu compactions, %zu keys, file %llu bytes\n", kWriters,
              static_cast<unsigned long long>(st.compactions), early.size(),
              static_cast<unsigned long long>(st.file_size));
}

// A compaction catches up with what writers append during its copy in rounds
// without the lock (a batch's records may fall in two rounds), then under the
// writers' lock while readers go on. A writer streams batches that set eight
// keys to one generation and erase a ninth, back to back with compactions; a
// reader's every consistent view must show one generation in all eight, and
// the end state must be the last batch's.
TEST(MultiProcess, CompactionCatchUpKeepsBatchesWhole) {
  kvstore::test::TempDir d;
  const std::string path = d.file("b.kv");
  constexpr int kKeys = 8;
  constexpr int kCompactions = 6;
  auto batch_key = [](int k) { return "b/" + std::to_string(k); };
  auto generation = [](int g) { return std::string(200, 'g') + std::to_string(g); };
  {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    // Enough live data that a copy takes a while, and the writer appends meanwhile.
    std::vector<kvstore::BatchOp> fill;
    for (int i = 0; i < 20000; ++i) fill.push_back({"fill/" + std::to_string(i), std::string(100, 'f'), false});
    s.apply(fill);
  }
  // The writer goes on until the compactor is through, then says how far it got.
  const pid_t writer_pid = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    int g = 1;
    for (; !s.contains("stop"); ++g) {
      std::vector<kvstore::BatchOp> ops;
      for (int k = 0; k < kKeys; ++k) ops.push_back({batch_key(k), generation(g), false});
      ops.push_back({"gone/" + std::to_string(g - 1), "", true});
      ops.push_back({"gone/" + std::to_string(g), "x", false});
      s.apply(ops);
    }
    s.put("last", std::to_string(g - 1));
    s.put("done", "1");
    return kOk;
  });
  const pid_t reader_pid = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    for (bool done = false; !done;) {
      bool torn = false;
      s.view([&](const kvstore::View& v) {
        done = v.contains("done");
        const auto first = v.get(batch_key(0));
        for (int k = 1; k < kKeys; ++k) torn = torn || v.get(batch_key(k)) != first;
      });
      if (torn) return kWrongValue;
    }
    return kOk;
  });
  const pid_t compactor = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    for (int n = 0; n < kCompactions; ++n) s.compact();
    s.put("stop", "1");
    return kOk;
  });
  EXPECT_EQ(kvstore::test::wait_for(writer_pid), kOk) << "writer";
  EXPECT_EQ(kvstore::test::wait_for(reader_pid), kOk) << "reader: a view saw a batch in part";
  EXPECT_EQ(kvstore::test::wait_for(compactor), kOk) << "compactor";
  kvstore::Store s = kvstore::Store::open(path, tiny());
  const int batches = std::stoi(s.get("last").value_or("0"));
  ASSERT_GT(batches, 0);
  for (int k = 0; k < kKeys; ++k) EXPECT_EQ(s.get(batch_key(k)), generation(batches)) << k;
  for (int g = 0; g < batches; ++g) ASSERT_FALSE(s.contains("gone/" + std::to_string(g))) << g;
  EXPECT_EQ(s.get("gone/" + std::to_string(batches)), "x");
  EXPECT_EQ(s.size(), 20000u + kKeys + 4);  // fill, the batch keys, the last "gone", stop, last, done
  EXPECT_GE(s.stats().compactions, static_cast<std::uint64_t>(kCompactions));
  EXPECT_TRUE(s.check().empty());
  std::printf("%d batches against %llu compactions\n", batches,
              static_cast<unsigned long long>(s.stats().compactions));
}

// A compaction frees the file it replaced itself, truncating it, but only
// once no other descriptor has it open: a for_each in another process, which
// reads that file's records without the lock, must read on undisturbed (a
// truncated mapping would kill it with SIGBUS) and see every value right.
TEST(MultiProcess, AForEachInAnotherProcessOutlivesTheCompactionsOfItsFile) {
  kvstore::test::TempDir d;
  const std::string path = d.file("f.kv");
  constexpr int kKeys = 20000;
  auto key = [](int i) { return "k/" + std::to_string(i); };
  auto value = [&](int i) { return std::string(100, 'v') + key(i); };
  {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    std::vector<kvstore::BatchOp> fill;
    for (int i = 0; i < kKeys; ++i) fill.push_back({key(i), value(i), false});
    s.apply(fill);
  }
  const std::string started = d.file("started");
  const pid_t iterator = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    int seen = 0;
    bool wrong = false;
    s.for_each([&](std::string_view k, std::string_view v) {
      const int i = std::stoi(std::string(k.substr(2)));
      wrong = wrong || v != value(i);
      if (++seen == 10) std::ofstream{started};  // the compactor waits for this
      if (seen % 1000 == 0) std::this_thread::sleep_for(std::chrono::milliseconds(20));
      return true;
    });
    return wrong ? kWrongValue : (seen == kKeys ? kOk : kNeverRemapped);
  });
  const pid_t compactor = spawn([&] {
    kvstore::Store s = kvstore::Store::open(path, tiny());
    while (!std::filesystem::exists(started)) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    for (int n = 0; n < 3; ++n) {
      s.put("round", std::to_string(n));  // something new each time
      s.compact();
    }
    return s.stats().compactions >= 3 ? kOk : kTooFewCompactions;
  });
  EXPECT_EQ(kvstore::test::wait_for(compactor), kOk) << "compactor";
  EXPECT_EQ(kvstore::test::wait_for(iterator), kOk) << "iterator";
  kvstore::Store s = kvstore::Store::open(path, tiny());
  EXPECT_EQ(s.get("round"), "2");
  EXPECT_TRUE(s.check().empty());
}
