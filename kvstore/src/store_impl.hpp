// Store::Impl: wires the lock file, the mapped data file and the public calls.
// Every public call enters through a ReadSection or a WriteSection, which take
// the cross-process lock and bring this handle's mapping up to date first.
#pragma once

#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "batch_replay.hpp"
#include "data_file.hpp"
#include "transaction.hpp"
#include "kvstore/store.hpp"
#include "lock.hpp"
#include "read_guard.hpp"
#include "retiring.hpp"

namespace kvstore {

namespace detail {
// The lock files (by identity) whose lock this thread holds while a user
// callback runs. Nesting past kMaxDepth different stores is allowed but no
// longer checked. constinit: no initialisation check on each access.
struct InsideCallbacks {
  static constexpr unsigned kMaxDepth = 8;
  std::pair<std::uint64_t, std::uint64_t> ids[kMaxDepth];
  unsigned depth = 0;
};
extern thread_local constinit InsideCallbacks t_inside;
}  // namespace detail

class Store::Impl {
 public:
  Impl(const std::filesystem::path& path, const Options& options);
  Impl(const Impl&) = delete;
  Impl& operator=(const Impl&) = delete;
  ~Impl();

  void put(std::string_view key, std::string_view value);
  bool visit(std::string_view key, const std::function<void(std::string_view)>& fn) const;
  bool erase(std::string_view key);
  [[nodiscard]] std::size_t size() const;
  void for_each(const std::function<bool(std::string_view, std::string_view)>& fn) const;
  void apply(const std::vector<BatchOp>& ops);
  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
  void transact(const std::function<void(detail::TransactionState&)>& fn);
  // `guard` is null for a handle with a reader slot; else View::get validates with it.
  // `keys`: with a guard, the key count validated at the start.
  void view(const std::function<void(const detail::DataFile&, const detail::ReadGuard*, std::size_t keys)>& fn) const;
  std::int64_t increment(std::string_view key, std::int64_t delta);
  bool compare_exchange(std::string_view key, std::optional<std::string_view> expected,
                        std::optional<std::string_view> desired);
  bool insert(std::string_view key, std::string_view value);
  [[nodiscard]] std::uint64_t change_count() const noexcept;
  [[nodiscard]] std::uint64_t wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const;
  void compact();
  void sync();
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] std::vector<std::string> check() const;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return fs_path_; }
  static std::vector<std::string> repair(const std::filesystem::path& path, const Options& options);
  // The figures stats() reads from the file itself.
  static Stats file_stats(const detail::DataFile& file);

 private:
  class ReadSection;
  class WriteSection;
  class TwoStepWriteSection;
  class Change;
  class CallbackScope;
  friend class ReadSection;
  friend class WriteSection;
  friend class TwoStepWriteSection;
  friend class Change;
  friend class CallbackScope;

  // Throws Error(invalid_argument) when this thread is inside a callback
  // (transact, view, visit) of a store of the same file: waiting for the lock
  // it already holds would deadlock.
  // The check is inline (nothing to do outside callbacks) because every
  // instruction of a get counts (DataFile::find).
  void refuse_reentry() const {
    if (detail::t_inside.depth != 0) [[unlikely]] refuse_reentry_inside();
  }
  void refuse_reentry_inside() const;

  // Enters a read with this handle's mapping up to date.
  void enter_read() const {
    if (lock_->try_enter_read()) [[likely]] {
      if (!needs_refresh()) [[likely]] return;
      lock_->exit_read();
    }
    enter_read_waiting();
  }
  void enter_read_waiting() const;
  [[nodiscard]] bool needs_refresh() const noexcept {
    return lock_->file_epoch() != epoch_ || file_->stale();
  }
  // Under the write lock: map what is now at the path, recovering if a writer died.
  void refresh(bool owner_died);
  void open_or_create();
  void reopen();
  // `header_trusted` false: the header's mutable part failed its checksum, so
  // neither its phase nor its boot id nor its durable mark may guide recovery.
  void recover(const std::string& why, bool header_trusted = true);
  // With the write lock held: counts a committed change (Store::change_count).
  void note_change() noexcept;
  // After a write that appended `appended` bytes of records (write lock,
  // inside its Change): a slice of reclamation, if the dead share is over the limit.
  void reclaim_after(std::uint64_t appended) noexcept;
  // Maps `fresh` in place of file_ (write lock held); the old file is kept in
  // retired_ until the lock is released.
  void replace_mapping(std::shared_ptr<detail::DataFile> fresh);
  [[nodiscard]] std::shared_ptr<detail::DataFile> take_retired() noexcept { return std::move(retired_); }
  // Puts `fresh` (built at `tmp`) in place of the current file, atomically.
  void publish(detail::DataFile fresh, const std::string& tmp);
  // compact()'s catch-up: applies to `fresh` the records of `source` (the file
  // it copies) after `from`, up to `until` or the end. Returns their bytes.
  static std::uint64_t catch_up(const detail::DataFile& source, detail::DataFile& fresh,
                                const detail::RecordsEnd& from, const detail::RecordsEnd* until,
                                detail::BatchReplay& batches);
  // compact()'s catch-up without the lock (compaction.cpp), until what is
  // left for the lock is short; `end` moves with it. False: another handle
  // replaced the file meanwhile.
  bool converge(detail::DataFile& source, detail::DataFile& fresh, detail::RecordsEnd& end, std::uint64_t epoch,
                detail::BatchReplay& batches);
  // compact()'s last catch-up and publish, under the lock. `current`: the
  // catch-up found the file it copies still in place; `epoch` is the file's
  // when the copy began.
  void finish_compaction(detail::DataFile& source, detail::DataFile fresh, const std::string& tmp,
                         const detail::RecordsEnd& end, bool current, std::uint64_t epoch,
                         detail::BatchReplay& batches);
  // Lets the file a compaction replaced go once no other handle has it open,
  // or keeps it in lingering_ if that takes long.
  void let_go_last(detail::DataFile old, detail::Fd shrink);
  // Waits a while for every other handle to let `old` go; false if some did not.
  static bool wait_until_alone(const detail::DataFile& old) noexcept;
  // Catch-up rounds until one is short, with writes `pace` apart (0: not
  // paced); the bytes applied, or nothing if the file was replaced.
  std::optional<std::uint64_t> rounds(detail::DataFile& source, detail::DataFile& fresh, detail::RecordsEnd& end,
                                      std::uint64_t epoch, detail::BatchReplay& batches,
                                      std::chrono::microseconds pace);
  // How far ahead a compaction paces the writers: renewed every round, and
  // it ends by itself if the compaction dies.
  static constexpr std::chrono::milliseconds kPacingSpan{500};
  // The same, for any caller holding the write lock (the writers' part of it
  // is enough): renames `fresh` over `path`, makes the rename durable,
  // retires `old` and tells the other handles.
  static void replace_file(detail::DataFile& fresh, const std::string& tmp, const std::filesystem::path& path,
                           detail::DataFile* old, detail::LockFile& lock);
  // Takes the write lock for a change (refused for a read-only handle) and
  // runs f() under it.
  template <class F>
  auto mutate(F&& f);

  // --- reads. read(f) runs f(file, guard) under the read lock, or, for a
  // slot-less handle (no writable lock file), as optimistic attempts until one
  // validates: f may then see torn state (every offset it follows is checked,
  // every record's checksum), must copy what it returns, and may run more
  // than once. `guard` is null under the read lock.
  template <class F>
  auto read(F&& f) const;
  // `revalidate`: whether f's result counts only if the guard still holds
  // when it returns (false: f validated everything it used itself).
  template <class F>
  auto optimistic(F&& f, bool revalidate = true) const;
  // Slot-less open: maps the existing file read-only, validated like a read.
  void open_slotless();
  // Slot-less: maps what the path now holds (grown, or replaced by compaction
  // or recovery), under remap_ exclusively.
  // `seq`: from LockFile::read_begin; an open that a writer overlapped is dropped.
  void refresh_slotless(std::uint64_t seq) const;
  [[nodiscard]] bool slotless_stale() const noexcept;
  // Slot-less: throws Error(busy) if the file waits for a writer's recovery
  // (a dead writer, a power cut, a short file), which this handle cannot do.
  // False: the guard no longer holds (start over).
  [[nodiscard]] bool check_settled(const detail::DataFile& file, const detail::ReadGuard& guard) const;

  std::filesystem::path fs_path_;
  std::string path_;
  Options options_;
  bool reclaim_broken_ = false;  // a damaged record stopped this handle's reclaiming
  std::unique_ptr<detail::LockFile> lock_;
  // Shared so that a for_each in progress keeps its snapshot mapped after
  // another call replaced the file.
  std::shared_ptr<detail::DataFile> file_;
  std::uint64_t epoch_ = 0;
  // The file replace_mapping() replaced, handed to retiring_ after the write lock.
  std::shared_ptr<detail::DataFile> retired_;
  mutable detail::Retiring retiring_;
  // The file the last compaction replaced, while another handle still had it
  // open (let_go_last).
  std::unique_ptr<detail::DataFile> lingering_;
  // Slot-less handles only: threads read under it shared; a remap takes it
  // exclusively (the write lock serves this purpose for the others).
  mutable std::shared_mutex remap_;
};

}  // namespace kvstore
