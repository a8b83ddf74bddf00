#include "retiring.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <thread>
#include <utility>

namespace kvstore::detail {
namespace {
constexpr std::uint64_t kStep = 2 * 1024 * 1024;  // ~0.3 ms here
}  // namespace

void Retiring::replace(std::shared_ptr<DataFile> file) noexcept {
  std::shared_ptr<DataFile> previous;
  {
    const std::lock_guard<std::mutex> l(mutex_);
    previous = std::exchange(file_, std::move(file));
    done_ = 0;
    pending_.store(file_ != nullptr, std::memory_order_relaxed);
  }
  // `previous` goes here, outside the mutex.
}

void Retiring::step_slow() noexcept {
  std::shared_ptr<DataFile> finished;
  {
    const std::unique_lock<std::mutex> l(mutex_, std::try_to_lock);
    if (!l.owns_lock() || file_ == nullptr) return;  // another thread is at it
    file_->drop_pages(done_, kStep);
    done_ += kStep;
    if (done_ < file_->mapped_size()) return;
    finished = std::move(file_);
    pending_.store(false, std::memory_order_relaxed);
  }
  // With no pages left mapped, unmapping and closing cost little, unless this
  // is the last descriptor of a file unlinked since (see let_go_last).
}

Fd open_writable_twin(const std::string& path, const DataFile& file) noexcept {
  Fd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  struct stat a {};
  struct stat b {};
  if (!fd || ::fstat(fd.get(), &a) != 0 || ::fstat(file.fd(), &b) != 0 || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino) {
    return Fd();
  }
  return fd;
}

void shrink_in_steps(const Fd& fd) noexcept {
  constexpr off_t kShrinkStep = 8 * 1024 * 1024;  // ~3 ms of freeing here
  struct stat st {};
  // Only a file nobody can open again: a link left means it is still a store.
  if (!fd || ::fstat(fd.get(), &st) != 0 || st.st_nlink != 0) return;
  for (off_t size = st.st_size; size > 0;) {
    size = size > kShrinkStep ? size - kShrinkStep : 0;
    if (::ftruncate(fd.get(), size) != 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // let other work in
  }
}

}  // namespace kvstore::detail
