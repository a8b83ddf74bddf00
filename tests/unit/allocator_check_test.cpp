// The allocator walk (allocator_check.hpp) restates Boost's private layout:
// these tests prove it against Boost itself (every state a random history of
// allocations, frees and grows leaves is accepted, with Boost's own counters
// agreeing) and show that each kind of damage that would send Boost's
// allocate, deallocate or grow astray is caught.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <memory>
#include <new>
#include <random>

#include "allocator_check.hpp"
#include "format.hpp"
#include "layout.hpp"

namespace {

using kvstore::detail::check_allocator;
using kvstore::detail::HeldBlock;
using kvstore::detail::kHeaderSize;
namespace bip = kvstore::detail::bip;

// A file image: header page, then a segment, in page-aligned memory with room to grow.
class Image {
 public:
  Image(std::uint64_t segment, std::uint64_t room) : room_(room) {
    mem_.reset(static_cast<char*>(::operator new(room, std::align_val_t{4096})));
    std::memset(mem_.get(), 0, room);
    kvstore::detail::SegmentBuffer buffer(bip::create_only, mem_.get() + kHeaderSize, segment);
    sm_ = buffer.get_segment_manager();
  }
  [[nodiscard]] char* base() const { return mem_.get(); }
  [[nodiscard]] kvstore::detail::SegmentManager* sm() const { return sm_; }
  [[nodiscard]] std::uint64_t mapped() const { return kHeaderSize + sm_->get_size(); }
  [[nodiscard]] std::uint64_t room() const { return room_; }
  [[nodiscard]] std::uint64_t at(const void* p) const { return static_cast<std::uint64_t>(static_cast<const char*>(p) - mem_.get()); }
  [[nodiscard]] std::string check(std::vector<HeldBlock> held = {}) const {
    return check_allocator(mem_.get(), mapped(), std::move(held));
  }
  std::uint64_t& word(std::uint64_t offset) { return *reinterpret_cast<std::uint64_t*>(mem_.get() + offset); }  // NOLINT

 private:
  struct Free {
    void operator()(char* p) const { ::operator delete(p, std::align_val_t{4096}); }
  };
  std::unique_ptr<char, Free> mem_;
  kvstore::detail::SegmentManager* sm_ = nullptr;
  std::uint64_t room_;
};

TEST(AllocatorCheck, AcceptsEveryStateBoostLeaves) {
  Image img(64 * 1024, 4 * 1024 * 1024);
  std::mt19937_64 rng(11);
  std::map<std::uint64_t, std::uint64_t> live;  // offset -> bytes asked for
  for (int step = 0; step < 3000; ++step) {
    const auto what = static_cast<unsigned>(rng() % 10);
    if (what < 5) {
      const std::uint64_t bytes = 1 + rng() % (what == 0 ? 20000 : 300);
      if (void* p = img.sm()->allocate(bytes, std::nothrow)) live[img.at(p)] = bytes;
    } else if (what < 9 && !live.empty()) {
      auto it = live.begin();
      std::advance(it, static_cast<long>(rng() % live.size()));
      img.sm()->deallocate(img.base() + it->first);
      live.erase(it);
    } else if (img.mapped() + 64 * 1024 <= img.room()) {
      img.sm()->grow(4096 * (1 + rng() % 16));
    }
    std::vector<HeldBlock> held;
    for (const auto& [off, bytes] : live) held.push_back({off, bytes, "block"});
    ASSERT_EQ(img.check(held), "") << "step " << step;
  }
  // Boost's counters are the ones the walk read.
  std::uint64_t asked = 0;
  for (const auto& [off, bytes] : live) asked += bytes;
  EXPECT_LE(asked, img.sm()->get_size() - img.sm()->get_free_memory());
}

// A segment with several free blocks (a free tree of more than one node).
class Damaged : public ::testing::Test {
 protected:
  void SetUp() override {
    for (int i = 0; i < 12; ++i) blocks_.push_back(img_.sm()->allocate(64 + 96 * static_cast<std::uint64_t>(i)));
    for (int i = 0; i < 12; i += 2) img_.sm()->deallocate(blocks_[static_cast<std::size_t>(i)]);
    ASSERT_EQ(img_.check(held()), "");
  }
  [[nodiscard]] std::vector<HeldBlock> held() const {
    std::vector<HeldBlock> h;
    for (std::size_t i = 1; i < blocks_.size(); i += 2) h.push_back({img_.at(blocks_[i]), 64 + 96 * i, "block"});
    return h;
  }
  // Block header of allocation i: prev_size at -16, size word at -8; a free
  // block's tree node (parent, left, right) where the user data was.
  std::uint64_t& size_word(std::size_t i) { return img_.word(img_.at(blocks_[i]) - 8); }
  std::uint64_t& link(std::size_t i, int which) { return img_.word(img_.at(blocks_[i]) + 8 * static_cast<std::uint64_t>(which)); }
  std::uint64_t& header(std::uint64_t field) { return img_.word(kHeaderSize + field); }

