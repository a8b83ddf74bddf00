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
    out_.set_stream_begin(spans_.empty() ? 0 : spans_.front().begin);
  }

  void copy_live_records();
  DataFile finish();

 private:
  // Where the records of one chunk of the new file go.
  struct Span {
    std::uint64_t begin;  // file offset of the chunk's first record
    std::uint64_t bytes;  // its records, which fill it
  };

  [[nodiscard]] std::vector<std::uint64_t> live_bitmap() const;
  template <class F>
  void for_each_live(const F& f) const;
  [[nodiscard]] std::vector<std::uint64_t> chunk_sizes() const;
  DataFile lay_out(const std::string& path);
  void copy(const RecordView& r, std::uint64_t hash, const HashIndex& index);

  const DataFile& source_;
  const LatestIndex& latest_;
  std::uint64_t max_size_;
  Rebuilt why_;
  std::uint64_t live_bytes_ = latest_.live_record_bytes();
  // The live records' offsets in the source, one bit per 8 bytes: the copy
  // reads the source in file order, with no sort.
  std::vector<std::uint64_t> live_ = live_bitmap();
  std::vector<Span> spans_;  // in file order (none: no live record)
  std::size_t span_ = 0;     // the chunk being filled
  DataFile image_;
  FileWriter out_;
};

std::vector<std::uint64_t> DataFile::Rebuild::live_bitmap() const {
  std::vector<std::uint64_t> live((source_.map_.size() / kRecordAlign + 63) / 64);
  latest_.for_each_live([&](std::uint64_t, std::uint64_t offset) {
    live[offset / kRecordAlign / 64] |= std::uint64_t{1} << (offset / kRecordAlign % 64);
  });
  return live;
}

template <class F>
void DataFile::Rebuild::for_each_live(const F& f) const {
  for (std::uint64_t w = 0; w < live_.size(); ++w) {
    for (std::uint64_t bits = live_[w]; bits != 0; bits &= bits - 1) {
      f(source_.record_at((w * 64 + static_cast<std::uint64_t>(std::countr_zero(bits))) * kRecordAlign));
    }
  }
}

std::vector<std::uint64_t> DataFile::Rebuild::chunk_sizes() const {
  // Chunks no larger than the writers' own: reclaiming frees a chunk only
  // once all of it is moved, and one chunk of a whole 1M-key store (136 MB)
  // kept the file at 3x the live bytes through the churn after a compact.
  // Each chunk is filled exactly, in file order: a record larger than the
  // limit gets a chunk of its own.
  std::vector<std::uint64_t> sizes;
  std::uint64_t filling = 0;
  for_each_live([&](const RecordView& r) {
    if (filling > 0 && filling + r.size > kMaxChunkBytes) {
      sizes.push_back(filling);
      filling = 0;
    }
    filling += r.size;
  });
  if (filling > 0) sizes.push_back(filling);
  return sizes;
}

DataFile DataFile::Rebuild::lay_out(const std::string& path) {
  const std::uint64_t live_keys = latest_.live_keys();
  const std::vector<std::uint64_t> sizes = chunk_sizes();
  // Each chunk: its header and the allocator's (a few words).
  const std::uint64_t estimate = kHeaderSize + 64 * 1024 + HashIndex::slots_for(live_keys) * sizeof(Slot) +
                                 sizes.size() * (sizeof(ChunkHeader) + 64) + live_bytes_;
  // The records stream straight to the new file; the rest (header, allocator,
  // index) is built in private memory and written after them (file_writer.hpp).
  DataFile d = create_image(path, std::max(estimate, kMinFileSize), std::max(max_size_, estimate + kPageSize));
  // Same seed: the hashes computed while replaying index the new file as they are.
  d.seed_ = source_.seed_;
  d.header().hash_seed = source_.seed_;
  d.header().header_crc = crc32c(0, &d.header(), kHeaderCrcBytes);
  d.reserve_slots(live_keys);
  // Chunks filled exactly: nothing is left over to shrink away. Allocated
  // from a fresh segment one after the other, they lie in file order, so the
  // records stream out in one pass (the bytes between two chunks' records,
  // the next chunk's header among them, are final once all are allocated).
  ChunkHeader* prev = nullptr;
  for (std::uint64_t i = 0; i < sizes.size(); ++i) {
    ChunkHeader* c = init_chunk(d.allocate(sizeof(ChunkHeader) + sizes[i]), sizes[i], sizes[i], i);
    if (prev == nullptr) {
      d.root().first_chunk = c;
    } else {
      prev->next = c;
    }
    prev = c;
    const auto begin = static_cast<std::uint64_t>(reinterpret_cast<char*>(c + 1) - d.map_.base());  // NOLINT
    if (!spans_.empty() && begin < spans_.back().begin + spans_.back().bytes) {
      throw Error(Errc::corrupt, path + ": the rebuilt file's chunks are out of order");  // cannot happen
    }
    spans_.push_back({begin, sizes[i]});
  }
  d.root().last_chunk = prev;
  d.root().chunks = sizes.size();
  return d;
}

void DataFile::Rebuild::copy(const RecordView& r, std::uint64_t hash, const HashIndex& index) {
  if (out_.stream_position() == spans_[span_].begin + spans_[span_].bytes && span_ + 1 < spans_.size()) {
    // The next chunk: the stream goes on through its header.
    const std::uint64_t from = out_.stream_position();
    ++span_;
    out_.append(image_.map_.base() + from, spans_[span_].begin - from);
  }
  const std::uint64_t offset = out_.stream_position();
  if (r.size > spans_[span_].begin + spans_[span_].bytes - offset) {
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
  const HashIndex index = image_.index();
  const std::uint64_t mask = index.count() - 1;
  // Records in groups, each record's slot prefetched before the group is
  // copied: the inserts are random, the copy sequential.
  constexpr std::size_t kGroup = 32;
  std::array<std::pair<RecordView, std::uint64_t>, kGroup> group;
  std::size_t grouped = 0;
  for_each_live([&](const RecordView& r) {
    const std::uint64_t hash = key_hash(r.key, image_.seed_);
    __builtin_prefetch(&index[hash & mask], 1);
    group[grouped++] = {r, hash};
    if (grouped == kGroup) {
      for (const auto& [rec, h] : group) copy(rec, h, index);
      grouped = 0;
    }
  });
  for (std::size_t g = 0; g < grouped; ++g) copy(group[g].first, group[g].second, index);
  if (!spans_.empty() &&
      (span_ + 1 != spans_.size() || out_.stream_position() != spans_.back().begin + spans_.back().bytes)) {
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
  // the end of its last chunk, and clean.
  set_durable_mark(to, spans_.size(), spans_.empty() ? 0 : spans_.back().bytes);
  seal_clean(to);
  d.max_size_ = max_size_;
  // Everything but the records, which are in the file already.
  const std::uint64_t gap_begin = spans_.empty() ? new_size : spans_.front().begin;
  const std::uint64_t gap_end = spans_.empty() ? new_size : spans_.back().begin + spans_.back().bytes;
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
