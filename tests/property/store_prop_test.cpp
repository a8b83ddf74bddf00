// Stateful property test: random sequences of operations through two handles
// on one file, against a std::map model. Sizes are chosen so that a run
// crosses many grow boundaries from a 64 KiB start.
#include <gtest/gtest.h>
#include <rapidcheck.h>
#include <rapidcheck/gtest.h>
#include <rapidcheck/state.h>

#include <kvstore/store.hpp>
#include <map>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>

#include "../support/increment_model.hpp"
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
  return rc::gen::oneOf(rc::gen::map(rc::gen::inRange(0, 64), [](int i) { return std::string("k").append(std::to_string(i)); }),
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

// A transaction of random steps, checked step by step against the model as
// the transaction should see it; sometimes the callback throws at the end,
// and then nothing of it may show.
struct Transact : rc::state::Command<Model, Sut> {
  enum Kind { put, erase, get, contains };
  struct Step {
    int kind;
    std::string key;
    std::string value;
  };
  // The count is drawn apart from the steps: rc::gen::resize would also
  // scale every number drawn inside it (inRange is sized), down to kind 0 and key k0.
  std::vector<Step> steps = *rc::gen::container<std::vector<Step>>(
      static_cast<std::size_t>(*rc::gen::inRange(0, 9)),
      rc::gen::construct<Step>(rc::gen::element(0, 1, 2, 3), gen_key(), gen_value()));
  bool throws = *rc::gen::weightedElement<bool>({{4, false}, {1, true}});

  static void step(Model& m, const Step& st) {
    if (st.kind == put) m[st.key] = st.value;
    if (st.kind == erase) m.erase(st.key);
  }
  void apply(Model& m) const override {
    if (throws) return;
    for (const Step& st : steps) step(m, st);
  }
  void run(const Model& m, Sut& sut) const override {
    Model inside = m; 
    const auto body = [&](kvstore::Transaction& t) {
      for (const Step& st : steps) {
        const auto it = inside.find(st.key);
        const std::optional<std::string> want = it == inside.end() ? std::nullopt : std::optional(it->second);
        switch (st.kind) {
          case put: t.put(st.key, st.value); break;
          case erase: RC_ASSERT(t.erase(st.key) == want.has_value()); break;
          case get: RC_ASSERT(t.get(st.key) == want); break;
          default: RC_ASSERT(t.contains(st.key) == want.has_value()); break;
        }
        step(inside, st);
      }
      if (throws) throw std::runtime_error("abandon");
    };
    if (throws) {
      bool thrown = false;
      try {
        sut.s().transact(body);
      } catch (const std::runtime_error& e) {
        thrown = std::string(e.what()) == "abandon";
      }
      RC_ASSERT(thrown);
    } else {
      sut.s().transact(body);
    }
  }
  void show(std::ostream& os) const override { os << "Transact(" << steps.size() << " steps" << (throws ? ", throws)" : ")"); }
};

struct ViewAll : rc::state::Command<Model, Sut> {
  std::vector<std::string> keys =
      *rc::gen::container<std::vector<std::string>>(static_cast<std::size_t>(*rc::gen::inRange(1, 9)), gen_key());
  void run(const Model& m, Sut& sut) const override {
    sut.s().view([&](const kvstore::View& v) {
      RC_ASSERT(v.size() == m.size());
      for (const std::string& k : keys) {
        const auto it = m.find(k);
        const std::optional<std::string_view> got = v.get(k);
        RC_ASSERT(got.has_value() == (it != m.end()));
        if (got) RC_ASSERT(*got == it->second);
        RC_ASSERT(v.contains(k) == (it != m.end()));
      }
    });
  }
};

// Counter keys of their own, so that most increments meet numbers; any key
// of the pool may be incremented too, and then usually holds no number.
rc::Gen<std::string> gen_counter_key() {
  return rc::gen::oneOf(rc::gen::map(rc::gen::inRange(0, 3), [](int i) { return std::string("n").append(std::to_string(i)); }), gen_key());
}

std::optional<std::int64_t> model_increment(const Model& m, const std::string& key, std::int64_t delta) {
  const auto it = m.find(key);
  return kvstore::test::expected_increment(it == m.end() ? std::nullopt : std::optional(it->second), delta);
}

struct Increment : rc::state::Command<Model, Sut> {
  std::string key = *gen_counter_key();
  std::int64_t delta = *rc::gen::oneOf(rc::gen::inRange<std::int64_t>(-1000, 1000),
                                        rc::gen::element(INT64_MAX, INT64_MIN, INT64_MAX / 2 + 1));
  void apply(Model& m) const override {
    if (const auto r = model_increment(m, key, delta)) m[key] = std::to_string(*r);
  }
  void run(const Model& m, Sut& sut) const override {
    const std::optional<std::int64_t> want = model_increment(m, key, delta);
    if (want) {
      RC_ASSERT(sut.s().increment(key, delta) == *want);
    } else {
      bool refused = false;
      try {
        sut.s().increment(key, delta);
      } catch (const kvstore::Error& e) {
        refused = e.code() == kvstore::Errc::invalid_argument;
      }
      RC_ASSERT(refused);
    }
  }
  void show(std::ostream& os) const override { os << "Increment(" << key.size() << "B key, " << delta << ")"; }
};

rc::Gen<std::optional<std::string>> gen_optional(rc::Gen<std::string> g) {
  return rc::gen::map(rc::gen::pair(rc::gen::arbitrary<bool>(), std::move(g)), [](const std::pair<bool, std::string>& p) {
    return p.first ? std::optional(p.second) : std::nullopt;
  });
}

struct CompareExchange : rc::state::Command<Model, Sut> {
  std::string key = *gen_counter_key();
  bool expect_current = *rc::gen::arbitrary<bool>();  // else a guess: absent or some value
  std::optional<std::string> guess = *gen_optional(rc::gen::resize(4, rc::gen::string<std::string>()));
  std::optional<std::string> desired = *gen_optional(gen_value());
  std::optional<std::string> expected(const Model& m) const {
    if (!expect_current) return guess;
    const auto it = m.find(key);
    return it == m.end() ? std::nullopt : std::optional(it->second);
  }
  bool succeeds(const Model& m) const {
    const auto it = m.find(key);
    return expected(m) == (it == m.end() ? std::nullopt : std::optional(it->second));
  }
  void apply(Model& m) const override {
    if (!succeeds(m)) return;
    if (desired) {
      m[key] = *desired;
    } else {
      m.erase(key);
    }
  }
  void run(const Model& m, Sut& sut) const override {
    const std::optional<std::string> e = expected(m);
    const auto sv = [](const std::optional<std::string>& v) {
      return v ? std::optional<std::string_view>(*v) : std::nullopt;
    };
    RC_ASSERT(sut.s().compare_exchange(key, sv(e), sv(desired)) == succeeds(m));
  }
};

struct Insert : rc::state::Command<Model, Sut> {
  std::string key = *gen_key();
  std::string value = *gen_value();
  void apply(Model& m) const override { m.emplace(key, value); }
  void run(const Model& m, Sut& sut) const override { RC_ASSERT(sut.s().insert(key, value) == (m.count(key) == 0)); }
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
                                                     Iterate, Batch, Transact, Transact, ViewAll, Increment,
                                                     CompareExchange, Insert, Compact, Reopen, Switch>());
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
