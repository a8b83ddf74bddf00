#include "sync_worker.hpp"

#include <chrono>
#include <system_error>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace kvstore::detail {

SyncWorker::FirstPage::~FirstPage() {
  if (at != nullptr) ::munmap(at, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)));
}

SyncWorker::~SyncWorker() {
  if (!thread_) return;
  if (owner_ != ::getpid()) {
    // A forked child: the thread is not in this process (and a child never
    // uses its parent's handles, store.hpp).
    (void)thread_.release();
    return;
  }
  {
    const std::lock_guard lock(m_);
    stop_ = true;
  }
  changed_.notify_all();
  thread_->join();
}

SyncWorker::Outcome SyncWorker::collect(RecordsEnd& reached) {
  const std::lock_guard lock(m_);
  switch (state_) {
    case State::idle:
      return Outcome::idle;
    case State::staged:
    case State::handed:
    case State::starting:
    case State::queued:
    case State::running:
      return Outcome::busy;
    case State::done:
      state_ = State::idle;
      reached = reached_;
      done_count_ = staged_count_;  // one sync at a time: the last staged
      return Outcome::done;
    case State::failed:
      state_ = State::idle;
      return Outcome::failed;
  }
  return Outcome::idle;
}

bool SyncWorker::stage(int fd, const std::vector<FileRange>& ranges, const RecordsEnd& reached) {
  const std::lock_guard lock(m_);
  if (!thread_) {
    Fd own(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!own) return false;
    if (first_page_.at == nullptr) {
      void* p = ::mmap(nullptr, static_cast<std::size_t>(::sysconf(_SC_PAGESIZE)), PROT_READ, MAP_SHARED, own.get(), 0);
      if (p != MAP_FAILED) first_page_.at = p;  // else each flush maps one itself
    }
    try {
      thread_ = std::make_unique<std::thread>([this] { run(); });
    } catch (const std::system_error&) {
      return false;  // no thread to be had (a process or memory limit)
    }
    fd_ = std::move(own);
    owner_ = ::getpid();
  }
  ranges_.assign(ranges.begin(), ranges.end());
  reached_ = reached;
  state_ = State::staged;
  busy_.store(true, std::memory_order_release);
  ++staged_count_;
  return true;
}

bool SyncWorker::start() noexcept {
  std::unique_lock lock(m_);
  if (state_ != State::staged) return false;  // the thread took it over
  if (!policy_.writer_begins(BeginPolicy::Clock::now())) {
    state_ = State::handed;
    lock.unlock();
    changed_.notify_all();
    return false;
  }
  state_ = State::starting;
  begin_write_back(lock);
  state_ = State::queued;
  lock.unlock();
  changed_.notify_all();
  return true;
}

void SyncWorker::begin_write_back(std::unique_lock<std::mutex>& lock) noexcept {
  // The ranges are left alone by everyone else meanwhile. Errors show in the
  // thread's wait for the same ranges.
  lock.unlock();
  const auto from = BeginPolicy::Clock::now();
  for (const FileRange& r : ranges_) {
    (void)::sync_file_range(fd_.get(), static_cast<off64_t>(r.offset), static_cast<off64_t>(r.length),
                            SYNC_FILE_RANGE_WRITE);
  }
  const auto to = BeginPolicy::Clock::now();
  lock.lock();
  policy_.began(from, to);
}

void SyncWorker::wait(std::chrono::milliseconds most) {
  std::unique_lock lock(m_);
  (void)changed_.wait_for(lock, most,
                          [&] { return state_ == State::idle || state_ == State::done || state_ == State::failed; });
}

void SyncWorker::run() {
  std::unique_lock lock(m_);
  for (;;) {
    // A sync staged but not started soon is taken over: every write section
    // starts what it staged, but nothing may wait on a start that never comes.
    changed_.wait(lock, [&] {
      return stop_ || state_ == State::queued || state_ == State::staged || state_ == State::handed;
    });
    if (state_ == State::staged &&
        !changed_.wait_for(lock, std::chrono::milliseconds(5), [&] { return state_ != State::staged; })) {
      state_ = State::handed;
    }
    if (state_ == State::handed) {
      state_ = State::running;
      begin_write_back(lock);
    }
    if (state_ == State::starting) continue;  // the writer is starting it
    if (state_ != State::queued && state_ != State::running) return;  // stopping, nothing to do
    state_ = State::running;
    lock.unlock();
    const int err = write_back_and_flush(fd_.get(), ranges_, first_page_.at);
    lock.lock();
    state_ = err == 0 ? State::done : State::failed;
    busy_.store(false, std::memory_order_release);
    changed_.notify_all();
  }
}

}  // namespace kvstore::detail
