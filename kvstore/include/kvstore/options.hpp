// kvstore::Options: how Store::open behaves.
#pragma once

#include <chrono>
#include <cstdint>

namespace kvstore {

enum class Sync {
  none,    // a put is durable against any process crash (kill -9), not power loss
  always,  // a put returns only after its record is on stable storage (msync/fdatasync)
};

struct Options {
  // Create the file when it does not exist.
  bool create = true;
  // Open without the right to modify; put/erase/compact throw Errc::read_only.
  // Needs only read permission: when the lock file cannot be opened for
  // writing (another user's store, a read-only file system), the handle reads
  // without a reader slot, optimistically, and validates every answer against
  // the writers' sequence word in the lock file (FORMAT.md "Readers without
  // write permission"), so it never sees a half-made change, even while a
  // writer changes, grows or compacts the store. Such a handle cannot recover
  // a store: one left by a dead writer, or unclean from an earlier boot, is
  // busy until a process that may write it opens it. Without any readable
  // lock file, only a store that was closed cleanly can be read. A `view`
  // callback may then run more than once: only its last run's answers count.
  bool read_only = false;
  // Size of a newly created file in bytes (at least 64 KiB; rounded up to 4 KiB).
  std::uint64_t initial_size = std::uint64_t{1} << 20;
  // The file never grows past this; a put that would needs Errc::store_full.
  std::uint64_t max_file_size = std::uint64_t{1} << 40;
  Sync sync = Sync::none;
  // Space reclaimed as the store is written, with nobody calling compact():
  // while more than this share of the record bytes is dead (overwritten or
  // erased), each write also appends again the live records of a slice of
  // the oldest chunk, eight bytes looked at per byte it appended, and frees that
  // chunk once none is left in it (FORMAT.md "Reclaiming space"). The file
  // then stays near (live bytes) / (1 - this). 0 turns it off; compact()
  // still shrinks the file to the minimum. Must lie in [0, 1). At 0.2 the
  // file stays under twice the raw bytes of 1M 16+100-byte pairs under
  // overwrites (1.86x; 2.09x at 0.25, with a churn 18% faster). A chunk is
  // freed once the copies are on disk: a thread of the handle, started when
  // first needed, waits for that sync; writes wait for it (4 ms at most
  // each) only while the dead share is past this by (1 - this) / 64.
  double max_dead_fraction = 0.2;
  // ... but dead bytes up to this many are left alone, whatever their share.
  // In a small store that is rewritten often, most of the oldest chunk is
  // still live at a share of 0.2: reclaiming it appends those records again,
  // and every chunk freed waits for a sync. 1000 counters incremented took
  // 4.6 us a call that way against 0.49 us without reclaiming, and with this
  // floor 0.56 us (the file: 1 MiB, 8 MiB). 0: the share alone decides.
  std::uint64_t min_dead_bytes = std::uint64_t{4} << 20;
  // Longest wait for the store's lock before Errc::busy (for a read without
  // a reader slot: for a moment when no writer holds it, and for a read that
  // no writer disturbs).
  std::chrono::milliseconds lock_timeout{10'000};
  // What the last handle to close does. true: it syncs the file and marks it
  // clean, so that an open after a power cut finds every write up to that
  // close and trusts the file as it is (a close after 3M overwrites of 1M
  // keys took 24-39 ms here, most of it writing the index pages). false: it
  // leaves the file as it is, to the kernel's writeback, and closing takes
  // what unmapping takes (3-6 ms after 100k overwrites of 1M keys). Nothing
  // is lost to a process crash either way, and an open in the same boot uses
  // the file as it is (the clean flag is only for a reboot); after a power
  // cut the store holds a prefix of its writes up to what the kernel had
  // written back, and the next open rebuilds its index from the records
  // (~1.2 s for 1M keys), as after any power cut in a session. Call sync()
  // first to make a point durable. What LMDB's close does with MDB_NOSYNC;
  // meant for short-lived processes.
  bool sync_on_close = true;
};

}  // namespace kvstore
