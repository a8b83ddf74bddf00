// kvstore::Options: how Store::open behaves.
#pragma once

#include <chrono>
#include <cstdint>

namespace kvstore {

enum class Sync {
  none,    // a put is durable against any process crash (kill -9), not power loss
  always,  // a put returns only after its record is on stable storage (msync/fdatasync)
};

struct Options {
  // Create the file when it does not exist.
  bool create = true;
  // Open without the right to modify; put/erase/compact throw Errc::read_only.
  bool read_only = false;
  // Size of a newly created file in bytes (at least 64 KiB; rounded up to 4 KiB).
  std::uint64_t initial_size = std::uint64_t{1} << 20;
  // The file never grows past this; a put that would needs Errc::store_full.
  std::uint64_t max_file_size = std::uint64_t{1} << 40;
  Sync sync = Sync::none;
  // Longest wait for the store's lock before Errc::busy.
  std::chrono::milliseconds lock_timeout{10'000};
};

}  // namespace kvstore
