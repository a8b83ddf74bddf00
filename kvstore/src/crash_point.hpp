// Named crash points for the crash-safety harness (tests/crash). In the
// library users link they compile to nothing; the test build of the library
// (target kvstore_crashable, KVSTORE_CRASH_POINTS defined) kills the process
// with SIGKILL at the n-th pass through the point named by the environment
// variable KVSTORE_CRASH_AT="name" or "name:n" (n defaults to 1).
#pragma once

namespace kvstore::detail {

#ifdef KVSTORE_CRASH_POINTS
void crash_point(const char* name) noexcept;
#else
inline void crash_point(const char* /*name*/) noexcept {}
#endif

}  // namespace kvstore::detail
