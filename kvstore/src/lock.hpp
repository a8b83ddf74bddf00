// The store's cross-process reader/writer lock, kept in the lock file F.lock.
//
// Writers: one robust, process-shared pthread mutex. A writer killed while it
// holds it is reported by the kernel (EOWNERDEAD) to the next locker, which
// then recovers the store: nobody waits on a dead process. The mutex is not
// fair (a thread that unlocks can take it again before the woken waiter runs:
// measured, a get waited 1.5 s behind three looping writers whose longest hold
// was 80 ms). So a locker that finds it taken queues for a ticket; the head of
// the queue competes with newcomers for the mutex, and if it loses for over
// 10 ms, newcomers must queue too until the queue moves quickly again (the
// starvation mode of Go's sync.Mutex). Strict turns for everyone would cost a
// context switch per write: 18x fewer puts from three threads, and with a 1 ms
// threshold the 8-writer compaction test took 83 s instead of 4 s. A queue
// that stops moving with the mutex free (its head died waiting) is jumped, so
// a dead waiter delays the others once, briefly.
// Readers: one slot per open handle, on its own cache line, holding the number
// of the handle's threads inside a read. Readers write only their own slot, so
// reads from many processes share no written cache line. A writer announces
// itself (writer_active), then waits for every live slot to drain. Whether a
// slot's owner is alive is proven by an OFD fcntl lock on one byte of the lock
// file, which the kernel drops when the owner dies (the way LMDB finds stale
// readers). Attach and detach are serialized by an OFD lock on byte 0, and
// every attached handle holds a shared OFD lock on byte 1, so "am I the first
// or the last" has a kernel-checked answer.
//
// The lock file holds coordination state only, never data: the first handle
// to attach when nobody else is attached rebuilds it from scratch (in place,
// keeping `write_seq`: see below).
//
// Slot-less readers. A process that may read the store but not write its lock
// file (another user's store, mode 0644; a read-only file system) opens it
// O_RDONLY and maps it PROT_READ, when the store is opened read_only. It can
// take no slot, so writers cannot wait for it. Instead every holder of the
// write lock makes `write_seq` odd when it takes the lock and even again when
// it releases it (a seqlock): every change to the mapped data file happens
// under the write lock, so a reader that saw the same even value before and
// after its read saw no change at all. Such a reader copies what it read,
// bounds-checks every offset it follows and verifies record checksums (a torn
// read must never crash), and retries when the word moved. A writer killed
// with the lock leaves the word odd: the reader tells that apart from a slow
// writer (the robust mutex's owner field, or no handle attached at all) and
// reports busy ("needs recovery by a writer") instead of waiting forever.
// Without any lock file (none exists and none can be created) there is
// nothing to read: Access::none, see Store::Impl for what then guards a read.
//
// The implementation, one concept a file: lock.cpp (attach, the first
// attacher's rebuild, detach), lock_writer_queue.cpp (the writer mutex, its
// ticket queue, taking and releasing the write lock), lock_reader_slots.cpp
// (claiming a slot, waiting for slots to drain), lock_change.cpp (change
// notification), lock_read_only.cpp (slot-less access and the seqlock), on
// lock_ofd (the OFD byte locks) and lock_futex.hpp (waiting on a shared word).
#pragma once

#include <pthread.h>
#include <sys/stat.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "mapping.hpp"

