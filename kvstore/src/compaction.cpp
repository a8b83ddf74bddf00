// Store::Impl::compact: the copy without the lock, the catch-up and the
// publish under it.
#include <chrono>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "kvstore/error.hpp"

#include "batch_replay.hpp"
#include "crash_point.hpp"
#include "store_impl.hpp"
#include "store_sections.hpp"
#include "temp_files.hpp"
#include <unistd.h>

namespace kvstore {

using detail::DataFile;

void Store::Impl::compact() {
  if (options_.read_only) throw Error(Errc::read_only, path_ + ": opened read-only");
  // The copy runs without the lock, from a read-only mapping of its own, up
  // to where the records ended when it began: records never change once
  // written, so readers and writers go on meanwhile. So do the rounds of
  // catch-up that apply to the copy what writers appended since. Then writers
  // wait for the last, short catch-up, and readers only for the publish.
  // Before the copy begins: no writer frees a chunk (reclaim) it reads.
  const detail::LockFile::RecordPin pin = lock_->pin_records();
  std::optional<DataFile> source;
  detail::Fd shrink;  // the same file, writable: see let_go_last
  detail::RecordsEnd end;
  std::uint64_t epoch = 0;
  {
    ReadSection r(*this);
    if (!file_->writable()) throw Error(Errc::read_only, path_ + ": file is not writable");
    // The file this handle maps, which the path may no longer hold: another
    // handle's compaction renames its file into place before it tells us.
    source.emplace(DataFile::open_again(*file_));
    shrink = detail::open_writable_twin(path_, *source);
    end = file_->chunks().end();
    epoch = lock_->file_epoch();
  }
  const std::string tmp = detail::temp_path(path_, "compact");
  struct RemoveUnlessPublished {
    const std::string& path;
    bool published = false;
    ~RemoveUnlessPublished() {
      if (!published) ::unlink(path.c_str());
    }
  } cleanup{tmp};
  DataFile fresh =
      DataFile::rebuild(*source, source->read_history(detail::Replay::strict, false, &end), tmp,
                        options_.max_file_size, DataFile::Rebuilt::compaction);
  detail::crash_point("compact.copied");
  detail::BatchReplay batches;
  const bool current = converge(*source, fresh, end, epoch, batches);
  finish_compaction(*source, std::move(fresh), tmp, end, current, epoch, batches);
  cleanup.published = true;
  retiring_.clear();  // our own mapping of the old file: this compaction pays for it
  let_go_last(std::move(*source), std::move(shrink));
}

void Store::Impl::finish_compaction(DataFile& source, DataFile fresh, const std::string& tmp,
                                    const detail::RecordsEnd& end, bool current, std::uint64_t epoch,
                                    detail::BatchReplay& batches) {
  // Writers wait from here; readers go on reading the file as it is (the
  // catch-up writes only the copy, and the rename leaves their mapping be)
  // until this handle swaps its own mapping.
  TwoStepWriteSection w(*this);
  lock_->stop_pacing();  // the writers queue for the lock now
  const bool whole_lock = w.owner_died() || !current || lock_->file_epoch() != epoch;
  if (whole_lock) {
    // A writer died, or another handle compacted or recovered the store
    // meanwhile (the copy is of a file that is gone): compact the current
    // file under the whole lock.
    w.exclude_readers();
    ::unlink(tmp.c_str());
    fresh = DataFile::rebuild(*file_, file_->read_history(detail::Replay::strict, false), tmp,
                              options_.max_file_size, DataFile::Rebuilt::compaction);
  } else {
    source.adopt_size();
    detail::crash_point("compact.catching_up");
    (void)catch_up(source, fresh, end, nullptr, batches);
  }
  fresh.set_change_count(lock_->change_count());  // no writer can change it now
  detail::crash_point("compact.caught_up");
  if (whole_lock) {
    publish(std::move(fresh), tmp);
    return;
  }
  // All that waits for the device (the sync, the rename's), with readers
  // still reading: behind a busy device a publish held every reader 88 ms.
  // The other handles, readers among them, move to the new file at their
  // next call: it holds everything the old one does, as no writer got in.
  replace_file(fresh, tmp, fs_path_, file_.get(), *lock_);
  // Only this handle's own mapping needs its readers out. Should that fail
  // (a reader that never leaves), the handle reopens at its next call.
  w.exclude_readers(false);
  epoch_ = lock_->file_epoch();
  replace_mapping(std::make_shared<DataFile>(std::move(fresh)));
}

void Store::Impl::let_go_last(DataFile old, detail::Fd shrink) {
  // The other handles move to the new file at their next call and let the
  // old one go over the calls after it (retiring.hpp), 13-32 ms of work for
  // 1M keys. The last of all to let it go pays for freeing it, 55-100 ms,
  // which a get or put must not wait for: so this compaction waits a while
  // for busy handles to let go, and frees the file itself. A handle idle for
  // longer finds the file still held here, until the next compaction is
  // through (or this handle closes), by when it has usually let go.
  lingering_.reset();  // the previous compaction's: nobody uses it by now
  if (!wait_until_alone(old)) {
    lingering_ = std::make_unique<DataFile>(std::move(old));
    return;
  }
  // Alone with it, and nobody can open it again (it is unlinked): freed in
  // steps, so that this process does not hold a CPU in the kernel for the
  // whole of it (a get of another process on this 2-core machine waited
  // 23-31 ms for that).
  detail::shrink_in_steps(shrink);
}

bool Store::Impl::wait_until_alone(const DataFile& old) noexcept {
  // Waiting longer for idle handles would make every compaction that much slower.
  constexpr auto kWait = std::chrono::milliseconds(100);
  const auto deadline = std::chrono::steady_clock::now() + kWait;
  while (old.open_elsewhere()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

bool Store::Impl::converge(DataFile& source, DataFile& fresh, detail::RecordsEnd& end, std::uint64_t epoch,
                           detail::BatchReplay& batches) {
  // What the lock waits for is the last round and the sync of every page the
  // rounds dirtied since the copy was last synced. So the rounds go on until
  // both are short: first at the writers' own pace while the rounds shrink,
  // then with the writers paced (lock.hpp), syncing the copy between rounds.
  // A sync write-protects the copy's pages again, and the round after it pays
  // a page fault for each page it touches (13-60 us measured here, against
  // 13 us a put): unpaced, a busy writer kept pace with those rounds and the
  // lock then waited for hundreds of milliseconds.
  // Bytes of records applied since the copy was last synced: the sync in the
  // lock writes their index and record pages (~500 pages here).
  constexpr std::uint64_t kSyncedTail = 16 * 1024;
  constexpr int kMaxSyncs = 6;
  std::optional<std::uint64_t> unsynced = rounds(source, fresh, end, epoch, batches, {});
  if (!unsynced) return false;
  struct Pacing {
    detail::LockFile& lock;
    ~Pacing() { lock.stop_pacing(); }
  } pacing{*lock_};
  for (int syncs = 0; syncs < kMaxSyncs; ++syncs) {
    // A sync takes as long as it has pages to write, and the writers append
    // meanwhile what the next sync writes: each time round, writes are spaced
    // out further, 40 us apart at first (~25,000 a second), then 80, ...
    const std::chrono::microseconds gap = std::chrono::microseconds(40) * (1 << syncs);
    const std::optional<std::uint64_t> bytes = rounds(source, fresh, end, epoch, batches, gap);
    if (!bytes) return false;
    *unsynced += *bytes;
    if (*unsynced <= kSyncedTail) break;
    lock_->pace_writes(gap, kPacingSpan);  // a sync may take a while: it gets a span of its own
    fresh.sync_all();
    detail::crash_point("compact.synced");
    unsynced = 0;
  }
  return true;
}

std::optional<std::uint64_t> Store::Impl::rounds(DataFile& source, DataFile& fresh, detail::RecordsEnd& end,
                                                 std::uint64_t epoch, detail::BatchReplay& batches,
                                                 std::chrono::microseconds pace) {
  // Each round applies what writers appended during the one before, from the
  // source's own mapping with no lock held (records never change once
  // written), until a round is short. Unpaced, also until the rounds stop
  // shrinking: a busy writer may append as fast as a round applies. Paced
  // (`pace` apart, lock.hpp), the writers are slowed down while they last.
  constexpr int kMaxRounds = 16;
  // About a hundred small records: what the lock may wait to apply.
  constexpr std::uint64_t kShortTail = 16 * 1024;
  std::uint64_t total = 0;
  std::uint64_t before = UINT64_MAX;
  for (int round = 0; round < kMaxRounds; ++round) {
    detail::RecordsEnd now;
    {
      ReadSection r(*this);
      if (lock_->file_epoch() != epoch) return std::nullopt;
      source.adopt_size();  // map what the writers grew meanwhile
      now = source.chunks().end();
    }
    const bool paced = pace.count() > 0;
    if (paced) lock_->pace_writes(pace, kPacingSpan);
    const std::uint64_t bytes = catch_up(source, fresh, end, &now, batches);
    end = now;
    total += bytes;
    detail::crash_point("compact.round");
    if (bytes <= kShortTail || (!paced && bytes > before / 4 * 3)) break;
    before = bytes;
  }
  return total;
}

std::uint64_t Store::Impl::catch_up(const DataFile& source, DataFile& fresh, const detail::RecordsEnd& from,
                                    const detail::RecordsEnd* until, detail::BatchReplay& batches) {
  // With batch semantics: a batch counts only once its last record is there
  // (its records may straddle two rounds).
  std::uint64_t bytes = 0;
  source.chunks().scan_since(from, until, [&](const detail::RecordView& r) {
    bytes += r.size;
    batches.feed(r, [&](const detail::RecordView& c) { fresh.copy_in(c); });
  });
  return bytes;
}

}  // namespace kvstore
