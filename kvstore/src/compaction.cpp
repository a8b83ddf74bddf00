// Store::Impl::compact: the copy without the lock, the catch-up and the
// publish under it.
#include <optional>
#include <string>
#include <vector>

#include "kvstore/error.hpp"

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
  // written, so readers and writers go on meanwhile. Then, under the write
  // lock, the records appended since are applied to the copy (the catch-up)
  // and the copy is published: writers wait only for that.
  std::optional<DataFile> source;
  DataFile::RecordsEnd end;
  std::uint64_t epoch = 0;
  {
    ReadSection r(*this);
    if (!file_->writable()) throw Error(Errc::read_only, path_ + ": file is not writable");
    // Under the read lock the path holds the file we map: replacing it takes the write lock.
    source.emplace(DataFile::open(path_, false, options_.max_file_size));
    end = file_->records_end();
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
  WriteSection w(*this);
  if (lock_->file_epoch() != epoch) {
    // Another handle compacted or recovered the store meanwhile: the copy is
    // of a file that is gone. Compact the current one under the lock.
    ::unlink(tmp.c_str());
    fresh = DataFile::rebuild(*file_, file_->read_history(detail::Replay::strict, false), tmp,
                              options_.max_file_size, DataFile::Rebuilt::compaction);
  } else {
    catch_up(fresh, end);
  }
  fresh.set_change_count(lock_->change_count());
  detail::crash_point("compact.caught_up");
  publish(std::move(fresh), tmp);
  cleanup.published = true;
}

void Store::Impl::catch_up(DataFile& fresh, const DataFile::RecordsEnd& end) {
  // The records appended after the copy's end, replayed with batch semantics
  // (a batch counts only once its last record is there).
  std::vector<detail::RecordView> pending;
  file_->scan_since(end, [&](const detail::RecordView& r) {
    if ((r.flags & detail::kInBatch) == 0 || (r.flags & detail::kBatchBegin) != 0) pending.clear();
    if ((r.flags & detail::kInBatch) == 0) {
      if (r.type == detail::RecordType::put) {
        (void)fresh.put(r.key, r.value, 0);
      } else {
        (void)fresh.erase(r.key, 0);
      }
      return;
    }
    pending.push_back(r);
    if ((r.flags & detail::kBatchEnd) != 0) {
      std::vector<DataFile::Op> ops;
      ops.reserve(pending.size());
      for (const detail::RecordView& p : pending)
        ops.push_back({p.key, p.value, p.type == detail::RecordType::erase});
      fresh.apply(ops);
      pending.clear();
    }
  });
}

}  // namespace kvstore