namespace kvstore::detail {

inline constexpr std::uint32_t kReaderSlots = 1024;

struct alignas(64) ReaderSlot {
  std::atomic<std::uint32_t> readers;  // threads of the owning handle inside a read
};

struct LockShared {
  std::uint64_t magic;
  std::uint32_t version;
  std::uint32_t slot_count;
  alignas(64) pthread_mutex_t writer;
  // The ticket queue in front of `writer` (same cache line: a locker needs both).
  std::atomic<std::uint32_t> next_ticket;  // the ticket the next locker takes
  std::atomic<std::uint32_t> serving;      // tickets up to this one may take the mutex
  std::atomic<std::uint32_t> starving;     // 1: newcomers queue too (see above)
  alignas(64) std::atomic<std::uint32_t> writer_active;
  // Bumped whenever the data file at the path is replaced (compact, recovery):
  // a handle whose file generation differs reopens the path.
  std::atomic<std::uint64_t> file_epoch;
  // Write pacing (lock_pacing.cpp), in CLOCK_MONOTONIC nanoseconds: while
  // `paced_until` lies ahead, writes begin `paced_gap` apart, and
  // `paced_next` is the earliest moment the next one may begin. A deadline, not a flag: a
  // compaction that dies pacing stops pacing within a second. On the line
  // every writer reads anyway.
  std::atomic<std::int64_t> paced_until;
  std::atomic<std::int64_t> paced_next;
  std::atomic<std::int64_t> paced_gap;
  alignas(64) std::atomic<std::uint32_t> slot_high;  // slots in use lie below this
  // Store::change_count and wait_for_change. The count is written only under
  // the writer mutex; `change_seq` (its low bits) is the futex word waiters
  // sleep on, and `change_waiters` spares the committer a wake-up syscall when
  // nobody sleeps. A waiter killed while asleep leaves the count one too high:
  // that costs the committers a wasted FUTEX_WAKE, never a missed one.
  alignas(64) std::atomic<std::uint64_t> change_count;
  std::atomic<std::uint32_t> change_seq;
  std::atomic<std::uint32_t> change_waiters;
  // The seqlock word of slot-less readers (see above); on the change counter's
  // line, which a committing writer writes anyway. Odd while a writer holds
  // the lock. Monotonic over the file's life: a rebuild of the lock file keeps it.
  std::atomic<std::uint64_t> write_seq;
  ReaderSlot slots[kReaderSlots];
};

class LockFile {
 public:
  // How this handle uses the lock file.
  enum class Access {
    full,       // attached, with a reader slot: the normal case
    read_only,  // mapped PROT_READ: reads are optimistic, validated by write_seq
    none,       // no lock file can be read: reads rely on the data file alone
  };
  // Attaches to (creating if needed) `lock_path`. Leaves the attach lock held:
  // call finish_attach() once the data file is open. With `read_only_fallback`,
  // a lock file that cannot be opened for writing (EACCES, EPERM, EROFS) is
  // used read-only (Access::read_only), or not at all if it does not exist or
  // is not a compatible one that a live handle set up (Access::none).
  // Throws Error(io, busy, version_mismatch).
  LockFile(const std::string& lock_path, std::chrono::milliseconds timeout, bool read_only_fallback = false);
  LockFile(const LockFile&) = delete;
  LockFile& operator=(const LockFile&) = delete;
  ~LockFile();

  [[nodiscard]] Access access() const noexcept { return access_; }
  // Whether this handle holds no reader slot (reads must be optimistic).
  [[nodiscard]] bool slotless() const noexcept { return access_ != Access::full; }
  // Whether no other handle was attached when this one attached.
  [[nodiscard]] bool first() const noexcept { return first_; }
  void finish_attach() noexcept;
  // Takes the attach lock again and reports whether this is the last handle.
  // The caller then tidies up and destroys the LockFile.
  bool begin_detach() noexcept;

  // --- reads
  // Enters a read if no writer is active; false means: call wait_and_enter_read().
  [[nodiscard]] bool try_enter_read() noexcept {
    slot_->readers.fetch_add(1, std::memory_order_seq_cst);
    if (shared_->writer_active.load(std::memory_order_seq_cst) == 0) return true;
    slot_->readers.fetch_sub(1, std::memory_order_release);
    return false;
  }
  void exit_read() noexcept { slot_->readers.fetch_sub(1, std::memory_order_release); }

  // --- writes
  // (entered_read: only inside lock_mutex(true), never returned by the public calls)
  enum class WriteResult { ok, owner_died, entered_read };
  // Takes the writer mutex and waits until no reader is inside. owner_died:
  // the previous holder died holding it; the caller must check the store.
  // Throws Error(busy) after `timeout`.
  WriteResult lock_write();
  void unlock_write() noexcept;
  // The write lock in two steps, for a change prepared while readers go on
  // (a compaction's catch-up, which writes only its new file): lock_writers()
  // takes the writer mutex alone; exclude_readers_too() then makes it the
  // write lock, released by unlock_write(). Without that second step,
  // unlock_writers() releases it.
  WriteResult lock_writers() { return lock_mutex(); }
  void exclude_readers_too() {
    seq_enter();
    exclude_readers();
  }
  void unlock_writers() noexcept { pthread_mutex_unlock(&shared_->writer); }
  // After try_enter_read() failed: waits for its turn behind the writers
  // queued before it and enters the read (ok); at the head of the queue it
  // enters at once beside a holder that admits readers (lock_writers).
  // Returns owner_died if it found the writer dead: the caller then holds the
  // write lock (as after lock_write), is not inside a read, and must recover
  // and unlock_write(). Throws Error(busy).
  WriteResult wait_and_enter_read();

