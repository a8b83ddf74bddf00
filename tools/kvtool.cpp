// kvtool: the command line of kvstore. Thin by design: parse (CLI11), call the
// library, map kvstore::Errc to an exit status in one place (exit_code()).
//
//   kvtool [-f FILE] COMMAND [ARGS]    FILE defaults to $KVSTORE_FILE, else ./kvstore.kv
//
// Exit status: 0 done, 1 key not found (get, del), 2 usage error, 3 not a valid
// or compatible store, 4 any other failure (I/O, no space, permission, busy).
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <kvstore/dump.hpp>
#include <kvstore/store.hpp>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace {

constexpr int kExitOk = 0;
constexpr int kExitNotFound = 1;
constexpr int kExitUsage = 2;
constexpr int kExitBadStore = 3;
constexpr int kExitFailure = 4;

int exit_code(kvstore::Errc code) {
  switch (code) {
    case kvstore::Errc::invalid_argument:
      return kExitUsage;
    case kvstore::Errc::not_a_store:
    case kvstore::Errc::version_mismatch:
    case kvstore::Errc::corrupt:
      return kExitBadStore;
    case kvstore::Errc::io:
    case kvstore::Errc::no_space:
    case kvstore::Errc::store_full:
    case kvstore::Errc::busy:
    case kvstore::Errc::read_only:
      return kExitFailure;
  }
  return kExitFailure;
}

struct Args {
  std::string file;
  bool hex = false;
  bool json = false;
  bool sync = false;
  bool bdb = false;  // dump: no mapsize= line (db_load rejects it)
  bool repair = false;  // check: rebuild from every intact record
  std::string key;
  std::string value;
  std::string path;  // dump OUT / load IN
  std::int64_t delta = 1;          // incr
  std::optional<std::string> old_value;  // cas
  std::optional<std::string> new_value;  // cas
  bool absent = false;             // cas: expect the key absent
  bool erase = false;              // cas: erase it on success
  std::int64_t timeout_ms = -1;    // wait: -1 forever
  std::optional<std::uint64_t> since;  // wait: the change count to wait past
};

std::string from_hex(const std::string& text) {
  if (text.size() % 2 != 0) throw kvstore::Error(kvstore::Errc::invalid_argument, "--hex: odd number of digits");
  std::string out;
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const std::string pair = text.substr(i, 2);
    char* end = nullptr;
    const long v = std::strtol(pair.c_str(), &end, 16);
    if (end != pair.c_str() + 2) throw kvstore::Error(kvstore::Errc::invalid_argument, "--hex: bad digit in " + text);
    out.push_back(static_cast<char>(v));
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    out.push_back(kDigits[static_cast<unsigned char>(c) >> 4]);
    out.push_back(kDigits[static_cast<unsigned char>(c) & 15]);
  }
  return out;
}

// Progress for long work, on stderr, only when it is a terminal: count, rate
// and, when the total is known, the time left.
class Progress {
 public:
  Progress(const char* what, std::uint64_t total) : what_(what), total_(total), on_(::isatty(STDERR_FILENO) == 1) {}
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  ~Progress() {
    if (on_ && shown_) std::cerr << '\n';
  }
  void operator()(std::uint64_t done) {
    if (!on_) return;
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double rate = s > 0 ? static_cast<double>(done) / s : 0;
    std::cerr << '\r' << what_ << ' ' << done;
    if (total_ > 0) std::cerr << '/' << total_;
    std::cerr << " pairs, " << static_cast<std::uint64_t>(rate) << "/s";
    if (total_ > done && rate > 0) std::cerr << ", " << static_cast<std::uint64_t>(static_cast<double>(total_ - done) / rate) << " s left";
    std::cerr << "   " << std::flush;
    shown_ = true;
  }
  // For work the library does in one call: say it started, then how long it took.
  void start_line() {
    if (on_) std::cerr << what_ << "..." << std::flush;
    shown_ = on_;
  }
  void end_line() {
    if (!on_) return;
    std::cerr << " done in " << std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count() << " s";
  }

 private:
  const char* what_;
  std::uint64_t total_;
  bool on_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
};

// Read commands open read-only: they then work with read permission alone (the
// library reads without a reader slot when the lock file is not writable).
kvstore::Store open_store(const Args& a, bool writes) {
  kvstore::Options o;
  o.create = writes;
  o.read_only = !writes;
  o.sync = a.sync ? kvstore::Sync::always : kvstore::Sync::none;
  return kvstore::Store::open(a.file, o);
}

