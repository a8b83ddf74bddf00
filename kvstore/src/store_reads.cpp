// Store::Impl's reads: through a reader slot, or (a handle that cannot write
// the lock file) optimistic attempts validated against the writers' sequence
// word; and the calls built on them (get, visit, view, size, for_each, stats,
// check, sync).
#include "store_impl.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "crash_point.hpp"
#include "kvstore/error.hpp"
#include "store_sections.hpp"

namespace kvstore {

using detail::DataFile;
using detail::FileHeader;
using detail::LockFile;

// ------------------------------------------------ optimistic (slot-less) reads
//
// A handle that cannot write the lock file holds no reader slot, so writers do
// not wait for it: it reads while they write. Each read is an attempt between
// ReadGuard's start (no writer holds the lock) and its valid() (none took it
// since); what an attempt returns is copied out of the mapping before it is
// validated, and an attempt that saw the state move is thrown away. A torn
// state may send an attempt through a wrong offset, a slot count that does not
// match its table or a half-written record: every such path is bounds-checked
// (DataFile::resolve, index(), read_record) and ends in an Error, and every
// record found is checksum-verified, so a torn attempt fails or is discarded,
// never crashes and never answers. Records never change once written and a
// mapping is never shrunk, so a validated record stays readable. Giving up
// after lock_timeout is busy, like a slot-holding reader's wait for the lock.

bool Store::Impl::slotless_stale() const noexcept {
  return lock_->file_epoch() != epoch_ || file_->stale();
}

void Store::Impl::refresh_slotless(std::uint64_t seq) const {
  auto& self = const_cast<Impl&>(*this);  // NOLINT: remap_ held exclusively makes this safe
  const std::unique_lock<std::shared_mutex> exclusive(remap_);
  if (!slotless_stale()) return;  // another thread did it
  const std::uint64_t epoch = lock_->file_epoch();
  struct stat at_path {};
  struct stat mapped {};
  if (file_->retired() || ::stat(path_.c_str(), &at_path) != 0 || ::fstat(file_->fd(), &mapped) != 0 ||
      at_path.st_ino != mapped.st_ino || at_path.st_dev != mapped.st_dev) {
    // Replaced (compaction, recovery): the old file stays mapped for those who pinned it.
    auto fresh = std::make_shared<DataFile>(DataFile::open(path_, false, options_.max_file_size));
    // Opening reads the length, then the header: a grow in between would make
    // the file look short. Only an open no writer overlapped counts.
    if (!lock_->read_unchanged(seq)) return;
    self.file_ = std::move(fresh);
  } else if (file_->stale()) {
    // Grown: map up to the published size. The size is published only once the
    // file is that long, and a live file never shrinks, so this never maps past
    // its end (no SIGBUS); adopt_size checks it against fstat all the same.
    self.file_->adopt_size();
  }
  self.epoch_ = epoch;
}

bool Store::Impl::check_settled(const DataFile& file, const detail::ReadGuard& guard) const {
  const FileHeader& h = file.header();
  std::string why;
  if (lock_->access() == LockFile::Access::none && h.clean.load(std::memory_order_relaxed) == 0) {
    // Without a lock file nothing tells a live writer from a dead one, and
    // nothing would tell this reader that a writer changed something.
    throw Error(Errc::busy, path_ + ": has no lock file this process can read, and was not closed cleanly "
                                    "(a writer may be using it): reading it needs the lock file");
  }
  if (file.short_file()) {
    why = "the file is shorter than its header says";
  } else if (h.writing.load(std::memory_order_relaxed) != detail::kIdle) {
    why = "a writer died while changing it";
  } else if (h.clean.load(std::memory_order_relaxed) == 0 &&
             std::memcmp(h.boot_id, detail::current_boot_id(), sizeof h.boot_id) != 0 && !lock_->anyone_attached()) {
    // What the first writer to attach would recover (Impl::Impl). With a
    // handle attached this is a file compacted from an unclean one, which
    // carries no boot id until its next change: nothing to recover.
    why = "the machine stopped before it was closed";
  }
  if (why.empty()) return true;
  if (!guard.valid()) return false;  // a live writer is at work: start over
  throw Error(Errc::busy, path_ + ": needs recovery (" + why +
                              ") by a process that may write it; a read-only open cannot do it");
}

template <class F>
auto Store::Impl::optimistic(F&& f, bool revalidate) const {
  const auto deadline = std::chrono::steady_clock::now() + options_.lock_timeout;
  for (;;) {
    bool stale = false;
    {
      const std::shared_lock<std::shared_mutex> shared(remap_);
      const DataFile& file = *file_;
      const detail::ReadGuard guard(*lock_, file, deadline);
      stale = slotless_stale();
      if (!stale && check_settled(file, guard)) {
        try {
          auto result = f(file, &guard);
          if (!revalidate || guard.valid()) return result;
        } catch (const detail::ReadRetry&) {
        } catch (const std::exception&) {
          // What a torn state makes of a read (corrupt, a bad size...) counts
          // only if nothing moved; else start over.
          if (guard.valid()) throw;
        }
      }
    }
    if (stale) {
      const std::uint64_t seq = lock_->read_begin(deadline);
      try {
        refresh_slotless(seq);
      } catch (const std::exception&) {
        if (lock_->read_unchanged(seq)) throw;  // not a writer's half-made change
      }
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Errc::busy, path_ + ": writers kept changing the store; no read completed within " +
                                  std::to_string(options_.lock_timeout.count()) + " ms");
    }
  }
}

