# The README's Python example, run by test_readme_example.py. Keep it identical
# to the README.
import sys

import kvstore

path = sys.argv[1] if len(sys.argv) > 1 else "data.kv"

with kvstore.open(path, "c") as db:            # dbm flags: r w c n
    db["key"] = "value"                        # str is stored as UTF-8 bytes
    db[b"raw\0bytes"] = bytearray(b"\x00\x01") # any bytes-like key or value
    assert db["key"] == b"value" and "key" in db
    del db["key"]

    hits = db.increment("hits")                # atomic across processes
    if db.insert("leader", "me"):              # only if absent
        pass
    db.compare_exchange("state", None, "idle") # None: absent / erase
    db.update({"a": "1", "b": "2"})            # one atomic batch

    with db.transaction() as tx:               # all or nothing
        tx["a"] = str(int(tx["a"]) - 1)
        tx["b"] = str(int(tx["b"]) + 1)

    with db.view() as v:                       # one committed state, no copy
        a = v.get("a")                         # a memoryview into the file,
        total = int(bytes(a)) + int(bytes(v["b"]))   # released when the block ends
    seen = db.change_count()
    db.wait_for_change(seen, timeout=0.01)     # sleeps until any process commits
    print(hits, total, sorted(db.keys())[:2], db.stats()["keys"], db.check())
