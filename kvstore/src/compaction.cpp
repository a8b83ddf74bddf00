// Store::Impl::compact: the copy without the lock, the catch-up and the
// publish under it.
#include <optional>
#include <string>
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
  detail::RecordsEnd end;
  std::uint64_t epoch = 0;
  {
    ReadSection r(*this);
    if (!file_->writable()) throw Error(Errc::read_only, path_ + ": file is not writable");
    // Under the read lock the path holds the file we map: replacing it takes the write lock.
    source.emplace(DataFile::open(path_, false, options_.max_file_size));
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
  const CatchUp rounds = catch_up_unlocked(*source, fresh, end, epoch, batches);
  const bool current = rounds != CatchUp::file_replaced;
  // Synced now, the copy's pages are clean again, and the last catch-up pays
  // a page fault for each record it indexes (~60 us measured here): worth it
  // for the short tail of rounds that converged, not for the long one left
  // by a writer that kept pace (then the writers wait for a larger sync
  // instead: 30-500 ms measured, against seconds of faults).
  if (rounds == CatchUp::converged) fresh.sync_all();
  // Writers wait from here; readers go on reading the file as it is (the
  // catch-up writes only the copy) until the publish.
  TwoStepWriteSection w(*this);
  if (w.owner_died() || !current || lock_->file_epoch() != epoch) {
    // A writer died, or another handle compacted or recovered the store
    // meanwhile (the copy is of a file that is gone): compact the current
    // file under the whole lock.
    w.exclude_readers();
    ::unlink(tmp.c_str());
    fresh = DataFile::rebuild(*file_, file_->read_history(detail::Replay::strict, false), tmp,
                              options_.max_file_size, DataFile::Rebuilt::compaction);
  } else {
    source->adopt_size();
    detail::crash_point("compact.catching_up");
    (void)catch_up(*source, fresh, end, nullptr, batches);
    fresh.sync_all();  // before readers wait: the publish then has nothing left to sync
    w.exclude_readers();
  }
  fresh.set_change_count(lock_->change_count());
  detail::crash_point("compact.caught_up");
  publish(std::move(fresh), tmp);
  cleanup.published = true;
}

Store::Impl::CatchUp Store::Impl::catch_up_unlocked(DataFile& source, DataFile& fresh, detail::RecordsEnd& end,
                                                   std::uint64_t epoch, detail::BatchReplay& batches) {
  // Each round applies what writers appended during the one before, from the
  // source's own mapping with no lock held (records never change once
  // written), for as long as the rounds shrink: a busy writer may append as
  // fast as a round applies, and then only the lock stops it.
  constexpr int kMaxRounds = 16;
  // About a hundred small records. Each may cost a page fault in the copy,
  // whose pages the sync before the lock has just cleaned: ~60 us apiece
  // measured here (ext4 page_mkwrite in a paravirtualised guest).
  constexpr std::uint64_t kShortTail = 16 * 1024;
  CatchUp result = CatchUp::kept_pace;
  std::uint64_t before = UINT64_MAX;
  for (int round = 0; round < kMaxRounds; ++round) {
    detail::RecordsEnd now;
    {
      ReadSection r(*this);
      if (lock_->file_epoch() != epoch) return CatchUp::file_replaced;
      source.adopt_size();  // map what the writers grew meanwhile
      now = source.chunks().end();
    }
    const std::uint64_t bytes = catch_up(source, fresh, end, &now, batches);
    end = now;
    detail::crash_point("compact.round");
    if (bytes <= kShortTail) {
      result = CatchUp::converged;
      break;
    }
    if (bytes > before / 4 * 3) break;
    before = bytes;
  }
  return result;
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
