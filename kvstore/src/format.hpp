// The bytes of a kvstore data file (FORMAT.md is the normative description;
// each constant here names its section there).
//
//   [0, 4096)        FileHeader: validated with pread before anything is mapped
//   [4096, size)     a Boost.Interprocess segment (rbtree_best_fit, offset_ptr)
//                    holding the Root, the hash index and the record chunks
//
// All integers are little-endian, native width; a big-endian or 32-bit build
// sees a magic or fingerprint mismatch and refuses the file.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

namespace kvstore::detail {

// FORMAT.md "Header". "KVSTORE" + format byte, compared as an integer so that a
// foreign byte order reads as a different number.
inline constexpr std::uint64_t kMagic = 0x0145524f5453564bULL;  // "KVSTORE\x01" little-endian
// Version 2: chunks may be freed from the front of the list (reclaim.cpp), so
// the first chunk's ordinal may be past 0. A version 1 file is the same bytes
// with that never done: this build reads and writes it, but reclaims space
// only in files created as version 2 (a compaction rewrites one as such), so
// that a version 1 build never meets a list it would call damaged.
// Version 3: an IndexGrowth follows the Root, and the index doubles a step
// per write (layout.hpp); read and written as version 2 without it.
inline constexpr std::uint32_t kFormatVersion = 3;
inline constexpr std::uint32_t kOldestFormatVersion = 1;
inline constexpr std::uint64_t kHeaderSize = 4096;
inline constexpr std::uint64_t kMinFileSize = 64 * 1024;  // smallest file we create
inline constexpr std::uint64_t kMinValidSize = 8 * 1024;  // smallest file we accept (a compacted empty store)
inline constexpr std::uint64_t kPageSize = 4096;

// `v` rounded up to a multiple of `to` (pages, record and allocator alignment).
[[nodiscard]] constexpr std::uint64_t round_up(std::uint64_t v, std::uint64_t to) noexcept {
  return (v + to - 1) / to * to;
}

enum class FileState : std::uint32_t {
  live = 0,     // the file at the store's path
  retired = 1,  // replaced by compaction or recovery: reopen the path
};

// The first 4096 bytes of the file. The fixed part (up to header_crc) is
// written once at creation and covered by header_crc; the mutable part lives
// on its own cache lines and is written only by the holder of the write lock.
struct FileHeader {
  // --- fixed part, FORMAT.md "Header: fixed part"
  std::uint64_t magic;
  std::uint32_t format_version;
  std::uint32_t header_size;
  std::uint64_t fingerprint;  // layout_fingerprint() of the build that made the file
  std::uint64_t hash_seed;    // seed of key_hash()
  std::uint64_t root_offset;  // file offset of the Root
  std::uint64_t created_unix;
  std::uint32_t header_crc;   // crc32c of the bytes before this field
  std::uint32_t reserved0;
  // --- mutable part: what readers check on every call
  alignas(64) std::atomic<std::uint64_t> file_size;  // bytes in use; the file may be longer
  std::atomic<std::uint64_t> generation;             // +1 at every grow and compaction
  std::atomic<std::uint32_t> state;                  // FileState
  // The rest of this line is written at syncs only (FORMAT.md "Durable mark").
  // crc32c of the whole mutable part (state_checksum()), valid while `clean`
  // is 1: nothing changes a clean file's header, so a mismatch is damage.
  std::uint32_t state_crc;
  // The durable mark: the first `durable_chunks` chunks, the last of them up
  // to `durable_used` bytes, had reached the disk with the chunk links before
  // them at the last completed sync. After a power cut, damage before the mark
  // is damage; the first damage after it is where the history was torn.
  std::uint64_t durable_chunks;
  std::uint64_t durable_used;
  std::uint32_t durable_crc;  // crc32c of the two fields above; else no mark
  // --- mutable part: written by writers only (own line: readers never miss on it)
  alignas(64) std::atomic<std::uint32_t> writing;  // WritingPhase: what a writer is doing now
  std::atomic<std::uint32_t> clean;                // 1 once the last handle closed it
  std::uint64_t grows;
  std::uint64_t compactions;
  std::uint64_t recoveries;
  std::uint64_t last_compact_unix;
  // The kernel's boot id when `clean` was last cleared. An unclean file from
  // this boot lost nothing (the page cache holds every completed write); from
  // an earlier boot it may have lost unsynced pages and must be rebuilt.
  unsigned char boot_id[16];
  // Committed changes over the store's life (Store::change_count). Zero in
  // files made before it existed. The lock file serves the live value; this
  // copy carries it across the times when nobody has the store open.
  std::uint64_t change_count;
};
static_assert(sizeof(FileHeader) <= kHeaderSize);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);
inline constexpr std::size_t kHeaderCrcBytes = offsetof(FileHeader, header_crc);
// The new fields sit in padding: older files read them as zeros (no mark, a
// state checksum that fails: one full recovery at their first open).
static_assert(offsetof(FileHeader, durable_crc) + 4 <= offsetof(FileHeader, writing));
static_assert(sizeof(FileHeader) == 192);

