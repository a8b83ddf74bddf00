#include "allocator_check.hpp"

#include <algorithm>
#include <boost/version.hpp>
#include <cstring>
#include <limits>

#include "format.hpp"
#include "layout.hpp"
#include "record.hpp"

namespace kvstore::detail {
namespace {

// ---- Boost 1.81 rbtree_best_fit<null_mutex_family, offset_ptr<void>>, x86-64.
// Its members are private, so the layout is restated here; the unit test
// (tests/unit/allocator_check_test.cpp) proves it against Boost's own
// counters, and these asserts stop a build whose sizes differ.
static_assert(BOOST_VERSION / 100 == 1081, "allocator_check.cpp restates Boost 1.81's rbtree_best_fit layout");
static_assert(sizeof(void*) == 8 && sizeof(bip::offset_ptr<void>) == 8);

constexpr std::uint64_t kAlign = MemoryAlgorithm::Alignment;  // block sizes count in these units
static_assert(kAlign == 16);

// The allocator's header at the start of the segment: the free tree (node
// count, then its header node: parent = root, left = leftmost, right =
// rightmost), then extra header bytes, allocated bytes and segment size.
constexpr std::uint64_t kAlgoBytes = sizeof(MemoryAlgorithm);
static_assert(kAlgoBytes == 56);
constexpr std::uint64_t kTreeCountAt = 0;
constexpr std::uint64_t kTreeHeaderAt = 8;
constexpr std::uint64_t kExtraHdrAt = 32;
constexpr std::uint64_t kAllocatedAt = 40;
constexpr std::uint64_t kSizeAt = 48;
// The segment manager (named-object indexes) follows the allocator header:
// the allocator is told to keep these bytes for it.
constexpr std::uint64_t kExtraHdrBytes = sizeof(SegmentManager) - sizeof(MemoryAlgorithm);
constexpr std::uint64_t kFirstBlockAt = round_up(kAlgoBytes + kExtraHdrBytes, kAlign);

// A block: prev_size (8 bytes, meaningful only when the previous block is
// free), then one word of size (62 bits, in kAlign units, header included),
// "previous block allocated" (bit 62) and "allocated" (bit 63). A free
// block's tree node (parent, left, right offset_ptrs) follows.
constexpr std::uint64_t kSizeMask = (std::uint64_t{1} << 62) - 1;
constexpr std::uint64_t kPrevAllocatedBit = std::uint64_t{1} << 62;
constexpr std::uint64_t kAllocatedBit = std::uint64_t{1} << 63;
constexpr std::uint64_t kAllocatedCtrlBytes = 16;  // user data starts here in an allocated block
static_assert(MemoryAlgorithm::PayloadPerAllocation == kAllocatedCtrlBytes - 8);
// An allocated block's user area also covers the next block's prev_size.
constexpr std::uint64_t kUsableByNext = 8;
constexpr std::uint64_t kNodeAt = 16;
constexpr std::uint64_t kParentAt = 0;  // within a node
constexpr std::uint64_t kLeftAt = 8;
constexpr std::uint64_t kRightAt = 16;
constexpr std::uint64_t kMinBlockUnits = round_up(kNodeAt + 3 * sizeof(bip::offset_ptr<void>), kAlign) / kAlign;
constexpr std::uint64_t kEndBlockUnits = 1;
// offset_ptr: the distance from the pointer's own address; 1 means null. The
// free tree keeps a node's colour in bit 1 of its parent link (0 red, 1 black).
constexpr std::int64_t kNullOffset = 1;
constexpr std::uint64_t kColourBit = 2;

struct Block {
  std::uint64_t prev_size;
  std::uint64_t size;  // kAlign units
  bool prev_allocated;
  bool allocated;
};

struct Link {
  bool null;
  std::uint64_t target;  // file offset (meaningless unless checked)
  bool black;            // parent links only
};

class Reader {
 public:
  explicit Reader(const ByteSource& bytes) : bytes_(bytes) {}
  // Callers keep `at + 8 <= mapped`.
  [[nodiscard]] std::uint64_t u64(std::uint64_t at) const {
    std::uint64_t v = 0;
    bytes_.read(at, &v, sizeof v);
    return v;
  }
  [[nodiscard]] Block block(std::uint64_t at) const {
    const std::uint64_t word = u64(at + 8);
    return {u64(at), word & kSizeMask, (word & kPrevAllocatedBit) != 0, (word & kAllocatedBit) != 0};
  }
  [[nodiscard]] Link link(std::uint64_t field, bool parent) const {
    auto raw = static_cast<std::int64_t>(u64(field));
    bool black = false;
    if (parent) {
      black = (static_cast<std::uint64_t>(raw) & kColourBit) != 0;
      raw = static_cast<std::int64_t>(static_cast<std::uint64_t>(raw) & ~kColourBit);
    }
    if (raw == kNullOffset) return {true, 0, black};
    return {false, field + static_cast<std::uint64_t>(raw), black};  // wraps harmlessly: checked by the caller
  }

