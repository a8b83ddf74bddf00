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
//   op%16 10  transact count byte (mod 4, +1 steps), each: kind byte (mod 4: put,
//                      erase, get, contains), key-len byte (mod 4), key, and for a
//                      put value-len byte (mod 16), value; then a byte whose bit 0
//                      makes the callback throw (nothing may be written)
//         11  view     count byte (mod 4, +1 keys), each: key-len byte (mod 4), key
//         12  increment  delta byte (signed); the key's value decides success
//         13  compare_exchange  flags byte (bit 0: expect the current value, else
//                      bit 2: expect absent, else a guess: len byte (mod 4), bytes;
//                      bit 1: desire erase, else len byte (mod 16), bytes)
//         14  insert   value-len byte (mod 16), value
//         15  change count: never goes back; wait_for_change with 0 ms returns it
// A missing byte reads as 0. The store starts at 64 KiB, so long values grow it.
//
// The store lives in a fresh directory under $KVSTORE_FUZZ_DIR, else /dev/shm
// when it has room (no fsync cost: 30x the executions), else the temp
// directory; the directory is removed at exit.
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <kvstore/store.hpp>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "../tests/support/increment_model.hpp"
#include "scratch_dir.hpp"

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

const std::string& store_path() {
  static const std::string path = kvstore::fuzz::scratch_dir("kvfuzz") + "/ops.kv";
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

void transact(Input& in, kvstore::Store& s, Model& m) {
  struct Step {
    int kind;
    std::string key;
    std::string value;
  };
  std::vector<Step> steps;
  for (int i = in.byte() % 4; i >= 0; --i) {
    Step st{in.byte() % 4, {}, {}};
    st.key = in.bytes(in.byte() % 4);
    if (st.kind == 0) st.value = in.bytes(in.byte() % 16);
    steps.push_back(std::move(st));
  }
  const bool throws = (in.byte() & 1) != 0;
  Model inside = m;
  struct Abandon {};
  try {
    s.transact([&](kvstore::Transaction& t) {
      for (const Step& st : steps) {
        const std::optional<std::string> want = model_get(inside, st.key);
        switch (st.kind) {
          case 0:
            t.put(st.key, st.value);
            inside[st.key] = st.value;
            break;
          case 1:
            require(t.erase(st.key) == want.has_value());
            inside.erase(st.key);
            break;
          case 2:
            require(t.get(st.key) == want);
            break;
          default:
            require(t.contains(st.key) == want.has_value());
            break;
        }
      }
      if (throws) throw Abandon{};
    });
    require(!throws);
    m = std::move(inside);
  } catch (const Abandon&) {
    require(throws);
  }
}

void view(Input& in, const kvstore::Store& s, const Model& m) {
  std::vector<std::string> keys;
  for (int i = in.byte() % 4; i >= 0; --i) keys.push_back(in.bytes(in.byte() % 4));
  s.view([&](const kvstore::View& v) {
    require(v.size() == m.size());
    for (const std::string& k : keys) {
      const std::optional<std::string> want = model_get(m, k);
      const std::optional<std::string_view> got = v.get(k);
      require(got.has_value() == want.has_value() && (!got || *got == *want));
      require(v.contains(k) == want.has_value());
    }
  });
}

void increment(Input& in, kvstore::Store& s, Model& m, const std::string& key) {
  const auto delta = static_cast<std::int8_t>(in.byte());
  const std::optional<std::int64_t> want = kvstore::test::expected_increment(model_get(m, key), delta);
  if (!want) {
    try {
      s.increment(key, delta);
    } catch (const kvstore::Error& e) {
      require(e.code() == kvstore::Errc::invalid_argument);
      return;
    }
    require(false);  // it had to refuse
  }
  require(s.increment(key, delta) == *want);
  m[key] = std::to_string(*want);
}

void compare_exchange(Input& in, kvstore::Store& s, Model& m, const std::string& key) {
  const std::uint8_t flags = in.byte();
  const std::optional<std::string> current = model_get(m, key);
  std::optional<std::string> expected;
  if ((flags & 1) != 0) {
    expected = current;
  } else if ((flags & 4) == 0) {
    expected = in.bytes(in.byte() % 4);
  }
  std::optional<std::string> desired;
  if ((flags & 2) == 0) desired = in.bytes(in.byte() % 16);
  const auto sv = [](const std::optional<std::string>& v) {
    return v ? std::optional<std::string_view>(*v) : std::nullopt;
  };
  const bool swaps = expected == current;
  require(s.compare_exchange(key, sv(expected), sv(desired)) == swaps);
  if (!swaps) return;
  if (desired) {
    m[key] = *desired;
  } else {
    m.erase(key);
  }
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
  std::uint64_t changes_seen = handles[0]->change_count();
  Input in(data, size);
  while (!in.empty()) {
    const std::uint8_t op = in.byte();
    const std::string key = in.bytes(in.byte() % 6);
    kvstore::Store& s = *handles[cur];
    switch (op % 16) {
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
      case 10:
        transact(in, s, model);
        break;
      case 11:
        view(in, s, model);
        break;
      case 12:
        increment(in, s, model, key);
        break;
      case 13:
        compare_exchange(in, s, model, key);
        break;
      case 14: {
        const std::string value = in.bytes(in.byte() % 16);
        require(s.insert(key, value) == model.emplace(key, value).second);
        break;
      }
      case 15: {
        const std::uint64_t now = s.change_count();
        require(now >= changes_seen);
        require(s.wait_for_change(now, std::chrono::milliseconds(0)) == now);
        changes_seen = now;
        break;
      }
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
