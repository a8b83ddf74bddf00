#include "temp_files.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "mapping.hpp"

namespace kvstore::detail {

namespace {
constexpr const char* kKinds[] = {"create.", "compact.", "recover."};
}  // namespace

std::string temp_path(const std::string& path, const char* what) {
  static std::atomic<unsigned> counter{0};
  return path + "." + what + "." + std::to_string(::getpid()) + "." + std::to_string(counter++);
}

void remove_stale_temp_files(const std::filesystem::path& store) {
  const std::string prefix = store.filename().string() + ".";
  const std::filesystem::path dir = store.has_parent_path() ? store.parent_path() : ".";
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(prefix, 0) != 0) continue;
    const std::string rest = name.substr(prefix.size());
    for (const char* what : kKinds) {
      if (rest.rfind(what, 0) == 0 &&
          rest.find_first_not_of("0123456789.", std::strlen(what)) == std::string::npos) {
        std::filesystem::remove(entry.path(), ec);
      }
    }
  }
}

int sync_directory(const std::filesystem::path& file) noexcept {
  const std::string dir = file.has_parent_path() ? file.parent_path().string() : ".";
  const Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d || ::fsync(d.get()) != 0) return errno;
  return 0;
}

}  // namespace kvstore::detail
