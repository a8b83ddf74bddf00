// The public Store: forwards to Store::Impl through one boundary that turns any
// stray Boost or allocation exception into a kvstore::Error.
#include "kvstore/store.hpp"

#include <boost/interprocess/exceptions.hpp>
#include <new>

#include "store_impl.hpp"

namespace kvstore {
namespace {

template <class F>
auto boundary(const std::string& path, F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const boost::interprocess::interprocess_exception& e) {
    throw Error(Errc::io, path + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(Errc::io, path + ": out of memory");
  }
}

}  // namespace

Store::Store(std::unique_ptr<Impl> impl) noexcept : impl_(std::move(impl)) {}
Store::Store(Store&&) noexcept = default;
Store& Store::operator=(Store&&) noexcept = default;
Store::~Store() = default;

Store Store::open(const std::filesystem::path& path, const Options& options) {
  return boundary(path.string(), [&] { return Store(std::make_unique<Impl>(path, options)); });
}

void Store::put(std::string_view key, std::string_view value) {
  boundary(impl_->path().string(), [&] { impl_->put(key, value); });
}

std::optional<std::string> Store::get(std::string_view key) const {
  std::optional<std::string> out;
  boundary(impl_->path().string(), [&] { impl_->visit(key, [&](std::string_view v) { out.emplace(v); }); });
  return out;
}

bool Store::visit(std::string_view key, const std::function<void(std::string_view)>& fn) const {
  return boundary(impl_->path().string(), [&] { return impl_->visit(key, fn); });
}

bool Store::erase(std::string_view key) {
  return boundary(impl_->path().string(), [&] { return impl_->erase(key); });
}

bool Store::contains(std::string_view key) const {
  return boundary(impl_->path().string(), [&] { return impl_->visit(key, [](std::string_view) {}); });
}

std::size_t Store::size() const {
  return boundary(impl_->path().string(), [&] { return impl_->size(); });
}

void Store::for_each(const std::function<bool(std::string_view, std::string_view)>& fn) const {
  boundary(impl_->path().string(), [&] { impl_->for_each(fn); });
}

void Store::apply(const std::vector<BatchOp>& ops) {
  boundary(impl_->path().string(), [&] { impl_->apply(ops); });
}

void Store::compact() {
  boundary(impl_->path().string(), [&] { impl_->compact(); });
}

void Store::sync() {
  boundary(impl_->path().string(), [&] { impl_->sync(); });
}

Stats Store::stats() const {
  return boundary(impl_->path().string(), [&] { return impl_->stats(); });
}

std::vector<std::string> Store::check() const {
  return boundary(impl_->path().string(), [&] { return impl_->check(); });
}

const std::filesystem::path& Store::path() const noexcept { return impl_->path(); }

std::vector<std::string> Store::repair(const std::filesystem::path& path, const Options& options) {
  return boundary(path.string(), [&] { return Impl::repair(path, options); });
}

}  // namespace kvstore