void write_bytes(std::string_view bytes) {
  std::cout.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string arg_bytes(const Args& a, const std::string& text) { return a.hex ? from_hex(text) : text; }

int run_put(const Args& a) {
  std::string value;
  if (a.value == "-") {
    value.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    value = arg_bytes(a, a.value);
  }
  const std::string key = arg_bytes(a, a.key);
  kvstore::Store s = open_store(a, true);
  s.put(key, value);
  return kExitOk;
}

int run_get(const Args& a) {
  const std::string key = arg_bytes(a, a.key);
  const kvstore::Store s = open_store(a, false);
  const std::optional<std::string> v = s.get(key);
  if (!v) {
    std::cerr << "kvtool: get: " << a.file << ": key not found\n";
    return kExitNotFound;
  }
  write_bytes(a.hex ? to_hex(*v) : *v);
  std::cout << '\n';
  return kExitOk;
}

int run_del(const Args& a) {
  const std::string key = arg_bytes(a, a.key);
  kvstore::Store s = open_store(a, true);
  if (!s.erase(key)) {
    std::cerr << "kvtool: del: " << a.file << ": key not found\n";
    return kExitNotFound;
  }
  return kExitOk;
}

int run_incr(const Args& a) {
  kvstore::Store s = open_store(a, true);
  std::cout << s.increment(arg_bytes(a, a.key), a.delta) << '\n';
  return kExitOk;
}

// cas KEY [OLD|--absent] [NEW|--erase]: exit 0 when swapped, 1 when the value was not OLD.
int run_cas(const Args& a) {
  const std::size_t given = (a.old_value ? 1U : 0U) + (a.new_value ? 1U : 0U);
  if (given + (a.absent ? 1 : 0) + (a.erase ? 1 : 0) != 2) {
    throw kvstore::Error(kvstore::Errc::invalid_argument,
                         "cas: give KEY, then OLD or --absent, then NEW or --erase");
  }
  // With one flag, the one value given is the other side's.
  std::optional<std::string> expected;
  std::optional<std::string> desired;
  if (a.absent) {
    if (!a.erase) desired = arg_bytes(a, *a.old_value);
  } else {
    expected = arg_bytes(a, *a.old_value);
    if (!a.erase) desired = arg_bytes(a, *a.new_value);
  }
  kvstore::Store s = open_store(a, true);
  const auto view = [](const std::optional<std::string>& v) {
    return v ? std::optional<std::string_view>(*v) : std::nullopt;
  };
  if (!s.compare_exchange(arg_bytes(a, a.key), view(expected), view(desired))) {
    std::cerr << "kvtool: cas: " << a.file << ": the value was not the one expected\n";
    return kExitNotFound;
  }
  return kExitOk;
}

int run_insert(const Args& a) {
  kvstore::Store s = open_store(a, true);
  if (!s.insert(arg_bytes(a, a.key), arg_bytes(a, a.value))) {
    std::cerr << "kvtool: insert: " << a.file << ": the key exists\n";
    return kExitNotFound;
  }
  return kExitOk;
}

// Blocks until the store changes (past --since, or past now), then prints
// the change count; exit 1 if --timeout passed first.
int run_wait(const Args& a) {
  const kvstore::Store s = open_store(a, false);
  const std::uint64_t seen = a.since.value_or(s.change_count());
  const auto timeout = a.timeout_ms < 0 ? std::chrono::milliseconds(std::chrono::hours(24 * 365 * 100))
                                        : std::chrono::milliseconds(a.timeout_ms);
  std::uint64_t now = seen;
  // One call waits at most its timeout; "forever" is a loop of long waits.
  do {
    now = s.wait_for_change(seen, timeout);
  } while (now == seen && a.timeout_ms < 0);
  std::cout << now << '\n';
  if (now == seen) {
    std::cerr << "kvtool: wait: " << a.file << ": no change within " << a.timeout_ms << " ms\n";
    return kExitNotFound;
  }
  return kExitOk;
}

int run_count(const Args& a) {
  std::cout << open_store(a, false).size() << '\n';
  return kExitOk;
}

int run_keys(const Args& a) {
  const kvstore::Store s = open_store(a, false);
  s.for_each([&](std::string_view key, std::string_view) {
    write_bytes(a.hex ? to_hex(key) : std::string(key));
    std::cout << '\n';
    return static_cast<bool>(std::cout);
  });
  return kExitOk;
}

int run_compact(const Args& a) {
  kvstore::Store s = open_store(a, true);
  const std::uint64_t before = s.stats().file_size;
  {
    Progress p("compacting", 0);
    p.start_line();
    s.compact();
    p.end_line();
  }
  const std::uint64_t after = s.stats().file_size;
  std::cout << "compacted " << a.file << ": " << before << " -> " << after << " bytes\n";
  return kExitOk;
}

const char* sync_name(kvstore::Sync s) { return s == kvstore::Sync::always ? "always" : "none"; }

int run_stats(const Args& a) {
  const kvstore::Stats st = open_store(a, false).stats();
  nlohmann::ordered_json j = {
      {"file", a.file},
      {"file_size", st.file_size},
      {"used_bytes", st.used_bytes},
      {"free_bytes", st.free_bytes},
      {"keys", st.keys},
      {"key_bytes", st.key_bytes},
      {"value_bytes", st.value_bytes},
      {"record_bytes", st.record_bytes},
      {"dead_bytes", st.dead_bytes},
      {"table_slots", st.table_slots},
      {"load_factor", st.load_factor},
      {"fill", st.file_size == 0 ? 0.0 : static_cast<double>(st.used_bytes) / static_cast<double>(st.file_size)},
      {"generation", st.generation},
      {"grows", st.grows},
      {"compactions", st.compactions},
      {"last_compact_unix", st.last_compact_unix},
      {"recoveries", st.recoveries},
      {"change_count", st.change_count},
      {"processes", st.processes},
      {"sync", sync_name(st.sync)},
  };
  if (a.json) {
    std::cout << j.dump(2) << '\n';
  } else {
    for (const auto& [name, value] : j.items()) {
      std::cout << name << std::string(name.size() < 18 ? 18 - name.size() : 1, ' ')
                << (value.is_string() ? value.get<std::string>() : value.dump()) << '\n';
    }
  }
  return kExitOk;
}

int run_check(const Args& a) {
  if (a.repair) {
    const std::vector<std::string> found = kvstore::Store::repair(a.file);
    for (const std::string& p : found) std::cout << a.file << ": was: " << p << '\n';
    const kvstore::Store s = open_store(a, false);
    std::cout << "repaired " << a.file << ": " << s.size() << " keys kept\n";
    return s.check().empty() ? kExitOk : kExitBadStore;
  }
  std::vector<std::string> problems;
  {
    const kvstore::Store s = open_store(a, false);
    Progress p("checking", 0);
    p.start_line();
    problems = s.check();
    p.end_line();
  }
  if (a.json) {
    std::cout << nlohmann::json{{"file", a.file}, {"ok", problems.empty()}, {"problems", problems}}.dump(2)
              << '\n';
  } else if (problems.empty()) {
    std::cout << "ok\n";
  } else {
    for (const std::string& p : problems) std::cout << a.file << ": " << p << '\n';
  }
  return problems.empty() ? kExitOk : kExitBadStore;
}

int run_dump(const Args& a) {
  const kvstore::Store s = open_store(a, false);
  Progress progress("dumped", s.size());
  const kvstore::DumpOptions options{.mapsize = !a.bdb, .progress = [&](std::uint64_t n) { progress(n); }};
  if (a.path.empty() || a.path == "-") {
    kvstore::dump(s, std::cout, options);
    return kExitOk;
  }
  std::ofstream out(a.path, std::ios::binary | std::ios::trunc);
  if (!out) throw kvstore::Error(kvstore::Errc::io, a.path + ": cannot open for writing");
  kvstore::dump(s, out, options);
  return kExitOk;
}

int run_load(const Args& a) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (!a.path.empty() && a.path != "-") {
    file.open(a.path, std::ios::binary);
    if (!file) throw kvstore::Error(kvstore::Errc::io, a.path + ": cannot open for reading");
    in = &file;
  }
  kvstore::Store s = open_store(a, true);
  try {
    const auto start = std::chrono::steady_clock::now();
    kvstore::LoadResult r;
    {
      Progress progress("parsed", 0);
      r = kvstore::load(s, *in, {.progress = [&](std::uint64_t n) { progress(n); }});
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::cerr << "loaded " << r.pairs << " pairs into " << a.file << " ("
              << static_cast<std::uint64_t>(secs > 0 ? static_cast<double>(r.pairs) / secs : 0) << " pairs/s)\n";
  } catch (const kvstore::Error& e) {
    if (e.code() != kvstore::Errc::invalid_argument) throw;
    // Name the input: "line N: ..." alone does not say which file.
    throw kvstore::Error(e.code(), (a.path.empty() ? std::string("stdin") : a.path) + ": " + e.what());
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Args a;
  const char* env_file = std::getenv("KVSTORE_FILE");
  a.file = env_file != nullptr && *env_file != '\0' ? env_file : "kvstore.kv";

  CLI::App app{"kvtool: inspect and change a kvstore file", "kvtool"};
  app.set_version_flag("--version", "kvtool 0.2.0 (kvstore format 3)");
  app.add_option("-f,--file", a.file, "store file (default: $KVSTORE_FILE, else ./kvstore.kv)");
  app.add_flag("--sync", a.sync, "writes wait until the data is on stable storage (Sync::always)");
  app.add_flag("--hex", a.hex, "KEY and VALUE are given, and shown, as hex digits");
  app.require_subcommand(1);
  app.fallthrough();  // -f, --hex and --sync may also follow the command
  app.footer(
      "Exit status: 0 done, 1 key not found, 2 usage error, 3 not a valid or compatible store,\n"
      "4 other failure (I/O, no space, permission, busy).");

  int (*run)(const Args&) = nullptr;
  std::string command;
  auto sub = [&](const char* name, const char* help, int (*fn)(const Args&)) {
    CLI::App* s = app.add_subcommand(name, help);
    s->callback([&run, &command, fn, name] {
      run = fn;
      command = name;
    });
    return s;
  };

  CLI::App* put = sub("put", "store VALUE under KEY (VALUE '-' reads stdin); creates the file", run_put);
  put->add_option("KEY", a.key, "key")->required();
  put->add_option("VALUE", a.value, "value, or - for stdin")->required();
  CLI::App* get = sub("get", "print the value of KEY followed by a newline", run_get);
  get->add_option("KEY", a.key, "key")->required();
  CLI::App* del = sub("del", "remove KEY", run_del);
  del->add_option("KEY", a.key, "key")->required();
  CLI::App* incr = sub("incr", "add DELTA (default 1) to the decimal number under KEY; print the result", run_incr);
  incr->add_option("KEY", a.key, "key")->required();
  incr->add_option("DELTA", a.delta, "an int64 (write -- before a negative one)");
  CLI::App* cas = sub("cas", "set KEY to NEW only if its value is OLD (exit 1 if not)", run_cas);
  cas->add_option("KEY", a.key, "key")->required();
  cas->add_option("OLD", a.old_value, "the value expected (or --absent)");
  cas->add_option("NEW", a.new_value, "the value to set (or --erase)");
  cas->add_flag("--absent", a.absent, "expect KEY to be absent");
  cas->add_flag("--erase", a.erase, "erase KEY instead of setting it");
  CLI::App* insert = sub("insert", "store VALUE under KEY only if KEY is absent (exit 1 if not)", run_insert);
  insert->add_option("KEY", a.key, "key")->required();
  insert->add_option("VALUE", a.value, "value")->required();
  CLI::App* wait = sub("wait", "block until the store changes; print the change count (exit 1 on timeout)", run_wait);
  wait->add_option("--timeout", a.timeout_ms, "give up after this many ms (default: never)");
  wait->add_option("--since", a.since, "wait until the change count differs from this one (default: now)");
  sub("count", "print the number of keys", run_count);
  sub("keys", "print every key, one a line (order unspecified)", run_keys);
  sub("compact", "rewrite the store to its smallest size, online", run_compact);
  sub("stats", "sizes, counts, fill, generation, load factor", run_stats)
      ->add_flag("--json", a.json, "as JSON");
  CLI::App* check = sub("check", "verify the whole file; say what is wrong (exit 3 if anything is)", run_check);
  check->add_flag("--json", a.json, "as JSON");
  check->add_flag("--repair", a.repair, "rebuild the store from every intact record (the original is replaced only when the copy is complete)");
  CLI::App* dump = sub("dump", "write all pairs in mdb_dump/db_dump text format (bytevalue)", run_dump);
  dump->add_option("OUT", a.path, "output file (default stdout)");
  dump->add_flag("--bdb", a.bdb, "for Berkeley DB's db_load: leave out LMDB's mapsize= line");
  sub("load", "read pairs in that format (bytevalue or print), all or nothing", run_load)
      ->add_option("IN", a.path, "input file (default stdin)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::cerr << "kvtool: " << e.what() << "\n(run kvtool --help for usage)\n";
    return kExitUsage;
  }
  if (run == nullptr) return kExitUsage;
  try {
    return run(a);
  } catch (const kvstore::Error& e) {
    std::string what = e.what();
    if (what.rfind(a.file, 0) != 0) what = a.file + ": " + what;
    std::cerr << "kvtool: " << command << ": " << what << " (" << kvstore::to_string(e.code()) << ")\n";
    return exit_code(e.code());
  } catch (const std::exception& e) {
    std::cerr << "kvtool: " << command << ": " << a.file << ": " << e.what() << '\n';
    return kExitFailure;
  }
}
