#include "format.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/version.hpp>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <system_error>

#include "crc32c.hpp"
#include "kvstore/error.hpp"
#include "layout.hpp"

namespace kvstore::detail {

std::uint64_t layout_fingerprint(std::uint32_t version) noexcept {
  // Everything whose change would make this build misread a file written by another.
  const std::uint64_t facts[] = {
      BOOST_VERSION,      sizeof(void*),       sizeof(FileHeader),   sizeof(Root),
      sizeof(ChunkHeader), sizeof(Slot),       sizeof(RecordHeader), sizeof(SegmentManager),
      alignof(std::max_align_t), version,
  };
  std::uint32_t crc = crc32c(0, facts, sizeof facts);
  if (version >= 3) {  // appended, so that the fingerprints of versions 1 and 2 stay what they were
    const std::uint64_t growth = sizeof(IndexGrowth);
    crc = crc32c(crc, &growth, sizeof growth);
  }
  return crc | (std::uint64_t{BOOST_VERSION} << 32);
}

std::uint64_t root_bytes(std::uint32_t version) noexcept {
  return sizeof(Root) + (version >= 3 ? sizeof(IndexGrowth) : 0);
}

const unsigned char* current_boot_id() noexcept {
  // Read once: it cannot change while we run. All zeros if unreadable, which
  // only makes recovery more eager, never less.
  static const auto id = [] {
    std::array<unsigned char, 16> out{};
    char text[64] = {};
    std::size_t n = 0;
    if (std::FILE* f = std::fopen("/proc/sys/kernel/random/boot_id", "re")) {
      n = std::fread(text, 1, sizeof text - 1, f);
      std::fclose(f);
    }
    auto nibble = [](char c) -> int {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      return -1;
    };
    std::size_t o = 0;
    int high = -1;
    for (std::size_t i = 0; i < n && o < out.size(); ++i) {
      const int v = nibble(text[i]);
      if (v < 0) continue;
      if (high < 0) {
        high = v;
      } else {
        out[o++] = static_cast<unsigned char>(high * 16 + v);
        high = -1;
      }
    }
    return out;
  }();
  return id.data();
}

void init_header(FileHeader& h, std::uint64_t file_size, std::uint64_t root_offset,
                 std::uint64_t hash_seed) {
  h.magic = kMagic;
  h.format_version = kFormatVersion;
  h.header_size = static_cast<std::uint32_t>(kHeaderSize);
  h.fingerprint = layout_fingerprint();
  h.hash_seed = hash_seed;
  h.root_offset = root_offset;
  h.created_unix = static_cast<std::uint64_t>(std::time(nullptr));
  h.header_crc = crc32c(0, &h, kHeaderCrcBytes);
  h.file_size.store(file_size);
  h.generation.store(1);
  h.state.store(static_cast<std::uint32_t>(FileState::live));
  h.writing.store(0);
  set_durable_mark(h, 0, 0);  // a new file holds no chunk yet
  seal_clean(h);
}

std::uint32_t state_checksum(const FileHeader& h) noexcept {
  std::uint32_t c = 0;
  auto add = [&c](std::uint64_t v) { c = crc32c(c, &v, sizeof v); };
  add(h.file_size.load(std::memory_order_relaxed));
  add(h.generation.load(std::memory_order_relaxed));
  add(h.state.load(std::memory_order_relaxed));
  add(h.durable_chunks);
  add(h.durable_used);
  add(h.durable_crc);
  add(h.writing.load(std::memory_order_relaxed));
  add(h.clean.load(std::memory_order_relaxed));
  add(h.grows);
  add(h.compactions);
  add(h.recoveries);
  add(h.last_compact_unix);
  c = crc32c(c, h.boot_id, sizeof h.boot_id);
  add(h.change_count);
  return c;
}

void seal_clean(FileHeader& h) noexcept {
  h.clean.store(1);
  h.state_crc = state_checksum(h);
}

void reseal(FileHeader& h) noexcept {
  if (h.clean.load() == 1) h.state_crc = state_checksum(h);
}

bool sealed(const FileHeader& h) noexcept {
  return h.clean.load() == 1 && h.state_crc == state_checksum(h);
}

namespace {
std::uint32_t mark_checksum(std::uint64_t chunks, std::uint64_t used) noexcept {
  const std::uint64_t v[2] = {chunks, used};
  // Seeded so that an all-zero mark (a file from before marks) never passes.
  return crc32c(0x4d41524b, v, sizeof v);
}
}  // namespace

DurableMark durable_mark(const FileHeader& h) noexcept {
  DurableMark m{h.durable_chunks, h.durable_used, false};
  m.valid = h.durable_crc == mark_checksum(m.chunks, m.used);
  return m;
}

void set_durable_mark(FileHeader& h, std::uint64_t chunks, std::uint64_t used) noexcept {
  h.durable_chunks = chunks;
  h.durable_used = used;
  h.durable_crc = mark_checksum(chunks, used);
}

HeaderCheck read_and_validate_header(int fd, const std::string& path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    throw Error(Errc::io, path + ": stat: " + std::strerror(errno), kNoOffset,
                std::error_code(errno, std::system_category()));
  }
  if (S_ISDIR(st.st_mode)) throw Error(Errc::not_a_store, path + ": is a directory");
  if (!S_ISREG(st.st_mode)) throw Error(Errc::not_a_store, path + ": not a regular file");
  const auto length = static_cast<std::uint64_t>(st.st_size);
  if (length == 0) throw Error(Errc::not_a_store, path + ": empty file");

