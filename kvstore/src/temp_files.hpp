// Files built aside and renamed into place (creation, compaction, recovery):
// their names, their removal after a crash, and making a rename durable.
#pragma once

#include <filesystem>
#include <string>

namespace kvstore::detail {

// "<path>.<what>.<pid>.<n>": unique within the machine while the process lives.
[[nodiscard]] std::string temp_path(const std::string& path, const char* what);
// Removes what a process killed while building a file left beside `store`.
// Only the first handle to attach may call it: nobody else can be building one.
void remove_stale_temp_files(const std::filesystem::path& store);
// Makes a rename in `file`'s directory durable. Returns 0 or an errno.
int sync_directory(const std::filesystem::path& file) noexcept;

}  // namespace kvstore::detail
