// A simulated power cut: the store file as a mix of pages as of the last sync
// and as written since. Sync::always keeps every acknowledged write; Sync::none
// recovers a prefix of history. (The real one: tests/powercut.)
#include "crash_workload.hpp"
#include "../support/files.hpp"

using kvstore::test::read_file;

// A power cut as a file of pages: each page as it was at the last sync or as
// written since, at random, the length either way. `first_from_written`: the
// header page as written since (a session's first change syncs it before any
// other write, so the disk never holds an older header with newer pages).
std::string cut_pages(const std::string& synced, const std::string& written, bool first_from_written,
                      std::mt19937& rng) {
  const std::size_t page = 4096;
  const std::size_t length = (rng() % 2 == 0) ? synced.size() : written.size();
  std::string mixed(length, '\0');
  for (std::size_t at = 0; at < length; at += page) {
    const std::string& from = (at == 0 && first_from_written) || rng() % 2 == 0 ? written : synced;
    if (at < from.size()) mixed.replace(at, std::min(page, from.size() - at), from, at, std::min(page, from.size() - at));
  }
  // A power cut means a new boot: clear the boot id the header remembers.
  std::memset(mixed.data() + 168, 0, 16);
  return mixed;
}

// Sync::always: pages as of the last acknowledged put mixed with pages written
// after it. Every put acknowledged before the cut survives, and the store
// recovers by itself (the durable mark tells a torn tail from damage).
TEST(PowerCut, SyncAlwaysKeepsAcknowledgedWrites) {
  std::mt19937 rng(99);
  for (int round = 0; round < 60 && !HasFailure(); ++round) {
    TempDir dir;
    const std::string path = dir.file("store.kv");
    const int acked = std::uniform_int_distribution<int>(1, 300)(rng);
    const int later = std::uniform_int_distribution<int>(1, 300)(rng);
    std::string synced;
    std::string written;
    {
      kvstore::Store s = kvstore::Store::open(path, small_store(kvstore::Sync::always));
      for (int i = 0; i < acked; ++i) s.put(key_of(static_cast<std::uint64_t>(i)), value_of(1, static_cast<std::uint64_t>(i), static_cast<std::size_t>(10 + i % 500)));
      synced = read_file(path);
      // Writes after the last acknowledgement: updates, erases, new keys.
      // Without reclamation: this model (any page written after `synced` may
      // be lost) holds only for a writer that never syncs, and reclaiming
      // syncs before it frees a chunk. The real power cuts (tests/powercut)
      // cover it.
      kvstore::Options no_reclaim = small_store(kvstore::Sync::none);
      no_reclaim.max_dead_fraction = 0;
      kvstore::Store late = kvstore::Store::open(path, no_reclaim);
      for (int i = 0; i < later; ++i) {
        const auto j = static_cast<std::uint64_t>(i * 3);
        if (i % 5 == 4) {
          (void)late.erase(key_of(j));
        } else {
          late.put(key_of(j), value_of(2, j, static_cast<std::size_t>(10 + i % 3000)));
        }
      }
      written = read_file(path);
    }
    const std::string mixed = cut_pages(synced, written, false, rng);
    const std::string cut = dir.file("cut.kv");
    std::ofstream(cut, std::ios::binary).write(mixed.data(), static_cast<std::streamsize>(mixed.size()));
    try {
      kvstore::Store s = kvstore::Store::open(cut, small_store(kvstore::Sync::always));
      std::size_t lost = 0;
      for (int i = 0; i < acked; ++i) {
        const auto j = static_cast<std::uint64_t>(i);
        const std::optional<std::string> got = s.get(key_of(j));
        // Written after the cut or not: either version is fine, absence only if erased later.
        const bool touched_later = j % 3 == 0 && static_cast<int>(j / 3) < later;
        const bool erased_later = touched_later && (j / 3) % 5 == 4;
        if (got == value_of(1, j, static_cast<std::size_t>(10 + i % 500))) continue;
        if (touched_later && got == value_of(2, j, 10 + (j / 3) % 3000)) continue;
        if (erased_later && !got) continue;
        ++lost;
      }
      EXPECT_EQ(lost, 0u) << "round " << round << ": acknowledged writes lost";
      EXPECT_GE(s.stats().recoveries, 1u) << "round " << round << ": the cut went unnoticed";
      EXPECT_TRUE(s.check().empty()) << "round " << round;
    } catch (const kvstore::Error& e) {
      ADD_FAILURE() << "round " << round << ": did not recover by itself: " << e.what();
    }
  }
}

// Sync::none: a cleanly closed store, then a session of unsynced changes (new
// keys, erases of old ones, two-key batches), cut at random pages. The store
// recovers by itself, checks clean, and holds a prefix of the session's
// changes: every change up to some point, none after it.
TEST(PowerCut, SyncNoneRecoversAPrefix) {
  std::mt19937 rng(7);
  constexpr std::uint64_t kOld = 400;
  int full = 0;
  for (int round = 0; round < 60 && !HasFailure(); ++round) {
    TempDir dir;
    const std::string path = dir.file("store.kv");
    const auto ops = static_cast<std::uint64_t>(std::uniform_int_distribution<int>(1, 350)(rng));
    auto fresh_key = [](std::uint64_t i, int part) { return "new" + std::to_string(i) + "." + std::to_string(part); };
    {
      kvstore::Store s = kvstore::Store::open(path, small_store());
      for (std::uint64_t j = 0; j < kOld; ++j) s.put(key_of(j), value_of(1, j, 10 + j % 700));
    }
    const std::string synced = read_file(path);
    std::string written;
    {
      kvstore::Options no_reclaim = small_store();  // unsynced changes only: see above
      no_reclaim.max_dead_fraction = 0;
      kvstore::Store s = kvstore::Store::open(path, no_reclaim);
      for (std::uint64_t i = 0; i < ops; ++i) {
        if (i % 5 == 4) {
          ASSERT_TRUE(s.erase(key_of(i)));
        } else if (i % 7 == 6) {
          s.apply({{fresh_key(i, 0), value_of(3, i, 40)}, {fresh_key(i, 1), value_of(4, i, 2000)}});
        } else {
          s.put(fresh_key(i, 0), value_of(3, i, 10 + i * 37 % 2500));
        }
      }
      written = read_file(path);
    }
    const std::string mixed = cut_pages(synced, written, true, rng);
    const std::string cut = dir.file("cut.kv");
    std::ofstream(cut, std::ios::binary).write(mixed.data(), static_cast<std::streamsize>(mixed.size()));
    try {
      kvstore::Store s = kvstore::Store::open(cut, small_store());
      // Which changes are visible, in order.
      std::vector<bool> seen(ops);
      for (std::uint64_t i = 0; i < ops; ++i) {
        if (i % 5 == 4) {
          seen[i] = !s.get(key_of(i));
        } else if (i % 7 == 6) {
          const bool a = s.get(fresh_key(i, 0)) == value_of(3, i, 40);
          const bool b = s.get(fresh_key(i, 1)) == value_of(4, i, 2000);
          EXPECT_EQ(a, b) << "round " << round << ": half a batch at change " << i;
          seen[i] = a;
        } else {
          seen[i] = s.get(fresh_key(i, 0)) == value_of(3, i, 10 + i * 37 % 2500);
        }
      }
      const auto n = static_cast<std::uint64_t>(std::find(seen.begin(), seen.end(), false) - seen.begin());
      EXPECT_EQ(std::count(seen.begin() + static_cast<std::ptrdiff_t>(n), seen.end(), true), 0)
          << "round " << round << ": changes after " << n << " survived without it: not a prefix";
      for (std::uint64_t j = 0; j < kOld; ++j) {
        if (j < n && j % 5 == 4) continue;  // erased by a surviving change
        EXPECT_EQ(s.get(key_of(j)), value_of(1, j, 10 + j % 700)) << "round " << round << ": old key " << j;
      }
      EXPECT_TRUE(s.check().empty()) << "round " << round;
      full += n == ops ? 1 : 0;
    } catch (const kvstore::Error& e) {
      ADD_FAILURE() << "round " << round << ": did not recover by itself: " << e.what();
    }
  }
  std::printf("power cuts (Sync::none): 60, every change kept in %d\n", full);
}