  alignas(FileHeader) unsigned char buf[sizeof(FileHeader)] = {};
  const ssize_t got = ::pread(fd, buf, sizeof buf, 0);
  if (got < 0) {
    throw Error(Errc::io, path + ": read: " + std::strerror(errno), 0,
                std::error_code(errno, std::system_category()));
  }
  // Plain integers read out of the buffer: nothing from the file is trusted as an object.
  auto u64 = [&](std::size_t off) {
    std::uint64_t v;
    std::memcpy(&v, buf + off, 8);
    return v;
  };
  auto u32 = [&](std::size_t off) {
    std::uint32_t v;
    std::memcpy(&v, buf + off, 4);
    return v;
  };
  if (static_cast<std::size_t>(got) < 8 || u64(offsetof(FileHeader, magic)) != kMagic) {
    throw Error(Errc::not_a_store, path + ": not a kvstore file (bad magic)", 0);
  }
  if (static_cast<std::size_t>(got) < sizeof(FileHeader) || length < kMinValidSize) {
    throw Error(Errc::corrupt, path + ": truncated (" + std::to_string(length) + " bytes)", 0);
  }
  if (u32(offsetof(FileHeader, header_crc)) != crc32c(0, buf, kHeaderCrcBytes)) {
    throw Error(Errc::corrupt, path + ": header checksum mismatch", 0);
  }
  if (const std::uint32_t v = u32(offsetof(FileHeader, format_version)); v < kOldestFormatVersion || v > kFormatVersion) {
    throw Error(Errc::version_mismatch, path + ": format version " + std::to_string(v) + ", this build reads versions " +
                                            std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion));
  }
  if (u64(offsetof(FileHeader, fingerprint)) != layout_fingerprint(u32(offsetof(FileHeader, format_version))) ||
      u32(offsetof(FileHeader, header_size)) != kHeaderSize) {
    throw Error(Errc::version_mismatch,
                path + ": written by an incompatible build (layout fingerprint differs)");
  }
  HeaderCheck hc{u64(offsetof(FileHeader, file_size)), u64(offsetof(FileHeader, root_offset)),
                 u64(offsetof(FileHeader, hash_seed))};
  if (hc.file_size < kMinValidSize || hc.file_size % kPageSize != 0) {
    throw Error(Errc::corrupt, path + ": bad size in header", offsetof(FileHeader, file_size));
  }
  if (hc.file_size > length && u32(offsetof(FileHeader, clean)) == 0 &&
      length / kPageSize * kPageSize >= kMinValidSize) {
    hc.file_size = length / kPageSize * kPageSize;
    hc.short_file = true;
  }
  if (hc.file_size > length) {
    throw Error(Errc::corrupt,
                path + ": truncated: header says " + std::to_string(hc.file_size) +
                    " bytes, file has " + std::to_string(length),
                length);
  }
  if (u32(offsetof(FileHeader, state)) != static_cast<std::uint32_t>(FileState::live)) {
    // Compaction renames the new file into place before it retires the old
    // one, so a retired (or unknown) state at the path is damage.
    throw Error(Errc::corrupt, path + ": header marks the file as replaced", offsetof(FileHeader, state));
  }
  if (hc.root_offset < kHeaderSize ||
      hc.root_offset + root_bytes(u32(offsetof(FileHeader, format_version))) > hc.file_size ||
      hc.root_offset % alignof(Root) != 0) {
    throw Error(Errc::corrupt, path + ": root offset out of bounds",
                offsetof(FileHeader, root_offset));
  }
  return hc;
}

}  // namespace kvstore::detail
