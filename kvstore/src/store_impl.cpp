#include "store_impl.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <iterator>
#include <optional>
#include <cstring>
#include <ctime>
#include <mutex>
#include <thread>
#include <utility>

#include "crash_point.hpp"
#include "store_sections.hpp"
#include "temp_files.hpp"
#include "kvstore/error.hpp"

namespace kvstore {

using detail::DataFile;
using detail::FileHeader;
using detail::LockFile;

// --------------------------------------------------------------- sections

thread_local constinit detail::InsideCallbacks detail::t_inside;

namespace {

using detail::InsideCallbacks;
using detail::t_inside;

void refuse_reentry(const LockFile& lock, const std::string& path) {
  const InsideCallbacks& inside = t_inside;
  if (inside.depth == 0) [[likely]] return;
  const auto id = lock.identity();
  for (unsigned i = 0; i < std::min(inside.depth, InsideCallbacks::kMaxDepth); ++i) {
    if (inside.ids[i] == id) {
      throw Error(Errc::invalid_argument,
                  path + ": called from inside a transact, view or visit callback on this store's file "
                         "(the call would wait for the lock its own thread holds)");
    }
  }
}

}  // namespace

void Store::Impl::refuse_reentry_inside() const { kvstore::refuse_reentry(*lock_, path_); }

void Store::Impl::note_change() noexcept { file_->set_change_count(lock_->publish_change()); }

void Store::Impl::enter_read_waiting() const {
  int refreshes = 0;
  for (;;) {
    if (!lock_->try_enter_read() && lock_->wait_and_enter_read() == LockFile::WriteResult::owner_died) {
      WriteSection recover(*this, true);
      continue;
    }
    if (!needs_refresh()) return;
    // The file grew or was replaced: remap, which needs everyone else out.
    lock_->exit_read();
    if (++refreshes > 100) {
      // Each refresh maps what the header publishes; if that never settles,
      // the header is lying.
      throw Error(Errc::corrupt, path_ + ": the published file size or state never settles");
    }
    WriteSection refresh(*this);
  }
}

// --------------------------------------------------------------- open / close

namespace {

void check_options(const std::string& path, const Options& o) {
  if (path.empty()) throw Error(Errc::invalid_argument, "empty path");
  if (o.max_file_size < detail::kMinFileSize || o.initial_size > o.max_file_size) {
    throw Error(Errc::invalid_argument,
                path + ": initial_size must not exceed max_file_size (at least 64 KiB)");
  }
  if (o.lock_timeout.count() < 0) throw Error(Errc::invalid_argument, path + ": negative lock_timeout");
  if (!(o.max_dead_fraction >= 0 && o.max_dead_fraction < 1)) {  // NaN fails too
    throw Error(Errc::invalid_argument, path + ": max_dead_fraction must lie in [0, 1)");
  }
}


}  // namespace

Store::Impl::Impl(const std::filesystem::path& path, const Options& options)
    : fs_path_(path), path_(path.string()), options_(options) {
  check_options(path_, options_);
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
    throw Error(Errc::not_a_store, path_ + ": is a directory");
  }
  if (!options_.create && ::stat(path_.c_str(), &st) != 0) {
    throw Error(Errc::io, path_ + ": " + std::strerror(errno), kNoOffset,
                std::error_code(errno, std::system_category()));
  }
  // A read-only handle may do with a lock file it cannot write (or none at
  // all): it then reads optimistically (open_slotless, optimistic).
  lock_ = std::make_unique<LockFile>(path_ + ".lock", options_.lock_timeout, options_.read_only);
  refuse_reentry();
  if (lock_->slotless()) {
    open_slotless();
    return;
  }
  const LockFile::WriteResult r = lock_->lock_write();
  try {
    if (lock_->first()) detail::remove_stale_temp_files(fs_path_);
    open_or_create();
    const FileHeader& h = file_->header();
    // The lock file is new: the count goes on from what the data file kept.
    if (lock_->first()) lock_->set_change_count(h.change_count);
    if (lock_->first() && h.clean.load() != 0 && !detail::sealed(h)) {
      // Nothing changes a clean file's header: this is damage, and no field of
      // the mutable part can be believed. A full rebuild that refuses any damage.
      recover("its header's state fails its checksum", false);
    } else if (file_->short_file()) {
      recover("the file is shorter than its header says");
    } else if (h.writing.load() != 0 && (r == LockFile::WriteResult::owner_died || lock_->first())) {
      recover("a writer died while changing it");
    } else if (lock_->first() && h.clean.load() == 0 &&
               std::memcmp(h.boot_id, detail::current_boot_id(), sizeof h.boot_id) != 0) {
      // Unclean from an earlier boot: pages that never reached the disk are gone.
      recover("the machine stopped before it was closed");
    } else {
      file_->validate_root();
      // Nobody has used this file since it was last closed (or it was never
      // ours): prove the allocator and the chunk list's end sound before the
      // first put trusts them.
      if (lock_->first()) file_->verify_for_writes();
    }
    epoch_ = lock_->file_epoch();
  } catch (...) {
    lock_->unlock_write();
    throw;
  }
  lock_->unlock_write();
  retired_.reset();  // a recovery replaced the file: let the old one go, unlocked
  lock_->finish_attach();
}

