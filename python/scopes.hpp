// `with db.transaction() as tx:` and `with db.view() as v:`. Store::transact
// and Store::view take a callback, but a `with` block is Python code that runs
// between __enter__ and __exit__. So a thread of the scope's own calls the
// Store and parks inside the callback, holding the lock, until __exit__ says
// commit or abort. The Python thread reads and writes through the parked
// callback's Transaction or View, which stay valid while it is parked (the
// lock it holds keeps the mapping in place). That thread never takes the GIL.
#pragma once

#include <pybind11/pybind11.h>

#include <condition_variable>
#include <exception>
#include <functional>
#include <kvstore/store.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "database.hpp"

namespace kvstore::python {

// The parked thread. Methods are called with the GIL released.
class LockedScope {
 public:
  // `run(body)` calls Store::transact or Store::view with a callback that calls body().
  using Runner = std::function<void(const std::function<void()>& body)>;
  explicit LockedScope(Runner run);
  LockedScope(const LockedScope&) = delete;
  LockedScope& operator=(const LockedScope&) = delete;
  ~LockedScope();  // aborts if still inside

  // Starts the thread and waits until the callback runs (the lock is held),
  // or rethrows why it could not (busy, read_only, ...).
  void enter();
  // Lets the callback return (commit) or throw (abort: transact writes
  // nothing), waits for the thread, and rethrows what the Store threw.
  void finish(bool commit);
  [[nodiscard]] bool inside() const;

 private:
  enum class State { idle, starting, inside, commit, abort, done };
  struct Abort {};
  Runner run_;
  mutable std::mutex m_;
  std::condition_variable cv_;
  State state_ = State::idle;
  std::exception_ptr error_;
  std::thread thread_;
};

class TransactionScope {
 public:
  TransactionScope(std::shared_ptr<Store> store, std::string path);
  void enter();
  // Commits when `commit`, else writes nothing. Rethrows a failed commit.
  void exit(bool commit);
  [[nodiscard]] std::optional<std::string> get(std::string_view key);
  [[nodiscard]] bool contains(std::string_view key);
  void put(std::string_view key, std::string_view value);
  bool erase(std::string_view key);

 private:
  Transaction& txn();  // throws when not inside the `with` block
  std::shared_ptr<Store> store_;
  std::string path_;
  Transaction* txn_ = nullptr;
  std::mutex ops_;  // several Python threads may share one transaction object
  LockedScope scope_;
  std::optional<ScopeMark> mark_;
};

// The exporter behind the memoryviews a view hands out; see scopes.cpp.
struct ViewState;

class ViewScope {
 public:
  ViewScope(std::shared_ptr<Store> store, std::string path);
  ~ViewScope();
  void enter();
  void exit();
  // A read-only memoryview of the value in the mapping (None when absent).
  pybind11::object get(pybind11::handle key);
  [[nodiscard]] bool contains(std::string_view key);
  [[nodiscard]] std::size_t size();

 private:
  std::string path_;
  std::shared_ptr<ViewState> state_;
  std::vector<pybind11::object> handed_out_;  // released at exit
  std::optional<ScopeMark> mark_;
};

// Registers the exporter type; called once from the module's init.
void register_view_buffer(pybind11::module_& m);

}  // namespace kvstore::python
