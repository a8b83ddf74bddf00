#include "transaction.hpp"

#include "kvstore/error.hpp"
#include "read_guard.hpp"
#include "kvstore/store.hpp"

namespace kvstore::detail {

std::optional<std::string> TransactionState::get(std::string_view key) const {
  if (const auto it = writes_.find(key); it != writes_.end()) return it->second;
  RecordView rec{};
  if (!file_.find(key, rec)) return std::nullopt;
  return std::string(rec.value);
}

bool TransactionState::contains(std::string_view key) const {
  if (const auto it = writes_.find(key); it != writes_.end()) return it->second.has_value();
  RecordView rec{};
  return file_.find(key, rec);
}

void TransactionState::put(std::string_view key, std::string_view value) {
  // Refused here, inside the callback, rather than at commit: the caller
  // learns which put was wrong.
  if (key.size() > kMaxKeySize || value.size() > kMaxValueSize) {
    throw Error(Errc::invalid_argument, file_.path() + ": key or value too large");
  }
  writes_.insert_or_assign(std::string(key), std::string(value));
}

bool TransactionState::erase(std::string_view key) {
  if (const auto it = writes_.find(key); it != writes_.end()) {
    const bool existed = it->second.has_value();
    it->second.reset();
    return existed;
  }
  RecordView rec{};
  if (!file_.find(key, rec)) return false;
  writes_.emplace(std::string(key), std::nullopt);
  return true;
}

std::vector<DataFile::Op> TransactionState::batch() const {
  std::vector<DataFile::Op> ops;
  ops.reserve(writes_.size());
  RecordView rec{};
  for (const auto& [key, value] : writes_) {
    if (value) {
      ops.push_back({key, *value, false});
    } else if (file_.find(key, rec)) {
      ops.push_back({key, {}, true});
    }
  }
  return ops;
}

}  // namespace kvstore::detail

// The public faces: thin, so that the state's type stays private.
namespace kvstore {

std::optional<std::string> Transaction::get(std::string_view key) const { return state_->get(key); }
bool Transaction::contains(std::string_view key) const { return state_->contains(key); }
void Transaction::put(std::string_view key, std::string_view value) { state_->put(key, value); }
bool Transaction::erase(std::string_view key) { return state_->erase(key); }

namespace {

// A lookup for a View. Without a read lock (guard set), an answer is given
// only if no writer moved the state since the view began, so that every
// answer of one view is of the same committed state; else ViewMoved (also
// for an error that a torn state may have caused).
bool view_find(const detail::DataFile& file, const detail::ReadGuard* guard, std::string_view key,
               detail::RecordView& rec) {
  if (guard == nullptr) return file.find(key, rec);
  bool found = false;
  try {
    found = file.find(key, rec);
  } catch (const Error&) {
    guard->check_view(file.path());
    throw;
  }
  guard->check_view(file.path());
  return found;
}

}  // namespace

std::optional<std::string_view> View::get(std::string_view key) const {
  detail::RecordView rec{};
  if (!view_find(*file_, guard_, key, rec)) return std::nullopt;
  return rec.value;
}
bool View::contains(std::string_view key) const {
  detail::RecordView rec{};
  return view_find(*file_, guard_, key, rec);
}
// Slot-less: the count as validated when the view began.
std::size_t View::size() const noexcept { return guard_ != nullptr ? keys_ : file_->key_count(); }

}  // namespace kvstore
