// libFuzzer target: hostile files. The input patches a valid store (made once
// at start-up, with keys, erases and a few grows): pairs of (offset, byte),
// optionally with the header checksum repaired so that damage deeper in the
// file is reached. Open, check, read every key, write: every outcome must be
// a value or a kvstore::Error, never a crash or a hang; and when check()
// finds nothing wrong, every read must give the right answer.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <kvstore/store.hpp>
#include <map>
#include <string>

#include "crc32c.hpp"
#include "format.hpp"
#include "scratch_dir.hpp"

namespace {

struct Base {
  std::string dir;
  std::string bytes;
  std::map<std::string, std::string> pairs;
};

const Base& base() {
  static const Base b = [] {
    Base out;
    out.dir = kvstore::fuzz::scratch_dir("kvfuzzfile");
    const std::string path = out.dir + "/base.kv";
    {
      kvstore::Options o;
      o.initial_size = 64 * 1024;
      kvstore::Store s = kvstore::Store::open(path, o);
      for (int i = 0; i < 300; ++i) {
        const std::string k = "key" + std::to_string(i);
        const std::string v(static_cast<std::size_t>(i * 7 % 900), static_cast<char>('a' + i % 26));
        s.put(k, v);
        out.pairs[k] = v;
      }
      for (int i = 0; i < 300; i += 5) {
        s.erase("key" + std::to_string(i));
        out.pairs.erase("key" + std::to_string(i));
      }
    }
    std::ifstream in(path, std::ios::binary);
    out.bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return out;
  }();
  return b;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const Base& b = base();
  std::string file = b.bytes;
  std::size_t i = 0;
  const bool fix_crc = size > 0 && (data[0] & 1) != 0;
  const bool truncate = size > 1 && (data[1] & 0x80) != 0;
  for (i = 2; i + 3 <= size; i += 3) {
    const std::size_t at = (static_cast<std::size_t>(data[i]) << 8 | data[i + 1]) * 7 % file.size();
    file[at] = static_cast<char>(data[i + 2]);
  }
  if (truncate) file.resize(file.size() * data[1] / 256 / 4096 * 4096 + (data[1] & 7) * 100);
  if (fix_crc && file.size() >= kvstore::detail::kHeaderCrcBytes + 4) {
    const std::uint32_t crc = kvstore::detail::crc32c(0, file.data(), kvstore::detail::kHeaderCrcBytes);
    std::memcpy(file.data() + kvstore::detail::kHeaderCrcBytes, &crc, 4);
  }
  const std::string path = b.dir + "/mutated.kv";
  std::filesystem::remove(path);
  std::filesystem::remove(path + ".lock");
  std::ofstream(path, std::ios::binary).write(file.data(), static_cast<std::streamsize>(file.size()));
  try {
    kvstore::Store s = kvstore::Store::open(path);
    const bool sound = s.check().empty();
    for (const auto& [k, v] : b.pairs) {
      try {
        const auto got = s.get(k);
        if (sound && got != v) std::abort();  // check passed, yet a wrong answer
      } catch (const kvstore::Error&) {
        if (sound) std::abort();
      }
    }
    s.for_each([](std::string_view, std::string_view) { return true; });
    s.put("new key", "new value");
    if (s.get("new key") != "new value") std::abort();
  } catch (const kvstore::Error&) {
    // A clean refusal is a fine answer to a damaged file.
  }
  return 0;
}
