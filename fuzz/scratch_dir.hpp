// Where the fuzz targets put the store files they open: one fresh directory per
// process, removed at exit. In memory (/dev/shm) when it is there, writable and
// has room, since a store syncs: every close, compaction and repair runs
// msync, fdatasync and an fsync of the directory, milliseconds each on a disk
// and nearly free on tmpfs (the raw-file fuzzer ran 2-3 times faster there).
// KVSTORE_FUZZ_DIR overrides the choice; otherwise TMPDIR's directory.
#pragma once

#include <sys/statvfs.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvstore::fuzz {

inline std::filesystem::path scratch_base() {
  if (const char* d = std::getenv("KVSTORE_FUZZ_DIR"); d != nullptr && *d != '\0') return d;
  struct statvfs st {};
  if (::statvfs("/dev/shm", &st) == 0 && ::access("/dev/shm", W_OK) == 0 &&
      static_cast<std::uint64_t>(st.f_bavail) * st.f_frsize >= (std::uint64_t{512} << 20)) {
    return "/dev/shm";
  }
  return std::filesystem::temp_directory_path();
}

namespace detail {
inline std::string& scratch_made() {
  static std::string dir;
  return dir;
}
inline void remove_scratch() {
  std::error_code ec;
  if (!scratch_made().empty()) std::filesystem::remove_all(scratch_made(), ec);
}
}  // namespace detail

// The process's directory, made on first use: BASE/PREFIX-XXXXXX.
inline const std::string& scratch_dir(const char* prefix) {
  static const std::string dir = [prefix] {
    std::string tmpl = (scratch_base() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    detail::scratch_made() = tmpl;
    std::atexit(detail::remove_scratch);
    return tmpl;
  }();
  return dir;
}

}  // namespace kvstore::fuzz
