/* kvstore.h: the C API of kvstore, a persistent key-value store in one
 * memory-mapped file, shared live by many threads and processes.
 *
 * Valid C99 and C++. Link with libkvstore.so (`pkg-config --cflags --libs
 * kvstore`). Every function returns an int code: KVSTORE_OK (0) on success,
 * else one of the KVSTORE_* codes below. Library codes sit in a band of
 * negative numbers (-30800 ... -30830), so they never collide with the codes
 * a callback returns for its own reasons (return positive numbers there).
 * On any code other than KVSTORE_OK, kvstore_last_error() gives a message
 * for people, per thread. No C++ exception ever leaves a function here.
 *
 * Threads and processes: one kvstore_db may be used from any number of
 * threads at once; a file may be opened any number of times, in this process
 * and in others. Each call holds the file's lock only while it runs. Do not
 * use a kvstore_db in a child after fork(): open the file again there (and
 * do not close the parent's handle in the child either).
 *
 * Keys and values are arbitrary bytes, NUL included; the empty key is
 * allowed. A pointer with a length of 0 may be NULL, except where a NULL
 * pointer has a meaning of its own (kvstore_compare_exchange).
 *
 * Callbacks of kvstore_transact and kvstore_view_run run while the lock is
 * held: keep them short, and inside them use only the kvstore_txn_* or
 * kvstore_view_* calls on the handle given. A call on a kvstore_db of the same
 * file fails with KVSTORE_INVALID_ARGUMENT instead of waiting for ever. */
