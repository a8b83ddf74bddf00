// The state behind one kvstore::Transaction: the writes it buffers over the
// committed store, and the batch they become at commit. It lives only while
// Store::transact holds the write lock, so the committed state under it
// cannot change and reads of it need no copy of their own.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "data_file.hpp"

namespace kvstore::detail {

class TransactionState {
 public:
  explicit TransactionState(const DataFile& file) noexcept : file_(file) {}

  [[nodiscard]] std::optional<std::string> get(std::string_view key) const;
  [[nodiscard]] bool contains(std::string_view key) const;
  void put(std::string_view key, std::string_view value);
  bool erase(std::string_view key);

  // The batch that makes the committed state what this transaction sees: a
  // put for every key it wrote, an erase only for a key that is committed
  // (erasing what the transaction itself put and the store never had writes
  // nothing). The views point into this state: keep it alive while they are used.
  [[nodiscard]] std::vector<DataFile::Op> batch() const;

 private:
  const DataFile& file_;
  // key -> value it will have (nullopt: erased). Ordered with a transparent
  // comparator, so that a string_view looks up without a copy.
  std::map<std::string, std::optional<std::string>, std::less<>> writes_;
};

}  // namespace kvstore::detail
