// The Python module `kvstore`: dbm's interface (so shelve and code written
// for dbm.gnu work unchanged) plus the store's coordination calls. Every
// store call runs with the GIL released; errors become kvstore.error (an
// OSError), a missing key KeyError.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <kvstore/store.hpp>
#include <memory>
#include <string>
#include <vector>

#include "bytes_arg.hpp"
#include "database.hpp"
#include "scopes.hpp"

namespace py = pybind11;
using kvstore::python::BytesArg;
using kvstore::python::Database;
using kvstore::python::to_bytes;

namespace {

PyObject* g_error = nullptr;  // kvstore.error

// kvstore.error(errno, strerror, filename) when the OS said why (so that a
// missing file reads like open()'s FileNotFoundError: errno ENOENT and the
// name), else kvstore.error(message); .code is the Errc's name either way.
void raise_error(const kvstore::Error& e, const std::string& path) {
  py::object args;
  if (e.sys()) {
    args = py::make_tuple(e.sys().value(), std::strerror(e.sys().value()), path);
  } else {
    args = py::make_tuple(e.what());
  }
  PyObject* exc = PyObject_CallObject(g_error, args.ptr());
  if (exc == nullptr) return;
  static constexpr const char* kNames[] = {"invalid_argument", "not_a_store", "version_mismatch",
                                           "corrupt", "io", "no_space", "store_full", "busy", "read_only"};
  PyObject_SetAttrString(exc, "code", py::str(kNames[static_cast<int>(e.code())]).ptr());
  PyObject_SetAttrString(exc, "detail", py::str(e.what()).ptr());
  PyErr_SetObject(g_error, exc);
  Py_DECREF(exc);
}

// Runs `f(store)` with the GIL released, holding a reference to the store.
template <class F>
auto call(Database& db, F&& f) {
  std::shared_ptr<kvstore::Store> s = db.store();
  py::gil_scoped_release nogil;
  return f(*s);
}

py::bytes getitem(Database& db, py::handle key) {
  std::optional<std::string> v;
  {
    const BytesArg k(key);
    v = call(db, [&](kvstore::Store& s) { return s.get(k.view()); });
  }
  if (!v) throw py::key_error(py::repr(key));
  return to_bytes(*v);
}

py::object get(Database& db, py::handle key, py::object dflt) {
  std::optional<std::string> v;
  {
    const BytesArg k(key);
    v = call(db, [&](kvstore::Store& s) { return s.get(k.view()); });
  }
  return v ? py::object(to_bytes(*v)) : dflt;
}

void setitem(Database& db, py::handle key, py::handle value) {
  const BytesArg k(key), v(value);
  call(db, [&](kvstore::Store& s) { s.put(k.view(), v.view()); });
}

void delitem(Database& db, py::handle key) {
  bool existed = false;
  {
    const BytesArg k(key);
    existed = call(db, [&](kvstore::Store& s) { return s.erase(k.view()); });
  }
  if (!existed) throw py::key_error(py::repr(key));
}

bool contains(Database& db, py::handle key) {
  const BytesArg k(key);
  return call(db, [&](kvstore::Store& s) { return s.contains(k.view()); });
}

// A snapshot of the pairs (for_each), with the GIL released while reading.
std::vector<std::pair<std::string, std::string>> snapshot(Database& db, bool values) {
  return call(db, [&](kvstore::Store& s) {
    std::vector<std::pair<std::string, std::string>> out;
    s.for_each([&](std::string_view k, std::string_view v) {
      out.emplace_back(std::string(k), values ? std::string(v) : std::string());
      return true;
    });
    return out;
  });
}

py::list keys(Database& db) {
  py::list out;
  for (const auto& [k, v] : snapshot(db, false)) out.append(to_bytes(k));
  return out;
}

// All of `other` (a mapping or pairs) and `kw` in one atomic batch.
void update(Database& db, py::object other, py::kwargs kw) {
  std::vector<kvstore::BatchOp> ops;
  auto add = [&](py::handle k, py::handle v) {
    const BytesArg kb(k), vb(v);
    ops.push_back({std::string(kb.view()), std::string(vb.view()), false});
  };
  if (!other.is_none()) {
    if (py::hasattr(other, "keys")) {
      for (py::handle k : other.attr("keys")()) add(k, other[k]);
    } else {
      for (py::handle pair : other) {
        const py::tuple t = py::tuple(py::reinterpret_borrow<py::object>(pair));
        if (t.size() != 2) throw py::value_error("update() takes pairs of (key, value)");
        add(t[0], t[1]);
      }
    }
  }
  for (auto [k, v] : kw) add(k, v);
  call(db, [&](kvstore::Store& s) { s.apply(ops); });
}

py::dict stats(Database& db) {
  const kvstore::Stats st = call(db, [](kvstore::Store& s) { return s.stats(); });
  py::dict d;
  d["file_size"] = st.file_size;
  d["used_bytes"] = st.used_bytes;
  d["free_bytes"] = st.free_bytes;
  d["keys"] = st.keys;
  d["key_bytes"] = st.key_bytes;
  d["value_bytes"] = st.value_bytes;
  d["record_bytes"] = st.record_bytes;
  d["dead_bytes"] = st.dead_bytes;
  d["table_slots"] = st.table_slots;
  d["load_factor"] = st.load_factor;
  d["generation"] = st.generation;
  d["grows"] = st.grows;
  d["compactions"] = st.compactions;
  d["last_compact_unix"] = st.last_compact_unix;
  d["recoveries"] = st.recoveries;
  d["processes"] = st.processes;
  d["change_count"] = st.change_count;
  d["sync"] = st.sync == kvstore::Sync::always ? "always" : "none";
  return d;
}

// Waits in slices so that Ctrl-C (a signal handled by Python) ends a long
// wait; a commit still wakes the futex at once.
std::uint64_t wait_for_change(Database& db, std::uint64_t seen, py::object timeout) {
  using namespace std::chrono;
  const bool forever = timeout.is_none();
  const double secs = forever ? 0.0 : timeout.cast<double>();
  if (!forever && (std::isnan(secs) || secs < 0)) throw py::value_error("timeout must be >= 0 seconds or None");
  const auto deadline = steady_clock::now() + duration_cast<steady_clock::duration>(duration<double>(forever ? 0 : secs));
  for (;;) {
    const auto left = forever ? milliseconds(200) : duration_cast<milliseconds>(deadline - steady_clock::now());
    const std::uint64_t now = call(db, [&](kvstore::Store& s) {
      return s.wait_for_change(seen, std::clamp(left, milliseconds(0), milliseconds(200)));
    });
    if (now != seen || (!forever && steady_clock::now() >= deadline)) return now;
    if (PyErr_CheckSignals() != 0) throw py::error_already_set();
  }
}

std::optional<std::string_view> optional_view(const std::optional<BytesArg>& b) {
  return b ? std::optional<std::string_view>(b->view()) : std::nullopt;
}

}  // namespace

