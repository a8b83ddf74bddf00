// The sections of Store::Impl's calls (store_impl.cpp, store_reads.cpp,
// compaction.cpp): the write and read sections around the lock, the change
// protocol inside a write, and the marker that refuses a callback's call back
// into its own store.
#pragma once

#include <cstdint>
#include <utility>

#include "store_impl.hpp"

namespace kvstore {

// Marks this thread as inside a callback that holds the lock of `impl`'s file.
class Store::Impl::CallbackScope {
 public:
  // The thread-local is looked up once: from a shared library each lookup is
  // a call (__tls_get_addr).
  explicit CallbackScope(const Impl& impl) noexcept : CallbackScope(impl, detail::t_inside) {}
  // With the thread's InsideCallbacks already at hand (ReadSection::inside()).
  CallbackScope(const Impl& impl, detail::InsideCallbacks& inside) noexcept : inside_(inside) {
    if (inside_.depth < detail::InsideCallbacks::kMaxDepth) inside_.ids[inside_.depth] = impl.lock_->identity();
    ++inside_.depth;
  }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
  ~CallbackScope() { --inside_.depth; }

 private:
  detail::InsideCallbacks& inside_;
};

class Store::Impl::WriteSection {
 public:
  explicit WriteSection(const Impl& impl, bool adopt_owner_died = false)
      : impl_(const_cast<Impl&>(impl)) {  // NOLINT: the lock is what makes this safe
    if (!adopt_owner_died) impl_.refuse_reentry();
    const bool died =
        adopt_owner_died || impl_.lock_->lock_write() == detail::LockFile::WriteResult::owner_died;
    try {
      impl_.refresh(died);
    } catch (...) {
      impl_.lock_->unlock_write();
      throw;
    }
  }
  WriteSection(const WriteSection&) = delete;
  WriteSection& operator=(const WriteSection&) = delete;
  ~WriteSection() {
    auto retired = impl_.take_retired();
    // A sync that reclaiming needs and the writers outran (reclaim.cpp):
    // waited for after the lock, so that no reader or other writer waits.
    std::shared_ptr<detail::DataFile> syncing;
    if (impl_.file_ && impl_.file_->work_after_lock()) syncing = impl_.file_;
    impl_.lock_->unlock_write();
    impl_.retiring_.add(std::move(retired));  // let go a step per call, after the lock (retiring.hpp)
    impl_.retiring_.step();
    if (syncing) syncing->do_work_after_lock();
  }

 private:
  Impl& impl_;
};

// The write lock in two steps (compaction.cpp): first writers only, while
// readers go on with the file as it is; then readers too, after which the
// handle is brought up to date as in a WriteSection.
class Store::Impl::TwoStepWriteSection {
 public:
  explicit TwoStepWriteSection(const Impl& impl)
      : impl_(const_cast<Impl&>(impl)) {  // NOLINT: the lock is what makes this safe
    impl_.refuse_reentry();
    died_ = impl_.lock_->lock_writers() == detail::LockFile::WriteResult::owner_died;
    held_ = true;
  }
  TwoStepWriteSection(const TwoStepWriteSection&) = delete;
  TwoStepWriteSection& operator=(const TwoStepWriteSection&) = delete;
  ~TwoStepWriteSection() {
    if (!held_) return;  // released already: retired_ is not ours to touch
    auto retired = impl_.take_retired();
    if (readers_excluded_) {
      impl_.lock_->unlock_write();
    } else {
      impl_.lock_->unlock_writers();
    }
    impl_.retiring_.add(std::move(retired));
  }
  // The writer before us died holding the lock: the store must be checked
  // (refresh, after exclude_readers) before anything else.
  [[nodiscard]] bool owner_died() const noexcept { return died_; }
  // Without `refresh`, for a caller that replaced the file under the first
  // step and maps the new one itself.
  void exclude_readers(bool refresh = true) {
    held_ = false;  // exclude_readers_too releases the lock if it fails
    impl_.lock_->exclude_readers_too();
    held_ = true;
    readers_excluded_ = true;
    if (refresh) impl_.refresh(died_);
  }

 private:
  Impl& impl_;
  bool died_ = false;
  bool held_ = false;
  bool readers_excluded_ = false;
};

class Store::Impl::ReadSection {
 public:
  explicit ReadSection(const Impl& impl) : impl_(impl), inside_(detail::t_inside) {
    if (inside_.depth != 0) [[unlikely]] impl_.refuse_reentry_inside();
    impl_.enter_read();
  }
  ReadSection(const ReadSection&) = delete;
  ReadSection& operator=(const ReadSection&) = delete;
  ~ReadSection() {
    impl_.lock_->exit_read();
    impl_.retiring_.step();
  }
  // This thread's callback marks, for a CallbackScope inside the section:
  // one thread-local lookup a get instead of two.
  [[nodiscard]] detail::InsideCallbacks& inside() const noexcept { return inside_; }

 private:
  const Impl& impl_;
  detail::InsideCallbacks& inside_;
};

// One change to the store, under the write lock: marks the header while the
// writer is at work (recovery reads it after a death), and on commit() makes
// the change as durable as the sync mode asks and tells the waiting processes.
class Store::Impl::Change {
 public:
  explicit Change(Impl& impl) : impl_(impl), before_(appended()) { impl_.file_->begin_change(); }
  Change(const Change&) = delete;
  Change& operator=(const Change&) = delete;
  ~Change() { impl_.file_->end_change(); }

  void commit() {
    // Before the sync: Sync::always then makes the records it moved durable too.
    const std::uint64_t now = appended();
    impl_.reclaim_after(now > before_ ? now - before_ : 0);
    if (impl_.options_.sync == Sync::always) impl_.file_->sync_tail();
    impl_.note_change();
  }

 private:
  // Record bytes appended so far: the space reclamation must keep pace with.
  [[nodiscard]] std::uint64_t appended() const noexcept { return impl_.file_->root().record_bytes; }

  Impl& impl_;
  std::uint64_t before_;
};

}  // namespace kvstore
