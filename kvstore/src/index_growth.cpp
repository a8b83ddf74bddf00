// The index doubling a step per write (format version 3, layout.hpp
// IndexGrowth; FORMAT.md "Index growth"). Doubling all at once stalled the
// put that crossed the load limit: 55-69 ms at 1M keys here, most of it the
// first touch of every page of the new table. Spread over the writes between
// a load of 5/8 and 3/4, each pays a few microseconds.
#include <cstring>

#include "crash_point.hpp"
#include "data_file.hpp"

namespace kvstore::detail {
namespace {

// Work per write: the window from a load of 5/8 to 3/4 is n/8 new keys;
// zeroing 2n shadow slots takes n/32 writes at this pace and copying n slots
// n/16, so a stream of single puts is through with a third to spare.
constexpr std::uint64_t kZeroSlots = 64;  // 1 KiB
constexpr std::uint64_t kCopySlots = 16;

}  // namespace

IndexGrowth* DataFile::growth() const noexcept {
  if (header().format_version < 3) return nullptr;
  return reinterpret_cast<IndexGrowth*>(map_.base() + root_offset_ + sizeof(Root));  // NOLINT: root_bytes() checked
}

std::uint64_t DataFile::slots_copied() const noexcept {
  const IndexGrowth* g = growth();
  if (g == nullptr || g->shadow == nullptr) return 0;
  const std::uint64_t n = root().slot_count;
  return g->progress > 2 * n ? g->progress - 2 * n : 0;
}

HashIndex DataFile::shadow() const {
  const std::uint64_t n2 = 2 * root().slot_count;
  Slot* s = resolve(growth()->shadow, n2 * sizeof(Slot));
  if (s == nullptr) throw Error(Errc::corrupt, path_ + ": the growing index is missing", root_offset_);
  return HashIndex(s, n2);
}

void DataFile::grow_index_a_step(std::uint64_t keys_after) {
  const std::uint64_t n = root().slot_count;
  if (growth()->shadow == nullptr) {
    if (keys_after * 8 <= n * 5) return;
    auto* s = static_cast<Slot*>(allocate(2 * n * sizeof(Slot)));  // may move the mapping
    const AllocatorPhase phase(*this);  // a writer that dies in here leaves a full rebuild
    growth()->progress = 0;
    growth()->shadow = s;
  }
  IndexGrowth& g = *growth();
  const HashIndex to = shadow();
  if (g.progress < 2 * n) {
    const std::uint64_t k = std::min(kZeroSlots, 2 * n - g.progress);
    std::memset(&to[g.progress], 0, k * sizeof(Slot));
    g.progress += k;
    return;
  }
  const HashIndex from = index();
  for (std::uint64_t k = 0; k < kCopySlots && g.progress < 3 * n; ++k) {
    const Slot& s = from[g.progress - 2 * n];
    if (s.offset != 0) to.insert_new(s.hash, s.offset);
    ++g.progress;
    crash_point("grow_index.copied");
  }
  if (g.progress < 3 * n) return;
  // Every slot copied, every change since mirrored: the shadow is the index.
  const AllocatorPhase phase(*this);
  Root& r = root();
  Slot* old = &from[0];
  r.table = &to[0];
  r.slot_count = 2 * n;
  g.shadow = nullptr;
  g.progress = 0;
  crash_point("grow_index.switched");
  segment()->deallocate(old);
}

void DataFile::drop_index_growth() {
  IndexGrowth* g = growth();
  if (g == nullptr || g->shadow == nullptr) return;
  Slot* s = &shadow()[0];
  const AllocatorPhase phase(*this);
  g->shadow = nullptr;
  g->progress = 0;
  segment()->deallocate(s);
}

void DataFile::mirror_slot(std::uint64_t i, std::uint64_t hash, std::uint64_t was, std::uint64_t now) {
  if (i >= slots_copied()) return;  // not copied yet: the copy will take it as it is then
  const HashIndex to = shadow();
  if (was == 0) {
    to.insert_new(hash, now);
    return;
  }
  const std::uint64_t k = to.find_offset(hash, was);
  if (k == HashIndex::kFull) {
    // The shadow lost track (a damaged file): start the doubling over.
    drop_index_growth();
    return;
  }
  if (now == 0) {
    to.remove(k);
  } else {
    to[k].offset = now;
  }
}

void DataFile::mirror_move(std::uint64_t from, std::uint64_t to, const Slot& s) {
  // A backward shift moved `s` from slot `from` to `to`: it belongs in the
  // shadow exactly when its slot is a copied one.
  const std::uint64_t copied = slots_copied();
  const bool was_in = from < copied;
  const bool is_in = to < copied;
  if (was_in == is_in) return;
  if (is_in) {
    mirror_slot(to, s.hash, 0, s.offset);
  } else {
    mirror_slot(from, s.hash, s.offset, 0);
  }
}

}  // namespace kvstore::detail
