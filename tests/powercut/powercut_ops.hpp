// The power-cut test's operation sequence, shared by the writer (which performs
// it) and the checker (which replays it into a model). Op i is a pure function
// of i, plus, for transactions, of how many transactions came before it, so
// that neither program needs the other's state: the checker rebuilds history
// from the op log's length alone.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace powercut {

inline std::uint64_t mix(std::uint64_t x) {  // splitmix64's finalizer
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

enum class Kind { put, erase, batch, transact };

// The first ops are all puts, so that erases have something to aim at.
inline Kind kind_of(std::uint64_t i) {
  if (i < 16) return Kind::put;
  const std::uint64_t r = mix(i ^ 0x5eed) % 100;
  if (r < 80) return Kind::put;
  if (r < 90) return Kind::erase;
  if (r < 95) return Kind::batch;
  return Kind::transact;
}

inline std::string key_of(std::uint64_t i, int sub = -1) {
  std::string k = std::to_string(i);
  if (k.size() < 7) k.insert(0, 7 - k.size(), '0');
  k.insert(0, "k");
  if (sub >= 0) k += "." + std::to_string(sub);
  return k;
}

// Mostly 50-3000 bytes, so that records straddle page boundaries at every
// offset; one in 50 is 5-12 KB and spans several pages on its own.
inline std::size_t value_size(std::uint64_t i, int sub) {
  const std::uint64_t h = mix((i << 4) + static_cast<std::uint64_t>(sub + 1) + 0xabc);
  if (h % 50 == 0) return 5000 + (h >> 8) % 7001;
  return 50 + (h >> 8) % 2951;
}

// Bytes derived from the key's op, so that a record from another op, or a torn
// one that passed as whole, can never compare equal.
inline std::string value_of(std::uint64_t i, int sub) {
  std::string v(value_size(i, sub), '\0');
  std::uint64_t s = mix(i * 131 + static_cast<std::uint64_t>(sub + 7));
  for (std::size_t p = 0; p < v.size(); ++p) {
    if (p % 8 == 0) s = mix(s);
    v[p] = static_cast<char>('!' + (s >> (8 * (p % 8))) % 90);
  }
  return v;
}

// One key's new state: a value, or absent (an erase).
struct Write {
  std::string key;
  std::optional<std::string> value;
};

struct Op {
  Kind kind;
  std::vector<Write> writes;  // in order; a batch or transaction is all or nothing
};

// An earlier op that was a plain put, so that most erases hit a key (which a
// later erase may already have removed: then it changes nothing).
inline std::uint64_t erase_target(std::uint64_t i) {
  std::uint64_t j = mix(i ^ 0xe5a5e) % i;
  while (j > 0 && kind_of(j) != Kind::put) --j;
  return j;
}

inline const char* kCounterKey = "ctr";

// Yields ops 0, 1, 2, ... in order (transactions carry the counter value the
// store must hold by then: the number of transactions before).
class Sequence {
 public:
  Op next() {
    const std::uint64_t i = i_++;
    Op op{kind_of(i), {}};
    switch (op.kind) {
      case Kind::put:
        op.writes.push_back({key_of(i), value_of(i, -1)});
        break;
      case Kind::erase:
        op.writes.push_back({key_of(erase_target(i)), std::nullopt});
        break;
      case Kind::batch: {
        const int n = 2 + static_cast<int>(mix(i ^ 0xba7c) % 4);
        for (int s = 0; s < n; ++s) op.writes.push_back({key_of(i, s), value_of(i, s)});
        op.writes.push_back({key_of(erase_target(i)), std::nullopt});
        break;
      }
      case Kind::transact:
        ++transactions_;
        op.writes.push_back({kCounterKey, std::to_string(transactions_)});
        op.writes.push_back({key_of(i), value_of(i, -1)});
        break;
    }
    return op;
  }
  [[nodiscard]] std::uint64_t index() const { return i_; }

 private:
  std::uint64_t i_ = 0;
  std::uint64_t transactions_ = 0;
};

}  // namespace powercut