Store::Impl::~Impl() {
  // The last compaction's old file, if another handle still had it: this
  // handle, not a get of theirs, should pay for freeing it.
  if (lingering_) (void)wait_until_alone(*lingering_);
  if (!lock_) return;
  try {
    // The last handle out leaves the file durable and marked clean, so that the
    // next first open can trust it without a rebuild, unless asked not to sync.
    const bool last = lock_->begin_detach();
    const bool seal = last && options_.sync_on_close;
    if (file_ && file_->writable() && (seal || file_->holds_unlinked())) {
      WriteSection w(*this);
      file_->release_unlinked_now();  // chunks reclaiming cut off the list (reclaim.cpp)
      if (seal) file_->close_clean();
    }
  } catch (...) {
    // Closing never throws; the next open sees the store unclean and recovers.
  }
}

void Store::Impl::open_or_create() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) == 0) {
    file_ = std::make_shared<DataFile>(DataFile::open(path_, true, options_.max_file_size));
    return;
  }
  if (errno != ENOENT || !options_.create || options_.read_only) {
    throw Error(Errc::io, path_ + ": " + std::strerror(errno), kNoOffset,
                std::error_code(errno, std::system_category()));
  }
  // Built aside and renamed into place, so that nobody ever sees half a file.
  const std::string tmp = detail::temp_path(path_, "create");
  // Options promise at least 64 KiB (the 8 KiB floor of create() is for compacted files).
  DataFile fresh =
      DataFile::create(tmp, std::max(options_.initial_size, detail::kMinFileSize), options_.max_file_size);
  fresh.sync_all();
  if (::rename(tmp.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    detail::throw_errno(path_, "rename", err);
  }
  fresh.renamed(path_);
  // Without it, for seconds after open returned only the temporary name was
  // on disk: a power cut then lost the store and every write acknowledged in it.
  if (const int err = detail::sync_directory(fs_path_); err != 0) detail::throw_errno(path_, "fsync directory", err);
  file_ = std::make_shared<DataFile>(std::move(fresh));
}

void Store::Impl::reopen() {
  struct stat at_path {};
  struct stat mapped {};
  if (file_ && ::stat(path_.c_str(), &at_path) == 0 && ::fstat(file_->fd(), &mapped) == 0 &&
      at_path.st_ino == mapped.st_ino && at_path.st_dev == mapped.st_dev && !file_->retired()) {
    if (file_->stale()) file_->adopt_size();
    return;
  }
  replace_mapping(std::make_shared<DataFile>(DataFile::open(path_, true, options_.max_file_size)));
  file_->validate_root();
}

