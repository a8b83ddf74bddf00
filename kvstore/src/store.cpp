// The public Store: forwards to Store::Impl through one boundary that turns any
// stray Boost or allocation exception into a kvstore::Error.
#include "kvstore/store.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <new>

#include "store_impl.hpp"

namespace kvstore {
namespace {

// The path is named only when something went wrong: a copy of it per call
// was a heap allocation on every get.
template <class F>
auto boundary(const std::filesystem::path& path, F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const boost::interprocess::interprocess_exception& e) {
    throw Error(Errc::io, path.string() + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(Errc::io, path.string() + ": out of memory");
  }
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::filesystem::path& path, const Options& options) {
  return boundary(path, [&] { return Store(std::make_unique<Impl>(path, options)); });
}

void Store::put(std::string_view key, std::string_view value) {
  boundary(impl_->path(), [&] { impl_->put(key, value); });
}

std::optional<std::string> Store::get(std::string_view key) const {
  return boundary(impl_->path(), [&] { return impl_->get(key); });
}

bool Store::visit(std::string_view key, const std::function<void(std::string_view)>& fn) const {
  return boundary(impl_->path(), [&] { return impl_->visit(key, fn); });
}

bool Store::erase(std::string_view key) {
  return boundary(impl_->path(), [&] { return impl_->erase(key); });
}

bool Store::contains(std::string_view key) const {
  return boundary(impl_->path(), [&] { return impl_->visit(key, [](std::string_view) {}); });
}

std::size_t Store::size() const {
  return boundary(impl_->path(), [&] { return impl_->size(); });
}

void Store::for_each(const std::function<bool(std::string_view, std::string_view)>& fn) const {
  boundary(impl_->path(), [&] { impl_->for_each(fn); });
}

void Store::apply(const std::vector<BatchOp>& ops) {
  boundary(impl_->path(), [&] { impl_->apply(ops); });
}

void Store::transact(const std::function<void(Transaction&)>& fn) {
  boundary(impl_->path(), [&] {
    impl_->transact([&](detail::TransactionState& state) {
      Transaction t(state);
      fn(t);
    });
  });
}

void Store::view(const std::function<void(const View&)>& fn) const {
  boundary(impl_->path(), [&] {
    impl_->view([&](const detail::DataFile& file, const detail::ReadGuard* guard, std::size_t keys) {
      const View v(file, guard, keys);
      fn(v);
    });
  });
}

std::int64_t Store::increment(std::string_view key, std::int64_t delta) {
  return boundary(impl_->path(), [&] { return impl_->increment(key, delta); });
}

bool Store::compare_exchange(std::string_view key, std::optional<std::string_view> expected,
                             std::optional<std::string_view> desired) {
  return boundary(impl_->path(), [&] { return impl_->compare_exchange(key, expected, desired); });
}

bool Store::insert(std::string_view key, std::string_view value) {
  return boundary(impl_->path(), [&] { return impl_->insert(key, value); });
}

std::uint64_t Store::change_count() const noexcept { return impl_->change_count(); }

std::uint64_t Store::wait_for_change(std::uint64_t seen, std::chrono::milliseconds timeout) const {
  return boundary(impl_->path(), [&] { return impl_->wait_for_change(seen, timeout); });
}

void Store::compact() {
  boundary(impl_->path(), [&] { impl_->compact(); });
}

void Store::sync() {
  boundary(impl_->path(), [&] { impl_->sync(); });
}

Stats Store::stats() const {
  return boundary(impl_->path(), [&] { return impl_->stats(); });
}

std::vector<std::string> Store::check() const {
  return boundary(impl_->path(), [&] { return impl_->check(); });
}

const std::filesystem::path& Store::path() const noexcept { return impl_->path(); }

std::vector<std::string> Store::repair(const std::filesystem::path& path, const Options& options) {
  return boundary(path, [&] { return Impl::repair(path, options); });
}

}  // namespace kvstore
