// Store::Impl: wires the lock file, the mapped data file and the public calls.
// Every public call enters through a ReadSection or a WriteSection, which take
// the cross-process lock and bring this handle's mapping up to date first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "data_file.hpp"
#include "transaction.hpp"
#include "kvstore/store.hpp"
#include "lock.hpp"

namespace kvstore {

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
  void view(const std::function<void(const detail::DataFile&)>& fn) const;
  std::int64_t increment(std::string_view key, std::int64_t delta);
  bool compare_exchange(std::string_view key, std::optional<std::string_view> expected,
                        std::optional<std::string_view> desired);
  bool insert(std::string_view key, std::string_view value);
  [[nodiscard]] std::uint64_t change_count() const noexcept { return lock_->change_count(); }
  [[nodiscard]] std::uint64_t wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const;
  void compact();
  void sync();
  [[nodiscard]] Stats stats() const;
  [[nodiscard]] std::vector<std::string> check() const;
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return fs_path_; }
  static std::vector<std::string> repair(const std::filesystem::path& path, const Options& options);

 private:
  class ReadSection;
  class WriteSection;
  class Change;
  class CallbackScope;
  friend class ReadSection;
  friend class WriteSection;
  friend class Change;
  friend class CallbackScope;

  // Throws Error(invalid_argument) when this thread is inside a callback
  // (transact, view, visit) of a store of the same file: waiting for the lock
  // it already holds would deadlock.
  void refuse_reentry() const;

  void enter_read() const;
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
  // Puts `fresh` (built at `tmp`) in place of the current file, atomically.
  void publish(detail::DataFile fresh, const std::string& tmp);
  // The same, for any caller holding the write lock: renames `fresh` over
  // `path`, makes the rename durable, retires `old` and tells the other handles.
  static void replace_file(detail::DataFile& fresh, const std::string& tmp, const std::filesystem::path& path,
                           detail::DataFile* old, detail::LockFile& lock);
  // Takes the write lock for a change (refused for a read-only handle) and
  // runs f() under it.
  template <class F>
  auto mutate(F&& f);

  std::filesystem::path fs_path_;
  std::string path_;
  Options options_;
  std::unique_ptr<detail::LockFile> lock_;
  // Shared so that a for_each in progress keeps its snapshot mapped after
  // another call replaced the file.
  std::shared_ptr<detail::DataFile> file_;
  std::uint64_t epoch_ = 0;
};

}  // namespace kvstore
