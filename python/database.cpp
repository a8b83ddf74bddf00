#include "database.hpp"

#include <pthread.h>
#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <vector>

namespace kvstore::python {
namespace {

// The process umask, read without changing it (umask(2) can only set it,
// and setting it twice would race with other threads creating files).
mode_t current_umask() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("Umask:", 0) == 0) return static_cast<mode_t>(std::stoul(line.substr(6), nullptr, 8));
  }
  return 022;
}

Options options_for(const std::string& flag) {
  if (flag.empty() || std::string_view("rwcn").find(flag[0]) == std::string_view::npos) {
    throw Error(Errc::invalid_argument, "flag must start with one of 'r', 'w', 'c' or 'n', not '" + flag + "'");
  }
  Options o;
  o.read_only = flag[0] == 'r';
  o.create = flag[0] == 'c' || flag[0] == 'n';
  for (const char m : flag.substr(1)) {
    if (m == 's') {
      o.sync = Sync::always;
    } else if (m == 'f') {
      o.sync_on_close = false;  // gdbm's fast mode: nothing synced, at close either
    } else if (m != 'u') {
      throw Error(Errc::invalid_argument, std::string("unknown flag modifier '") + m + "' (f, s or u)");
    }
  }
  return o;
}

thread_local std::vector<std::string> t_scopes;

// Bumped in every fork()ed child. A handle compares it with the value at its
// open to notice it is in a child: getpid() is a system call, which costs a
// microsecond on this machine, more than the store call it would guard.
std::atomic<unsigned> g_fork_generation{0};

unsigned fork_generation() {
  static const bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, [] { g_fork_generation.fetch_add(1, std::memory_order_relaxed); });
    return true;
  }();
  (void)registered;
  return g_fork_generation.load(std::memory_order_relaxed);
}

}  // namespace

Database::Database(const std::string& path, const std::string& flag, int mode)
    : path_(path), flag_(flag), fork_generation_(fork_generation()) {
  const Options o = options_for(flag);
  std::error_code ec;
  const bool existed = std::filesystem::exists(path, ec);
  store_ = std::make_shared<Store>(Store::open(path, o));
  if (!existed) ::chmod(path.c_str(), static_cast<mode_t>(mode) & ~current_umask() & 07777);
  if (flag[0] == 'n' && existed) {
    // "Always a new, empty store": emptied in one batch rather than deleted
    // and recreated, since other processes may have this file open.
    std::vector<BatchOp> ops;
    store_->for_each([&](std::string_view k, std::string_view) {
      ops.push_back({std::string(k), {}, true});
      return true;
    });
    store_->apply(ops);
    store_->compact();
  }
}

Database::~Database() {
  if (store_ && fork_generation() != fork_generation_) {
    // A fork()ed child's copy: closing it would unlock the parent's lock-file
    // locks (they belong to the open file description both share). Left alone.
    new std::shared_ptr<Store>(std::move(store_));  // NOLINT(cppcoreguidelines-owning-memory): on purpose
  }
}

std::shared_ptr<Store> Database::store() const {
  if (!store_) throw Error(Errc::invalid_argument, path_ + ": the kvstore object is closed");
  if (fork_generation() != fork_generation_) {
    throw Error(Errc::invalid_argument,
                path_ + ": kvstore object used in a fork()ed child; open the store again in the child");
  }
  refuse_inside_scope(path_);
  return store_;
}

void Database::close() {
  if (store_ && fork_generation() != fork_generation_) {
    new std::shared_ptr<Store>(std::move(store_));  // NOLINT: see the destructor
  }
  store_.reset();
}

std::string Database::reopen_flag() const {
  std::string f = flag_;
  if (!f.empty() && f[0] == 'n') f[0] = 'c';
  return f;
}

void refuse_inside_scope(const std::string& path) {
  if (t_scopes.empty()) return;  // the common case: one test, no string compare
  if (std::find(t_scopes.begin(), t_scopes.end(), path) != t_scopes.end()) {
    throw Error(Errc::invalid_argument,
                path + ": called inside a transaction or view of this file on the same thread "
                       "(use the transaction or view object)");
  }
}

ScopeMark::ScopeMark(const std::string& path) : path_(path) { t_scopes.push_back(path_); }

ScopeMark::~ScopeMark() {
  const auto it = std::find(t_scopes.begin(), t_scopes.end(), path_);
  if (it != t_scopes.end()) t_scopes.erase(it);
}

}  // namespace kvstore::python
