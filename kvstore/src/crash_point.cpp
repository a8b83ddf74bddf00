#include "crash_point.hpp"

#ifdef KVSTORE_CRASH_POINTS
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

namespace kvstore::detail {

void crash_point(const char* name) noexcept {
  // Read every time, not cached: the harness forks children from a parent that
  // has already passed crash points, and sets the variable in the child.
  const char* spec = std::getenv("KVSTORE_CRASH_AT");
  if (spec == nullptr) return;
  const char* colon = std::strchr(spec, ':');
  const std::size_t len = colon != nullptr ? static_cast<std::size_t>(colon - spec) : std::strlen(spec);
  if (std::strlen(name) != len || std::strncmp(spec, name, len) != 0) return;
  const long target = colon != nullptr ? std::strtol(colon + 1, nullptr, 10) : 1;
  static std::atomic<long> hits{0};  // only ever counts passes through the named point
  if (++hits >= target) ::kill(::getpid(), SIGKILL);
}

}  // namespace kvstore::detail
#endif
