// Fork helpers for multi-process tests. A child runs a function and leaves
// with _exit (no atexit handlers, no gtest teardown, no destructors of the
// parent's objects); it must open its own Store: a Store is never used in a
// child after fork().
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <functional>
#include <string>
#include <vector>

namespace kvstore::test {

// Runs `fn` in a child process and returns its pid. The child's exit status is
// what `fn` returns; an exception escaping `fn` is printed and gives status 1.
inline pid_t spawn(const std::function<int()>& fn) {
  std::fflush(nullptr);  // do not write the parent's buffered output twice
  const pid_t pid = ::fork();
  if (pid < 0) {
    std::perror("fork");
    return pid;
  }
  if (pid == 0) {
    int rc = 1;
    try {
      rc = fn();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "child %d: %s\n", static_cast<int>(::getpid()), e.what());
    } catch (...) {
      std::fprintf(stderr, "child %d: unknown exception\n", static_cast<int>(::getpid()));
    }
    std::fflush(nullptr);
    ::_exit(rc);
  }
  return pid;
}

// Waits for one child; returns its exit status, or 128 + signal if it was
// killed, or -1 if it could not be waited for.
inline int wait_for(pid_t pid) {
  if (pid <= 0) return -1;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Waits for every child; returns their statuses in the same order.
inline std::vector<int> wait_all(const std::vector<pid_t>& pids) {
  std::vector<int> statuses;
  statuses.reserve(pids.size());
  for (const pid_t p : pids) statuses.push_back(wait_for(p));
  return statuses;
}

}  // namespace kvstore::test
