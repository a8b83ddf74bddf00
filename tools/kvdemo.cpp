// kvdemo: what `tools/dev.sh demo` runs. Several processes share one store
// live: writers put distinct keys while the file grows from 64 KiB, readers
// check what the writers have acknowledged, one process compacts in the
// middle, and the parent, which opened the store before any of it, verifies
// every key without reopening.
//
//   kvdemo [FILE]     (default ./kvdemo.kv; the file is recreated)
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <kvstore/store.hpp>
#include <string>
#include <vector>

namespace {

constexpr int kWriters = 4;
constexpr int kReaders = 2;
constexpr int kKeysPerWriter = 25'000;

// Built by appending: GCC 12's -Wrestrict misfires on "literal" + std::string (GCC bug 105329).
std::string key_of(int writer, int i) { return std::string("w").append(std::to_string(writer)).append(":").append(std::to_string(i)); }
std::string value_of(int writer, int i) {
  return std::string(static_cast<std::size_t>(20 + (i * 37 + writer) % 400), static_cast<char>('a' + (i + writer) % 26));
}

kvstore::Options options() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  return o;
}

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// Each writer publishes how far it got in the store itself, under "progress:N".
int writer(const std::string& path, int w) {
  kvstore::Store s = kvstore::Store::open(path, options());
  for (int i = 0; i < kKeysPerWriter; ++i) {
    s.put(key_of(w, i), value_of(w, i));
    if (i % 1000 == 999) s.put("progress:" + std::to_string(w), std::to_string(i + 1));
  }
  s.put("progress:" + std::to_string(w), std::to_string(kKeysPerWriter));
  return 0;
}

int reader(const std::string& path, int r) {
  kvstore::Store s = kvstore::Store::open(path, options());
  long checked = 0;
  for (;;) {
    int done = 0;
    for (int w = 0; w < kWriters; ++w) {
      const auto p = s.get("progress:" + std::to_string(w));
      const int upto = p ? std::stoi(*p) : 0;
      if (upto == kKeysPerWriter) ++done;
      // Every key a writer has reported must be there, with its value.
      for (int i = (r * 7919) % (upto + 1); i < upto; i += 97) {
        if (s.get(key_of(w, i)) != value_of(w, i)) {
          std::fprintf(stderr, "reader %d: %s wrong\n", r, key_of(w, i).c_str());
          return 1;
        }
        ++checked;
      }
    }
    if (done == kWriters) break;
  }
  std::printf("  reader %d: %ld reads checked while the writers ran\n", r, checked);
  return 0;
}

int compactor(const std::string& path) {
  kvstore::Store s = kvstore::Store::open(path, options());
  while (s.size() < kWriters * kKeysPerWriter / 2) usleep(2000);
  const auto before = s.stats().file_size;
  s.compact();
  std::printf("  compactor: compacted at %zu keys while writers ran (%.1f -> %.1f MiB)\n", s.size(),
              static_cast<double>(before) / (1 << 20), static_cast<double>(s.stats().file_size) / (1 << 20));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : "kvdemo.kv";
  std::error_code ec;
  std::filesystem::remove(path, ec);
  std::filesystem::remove(path + ".lock", ec);
  try {
    kvstore::Store s = kvstore::Store::open(path, options());
    std::printf("kvstore demo: %s, starting at %llu bytes\n", path.c_str(),
                static_cast<unsigned long long>(s.stats().file_size));
    std::printf("  %d writer processes x %d keys, %d reader processes, 1 compacting process\n", kWriters,
                kKeysPerWriter, kReaders);
    const auto start = std::chrono::steady_clock::now();
    std::vector<pid_t> children;
    auto spawn = [&](auto fn) {
      std::fflush(stdout);  // or the child would print the parent's buffered lines again
      const pid_t pid = fork();
      if (pid == 0) {
        int rc = 1;
        try {
          rc = fn();
        } catch (const std::exception& e) {
          std::fprintf(stderr, "child: %s\n", e.what());
        }
        std::fflush(stdout);
        _exit(rc);
      }
      children.push_back(pid);
    };
    for (int w = 0; w < kWriters; ++w) spawn([&, w] { return writer(path, w); });
    for (int r = 0; r < kReaders; ++r) spawn([&, r] { return reader(path, r); });
    spawn([&] { return compactor(path); });
    int failed = 0;
    for (const pid_t pid : children) {
      int status = 0;
      waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failed;
    }
    const double took = seconds_since(start);
    // The parent's handle predates every grow and the compaction: it remaps by itself.
    long bad = 0;
    for (int w = 0; w < kWriters; ++w) {
      for (int i = 0; i < kKeysPerWriter; ++i) {
        if (s.get(key_of(w, i)) != value_of(w, i)) ++bad;
      }
    }
    kvstore::Stats st = s.stats();
    std::printf("  %d keys written in %.2f s (%.0f puts/s across processes)\n", kWriters * kKeysPerWriter, took,
                kWriters * kKeysPerWriter / took);
    std::printf("  file grew to %.1f MiB; generation %llu, %llu grows since the compaction\n",
                static_cast<double>(st.file_size) / (1 << 20), static_cast<unsigned long long>(st.generation),
                static_cast<unsigned long long>(st.grows));
    std::printf("  the first handle, opened before all of it, read back %zu keys: %s\n", s.size(),
                bad == 0 ? "all correct" : "WRONG");
    s.compact();
    st = s.stats();
    std::printf("  final compact: %.1f MiB for %llu keys; check: %s\n", static_cast<double>(st.file_size) / (1 << 20),
                static_cast<unsigned long long>(st.keys), s.check().empty() ? "ok" : "PROBLEMS");
    if (failed != 0 || bad != 0) {
      std::printf("demo FAILED: %d processes failed, %ld keys wrong\n", failed, bad);
      return 1;
    }
    std::printf("demo ok\n");
    return 0;
  } catch (const kvstore::Error& e) {
    std::fprintf(stderr, "kvdemo: %s\n", e.what());
    return 1;
  }
}