void Store::Impl::replace_mapping(std::shared_ptr<DataFile> fresh) {
  // Letting a large, well-used file go takes long (retiring.hpp). So it is
  // not done under the lock, where everyone would wait for it, but a step at
  // a time by the calls after it (the sections' destructors). (Not by a
  // thread of its own: a process that forks while that thread is inside the
  // allocator leaves its child a held allocator lock; the ASan build's crash
  // test hung on it.)
  retired_ = std::exchange(file_, std::move(fresh));
}

void Store::Impl::refresh(bool owner_died) {
  if (owner_died || lock_->file_epoch() != epoch_ || file_->retired()) {
    reopen();
    epoch_ = lock_->file_epoch();
  } else if (file_->stale()) {
    file_->adopt_size();
  }
  if (owner_died && file_->header().writing.load() != 0) recover("a writer died while changing it");
}

void Store::Impl::recover(const std::string& why, bool header_trusted) {
  if (!file_->writable()) {
    throw Error(Errc::corrupt, path_ + ": needs recovery (" + why +
                                   ") but the file is not writable by this process");
  }
  const FileHeader& h = file_->header();
  // After a power cut, pages written since the last sync may be torn; after a
  // process crash in this boot, every page it wrote is in the page cache.
  const bool same_boot = std::memcmp(h.boot_id, detail::current_boot_id(), sizeof h.boot_id) == 0;
  const bool torn_pages_possible = header_trusted && (file_->short_file() || !same_boot);
  // A writer that died outside the allocator left it intact: the index is
  // rebuilt in place, in a fraction of the time of a copy.
  // The dead writer's change may have landed: waiters must look again.
  if (header_trusted && h.writing.load() == detail::kRecords && !torn_pages_possible && file_->repair_index()) {
    note_change();
    return;
  }
  // After a power cut, the durable mark tells what had reached the disk: the
  // history is replayed up to the first tear after it (ChunkLog::scan_to_tear). A file
  // without a mark (older builds) may only be torn at the end of its last chunk.
  const bool to_tear = torn_pages_possible && detail::durable_mark(h).valid;
  DataFile::History history =
      file_->read_history(to_tear ? detail::Replay::to_tear : detail::Replay::strict, !to_tear);
  std::vector<std::string>& problems = history.problems;
  if (history.unknown_keys != 0) {
    problems.insert(problems.begin(), std::to_string(history.unknown_keys) +
                                          " indexed keys have no record the chunks lead to");
  }
  const bool refuse = to_tear ? !problems.empty()
                              : history.unknown_keys != 0 ||
                                    (!problems.empty() && !(torn_pages_possible && file_->damage_is_torn_tail()));
  if (refuse) {
    // A dead writer never damages complete records, and a power cut only
    // tears what had not reached the disk: this is damage of another kind,
    // and recovering silently would drop the records it hides. Refuse,
    // change nothing, and leave the choice to an explicit repair.
    throw Error(Errc::corrupt, path_ + ": needs recovery (" + why + ") but is also damaged (" + problems[0] +
                                   "); nothing was changed: run kvtool check --repair");
  }
  const std::string tmp = detail::temp_path(path_, "recover");
  DataFile fresh = DataFile::rebuild(*file_, history, tmp, options_.max_file_size, DataFile::Rebuilt::recovery);
  publish(std::move(fresh), tmp);
  note_change();
}

void Store::Impl::replace_file(DataFile& fresh, const std::string& tmp, const std::filesystem::path& path,
                               DataFile* old, LockFile& lock) {
  fresh.sync_all();
  detail::crash_point("publish.before_rename");
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    detail::throw_errno(path.string(), "rename", err);
  }
  fresh.renamed(path.string());
  detail::crash_point("publish.after_rename");
  // The rename must be durable before anyone relies on it, and before the old
  // file is retired (a retired file at the path is damage). A failure is not
  // thrown: the new file is in place, and the old must be retired.
  (void)detail::sync_directory(path);
  // Handles still mapping the old file reopen the path at their next call.
  if (old != nullptr && old->writable()) old->retire();
  lock.bump_file_epoch();
}

