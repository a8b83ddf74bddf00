#include "scopes.hpp"

#include <utility>

#include "bytes_arg.hpp"

namespace py = pybind11;

namespace kvstore::python {

LockedScope::LockedScope(Runner run) : run_(std::move(run)) {}

LockedScope::~LockedScope() {
  if (thread_.joinable()) {
    try {
      finish(false);
    } catch (...) {
      // An abandoned scope (never exited): nothing was written; nobody to tell.
    }
  }
}

void LockedScope::enter() {
  std::unique_lock l(m_);
  if (state_ != State::idle) throw Error(Errc::invalid_argument, "a transaction or view can be entered once");
  state_ = State::starting;
  thread_ = std::thread([this] {
    try {
      run_([this] {
        std::unique_lock inner(m_);
        state_ = State::inside;
        cv_.notify_all();
        cv_.wait(inner, [this] { return state_ == State::commit || state_ == State::abort; });
        if (state_ == State::abort) throw Abort{};
      });
    } catch (const Abort&) {
      // Ended on purpose: the Store wrote nothing.
    } catch (...) {
      std::lock_guard g(m_);
      error_ = std::current_exception();
    }
    std::lock_guard g(m_);
    state_ = State::done;
    cv_.notify_all();
  });
  cv_.wait(l, [this] { return state_ == State::inside || state_ == State::done; });
  if (state_ == State::done) {
    l.unlock();
    thread_.join();
    std::rethrow_exception(error_);
  }
}

void LockedScope::finish(bool commit) {
  {
    std::unique_lock l(m_);
    if (state_ != State::inside) return;
    state_ = commit ? State::commit : State::abort;
    cv_.notify_all();
    cv_.wait(l, [this] { return state_ == State::done; });
  }
  thread_.join();
  if (error_) std::rethrow_exception(std::exchange(error_, nullptr));
}

bool LockedScope::inside() const {
  std::lock_guard g(m_);
  return state_ == State::inside;
}

// --- transactions

TransactionScope::TransactionScope(std::shared_ptr<Store> store, std::string path)
    : store_(std::move(store)),
      path_(std::move(path)),
      scope_([this](const std::function<void()>& body) {
        store_->transact([&](Transaction& t) {
          txn_ = &t;
          body();
          txn_ = nullptr;
        });
      }) {}

void TransactionScope::enter() {
  {
    py::gil_scoped_release nogil;
    scope_.enter();
  }
  mark_.emplace(path_);
}

void TransactionScope::exit(bool commit) {
  mark_.reset();
  py::gil_scoped_release nogil;
  std::lock_guard g(ops_);
  scope_.finish(commit);
}

Transaction& TransactionScope::txn() {
  if (txn_ == nullptr || !scope_.inside()) {
    throw Error(Errc::invalid_argument, path_ + ": the transaction is not open (use it inside its with block)");
  }
  return *txn_;
}

std::optional<std::string> TransactionScope::get(std::string_view key) {
  std::lock_guard g(ops_);
  return txn().get(key);
}

bool TransactionScope::contains(std::string_view key) {
  std::lock_guard g(ops_);
  return txn().contains(key);
}

void TransactionScope::put(std::string_view key, std::string_view value) {
  std::lock_guard g(ops_);
  txn().put(key, value);
}

bool TransactionScope::erase(std::string_view key) {
  std::lock_guard g(ops_);
  return txn().erase(key);
}

// --- views and their zero-copy memoryviews
//
// A memoryview of the mapping must not outlive the read lock: after it a
// writer may grow or compact the file and the pages may be unmapped. The
// memoryviews handed out are released at exit. But a slice of one (mv[2:5])
// shares its exporter and survives that, so the exporter counts its live
// buffers: while any remains, the scope keeps the lock (and warns), and the
// last buffer's release ends it. Reading freed memory is never possible.

struct ViewState {
  // The runner refers to this state, not to the ViewScope: the state lives
  // on while buffers do, after the Python view object may be gone.
  explicit ViewState(std::shared_ptr<Store> s)
      : store(std::move(s)), scope([this](const std::function<void()>& body) {
          store->view([&](const View& v) {
            view = &v;
            body();
            view = nullptr;
          });
        }) {}
  std::shared_ptr<Store> store;
  const View* view = nullptr;  // set while the callback is parked; read under `reads`
  LockedScope scope;
  // Held by a read (without the GIL) and by the end of the scope, so that a
  // view object shared by threads cannot end under another thread's read.
  std::mutex reads;
  Py_ssize_t exports = 0;   // live buffers of every exporter of this view (GIL held)
  bool exited = false;      // __exit__ ran; end the scope when exports reaches 0
};

namespace {

struct ViewBuffer {
  PyObject_HEAD
  const char* data;
  Py_ssize_t size;
  std::shared_ptr<ViewState>* state;  // heap-held: a C type has no C++ members
};

PyTypeObject* g_buffer_type = nullptr;

void finish_view(ViewState& s) {
  py::gil_scoped_release nogil;
  std::lock_guard g(s.reads);
  s.scope.finish(true);
}

int buffer_get(PyObject* self, Py_buffer* view, int flags) {
  auto* b = reinterpret_cast<ViewBuffer*>(self);  // NOLINT: CPython's object layout
  ViewState& s = **b->state;
  if (!s.scope.inside()) {
    PyErr_SetString(PyExc_BufferError, "kvstore view is closed");
    return -1;
  }
  if (PyBuffer_FillInfo(view, self, const_cast<char*>(b->data), b->size, 1, flags) != 0) return -1;
  ++s.exports;
  return 0;
}

void buffer_release(PyObject* self, Py_buffer*) {
  auto* b = reinterpret_cast<ViewBuffer*>(self);  // NOLINT: CPython's object layout
  ViewState& s = **b->state;
  if (--s.exports == 0 && s.exited) {
    try {
      finish_view(s);
    } catch (...) {
      // A view writes nothing; its end cannot fail in a way to report here.
    }
  }
}

void buffer_dealloc(PyObject* self) {
  auto* b = reinterpret_cast<ViewBuffer*>(self);  // NOLINT: CPython's object layout
  delete b->state;  // NOLINT(cppcoreguidelines-owning-memory): paired with the new in make_buffer
  PyTypeObject* type = Py_TYPE(self);
  type->tp_free(self);
  Py_DECREF(type);
}

py::object make_buffer(const std::shared_ptr<ViewState>& state, std::string_view value) {
  auto* b = PyObject_New(ViewBuffer, g_buffer_type);
  if (b == nullptr) throw py::error_already_set();
  b->data = value.data();
  b->size = static_cast<Py_ssize_t>(value.size());
  b->state = new std::shared_ptr<ViewState>(state);  // NOLINT(cppcoreguidelines-owning-memory)
  py::object owner = py::reinterpret_steal<py::object>(reinterpret_cast<PyObject*>(b));  // NOLINT
  PyObject* mv = PyMemoryView_FromObject(owner.ptr());
  if (mv == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::object>(mv);
}

}  // namespace

void register_view_buffer(py::module_& m) {
  static PyType_Slot slots[] = {
      {Py_bf_getbuffer, reinterpret_cast<void*>(buffer_get)},          // NOLINT
      {Py_bf_releasebuffer, reinterpret_cast<void*>(buffer_release)},  // NOLINT
      {Py_tp_dealloc, reinterpret_cast<void*>(buffer_dealloc)},        // NOLINT
      {0, nullptr}};
  static PyType_Spec spec = {"kvstore._ViewBuffer", sizeof(ViewBuffer), 0, Py_TPFLAGS_DEFAULT, slots};
  PyObject* type = PyType_FromSpec(&spec);
  if (type == nullptr) throw py::error_already_set();
  g_buffer_type = reinterpret_cast<PyTypeObject*>(type);  // NOLINT: a type object is a PyTypeObject
  m.add_object("_ViewBuffer", type);
}

ViewScope::ViewScope(std::shared_ptr<Store> store, std::string path)
    : path_(std::move(path)), state_(std::make_shared<ViewState>(std::move(store))) {}

ViewScope::~ViewScope() {
  // Dropped without exit (an exception in enter, or never entered): release
  // what was handed out, so the scope can end.
  if (state_ && !state_->exited && state_->scope.inside()) {
    try {
      exit();
    } catch (...) {
    }
  }
}

void ViewScope::enter() {
  {
    py::gil_scoped_release nogil;
    state_->scope.enter();
  }
  mark_.emplace(path_);
}

void ViewScope::exit() {
  mark_.reset();
  if (state_->exited) return;
  for (py::object& mv : handed_out_) {
    try {
      mv.attr("release")();
    } catch (py::error_already_set&) {
      // A buffer exported from this memoryview itself (memoryview(mv),
      // numpy): it keeps the exporter counted, and the lock, until it goes.
    }
  }
  handed_out_.clear();
  state_->exited = true;
  if (state_->exports == 0) {
    finish_view(*state_);
  } else if (PyErr_WarnEx(PyExc_ResourceWarning,
                          "a buffer derived from a kvstore view outlives the with block: "
                          "the read lock stays held until it is released", 1) != 0) {
    throw py::error_already_set();
  }
}

namespace {

[[noreturn]] void view_closed(const std::string& path) {
  throw Error(Errc::invalid_argument, path + ": the view is not open (use it inside its with block)");
}

}  // namespace

py::object ViewScope::get(py::handle key) {
  if (state_->exited) view_closed(path_);
  std::optional<std::string_view> v;
  {
    const BytesArg k(key);
    py::gil_scoped_release nogil;
    std::lock_guard g(state_->reads);
    if (state_->view == nullptr) view_closed(path_);
    v = state_->view->get(k.view());
  }
  if (!v) return py::none();
  py::object mv = make_buffer(state_, *v);
  handed_out_.push_back(mv);
  return mv;
}

bool ViewScope::contains(std::string_view key) {
  if (state_->exited) view_closed(path_);
  py::gil_scoped_release nogil;
  std::lock_guard g(state_->reads);
  if (state_->view == nullptr) view_closed(path_);
  return state_->view->contains(key);
}

std::size_t ViewScope::size() {
  if (state_->exited) view_closed(path_);
  std::lock_guard g(state_->reads);  // never held long: reads only
  if (state_->view == nullptr) view_closed(path_);
  return state_->view->size();
}

}  // namespace kvstore::python