  Image img_{64 * 1024, 64 * 1024 + kHeaderSize};
  std::vector<void*> blocks_;
};

TEST_F(Damaged, BlockSizeZero) {
  size_word(3) &= ~((std::uint64_t{1} << 62) - 1);
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, BlockSizeLonger) {
  size_word(3) += 1;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, BlockSizeHuge) {
  size_word(5) |= (std::uint64_t{1} << 40);
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, AllocatedBitCleared) {
  size_word(3) &= ~(std::uint64_t{1} << 63);
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, PrevAllocatedBitFlipped) {
  size_word(3) ^= std::uint64_t{1} << 62;  // the block before it is free
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, FreeBlockPrevSizeOfSuccessor) {
  img_.word(img_.at(blocks_[1]) - 16) += 1;  // prev_size after free block 0
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, SegmentSizeLargerThanFile) {
  header(48) += 1 << 20;
  EXPECT_NE(check_allocator(img_.base(), img_.room(), held()), "");
}
TEST_F(Damaged, SegmentSizeShorter) {
  header(48) -= 4096;  // the end block is no longer where the size says
  EXPECT_NE(check_allocator(img_.base(), img_.room(), held()), "");
}
TEST_F(Damaged, ExtraHeaderBytes) {
  header(32) += 16;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, AllocatedCounter) {
  header(40) += 16;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, FreeTreeCount) {
  header(0) += 1;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, FreeTreeRootNull) {
  header(8) = 1;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, FreeTreeLeftmost) {
  header(16) += 16;
  EXPECT_NE(img_.check(held()), "");
}
TEST_F(Damaged, TreeLinkToAllocatedBlock) {
  // Every free node's child links, pointed at allocated block 1's data.
  for (std::size_t i = 0; i < blocks_.size(); i += 2) {
    for (int which : {1, 2}) {
      const std::uint64_t saved = link(i, which);
      link(i, which) = img_.at(blocks_[1]) - (img_.at(blocks_[i]) + 8 * static_cast<std::uint64_t>(which));
      EXPECT_NE(img_.check(held()), "") << "node " << i << " link " << which;
      link(i, which) = saved;
    }
  }
  EXPECT_EQ(img_.check(held()), "");
}
TEST_F(Damaged, TreeLinkOutOfTheFile) {
  for (std::size_t i = 0; i < blocks_.size(); i += 2) {
    for (int which : {0, 1, 2}) {
      const std::uint64_t saved = link(i, which);
      link(i, which) = std::uint64_t{1} << 50;
      EXPECT_NE(img_.check(held()), "") << "node " << i << " link " << which;
      link(i, which) = saved;
    }
  }
}
TEST_F(Damaged, TreeColourFlipped) {
  for (std::size_t i = 0; i < blocks_.size(); i += 2) {
    link(i, 0) ^= 2;
    EXPECT_NE(img_.check(held()), "") << "node " << i;
    link(i, 0) ^= 2;
  }
}
TEST_F(Damaged, HeldBlockNotAtABlock) {
  std::vector<HeldBlock> h = held();
  h[1].offset += 16;
  EXPECT_NE(img_.check(h), "");
}
TEST_F(Damaged, HeldBlockLargerThanItsBlock) {
  std::vector<HeldBlock> h = held();
  h[1].bytes += 4096;
  EXPECT_NE(img_.check(h), "");
}
TEST_F(Damaged, TwoHeldBlocksInOne) {
  std::vector<HeldBlock> h = held();
  h.push_back({h[2].offset, 8, "other"});
  EXPECT_NE(img_.check(h), "");
}
TEST_F(Damaged, HeldBlockInFreeSpace) {
  std::vector<HeldBlock> h = held();
  h.push_back({img_.at(blocks_[0]), 8, "freed"});
  EXPECT_NE(img_.check(h), "");
}

}  // namespace