  // --- optimistic reads (slot-less handles; also valid, but unneeded, for others)
  // Waits until no writer holds the lock and returns the (even) sequence
  // number to validate against. Throws Error(busy) at `deadline`, or at once
  // if the writer that holds it died (the store needs recovery by a writer).
  // Access::none: always 0.
  [[nodiscard]] std::uint64_t read_begin(std::chrono::steady_clock::time_point deadline) const;
  // Whether no writer took the lock since read_begin() returned `seq`: what
  // was read in between is one committed state.
  [[nodiscard]] bool read_unchanged(std::uint64_t seq) const noexcept {
    std::atomic_thread_fence(std::memory_order_acquire);  // the data loads before this load
    return shared_->write_seq.load(std::memory_order_relaxed) == seq;
  }

  [[nodiscard]] std::uint64_t file_epoch() const noexcept {
    return shared_->file_epoch.load(std::memory_order_acquire);
  }
  void bump_file_epoch() noexcept { shared_->file_epoch.fetch_add(1, std::memory_order_acq_rel); }
  // --- change notification (Store::change_count, Store::wait_for_change)
  [[nodiscard]] std::uint64_t change_count() const noexcept {
    if (access_ == Access::read_only) return settled_change_count();
    return shared_->change_count.load(std::memory_order_acquire);
  }
  // The first handle to attach carries the count over from the data file.
  void set_change_count(std::uint64_t count) noexcept;
  // With the write lock held: counts one committed change, wakes every waiter
  // in every process, and returns the new count.
  std::uint64_t publish_change() noexcept;
  // Sleeps (a futex on the shared mapping, no polling) until the count differs
  // from `seen` or `timeout` passes; returns the count then.
  [[nodiscard]] std::uint64_t wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const noexcept;
  // --- write pacing (lock_pacing.cpp)
  // A compaction catching up on the writers' appends, which it applies more
  // slowly than they are made once its copy is synced (a page fault for each
  // page it touches again), slows the writers of every handle down to one
  // write per `gap` between them for `how_long` (renew it; at most a second),
  // as an LSM store's compaction slows its writers down.
  void pace_writes(std::chrono::microseconds gap, std::chrono::milliseconds how_long) noexcept;
  void stop_pacing() noexcept;
  // Called by every write before it takes the lock: returns at once unless
  // writes are paced, else when this write's turn comes.
  void wait_for_pace() const noexcept;
  // Whether writes are paced right now.
  [[nodiscard]] bool writes_paced() const noexcept;

  // --- record pins (lock_pin.cpp)
  // Held by whoever reads records without the lock (a compaction's copy, a
  // for_each): meanwhile no writer frees a chunk (reclaim), whose bytes the
  // allocator could hand to new records under the reader. A shared OFD lock
  // on a descriptor of its own, so that the writers of this very handle see
  // it too; the kernel drops it when its holder dies.
  class RecordPin {
   public:
    RecordPin() = default;
    explicit RecordPin(Fd fd) noexcept : fd_(std::move(fd)) {}

   private:
    Fd fd_;
  };
  // Without a readable lock file the pin holds nothing (no writer can be
  // attached: it would have made the lock file).
  [[nodiscard]] RecordPin pin_records() const;
  // Whether another descriptor holds a pin (a syscall: reclaiming asks only as
  // it begins a chunk and before it frees one).
  [[nodiscard]] bool records_pinned() const noexcept;
  // Which lock file this is (device, inode): two handles of one store share it.
  [[nodiscard]] std::pair<std::uint64_t, std::uint64_t> identity() const noexcept { return identity_; }

