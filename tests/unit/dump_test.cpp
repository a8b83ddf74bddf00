// dump()/load(): the mdb_dump text format, round trips and malformed input.
#include <gtest/gtest.h>

#include <kvstore/dump.hpp>
#include <kvstore/store.hpp>
#include <map>
#include <sstream>
#include <string>

#include "../support/temp_dir.hpp"

using kvstore::test::TempDir;

namespace {

std::map<std::string, std::string> contents(const kvstore::Store& s) {
  std::map<std::string, std::string> m;
  s.for_each([&](std::string_view k, std::string_view v) {
    m.emplace(k, v);
    return true;
  });
  return m;
}

kvstore::Errc load_error(const std::string& text, std::string* message = nullptr) {
  TempDir d;
  kvstore::Store s = kvstore::Store::open(d.file("s.kv"));
  s.put("existing", "kept");
  std::istringstream in(text);
  try {
    (void)kvstore::load(s, in);
  } catch (const kvstore::Error& e) {
    if (message != nullptr) *message = e.what();
    EXPECT_EQ(s.size(), 1u) << "a failed load stored something";
    EXPECT_EQ(s.get("existing"), "kept");
    return e.code();
  }
  ADD_FAILURE() << "load accepted: " << text;
  return kvstore::Errc::io;
}

}  // namespace

TEST(Dump, RoundTripKeepsEveryByte) {
  TempDir d;
  kvstore::Store a = kvstore::Store::open(d.file("a.kv"));
  std::string all;
  for (int c = 0; c < 256; ++c) all.push_back(static_cast<char>(c));
  a.put(all, all);
  a.put("", "");
  a.put("empty", "");
  a.put(std::string(1, '\0'), std::string(1 << 20, '\xff'));
  std::stringstream text;
  EXPECT_EQ(kvstore::dump(a, text).pairs, 4u);
  EXPECT_EQ(text.str().rfind("VERSION=3\nformat=bytevalue\n", 0), 0u);
  kvstore::Store b = kvstore::Store::open(d.file("b.kv"));
  EXPECT_EQ(kvstore::load(b, text).pairs, 4u);
  EXPECT_EQ(contents(a), contents(b));
}

TEST(Dump, LoadsPrintFormat) {
  TempDir d;
  kvstore::Store s = kvstore::Store::open(d.file("s.kv"));
  std::istringstream in(
      "VERSION=3\nformat=print\ntype=btree\nmapsize=1048576\nmaxreaders=126\ndb_pagesize=4096\nHEADER=END\n"
      " plain\n value\n"
      " a\\00b\n \\ff\\\\x\n"
      " back\\slash\n ok\n"
      "DATA=END\n");
  EXPECT_EQ(kvstore::load(s, in).pairs, 3u);
  EXPECT_EQ(s.get("plain"), "value");
  EXPECT_EQ(s.get(std::string("a\0b", 3)), "\xff\\x");
  EXPECT_EQ(s.get("back\\slash"), "ok");  // mdb_dump -p leaves a lone backslash as it is
}

TEST(Dump, MalformedInputNamesTheLineAndLoadsNothing) {
  std::string msg;
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n 6k\n 00\nDATA=END\n", &msg),
            kvstore::Errc::invalid_argument);
  EXPECT_NE(msg.find("line 4"), std::string::npos) << msg;
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n 616\n 00\nDATA=END\n", &msg),
            kvstore::Errc::invalid_argument);
  EXPECT_NE(msg.find("odd"), std::string::npos) << msg;
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\n 61\n 62\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n 61\n 62\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n 61\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n 61\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=2\nformat=bytevalue\nHEADER=END\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=3\nformat=base64\nHEADER=END\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("format=bytevalue\nHEADER=END\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("VERSION=3\nformat=bytevalue\nHEADER=END\n61\n62\nDATA=END\n"), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error(""), kvstore::Errc::invalid_argument);
  EXPECT_EQ(load_error("garbage"), kvstore::Errc::invalid_argument);
}
