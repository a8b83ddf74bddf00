// Types that live inside the mapped segment. The only file that names
// offset_ptr and the Boost segment manager: another process maps the file at
// another address, so nothing here may hold a raw pointer.
#pragma once

#include <atomic>
#include <boost/interprocess/indexes/iset_index.hpp>
#include <boost/interprocess/managed_external_buffer.hpp>
#include <boost/interprocess/mem_algo/rbtree_best_fit.hpp>
#include <boost/interprocess/offset_ptr.hpp>
#include <boost/interprocess/sync/mutex_family.hpp>
#include <cstdint>
#include <new>

namespace kvstore::detail {

namespace bip = boost::interprocess;

// null_mutex_family: every mutation happens under our own robust writer lock;
// Boost's default internal mutex is not robust and deadlocks after a kill.
using MemoryAlgorithm = bip::rbtree_best_fit<bip::null_mutex_family, bip::offset_ptr<void>>;
using SegmentBuffer = bip::basic_managed_external_buffer<char, MemoryAlgorithm, bip::iset_index>;
using SegmentManager = SegmentBuffer::segment_manager;

// FORMAT.md "Index". One slot of the open-addressing hash index (linear
// probing, backward-shift deletion, no tombstones). offset == 0: empty.
struct Slot {
  std::uint64_t hash;    // key_hash() of the key: most mismatches never touch the record
  std::uint64_t offset;  // file offset of the live record for the key
};

inline constexpr std::uint64_t kChunkMagic = 0x4b4e5548435356ULL;  // "VSCHUNK"
inline constexpr std::uint64_t kRootMagic = 0x544f4f5253564bULL;   // "KVSROOT"

// FORMAT.md "Chunks". Records are appended to chunks in order; chunks form a
// list in the order they were made, so scanning the list replays history.
struct ChunkHeader {
  std::uint64_t magic;
  std::uint64_t capacity;             // bytes of record space after this header
  std::atomic<std::uint64_t> used;    // bytes of complete records; grows only
  bip::offset_ptr<ChunkHeader> next;  // the chunk made after this one
  std::uint64_t ordinal;              // +1 along the list; the first is past 0 once reclaimed
};

// Lays out a chunk header at `at` (a fresh block of sizeof(ChunkHeader) +
// capacity bytes), not yet linked to the list.
inline ChunkHeader* init_chunk(void* at, std::uint64_t capacity, std::uint64_t used, std::uint64_t ordinal) {
  auto* c = new (at) ChunkHeader{};
  c->magic = kChunkMagic;
  c->capacity = capacity;
  c->used.store(used, std::memory_order_relaxed);
  c->next = nullptr;
  c->ordinal = ordinal;
  return c;
}

// FORMAT.md "Root". The index, the chunk list and the counters.
struct Root {
  std::uint64_t magic;
  bip::offset_ptr<Slot> table;
  std::uint64_t slot_count;  // a power of two
  std::uint64_t keys;
  std::uint64_t key_bytes;
  std::uint64_t value_bytes;
  std::uint64_t record_bytes;  // all records in chunks
  std::uint64_t dead_bytes;    // records no longer reachable from the index
  bip::offset_ptr<ChunkHeader> first_chunk;
  bip::offset_ptr<ChunkHeader> last_chunk;
  std::uint64_t chunks;
};

// FORMAT.md "Index growth" (format version 3): right after the Root, in its
// block. The index doubles a step per write instead of all at once: a table
// of twice the slots (`shadow`) is zeroed, then the table's slots are copied
// into it in order, and every change to a slot already copied is made in the
// shadow too; once all are copied, the shadow becomes the table.
struct IndexGrowth {
  bip::offset_ptr<Slot> shadow;  // null: no doubling under way
  // 0 .. 2n: shadow slots zeroed so far; 2n .. 3n: 2n + table slots copied
  // (n = Root::slot_count).
  std::uint64_t progress;
};

}  // namespace kvstore::detail
