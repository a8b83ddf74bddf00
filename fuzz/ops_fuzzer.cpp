// libFuzzer target: the input is a program of store operations, run through
// one or two handles of one file against a std::map model; any difference, or
// any exception (kvstore::Error included: no operation here may fail), is a
// crash. Reopen, compaction and growth are among the operations.
//
// Encoding (fuzz/corpus/make_ops_seeds.sh writes seeds in it): each operation
// is an opcode byte, a key-length byte (taken mod 6) and that many key bytes,
// then operands:
//   op%10 0,1 put      value-length byte L; L < 0x80: L value bytes follow;
//                      L >= 0x80: a value of L*97 bytes of byte L (no bytes follow)
//         2   erase    3 get/contains/visit   4 for_each/size   5 compact
//         6   reopen the current handle       8 switch to the other handle
//         7   apply    count byte (mod 4, +1 ops), each: key-len byte (mod 4), key,
//                      value-len byte (mod 16), value, erase byte (bit 0)
//         9   stats    keys, key bytes and value bytes against the model
// A missing byte reads as 0. The store starts at 64 KiB, so long values grow it.
//
// The store lives in a fresh directory under $KVSTORE_FUZZ_DIR, else /dev/shm
// when it has room (no fsync cost: 30x the executions), else the temp
// directory; the directory is removed at exit.
#include <sys/statvfs.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <kvstore/store.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace {

class Input {
 public:
  Input(const std::uint8_t* data, std::size_t size) : p_(data), end_(data + size) {}
  [[nodiscard]] bool empty() const { return p_ == end_; }
  std::uint8_t byte() { return p_ == end_ ? 0 : *p_++; }
  std::string bytes(std::size_t n) {
    std::string s;
    while (n-- > 0 && p_ != end_) s.push_back(static_cast<char>(*p_++));
    return s;
  }

 private:
  const std::uint8_t* p_;
  const std::uint8_t* end_;
};

using Model = std::map<std::string, std::string>;

void require(bool ok) {
  if (!ok) std::abort();
}

std::filesystem::path base_dir() {
  if (const char* d = std::getenv("KVSTORE_FUZZ_DIR"); d != nullptr && *d != '\0') return d;
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) == 0 && ::access("/dev/shm", W_OK) == 0 &&
      static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize >= (std::uint64_t{512} << 20)) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

std::filesystem::path& work_dir() {
  static std::filesystem::path dir;
  return dir;
}

void remove_work_dir() {
  std::error_code ec;
  if (!work_dir().empty()) std::filesystem::remove_all(work_dir(), ec);
}

const std::string& store_path() {
  static const std::string path = [] {
    std::string tmpl = (base_dir() / "kvfuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    work_dir() = tmpl;
    std::atexit(remove_work_dir);
    return tmpl + "/ops.kv";
  }();
  return path;
}

kvstore::Options options() {
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.max_file_size = 256 << 20;
  return o;
}

std::optional<std::string> model_get(const Model& m, const std::string& key) {
  const auto it = m.find(key);
  return it == m.end() ? std::nullopt : std::optional(it->second);
}

void check_get(const kvstore::Store& s, const Model& m, const std::string& key) {
  const std::optional<std::string> want = model_get(m, key);
  require(s.get(key) == want);
  require(s.contains(key) == want.has_value());
  std::optional<std::string> seen;
  require(s.visit(key, [&](std::string_view v) { seen.emplace(v); }) == want.has_value());
  require(seen == want);
}

void check_all(const kvstore::Store& s, const Model& m) {
  std::size_t n = 0;
  s.for_each([&](std::string_view k, std::string_view v) {
    const auto it = m.find(std::string(k));
    require(it != m.end() && it->second == v);
    ++n;
    return true;
  });
  require(n == m.size());
  require(s.size() == m.size());
}

void check_stats(const kvstore::Store& s, const Model& m) {
  const kvstore::Stats st = s.stats();
  std::uint64_t key_bytes = 0;
  std::uint64_t value_bytes = 0;
  for (const auto& [k, v] : m) {
    key_bytes += k.size();
    value_bytes += v.size();
  }
  require(st.keys == m.size());
  require(st.key_bytes == key_bytes);
  require(st.value_bytes == value_bytes);
  require(st.file_size == std::filesystem::file_size(s.path()));
}

void apply_batch(Input& in, kvstore::Store& s, Model& m) {
  std::vector<kvstore::BatchOp> ops;
  for (int i = in.byte() % 4; i >= 0; --i) {
    std::string key = in.bytes(in.byte() % 4);
    std::string value = in.bytes(in.byte() % 16);
    kvstore::BatchOp b{std::move(key), std::move(value), (in.byte() & 1) != 0};
    if (b.erase) {
      m.erase(b.key);
    } else {
      m[b.key] = b.value;
    }
    ops.push_back(std::move(b));
  }
  s.apply(ops);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = store_path();
  std::filesystem::remove(path);
  const kvstore::Options o = options();
  std::array<std::optional<kvstore::Store>, 2> handles;
  handles[0].emplace(kvstore::Store::open(path, o));
  std::size_t cur = 0;
  Model model;
  Input in(data, size);
  while (!in.empty()) {
    const std::uint8_t op = in.byte();
    const std::string key = in.bytes(in.byte() % 6);
    kvstore::Store& s = *handles[cur];
    switch (op % 10) {
      case 0:
      case 1: {
        const std::uint8_t len = in.byte();
        // Long values now and then, so that the file grows.
        const std::string value = (len & 0x80) != 0 ? std::string(static_cast<std::size_t>(len) * 97, static_cast<char>(len))
                                                    : in.bytes(len);
        s.put(key, value);
        model[key] = value;
        break;
      }
      case 2:
        require(s.erase(key) == (model.erase(key) == 1));
        break;
      case 3:
        check_get(s, model, key);
        break;
      case 4:
        check_all(s, model);
        break;
      case 5:
        s.compact();
        break;
      case 6:
        handles[cur].reset();
        handles[cur].emplace(kvstore::Store::open(path, o));
        break;
      case 7:
        apply_batch(in, s, model);
        break;
      case 8:
        cur ^= 1U;
        if (!handles[cur]) handles[cur].emplace(kvstore::Store::open(path, o));
        break;
      case 9:
        check_stats(s, model);
        break;
    }
  }
  // Both handles, and a fresh one after both are closed, hold exactly the model.
  for (const auto& h : handles) {
    if (h) {
      check_all(*h, model);
      require(h->check().empty());
    }
  }
  handles[0].reset();
  handles[1].reset();
  const kvstore::Store fresh = kvstore::Store::open(path, o);
  check_all(fresh, model);
  return 0;
}