  // Whether any handle with a slot is attached (holds the lock on the attach
  // byte); Access::none: false.
  [[nodiscard]] bool anyone_attached() const noexcept;
  // Handles attached right now, over all processes (counted from OFD locks).
  [[nodiscard]] std::uint32_t attached() const noexcept;

 private:
  // --- attach (lock.cpp)
  // Checks the file's size and notes its identity; a first attacher truncates
  // a file of the wrong size to the right one. Returns whether the first
  // attacher may rebuild the file in place (it had the right size).
  bool size_for_attach();
  // The first attacher's fresh start: zeroes the state (unless the file was
  // just truncated), sets up the robust mutex, and writes the magic last.
  void rebuild(bool in_place);
  // Whether the mapped file is one this build can share (magic, version, slot count).
  [[nodiscard]] static bool compatible(const LockShared& shared) noexcept;
  [[noreturn]] void throw_incompatible() const;  // Error(version_mismatch)
  // The (device, inode) of the file `st` describes.
  [[nodiscard]] static std::pair<std::uint64_t, std::uint64_t> identity_of(const struct stat& st) noexcept;

  // --- the write lock (lock_writer_queue.cpp)
  // With `for_read` (wait_and_enter_read), may instead enter a read beside a
  // holder that admits readers: entered_read, the mutex not taken.
  WriteResult lock_mutex(bool for_read = false);
  // Waits until `ticket` may take the mutex. Returns true if it took the
  // mutex itself, jumping a stalled queue (result in `r`).
  bool wait_for_turn(std::uint32_t ticket, std::chrono::steady_clock::time_point deadline, WriteResult& r);
  void serve_from(std::uint32_t ticket) noexcept;
  [[noreturn]] void throw_busy() const;
  // The holder of the writer mutex marks its tenure in write_seq.
  void seq_enter() noexcept {
    const std::uint64_t s = shared_->write_seq.load(std::memory_order_relaxed);
    // Odd already only if the previous holder died with the lock: move on anyway,
    // so that a reader that began before that death sees a change.
    shared_->write_seq.store((s + 1) | 1, std::memory_order_relaxed);
    std::atomic_thread_fence(std::memory_order_release);  // before any change to the data
  }
  void seq_exit() noexcept {
    shared_->write_seq.store(shared_->write_seq.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  // --- reader slots (lock_reader_slots.cpp)
  // Takes the first free reader slot (its OFD byte) and clears what a dead
  // previous owner left in it. Throws Error(busy) when all are taken.
  void claim_slot();
  // With the mutex held: announce the writer and wait until no reader is inside.
  void exclude_readers();
  void wait_for_readers();
  [[nodiscard]] bool slot_owner_alive(std::uint32_t i) const noexcept;
  // --- change notification (lock_change.cpp)
  // Slot-less handles' wait_for_change: committers cannot know of them, so poll.
  [[nodiscard]] std::uint64_t poll_for_change(std::uint64_t seen,
                                              std::chrono::steady_clock::time_point deadline) const noexcept;
  // --- slot-less access (lock_read_only.cpp)
  // Read-only access: sets up Access::read_only or Access::none.
  void open_read_only(std::chrono::steady_clock::time_point deadline);
  // Whether a handle is attaching or detaching right now (holds the attach
  // byte): a first attacher then rebuilds the file, which zeroes the change
  // count until it carries the count over from the data file.
  [[nodiscard]] bool attach_in_progress() const noexcept;
  // Access::read_only: the change count, waiting (up to the timeout) while an
  // attach is in progress, so that a rebuild's transient 0 is never reported.
  [[nodiscard]] std::uint64_t settled_change_count() const noexcept;
  // With write_seq odd at `odd_seq`: whether its writer is dead (see above).
  [[nodiscard]] bool writer_died(std::uint64_t odd_seq) const noexcept;

  std::string path_;
  std::chrono::milliseconds timeout_;
  Fd fd_;
  Mapping map_;
  LockShared* shared_ = nullptr;
  // Access::none: a private, zeroed stand-in, so that the read-side calls work.
  std::unique_ptr<LockShared> private_;
  Access access_ = Access::full;
  ReaderSlot* slot_ = nullptr;
  std::uint32_t slot_index_ = 0;
  bool first_ = false;
  bool attach_held_ = false;
  std::pair<std::uint64_t, std::uint64_t> identity_{};
};

}  // namespace kvstore::detail