template <class F>
auto Store::Impl::read(F&& f) const {
  if (lock_->slotless()) return optimistic(std::forward<F>(f));
  ReadSection r(*this);
  return f(*file_, static_cast<const detail::ReadGuard*>(nullptr));
}

void Store::Impl::open_slotless() {
  // Nothing is created or recovered: a reader cannot. The file is opened as
  // a read is made, between the guard's checks, and then validated by one.
  const auto deadline = std::chrono::steady_clock::now() + options_.lock_timeout;
  for (;;) {
    const std::uint64_t seq = lock_->read_begin(deadline);
    try {
      epoch_ = lock_->file_epoch();
      file_ = std::make_shared<DataFile>(DataFile::open(path_, false, options_.max_file_size));
      // A header read (pread) while a writer changed it may be torn, and a
      // grow between its fstat and its pread makes the file look short.
      if (lock_->read_unchanged(seq)) break;
    } catch (const Error&) {
      if (lock_->read_unchanged(seq)) throw;
    }
    if (std::chrono::steady_clock::now() >= deadline) {
      throw Error(Errc::busy, path_ + ": writers kept changing the store; it could not be opened within " +
                                  std::to_string(options_.lock_timeout.count()) + " ms");
    }
  }
  (void)optimistic([](const DataFile& file, const detail::ReadGuard*) {
    file.validate_root();
    return true;
  });
}

std::optional<std::string> Store::Impl::get(std::string_view key) const {
  refuse_reentry();
  return read([&](const DataFile& file, const detail::ReadGuard*) -> std::optional<std::string> {
    detail::RecordView rec{};
    if (!file.find(key, rec)) return std::nullopt;
    return std::string(rec.value);
  });
}

bool Store::Impl::visit(std::string_view key, const std::function<void(std::string_view)>& fn) const {
  if (lock_->slotless()) {
    refuse_reentry();
    // The value is handed over only once validated: a record never changes,
    // and `pin` keeps its mapping.
    std::shared_ptr<DataFile> pin;
    detail::RecordView rec{};
    const bool found = optimistic([&](const DataFile& file, const detail::ReadGuard*) {
      pin = file_;
      return file.find(key, rec);
    });
    if (!found) return false;
    CallbackScope scope(*this);
    fn(rec.value);
    return true;
  }
  ReadSection r(*this);
  detail::RecordView rec{};
  if (!file_->find(key, rec)) return false;
  CallbackScope scope(*this, r.inside());
  fn(rec.value);
  return true;
}

