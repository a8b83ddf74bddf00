// libFuzzer target: the input is a program of store operations, run against a
// std::map model; any difference, or any exception other than kvstore::Error,
// is a crash. Reopen and compaction are among the operations.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <kvstore/store.hpp>
#include <map>
#include <optional>
#include <string>

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

const std::string& store_path() {
  static const std::string path = [] {
    std::string tmpl = (std::filesystem::temp_directory_path() / "kvfuzz-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    return tmpl + "/ops.kv";
  }();
  return path;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string& path = store_path();
  std::filesystem::remove(path);
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  o.max_file_size = 64 << 20;
  std::optional<kvstore::Store> s(kvstore::Store::open(path, o));
  std::map<std::string, std::string> model;
  Input in(data, size);
  while (!in.empty()) {
    const std::uint8_t op = in.byte();
    const std::string key = in.bytes(in.byte() % 6);
    switch (op % 8) {
      case 0:
      case 1: {
        const std::uint8_t len = in.byte();
        // Long values now and then, so that the file grows.
        const std::string value = (len & 0x80) != 0 ? std::string(static_cast<std::size_t>(len) * 97, static_cast<char>(len)) : in.bytes(len);
        s->put(key, value);
        model[key] = value;
        break;
      }
      case 2:
        if (s->erase(key) != (model.erase(key) == 1)) std::abort();
        break;
      case 3: {
        const auto it = model.find(key);
        if (s->get(key) != (it == model.end() ? std::nullopt : std::optional(it->second))) std::abort();
        break;
      }
      case 4: {
        std::size_t n = 0;
        s->for_each([&](std::string_view k, std::string_view v) {
          const auto it = model.find(std::string(k));
          if (it == model.end() || it->second != v) std::abort();
          ++n;
          return true;
        });
        if (n != model.size() || s->size() != model.size()) std::abort();
        break;
      }
      case 5:
        s->compact();
        break;
      case 6:
        s.reset();
        s.emplace(kvstore::Store::open(path, o));
        break;
      case 7: {
        std::vector<kvstore::BatchOp> ops;
        for (int i = in.byte() % 4; i >= 0; --i) {
          kvstore::BatchOp b{in.bytes(in.byte() % 4), in.bytes(in.byte() % 16), (in.byte() & 1) != 0};
          if (b.erase) {
            model.erase(b.key);
          } else {
            model[b.key] = b.value;
          }
          ops.push_back(std::move(b));
        }
        s->apply(ops);
        break;
      }
    }
  }
  if (!s->check().empty()) std::abort();
  return 0;
}