void Store::Impl::publish(DataFile fresh, const std::string& tmp) {
  replace_file(fresh, tmp, fs_path_, file_.get(), *lock_);
  epoch_ = lock_->file_epoch();
  replace_mapping(std::make_shared<DataFile>(std::move(fresh)));
}

std::vector<std::string> Store::Impl::repair(const std::filesystem::path& path, const Options& options) {
  check_options(path.string(), options);
  LockFile lock(path.string() + ".lock", options.lock_timeout);
  kvstore::refuse_reentry(lock, path.string());
  lock.lock_write();  // a dead previous owner changes nothing here: everything is rebuilt
  struct Unlock {
    LockFile& lock;
    ~Unlock() {
      lock.unlock_write();
      lock.finish_attach();
    }
  } unlock{lock};
  DataFile old = DataFile::open(path.string(), true, options.max_file_size);
  if (!old.writable()) throw Error(Errc::read_only, path.string() + ": file is not writable");
  std::vector<std::string> problems = old.check();
  const std::string tmp = detail::temp_path(path.string(), "recover");
  DataFile fresh = DataFile::rebuild(old, old.read_history(detail::Replay::salvage, false), tmp,
                                     options.max_file_size, DataFile::Rebuilt::recovery);
  replace_file(fresh, tmp, path, &old, lock);
  fresh.set_change_count(lock.publish_change());
  return problems;
}

// --------------------------------------------------------------- calls

template <class F>
auto Store::Impl::mutate(F&& f) {
  if (options_.read_only) throw Error(Errc::read_only, path_ + ": opened read-only");
  lock_->wait_for_pace();  // a compaction may be catching up: before the lock, which it needs soon
  WriteSection w(*this);
  if (!file_->writable()) throw Error(Errc::read_only, path_ + ": file is not writable");
  return f();
}

void Store::Impl::reclaim_after(std::uint64_t appended) noexcept {
  // Paid by the writers in proportion to the space they take: looking at
  // eight bytes of the oldest chunk per byte a write appended frees space as
  // fast as the writes use it, in steps of a few records, which keeps the
  // dead share near the limit under overwrites. Paced by the bytes a write
  // made dead as well (four per byte of either, the same for an overwrite),
  // an erase, which kills a record but appends only a small tombstone, made
  // reclaiming copy records that the next erases killed anyway: erasing 1M
  // keys after kvbench's churn took 2.5-2.6 us a key against 1.26 without
  // reclaiming, and saved 27 MB of a 242 MB file, which does not shrink.
  constexpr std::uint64_t kPace = 8;
  const double limit = options_.max_dead_fraction;
  if (limit <= 0 || reclaim_broken_) return;
  const detail::Root& r = file_->root();
  const auto dead = static_cast<double>(r.dead_bytes);
  const auto records = static_cast<double>(r.record_bytes);
  // The sync thread's write-back may lag behind a busy device (sync_worker.hpp):
  // past a little more dead share, the writers wait for it. At / 16 (0.25)
  // kvbench's update phases, with the other engines' write-back in the
  // device, grew the file to 2.09x the raw bytes (1.86x at / 64).
  const bool keep_up = dead > (limit + (1 - limit) / 64) * records;
  try {
    file_->write_behind();
    if (r.dead_bytes > options_.min_dead_bytes && dead > limit * records) {
      file_->reclaim(appended * kPace, [&] { return lock_->records_pinned(); }, keep_up);
    }
  } catch (const Error& e) {
    // The write this follows is done and must stand. A damaged record stops
    // this handle's reclaiming (check says where); anything else (a full
    // disk, an I/O error) is tried again by a later write.
    if (e.code() == Errc::corrupt) reclaim_broken_ = true;
  } catch (const std::exception&) {
    // Out of memory: the next write tries again.
  }
}

void Store::Impl::put(std::string_view key, std::string_view value) {
  mutate([&] {
    Change c(*this);
    file_->put(key, value, 0);
    c.commit();
  });
}

