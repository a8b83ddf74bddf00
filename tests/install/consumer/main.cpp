// The README's library example, compiled and run by tests/install/install_test.sh
// against an installed kvstore (find_package and pkg-config) and through
// add_subdirectory. Keep it identical to the README.
#include <kvstore/store.hpp>

#include <cstdio>

int main(int argc, char** argv) {
  if (argc < 2) return 2;
  try {
    kvstore::Options opt;                       // create, read_only, initial_size, max_file_size,
    opt.sync = kvstore::Sync::always;           // sync (none | always), lock_timeout
    kvstore::Store s = kvstore::Store::open(argv[1], opt);   // throws kvstore::Error

    s.put("key", std::string("bytes\0ok", 8));  // any bytes; the empty key too
    std::optional<std::string> v = s.get("key");
    s.visit("key", [](std::string_view value) { /* zero-copy, under the read lock */ (void)value; });
    bool existed = s.erase("key");
    s.apply({{"a", "1"}, {"b", "2"}, {"old", "", /*erase=*/true}});   // all or nothing
    s.for_each([](std::string_view k, std::string_view v) { return true; });  // a snapshot
    std::size_t n = s.size();
    s.compact();                                // online: other handles adopt the new file
    kvstore::Stats st = s.stats();
    std::vector<std::string> problems = s.check();

    const bool ok = v && v->size() == 8 && existed && n == 2 && st.keys == 2 && problems.empty();
    std::printf("%s\n", ok ? "consumer ok" : "consumer WRONG");
    return ok ? 0 : 1;
  } catch (const kvstore::Error& e) {
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  }
}
