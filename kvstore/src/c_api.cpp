// The C API (kvstore/kvstore.h) over kvstore::Store. Every entry point runs
// its body through guard(), which turns any exception into a code and the
// thread's last-error message: a C caller cannot catch, and an exception
// unwinding through C frames is undefined behaviour.
#include "kvstore/kvstore.h"

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvstore/store.hpp"

struct kvstore_db {
  kvstore::Store store;
};

struct kvstore_txn {
  kvstore::Transaction* txn;
  // The first failure of a kvstore_txn_* call: the transaction then refuses
  // to commit, so a callback that ignores a failed put cannot commit half of
  // what it meant to write.
  int failed = KVSTORE_OK;
};

struct kvstore_view {
  const kvstore::View* view;
};

namespace {

thread_local std::string t_last_error;

int fail(int code, const char* message) noexcept {
  try {
    t_last_error = message;
  } catch (...) {
    t_last_error.clear();  // no memory for the message: the code still says what happened
  }
  return code;
}

// The one table between kvstore::Errc and the C codes, read both ways.
constexpr std::pair<kvstore::Errc, int> kCodes[] = {
    {kvstore::Errc::invalid_argument, KVSTORE_INVALID_ARGUMENT},
    {kvstore::Errc::not_a_store, KVSTORE_NOT_A_STORE},
    {kvstore::Errc::version_mismatch, KVSTORE_VERSION_MISMATCH},
    {kvstore::Errc::corrupt, KVSTORE_CORRUPT},
    {kvstore::Errc::io, KVSTORE_IO},
    {kvstore::Errc::no_space, KVSTORE_NO_SPACE},
    {kvstore::Errc::store_full, KVSTORE_STORE_FULL},
    {kvstore::Errc::busy, KVSTORE_BUSY},
    {kvstore::Errc::read_only, KVSTORE_READ_ONLY},
};

int code_of(kvstore::Errc e) noexcept {
  for (const auto& [errc, code] : kCodes) {
    if (errc == e) return code;
  }
  return KVSTORE_INTERNAL;
}

// Thrown through Store::transact / Store::view to end a callback that
// returned a code: transact then writes nothing.
struct CallbackCode {
  int code;
  bool from_call;  // the code is a failed kvstore_txn_* call's, whose message stands
};

template <class F>
int guard(F&& body) noexcept {
  try {
    return body();
  } catch (const kvstore::Error& e) {
    return fail(code_of(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    return fail(KVSTORE_NOMEM, "out of memory");
  } catch (const std::exception& e) {
    return fail(KVSTORE_INTERNAL, e.what());
  } catch (...) {
    return fail(KVSTORE_INTERNAL, "unknown exception inside kvstore");
  }
}

// A (pointer, length) pair from C: NULL is allowed only with a length of 0.
bool bytes_ok(const void* p, std::size_t n) noexcept { return p != nullptr || n == 0; }

std::string_view bytes(const void* p, std::size_t n) noexcept {
  return n == 0 ? std::string_view() : std::string_view(static_cast<const char*>(p), n);
}

int bad_argument(const char* what) noexcept { return fail(KVSTORE_INVALID_ARGUMENT, what); }

// Hands a copy out as malloc'd memory, so that a C caller frees it with
// free() semantics through kvstore_free whatever allocator C++ uses.
int copy_out(std::string_view value, void** val, std::size_t* val_len) {
  if (val_len != nullptr) *val_len = value.size();
  if (val == nullptr) return KVSTORE_OK;
  void* p = std::malloc(value.empty() ? 1 : value.size());
  if (p == nullptr) throw std::bad_alloc();
  if (!value.empty()) std::memcpy(p, value.data(), value.size());
  *val = p;
  return KVSTORE_OK;
}

int not_found(void** val, std::size_t* val_len) noexcept {
  if (val != nullptr) *val = nullptr;
  if (val_len != nullptr) *val_len = 0;
  return fail(KVSTORE_NOTFOUND, "key not found");
}

// Runs a kvstore_txn_* body; a failure (not an absent key) marks the
// transaction as failed.
template <class F>
int txn_guard(kvstore_txn* txn, F&& body) noexcept {
  const int rc = guard(std::forward<F>(body));
  if (rc != KVSTORE_OK && rc != KVSTORE_NOTFOUND && txn->failed == KVSTORE_OK) txn->failed = rc;
  return rc;
}

}  // namespace

extern "C" {

void kvstore_options_init(kvstore_options* opt) {
  if (opt == nullptr) return;
  const kvstore::Options d;
  opt->create = d.create ? 1 : 0;
  opt->read_only = d.read_only ? 1 : 0;
  opt->initial_size = d.initial_size;
  opt->max_file_size = d.max_file_size;
  opt->sync = d.sync == kvstore::Sync::always ? KVSTORE_SYNC_ALWAYS : KVSTORE_SYNC_NONE;
  opt->lock_timeout_ms = static_cast<std::uint32_t>(d.lock_timeout.count());
  opt->sync_on_close = d.sync_on_close ? 1 : 0;
}

const char* kvstore_strerror(int code) {
  switch (code) {
    case KVSTORE_OK: return "success";
    case KVSTORE_NOTFOUND: return "key not found";
    case KVSTORE_EXISTS: return "key exists";
    case KVSTORE_MISMATCH: return "value differs from the expected one";
    case KVSTORE_NOMEM: return "out of memory";
    case KVSTORE_INTERNAL: return "internal error";
    default: break;
  }
  // The Errc codes say what kvstore::to_string says; its views are of
  // string literals, so their data() is NUL-terminated and static.
  for (const auto& [errc, c] : kCodes) {
    if (c == code) return kvstore::to_string(errc).data();
  }
  return "unknown code";
}

const char* kvstore_last_error(void) { return t_last_error.c_str(); }

void kvstore_free(void* ptr) { std::free(ptr); }

int kvstore_open(const char* path, const kvstore_options* opt, kvstore_db** out) {
  if (out != nullptr) *out = nullptr;
  if (path == nullptr || out == nullptr) return bad_argument("kvstore_open: NULL path or out");
  return guard([&] {
    kvstore::Options o;
    if (opt != nullptr) {
      if (opt->sync != KVSTORE_SYNC_NONE && opt->sync != KVSTORE_SYNC_ALWAYS) {
        return bad_argument("kvstore_open: sync is neither KVSTORE_SYNC_NONE nor KVSTORE_SYNC_ALWAYS");
      }
      o.create = opt->create != 0;
      o.read_only = opt->read_only != 0;
      o.initial_size = opt->initial_size;
      o.max_file_size = opt->max_file_size;
      o.sync = opt->sync == KVSTORE_SYNC_ALWAYS ? kvstore::Sync::always : kvstore::Sync::none;
      o.lock_timeout = std::chrono::milliseconds(opt->lock_timeout_ms);
      o.sync_on_close = opt->sync_on_close != 0;
    }
    // The Store is built before the handle owns it, so a throw leaks nothing.
    *out = new kvstore_db{kvstore::Store::open(path, o)};
    return KVSTORE_OK;
  });
}

void kvstore_close(kvstore_db* db) { delete db; }

int kvstore_put(kvstore_db* db, const void* key, size_t key_len, const void* val, size_t val_len) {
  if (db == nullptr || !bytes_ok(key, key_len) || !bytes_ok(val, val_len)) {
    return bad_argument("kvstore_put: NULL db, key or value");
  }
  return guard([&] {
    db->store.put(bytes(key, key_len), bytes(val, val_len));
    return KVSTORE_OK;
  });
}

int kvstore_get(kvstore_db* db, const void* key, size_t key_len, void** val, size_t* val_len) {
  if (val != nullptr) *val = nullptr;
  if (db == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_get: NULL db or key");
  return guard([&] {
    // visit, not get: the value is copied once, straight into malloc'd memory.
    int rc = KVSTORE_OK;
    const bool found = db->store.visit(bytes(key, key_len),
                                       [&](std::string_view v) { rc = copy_out(v, val, val_len); });
    return found ? rc : not_found(val, val_len);
  });
}

int kvstore_erase(kvstore_db* db, const void* key, size_t key_len) {
  if (db == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_erase: NULL db or key");
  return guard([&] {
    return db->store.erase(bytes(key, key_len)) ? KVSTORE_OK : not_found(nullptr, nullptr);
  });
}

int kvstore_count(kvstore_db* db, uint64_t* count) {
  if (db == nullptr || count == nullptr) return bad_argument("kvstore_count: NULL db or count");
  return guard([&] {
    *count = db->store.size();
    return KVSTORE_OK;
  });
}

int kvstore_foreach(kvstore_db* db, kvstore_foreach_fn fn, void* ctx) {
  if (db == nullptr || fn == nullptr) return bad_argument("kvstore_foreach: NULL db or fn");
  return guard([&] {
    int rc = KVSTORE_OK;
    db->store.for_each([&](std::string_view k, std::string_view v) {
      rc = fn(ctx, k.data(), k.size(), v.data(), v.size());
      return rc == KVSTORE_OK;
    });
    return rc;
  });
}

int kvstore_apply(kvstore_db* db, const kvstore_op* ops, size_t n) {
  if (db == nullptr || (ops == nullptr && n > 0)) return bad_argument("kvstore_apply: NULL db or ops");
  for (std::size_t i = 0; i < n; ++i) {
    if (!bytes_ok(ops[i].key, ops[i].key_len) || (!ops[i].erase && !bytes_ok(ops[i].val, ops[i].val_len))) {
      return bad_argument("kvstore_apply: an op has a NULL key or value with a length");
    }
  }
  return guard([&] {
    std::vector<kvstore::BatchOp> batch;
    batch.reserve(n);
    for (std::size_t i = 0; i < n; ++i) {
      const kvstore_op& op = ops[i];
      batch.push_back({std::string(bytes(op.key, op.key_len)),
                       op.erase ? std::string() : std::string(bytes(op.val, op.val_len)), op.erase != 0});
    }
    db->store.apply(batch);
    return KVSTORE_OK;
  });
}

int kvstore_compact(kvstore_db* db) {
  if (db == nullptr) return bad_argument("kvstore_compact: NULL db");
  return guard([&] {
    db->store.compact();
    return KVSTORE_OK;
  });
}

int kvstore_sync(kvstore_db* db) {
  if (db == nullptr) return bad_argument("kvstore_sync: NULL db");
  return guard([&] {
    db->store.sync();
    return KVSTORE_OK;
  });
}

int kvstore_check(kvstore_db* db, size_t* problems, char** report) {
  if (report != nullptr) *report = nullptr;
  if (db == nullptr) return bad_argument("kvstore_check: NULL db");
  return guard([&] {
    const std::vector<std::string> found = db->store.check();
    if (report != nullptr) {
      std::string text;
      for (const std::string& p : found) text.append(p).push_back('\n');
      char* out = static_cast<char*>(std::malloc(text.size() + 1));
      if (out == nullptr) throw std::bad_alloc();
      std::memcpy(out, text.c_str(), text.size() + 1);
      *report = out;
    }
    if (problems != nullptr) *problems = found.size();
    return KVSTORE_OK;
  });
}

int kvstore_stats_get(kvstore_db* db, kvstore_stats* out) {
  if (db == nullptr || out == nullptr) return bad_argument("kvstore_stats_get: NULL db or out");
  return guard([&] {
    const kvstore::Stats s = db->store.stats();
    *out = kvstore_stats{s.file_size,   s.used_bytes,  s.free_bytes,  s.keys,
                         s.key_bytes,   s.value_bytes, s.record_bytes, s.dead_bytes,
                         s.table_slots, s.load_factor, s.generation,  s.grows,
                         s.compactions, s.last_compact_unix, s.recoveries, s.processes,
                         s.change_count,
                         s.sync == kvstore::Sync::always ? KVSTORE_SYNC_ALWAYS : KVSTORE_SYNC_NONE};
    return KVSTORE_OK;
  });
}

int kvstore_increment(kvstore_db* db, const void* key, size_t key_len, int64_t delta, int64_t* result) {
  if (db == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_increment: NULL db or key");
  return guard([&] {
    const std::int64_t v = db->store.increment(bytes(key, key_len), delta);
    if (result != nullptr) *result = v;
    return KVSTORE_OK;
  });
}

int kvstore_compare_exchange(kvstore_db* db, const void* key, size_t key_len, const void* expected,
                             size_t expected_len, const void* desired, size_t desired_len) {
  if (db == nullptr || !bytes_ok(key, key_len)) {
    return bad_argument("kvstore_compare_exchange: NULL db or key");
  }
  return guard([&] {
    std::optional<std::string_view> e, d;
    if (expected != nullptr) e = bytes(expected, expected_len);
    if (desired != nullptr) d = bytes(desired, desired_len);
    if (db->store.compare_exchange(bytes(key, key_len), e, d)) return KVSTORE_OK;
    return fail(KVSTORE_MISMATCH, "compare_exchange: the key holds another value");
  });
}

int kvstore_insert(kvstore_db* db, const void* key, size_t key_len, const void* val, size_t val_len) {
  if (db == nullptr || !bytes_ok(key, key_len) || !bytes_ok(val, val_len)) {
    return bad_argument("kvstore_insert: NULL db, key or value");
  }
  return guard([&] {
    if (db->store.insert(bytes(key, key_len), bytes(val, val_len))) return KVSTORE_OK;
    return fail(KVSTORE_EXISTS, "insert: the key exists");
  });
}

int kvstore_transact(kvstore_db* db, kvstore_txn_fn fn, void* ctx) {
  if (db == nullptr || fn == nullptr) return bad_argument("kvstore_transact: NULL db or fn");
  return guard([&] {
    try {
      db->store.transact([&](kvstore::Transaction& t) {
        kvstore_txn txn{&t};
        const int rc = fn(&txn, ctx);
        if (rc != KVSTORE_OK) throw CallbackCode{rc, false};
        if (txn.failed != KVSTORE_OK) throw CallbackCode{txn.failed, true};
      });
    } catch (const CallbackCode& c) {
      if (c.from_call) return c.code;
      return fail(c.code, "transaction aborted by its callback: nothing written");
    }
    return KVSTORE_OK;
  });
}

int kvstore_txn_get(kvstore_txn* txn, const void* key, size_t key_len, void** val, size_t* val_len) {
  if (val != nullptr) *val = nullptr;
  if (txn == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_txn_get: NULL txn or key");
  return txn_guard(txn, [&] {
    const std::optional<std::string> v = txn->txn->get(bytes(key, key_len));
    return v ? copy_out(*v, val, val_len) : not_found(val, val_len);
  });
}

int kvstore_txn_contains(kvstore_txn* txn, const void* key, size_t key_len) {
  if (txn == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_txn_contains: NULL txn or key");
  return txn_guard(txn, [&] {
    return txn->txn->contains(bytes(key, key_len)) ? KVSTORE_OK : not_found(nullptr, nullptr);
  });
}

int kvstore_txn_put(kvstore_txn* txn, const void* key, size_t key_len, const void* val, size_t val_len) {
  if (txn == nullptr) return bad_argument("kvstore_txn_put: NULL txn");
  if (!bytes_ok(key, key_len) || !bytes_ok(val, val_len)) {
    // Marks the transaction failed like any other failed call inside it.
    return txn_guard(txn, [] { return bad_argument("kvstore_txn_put: NULL key or value"); });
  }
  return txn_guard(txn, [&] {
    txn->txn->put(bytes(key, key_len), bytes(val, val_len));
    return KVSTORE_OK;
  });
}

int kvstore_txn_erase(kvstore_txn* txn, const void* key, size_t key_len) {
  if (txn == nullptr) return bad_argument("kvstore_txn_erase: NULL txn");
  if (!bytes_ok(key, key_len)) {
    return txn_guard(txn, [] { return bad_argument("kvstore_txn_erase: NULL key"); });
  }
  return txn_guard(txn, [&] {
    return txn->txn->erase(bytes(key, key_len)) ? KVSTORE_OK : not_found(nullptr, nullptr);
  });
}

int kvstore_view_run(kvstore_db* db, kvstore_view_fn fn, void* ctx) {
  if (db == nullptr || fn == nullptr) return bad_argument("kvstore_view_run: NULL db or fn");
  return guard([&] {
    int rc = KVSTORE_OK;
    db->store.view([&](const kvstore::View& v) {
      const kvstore_view view{&v};
      rc = fn(&view, ctx);
    });
    return rc;
  });
}

int kvstore_view_get(const kvstore_view* view, const void* key, size_t key_len, const void** val,
                     size_t* val_len) {
  if (val != nullptr) *val = nullptr;
  if (view == nullptr || !bytes_ok(key, key_len)) return bad_argument("kvstore_view_get: NULL view or key");
  return guard([&] {
    const std::optional<std::string_view> v = view->view->get(bytes(key, key_len));
    if (!v) return not_found(nullptr, val_len);
    if (val != nullptr) *val = v->data();
    if (val_len != nullptr) *val_len = v->size();
    return KVSTORE_OK;
  });
}

int kvstore_view_count(const kvstore_view* view, uint64_t* count) {
  if (view == nullptr || count == nullptr) return bad_argument("kvstore_view_count: NULL view or count");
  *count = view->view->size();
  return KVSTORE_OK;
}

int kvstore_change_count(kvstore_db* db, uint64_t* count) {
  if (db == nullptr || count == nullptr) return bad_argument("kvstore_change_count: NULL db or count");
  *count = db->store.change_count();
  return KVSTORE_OK;
}

int kvstore_wait_for_change(kvstore_db* db, uint64_t seen, uint32_t timeout_ms, uint64_t* now) {
  if (db == nullptr) return bad_argument("kvstore_wait_for_change: NULL db");
  return guard([&] {
    const std::uint64_t c = db->store.wait_for_change(seen, std::chrono::milliseconds(timeout_ms));
    if (now != nullptr) *now = c;
    return KVSTORE_OK;
  });
}

}  // extern "C"
