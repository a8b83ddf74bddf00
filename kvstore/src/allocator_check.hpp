// A bounded, read-only walk of the segment allocator's bookkeeping, so that a
// file from outside (or one left by an unclean stop) is proven sound before
// Boost's rbtree_best_fit allocates, frees or grows through it. Boost trusts
// every size and link it finds in the segment: a damaged block size or free
// tree link turns its next allocate, deallocate or grow into a wild write.
//
// The walk reads the segment as plain bytes (never as Boost objects) and
// checks, in one pass over the block list:
//   - the allocator header: extra header bytes, segment size within the file;
//   - every block: size at least a minimal block, inside the segment; the
//     blocks tile the segment exactly from the first block to the end block;
//     each block's "previous is allocated" bit agrees with the previous
//     block; a free block's size is repeated in its successor's prev_size;
//     the first/end blocks' distance fields agree;
//   - the allocated-bytes counter equals the sum of the allocated blocks;
//   - the free tree: a red-black tree whose nodes are exactly the free blocks
//     (parent links agree, ordered by size, red nodes have black children,
//     equal black heights, leftmost/rightmost and the node count right);
//   - the blocks the store holds (root, index, chunks) are each the user area
//     of one allocated block, large enough for what the store keeps there.
// Cost: one read per block (through pread at an attach: byte_source.hpp),
// and the store has few blocks (root, index, chunks of up to 1 MiB), so a
// 1M-key store walks about two hundred.
//
// The layout read here is Boost 1.81's rbtree_best_fit with offset_ptr links
// on x86-64; the file's layout fingerprint pins it (FORMAT.md), and the
// static_asserts in allocator_check.cpp stop a build where it differs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "byte_source.hpp"

namespace kvstore::detail {

// A block the store holds: `bytes` at file offset `offset` (what allocate()
// returned), named in messages by `what`.
struct HeldBlock {
  std::uint64_t offset;
  std::uint64_t bytes;
  const char* what;
};

// Walks the allocator of the segment at file offset kHeaderSize in `bytes`.
// Returns an empty string if it is sound, else a sentence naming the first
// thing found wrong. Never writes. Throws Error if the bytes cannot be read.
[[nodiscard]] std::string check_allocator(const ByteSource& bytes, std::vector<HeldBlock> held);
// The same in a mapping of `mapped` bytes at `base`.
[[nodiscard]] std::string check_allocator(const char* base, std::uint64_t mapped, std::vector<HeldBlock> held);

}  // namespace kvstore::detail
