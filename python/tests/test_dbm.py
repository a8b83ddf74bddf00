"""The dbm interface, one behaviour at a time (as dbm.gnu / dbm.open document it)."""
import collections.abc
import errno
import os
import pickle

import pytest

import kvstore


def test_error_is_an_oserror():
    assert issubclass(kvstore.error, OSError)


@pytest.mark.parametrize("flag", ["r", "w"])
def test_missing_file_without_create_is_enoent_with_the_name(path, flag):
    with pytest.raises(kvstore.error) as e:
        kvstore.open(path, flag)
    assert e.value.errno == errno.ENOENT
    assert e.value.filename == path
    assert not os.path.exists(path)


def test_default_flag_is_read_only(path):
    kvstore.open(path, "c").close()
    db = kvstore.open(path)
    with pytest.raises(kvstore.error):
        db["k"] = "v"
    db.close()


def test_c_creates_and_keeps(path):
    with kvstore.open(path, "c") as db:
        db["k"] = "v"
    with kvstore.open(path, "c") as db:
        assert db["k"] == b"v"


def test_w_opens_existing_read_write(path):
    kvstore.open(path, "c").close()
    with kvstore.open(path, "w") as db:
        db["k"] = "v"
        assert db["k"] == b"v"


def test_n_always_starts_empty(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "1", "b": "2"})
    with kvstore.open(path, "n") as db:
        assert len(db) == 0
        db["c"] = "3"
    with kvstore.open(path, "r") as db:
        assert db.keys() == [b"c"]


def test_bad_flag(path):
    with pytest.raises(kvstore.error):
        kvstore.open(path, "x")
    with pytest.raises(kvstore.error):
        kvstore.open(path, "cz")
    kvstore.open(path, "cfsu").close()  # gdbm's modifiers are accepted


def clean_flag(path):
    with open(path, "rb") as f:
        f.seek(132)  # FileHeader::clean (FORMAT.md)
        return int.from_bytes(f.read(4), "little")


def test_fast_mode_leaves_the_close_unsynced(path):
    with kvstore.open(path, "cf") as db:
        db[b"k"] = b"v"
    assert clean_flag(path) == 0  # not synced and marked clean
    with kvstore.open(path, "w") as db:  # the same boot: used as it is
        assert db[b"k"] == b"v"
        db[b"k2"] = b"v2"
    assert clean_flag(path) != 0


def test_mode_applies_to_a_new_file(path):
    old = os.umask(0o022)
    try:
        kvstore.open(path, "c", 0o640).close()
        assert os.stat(path).st_mode & 0o777 == 0o640
        other = path + "2"
        kvstore.open(other, "c", 0o666).close()
        assert os.stat(other).st_mode & 0o777 == 0o644  # the umask applies
        os.chmod(path, 0o600)
        kvstore.open(path, "c", 0o666).close()  # an existing file keeps its mode
        assert os.stat(path).st_mode & 0o777 == 0o600
    finally:
        os.umask(old)


def test_filename_may_be_a_pathlike(tmp_path):
    with kvstore.open(tmp_path / "p.kv", "c") as db:
        db["k"] = "v"


def test_is_a_mutable_mapping(path):
    with kvstore.open(path, "c") as db:
        assert isinstance(db, collections.abc.MutableMapping)
        assert isinstance(db, collections.abc.Mapping)


def test_getitem_setitem_bytes_and_str(path):
    with kvstore.open(path, "c") as db:
        db[b"k"] = b"v"
        db["é"] = "ü"
        assert db[b"k"] == b"v"
        assert db["k"] == b"v"
        assert db["é".encode("utf-8")] == "ü".encode("utf-8")
        assert isinstance(db["é"], bytes)
        db[b"\0bin\0"] = b"\0\xff"
        assert db[b"\0bin\0"] == b"\0\xff"
        db[b""] = b""  # the empty key and value
        assert db[b""] == b""


def test_missing_key_is_keyerror(path):
    with kvstore.open(path, "c") as db:
        with pytest.raises(KeyError):
            db["nope"]
        with pytest.raises(KeyError):
            del db["nope"]


def test_del(path):
    with kvstore.open(path, "c") as db:
        db["k"] = "v"
        del db["k"]
        assert "k" not in db


def test_in_and_len(path):
    with kvstore.open(path, "c") as db:
        assert len(db) == 0
        db["a"] = "1"
        db["b"] = "2"
        assert "a" in db and b"b" in db and "c" not in db
        assert len(db) == 2


def test_iteration_and_keys_list(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "1", "b": "2", "c": "3"})
        assert sorted(db) == [b"a", b"b", b"c"]
        keys = db.keys()
        assert isinstance(keys, list) and sorted(keys) == [b"a", b"b", b"c"]
        assert sorted(db.items()) == [(b"a", b"1"), (b"b", b"2"), (b"c", b"3")]
        assert sorted(db.values()) == [b"1", b"2", b"3"]