PYBIND11_MODULE(kvstore, m) {
  m.doc() =
      "kvstore: a persistent key-value store in one memory-mapped file, shared live by many\n"
      "processes. kvstore.open() follows dbm.open(); the object is a MutableMapping of bytes.";

  g_error = PyErr_NewExceptionWithDoc(
      "kvstore.error",
      "Errors of kvstore (an OSError). .code names the kind: invalid_argument, not_a_store,\n"
      "version_mismatch, corrupt, io, no_space, store_full, busy, read_only.",
      PyExc_OSError, nullptr);
  m.add_object("error", py::handle(g_error));
  // The store's errors, wherever they are thrown below; the path comes with
  // the message (and with filename when the OS gave an errno).
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const kvstore::Error& e) {
      std::string path = e.what();
      if (const auto colon = path.find(": "); colon != std::string::npos) path.resize(colon);
      raise_error(e, path);
    }
  });
  kvstore::python::register_view_buffer(m);

  py::class_<kvstore::python::TransactionScope>(m, "Transaction",
                                                 "The reads and writes of one `with db.transaction()` block.")
      .def("__enter__", [](kvstore::python::TransactionScope& t) -> kvstore::python::TransactionScope& {
        t.enter();
        return t;
      }, py::return_value_policy::reference)
      .def("__exit__", [](kvstore::python::TransactionScope& t, py::object type, py::object, py::object) {
        t.exit(type.is_none());
        return false;
      })
      .def("__getitem__", [](kvstore::python::TransactionScope& t, py::handle key) {
        std::optional<std::string> v;
        {
          const BytesArg k(key);
          py::gil_scoped_release nogil;
          v = t.get(k.view());
        }
        if (!v) throw py::key_error(py::repr(key));
        return to_bytes(*v);
      })
      .def("get", [](kvstore::python::TransactionScope& t, py::handle key, py::object dflt) {
        std::optional<std::string> v;
        {
          const BytesArg k(key);
          py::gil_scoped_release nogil;
          v = t.get(k.view());
        }
        return v ? py::object(to_bytes(*v)) : dflt;
      }, py::arg("key"), py::arg("default") = py::none())
      .def("__setitem__", [](kvstore::python::TransactionScope& t, py::handle key, py::handle value) {
        const BytesArg k(key), v(value);
        py::gil_scoped_release nogil;
        t.put(k.view(), v.view());
      })
      .def("__delitem__", [](kvstore::python::TransactionScope& t, py::handle key) {
        bool existed = false;
        {
          const BytesArg k(key);
          py::gil_scoped_release nogil;
          existed = t.erase(k.view());
        }
        if (!existed) throw py::key_error(py::repr(key));
      })
      .def("__contains__", [](kvstore::python::TransactionScope& t, py::handle key) {
        const BytesArg k(key);
        py::gil_scoped_release nogil;
        return t.contains(k.view());
      });

  py::class_<kvstore::python::ViewScope>(m, "View",
                                          "One committed state, read without copying, in a `with db.view()` block.\n"
                                          "get() returns memoryviews of the file that are released at the end.")
      .def("__enter__", [](kvstore::python::ViewScope& v) -> kvstore::python::ViewScope& {
        v.enter();
        return v;
      }, py::return_value_policy::reference)
      .def("__exit__", [](kvstore::python::ViewScope& v, py::object, py::object, py::object) {
        v.exit();
        return false;
      })
      .def("get", &kvstore::python::ViewScope::get, py::arg("key"),
           "A read-only memoryview of the value (valid inside the with block), or None.")
      .def("__getitem__", [](kvstore::python::ViewScope& v, py::handle key) {
        py::object r = v.get(key);
        if (r.is_none()) throw py::key_error(py::repr(key));
        return r;
      })
      .def("__contains__", [](kvstore::python::ViewScope& v, py::handle key) {
        const BytesArg k(key);
        return v.contains(k.view());
      })
      .def("__len__", &kvstore::python::ViewScope::size);

  py::class_<Database> db(m, "Database", "An open kvstore file: a MutableMapping of bytes (see kvstore.open).");
  db.def(py::init<const std::string&, const std::string&, int>(), py::arg("filename"), py::arg("flag") = "r",
         py::arg("mode") = 0666)
      .def("__getitem__", &getitem)
      .def("__setitem__", &setitem)
      .def("__delitem__", &delitem)
      .def("__contains__", &contains)
      .def("__len__", [](Database& d) { return call(d, [](kvstore::Store& s) { return s.size(); }); })
      .def("__iter__", [](Database& d) { return py::iter(keys(d)); })
      .def("keys", &keys, "A list of every key (a snapshot).")
      .def("values", [](Database& d) {
        py::list out;
        for (const auto& [k, v] : snapshot(d, true)) out.append(to_bytes(v));
        return out;
      }, "A list of every value (a snapshot).")
      .def("items", [](Database& d) {
        py::list out;
        for (const auto& [k, v] : snapshot(d, true)) out.append(py::make_tuple(to_bytes(k), to_bytes(v)));
        return out;
      }, "A list of (key, value) pairs (a snapshot).")
      .def("get", &get, py::arg("key"), py::arg("default") = py::none())
      .def("setdefault", [](Database& d, py::handle key, py::handle dflt) {
        // One transaction: read, and store the default only if absent, so
        // that no other process can change the key in between.
        const BytesArg k(key), v(dflt);
        const std::string now = call(d, [&](kvstore::Store& s) {
          std::string value;
          s.transact([&](kvstore::Transaction& t) {
            std::optional<std::string> cur = t.get(k.view());
            if (!cur) t.put(k.view(), v.view());
            value = cur ? std::move(*cur) : std::string(v.view());
          });
          return value;
        });
        return to_bytes(now);
      }, py::arg("key"), py::arg("default") = py::bytes())
      .def("clear", [](Database& d) {
        call(d, [](kvstore::Store& s) {
          std::vector<kvstore::BatchOp> ops;
          s.for_each([&](std::string_view k, std::string_view) {
            ops.push_back({std::string(k), {}, true});
            return true;
          });
          s.apply(ops);
        });
      }, "Removes every key, in one batch.")
      .def("update", &update, py::arg("other") = py::none(),
           "Stores every pair of a mapping or iterable of pairs (and keywords) in one atomic batch.")
      .def("close", &Database::close, "Closes the store; a second close does nothing.")
      .def("__enter__", [](py::object self) { return self; })
      .def("__exit__", [](Database& d, py::object, py::object, py::object) {
        d.close();
        return false;
      })
      .def("sync", [](Database& d) { call(d, [](kvstore::Store& s) { s.sync(); }); },
           "Makes every write so far durable (msync + fdatasync).")
      .def("reorganize", [](Database& d) { call(d, [](kvstore::Store& s) { s.compact(); }); },
           "Compacts the file to its smallest size, online.")
      .def("increment", [](Database& d, py::handle key, std::int64_t delta) {
        const BytesArg k(key);
        return call(d, [&](kvstore::Store& s) { return s.increment(k.view(), delta); });
      }, py::arg("key"), py::arg("delta") = 1, "Adds delta to the decimal integer under key (absent: 0); returns it.")
      .def("compare_exchange", [](Database& d, py::handle key, py::object expected, py::object desired) {
        const BytesArg k(key);
        std::optional<BytesArg> e, v;
        if (!expected.is_none()) e.emplace(expected);
        if (!desired.is_none()) v.emplace(desired);
        return call(d, [&](kvstore::Store& s) { return s.compare_exchange(k.view(), optional_view(e), optional_view(v)); });
      }, py::arg("key"), py::arg("expected"), py::arg("desired"),
         "Sets key to desired (None: erase) only if it holds expected (None: absent); returns whether it did.")
      .def("insert", [](Database& d, py::handle key, py::handle value) {
        const BytesArg k(key), v(value);
        return call(d, [&](kvstore::Store& s) { return s.insert(k.view(), v.view()); });
      }, py::arg("key"), py::arg("value"), "Stores value only if key is absent; returns whether it did.")
      .def("transaction", [](Database& d) {
        return std::make_unique<kvstore::python::TransactionScope>(d.store(), d.path());
      }, "with db.transaction() as tx: ... commits at the end of the block; an exception writes nothing.")
      .def("view", [](Database& d) { return std::make_unique<kvstore::python::ViewScope>(d.store(), d.path()); },
           "with db.view() as v: one committed state; v.get(key) returns a memoryview (no copy).")
      .def("change_count", [](Database& d) { return call(d, [](kvstore::Store& s) { return s.change_count(); }); },
           "A counter bumped by every committed change, from any process.")
      .def("wait_for_change", &wait_for_change, py::arg("seen"), py::arg("timeout") = py::none(),
           "Blocks until change_count() differs from seen or timeout seconds pass (None: no limit).")
      .def("stats", &stats, "Sizes and counters as a dict.")
      .def("check", [](Database& d) { return call(d, [](kvstore::Store& s) { return s.check(); }); },
           "Verifies the whole file; a list of problems, empty when sound.")
      .def_property_readonly("filename", &Database::path)
      .def_property_readonly("closed", &Database::closed)
      .def("__reduce__", [](py::object self) {
        // Reopened by path and flag (the class, not kvstore.open: pickle
        // cannot name a pybind11 function).
        const Database& d = self.cast<const Database&>();
        return py::make_tuple(self.get_type(), py::make_tuple(d.path(), d.reopen_flag()));
      });

  // MutableMapping's other mixins (pop, popitem, __eq__ ...) work through the
  // methods above; registering makes isinstance(db, MutableMapping) true.
  py::object abc = py::module_::import("collections.abc");
  py::object mm = abc.attr("MutableMapping");
  // (pop's default sentinel is a name-mangled class attribute.)
  for (const char* name : {"pop", "popitem", "__eq__", "__ne__", "_MutableMapping__marker"}) {
    db.attr(name) = mm.attr(name);
  }
  db.attr("__hash__") = py::none();
  mm.attr("register")(db);

  m.def("open", [](py::object filename, const std::string& flag, int mode) {
    const std::string path = py::str(py::module_::import("os").attr("fspath")(filename));
    return std::make_unique<Database>(path, flag, mode);
  }, py::arg("filename"), py::arg("flag") = "r", py::arg("mode") = 0666,
     "Opens a kvstore file as dbm.open does. flag: 'r' read-only, 'w' read-write, 'c' create if\n"
     "missing, 'n' always a new empty store; gdbm's modifier 's' syncs every write, 'f' (fast)\n"
     "leaves even the close unsynced (Options::sync_on_close). mode (for a new file) is masked by\n"
     "the umask.");
}
