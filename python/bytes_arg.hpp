// The bytes of a key or value passed from Python, borrowed without a copy:
// bytes, str (encoded UTF-8, as dbm does), or any object with the buffer
// protocol (bytearray, memoryview, array, numpy ...). Made and destroyed with
// the GIL held; view() may be used without it, since the buffer export keeps
// the memory in place (a bytearray cannot be resized while it is exported).
#pragma once

#include <pybind11/pybind11.h>

#include <string_view>

namespace kvstore::python {

class BytesArg {
 public:
  explicit BytesArg(pybind11::handle h) {
    PyObject* o = h.ptr();
    if (PyBytes_Check(o)) {
      view_ = std::string_view(PyBytes_AS_STRING(o), static_cast<std::size_t>(PyBytes_GET_SIZE(o)));
    } else if (PyUnicode_Check(o)) {
      Py_ssize_t n = 0;
      const char* p = PyUnicode_AsUTF8AndSize(o, &n);  // cached in the str: no copy to keep
      if (p == nullptr) throw pybind11::error_already_set();
      view_ = std::string_view(p, static_cast<std::size_t>(n));
    } else if (PyObject_CheckBuffer(o)) {
      if (PyObject_GetBuffer(o, &buf_, PyBUF_SIMPLE) != 0) throw pybind11::error_already_set();
      has_buf_ = true;
      view_ = std::string_view(static_cast<const char*>(buf_.buf), static_cast<std::size_t>(buf_.len));
    } else {
      throw pybind11::type_error(std::string("kvstore keys and values are bytes-like or str, not ") +
                                 Py_TYPE(o)->tp_name);
    }
  }
  BytesArg(const BytesArg&) = delete;
  BytesArg& operator=(const BytesArg&) = delete;
  ~BytesArg() {
    if (has_buf_) PyBuffer_Release(&buf_);
  }
  [[nodiscard]] std::string_view view() const noexcept { return view_; }

 private:
  Py_buffer buf_{};
  bool has_buf_ = false;
  std::string_view view_;
};

inline pybind11::bytes to_bytes(std::string_view s) { return {s.data(), s.size()}; }

}  // namespace kvstore::python