def test_get_and_setdefault(path):
    with kvstore.open(path, "c") as db:
        assert db.get("k") is None
        assert db.get("k", b"d") == b"d"
        assert db.setdefault("k", b"first") == b"first"
        assert db.setdefault("k", b"second") == b"first"
        assert db.setdefault("e") == b""
        assert db.get("k") == b"first"


def test_pop_popitem_clear(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "1", "b": "2", "c": "3"})
        assert db.pop("a") == b"1"
        assert db.pop("a", None) is None
        k, v = db.popitem()
        assert k not in db
        db.clear()
        assert len(db) == 0


def test_eq_as_a_mapping(path):
    with kvstore.open(path, "c") as db:
        db.update({"a": "1"})
        assert db == {b"a": b"1"}
        assert db != {b"a": b"2"}


def test_close_twice_is_harmless(path):
    db = kvstore.open(path, "c")
    db.close()
    db.close()
    assert db.closed


def test_context_manager_closes(path):
    with kvstore.open(path, "c") as db:
        db["k"] = "v"
    assert db.closed
    with pytest.raises(kvstore.error):
        db["k"]


@pytest.mark.parametrize("use", [
    lambda db: db["k"], lambda db: db.__setitem__("k", "v"), lambda db: db.__delitem__("k"),
    lambda db: "k" in db, lambda db: len(db), lambda db: db.keys(), lambda db: list(db),
    lambda db: db.get("k"), lambda db: db.sync(), lambda db: db.reorganize(), lambda db: db.increment("c"),
    lambda db: db.transaction(), lambda db: db.view(), lambda db: db.stats(), lambda db: db.check(),
])
def test_any_use_after_close_is_kvstore_error(path, use):
    db = kvstore.open(path, "c")
    db.close()
    with pytest.raises(kvstore.error):
        use(db)


@pytest.mark.parametrize("write", [
    lambda db: db.__setitem__("k", "v"), lambda db: db.__delitem__("a"), lambda db: db.clear(),
    lambda db: db.update({"x": "y"}), lambda db: db.reorganize(), lambda db: db.increment("c"),
    lambda db: db.insert("n", "v"), lambda db: db.compare_exchange("a", "1", "2"),
    lambda db: db.setdefault("new", b"v"),
])
def test_writing_through_r_is_kvstore_error(path, write):
    with kvstore.open(path, "c") as db:
        db["a"] = "1"
    with kvstore.open(path, "r") as db:
        with pytest.raises(kvstore.error) as e:
            write(db)
        assert e.value.code == "read_only"
        assert db["a"] == b"1"


def test_writing_through_r_in_a_transaction(path):
    kvstore.open(path, "c").close()
    with kvstore.open(path, "r") as db:
        with pytest.raises(kvstore.error):
            with db.transaction() as tx:
                tx["k"] = "v"


def test_sync(path):
    with kvstore.open(path, "cs") as db:  # gdbm's 's': every write synced
        db["k"] = "v"
        assert db.stats()["sync"] == "always"
        db.sync()


def test_reorganize_shrinks_the_file(path):
    with kvstore.open(path, "c") as db:
        for i in range(20000):
            db[b"k%d" % i] = b"v" * 100
        for i in range(20000):
            del db[b"k%d" % i]
        before = os.path.getsize(path)
        db.reorganize()
        assert os.path.getsize(path) < before
        assert len(db) == 0


def test_other_key_types_are_typeerror(path):
    with kvstore.open(path, "c") as db:
        with pytest.raises(TypeError):
            db[1] = b"v"
        with pytest.raises(TypeError):
            db[b"k"] = 1
        with pytest.raises(TypeError):
            1 in db


def test_foreign_file_is_kvstore_error(path):
    with open(path, "wb") as f:
        f.write(b"x" * 8192)
    with pytest.raises(kvstore.error) as e:
        kvstore.open(path, "w")
    assert e.value.code == "not_a_store"


def test_pickles_as_path_and_flag(path):
    with kvstore.open(path, "n") as db:
        db["k"] = "v"
        fn, args = db.__reduce__()
        assert args == (path, "c")  # 'n' would empty the store again on load
        again = pickle.loads(pickle.dumps(db))
        assert again["k"] == b"v"
        assert again.filename == path
        again.close()


def test_same_answers_as_dbm_gnu(tmp_path):
    gnu = pytest.importorskip("dbm.gnu")
    results = []
    for opener in (gnu.open, kvstore.open):
        db = opener(str(tmp_path / opener.__module__), "c")
        out = []
        db["a"] = "1"
        db[b"b"] = b"2"
        out.append((db["a"], db.get("x"), "a" in db, len(db), sorted(db.keys()), db.setdefault("c", b"3")))
        del db["a"]
        for op in (lambda: db["a"], lambda: db.__delitem__("a")):
            try:
                op()
            except KeyError:
                out.append("KeyError")
        db.reorganize()
        db.sync()
        db.close()
        db.close()
        results.append(out)
    assert results[0] == results[1]
