/* The README's C example, compiled with `cc -std=c99 -Wall -Wextra -Werror
 * -pedantic $(pkg-config --cflags --libs kvstore)` and run by
 * tests/install/install_test.sh against the installed package. Keep it
 * identical to the README. */
#include <kvstore/kvstore.h>
#include <stdio.h>

/* A transaction: move 10 from "a" to "b"; returning nonzero writes nothing. */
static int transfer(kvstore_txn *txn, void *ctx) {
  (void)ctx;
  if (kvstore_txn_put(txn, "a", 1, "90", 2) != KVSTORE_OK) return 1;
  return kvstore_txn_put(txn, "b", 1, "10", 2);
}

int main(int argc, char **argv) {
  kvstore_db *db;
  kvstore_options opt;
  void *val;
  size_t len;
  int64_t hits;
  int rc;

  if (argc < 2) return 2;
  kvstore_options_init(&opt);
  opt.sync = KVSTORE_SYNC_ALWAYS;
  rc = kvstore_open(argv[1], &opt, &db);
  if (rc != KVSTORE_OK) {
    fprintf(stderr, "open: %s (%s)\n", kvstore_strerror(rc), kvstore_last_error());
    return 1;
  }
  kvstore_put(db, "key", 3, "bytes\0ok", 8);           /* any bytes, NUL included */
  rc = kvstore_get(db, "key", 3, &val, &len);          /* a malloc'd copy */
  if (rc == KVSTORE_OK) {
    printf("key: %zu bytes, starts \"%s\"\n", len, (const char *)val);
    kvstore_free(val);
  }
  if (kvstore_get(db, "nope", 4, &val, &len) == KVSTORE_NOTFOUND) printf("nope: absent\n");
  kvstore_increment(db, "hits", 4, 1, &hits);          /* atomic across processes */
  if (kvstore_insert(db, "leader", 6, "me", 2) == KVSTORE_EXISTS) printf("someone leads\n");
  rc = kvstore_transact(db, transfer, NULL);            /* all or nothing */
  printf("hits %lld, transfer: %s\n", (long long)hits, kvstore_strerror(rc));
  kvstore_close(db);
  return rc == KVSTORE_OK ? 0 : 1;
}