#ifndef KVSTORE_KVSTORE_H
#define KVSTORE_KVSTORE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** @name Return codes
 * One code per kvstore::Errc, plus the outcomes that are not errors. @{ */
#define KVSTORE_OK 0                   /**< done */
#define KVSTORE_NOTFOUND (-30800)      /**< the key is absent */
#define KVSTORE_EXISTS (-30801)        /**< kvstore_insert: the key is present, nothing written */
#define KVSTORE_MISMATCH (-30802)      /**< kvstore_compare_exchange: another value, nothing written */
#define KVSTORE_INVALID_ARGUMENT (-30810) /**< bad option or argument (Errc::invalid_argument) */
#define KVSTORE_NOT_A_STORE (-30811)   /**< not a kvstore file: empty or foreign (Errc::not_a_store) */
#define KVSTORE_VERSION_MISMATCH (-30812) /**< other format version or build ABI (Errc::version_mismatch) */
#define KVSTORE_CORRUPT (-30813)       /**< a bound, checksum or invariant failed (Errc::corrupt) */
#define KVSTORE_IO (-30814)            /**< the OS refused, e.g. a missing file (Errc::io) */
#define KVSTORE_NO_SPACE (-30815)      /**< the disk is full (Errc::no_space) */
#define KVSTORE_STORE_FULL (-30816)    /**< would pass max_file_size (Errc::store_full) */
#define KVSTORE_BUSY (-30817)          /**< lock not granted within lock_timeout_ms (Errc::busy) */
#define KVSTORE_READ_ONLY (-30818)     /**< a write through a read-only handle (Errc::read_only) */
#define KVSTORE_NOMEM (-30819)         /**< this process ran out of memory */
#define KVSTORE_INTERNAL (-30820)      /**< an unexpected failure inside the library (a bug) */
/** @} */

/** Durability of a write (kvstore_options.sync). */
#define KVSTORE_SYNC_NONE 0   /**< a write survives any process crash, not a power cut */
#define KVSTORE_SYNC_ALWAYS 1 /**< a write returns only once it is on stable storage */

/** An open store. Opaque. */
typedef struct kvstore_db kvstore_db;

/** How kvstore_open behaves. Fill it with kvstore_options_init, then change fields. */
typedef struct kvstore_options {
  int create;               /**< nonzero: create the file when absent (default 1) */
  int read_only;            /**< nonzero: open without the right to write (default 0) */
  uint64_t initial_size;    /**< bytes of a new file, at least 64 KiB (default 1 MiB) */
  uint64_t max_file_size;   /**< the file never grows past this (default 1 TiB) */
  int sync;                 /**< KVSTORE_SYNC_NONE (default) or KVSTORE_SYNC_ALWAYS */
  uint32_t lock_timeout_ms; /**< longest wait for the lock before KVSTORE_BUSY (default 10000) */
  int sync_on_close;        /**< nonzero: the last close syncs the file and marks it clean (default
                                 1); 0: it leaves the file to the kernel's writeback, and an open
                                 after a power cut rebuilds the index (Options::sync_on_close) */
} kvstore_options;

/** Sets every field of `opt` to its default. */
void kvstore_options_init(kvstore_options *opt);

/** A short description of a code, e.g. "key not found"; never NULL. Static
 * storage: do not free. Codes of no one's (a callback's own) give "unknown code". */
const char *kvstore_strerror(int code);

/** The message of the last failed call in this thread ("" if none): it names
 * the file and the cause. Valid until the next kvstore_* call in this thread. */
const char *kvstore_last_error(void);

/** Releases memory that a kvstore_* function allocated (values, reports). NULL is fine. */
void kvstore_free(void *ptr);

/** Opens the store at `path`, creating it when absent and opt->create is set.
 * If the last process to use it stopped uncleanly, recovery runs first.
 * @param[in] path the data file (the lock file is `path` + ".lock")
 * @param[in] opt options, or NULL for the defaults
 * @param[out] out the handle; NULL on failure. Release it with kvstore_close.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (NULL path or out, bad option),
 * KVSTORE_NOT_A_STORE, KVSTORE_VERSION_MISMATCH, KVSTORE_CORRUPT,
 * KVSTORE_IO (e.g. a missing file without create), KVSTORE_NO_SPACE,
 * KVSTORE_BUSY, KVSTORE_NOMEM. */
int kvstore_open(const char *path, const kvstore_options *opt, kvstore_db **out);

/** Closes the handle and frees it. NULL is fine. Never fails. */
void kvstore_close(kvstore_db *db);

/** Stores `val` under `key`, replacing any previous value.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (NULL db, NULL pointer with a
 * length, key or value too large), KVSTORE_READ_ONLY, KVSTORE_NO_SPACE,
 * KVSTORE_STORE_FULL, KVSTORE_BUSY, KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_put(kvstore_db *db, const void *key, size_t key_len, const void *val, size_t val_len);

/** Copies out the value under `key`.
 * @param[out] val a malloc'd copy of the value (release it with kvstore_free),
 * or NULL to only ask whether the key is present; set to NULL when not found
 * @param[out] val_len its length (may be NULL)
 * @return KVSTORE_OK, KVSTORE_NOTFOUND, KVSTORE_INVALID_ARGUMENT, KVSTORE_BUSY,
 * KVSTORE_CORRUPT, KVSTORE_IO, KVSTORE_NOMEM. */
int kvstore_get(kvstore_db *db, const void *key, size_t key_len, void **val, size_t *val_len);

/** Removes `key`.
 * @return KVSTORE_OK (it was there), KVSTORE_NOTFOUND (it was not: nothing
 * written), KVSTORE_INVALID_ARGUMENT, KVSTORE_READ_ONLY, KVSTORE_NO_SPACE,
 * KVSTORE_STORE_FULL, KVSTORE_BUSY, KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_erase(kvstore_db *db, const void *key, size_t key_len);

/** Number of live keys.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (NULL db or count), KVSTORE_BUSY, KVSTORE_IO. */
int kvstore_count(kvstore_db *db, uint64_t *count);

/** Called by kvstore_foreach for each pair; the pointers are valid only
 * during the call. Return 0 to go on, anything else to stop. */
typedef int (*kvstore_foreach_fn)(void *ctx, const void *key, size_t key_len, const void *val,
                                  size_t val_len);

/** Calls `fn` for every pair of a snapshot taken when the call begins, in no
 * particular order. The lock is held only to take the snapshot, so `fn` may
 * call into the store, and writers are not held up while it runs.
 * @return KVSTORE_OK (every pair seen), whatever nonzero `fn` returned (it
 * stopped there), KVSTORE_INVALID_ARGUMENT, KVSTORE_BUSY, KVSTORE_CORRUPT,
 * KVSTORE_IO, KVSTORE_NOMEM. */
int kvstore_foreach(kvstore_db *db, kvstore_foreach_fn fn, void *ctx);

/** One change of a batch: a put of `val`, or an erase when `erase` is nonzero. */
typedef struct kvstore_op {
  const void *key;
  size_t key_len;
  const void *val; /**< ignored for an erase */
  size_t val_len;
  int erase;
} kvstore_op;

/** Applies all `n` ops or none of them: one lock, one batch of records, one
 * sync, one change. Later ops on a key win over earlier ones.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (also: NULL ops with n > 0),
 * KVSTORE_READ_ONLY, KVSTORE_NO_SPACE, KVSTORE_STORE_FULL, KVSTORE_BUSY,
 * KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_apply(kvstore_db *db, const kvstore_op *ops, size_t n);

/** Rewrites the store to its smallest size, online: other handles adopt the new file.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT, KVSTORE_READ_ONLY,
 * KVSTORE_NO_SPACE, KVSTORE_BUSY, KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_compact(kvstore_db *db);

/** Makes everything written so far durable (msync + fdatasync).
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT, KVSTORE_IO, KVSTORE_BUSY. */
int kvstore_sync(kvstore_db *db);

/** Verifies the whole file.
 * @param[out] problems how many problems were found (0: sound); may be NULL
 * @param[out] report if not NULL: a malloc'd NUL-terminated text, one problem
 * a line ("" when sound); release it with kvstore_free
 * @return KVSTORE_OK (check ran; see *problems), KVSTORE_INVALID_ARGUMENT,
 * KVSTORE_BUSY, KVSTORE_IO, KVSTORE_NOMEM. */
int kvstore_check(kvstore_db *db, size_t *problems, char **report);

/** Sizes and counters of a store (see kvstore::Stats in store.hpp). */
typedef struct kvstore_stats {
  uint64_t file_size;         /**< bytes of the data file */
  uint64_t used_bytes;        /**< bytes the segment allocator has handed out */
  uint64_t free_bytes;        /**< bytes it can still hand out */
  uint64_t keys;              /**< live keys */
  uint64_t key_bytes;         /**< sum of live key lengths */
  uint64_t value_bytes;       /**< sum of live value lengths */
  uint64_t record_bytes;      /**< bytes of all records, live and dead */
  uint64_t dead_bytes;        /**< bytes that kvstore_compact would drop */
  uint64_t table_slots;       /**< capacity of the hash index */
  double load_factor;         /**< keys / table_slots */
  uint64_t generation;        /**< bumped by every grow and compaction */
  uint64_t grows;             /**< grows since creation or the last compaction */
  uint64_t compactions;       /**< compactions and recoveries over the store's life */
  uint64_t last_compact_unix; /**< seconds since the epoch, 0 if never */
  uint64_t recoveries;        /**< rebuilds after an unclean stop */
  uint32_t processes;         /**< handles attached right now, all processes */
  uint64_t change_count;      /**< as kvstore_change_count */
  int sync;                   /**< this handle's KVSTORE_SYNC_* */
} kvstore_stats;

/** @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (NULL db or out), KVSTORE_BUSY, KVSTORE_IO. */
int kvstore_stats_get(kvstore_db *db, kvstore_stats *out);

/* --- coordination between threads and processes */

/** Adds `delta` to the decimal int64 under `key` (absent counts as 0) and
 * stores the result as decimal text: one lock, one record.
 * @param[out] result the new value (may be NULL)
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (the value is not a decimal
 * int64, or the sum overflows: nothing written), KVSTORE_READ_ONLY,
 * KVSTORE_NO_SPACE, KVSTORE_STORE_FULL, KVSTORE_BUSY, KVSTORE_IO,
 * KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_increment(kvstore_db *db, const void *key, size_t key_len, int64_t delta,
                      int64_t *result);

/** Sets `key` to `desired` only if its value equals `expected`, atomically.
 * @param[in] expected the value it must hold, or NULL: it must be absent
 * (an empty value is a non-NULL pointer with expected_len 0, e.g. "")
 * @param[in] desired the value to store, or NULL: erase the key
 * @return KVSTORE_OK (done), KVSTORE_MISMATCH (it held something else:
 * nothing written), KVSTORE_INVALID_ARGUMENT, KVSTORE_READ_ONLY,
 * KVSTORE_NO_SPACE, KVSTORE_STORE_FULL, KVSTORE_BUSY, KVSTORE_IO,
 * KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_compare_exchange(kvstore_db *db, const void *key, size_t key_len, const void *expected,
                             size_t expected_len, const void *desired, size_t desired_len);

/** Stores `val` only if `key` is absent.
 * @return KVSTORE_OK (stored), KVSTORE_EXISTS (present: nothing written),
 * KVSTORE_INVALID_ARGUMENT, KVSTORE_READ_ONLY, KVSTORE_NO_SPACE,
 * KVSTORE_STORE_FULL, KVSTORE_BUSY, KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_insert(kvstore_db *db, const void *key, size_t key_len, const void *val, size_t val_len);

/** The reads and writes of one kvstore_transact call. Opaque; valid only
 * while its callback runs. */
typedef struct kvstore_txn kvstore_txn;

/** A transaction's body. Return KVSTORE_OK to commit, anything else to abort:
 * then nothing is written and kvstore_transact returns that code. */
typedef int (*kvstore_txn_fn)(kvstore_txn *txn, void *ctx);

/** Runs `fn` under the write lock. Its puts and erases are buffered and
 * commit together when it returns KVSTORE_OK: one all-or-nothing batch (a
 * process killed at any instant leaves all of it or none). If a kvstore_txn_*
 * call inside failed (other than KVSTORE_NOTFOUND), the transaction does not
 * commit even if `fn` returns KVSTORE_OK: kvstore_transact returns that
 * call's code.
 * @return KVSTORE_OK (committed; also when `fn` wrote nothing), the nonzero
 * code `fn` returned (nothing written), KVSTORE_INVALID_ARGUMENT,
 * KVSTORE_READ_ONLY, KVSTORE_NO_SPACE, KVSTORE_STORE_FULL, KVSTORE_BUSY,
 * KVSTORE_IO, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_transact(kvstore_db *db, kvstore_txn_fn fn, void *ctx);

/** Reads the committed state as this transaction has changed it.
 * @param[out] val a malloc'd copy (kvstore_free), or NULL to only test presence
 * @param[out] val_len may be NULL
 * @return KVSTORE_OK, KVSTORE_NOTFOUND, KVSTORE_INVALID_ARGUMENT, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_txn_get(kvstore_txn *txn, const void *key, size_t key_len, void **val,
                    size_t *val_len);

/** @return KVSTORE_OK (present), KVSTORE_NOTFOUND, KVSTORE_INVALID_ARGUMENT, KVSTORE_CORRUPT. */
int kvstore_txn_contains(kvstore_txn *txn, const void *key, size_t key_len);

/** Buffers a put until the transaction commits.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (also: key or value too large), KVSTORE_NOMEM. */
int kvstore_txn_put(kvstore_txn *txn, const void *key, size_t key_len, const void *val,
                    size_t val_len);

/** Buffers an erase until the transaction commits.
 * @return KVSTORE_OK (the key was there, as this transaction sees it),
 * KVSTORE_NOTFOUND, KVSTORE_INVALID_ARGUMENT, KVSTORE_CORRUPT, KVSTORE_NOMEM. */
int kvstore_txn_erase(kvstore_txn *txn, const void *key, size_t key_len);

/** One consistent committed state, read without copying. Opaque; valid only
 * while its callback runs, and so are the pointers it hands out. */
typedef struct kvstore_view kvstore_view;

/** A view's body; its return code is kvstore_view_run's. */
typedef int (*kvstore_view_fn)(const kvstore_view *view, void *ctx);

/** Runs `fn` under the read lock: every read inside sees one committed state.
 * @return what `fn` returned, KVSTORE_INVALID_ARGUMENT, KVSTORE_BUSY,
 * KVSTORE_CORRUPT, KVSTORE_IO, KVSTORE_NOMEM. */
int kvstore_view_run(kvstore_db *db, kvstore_view_fn fn, void *ctx);

/** Zero-copy read inside a view.
 * @param[out] val points into the store, valid until `fn` returns; do not free
 * @return KVSTORE_OK, KVSTORE_NOTFOUND, KVSTORE_INVALID_ARGUMENT, KVSTORE_CORRUPT;
 * KVSTORE_BUSY only on a read-only handle that could not write the lock file
 * (it reads without a reader slot): a writer changed the store since the view
 * began, so this answer would be of another state; return, and run the view again. */
int kvstore_view_get(const kvstore_view *view, const void *key, size_t key_len, const void **val,
                     size_t *val_len);

/** Number of live keys in the view.
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT. */
int kvstore_view_count(const kvstore_view *view, uint64_t *count);

/** A counter bumped by every committed change from any process (lock-free).
 * @return KVSTORE_OK, KVSTORE_INVALID_ARGUMENT (NULL db or count). */
int kvstore_change_count(kvstore_db *db, uint64_t *count);

/** Blocks until the change count differs from `seen` or `timeout_ms` passes
 * (no polling: a commit in any process wakes every waiter).
 * @param[out] now the change count then (may be NULL); equal to `seen` on a timeout
 * @return KVSTORE_OK (changed or timed out: compare *now with seen),
 * KVSTORE_INVALID_ARGUMENT (also: from inside a callback of this store). */
int kvstore_wait_for_change(kvstore_db *db, uint64_t seen, uint32_t timeout_ms, uint64_t *now);

#ifdef __cplusplus
}
#endif

#endif /* KVSTORE_KVSTORE_H */
