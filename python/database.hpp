// kvstore.Database: one open store behind the dbm interface. The Store is
// held by shared_ptr so that close() from one thread cannot free it under a
// call that another thread runs with the GIL released: each call takes its
// own reference first (under the GIL), and the last one out destroys it.
#pragma once

#include <kvstore/store.hpp>
#include <memory>
#include <string>

namespace kvstore::python {

class Database {
 public:
  // dbm's open(): flag is r, w, c or n, optionally followed by gdbm's
  // modifiers f (ignored: kvstore never buffers), s (Sync::always) and u
  // (ignored: the store is always shared). mode applies to a file created here.
  Database(const std::string& path, const std::string& flag, int mode);
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;
  ~Database();

  // The store, or throws Error(invalid_argument) when the handle is closed or
  // used in a fork()ed child. Call with the GIL held.
  [[nodiscard]] std::shared_ptr<Store> store() const;
  // Harmless on a closed handle.
  void close();
  [[nodiscard]] bool closed() const noexcept { return !store_; }

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // The flag that reopens this store after pickling: 'n' becomes 'c', since
  // unpickling must not empty the store again.
  [[nodiscard]] std::string reopen_flag() const;

 private:
  std::string path_;
  std::string flag_;
  unsigned fork_generation_;
  std::shared_ptr<Store> store_;
};

// Refuses (Error(invalid_argument)) a call on a store of `path` from a thread
// that has a transaction or view of that file open: the lock is held by that
// scope, so the call would wait for it until lock_timeout.
void refuse_inside_scope(const std::string& path);
// RAII mark of a transaction or view open on this thread.
class ScopeMark {
 public:
  explicit ScopeMark(const std::string& path);
  ScopeMark(const ScopeMark&) = delete;
  ScopeMark& operator=(const ScopeMark&) = delete;
  ~ScopeMark();

 private:
  std::string path_;
};

}  // namespace kvstore::python