void Store::Impl::view(
    const std::function<void(const DataFile&, const detail::ReadGuard*, std::size_t keys)>& fn) const {
  refuse_reentry();
  if (!lock_->slotless()) {
    ReadSection r(*this);
    CallbackScope scope(*this);
    fn(*file_, nullptr, 0);
    return;
  }
  // Slot-less: every View::get validates against the state at the start
  // before it answers, so all the answers of one run are of one committed
  // state, and a callback that returns needs no check after it. A get after
  // a writer's change throws ViewMoved: escaping the callback, it runs it
  // again (C and Python report busy to their callers instead).
  (void)optimistic(
      [&](const DataFile& file, const detail::ReadGuard* guard) {
        const std::size_t keys = file.key_count();
        if (!guard->valid()) throw detail::ReadRetry{};
        CallbackScope scope(*this);
        fn(file, guard, keys);
        return true;
      },
      false);
}

std::size_t Store::Impl::size() const {
  refuse_reentry();
  return read([](const DataFile& file, const detail::ReadGuard*) { return std::size_t{file.key_count()}; });
}

void Store::Impl::for_each(const std::function<bool(std::string_view, std::string_view)>& fn) const {
  // A snapshot: the live offsets are taken under the read lock, the records
  // read after it is released. Writers are never held up by a slow `fn`, and
  // `fn` may call back into the store.
  refuse_reentry();
  // Taken before the snapshot: from then on no writer frees a chunk (reclaim)
  // whose records the snapshot names.
  const detail::LockFile::RecordPin pin = lock_->pin_records();
  struct Snapshot {
    std::shared_ptr<DataFile> pin;
    std::vector<std::uint64_t> offsets;
    const char* base = nullptr;
    std::uint64_t size = 0;
  };
  const Snapshot snap = read([&](const DataFile& file, const detail::ReadGuard*) {
    return Snapshot{file_, file.live_offsets(), file.base(), file.mapped_size()};
  });
  for (const std::uint64_t offset : snap.offsets) {
    const detail::RecordView rec = detail::read_record(snap.base, snap.size, offset, path_);
    if (rec.type != detail::RecordType::put || !detail::record_intact(rec)) {
      throw Error(Errc::corrupt, path_ + ": record fails its checksum; run kvtool check", offset);
    }
    if (!fn(rec.key, rec.value)) return;
  }
}
void Store::Impl::sync() {
  if (lock_->slotless()) return;  // nothing it could have written
  ReadSection r(*this);
  if (file_->writable()) file_->sync_all();
}

Stats Store::Impl::stats() const {
  Stats s = read([&](const DataFile& file, const detail::ReadGuard*) { return file_stats(file); });
  s.processes = lock_->attached();
  s.change_count = change_count();
  s.sync = options_.sync;
  return s;
}

Stats Store::Impl::file_stats(const DataFile& file) {
  Stats s;
  const FileHeader& h = file.header();
  const detail::Root& root = file.root();
  s.file_size = h.file_size.load();
  s.free_bytes = file.free_bytes();
  s.used_bytes = s.file_size - s.free_bytes;
  s.keys = root.keys;
  s.key_bytes = root.key_bytes;
  s.value_bytes = root.value_bytes;
  s.record_bytes = root.record_bytes;
  s.dead_bytes = root.dead_bytes;
  s.table_slots = root.slot_count;
  s.load_factor = root.slot_count == 0 ? 0.0 : static_cast<double>(root.keys) / static_cast<double>(root.slot_count);
  s.generation = h.generation.load();
  s.grows = h.grows;
  s.compactions = h.compactions;
  s.last_compact_unix = h.last_compact_unix;
  s.recoveries = h.recoveries;
  return s;
}

std::vector<std::string> Store::Impl::check() const {
  return read([](const DataFile& file, const detail::ReadGuard*) { return file.check(); });
}

}  // namespace kvstore
