// Reader slots (lock.hpp, "Readers"): claiming one on attach, a writer's wait
// for every live slot to drain, and counting the live ones. Whether a slot's
// owner lives is asked of the kernel (its OFD lock byte), never of the slot.
#include <fcntl.h>
#include <sched.h>

#include <cerrno>
#include <optional>
#include <thread>

#include "crash_point.hpp"
#include "kvstore/error.hpp"
#include "lock.hpp"
#include "lock_futex.hpp"
#include "lock_ofd.hpp"

namespace kvstore::detail {

void LockFile::claim_slot() {
  for (std::uint32_t i = 0; i < kReaderSlots; ++i) {
    if (ofd_lock(fd_.get(), F_WRLCK, kSlotByteBase + static_cast<off_t>(i))) {
      slot_index_ = i;
      slot_ = &shared_->slots[i];
      break;
    }
  }
  if (slot_ == nullptr) {
    throw Error(Errc::busy, path_ + ": all " + std::to_string(kReaderSlots) +
                                " reader slots are taken (too many open handles)");
  }
  crash_point("attach.slot_claimed");
  // A dead previous owner may have left a count behind; the slot is ours now.
  slot_->readers.store(0, std::memory_order_seq_cst);
  std::uint32_t high = shared_->slot_high.load();
  while (high < slot_index_ + 1 && !shared_->slot_high.compare_exchange_weak(high, slot_index_ + 1)) {
  }
}

void LockFile::exclude_readers() {
  shared_->writer_active.store(1, std::memory_order_seq_cst);
  try {
    wait_for_readers();
  } catch (...) {
    unlock_write();
    throw;
  }
}

bool LockFile::slot_owner_alive(std::uint32_t i) const noexcept {
  // When the kernel cannot tell, the owner is taken for alive.
  return ofd_held_elsewhere(fd_.get(), kSlotByteBase + static_cast<off_t>(i));
}

void LockFile::wait_for_readers() {
  // Read the clock only once a wait is slow: most writes find no reader inside.
  std::optional<std::chrono::steady_clock::time_point> deadline;
  const std::uint32_t high = shared_->slot_high.load(std::memory_order_seq_cst);
  for (std::uint32_t i = 0; i < high; ++i) {
    ReaderSlot& s = shared_->slots[i];
    for (std::uint32_t spins = 0; s.readers.load(std::memory_order_seq_cst) != 0; ++spins) {
      if (spins < 256) {
        cpu_relax();
        continue;
      }
      // Slow: a reader is long inside, or dead. Our own slot's owner is us, and
      // the kernel would not report our own lock, so never skip it.
      if (i != slot_index_ && (spins & 255) == 0 && !slot_owner_alive(i)) break;
      const auto now = std::chrono::steady_clock::now();
      if (!deadline) deadline = now + timeout_;
      if (now >= *deadline) {
        throw Error(Errc::busy, path_ + ": readers did not leave within " +
                                    std::to_string(timeout_.count()) + " ms");
      }
      if (spins < 2048) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
      }
    }
  }
}

std::uint32_t LockFile::attached() const noexcept {
  std::uint32_t n = 1;  // this handle
  if (access_ == Access::none) return n;
  const std::uint32_t high = shared_->slot_high.load();
  for (std::uint32_t i = 0; i < high; ++i) {
    if (i != slot_index_ && slot_owner_alive(i)) ++n;
  }
  return n;
}

}  // namespace kvstore::detail
