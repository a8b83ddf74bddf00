// kvstore::Store: a persistent key-value store in one memory-mapped file, shared
// live by many threads and processes.
//
// Thread and process safety: one Store may be used from any number of threads;
// the same file may be opened any number of times, in this process and in
// others. Each call holds the file's reader/writer lock only while it runs.
// When a writer grows the file, or compact() replaces it, every other handle
// adopts the new mapping at its next call. Do not use a Store in a child
// after fork(): open the file again there.
//
// Keys and values are arbitrary bytes (NUL included; the empty key is allowed).
// Every function may throw kvstore::Error; the codes each can throw are listed.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvstore/error.hpp"
#include "kvstore/options.hpp"

namespace kvstore {

struct Stats {
  std::uint64_t file_size = 0;      // bytes of the data file
  std::uint64_t used_bytes = 0;     // bytes the segment allocator has handed out
  std::uint64_t free_bytes = 0;     // bytes the segment allocator can still hand out
  std::uint64_t keys = 0;           // live keys
  std::uint64_t key_bytes = 0;      // sum of live key lengths
  std::uint64_t value_bytes = 0;    // sum of live value lengths
  std::uint64_t record_bytes = 0;   // bytes of all records, live and dead
  std::uint64_t dead_bytes = 0;     // bytes of records that compact() would drop
  std::uint64_t table_slots = 0;    // capacity of the hash index
  double load_factor = 0;           // keys / table_slots
  std::uint64_t generation = 0;     // bumped by every grow and every compact
  std::uint64_t grows = 0;          // grows since the file was created or compacted
  std::uint64_t compactions = 0;    // compactions over the store's life
  std::uint64_t last_compact_unix = 0;  // seconds since the epoch, 0 if never
  std::uint64_t recoveries = 0;     // rebuilds after an unclean stop
  std::uint32_t processes = 0;      // handles attached right now (all processes)
  std::uint64_t change_count = 0;   // Store::change_count()
  Sync sync = Sync::none;           // this handle's sync mode
};

// One change inside Store::apply(): a put of `value`, or an erase when
// `erase` is set (then `value` is ignored).
struct BatchOp {
  std::string key;
  std::string value;
  bool erase = false;
};

namespace detail {
class DataFile;
class ReadGuard;
class TransactionState;
}  // namespace detail

// The reads and writes of one Store::transact call. It exists only while the
// callback runs: do not keep it, or a reference to it, past the callback.
class Transaction {
 public:
  // Reads see the committed state and this transaction's own writes.
  // Throw Error: corrupt, io.
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
  [[nodiscard]] bool contains(std::string_view key) const;
  // Buffered until the callback returns. Throws Error(invalid_argument) for a
  // key or value too large.
  void put(std::string_view key, std::string_view value);
  // Returns whether the key was there, as this transaction sees it.
  bool erase(std::string_view key);

  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

 private:
  friend class Store;
  explicit Transaction(detail::TransactionState& state) noexcept : state_(&state) {}
  detail::TransactionState* state_;
};

// One consistent, committed state of the store, read without copying. It
// exists only while the Store::view callback runs; so do the string_views it
// returns.
class View {
 public:
  // Throw Error: corrupt.
  [[nodiscard]] std::optional<std::string_view> get(std::string_view key) const;
  [[nodiscard]] bool contains(std::string_view key) const;
  [[nodiscard]] std::size_t size() const noexcept;

  View(const View&) = delete;
  View& operator=(const View&) = delete;

 private:
  friend class Store;
  View(const detail::DataFile& file, const detail::ReadGuard* guard, std::size_t keys) noexcept
      : file_(&file), guard_(guard), keys_(keys) {}
  const detail::DataFile* file_;
  // Set for a handle without a reader slot (a read-only open that cannot write
  // the lock file): each answer is validated before it is given, and a get
  // after a writer's change throws Error(busy) (see Options::read_only).
  const detail::ReadGuard* guard_;
  std::size_t keys_;  // with guard_: size() as validated at the start
};

class Store {
 public:
  // Opens the store at `path`, creating it when absent and options.create is set.
  // If the last process to use it stopped uncleanly, recovery runs first.
  // Throws Error: invalid_argument, not_a_store, version_mismatch, corrupt, io,
  // no_space, busy.
  [[nodiscard]] static Store open(const std::filesystem::path& path, const Options& options = {});

  Store(Store&&) noexcept;
  Store& operator=(Store&&) noexcept;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;
  ~Store();

  // Stores `value` under `key`, replacing any previous value.
  // Throws Error: read_only, no_space, store_full, busy, io, corrupt.
  void put(std::string_view key, std::string_view value);

  // Copies out the value under `key`; std::nullopt when there is none.
  // Throws Error: busy, corrupt, io.
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;

  // Zero-copy read: calls `fn` with the value while the read lock is held and
  // returns true, or returns false when the key is absent. The view is valid
  // only inside `fn`; `fn` must not call back into any Store of this file (such
  // a call throws Error(invalid_argument)).
  // Throws Error: busy, corrupt, io (and whatever `fn` throws).
  bool visit(std::string_view key, const std::function<void(std::string_view)>& fn) const;

