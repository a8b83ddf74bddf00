// Writes the seeds of fuzz/corpus/raw/ (the raw-file fuzzer's corpus): valid
// stores of the shapes whose code paths differ on open. Usage:
//   kvstore_make_raw_seeds OUTDIR
// The stores are made through the public API; the crash shapes are then made
// by editing the mutable header fields a dead writer would have left (and,
// for the unfinished batch, one record's flags with its checksum redone).
// Hash seeds and creation times differ from run to run: the committed seeds
// are one run's output.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <kvstore/store.hpp>
#include <string>

#include "format.hpp"
#include "raw_seed.hpp"
#include "record.hpp"

namespace {

namespace fs = std::filesystem;
using kvstore::detail::FileHeader;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  std::printf("%-28s %7zu bytes\n", path.filename().c_str(), bytes.size());
}

template <class T>
void set(std::string& file, std::size_t at, T v) {
  std::memcpy(file.data() + at, &v, sizeof v);
}

// A store made by `fill` in a scratch file; returns its bytes.
template <class F>
std::string make(const fs::path& scratch, F&& fill, bool compact_first = false) {
  fs::remove(scratch);
  fs::remove(scratch.string() + ".lock");
  {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    kvstore::Store s = kvstore::Store::open(scratch, o);
    if (compact_first) s.compact();  // from the 8 KiB an empty store compacts to
    fill(s);
  }
  return slurp(scratch.string());
}

// What a writer that died in the middle of it leaves in the header.
void died(std::string& file, std::uint32_t writing, bool same_boot) {
  set<std::uint32_t>(file, offsetof(FileHeader, writing), writing);
  set<std::uint32_t>(file, offsetof(FileHeader, clean), 0);
  unsigned char boot[16] = {};
  if (same_boot) std::memcpy(boot, kvstore::fuzz::kBootIdSentinel, sizeof boot);
  std::memcpy(file.data() + offsetof(FileHeader, boot_id), boot, sizeof boot);
}

void some_keys(kvstore::Store& s, int n) {
  for (int i = 0; i < n; ++i) s.put("key" + std::to_string(i), std::string(static_cast<std::size_t>(i % 40), 'v'));
  for (int i = 0; i < n; i += 5) s.erase("key" + std::to_string(i));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUTDIR\n", argv[0]);
    return 2;
  }
  const fs::path out = argv[1];
  fs::create_directories(out);
  const fs::path scratch = fs::temp_directory_path() / ("kvseed-" + std::to_string(::getpid()) + ".kv");

  // Empty: as created (one free block), and as compacted (the smallest file).
  write(out / "empty-new", make(scratch, [](kvstore::Store&) {}));
  write(out / "empty-compacted", make(scratch, [](kvstore::Store&) {}, true));
  // Keys, erases, a batch, compacted: one chunk, records with batch flags dropped.
  write(out / "small-compacted", make(scratch, [](kvstore::Store& s) {
          some_keys(s, 40);
          s.apply({{"b1", "x", false}, {"b2", "y", false}, {"key1", "", true}});
          s.compact();
        }));
  // Grown from 8 KiB, with as many keys as fit before a second grow: more than
  // one chunk, the index table replaced four times (the old tables freed: a free
  // tree of several nodes), the file's end block moved. The second grow would
  // take the file past kMaxRawInput (the seed was 368 KiB, three grows, when
  // inputs could be 1 MiB: executions of inputs that size cost twice as much).
  {
    const auto fill = [](int n) {
      return [n](kvstore::Store& s) {
        for (int i = 0; i < n; ++i) s.put("g" + std::to_string(i), std::string(static_cast<std::size_t>(i % 4 * 8), 'g'));
        some_keys(s, 30);
      };
    };
    const auto fits = [&](int n) {
      return make(scratch, fill(n), true).size() <= kvstore::fuzz::kMaxRawInput;
    };
    int lo = 0;      // fits in one grow
    int hi = 20000;  // does not
    while (hi - lo > 1) {
      const int mid = (lo + hi) / 2;
      (fits(mid) ? lo : hi) = mid;
    }
    write(out / "grown", make(scratch, fill(lo), true));
  }
  // A batch whose last record never came: the writer died inside apply().
  {
    std::string f = make(scratch, [](kvstore::Store& s) {
      some_keys(s, 30);
      s.apply({{"batch-first", "1", false}, {"batch-mid", "2", false}, {"batch-last", "3", false}});
    }, true);
    const std::string needle = "batch-last3";
    const std::size_t key_at = f.rfind(needle);
    if (key_at == std::string::npos) return 1;
    kvstore::detail::RecordHeader h{};
    std::memcpy(&h, f.data() + key_at - sizeof h, sizeof h);
    h.flags = static_cast<std::uint8_t>(h.flags & ~kvstore::detail::kBatchEnd);
    h.crc = kvstore::detail::record_crc(h, "batch-last", "3");
    std::memcpy(f.data() + key_at - sizeof h, &h, sizeof h);
    died(f, kvstore::detail::kRecords, true);
    write(out / "mid-batch-same-boot", f);
    died(f, kvstore::detail::kRecords, false);
    write(out / "mid-batch-other-boot", f);
  }
  // Killed while idle but never closed, in an earlier boot: full rebuild.
  {
    std::string f = make(scratch, [](kvstore::Store& s) { some_keys(s, 30); }, true);
    died(f, kvstore::detail::kIdle, false);
    write(out / "unclean-other-boot", f);
    // Killed inside the allocator (or a grow): full rebuild.
    died(f, kvstore::detail::kAllocator, true);
    write(out / "writing-allocator", f);
    // Killed while changing the index: rebuilt in place, the allocator reused.
    died(f, kvstore::detail::kRecords, true);
    write(out / "writing-records-same-boot", f);
  }
  fs::remove(scratch);
  fs::remove(scratch.string() + ".lock");
  return 0;
}
