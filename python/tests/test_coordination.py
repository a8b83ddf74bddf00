"""Beyond dbm: the store's coordination calls, transactions, views, bytes-like
input, the GIL released, fork() and stats/check."""
import os
import threading

import pytest

import kvstore


def test_increment(path):
    with kvstore.open(path, "c") as db:
        assert db.increment("c") == 1
        assert db.increment("c", 10) == 11
        assert db.increment("c", -20) == -9
        assert db["c"] == b"-9"
        db["text"] = "abc"
        with pytest.raises(kvstore.error) as e:
            db.increment("text")
        assert e.value.code == "invalid_argument"
        db["max"] = str(2**63 - 1)
        with pytest.raises(kvstore.error):
            db.increment("max")
        with pytest.raises((OverflowError, TypeError)):
            db.increment("c", 2**64)


def test_compare_exchange(path):
    with kvstore.open(path, "c") as db:
        assert db.compare_exchange("s", None, "idle")
        assert not db.compare_exchange("s", None, "busy")
        assert not db.compare_exchange("s", "busy", "x")
        assert db.compare_exchange("s", "idle", b"busy")
        assert db["s"] == b"busy"
        assert db.compare_exchange("s", "busy", None)
        assert "s" not in db


def test_insert(path):
    with kvstore.open(path, "c") as db:
        assert db.insert("leader", "me")
        assert not db.insert("leader", "you")
        assert db["leader"] == b"me"


def test_update_is_one_atomic_batch(path):
    with kvstore.open(path, "c") as db:
        before = db.change_count()
        db.update({"a": "1", "b": "2"}, c="3")
        db.update([("d", b"4"), (b"e", bytearray(b"5"))])
        assert db.change_count() == before + 2
        assert sorted(db.items()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3"), (b"d", b"4"), (b"e", b"5")]
        with pytest.raises(TypeError):
            db.update({"ok": "1", "bad": 2})
        assert "ok" not in db  # refused before anything was written


def test_transaction_commits_at_the_end(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "100", "old": "x"})
        before = db.change_count()
        with db.transaction() as tx:
            a = int(tx["a"])
            tx["a"] = str(a - 10)
            tx["b"] = "10"
            assert tx["b"] == b"10" and "b" in tx  # sees its own writes
            del tx["old"]
            assert "old" not in tx and tx.get("old") is None
            with pytest.raises(KeyError):
                tx["nope"]
            with pytest.raises(KeyError):
                del tx["nope"]
        assert db["a"] == b"90" and db["b"] == b"10" and "old" not in db
        assert db.change_count() == before + 1


def test_transaction_exception_writes_nothing(path):
    with kvstore.open(path, "c") as db:
        db["a"] = "1"
        with pytest.raises(ZeroDivisionError):
            with db.transaction() as tx:
                tx["a"] = "2"
                tx["b"] = "3"
                1 / 0
        assert db["a"] == b"1" and "b" not in db


def test_transaction_refuses_use_of_the_db_inside_and_after(path):
    with kvstore.open(path, "c") as db:
        with db.transaction() as tx:
            with pytest.raises(kvstore.error):
                db["x"] = "y"  # would wait for the lock this block holds
            tx["x"] = "z"
        assert db["x"] == b"z"
        with pytest.raises(kvstore.error):
            tx["late"] = "1"


def test_view_memoryviews_are_zero_copy_and_released(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "alpha", "b": b"\0beta"})
        with db.view() as v:
            a = v.get("a")
            assert isinstance(a, memoryview) and a.readonly
            assert a == b"alpha" and bytes(v["b"]) == b"\0beta"
            assert v.get("none") is None and "a" in v and len(v) == 2
            with pytest.raises(TypeError):
                a[0] = 0  # read-only
        with pytest.raises(ValueError):
            a.tobytes()  # released with the block
        with pytest.raises(kvstore.error):
            v.get("a")


def test_a_slice_that_outlives_the_view_keeps_the_lock_until_dropped(path):
    with kvstore.open(path, "c") as db:
        db["a"] = "alpha"
        with pytest.warns(ResourceWarning):
            with db.view() as v:
                part = v.get("a")[1:3]
        assert bytes(part) == b"lp"  # still valid: the lock is still held
        done = threading.Event()
        writer = threading.Thread(target=lambda: (db.__setitem__("a", "new"), done.set()))
        writer.start()
        assert not done.wait(0.05)  # the writer waits for the read lock
        del part  # the last buffer goes: the view ends, the writer proceeds
        writer.join()
        assert db["a"] == b"new"


def test_bytes_like_input(path):
    import array
    with kvstore.open(path, "c") as db:
        db[bytearray(b"ba")] = memoryview(b"mv")
        db[memoryview(b"xmvx")[1:3]] = array.array("B", [1, 2])
        assert db["ba"] == b"mv"
        assert db["mv"] == b"\x01\x02"


def test_gil_is_released_while_a_call_waits_for_the_lock(path):
    # A transaction on another thread holds the write lock; this thread's put
    # waits for it. Unless that wait releases the GIL, the other thread can
    # never reach its commit, and the put ends in `busy`.
    with kvstore.open(path, "c") as db, kvstore.open(path, "w") as other:
        inside, go_on = threading.Event(), threading.Event()

        def hold():
            with db.transaction() as tx:
                inside.set()
                go_on.wait()
                tx["k"] = "from transaction"

        t = threading.Thread(target=hold)
        t.start()
        inside.wait()
        go_on.set()
        other["k2"] = "after"
        t.join()
        assert other["k"] == b"from transaction"


def test_wait_for_change_is_woken_by_another_thread(path):
    with kvstore.open(path, "c") as db:
        seen = db.change_count()
        assert db.wait_for_change(seen, 0.01) == seen  # nothing changed
        t = threading.Timer(0.01, lambda: db.__setitem__("k", "v"))
        t.start()
        assert db.wait_for_change(seen) > seen  # no timeout: the put ends it
        t.join()
        with pytest.raises(ValueError):
            db.wait_for_change(seen, -1)


def test_stats_and_check(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "1", "bb": "22"})
        st = db.stats()
        assert st["keys"] == 2 and st["key_bytes"] == 3 and st["value_bytes"] == 3
        assert st["processes"] >= 1 and st["sync"] == "none"
        assert st["change_count"] == db.change_count()
        assert db.check() == []


def test_a_handle_used_in_a_forked_child_is_a_clear_error(path):
    with kvstore.open(path, "c") as db:
        db["k"] = "v"
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
            try:
                db["k"]
                msg = b"no error"
            except kvstore.error as e:
                msg = str(e).encode()
            db.close()  # leaves the parent's locks alone
            try:
                with kvstore.open(path, "w") as fresh:  # a fresh open works
                    fresh["child"] = "yes"
            except Exception as e:  # noqa: BLE001 -- reported to the parent
                msg += b" / reopen failed: " + str(e).encode()
            os.write(w, msg)
            os._exit(0)
        os.close(w)
        msg = os.read(r, 4096).decode()
        os.close(r)
        assert os.waitpid(pid, 0)[1] == 0
        assert "fork" in msg and "reopen failed" not in msg, msg
        assert db["child"] == b"yes"  # the parent's handle still works
        db["parent"] = "still"
