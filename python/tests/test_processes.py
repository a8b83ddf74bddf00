"""Several processes on one file: shelve, concurrent writers, and a writer
killed with SIGKILL that loses no acknowledged write."""
import multiprocessing
import os
import random
import shelve
import signal
import subprocess
import sys

import kvstore
import workers

HERE = os.path.dirname(os.path.abspath(__file__))


def test_shelve_over_a_kvstore_file(path):
    with shelve.Shelf(kvstore.open(path, "c")) as sh:
        sh["list"] = [1, 2, {"three": 3}]
        sh["é"] = ("tuple", 4.5)
    with shelve.Shelf(kvstore.open(path, "r")) as sh:
        assert sh["list"] == [1, 2, {"three": 3}]
        assert sh["é"] == ("tuple", 4.5)
        assert sorted(sh.keys()) == ["list", "é"]
    with shelve.Shelf(kvstore.open(path, "w"), writeback=True) as sh:
        sh["list"].append(5)
    with shelve.Shelf(kvstore.open(path, "r")) as sh:
        assert sh["list"][-1] == 5


def test_two_spawned_processes_write_one_file_at_once(path):
    kvstore.open(path, "c").close()
    ctx = multiprocessing.get_context("spawn")
    n = 2000
    procs = [ctx.Process(target=workers.write_many, args=(path, p, n)) for p in ("p1", "p2")]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
        assert p.exitcode == 0
    with kvstore.open(path, "r") as db:
        assert db["counter"] == str(2 * n).encode()
        for prefix in ("p1", "p2"):
            for i in range(n):
                assert db["%s/%d" % (prefix, i)] == ("%s-%d" % (prefix, i)).encode()
        assert len(db) == 2 * n + 1
        assert db.check() == []


def test_a_killed_writer_loses_no_acknowledged_write(path):
    rng = random.Random(12)
    for _ in range(5):
        child = subprocess.Popen([sys.executable, os.path.join(HERE, "workers.py"), path],
                                 stdout=subprocess.PIPE, text=True)
        stop_after = rng.randrange(50, 1500)
        acked = -1
        for line in child.stdout:
            acked = int(line)
            if acked >= stop_after:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
        child.stdout.close()
        assert acked >= stop_after
        # Recovery runs at this open if the kill caught the writer mid-change.
        with kvstore.open(path, "w") as db:
            for i in range(acked + 1):
                assert db["k%d" % i] == ("v%d" % i).encode()
                assert db["t%d/a" % i] == b"x" and db["t%d/b" % i] == b"y"
            # The unacknowledged transaction after the last one: all or nothing.
            nxt = acked + 1
            assert (("t%d/a" % nxt) in db) == (("t%d/b" % nxt) in db)
            assert db.check() == []
            db.clear()
