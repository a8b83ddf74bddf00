// The writer of the power-cut test (powercut_test.sh): opens a store with the
// given sync mode and performs powercut::Sequence's ops one by one, puts,
// erases, Store::apply batches and transact calls. After Store::open returns
// it writes "opened" to the log, and after each op returns, the op's index:
// one write(2) per line, so that a line is in the log (on the host's file
// system, which no clone cuts) exactly when the store had acknowledged it.
// The script reads the log's length before each clone of the device.
//
//   powercut_writer STORE LOG always|none MAX_OPS OPS_PER_SECOND(0: no limit)
//   powercut_writer --writeback FILE
//
// The second form starts writeback of FILE's dirty pages and returns without
// waiting (sync_file_range(SYNC_FILE_RANGE_WRITE)), as the kernel's flusher
// does on its own after 30 s: the script runs it at random moments so that
// short runs, too, see states where some unsynced pages reached the disk and
// others did not. It commits no ext4 journal (no fsync), so a rename that was
// never made durable stays undone.
//
// After MAX_OPS it keeps the store open and waits to be killed: a clean close
// would make later clones images of a closed store, not of a power cut.
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <kvstore/store.hpp>
#include <stdexcept>
#include <string>
#include <thread>

#include "powercut_ops.hpp"

namespace {

void log_line(int fd, const std::string& line) {
  const std::string s = line + "\n";
  if (::write(fd, s.data(), s.size()) != static_cast<ssize_t>(s.size())) {
    std::perror("powercut_writer: log");
    std::_Exit(2);
  }
}

void perform(kvstore::Store& s, const powercut::Op& op) {
  using powercut::Kind;
  switch (op.kind) {
    case Kind::put:
      s.put(op.writes[0].key, *op.writes[0].value);
      break;
    case Kind::erase:
      (void)s.erase(op.writes[0].key);
      break;
    case Kind::batch: {
      std::vector<kvstore::BatchOp> ops;
      for (const powercut::Write& w : op.writes)
        ops.push_back({w.key, w.value.value_or(""), !w.value});
      s.apply(ops);
      break;
    }
    case Kind::transact:
      // A read-modify-write: the counter must hold what the earlier
      // transactions left, or the store lost one of them.
      s.transact([&](kvstore::Transaction& t) {
        const std::int64_t next = std::stoll(*op.writes[0].value);
        const std::optional<std::string> cur = t.get(powercut::kCounterKey);
        const std::int64_t have = cur ? std::stoll(*cur) : 0;
        if (have != next - 1) {
          throw std::runtime_error("counter is " + std::to_string(have) + ", expected " +
                                   std::to_string(next - 1));
        }
        for (const powercut::Write& w : op.writes) t.put(w.key, *w.value);
      });
      break;
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 3 && std::string(argv[1]) == "--writeback") {
    const int fd = ::open(argv[2], O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;  // not created yet: nothing to write back
    const int rc = ::sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    ::close(fd);
    return rc == 0 ? 0 : 1;
  }
  if (argc != 6) {
    std::fprintf(stderr, "usage: powercut_writer STORE LOG always|none MAX_OPS OPS_PER_SECOND\n");
    return 2;
  }
  const std::string mode = argv[3];
  if (mode != "always" && mode != "none") {
    std::fprintf(stderr, "powercut_writer: sync mode must be always or none\n");
    return 2;
  }
  const std::uint64_t max_ops = std::strtoull(argv[4], nullptr, 10);
  const double rate = std::strtod(argv[5], nullptr);
  const int log = ::open(argv[2], O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) {
    std::perror("powercut_writer: open log");
    return 2;
  }
  try {
    kvstore::Options opt;
    opt.sync = mode == "always" ? kvstore::Sync::always : kvstore::Sync::none;
    // The workload's erases leave about a sixth of the records dead: a low
    // limit keeps space reclamation (and its syncs and frees) running
    // throughout, so that the cuts land in it too.
    opt.max_dead_fraction = 0.02;
    opt.min_dead_bytes = 0;
    kvstore::Store s = kvstore::Store::open(argv[1], opt);
    log_line(log, "opened");
    powercut::Sequence seq;
    const auto start = std::chrono::steady_clock::now();
    for (std::uint64_t i = 0; i < max_ops; ++i) {
      // Paced (Sync::none would otherwise fill the image in seconds): op i is
      // due at start + i / rate.
      if (rate > 0 && i % 8 == 0) {
        std::this_thread::sleep_until(
            start + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                        std::chrono::duration<double>(static_cast<double>(i) / rate)));
      }
      perform(s, seq.next());
      log_line(log, std::to_string(i));
    }
    for (;;) ::pause();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "powercut_writer: %s\n", e.what());
    return 1;
  }
}