  // Removes `key`; returns whether it was there.
  // Throws Error: read_only, no_space, store_full, busy, io, corrupt.
  bool erase(std::string_view key);

  // Throws Error: busy, corrupt, io.
  [[nodiscard]] bool contains(std::string_view key) const;

  // Number of live keys. Throws Error: busy, corrupt, io.
  [[nodiscard]] std::size_t size() const;

  // Calls `fn(key, value)` for every pair of a snapshot taken when the call
  // begins, in no particular order; `fn` returns false to stop early. The lock
  // is held only to take the snapshot: writers proceed while `fn` runs (so a
  // slow consumer never stalls them), and `fn` may call into this Store.
  // Throws Error: busy, corrupt, io (and whatever `fn` throws).
  void for_each(const std::function<bool(std::string_view, std::string_view)>& fn) const;

  // Applies every op of `ops` or none of them: one lock, one record batch, one sync.
  // Throws Error: invalid_argument, read_only, no_space, store_full, busy, io, corrupt.
  void apply(const std::vector<BatchOp>& ops);

  // --- coordination between threads and processes
  //
  // Callbacks (transact, view, visit) run while this store's lock is held:
  // they must not call into any Store of the same file (this handle or
  // another, in this thread). Such a call throws Error(invalid_argument) at
  // once instead of deadlocking. Other threads and processes wait for the
  // callback: keep it short. Those that wait past their lock_timeout get
  // Error(busy).

  // Runs `fn` under the write lock. Its puts and erases commit together when
  // `fn` returns: one all-or-nothing batch, one sync (Sync::always), one
  // change. If `fn` throws, nothing is written and the exception propagates.
  // A process killed at any instant leaves all of the batch or none of it.
  // Throws Error: read_only, invalid_argument, no_space, store_full, busy, io, corrupt.
  void transact(const std::function<void(Transaction&)>& fn);

  // Runs `fn` under the read lock: every read inside sees one committed state.
  // Throws Error: busy, corrupt, io (and whatever `fn` throws).
  void view(const std::function<void(const View&)>& fn) const;

  // Adds `delta` to the decimal int64 under `key` (absent counts as 0) and
  // stores the result as decimal text: one lock, one record. Returns the new
  // value. A value that is not a decimal int64 (optional '-', digits only),
  // or an overflow, throws Error(invalid_argument) and changes nothing.
  // Throws Error: invalid_argument, read_only, no_space, store_full, busy, io, corrupt.
  std::int64_t increment(std::string_view key, std::int64_t delta = 1);

  // Sets `key` to `desired` (nullopt: erases it) only if its value equals
  // `expected` (nullopt: the key is absent); returns whether it did.
  // Throws Error: read_only, no_space, store_full, busy, io, corrupt.
  bool compare_exchange(std::string_view key, std::optional<std::string_view> expected,
                        std::optional<std::string_view> desired);

  // Stores `value` only when `key` is absent; returns whether it did.
  // Throws Error: read_only, no_space, store_full, busy, io, corrupt.
  bool insert(std::string_view key, std::string_view value);

  // A counter bumped by every committed change (put, erase of a present key,
  // batch, transaction with writes, successful increment/compare_exchange/
  // insert) from any process, and once by every recovery after a writer died.
  // Compaction changes no pair and does not bump it. Lock-free. It survives
  // closing and reopening (kept in the data file), but may step back after a
  // power cut with Sync::none, with the changes it counted.
  [[nodiscard]] std::uint64_t change_count() const noexcept;

  // Blocks until change_count() differs from `seen` or `timeout` passes, and
  // returns change_count() then. No polling: a commit in any process wakes
  // every waiter (a futex in the lock file). A process killed while waiting or
  // committing blocks nobody. Throws Error(invalid_argument) from inside a
  // callback of this store (nothing could change while it holds the lock).
  std::uint64_t wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const;

  // Rewrites the store into a fresh file of the smallest size that holds the
  // live pairs, then atomically replaces the file. Online: other handles keep
  // working and adopt the new file at their next call.
  // Throws Error: read_only, no_space, busy, io, corrupt.
  void compact();

  // Makes everything written so far durable (msync + fdatasync). Throws Error: busy, corrupt, io.
  void sync();

  // Throws Error: busy, corrupt, io.
  [[nodiscard]] Stats stats() const;

  // Verifies the whole file: header, every record's checksum, the index
  // against the records, the allocator's bookkeeping. Returns a list of
  // problems, empty when the store is sound. Throws Error: busy, corrupt (the
  // file was replaced by one that fails to open), io.
  [[nodiscard]] std::vector<std::string> check() const;

  [[nodiscard]] const std::filesystem::path& path() const noexcept;

  // Rebuilds the store at `path` from every record that passes its checksum,
  // finding chunks by their magic when the index or the chunk links are
  // damaged. The new file replaces the original only once it is complete and
  // synced; handles open elsewhere adopt it. Returns what was found wrong on
  // the way (empty: nothing was). Throws Error: not_a_store, version_mismatch,
  // io, no_space, busy, read_only.
  static std::vector<std::string> repair(const std::filesystem::path& path, const Options& options = {});

  class Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl) noexcept;
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvstore
