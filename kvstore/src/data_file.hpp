// One data file, mapped: the header, the segment, the hash index and the
// record chunks, with the operations on them. It knows nothing of locks: the
// caller (Store::Impl) holds the read lock for the const functions and the
// write lock for everything else.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "allocator_check.hpp"
#include "chunk_log.hpp"
#include "format.hpp"
#include "hash_index.hpp"
#include "kvstore/error.hpp"
#include "layout.hpp"
#include "mapping.hpp"
#include "record.hpp"
#include "sync_worker.hpp"

#include "latest_index.hpp"

namespace kvstore::detail {

class DataFile {
 public:
  // Creates a new file at `path` (which must not exist) holding an empty store.
  static DataFile create(const std::string& path, std::uint64_t size, std::uint64_t max_size);
  // The same, built in private memory: no file exists at `path` (rebuild() writes it).
  static DataFile create_image(const std::string& path, std::uint64_t size, std::uint64_t max_size);
  // Opens and validates an existing file. Throws Error: not_a_store,
  // version_mismatch, corrupt, io.
  static DataFile open(const std::string& path, bool writable, std::uint64_t max_size);
  // Maps the very file `f` has open again, read-only, through a descriptor of
  // its own: the path may hold another file by now.
  static DataFile open_again(const DataFile& f);

  DataFile(DataFile&&) noexcept = default;
  DataFile& operator=(DataFile&&) noexcept = default;
  ~DataFile() = default;

  [[nodiscard]] const std::string& path() const noexcept { return path_; }
  // After the caller renamed the file into place.
  void renamed(std::string path) { path_ = std::move(path); }
  void set_max_size(std::uint64_t max_size) noexcept { max_size_ = max_size; }
  [[nodiscard]] int fd() const noexcept { return fd_.get(); }
  [[nodiscard]] bool writable() const noexcept { return writable_; }
  // Opened short of its published size (see HeaderCheck::short_file): usable
  // only as the source of a rebuild.
  [[nodiscard]] bool short_file() const noexcept { return short_file_; }
  [[nodiscard]] FileHeader& header() const noexcept {
    return *reinterpret_cast<FileHeader*>(map_.base());  // NOLINT: offset 0 of the mapping
  }
  [[nodiscard]] Root& root() const noexcept {
    return *reinterpret_cast<Root*>(map_.base() + root_offset_);  // NOLINT: validated offset
  }
  [[nodiscard]] std::uint64_t mapped_size() const noexcept { return map_.size(); }
  [[nodiscard]] const char* base() const noexcept { return map_.base(); }
  // Unmaps those pages, keeping the range (Mapping::drop_pages): for a file let go (retiring.hpp).
  void drop_pages(std::uint64_t offset, std::uint64_t length) const noexcept { map_.drop_pages(offset, length); }

  // True when another handle grew or replaced the file since we mapped it.
  [[nodiscard]] bool stale() const noexcept {
    const FileHeader& h = header();
    return h.file_size.load(std::memory_order_acquire) != map_.size() ||
           h.state.load(std::memory_order_acquire) != static_cast<std::uint32_t>(FileState::live);
  }
  [[nodiscard]] bool retired() const noexcept {
    return header().state.load(std::memory_order_acquire) !=
           static_cast<std::uint32_t>(FileState::live);
  }
  // Whether a DataFile other than this one (in any process) has this file
  // open: each holds a shared OFD lock on byte 0 of it for its lifetime. The
  // last to let an unlinked file go pays for freeing its pages and blocks
  // (55 ms for 160 MB measured here), and a compaction makes sure that is
  // itself, not a reader of the store. When the kernel cannot tell: true.
  [[nodiscard]] bool open_elsewhere() const noexcept;
  // Checks the root and the pointers it holds. Throws Error(corrupt).
  void validate_root() const;
  // What every write trusts, checked for a file nobody has used since it was
  // last closed (the first attach): the segment allocator's blocks and free
  // tree (allocator_check.hpp), the root, the index and every chunk each an
  // allocated block, and the last chunk the end of the chunk list. Throws
  // Error(corrupt) naming what is wrong.
  void verify_for_writes() const;
  // Maps the size the header now publishes (another handle grew the file).
  void adopt_size();

  // --- reads (read lock)
  // The live record of `key`, if any.
  [[nodiscard]] bool find(std::string_view key, RecordView& out) const;
  [[nodiscard]] std::uint64_t key_count() const noexcept { return root().keys; }
  // Offsets of every live record, in file order. Records never change once
  // written, and a mapping that grows keeps its old range mapped
  // (mapping.hpp), so the caller may read them after releasing the lock for
  // as long as it keeps this DataFile alive.
  [[nodiscard]] std::vector<std::uint64_t> live_offsets() const;

  // --- writes (write lock)
  // Appends one record and points the index at it (or, for an erase, removes
  // the key from the index). Returns whether the key existed before.
  bool put(std::string_view key, std::string_view value, std::uint8_t flags);
  bool erase(std::string_view key, std::uint8_t flags);
  // Appends records for a batch (all or nothing on recovery), then indexes them.
  struct Op {
    std::string_view key;
    std::string_view value;
    bool erase;
  };
  void apply(const std::vector<Op>& ops);
  // A compaction's catch-up: applies `r`, a record of the file this one is a
  // copy of (same hash seed), as put() or erase() would.
  void copy_in(const RecordView& r);
  // Makes everything durable: msync of the whole mapping, then fdatasync.
  void sync_all() const;
  // After a completed sync of every record (write lock): the header's durable
  // mark (format.hpp) names the end of the records.
  void mark_durable() noexcept;
  // Makes the header page durable.
  void sync_header() const { map_.sync(0, kHeaderSize, path_); }
  // Makes the last appended records durable (Sync::always), and marks them so.
  void sync_tail();
  // Makes the records after the durable mark durable, with the chunk headers
  // that count and link them (not the index), and moves the mark past them:
  // whole chunks, until `budget` bytes of records are done.
  void sync_records(std::uint64_t budget);
  // Whether this thread's write left work for after the write lock: a sync it
  // staged for the sync thread, one to wait for because the writers have
  // outrun reclaiming, or the blocks of the next grow to allocate (plan_grow_ahead).
  [[nodiscard]] bool work_after_lock() noexcept;
  // Does it, once the write section has let the lock go: allocates those
  // blocks, starts the staged sync's write-back, then waits if it must
  // (without a wait, four threads left 0.81 of the records dead). The next
  // reclaiming write moves the durable mark, or retries a failed sync.
  void do_work_after_lock() noexcept;

  // --- history (any lock)
  // The record chunks, as a view valid while this DataFile stays where it is.
  [[nodiscard]] ChunkLog chunks() const noexcept { return {map_, root_offset_, path_}; }
  // What a replay found: each key's latest record, and what was wrong.
  struct History {
    LatestIndex latest;
    std::vector<std::string> problems;
    // Keys the index holds whose records the replay never reached (counted
    // only when asked: the chunks' own bookkeeping hid records).
    std::uint64_t unknown_keys = 0;
  };
  [[nodiscard]] History read_history(Replay mode, bool compare_index, const RecordsEnd* until = nullptr) const;
  // Whole-file verification for `kvtool check`; returns the problems found.
  [[nodiscard]] std::vector<std::string> check() const;
  // The blocks the store holds: root, index, growing index (if any), then the
  // chunks in list order, their headers read from `bytes`, `tail` set to the
  // file offset of the last. Throws Error (a damaged pointer or chunk).
  [[nodiscard]] std::vector<HeldBlock> held_blocks(const ByteSource& bytes, std::uint64_t& tail) const;
  // --- space reclamation as the store is written (reclaim.cpp; write lock)
  // Whether the oldest chunk may be cleaned: a writable version 2 file with
  // more than one chunk.
  [[nodiscard]] bool may_reclaim() const noexcept;
  // Looks at up to `budget` bytes of the oldest chunks' records, appending the
  // live ones again; once all of the oldest is looked at and its copies are
  // durable, cuts it off the list, and frees the chunks cut off before once
  // the root without them is durable (reclaim.cpp). Neither a chunk nor a cut
  // begins while `pinned()` says someone reads records without the lock (a
  // compaction's copy, a for_each): the chunk could not be freed, and the
  // copies would only add to what a compaction has to catch up on. Asked
  // only as a chunk begins and before a cut (it costs a system call).
  // With `keep_up` (the dead share is past what reclaiming should keep it
  // at), a write that finds the sync of the copies still running waits for
  // it after the lock; otherwise it goes on.
  // Throws Error: corrupt (a damaged record), io, no_space, store_full.
  void reclaim(std::uint64_t budget, const std::function<bool()>& pinned, bool keep_up);
  // Whether chunks this handle cut off the list wait to be freed.
  [[nodiscard]] bool holds_unlinked() const noexcept { return !unlinked_.empty(); }
  // Frees them now, after a sync of the root (write lock, as the handle closes).
  void release_unlinked_now();
  // While reclaiming is on: hands the sync thread, as chunks fill, the
  // records of the closed chunks but the last few, so that what reclaiming's
  // first free waits for stays short.
  void write_behind();

  // Free bytes the allocator can still hand out.
  [[nodiscard]] std::uint64_t free_bytes() const noexcept;

  // Whether the only damaged records are a torn tail of the last chunk, as a
  // power cut leaves them (recovery.cpp).
  [[nodiscard]] bool damage_is_torn_tail() const;

  // After a writer died while it appended records or changed the index (but
  // not the allocator): rebuilds the index and the counters in place from the
  // records, without copying them. Returns false, changing nothing, when the
  // file needs the full rebuild instead (a damaged record or root).
  bool repair_index();

  // Writes a compact copy holding only the live pairs of `source` (as its
  // replay `history` found them, so that it also serves recovery) to `path`,
  // and makes it durable. The header's counters are carried over, the one
  // that `why` names counted.
  enum class Rebuilt { compaction, recovery };
  static DataFile rebuild(const DataFile& source, const History& history, const std::string& path,
                          std::uint64_t max_size, Rebuilt why);

  // --- the header's state (header_state.cpp): the only writer of the
  // header's mutable part, and so of the writing-phase protocol (FORMAT.md)
  // Before a change (write lock): the file is marked unclean for this boot,
  // synced once a session, and `writing` says a writer is at work.
  void begin_change();
  void end_change() noexcept;
  // The last handle out: everything synced, the durable mark moved, then the
  // header marked clean and sealed, and synced.
  void close_clean();
  // Store::change_count's copy (the lock file has the live one).
  void set_change_count(std::uint64_t count) noexcept;
  // Replaced at the path: handles mapping this file reopen the path.
  void retire() noexcept;

 private:
  class AllocatorPhase;
  class Rebuild;
  DataFile() = default;
  // Lays out an empty store (header, segment, root, first index) in map_.
  void format(std::uint64_t size);
  [[nodiscard]] SegmentManager* segment() const noexcept {
    return reinterpret_cast<SegmentManager*>(map_.base() + kHeaderSize);  // NOLINT
  }
  // The index, its size and place checked. Throws Error(corrupt). Inline:
  // every get takes it (find).
  [[nodiscard]] HashIndex index() const {
    const Root& r = root();
    const std::uint64_t n = r.slot_count;
    Slot* t = r.table.get();
    const auto at = reinterpret_cast<std::uintptr_t>(t);           // NOLINT
    const auto base = reinterpret_cast<std::uintptr_t>(map_.base());  // NOLINT
    if (n == 0 || (n & (n - 1)) != 0 || n > map_.size() / sizeof(Slot) || t == nullptr || at < base ||
        !lies_in_file(map_.size(), at - base, n * sizeof(Slot), alignof(Slot))) [[unlikely]] {
      bad_index();
    }
    return {t, n};
  }
  [[nodiscard]] RecordView record_at(std::uint64_t offset) const {
    return read_record(map_.base(), map_.size(), offset, path_);
  }
  // Slot index of `key` (found, its record viewed in `rec`) or of the empty
  // slot where it would go. Throws Error(corrupt) if no slot is empty.
  std::uint64_t probe(std::string_view key, std::uint64_t hash, bool& found, RecordView& rec) const;
  std::uint64_t probe(std::string_view key, std::uint64_t hash, bool& found) const {
    RecordView rec{};
    return probe(key, hash, found, rec);
  }
  void index_put(std::uint64_t hash, std::uint64_t record_offset, const RecordView& r);
  bool index_erase(std::string_view key, std::uint64_t hash);
  // Empties slot `i` (which holds a live key) and closes the gap behind it.
  void remove_slot(std::uint64_t i);
  void reserve_slots(std::uint64_t extra_keys);
  // --- the index doubling a step per write (index_growth.cpp)
  // The IndexGrowth after the root, or null (a file before version 3).
  [[nodiscard]] IndexGrowth* growth() const noexcept;
  // How many slots of the table the growing index holds copies of (0: none).
  [[nodiscard]] std::uint64_t slots_copied() const noexcept;
  // The growing index (growth()->shadow, checked). Throws Error(corrupt).
  [[nodiscard]] HashIndex shadow() const;
  // One step of the doubling, begun once `keys_after` passes 5/8 of the table.
  void grow_index_a_step(std::uint64_t keys_after);
  // Abandons a doubling under way.
  void drop_index_growth();
  // Slot `i` of the table went from (hash, offset `was`) to (hash, `now`); 0:
  // empty. Made in the growing index too if it holds a copy of slot `i`.
  void mirror_slot(std::uint64_t i, std::uint64_t hash, std::uint64_t was, std::uint64_t now);
  void mirror_move(std::uint64_t from, std::uint64_t to, const Slot& s);
  // Room for `bytes` of records in the last chunk; grows the file if needed.
  void reserve_records(std::uint64_t bytes);
  std::uint64_t append(std::string_view key, std::string_view value, RecordType type,
                       std::uint8_t flags);
  // Allocates from the segment, growing the file until it fits.
  void* allocate(std::uint64_t bytes);
  void grow(std::uint64_t at_least);
  // The size grow(at_least) makes the file (before max_size_ caps it).
  [[nodiscard]] std::uint64_t grown_size(std::uint64_t at_least) const noexcept;
  // --- growing ahead (grow_ahead.cpp)
  // Write lock: whether the next grow() is near and its blocks are not
  // allocated yet; if so, notes for this thread what grow_ahead() allocates.
  bool plan_grow_ahead() noexcept;
  // After the lock: allocates those blocks past the end of the file.
  static void grow_ahead() noexcept;
  // Replays every record into key -> latest record (recovery.cpp).
  LatestIndex replay(const std::function<void(const std::string&)>& problem,
                     std::uint64_t* record_bytes, Replay mode, const RecordsEnd* until = nullptr) const;
  [[nodiscard]] std::uint64_t indexed_keys_unknown_to(const LatestIndex& latest) const;
  void check_allocations(const std::function<void(const std::string&)>& problem) const;
  // File offset of the chunk root.last_chunk names (checked, not read), or 0.
  [[nodiscard]] std::uint64_t last_chunk_offset() const;
  // What is wrong with what writes trust (see verify_for_writes), or "".
  [[nodiscard]] std::string problem_for_writes(bool last_chunk_at_end) const;
  // Whether root.last_chunk is the end of the chunk list, or what is wrong.
  [[nodiscard]] std::string chunk_tail_problem() const;
  // An Error's message without the leading "path: ".
  [[nodiscard]] std::string without_path(const Error& e) const;
  // Throws the Error that index() found cause for.
  [[noreturn]] void bad_index() const;
  template <class T>
  [[nodiscard]] T* resolve(const bip::offset_ptr<T>& p, std::uint64_t bytes) const;

  void move_if_live(const RecordView& rec, std::uint64_t hash);
  // Whether the durable mark is at or past `end`.
  [[nodiscard]] bool durable_through(const RecordsEnd& end) const noexcept;
  // The records after the durable `mark` and their chunk headers, as file
  // ranges in list order, whole chunks until `budget` bytes of records are
  // taken; `reached` is where they end. Not the `leave` last chunks: the
  // last one's pages, written again by the next append, would each pay a
  // page fault once a sync has write-protected them (35-85 us here), and a
  // sync thread write-protecting pages near those the writer touches holds
  // their page table's lock while it waits for the writer's CPU to flush.
  [[nodiscard]] std::vector<FileRange> unsynced_records(const DurableMark& mark, std::uint64_t budget,
                                                       RecordsEnd& reached, std::uint64_t leave = 0) const;
  // Under the write lock, `copies` not yet durable: moves the durable mark
  // past what the sync thread made durable, or stages its next step; with
  // `keep_up`, this thread's write then waits for it after the lock. Returns
  // whether it synced here instead.
  bool sync_in_background(const RecordsEnd& copies, bool keep_up);
  // Takes in what the sync thread did last: a done sync moves the durable mark.
  SyncWorker::Outcome collect_sync();
  // Stages the sync thread's next step (started after the lock): the records
  // after the durable mark (`leave`: as unsynced_records), and the root
  // while chunks wait for it. False if it cannot (no valid mark, no thread,
  // nothing to sync).
  bool stage_sync(std::uint64_t leave);
  // Drops what this handle knew of chunks before `oldest` (freed since).
  void forget_freed(std::uint64_t oldest);
  // Looks at up to `budget` bytes of records from where this handle left
  // off, appending the live ones again, up to kLookAhead chunks ahead of the
  // oldest and never in the last chunk.
  void look_ahead(std::uint64_t& budget, const std::function<bool()>& pinned);
  // Cuts the oldest chunk off the list (its copies are durable), to be freed
  // by release_unlinked.
  void unlink_first_chunk();
  // Frees the chunks unlinked before the last sync that is done, and stages
  // one if some still wait.
  void release_unlinked();
  // Frees the first `n` of unlinked_ (their unlinking is durable).
  void free_unlinked(std::size_t n);

