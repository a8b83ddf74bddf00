// Stateful property test: random sequences of operations through two handles
// on one file, against a std::map model. Sizes are chosen so that a run
// crosses many grow boundaries from a 64 KiB start.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <kvstore/store.hpp>
#include <map>
#include <optional>
#include <string>

#include "../support/temp_dir.hpp"

namespace {

using Model = std::map<std::string, std::string>;

struct Sut {
  kvstore::test::TempDir dir;
  std::string path = dir.file("p.kv");
  std::optional<kvstore::Store> a;
  std::optional<kvstore::Store> b;
  int current = 0;
  Sut() {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    a.emplace(kvstore::Store::open(path, o));
    b.emplace(kvstore::Store::open(path, o));
  }
  kvstore::Store& s() { return current == 0 ? *a : *b; }
};

// Keys from a small pool (so that updates and erases hit), binary bytes included.
rc::Gen<std::string> gen_key() {
  return rc::gen::oneOf(rc::gen::map(rc::gen::inRange(0, 64), [](int i) { return "k" + std::to_string(i); }),
                        rc::gen::resize(8, rc::gen::string<std::string>()));
}

rc::Gen<std::string> gen_value() {
  return rc::gen::oneOf(
      rc::gen::resize(64, rc::gen::string<std::string>()),
      rc::gen::map(rc::gen::inRange(1000, 60000), [](int n) { return std::string(static_cast<std::size_t>(n), static_cast<char>(n)); }));
}

struct Put : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  std::string value = *gen_value();
  void apply(Model& m) const override { m[key] = value; }
  void run(const Model&, Sut& sut) const override { sut.s().put(key, value); }
  void show(std::ostream& os) const override { os << "Put(" << key.size() << "B key, " << value.size() << "B)"; }
};

struct Erase : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  void apply(Model& m) const override { m.erase(key); }
  void run(const Model& m, Sut& sut) const override { RC_ASSERT(sut.s().erase(key) == (m.count(key) == 1)); }
};

struct Get : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  void run(const Model& m, Sut& sut) const override {
    const auto it = m.find(key);
    const std::optional<std::string> want = it == m.end() ? std::nullopt : std::optional(it->second);
    RC_ASSERT(sut.s().get(key) == want);
    RC_ASSERT(sut.s().contains(key) == want.has_value());
  }
};

// A value of 64-320 KiB: by itself larger than the whole starting file.
struct BigPut : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  std::size_t size = static_cast<std::size_t>(*rc::gen::inRange(64 << 10, 320 << 10));
  char fill = *rc::gen::arbitrary<char>();
  void apply(Model& m) const override { m[key] = std::string(size, fill); }
  void run(const Model&, Sut& sut) const override {
    const std::uint64_t file_before = sut.s().stats().file_size;
    sut.s().put(key, std::string(size, fill));
    RC_ASSERT(sut.s().stats().file_size >= file_before);
  }
  void show(std::ostream& os) const override { os << "BigPut(" << key.size() << "B key, " << size << "B)"; }
};

struct Contains : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  void run(const Model& m, Sut& sut) const override {
    RC_ASSERT(sut.s().contains(key) == (m.count(key) == 1));
    std::optional<std::string> seen;
    RC_ASSERT(sut.s().visit(key, [&](std::string_view v) { seen.emplace(v); }) == (m.count(key) == 1));
    if (seen) RC_ASSERT(*seen == m.at(key));
  }
};

struct Size : rc::state::Command<Model, Sut> {
  void run(const Model& m, Sut& sut) const override {
    RC_ASSERT(sut.s().size() == m.size());
    RC_ASSERT(sut.s().stats().keys == m.size());
  }
};

struct Iterate : rc::state::Command<Model, Sut> {
  void run(const Model& m, Sut& sut) const override {
    Model seen;
    sut.s().for_each([&](std::string_view k, std::string_view v) {
      seen.emplace(k, v);
      return true;
    });
    RC_ASSERT(seen == m);
    RC_ASSERT(sut.s().size() == m.size());
  }
};

struct Batch : rc::state::Command<Model, Sut> {
  std::vector<std::pair<std::string, std::optional<std::string>>> ops =
      *rc::gen::resize(6, rc::gen::container<std::vector<std::pair<std::string, std::optional<std::string>>>>(
                              rc::gen::pair(gen_key(), rc::gen::map(rc::gen::pair(rc::gen::arbitrary<bool>(), gen_value()),
                                                                    [](const std::pair<bool, std::string>& p) {
                                                                      return p.first ? std::optional(p.second) : std::nullopt;
                                                                    }))));
  void apply(Model& m) const override {
    for (const auto& [k, v] : ops) {
      if (v) {
        m[k] = *v;
      } else {
        m.erase(k);
      }
    }
  }
  void run(const Model&, Sut& sut) const override {
    std::vector<kvstore::BatchOp> b;
    for (const auto& [k, v] : ops) b.push_back({k, v.value_or(""), !v});
    sut.s().apply(b);
  }
};

struct Compact : rc::state::Command<Model, Sut> {
  void run(const Model&, Sut& sut) const override { sut.s().compact(); }
};

struct Reopen : rc::state::Command<Model, Sut> {
  void run(const Model&, Sut& sut) const override {
    kvstore::Options o;
    o.initial_size = 64 * 1024;
    auto& h = sut.current == 0 ? sut.a : sut.b;
    h.reset();
    h.emplace(kvstore::Store::open(sut.path, o));
  }
};

struct Switch : rc::state::Command<Model, Sut> {
  void run(const Model&, Sut& sut) const override { sut.current ^= 1; }
};

}  // namespace

RC_GTEST_PROP(StoreModel, BehavesLikeAMap, ()) {
  Model model;
  Sut sut;
  rc::state::check(model, sut,
                   rc::state::gen::execOneOfWithArgs<Put, Put, Put, BigPut, Erase, Get, Get, Contains, Size,
                                                     Iterate, Batch, Compact, Reopen, Switch>());
  RC_ASSERT(sut.a->check().empty());
  // (rc::state::check keeps the final model to itself; the commands compared
  // against it as they ran.) Both handles, and a fresh one opened after both
  // are closed, hold the same pairs at the end.
  const auto read_all = [](const kvstore::Store& s) {
    Model seen;
    s.for_each([&](std::string_view k, std::string_view v) {
      seen.emplace(k, v);
      return true;
    });
    return seen;
  };
  const Model through_a = read_all(*sut.a);
  RC_ASSERT(read_all(*sut.b) == through_a);
  sut.a.reset();
  sut.b.reset();
  kvstore::Options o;
  o.initial_size = 64 * 1024;
  RC_ASSERT(read_all(kvstore::Store::open(sut.path, o)) == through_a);
}
