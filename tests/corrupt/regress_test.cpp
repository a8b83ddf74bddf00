// Hostile files that once crashed the store, kept in tests/corrupt/regress/
// (the name says what was trusted). Each operation of the public API, on a
// fresh copy of each file, must either work consistently or refuse with
// Errc::corrupt or Errc::not_a_store: never crash, hang or answer wrongly.
// Then the same operations one after another on one copy, and a repair.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <functional>
#include <kvstore/store.hpp>
#include <string>
#include <vector>

#include "../support/temp_dir.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<std::string> regress_files() {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(KVSTORE_REGRESS_DIR)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

bool refused_cleanly(const kvstore::Error& e) {
  return e.code() == kvstore::Errc::corrupt || e.code() == kvstore::Errc::not_a_store;
}

// One operation, on an open store; it checks what it can of its own answer.
using Op = std::function<void(kvstore::Store&)>;

const std::vector<std::pair<const char*, Op>>& operations() {
  static const std::vector<std::pair<const char*, Op>> ops{
      {"size", [](kvstore::Store& s) { (void)s.size(); }},
      {"get", [](kvstore::Store& s) { (void)s.get("a"); }},
      {"for_each",
       [](kvstore::Store& s) {
         std::size_t n = 0;
         s.for_each([&](std::string_view, std::string_view) { return ++n, true; });
         EXPECT_EQ(n, s.size());
       }},
      {"put",
       [](kvstore::Store& s) {
         s.put("a", "b");
         EXPECT_EQ(s.get("a"), "b");
       }},
      {"put many",  // enough to grow the file and double the index
       [](kvstore::Store& s) {
         for (int i = 0; i < 2000; ++i) s.put("grow" + std::to_string(i), std::string(200, 'g'));
         EXPECT_EQ(s.get("grow1999"), std::string(200, 'g'));
       }},
      {"erase",
       [](kvstore::Store& s) {
         (void)s.erase("a");
         EXPECT_FALSE(s.contains("a"));
       }},
      {"apply",
       [](kvstore::Store& s) {
         s.apply({{"x", "1", false}, {"y", "2", false}, {"x", "", true}});
         EXPECT_FALSE(s.contains("x"));
         EXPECT_EQ(s.get("y"), "2");
       }},
      {"compact",
       [](kvstore::Store& s) {
         const std::size_t before = s.size();
         s.compact();
         EXPECT_EQ(s.size(), before);
         EXPECT_TRUE(s.check().empty());
       }},
      {"check", [](kvstore::Store& s) { (void)s.check(); }},
  };
  return ops;
}

class Regress : public ::testing::TestWithParam<std::string> {
 protected:
  std::string copy(const std::string& name) {
    const std::string path = dir_.file(name + "." + std::to_string(copies_++));
    fs::copy_file(fs::path(KVSTORE_REGRESS_DIR) / GetParam(), path);
    fs::permissions(path, fs::perms::owner_read | fs::perms::owner_write);
    return path;
  }
  kvstore::test::TempDir dir_;
  int copies_ = 0;
};

TEST_P(Regress, EachOperationWorksOrRefuses) {
  for (const auto& [name, op] : operations()) {
    SCOPED_TRACE(name);
    const std::string path = copy(GetParam());
    try {
      kvstore::Store s = kvstore::Store::open(path);
      op(s);
      // Whatever a working store answered, it must still stand behind.
      if (s.check().empty()) {
        std::size_t n = 0;
        s.for_each([&](std::string_view, std::string_view) { return ++n, true; });
        EXPECT_EQ(n, s.size());
      }
    } catch (const kvstore::Error& e) {
      EXPECT_TRUE(refused_cleanly(e)) << e.what();
    }
  }
}

TEST_P(Regress, AllOperationsInTurnThenRepair) {
  const std::string path = copy(GetParam());
  for (const auto& [name, op] : operations()) {
    SCOPED_TRACE(name);
    try {
      kvstore::Store s = kvstore::Store::open(path);
      op(s);
    } catch (const kvstore::Error& e) {
      EXPECT_TRUE(refused_cleanly(e)) << e.what();
    }
  }
  try {
    (void)kvstore::Store::repair(path);
    kvstore::Store s = kvstore::Store::open(path);
    EXPECT_TRUE(s.check().empty());
    s.put("after repair", "works");
    EXPECT_EQ(s.get("after repair"), "works");
  } catch (const kvstore::Error& e) {
    EXPECT_TRUE(refused_cleanly(e)) << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Files, Regress, ::testing::ValuesIn(regress_files()),
                         [](const ::testing::TestParamInfo<std::string>& param) {
                           std::string n = param.param;
                           for (char& c : n) {
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           }
                           return n;
                         });

}  // namespace
