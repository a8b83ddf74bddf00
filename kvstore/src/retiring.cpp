#include "retiring.hpp"

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

}  // namespace kvstore::detail
