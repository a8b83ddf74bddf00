// Key -> its latest record, built while replaying history (recovery,
// compaction, check). Open addressing over (hash, offset) pairs in private
// huge-page memory, keys compared in the file being replayed: leaner than a
// node-based map, and at a million keys most of the replay's time is one
// cache miss per record here, which 4 KiB pages would double with a TLB miss.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "layout.hpp"
#include "mapping.hpp"
#include "record.hpp"

namespace kvstore::detail {

class LatestIndex {
 public:
  using RecordAt = std::function<RecordView(std::uint64_t)>;
  // Sized for `expected` keys (it grows past them); `file_size` bounds the offsets.
  LatestIndex(std::uint64_t expected, RecordAt record_at, std::uint64_t file_size);

  // `r`, found at r.offset, is the newest record of its key so far. Applied a
  // few notes later, so that the slot it needs is prefetched meanwhile (the
  // replay is bound by these cache misses otherwise): call finish() after the
  // last note, before any query.
  void note(std::uint64_t hash, const RecordView& r);
  void finish();
  // Offset of the key's latest record if that is a put, else 0.
  [[nodiscard]] std::uint64_t find_live(std::uint64_t hash, std::string_view key) const;
  // fn(hash, offset) for every key whose latest record is a put, in no order.
  template <class F>
  void for_each_live(F&& fn) const {
    for (std::uint64_t i = 0; i < slot_count_; ++i) {
      const Slot& e = slots()[i];
      if (e.offset != 0 && (e.offset & kErased) == 0) fn(e.hash, e.offset);
    }
  }
  // Totals over the live keys: the counters the store's root keeps.
  [[nodiscard]] std::uint64_t live_keys() const noexcept { return live_keys_; }
  [[nodiscard]] std::uint64_t live_key_bytes() const noexcept { return live_key_bytes_; }
  [[nodiscard]] std::uint64_t live_value_bytes() const noexcept { return live_value_bytes_; }
  [[nodiscard]] std::uint64_t live_record_bytes() const noexcept { return live_record_bytes_; }

  // Which offsets of the file held a record the replay saw (one bit per 8 bytes).
  void mark_visited(std::uint64_t offset);
  [[nodiscard]] bool visited(std::uint64_t offset) const noexcept;

 private:
  // Records are 8-byte aligned: the low bit of an offset is free to say
  // "the latest record is an erase" without reading the record again.
  static constexpr std::uint64_t kErased = 1;
  // The same slots as the store's index (hash, offset; offset 0: empty), so
  // that HashIndex rehashes them.
  [[nodiscard]] Slot* slots() const noexcept { return reinterpret_cast<Slot*>(memory_.data()); }  // NOLINT
  [[nodiscard]] std::uint64_t find_slot(std::uint64_t hash, std::string_view key) const;
  void count(const RecordView& r, int sign) noexcept;
  void apply(std::uint64_t hash, const RecordView& r);
  void rehash();

  struct Pending {
    std::uint64_t hash;
    RecordView record;
  };
  static constexpr std::size_t kLookahead = 16;
  std::array<Pending, kLookahead> pending_{};
  std::size_t pending_first_ = 0;
  std::size_t pending_count_ = 0;

  RecordAt record_at_;
  AnonymousMemory memory_;
  std::uint64_t slot_count_ = 0;
  std::uint64_t used_ = 0;
  std::vector<bool> visited_;
  std::uint64_t live_keys_ = 0;
  std::uint64_t live_key_bytes_ = 0;
  std::uint64_t live_value_bytes_ = 0;
  std::uint64_t live_record_bytes_ = 0;
};

}  // namespace kvstore::detail