// crc32c of the header's mutable part (every field from file_size to the
// end, but state_crc itself), field by field: padding never counts.
[[nodiscard]] std::uint32_t state_checksum(const FileHeader& h) noexcept;
// Marks the header clean (the file is durable as it stands) and seals it.
void seal_clean(FileHeader& h) noexcept;
[[nodiscard]] bool sealed(const FileHeader& h) noexcept;
// After a change to a mutable field: a clean header's seal is made anew.
void reseal(FileHeader& h) noexcept;

// FileHeader's durable mark, read back; `valid` is false for a file without
// one (older builds) or with a damaged one.
struct DurableMark {
  std::uint64_t chunks = 0;
  std::uint64_t used = 0;
  bool valid = false;
};
[[nodiscard]] DurableMark durable_mark(const FileHeader& h) noexcept;
void set_durable_mark(FileHeader& h, std::uint64_t chunks, std::uint64_t used) noexcept;

// FORMAT.md "Fingerprint": what must match for this build to use the file's
// Boost structures in place (Boost version, pointer and layout sizes).
// `version`: the format version the file says it has (see kFormatVersion).
[[nodiscard]] std::uint64_t layout_fingerprint(std::uint32_t version = kFormatVersion) noexcept;
// Bytes of the root block in a file of that version (the Root, and from
// version 3 the IndexGrowth after it).
[[nodiscard]] std::uint64_t root_bytes(std::uint32_t version) noexcept;

// Reads the header with pread and checks everything that can be checked
// without mapping: magic, version, fingerprint, checksum, sizes against the
// file's length. Throws Error (not_a_store, version_mismatch, corrupt, io).
struct HeaderCheck {
  std::uint64_t file_size;  // what to map
  std::uint64_t root_offset;
  std::uint64_t hash_seed;
  // The file is shorter than its header says, and was not closed cleanly: a
  // power cut kept a grown header page but not the grown length. Only the
  // present bytes are mapped, and the store must be rebuilt from them.
  bool short_file = false;
};
HeaderCheck read_and_validate_header(int fd, const std::string& path);

// The id of the running kernel's boot (/proc/sys/kernel/random/boot_id).
[[nodiscard]] const unsigned char* current_boot_id() noexcept;

// Fills a fresh header (fixed part and checksum).
void init_header(FileHeader& h, std::uint64_t file_size, std::uint64_t root_offset,
                 std::uint64_t hash_seed);

// FORMAT.md "Records". Every put, erase and batch marker is one record,
// appended to a chunk and never modified afterwards.
enum class RecordType : std::uint8_t { put = 1, erase = 2 };
enum RecordFlags : std::uint8_t {
  kInBatch = 1,     // part of an atomic batch ...
  kBatchEnd = 2,    // ... that this record completes
  kBatchBegin = 4,  // ... that this record opens (records of an abandoned batch before it are void)
};

// FileHeader::writing: what a writer was doing, so that recovery after its
// death knows how much to rebuild.
enum WritingPhase : std::uint32_t {
  kIdle = 0,
  kRecords = 1,    // appending records or changing the index: the allocator is intact
  kAllocator = 2,  // inside the segment allocator or a grow: rebuild the whole file
};
struct RecordHeader {
  std::uint32_t crc;  // crc32c of everything after this field up to the record's padded end
  std::uint8_t type;
  std::uint8_t flags;
  std::uint16_t reserved;
  std::uint32_t key_size;
  std::uint32_t value_size;
};
static_assert(sizeof(RecordHeader) == 16);
inline constexpr std::uint64_t kRecordAlign = 8;
inline constexpr std::uint64_t kMaxKeySize = std::uint64_t{1} << 30;
inline constexpr std::uint64_t kMaxValueSize = (std::uint64_t{1} << 32) - 1;

[[nodiscard]] constexpr std::uint64_t record_size(std::uint64_t key_size,
                                                  std::uint64_t value_size) noexcept {
  return (sizeof(RecordHeader) + key_size + value_size + kRecordAlign - 1) & ~(kRecordAlign - 1);
}

}  // namespace kvstore::detail
