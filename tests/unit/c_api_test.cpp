// The C API (kvstore/kvstore.h), through the shared libkvstore.so as a C
// program would use it: every function, and every error code it can give
// that a test can provoke (NOMEM aside: nothing here can make malloc fail).
#include <gtest/gtest.h>
#include <sys/mount.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <kvstore/kvstore.h>
#include <map>
#include <stdexcept>
#include <string>
#include <thread>

#include "../support/temp_dir.hpp"
#include "crc32c.hpp"
#include "format.hpp"
#include "../support/files.hpp"

namespace {

using kvstore::test::read_file;

using kvstore::test::TempDir;

// RAII over a kvstore_db: the tests must not leak handles on a failed ASSERT.
struct Db {
  kvstore_db* db = nullptr;
  Db() = default;
  explicit Db(const std::string& path, const kvstore_options* o = nullptr) {
    EXPECT_EQ(kvstore_open(path.c_str(), o, &db), KVSTORE_OK) << kvstore_last_error();
  }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  ~Db() { kvstore_close(db); }
  operator kvstore_db*() const { return db; }  // NOLINT(google-explicit-constructor): reads as C
};

// RAII over memory the library allocated.
struct Owned {
  void* p = nullptr;
  Owned() = default;
  Owned(const Owned&) = delete;
  Owned& operator=(const Owned&) = delete;
  ~Owned() { kvstore_free(p); }
};

int put(kvstore_db* db, const std::string& k, const std::string& v) {
  return kvstore_put(db, k.data(), k.size(), v.data(), v.size());
}

// What get() says of an absent key, or of a failed call.
std::string code(int rc) { return std::string("<").append(std::to_string(rc)).append(">"); }

// The value under k, or "<rc>" when there is none.
std::string get(kvstore_db* db, const std::string& k) {
  Owned v;
  size_t n = 0;
  const int rc = kvstore_get(db, k.data(), k.size(), &v.p, &n);
  if (rc != KVSTORE_OK) return code(rc);
  return {static_cast<const char*>(v.p), n};
}

std::string key_of(int i) {
  std::string k = "k";
  return k.append(std::to_string(i));
}

kvstore_options tiny() {
  kvstore_options o;
  kvstore_options_init(&o);
  o.initial_size = 64 * 1024;
  return o;
}

// A store file replaced by `bytes`, its lock file gone with it.
void replace_store_file(const std::string& p, const std::string& bytes) {
  std::ofstream(p, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  std::filesystem::remove(p + ".lock");
}

int open_code(const std::string& path, const kvstore_options* o = nullptr) {
  int dummy = 0;
  kvstore_db* db = reinterpret_cast<kvstore_db*>(&dummy);  // NOLINT: any non-NULL value, to see it reset
  const int rc = kvstore_open(path.c_str(), o, &db);
  EXPECT_EQ(db == nullptr, rc != KVSTORE_OK);
  kvstore_close(db);
  return rc;
}

TEST(CApi, DefaultsMatchTheCppOptions) {
  kvstore_options o;
  std::memset(&o, 0xff, sizeof o);
  kvstore_options_init(&o);
  EXPECT_EQ(o.create, 1);
  EXPECT_EQ(o.read_only, 0);
  EXPECT_EQ(o.initial_size, 1U << 20);
  EXPECT_EQ(o.max_file_size, std::uint64_t{1} << 40);
  EXPECT_EQ(o.sync, KVSTORE_SYNC_NONE);
  EXPECT_EQ(o.lock_timeout_ms, 10000U);
  EXPECT_EQ(o.sync_on_close, 1);
  kvstore_options_init(nullptr);  // harmless
}

// sync_on_close = 0: the close leaves the file unclean (kvstore::FileHeader's
// clean flag at 132, format_test.cpp), and the next open uses it as it is.
TEST(CApi, CloseWithoutSync) {
  TempDir d;
  const std::string path = d.file("s.kv");
  kvstore_options o;
  kvstore_options_init(&o);
  o.sync_on_close = 0;
  kvstore_db* db = nullptr;
  ASSERT_EQ(kvstore_open(path.c_str(), &o, &db), KVSTORE_OK);
  ASSERT_EQ(kvstore_put(db, "k", 1, "v", 1), KVSTORE_OK);
  kvstore_close(db);
  auto clean = [&] {
    const std::string bytes = read_file(path);
    std::uint32_t c = 0;
    std::memcpy(&c, bytes.data() + 132, sizeof c);
    return c;
  };
  EXPECT_EQ(clean(), 0U);
  ASSERT_EQ(kvstore_open(path.c_str(), nullptr, &db), KVSTORE_OK);  // defaults: a durable close
  void* v = nullptr;
  size_t n = 0;
  ASSERT_EQ(kvstore_get(db, "k", 1, &v, &n), KVSTORE_OK);
  EXPECT_EQ(std::string(static_cast<const char*>(v), n), "v");
  kvstore_free(v);
  kvstore_close(db);
  EXPECT_NE(clean(), 0U);
}

TEST(CApi, StrerrorNamesEveryCode) {
  const int codes[] = {KVSTORE_OK, KVSTORE_NOTFOUND, KVSTORE_EXISTS, KVSTORE_MISMATCH,
                       KVSTORE_INVALID_ARGUMENT, KVSTORE_NOT_A_STORE, KVSTORE_VERSION_MISMATCH,
                       KVSTORE_CORRUPT, KVSTORE_IO, KVSTORE_NO_SPACE, KVSTORE_STORE_FULL, KVSTORE_BUSY,
                       KVSTORE_READ_ONLY, KVSTORE_NOMEM, KVSTORE_INTERNAL};
  std::map<std::string, int> seen;
  for (const int c : codes) {
    const std::string s = kvstore_strerror(c);
    EXPECT_NE(s, "unknown code") << c;
    EXPECT_TRUE(seen.emplace(s, c).second) << "two codes say " << s;
  }
  EXPECT_STREQ(kvstore_strerror(12345), "unknown code");
  EXPECT_STREQ(kvstore_strerror(KVSTORE_CORRUPT), "corrupt");
}

TEST(CApi, PutGetEraseCountWithBinaryKeys) {
  TempDir d;
  Db db(d.file("s.kv"));
  const std::string k("a\0b", 3), v("x\0y\0", 4);
  EXPECT_EQ(put(db, k, v), KVSTORE_OK);
  EXPECT_EQ(put(db, "", "empty key"), KVSTORE_OK);
  EXPECT_EQ(kvstore_put(db, "z", 1, nullptr, 0), KVSTORE_OK);  // NULL with length 0: an empty value
  EXPECT_EQ(get(db, k), v);
  EXPECT_EQ(get(db, ""), "empty key");
  EXPECT_EQ(get(db, "z"), "");
  uint64_t n = 0;
  EXPECT_EQ(kvstore_count(db, &n), KVSTORE_OK);
  EXPECT_EQ(n, 3U);
  // val NULL: only whether the key is there, and its length.
  size_t len = 0;
  EXPECT_EQ(kvstore_get(db, k.data(), k.size(), nullptr, &len), KVSTORE_OK);
  EXPECT_EQ(len, 4U);
  void* out = &len;
  EXPECT_EQ(kvstore_get(db, "nope", 4, &out, &len), KVSTORE_NOTFOUND);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(len, 0U);
  EXPECT_STREQ(kvstore_last_error(), "key not found");
  EXPECT_EQ(kvstore_erase(db, k.data(), k.size()), KVSTORE_OK);
  EXPECT_EQ(kvstore_erase(db, k.data(), k.size()), KVSTORE_NOTFOUND);
  EXPECT_EQ(kvstore_count(db, &n), KVSTORE_OK);
  EXPECT_EQ(n, 2U);
  kvstore_close(nullptr);
  kvstore_free(nullptr);
}

TEST(CApi, NullArgumentsAreInvalidNotCrashes) {
  TempDir d;
  Db db(d.file("s.kv"));
  kvstore_db* out = nullptr;
  EXPECT_EQ(kvstore_open(nullptr, nullptr, &out), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(out, nullptr);
  EXPECT_EQ(kvstore_open(d.file("t.kv").c_str(), nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvstore_last_error()).find("kvstore_open"), std::string::npos);
  uint64_t n = 0;
  EXPECT_EQ(kvstore_put(nullptr, "k", 1, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_put(db, nullptr, 1, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_put(db, "k", 1, nullptr, 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_get(nullptr, "k", 1, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_get(db, nullptr, 2, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_erase(nullptr, "k", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_erase(db, nullptr, 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_count(nullptr, &n), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_count(db, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_foreach(nullptr, [](void*, const void*, size_t, const void*, size_t) { return 0; }, nullptr),
            KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_foreach(db, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_apply(nullptr, nullptr, 0), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_apply(db, nullptr, 1), KVSTORE_INVALID_ARGUMENT);
  const kvstore_op bad_key{nullptr, 1, "v", 1, 0};
  EXPECT_EQ(kvstore_apply(db, &bad_key, 1), KVSTORE_INVALID_ARGUMENT);
  const kvstore_op bad_val{"k", 1, nullptr, 1, 0};
  EXPECT_EQ(kvstore_apply(db, &bad_val, 1), KVSTORE_INVALID_ARGUMENT);
  const kvstore_op erase_null_val{"k", 1, nullptr, 1, 1};  // an erase ignores its value
  EXPECT_EQ(kvstore_apply(db, &erase_null_val, 1), KVSTORE_OK);
  EXPECT_EQ(kvstore_compact(nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_sync(nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_check(nullptr, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_stats_get(nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_stats_get(db, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_increment(nullptr, "c", 1, 1, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_increment(db, nullptr, 1, 1, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_compare_exchange(nullptr, "k", 1, nullptr, 0, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_compare_exchange(db, nullptr, 1, nullptr, 0, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_insert(nullptr, "k", 1, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_insert(db, "k", 1, nullptr, 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_transact(nullptr, [](kvstore_txn*, void*) { return 0; }, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_transact(db, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_txn_get(nullptr, "k", 1, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_txn_contains(nullptr, "k", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_txn_put(nullptr, "k", 1, "v", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_txn_erase(nullptr, "k", 1), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_view_run(nullptr, [](const kvstore_view*, void*) { return 0; }, nullptr),
            KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_view_run(db, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_view_get(nullptr, "k", 1, nullptr, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_view_count(nullptr, &n), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_change_count(nullptr, &n), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_change_count(db, nullptr), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(kvstore_wait_for_change(nullptr, 0, 0, nullptr), KVSTORE_INVALID_ARGUMENT);
}

TEST(CApi, OpenErrors) {
  TempDir d;
  kvstore_options o = tiny();
  o.create = 0;
  EXPECT_EQ(open_code(d.file("missing.kv"), &o), KVSTORE_IO);
  EXPECT_NE(std::string(kvstore_last_error()).find("missing.kv"), std::string::npos) << kvstore_last_error();
  o = tiny();
  o.sync = 7;
  EXPECT_EQ(open_code(d.file("s.kv"), &o), KVSTORE_INVALID_ARGUMENT);
  replace_store_file(d.file("text.kv"), std::string(8192, 'x'));
  EXPECT_EQ(open_code(d.file("text.kv")), KVSTORE_NOT_A_STORE);
  const kvstore_options t = tiny();
  { Db db(d.file("good.kv"), &t); EXPECT_EQ(put(db, "k", "v"), KVSTORE_OK); }
  const std::string good = read_file(d.file("good.kv"));
  std::string bad = good;
  bad[50] = static_cast<char>(bad[50] ^ 1);  // the header checksum
  replace_store_file(d.file("corrupt.kv"), bad);
  EXPECT_EQ(open_code(d.file("corrupt.kv")), KVSTORE_CORRUPT);
  // Another format version with a correct checksum.
  bad = good;
  const std::uint32_t version = 4;  // newer than this build
  std::memcpy(bad.data() + 8, &version, 4);
  const std::uint32_t crc = kvstore::detail::crc32c(0, bad.data(), kvstore::detail::kHeaderCrcBytes);
  std::memcpy(bad.data() + kvstore::detail::kHeaderCrcBytes, &crc, 4);
  replace_store_file(d.file("version.kv"), bad);
  EXPECT_EQ(open_code(d.file("version.kv")), KVSTORE_VERSION_MISMATCH);
}

TEST(CApi, ReadOnlyAndStoreFull) {
  TempDir d;
  const kvstore_options t = tiny();
  { Db w(d.file("s.kv"), &t); EXPECT_EQ(put(w, "k", "v"), KVSTORE_OK); }
  kvstore_options o = tiny();
  o.read_only = 1;
  Db r(d.file("s.kv"), &o);
  EXPECT_EQ(get(r, "k"), "v");
  EXPECT_EQ(put(r, "k", "w"), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_erase(r, "k", 1), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_compact(r), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_increment(r, "c", 1, 1, nullptr), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_insert(r, "n", 1, "v", 1), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_compare_exchange(r, "k", 1, "v", 1, "w", 1), KVSTORE_READ_ONLY);
  const kvstore_op op{"a", 1, "1", 1, 0};
  EXPECT_EQ(kvstore_apply(r, &op, 1), KVSTORE_READ_ONLY);
  EXPECT_EQ(kvstore_transact(r, [](kvstore_txn*, void*) { return 0; }, nullptr), KVSTORE_READ_ONLY);

  o = tiny();
  o.max_file_size = 64 * 1024;
  Db full(d.file("full.kv"), &o);
  int rc = KVSTORE_OK;
  for (int i = 0; i < 10000 && rc == KVSTORE_OK; ++i) rc = put(full, key_of(i), std::string(200, 'v'));
  EXPECT_EQ(rc, KVSTORE_STORE_FULL) << kvstore_last_error();
  EXPECT_EQ(get(full, "k0"), std::string(200, 'v'));
}

TEST(CApi, NoSpaceOnAFullDisk) {
  TempDir d;
  const std::string dir = d.file("small");
  std::filesystem::create_directory(dir);
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=1m") != 0) {
    GTEST_SKIP() << "cannot mount a tmpfs here (" << std::strerror(errno) << ")";
  }
  struct Unmount {
    std::string dir;
    ~Unmount() { ::umount2(dir.c_str(), MNT_DETACH); }
  } unmount{dir};
  const kvstore_options t = tiny();
  Db db(dir + "/s.kv", &t);
  int rc = KVSTORE_OK;
  for (int i = 0; i < 100000 && rc == KVSTORE_OK; ++i) rc = put(db, key_of(i), std::string(500, 'v'));
  EXPECT_EQ(rc, KVSTORE_NO_SPACE) << kvstore_last_error();
}

TEST(CApi, ForeachApplyCompactSyncCheckStats) {
  TempDir d;
  Db db(d.file("s.kv"));
  const kvstore_op ops[] = {{"a", 1, "1", 1, 0}, {"b", 1, "2", 1, 0}, {"c", 1, "3", 1, 0}, {"c", 1, nullptr, 0, 1}};
  EXPECT_EQ(kvstore_apply(db, ops, 4), KVSTORE_OK);
  EXPECT_EQ(kvstore_apply(db, ops, 0), KVSTORE_OK);
  std::map<std::string, std::string> seen;
  EXPECT_EQ(kvstore_foreach(
                db,
                [](void* ctx, const void* k, size_t kl, const void* v, size_t vl) {
                  (*static_cast<std::map<std::string, std::string>*>(ctx))[std::string(static_cast<const char*>(k), kl)] =
                      std::string(static_cast<const char*>(v), vl);
                  return 0;
                },
                &seen),
            KVSTORE_OK);
  EXPECT_EQ(seen, (std::map<std::string, std::string>{{"a", "1"}, {"b", "2"}}));
  int calls = 0;
  EXPECT_EQ(kvstore_foreach(
                db, [](void* ctx, const void*, size_t, const void*, size_t) { return ++*static_cast<int*>(ctx) == 1 ? 42 : 0; },
                &calls),
            42);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(kvstore_compact(db), KVSTORE_OK);
  EXPECT_EQ(kvstore_sync(db), KVSTORE_OK);
  size_t problems = 99;
  char* report = nullptr;
  EXPECT_EQ(kvstore_check(db, &problems, &report), KVSTORE_OK);
  EXPECT_EQ(problems, 0U);
  ASSERT_NE(report, nullptr);
  EXPECT_STREQ(report, "");
  kvstore_free(report);
  EXPECT_EQ(kvstore_check(db, nullptr, nullptr), KVSTORE_OK);
  kvstore_stats st;
  EXPECT_EQ(kvstore_stats_get(db, &st), KVSTORE_OK);
  EXPECT_EQ(st.keys, 2U);
  EXPECT_EQ(st.key_bytes, 2U);
  EXPECT_EQ(st.value_bytes, 2U);
  EXPECT_GE(st.compactions, 1U);
  EXPECT_EQ(st.processes, 1U);
  EXPECT_EQ(st.sync, KVSTORE_SYNC_NONE);
  uint64_t changes = 0;
  EXPECT_EQ(kvstore_change_count(db, &changes), KVSTORE_OK);
  EXPECT_EQ(st.change_count, changes);
}

TEST(CApi, IncrementCompareExchangeInsert) {
  TempDir d;
  Db db(d.file("s.kv"));
  int64_t v = 0;
  EXPECT_EQ(kvstore_increment(db, "c", 1, 5, &v), KVSTORE_OK);
  EXPECT_EQ(v, 5);
  EXPECT_EQ(kvstore_increment(db, "c", 1, -7, &v), KVSTORE_OK);
  EXPECT_EQ(v, -2);
  EXPECT_EQ(kvstore_increment(db, "c", 1, 1, nullptr), KVSTORE_OK);
  EXPECT_EQ(get(db, "c"), "-1");
  EXPECT_EQ(put(db, "text", "abc"), KVSTORE_OK);
  EXPECT_EQ(kvstore_increment(db, "text", 4, 1, &v), KVSTORE_INVALID_ARGUMENT);
  EXPECT_EQ(put(db, "max", "9223372036854775807"), KVSTORE_OK);
  EXPECT_EQ(kvstore_increment(db, "max", 3, 1, &v), KVSTORE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvstore_last_error()).find("overflow"), std::string::npos) << kvstore_last_error();

  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, nullptr, 0, "idle", 4), KVSTORE_OK);  // absent -> idle
  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, nullptr, 0, "x", 1), KVSTORE_MISMATCH);
  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, "busy", 4, "x", 1), KVSTORE_MISMATCH);
  EXPECT_EQ(get(db, "s"), "idle");
  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, "idle", 4, nullptr, 0), KVSTORE_OK);  // NULL desired: erase
  EXPECT_EQ(get(db, "s"), code(KVSTORE_NOTFOUND));
  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, nullptr, 0, "", 0), KVSTORE_OK);  // "" is an empty value, not NULL
  EXPECT_EQ(get(db, "s"), "");
  EXPECT_EQ(kvstore_compare_exchange(db, "s", 1, "", 0, nullptr, 0), KVSTORE_OK);  // "" expected, then erased
  EXPECT_EQ(get(db, "s"), code(KVSTORE_NOTFOUND));

  EXPECT_EQ(kvstore_insert(db, "leader", 6, "me", 2), KVSTORE_OK);
  EXPECT_EQ(kvstore_insert(db, "leader", 6, "you", 3), KVSTORE_EXISTS);
  EXPECT_EQ(get(db, "leader"), "me");
}

struct Transfer {
  int abort_with = KVSTORE_OK;
  bool bad_put = false;
};

int transfer(kvstore_txn* txn, void* ctx) {
  const auto* t = static_cast<const Transfer*>(ctx);
  Owned v;
  size_t n = 0;
  int64_t a = 0;
  if (kvstore_txn_get(txn, "a", 1, &v.p, &n) == KVSTORE_OK) a = std::stoll(std::string(static_cast<char*>(v.p), n));
  const std::string a2 = std::to_string(a - 10);
  if (kvstore_txn_put(txn, "a", 1, a2.data(), a2.size()) != KVSTORE_OK) return KVSTORE_INTERNAL;
  if (kvstore_txn_put(txn, "b", 1, "10", 2) != KVSTORE_OK) return KVSTORE_INTERNAL;
  if (kvstore_txn_contains(txn, "b", 1) != KVSTORE_OK) return KVSTORE_INTERNAL;  // sees its own write
  if (kvstore_txn_erase(txn, "gone", 4) != KVSTORE_NOTFOUND) return KVSTORE_INTERNAL;
  if (kvstore_txn_erase(txn, "old", 3) != KVSTORE_OK) return KVSTORE_INTERNAL;
  if (kvstore_txn_contains(txn, "old", 3) != KVSTORE_NOTFOUND) return KVSTORE_INTERNAL;
  void* none = &n;
  if (kvstore_txn_get(txn, "old", 3, &none, nullptr) != KVSTORE_NOTFOUND || none != nullptr) return KVSTORE_INTERNAL;
  if (t->bad_put) (void)kvstore_txn_put(txn, nullptr, 1, "v", 1);  // a failure the callback ignores
  return t->abort_with;
}

TEST(CApi, TransactCommitsOrWritesNothing) {
  TempDir d;
  Db db(d.file("s.kv"));
  ASSERT_EQ(put(db, "a", "100"), KVSTORE_OK);
  ASSERT_EQ(put(db, "old", "x"), KVSTORE_OK);
  uint64_t before = 0, after = 0;
  ASSERT_EQ(kvstore_change_count(db, &before), KVSTORE_OK);

  Transfer abort_it{7, false};  // the callback's own code comes back as is
  EXPECT_EQ(kvstore_transact(db, transfer, &abort_it), 7);
  EXPECT_NE(std::string(kvstore_last_error()).find("aborted"), std::string::npos);
  Transfer ignored{KVSTORE_OK, true};  // a failed call inside vetoes the commit
  EXPECT_EQ(kvstore_transact(db, transfer, &ignored), KVSTORE_INVALID_ARGUMENT);
  EXPECT_NE(std::string(kvstore_last_error()).find("kvstore_txn_put"), std::string::npos) << kvstore_last_error();
  // A C++ exception thrown by the callback stops at the boundary.
  EXPECT_EQ(kvstore_transact(db, [](kvstore_txn* t, void*) -> int {
              (void)kvstore_txn_put(t, "a", 1, "0", 1);
              throw std::runtime_error("callback threw");
            }, nullptr),
            KVSTORE_INTERNAL);
  EXPECT_STREQ(kvstore_last_error(), "callback threw");
  // Calling back into the store from inside: refused, not a deadlock.
  EXPECT_EQ(kvstore_transact(db, [](kvstore_txn*, void* ctx) { return put(static_cast<kvstore_db*>(ctx), "x", "y"); }, db.db),
            KVSTORE_INVALID_ARGUMENT);
  ASSERT_EQ(kvstore_change_count(db, &after), KVSTORE_OK);
  EXPECT_EQ(after, before);
  EXPECT_EQ(get(db, "a"), "100");
  EXPECT_EQ(get(db, "old"), "x");

  Transfer commit{KVSTORE_OK, false};
  EXPECT_EQ(kvstore_transact(db, transfer, &commit), KVSTORE_OK);
  EXPECT_EQ(get(db, "a"), "90");
  EXPECT_EQ(get(db, "b"), "10");
  EXPECT_EQ(get(db, "old"), code(KVSTORE_NOTFOUND));
  ASSERT_EQ(kvstore_change_count(db, &after), KVSTORE_OK);
  EXPECT_EQ(after, before + 1);  // one change for the whole transaction
}

TEST(CApi, ViewReadsWithoutCopying) {
  TempDir d;
  Db db(d.file("s.kv"));
  ASSERT_EQ(put(db, "k", "value"), KVSTORE_OK);
  std::string got;
  EXPECT_EQ(kvstore_view_run(
                db,
                [](const kvstore_view* v, void* ctx) {
                  const void* p = nullptr;
                  size_t n = 0;
                  if (kvstore_view_get(v, "k", 1, &p, &n) != KVSTORE_OK) return 1;
                  *static_cast<std::string*>(ctx) = std::string(static_cast<const char*>(p), n);
                  if (kvstore_view_get(v, "nope", 4, &p, &n) != KVSTORE_NOTFOUND || p != nullptr) return 2;
                  if (kvstore_view_get(v, nullptr, 1, &p, &n) != KVSTORE_INVALID_ARGUMENT) return 3;
                  if (kvstore_view_count(v, nullptr) != KVSTORE_INVALID_ARGUMENT) return 4;
                  uint64_t c = 0;
                  if (kvstore_view_count(v, &c) != KVSTORE_OK || c != 1) return 5;
                  return 0;
                },
                &got),
            KVSTORE_OK);
  EXPECT_EQ(got, "value");
  EXPECT_EQ(kvstore_view_run(db, [](const kvstore_view*, void*) { return 3; }, nullptr), 3);
}

TEST(CApi, WaitForChangeWakesOnACommitAndBusyTimesOut) {
  TempDir d;
  const std::string path = d.file("s.kv");
  Db db(path);
  uint64_t seen = 0, now = 0;
  ASSERT_EQ(kvstore_change_count(db, &seen), KVSTORE_OK);
  EXPECT_EQ(kvstore_wait_for_change(db, seen, 1, &now), KVSTORE_OK);  // times out: unchanged
  EXPECT_EQ(now, seen);
  std::thread writer([&] { EXPECT_EQ(put(db, "k", "v"), KVSTORE_OK); });
  EXPECT_EQ(kvstore_wait_for_change(db, seen, 60000, &now), KVSTORE_OK);
  writer.join();
  EXPECT_GT(now, seen);
  // Inside a callback of this store: refused, since nothing could change.
  EXPECT_EQ(kvstore_view_run(db, [](const kvstore_view*, void* ctx) {
              return kvstore_wait_for_change(static_cast<kvstore_db*>(ctx), 0, 10, nullptr);
            }, db.db),
            KVSTORE_INVALID_ARGUMENT);

  // BUSY: a second handle with a short timeout while a transaction holds the lock.
  kvstore_options o;
  kvstore_options_init(&o);
  o.lock_timeout_ms = 50;
  Db other(path, &o);
  struct Hold {
    std::atomic<bool> inside{false}, release{false};
  } hold;
  std::thread holder([&] {
    EXPECT_EQ(kvstore_transact(db, [](kvstore_txn*, void* ctx) {
                auto* h = static_cast<Hold*>(ctx);
                h->inside = true;
                while (!h->release) std::this_thread::yield();
                return 0;
              }, &hold),
              KVSTORE_OK);
  });
  while (!hold.inside) std::this_thread::yield();
  EXPECT_EQ(put(other, "k", "x"), KVSTORE_BUSY);
  EXPECT_EQ(get(other, "k"), code(KVSTORE_BUSY));
  hold.release = true;
  holder.join();
  EXPECT_EQ(get(other, "k"), "v");
}

TEST(CApi, LastErrorIsPerThread) {
  TempDir d;
  Db db(d.file("s.kv"));
  EXPECT_EQ(kvstore_erase(db, "nope", 4), KVSTORE_NOTFOUND);
  std::string other;
  std::thread([&] {
    EXPECT_EQ(kvstore_put(nullptr, "k", 1, "v", 1), KVSTORE_INVALID_ARGUMENT);
    other = kvstore_last_error();
  }).join();
  EXPECT_STREQ(kvstore_last_error(), "key not found");
  EXPECT_NE(other.find("kvstore_put"), std::string::npos);
}

}  // namespace