  std::string path_;
  Fd fd_;  // holds the shared lock that open_elsewhere() looks for
  // Takes that lock, once fd_ is set.
  void mark_open() const noexcept;
  // After fd_ is open: marks it so, reads the header and maps the file.
  void map_opened();
  Mapping map_;
  bool writable_ = false;
  bool short_file_ = false;
  std::uint64_t root_offset_ = 0;
  std::uint64_t seed_ = 0;
  std::uint64_t max_size_ = 0;
  void note_dirty(std::uint64_t offset, std::uint64_t length) noexcept;
  // What sync_tail() must make durable: the bytes appended since the last one,
  // or everything after a grow or a new chunk.
  std::uint64_t tail_begin_ = 0;
  std::uint64_t tail_end_ = 0;
  bool full_sync_ = false;
  // How far this handle has cleaned the oldest chunks (records before it were
  // looked at): kept per handle, since a slice looked at twice costs only time.
  std::uint64_t reclaim_ordinal_ = 0;  // the chunk being looked at
  std::uint64_t reclaim_pos_ = 0;
  // The chunks looked at whole, oldest first, each with where the records
  // ended then (its copies end there or before): freed in order once that is
  // durable. At most kLookAhead: copies not yet durable add to what a power
  // cut may lose the latest of, and to what a free's flush writes.
  struct Cleaned {
    std::uint64_t ordinal;
    RecordsEnd moved_to;
  };
  static constexpr std::size_t kLookAhead = 4;
  std::vector<Cleaned> cleaned_;
  bool chunk_filled_ = false;  // a chunk was linked since write_behind() last staged a step
  std::uint64_t allocated_ahead_ = 0;  // the file size plan_grow_ahead() last allocated blocks for
  // Chunks cut off the list but not yet freed, oldest first: each waits for
  // the sync thread's sync number `after_sync` (SyncWorker::staged_count),
  // which makes the root without it durable.
  struct Unlinked {
    std::uint64_t offset;
    std::uint64_t after_sync;
  };
  std::vector<Unlinked> unlinked_;
  // Makes the copies that reclaiming appends durable while the writers go on.
  // Last: it stops (and waits for its write-back) before anything else goes.
  std::unique_ptr<SyncWorker> sync_worker_ = std::make_unique<SyncWorker>();
};

// Marks the header while the segment allocator (or a grow) is being changed:
// a writer that dies inside must be recovered by a full rebuild. Restores the
// phase before it, also when the change fails cleanly.
class DataFile::AllocatorPhase {
 public:
  explicit AllocatorPhase(DataFile& f) : f_(f), before_(f.header().writing.load(std::memory_order_relaxed)) {
    if (before_ != kIdle) f_.header().writing.store(kAllocator, std::memory_order_relaxed);
  }
  AllocatorPhase(const AllocatorPhase&) = delete;
  AllocatorPhase& operator=(const AllocatorPhase&) = delete;
  ~AllocatorPhase() {
    if (before_ != kIdle) f_.header().writing.store(before_, std::memory_order_relaxed);
  }

 private:
  DataFile& f_;
  std::uint32_t before_;
};

template <class T>
inline T* DataFile::resolve(const bip::offset_ptr<T>& p, std::uint64_t bytes) const {
  return resolve_in(map_, path_, p, bytes);
}

}  // namespace kvstore::detail