bool Store::Impl::erase(std::string_view key) {
  return mutate([&] {
    Change c(*this);
    const bool existed = file_->erase(key, 0);
    if (existed) c.commit();
    return existed;
  });
}

void Store::Impl::apply(const std::vector<BatchOp>& ops) {
  std::vector<DataFile::Op> plain;
  plain.reserve(ops.size());
  for (const BatchOp& op : ops) plain.push_back({op.key, op.value, op.erase});
  mutate([&] {
    if (plain.empty()) return;
    Change c(*this);
    file_->apply(plain);
    c.commit();
  });
}

void Store::Impl::transact(const std::function<void(detail::TransactionState&)>& fn) {
  mutate([&] {
    // Nothing is marked in the file while the callback runs: a process
    // killed inside it leaves no trace to recover from.
    detail::TransactionState state(*file_);
    {
      CallbackScope scope(*this);
      fn(state);
    }
    const std::vector<DataFile::Op> ops = state.batch();
    if (ops.empty()) return;
    Change c(*this);
    file_->apply(ops);
    c.commit();
  });
}

namespace {

// The value of a counter: decimal ASCII, an optional '-' then digits, and
// nothing else (no '+', no spaces: those were never written by increment).
std::int64_t parse_counter(std::string_view text, const std::string& path) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) {
    throw Error(Errc::invalid_argument, path + ": increment: the value is not a decimal int64");
  }
  return v;
}

}  // namespace

std::int64_t Store::Impl::increment(std::string_view key, std::int64_t delta) {
  return mutate([&] {
    std::int64_t value = 0;
    if (detail::RecordView rec{}; file_->find(key, rec)) value = parse_counter(rec.value, path_);
    std::int64_t result = 0;
    if (__builtin_add_overflow(value, delta, &result)) {
      throw Error(Errc::invalid_argument, path_ + ": increment overflows int64");
    }
    char text[24];
    const auto [end, ec] = std::to_chars(std::begin(text), std::end(text), result);
    Change c(*this);
    file_->put(key, std::string_view(text, static_cast<std::size_t>(end - text)), 0);
    c.commit();
    return result;
  });
}

bool Store::Impl::compare_exchange(std::string_view key, std::optional<std::string_view> expected,
                                   std::optional<std::string_view> desired) {
  return mutate([&] {
    detail::RecordView rec{};
    const bool found = file_->find(key, rec);
    if (found != expected.has_value() || (found && rec.value != *expected)) return false;
    if (!found && !desired) return true;  // absent, and to stay absent: nothing to write
    Change c(*this);
    if (desired) {
      file_->put(key, *desired, 0);
    } else {
      file_->erase(key, 0);
    }
    c.commit();
    return true;
  });
}

bool Store::Impl::insert(std::string_view key, std::string_view value) {
  return mutate([&] {
    if (detail::RecordView rec{}; file_->find(key, rec)) return false;
    Change c(*this);
    file_->put(key, value, 0);
    c.commit();
    return true;
  });
}

std::uint64_t Store::Impl::change_count() const noexcept {
  if (lock_->access() != LockFile::Access::none) return lock_->change_count();
  // No lock file: the data file's copy (kept current by any writer, which
  // this handle only meets if it refuses to read).
  const std::shared_lock<std::shared_mutex> shared(remap_);
  return __atomic_load_n(&file_->header().change_count, __ATOMIC_ACQUIRE);
}

std::uint64_t Store::Impl::wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const {
  refuse_reentry();
  timeout = std::max(timeout, std::chrono::milliseconds::zero());
  if (lock_->access() != LockFile::Access::none) return lock_->wait_for_change(seen, timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const std::uint64_t n = change_count();
    const auto left = deadline - std::chrono::steady_clock::now();
    if (n != seen || left <= std::chrono::nanoseconds::zero()) return n;
    std::this_thread::sleep_for(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(5)));
  }
}

}  // namespace kvstore
