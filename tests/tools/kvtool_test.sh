#!/usr/bin/env bash
# kvtool end to end: every command, its output and exit status, bad files,
# binary data, dump/load round trips, and interop with the real lmdb-utils and
# Berkeley DB tools. Usage: kvtool_test.sh path/to/kvtool [tests/corrupt/regress]
set -u
KVTOOL=$(realpath "$1")
REGRESS=$(realpath "${2:-$(dirname "$0")/../corrupt/regress}")
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
cd "$T"
failures=0
checks=0
fail() { echo "FAIL: $*" >&2; failures=$((failures + 1)); }
# expect STATUS CMD...: runs CMD, compares its exit status
expect() {
  local want=$1; shift
  checks=$((checks + 1))
  "$@" >out.txt 2>err.txt
  local got=$?
  [ "$got" = "$want" ] || fail "$* -> exit $got, wanted $want; stderr: $(head -c 300 err.txt)"
}
same() { checks=$((checks + 1)); cmp -s "$1" "$2" || fail "$3: $1 and $2 differ"; }
need() { command -v "$1" >/dev/null || { fail "$1 is not installed (tools/dev.sh installs it)"; }; }

K="$KVTOOL -f s.kv"
# --- basics
expect 0 $KVTOOL --help; grep -q "Exit status" out.txt || fail "--help lacks the exit statuses"
expect 0 $KVTOOL --version
expect 2 $KVTOOL
expect 2 $KVTOOL frobnicate
expect 2 $K put onlykey
expect 2 $K get
expect 4 $K get nothing-here          # no store yet: I/O error naming the file
grep -q "s.kv" err.txt || fail "error does not name the file: $(cat err.txt)"
[ ! -e s.kv ] || fail "get created the store"
expect 0 $K put a 1
expect 0 $K put b 22
expect 0 $K get a; [ "$(cat out.txt)" = "1" ] || fail "get a printed $(cat out.txt)"
expect 1 $K get zz
expect 0 $K count; [ "$(cat out.txt)" = "2" ] || fail "count printed $(cat out.txt)"
expect 0 $K keys; [ "$(sort out.txt | tr '\n' ,)" = "a,b," ] || fail "keys printed $(cat out.txt)"
expect 0 $K del a
expect 1 $K del a
expect 1 $K get a
expect 0 $K stats; grep -q "^keys  *1$" out.txt || fail "stats: $(cat out.txt)"
expect 0 $K stats --json; grep -q '"keys": 1' out.txt || fail "stats --json: $(cat out.txt)"
expect 0 $K check; [ "$(cat out.txt)" = "ok" ] || fail "check: $(cat out.txt)"
expect 0 $K check --json; grep -q '"ok": true' out.txt || fail "check --json"
expect 0 $K compact
# --- shared state: incr, cas, insert, wait
C="$KVTOOL -f c.kv"
expect 0 $C incr n; [ "$(cat out.txt)" = "1" ] || fail "incr printed $(cat out.txt)"
expect 0 $C incr n 41; [ "$(cat out.txt)" = "42" ] || fail "incr 41 printed $(cat out.txt)"
expect 0 $C incr n -50; [ "$(cat out.txt)" = "-8" ] || fail "incr -50 printed $(cat out.txt)"
expect 2 $C incr n x
expect 0 $C put word hello
expect 2 $C incr word; grep -q "not a decimal" err.txt || fail "incr of text: $(cat err.txt)"
expect 0 $C get word; [ "$(cat out.txt)" = "hello" ] || fail "a failed incr changed the value"
expect 0 $C put n 9223372036854775807
expect 2 $C incr n                    # overflow
expect 0 $C cas word hello bye
expect 1 $C cas word hello again
expect 0 $C get word; [ "$(cat out.txt)" = "bye" ] || fail "cas: $(cat out.txt)"
expect 0 $C cas new --absent first
expect 1 $C cas new --absent second
expect 0 $C cas new first --erase
expect 1 $C get new
expect 2 $C cas word bye              # neither NEW nor --erase
expect 0 $C insert once 1
expect 1 $C insert once 2
expect 0 $C get once; [ "$(cat out.txt)" = "1" ] || fail "insert replaced a value"
expect 0 $C stats --json; grep -q '"change_count": ' out.txt || fail "stats lacks change_count"
before=$($C stats --json | sed -n 's/.*"change_count": \([0-9]*\).*/\1/p')
expect 1 $C wait --timeout 50; [ "$(cat out.txt)" = "$before" ] || fail "wait --timeout printed $(cat out.txt)"
( sleep 0.3; $C put wake up ) &
expect 0 $C wait --timeout 60000; [ "$(cat out.txt)" = "$((before + 1))" ] || fail "wait printed $(cat out.txt), before $before"
wait
expect 0 $C wait --since 0 --timeout 0   # already past 0
KVSTORE_FILE=s.kv expect 0 $KVTOOL get b; [ "$(cat out.txt)" = "22" ] || fail "KVSTORE_FILE not used"
# --- binary values through stdin, hex keys, a 5 MiB value
printf 'x\0y\377z' > bin.in
expect 0 sh -c "$K put bin - < bin.in"
expect 0 $K get bin; printf 'x\0y\377z\n' > bin.want; same out.txt bin.want "binary value"
expect 0 $K --hex put 00ff61 6263; expect 0 $K --hex get 00ff61; [ "$(cat out.txt)" = "6263" ] || fail "hex get"
expect 2 $K --hex put 0g 00
head -c 5242880 /dev/urandom > big.in
expect 0 sh -c "$K put big - < big.in"
expect 0 $K get big; head -c 5242880 out.txt > big.out; same big.in big.out "5 MiB value"
# --- bad files: exit 3 with one line naming the file
: > empty.kv; expect 3 $KVTOOL -f empty.kv get k; grep -q "empty.kv" err.txt || fail "names the file"
[ "$(wc -l < err.txt)" = 1 ] || fail "error is not one line: $(cat err.txt)"
head -c 100000 /dev/urandom > random.kv; expect 3 $KVTOOL -f random.kv get k
mkdir dir.kv; expect 3 $KVTOOL -f dir.kv get k
head -c 65536 /dev/zero > zero.kv; expect 3 $KVTOOL -f zero.kv count
head -c 20000 s.kv > trunc.kv; expect 3 $KVTOOL -f trunc.kv count
expect 3 $KVTOOL -f random.kv put k v; expect 3 $KVTOOL -f random.kv check
# --- files that once crashed kvtool (tests/corrupt/regress): a damaged allocator
# is refused (exit 3) before anything allocates through it; the two damaged
# power-cut files hold no intact chunk, so recovery rightly leaves an empty store.
regress() {  # regress FILE STATUS COMMAND...: on a fresh copy
  local f=$1 want=$2; shift 2
  rm -f rg.kv rg.kv.lock; cp "$REGRESS/$f" rg.kv; chmod u+w rg.kv
  expect "$want" $KVTOOL -f rg.kv "$@"
}
for args in count "get a" "put a b" "del a" compact check; do
  regress allocator-metadata-trusted.kv 3 $args
  # Made before headers were sealed: its unsealed state now sends it to a full
  # rebuild first, which finds the damage among the records.
  grep -Eq "allocator|indexed keys have no record" err.txt || fail "allocator-metadata-trusted.kv $args: $(cat err.txt)"
done
for f in recovery-null-index-table.kv recovery-index-table-out-of-map.kv; do
  regress "$f" 0 count; [ "$(cat out.txt)" = 0 ] || fail "$f: count printed $(cat out.txt)"
  regress "$f" 0 put a b; expect 0 $KVTOOL -f rg.kv get a; [ "$(cat out.txt)" = b ] || fail "$f: get a"
  expect 0 $KVTOOL -f rg.kv check
done
if [ "$(id -u)" != 0 ]; then
  cp s.kv ro.kv; chmod 000 ro.kv; expect 4 $KVTOOL -f ro.kv get b
else
  echo "skip: permission test (running as root)"
fi
# --- dump / load round trip of every byte value
rm -f r.kv r.kv.lock
python3 - <<'PY' > all.dump
import sys
keys = [bytes([i]) for i in range(256)] + [b"", bytes(range(256))]
print("VERSION=3\nformat=bytevalue\ntype=btree\nHEADER=END")
for i, k in enumerate(keys):
    v = bytes(range(256))[: i % 257] if i % 3 else b""
    print(" " + k.hex()); print(" " + v.hex())
print("DATA=END")
PY
expect 0 $KVTOOL -f r.kv load all.dump
expect 0 $KVTOOL -f r.kv count; [ "$(cat out.txt)" = "258" ] || fail "loaded $(cat out.txt) pairs"
expect 0 $KVTOOL -f r.kv dump r.dump
expect 0 $KVTOOL -f r2.kv load r.dump
expect 0 $KVTOOL -f r2.kv dump r2.dump
sort_pairs() { awk 'NR>1 && /^ /{ if (k=="") k=$0; else { print k "|" $0; k="" } }' "$1" | sort; }
sort_pairs all.dump > a.pairs; sort_pairs r2.dump > b.pairs; same a.pairs b.pairs "dump/load round trip"
# --- malformed dumps: exit 2, a line number, nothing loaded
expect 0 $KVTOOL -f m.kv put keep me
for bad in $'VERSION=3\nformat=bytevalue\nHEADER=END\n 6z\n 00\nDATA=END' \
           $'VERSION=3\nformat=bytevalue\nHEADER=END\n 616\n 00\nDATA=END' \
           $'VERSION=3\nformat=bytevalue\n 61\n 62\nDATA=END' \
           $'VERSION=3\nformat=bytevalue\nHEADER=END\n 61\n 62' \
           $'VERSION=3\nformat=bytevalue\nHEADER=END\n 61'; do
  printf '%s\n' "$bad" > bad.dump
  expect 2 $KVTOOL -f m.kv load bad.dump
  grep -q "line [0-9]" err.txt || fail "no line number: $(cat err.txt)"
  expect 0 $KVTOOL -f m.kv count; [ "$(cat out.txt)" = "1" ] || fail "a malformed load stored pairs"
done
# --- interop: LMDB (mdb_load / mdb_dump) and Berkeley DB (db5.3_load / db5.3_dump)
need mdb_load; need mdb_dump; need db5.3_load; need db5.3_dump
# LMDB refuses the empty key (MDB_BAD_VALSIZE): its round trip goes without it.
cp r.kv rl.kv; expect 0 $KVTOOL -f rl.kv del ""
expect 0 $KVTOOL -f rl.kv dump rl.dump
awk -F'|' '$1 != " "' a.pairs > al.pairs
expect 0 mdb_load -n -f rl.dump lmdb.mdb
expect 0 mdb_dump -n -f from_lmdb.dump lmdb.mdb
expect 0 $KVTOOL -f l.kv load from_lmdb.dump
expect 0 $KVTOOL -f l.kv dump l.dump; sort_pairs l.dump > l.pairs; same al.pairs l.pairs "via LMDB (bytevalue)"
expect 0 mdb_dump -n -p -f from_lmdb_p.dump lmdb.mdb
expect 0 $KVTOOL -f lp.kv load from_lmdb_p.dump
expect 0 $KVTOOL -f lp.kv dump lp.dump; sort_pairs lp.dump > lp.pairs; same al.pairs lp.pairs "via LMDB (print)"
expect 0 $KVTOOL -f r.kv dump --bdb r_bdb.dump
expect 0 db5.3_load -f r_bdb.dump bdb.db
expect 0 db5.3_dump -f from_bdb.dump bdb.db
expect 0 $KVTOOL -f b.kv load from_bdb.dump
expect 0 $KVTOOL -f b.kv dump b.dump; sort_pairs b.dump > b2.pairs; same a.pairs b2.pairs "via Berkeley DB (bytevalue)"
expect 0 db5.3_dump -p -f from_bdb_p.dump bdb.db
expect 0 $KVTOOL -f bp.kv load from_bdb_p.dump
expect 0 $KVTOOL -f bp.kv dump bp.dump; sort_pairs bp.dump > bp.pairs; same a.pairs bp.pairs "via Berkeley DB (print)"
# --- read permission only: root's store, files 0644, directory 0555, read as nobody (uid/gid
# 65534). Root bypasses permissions, so the drop is what makes this a test.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
  chmod 755 "$T"; mkdir ro
  # nobody may not reach the build tree (a clone under /root): it runs a copy of kvtool and
  # of the library it loads (its RUNPATH yields to LD_LIBRARY_PATH).
  mkdir bin; cp "$KVTOOL" bin/kvtool
  lib=$(ldd "$KVTOOL" | awk '/libkvstore/ {print $3}')
  [ -z "$lib" ] || cp -L "$lib" "bin/$(basename "$lib")"
  chmod -R a+rX bin
  R="env LD_LIBRARY_PATH=$T/bin $T/bin/kvtool -f ro/s.kv"
  NB="setpriv --reuid=65534 --regid=65534 --clear-groups"
  expect 0 $R put k v1; expect 0 $R put j "two words"
  chmod 644 ro/s.kv ro/s.kv.lock; chmod 555 ro
  expect 1 $NB test -w ro/s.kv.lock; expect 1 $NB test -w ro   # really no write permission
  expect 0 $NB $R get k; [ "$(cat out.txt)" = "v1" ] || fail "get as nobody printed $(cat out.txt)"
  expect 1 $NB $R get nope
  expect 0 $NB $R count; [ "$(cat out.txt)" = "2" ] || fail "count as nobody printed $(cat out.txt)"
  expect 0 $NB $R keys; [ "$(sort out.txt | tr '\n' ,)" = "j,k," ] || fail "keys as nobody printed $(cat out.txt)"
  expect 0 $NB $R stats; grep -q "^keys  *2$" out.txt || fail "stats as nobody: $(cat out.txt)"
  expect 0 $NB $R check; [ "$(cat out.txt)" = "ok" ] || fail "check as nobody: $(cat out.txt)"
  expect 0 $NB $R dump; grep -q "^ 74776f20776f726473$" out.txt || fail "dump as nobody lacks \"two words\""
  expect 4 $NB $R put k v2; grep -q "ro/s.kv" err.txt || fail "put as nobody: $(cat err.txt)"
  expect 4 $NB $R del k
  expect 4 $NB $R compact
  expect 4 $NB $R check --repair
  expect 0 $R get k; [ "$(cat out.txt)" = "v1" ] || fail "a refused write as nobody changed the value"
  # A reader as nobody sees a root writer's change (wait) and reads the store while root writes.
  expect 0 $R stats --json; n0=$(grep '"change_count"' out.txt | tr -dc 0-9)
  $NB $R wait --since "$n0" --timeout 20000 >wait.txt 2>&1 & waiter=$!
  ( for i in $(seq 1 200); do $R put "w$i" "$i" || exit 1; done ) & writer=$!
  for i in $(seq 1 20); do
    expect 0 $NB $R get k; [ "$(cat out.txt)" = "v1" ] || fail "get as nobody during writes printed $(cat out.txt)"
  done
  wait $writer || fail "the root writer failed"
  wait $waiter; [ $? = 0 ] || fail "wait as nobody: $(cat wait.txt)"
  [ "$(cat wait.txt)" -gt "$n0" ] 2>/dev/null || fail "wait as nobody printed $(cat wait.txt), after $n0"
  expect 0 $NB $R count; [ "$(cat out.txt)" = "202" ] || fail "count as nobody after the writes: $(cat out.txt)"
  expect 0 $R compact
  expect 0 $NB $R get w200; [ "$(cat out.txt)" = "200" ] || fail "get as nobody after compact: $(cat out.txt)"
  # No lock file, and nobody may make one: a cleanly closed store is read from the data file alone.
  chmod 755 ro; rm ro/s.kv.lock; chmod 555 ro
  expect 0 $NB $R get k; [ "$(cat out.txt)" = "v1" ] || fail "get without a lock file printed $(cat out.txt)"
  [ ! -e ro/s.kv.lock ] || fail "a reader as nobody made a lock file"
  chmod 755 ro
else
  echo "kvtool tests: read-permission-only checks skipped (need root and setpriv)"
fi
echo "kvtool tests: $checks checks, $failures failures"
[ "$failures" = 0 ]
