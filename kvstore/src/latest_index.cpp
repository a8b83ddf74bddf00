#include "latest_index.hpp"

#include "format.hpp"
#include "hash_index.hpp"

namespace kvstore::detail {

LatestIndex::LatestIndex(std::uint64_t expected, RecordAt record_at, std::uint64_t file_size)
    : record_at_(std::move(record_at)), visited_(file_size / kRecordAlign + 1, false) {
  std::uint64_t n = 1024;
  while (n < expected * 2) n *= 2;
  memory_ = AnonymousMemory(n * sizeof(Slot));
  slot_count_ = n;
}

std::uint64_t LatestIndex::find_slot(std::uint64_t hash, std::string_view key) const {
  // Bounded: rehash() keeps the table at most half full.
  const std::uint64_t mask = slot_count_ - 1;
  for (std::uint64_t i = hash & mask;; i = (i + 1) & mask) {
    const Slot& e = slots()[i];
    if (e.offset == 0 || (e.hash == hash && record_at_(e.offset & ~kErased).key == key)) return i;
  }
}

void LatestIndex::count(const RecordView& r, int sign) noexcept {
  if (r.type != RecordType::put) return;
  const auto s = static_cast<std::uint64_t>(sign);  // wraps for -1: unsigned arithmetic subtracts
  live_keys_ += s;
  live_key_bytes_ += s * r.key.size();
  live_value_bytes_ += s * r.value.size();
  live_record_bytes_ += s * r.size;
}

void LatestIndex::note(std::uint64_t hash, const RecordView& r) {
  __builtin_prefetch(&slots()[hash & (slot_count_ - 1)], 1);
  if (pending_count_ == kLookahead) {
    const Pending& oldest = pending_[pending_first_];
    apply(oldest.hash, oldest.record);
    pending_first_ = (pending_first_ + 1) % kLookahead;
    --pending_count_;
  }
  pending_[(pending_first_ + pending_count_) % kLookahead] = Pending{hash, r};
  ++pending_count_;
}

void LatestIndex::finish() {
  for (; pending_count_ > 0; --pending_count_) {
    apply(pending_[pending_first_].hash, pending_[pending_first_].record);
    pending_first_ = (pending_first_ + 1) % kLookahead;
  }
}

void LatestIndex::apply(std::uint64_t hash, const RecordView& r) {
  if ((used_ + 1) * 2 > slot_count_) rehash();
  Slot& e = slots()[find_slot(hash, r.key)];
  if (e.offset == 0) {
    e.hash = hash;
    ++used_;
  } else {
    count(record_at_(e.offset & ~kErased), -1);  // the older record: just read by find_slot
  }
  count(r, +1);
  e.offset = r.offset | (r.type == RecordType::put ? 0 : kErased);
}

std::uint64_t LatestIndex::find_live(std::uint64_t hash, std::string_view key) const {
  const Slot& e = slots()[find_slot(hash, key)];
  return (e.offset & kErased) != 0 ? 0 : e.offset;
}

void LatestIndex::rehash() {
  AnonymousMemory old = std::move(memory_);
  const HashIndex from(reinterpret_cast<Slot*>(old.data()), slot_count_);  // NOLINT: the memory holds Slots
  slot_count_ *= 2;
  memory_ = AnonymousMemory(slot_count_ * sizeof(Slot));
  from.rehash_into(HashIndex(slots(), slot_count_));
}

void LatestIndex::mark_visited(std::uint64_t offset) {
  if (offset / kRecordAlign >= visited_.size()) visited_.resize(offset / kRecordAlign + 1, false);
  visited_[offset / kRecordAlign] = true;
}

bool LatestIndex::visited(std::uint64_t offset) const noexcept {
  return offset % kRecordAlign == 0 && offset / kRecordAlign < visited_.size() && visited_[offset / kRecordAlign];
}

}  // namespace kvstore::detail
