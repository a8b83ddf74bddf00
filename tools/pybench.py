#!/usr/bin/env python3
"""Python get/put throughput: kvstore against py-lmdb (python3-lmdb) and
dbm.gnu (python3-gdbm), in one run, on the same keys.

    PYTHONPATH=build/python python3 tools/pybench.py [-n 200000] [--rounds 3] [--dir /tmp]

Keys of 16 bytes and values of 100 bytes, in random order; every get checks
its answer. Each engine puts the N keys into a fresh file, then reads them
all back (hits) and reads N absent keys (misses). The engines take turns
round by round and the best round of each is reported (the least disturbed
by the machine's other work). What each put costs:
  kvstore   db[k] = v: one locked, crash-safe append (Sync::none: survives
            kill -9, not a power cut), visible to every process at once.
  lmdb      one write transaction per put (sync=False, metasync=False,
            writemap=True: as crash-safe as kvstore's Sync::none), and one
            read transaction per get; "lmdb, 1 txn" reads all in one
            transaction, as a program that batches would.
  dbm.gnu   db[k] = v on a file opened 'nf' (no sync, one process: a writer
            holds the file exclusively).
"""
import argparse
import os
import random
import shutil
import sys
import tempfile
import time

import kvstore

try:
    import lmdb
except ImportError:  # python3-lmdb
    lmdb = None
try:
    import dbm.gnu as gnu
except ImportError:  # python3-gdbm
    gnu = None


def timed(fn, n):
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e9 / n


def time_mapping(db, keys, vals, misses):
    """put, get-hit and get-miss through the dbm mapping interface (kvstore and dbm.gnu alike)."""

    def put():
        for k, v in zip(keys, vals):
            db[k] = v

    def get():
        for k, v in zip(keys, vals):
            assert db[k] == v

    def miss():
        for k in misses:
            assert db.get(k) is None

    return {"put": timed(put, len(keys)), "get-hit": timed(get, len(keys)),
            "get-miss": timed(miss, len(misses))}


def bench_kvstore(d, keys, vals, misses):
    db = kvstore.open(os.path.join(d, "kv.kv"), "n")
    r = time_mapping(db, keys, vals, misses)

    def view_get():
        with db.view() as view:
            for k, v in zip(keys, vals):
                assert view.get(k) == v

    r["view get-hit"] = timed(view_get, len(keys))
    db.close()
    return {"kvstore": r}


def bench_lmdb(d, keys, vals, misses):
    env = lmdb.open(os.path.join(d, "lmdb"), map_size=1 << 32, sync=False, metasync=False,
                    writemap=True, lock=True)
    r, r1 = {}, {}

    def put():
        for k, v in zip(keys, vals):
            with env.begin(write=True) as txn:
                txn.put(k, v)

    def get():
        for k, v in zip(keys, vals):
            with env.begin() as txn:
                assert txn.get(k) == v

    def miss():
        for k in misses:
            with env.begin() as txn:
                assert txn.get(k) is None

    def get_one_txn():
        with env.begin() as txn:
            for k, v in zip(keys, vals):
                assert txn.get(k) == v

    def put_one_txn():
        with env.begin(write=True) as txn:
            for k, v in zip(keys, vals):
                txn.put(k, v)

    r["put"] = timed(put, len(keys))
    r["get-hit"] = timed(get, len(keys))
    r["get-miss"] = timed(miss, len(misses))
    r1["get-hit"] = timed(get_one_txn, len(keys))
    r1["put"] = timed(put_one_txn, len(keys))  # overwrites: same keys
    env.close()
    return {"lmdb": r, "lmdb, 1 txn": r1}


def bench_gnu(d, keys, vals, misses):
    db = gnu.open(os.path.join(d, "gdbm"), "nf")
    r = time_mapping(db, keys, vals, misses)
    db.close()
    return {"dbm.gnu": r}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=200000, help="keys (default 200000)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--dir", default=None, help="where the files go (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    keys = [b"%016x" % rng.getrandbits(64) for _ in range(a.n)]
    vals = [rng.randbytes(100) for _ in range(a.n)]
    misses = [b"%016x" % rng.getrandbits(64) + b"-" for _ in range(a.n)]  # never stored
    engines = [bench_kvstore]
    if lmdb:
        engines.append(bench_lmdb)
    if gnu:
        engines.append(bench_gnu)
    print("pybench: n=%d keys (16 B), values 100 B, %d rounds, seed %d, python %s, lmdb %s" %
          (a.n, a.rounds, a.seed, sys.version.split()[0], lmdb.version() if lmdb else "absent"))
    best = {}
    for _ in range(a.rounds):
        order = list(engines)
        rng.shuffle(order)
        for engine in order:
            d = tempfile.mkdtemp(prefix="pybench-", dir=a.dir)
            try:
                for name, res in engine(d, keys, vals, misses).items():
                    for op, ns in res.items():
                        cur = best.setdefault(name, {})
                        cur[op] = min(ns, cur.get(op, float("inf")))
            finally:
                shutil.rmtree(d)
    ops = ["put", "get-hit", "get-miss", "view get-hit"]
    print("%-14s" % "ns/op (best)" + "".join("%14s" % op for op in ops))
    for name, res in best.items():
        print("%-14s" % name + "".join("%14s" % ("%.0f" % res[op] if op in res else "-") for op in ops))
    print("ops/s: " + ", ".join("%s put %.2fM get %.2fM" % (n, 1e3 / r["put"], 1e3 / r["get-hit"])
                               for n, r in best.items()))


if __name__ == "__main__":
    main()
