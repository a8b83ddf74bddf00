// The whole-file rebuild behind compaction, full recovery and repair: the
// live records of a source file, found by replaying it, streamed into a
// fresh file of the smallest size (file_writer.hpp).
#include "data_file.hpp"

#include <array>
#include <bit>
#include <cstring>
#include <ctime>
#include <new>
#include <vector>

#include "crash_point.hpp"
#include "crc32c.hpp"
#include "file_writer.hpp"
#include "hash.hpp"
#include "kvstore/error.hpp"
#include "latest_index.hpp"

namespace kvstore::detail {

// One rebuild, as its steps: lay out the new file's image, stream the live
// records into the file while indexing them, then write the rest and sync.
class DataFile::Rebuild {
 public:
  Rebuild(const DataFile& source, const LatestIndex& latest, const std::string& path, std::uint64_t max_size,
          Rebuilt why)
      : source_(source), latest_(latest), max_size_(max_size), why_(why), image_(lay_out(path)),
        out_(path, image_.map_.size()) {
    out_.set_stream_begin(records_begin_);
  }

  void copy_live_records();
  DataFile finish();

 private:
  DataFile lay_out(const std::string& path);
  void copy(const RecordView& r, std::uint64_t hash, const HashIndex& index);

  const DataFile& source_;
  const LatestIndex& latest_;
  std::uint64_t max_size_;
  Rebuilt why_;
  std::uint64_t live_bytes_ = latest_.live_record_bytes();
  std::uint64_t records_begin_ = 0;  // where the one chunk's records go (0: no live record)
  DataFile image_;
  FileWriter out_;
};

DataFile DataFile::Rebuild::lay_out(const std::string& path) {
  const std::uint64_t live_keys = latest_.live_keys();
  const std::uint64_t estimate = kHeaderSize + 64 * 1024 + HashIndex::slots_for(live_keys) * sizeof(Slot) +
                                 sizeof(ChunkHeader) + live_bytes_;
  // The records stream straight to the new file; the rest (header, allocator,
  // index) is built in private memory and written after them (file_writer.hpp).
  DataFile d = create_image(path, std::max(estimate, kMinFileSize), std::max(max_size_, estimate + kPageSize));
  // Same seed: the hashes computed while replaying index the new file as they are.
  d.seed_ = source_.seed_;
  d.header().hash_seed = source_.seed_;
  d.header().header_crc = crc32c(0, &d.header(), kHeaderCrcBytes);
  d.reserve_slots(live_keys);
  if (live_bytes_ > 0) {
    // One chunk of exactly the live bytes: nothing is left over to shrink away.
    ChunkHeader* c = init_chunk(d.allocate(sizeof(ChunkHeader) + live_bytes_), live_bytes_, live_bytes_, 0);
    d.root().first_chunk = c;
    d.root().last_chunk = c;
    d.root().chunks = 1;
    records_begin_ = static_cast<std::uint64_t>(reinterpret_cast<char*>(c + 1) - d.map_.base());  // NOLINT
  }
  return d;
}

void DataFile::Rebuild::copy(const RecordView& r, std::uint64_t hash, const HashIndex& index) {
  const std::uint64_t offset = out_.stream_position();
  if (r.size > records_begin_ + live_bytes_ - offset) {
    throw Error(Errc::corrupt, source_.path_ + ": live records outgrow their count");  // cannot happen
  }
  if (r.flags == 0) {
    out_.append(source_.map_.base() + r.offset, r.size);  // copied whole, checksum and all
  } else {
    // A batch's flags are dropped (the batch is complete): a new checksum.
    RecordHeader h;
    std::memcpy(&h, source_.map_.base() + r.offset, sizeof h);
    h.flags = 0;
    h.crc = record_crc(h, r.key, r.value);
    static constexpr char kZeros[kRecordAlign] = {};
    out_.append(&h, sizeof h);
    out_.append(r.key.data(), r.key.size());
    out_.append(r.value.data(), r.value.size());
    out_.append(kZeros, r.size - sizeof h - r.key.size() - r.value.size());
  }
  index.insert_new(hash, offset);
  crash_point("rebuild.copying");
}

void DataFile::Rebuild::copy_live_records() {
  // The live records in file order, as a bitmap of their offsets (one bit per
  // 8 bytes): the copy then reads the source sequentially, with no sort.
  std::vector<std::uint64_t> live((source_.map_.size() / kRecordAlign + 63) / 64);
  latest_.for_each_live([&](std::uint64_t, std::uint64_t offset) {
    live[offset / kRecordAlign / 64] |= std::uint64_t{1} << (offset / kRecordAlign % 64);
  });
  const HashIndex index = image_.index();
  const std::uint64_t mask = index.count() - 1;
  // Records in groups, each record's slot prefetched before the group is
  // copied: the inserts are random, the copy sequential.
  constexpr std::size_t kGroup = 32;
  std::array<std::pair<RecordView, std::uint64_t>, kGroup> group;
  std::size_t grouped = 0;
  for (std::uint64_t w = 0; w < live.size(); ++w) {
    for (std::uint64_t bits = live[w]; bits != 0; bits &= bits - 1) {
      const RecordView r = source_.record_at((w * 64 + static_cast<std::uint64_t>(std::countr_zero(bits))) * kRecordAlign);
      const std::uint64_t hash = key_hash(r.key, image_.seed_);
      __builtin_prefetch(&index[hash & mask], 1);
      group[grouped++] = {r, hash};
      if (grouped == kGroup) {
        for (const auto& [rec, h] : group) copy(rec, h, index);
        grouped = 0;
      }
    }
  }
  for (std::size_t g = 0; g < grouped; ++g) copy(group[g].first, group[g].second, index);
  if (out_.stream_position() != records_begin_ + live_bytes_) {
    throw Error(Errc::corrupt, source_.path_ + ": live records fall short of their count");  // cannot happen
  }
}

DataFile DataFile::Rebuild::finish() {
  DataFile& d = image_;
  Root& root = d.root();
  root.keys = latest_.live_keys();
  root.key_bytes = latest_.live_key_bytes();
  root.value_bytes = latest_.live_value_bytes();
  root.record_bytes = live_bytes_;
  // Give back the free tail of the segment. The few bytes between the
  // segment's end and the page boundary stay outside the segment until the
  // next grow() takes them in.
  d.segment()->shrink_to_fit();
  const std::uint64_t new_size =
      round_up(std::max(kHeaderSize + d.segment()->get_size(), kMinValidSize), kPageSize);
  FileHeader& to = d.header();
  const FileHeader& from = source_.header();
  to.file_size.store(new_size);
  to.compactions = from.compactions;
  to.recoveries = from.recoveries;
  to.last_compact_unix = from.last_compact_unix;
  if (why_ == Rebuilt::compaction) {
    ++to.compactions;
    to.last_compact_unix = static_cast<std::uint64_t>(std::time(nullptr));
  } else {
    ++to.recoveries;
  }
  to.change_count = from.change_count;
  to.generation.store(from.generation.load() + 1);
  // The file is written and synced whole before anyone maps it: durable to
  // the end of its one chunk, and clean.
  set_durable_mark(to, live_bytes_ > 0 ? 1 : 0, live_bytes_);
  seal_clean(to);
  d.max_size_ = max_size_;
  // Everything but the records, which are in the file already.
  const std::uint64_t gap_begin = live_bytes_ > 0 ? records_begin_ : new_size;
  const std::uint64_t gap_end = live_bytes_ > 0 ? records_begin_ + live_bytes_ : new_size;
  out_.write(d.map_.base(), gap_begin, 0);
  out_.write(d.map_.base() + gap_end, new_size - gap_end, gap_end);
  d.fd_ = out_.finish(new_size);
  d.mark_open();
  d.map_ = Mapping(d.fd_.get(), new_size, true, d.path_);
  return std::move(d);
}

DataFile DataFile::rebuild(const DataFile& source, const History& history, const std::string& path,
                           std::uint64_t max_size, Rebuilt why) {
  Rebuild r(source, history.latest, path, max_size, why);
  r.copy_live_records();
  return r.finish();
}

}  // namespace kvstore::detail