 private:
  const ByteSource& bytes_;
};

std::string at(std::uint64_t offset) { return hex_offset(offset); }

// Whether `l` links to the tree node of one of the free blocks (sorted by offset).
bool is_free_node(const Link& l, const std::vector<std::uint64_t>& free_blocks) {
  return !l.null && l.target >= kNodeAt &&
         std::binary_search(free_blocks.begin(), free_blocks.end(), l.target - kNodeAt);
}

// Depth first from the root, every node checked against its parent: the
// links agree, the sizes keep the order the tree searches by, and the
// red-black rules hold (Boost's rebalancing relies on them to find the nodes
// it rotates). Every free block must be reached.
std::string walk_free_tree(const Reader& r, std::uint64_t header, std::uint64_t root,
                           const std::vector<std::uint64_t>& free_blocks) {
  struct Visit {
    std::uint64_t node;
    std::uint64_t parent;
    std::uint64_t lo;
    std::uint64_t hi;
    std::uint64_t blacks_above;
    bool parent_red;
  };
  std::vector<Visit> stack{{root, header, 0, std::numeric_limits<std::uint64_t>::max(), 0, false}};
  std::uint64_t visited = 0;
  std::uint64_t black_height = 0;
  bool black_height_known = false;
  while (!stack.empty()) {
    const Visit v = stack.back();
    stack.pop_back();
    ++visited;  // each node is reached at most once (one parent, left != right): bounded
    const Link up = r.link(v.node + kParentAt, true);
    if (up.null || up.target != v.parent) {
      return "allocator: free block at " + at(v.node - kNodeAt) + " does not link back to its parent";
    }
    if (v.parent == header && !up.black) return "allocator: free tree root is red";
    if (v.parent_red && !up.black) return "allocator: free block at " + at(v.node - kNodeAt) + " is red under a red parent";
    const std::uint64_t size = r.block(v.node - kNodeAt).size;
    if (size < v.lo || size > v.hi) {
      return "allocator: free block at " + at(v.node - kNodeAt) + " is out of order in the free tree";
    }
    const std::uint64_t blacks = v.blacks_above + (up.black ? 1 : 0);
    const Link left = r.link(v.node + kLeftAt, false);
    const Link right = r.link(v.node + kRightAt, false);
    if (!left.null && !right.null && left.target == right.target) {
      return "allocator: free block at " + at(v.node - kNodeAt) + " has the same left and right child";
    }
    for (const auto& [child, is_left] : {std::pair{left, true}, std::pair{right, false}}) {
      if (child.null) {
        if (!black_height_known) {
          black_height = blacks;
          black_height_known = true;
        } else if (blacks != black_height) {
          return "allocator: free tree is unbalanced (black heights differ)";
        }
        continue;
      }
      if (!is_free_node(child, free_blocks)) {
        return "allocator: free block at " + at(v.node - kNodeAt) + " links to " + at(child.target) +
               ", which is not a free block";
      }
      stack.push_back({child.target, v.node, is_left ? v.lo : size, is_left ? size : v.hi, blacks, !up.black});
    }
  }
  if (visited != free_blocks.size()) {
    return "allocator: " + std::to_string(free_blocks.size() - visited) + " free blocks are missing from the free tree";
  }
  return {};
}

// The free tree against the free blocks the walk found (sorted by offset).
std::string check_free_tree(const Reader& r, const std::vector<std::uint64_t>& free_blocks) {
  const std::uint64_t seg = kHeaderSize;
  const std::uint64_t header = seg + kTreeHeaderAt;
  const std::uint64_t count = r.u64(seg + kTreeCountAt);
  if (count != free_blocks.size()) {
    return "allocator: free tree counts " + std::to_string(count) + " blocks, the segment has " +
           std::to_string(free_blocks.size()) + " free";
  }
  const Link root = r.link(header + kParentAt, true);
  const Link leftmost = r.link(header + kLeftAt, false);
  const Link rightmost = r.link(header + kRightAt, false);
  if (root.black) return "allocator: free tree header has the wrong colour";
  if (free_blocks.empty()) {
    if (!root.null || leftmost.null || leftmost.target != header || rightmost.null || rightmost.target != header) {
      return "allocator: free tree is not empty, but no block is free";
    }
    return {};
  }
  if (!is_free_node(root, free_blocks)) return "allocator: free tree root is not a free block";
  if (std::string problem = walk_free_tree(r, header, root.target, free_blocks); !problem.empty()) return problem;
  // The ends the tree keeps for quick access.
  auto extreme = [&](std::uint64_t side) {
    std::uint64_t n = root.target;
    for (Link l = r.link(n + side, false); !l.null; l = r.link(n + side, false)) n = l.target;
    return n;  // bounded: the tree was just proven to be a tree
  };
  if (leftmost.null || leftmost.target != extreme(kLeftAt) || rightmost.null || rightmost.target != extreme(kRightAt)) {
    return "allocator: free tree's leftmost or rightmost link is wrong";
  }
  return {};
}

}  // namespace

std::string check_allocator(const char* base, std::uint64_t mapped, std::vector<HeldBlock> held) {
  return check_allocator(MappedBytes(base, mapped), std::move(held));
}

std::string check_allocator(const ByteSource& bytes, std::vector<HeldBlock> held) {
  const Reader r(bytes);
  const std::uint64_t mapped = bytes.size();
  const std::uint64_t seg = kHeaderSize;
  if (mapped < seg + kFirstBlockAt) return "allocator: segment too small for its header";
  const std::uint64_t extra = r.u64(seg + kExtraHdrAt);
  if (extra != kExtraHdrBytes) return "allocator: header damaged (extra header bytes " + std::to_string(extra) + ")";
  const std::uint64_t size = r.u64(seg + kSizeAt);
  if (size > mapped - seg || size < kFirstBlockAt + (kMinBlockUnits + kEndBlockUnits) * kAlign) {
    return "allocator: segment size " + std::to_string(size) + " does not fit a file of " + std::to_string(mapped) +
           " bytes";
  }
  // Where Boost puts the first and the end block (priv_first_block, priv_end_block).
  const std::uint64_t first = seg + kFirstBlockAt;
  const std::uint64_t end = first + ((size - kFirstBlockAt) / kAlign - kEndBlockUnits) * kAlign;
  const std::uint64_t span = (end - first) / kAlign;
  const Block end_block = r.block(end);
  const Block first_block = r.block(first);
  if (!end_block.allocated || end_block.size != span) return "allocator: end block at " + at(end) + " is damaged";
  if (!first_block.prev_allocated || first_block.prev_size != span) {
    return "allocator: first block at " + at(first) + " does not point at the end block";
  }

  std::sort(held.begin(), held.end(), [](const HeldBlock& a, const HeldBlock& b) { return a.offset < b.offset; });
  std::size_t h = 0;
  std::vector<std::uint64_t> free_blocks;
  std::uint64_t allocated = 0;
  // Every block is at least kMinBlockUnits long: at most span / 3 steps.
  for (std::uint64_t b = first; b != end;) {
    const Block k = r.block(b);
    if (k.size < kMinBlockUnits || k.size > (end - b) / kAlign) {
      return "allocator: block at " + at(b) + " has an impossible size (" + std::to_string(k.size * kAlign) + " bytes)";
    }
    const std::uint64_t next = b + k.size * kAlign;
    const Block n = r.block(next);
    if (n.prev_allocated != k.allocated) {
      return "allocator: block at " + at(next) + " disagrees with the block before it about whether that is free";
    }
    if (k.allocated) {
      allocated += k.size * kAlign;
    } else {
      if (n.prev_size != k.size) {
        return "allocator: free block at " + at(b) + " and the block after it disagree about its size";
      }
      free_blocks.push_back(b);
    }
    for (std::size_t in_block = 0; h < held.size() && held[h].offset < next; ++h, ++in_block) {
      const std::uint64_t room = k.size * kAlign - kAllocatedCtrlBytes + kUsableByNext;
      if (!k.allocated || held[h].offset != b + kAllocatedCtrlBytes || held[h].bytes > room) {
        return std::string("allocator: the ") + held[h].what + " at " + at(held[h].offset) +
               " is not an allocated block of the segment";
      }
      if (in_block != 0) {  // two of ours in one block: writing one overwrites the other
        return std::string("allocator: the ") + held[h].what + " and the " + held[h - 1].what + " at " +
               at(held[h].offset) + " share one block";
      }
    }
    b = next;
  }
  if (h < held.size()) {
    return std::string("allocator: the ") + held[h].what + " at " + at(held[h].offset) + " lies outside the segment";
  }
  if (r.u64(seg + kAllocatedAt) != allocated) {
    return "allocator: counts " + std::to_string(r.u64(seg + kAllocatedAt)) + " bytes allocated, its blocks hold " +
           std::to_string(allocated);
  }
  return check_free_tree(r, free_blocks);
}

}  // namespace kvstore::detail
