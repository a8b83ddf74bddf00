// The header's mutable part (FORMAT.md "Header: mutable part"), written only
// here: the writing-phase protocol that recovery reads after a death, the
// clean flag and boot id that tell it a power cut from a process crash, the
// durable mark, the seal over it all, and the counters.
#include <cstring>

#include "data_file.hpp"

namespace kvstore::detail {

void DataFile::begin_change() {
  FileHeader& h = header();
  // The boot id is checked too: a file rebuilt in another boot carries none.
  if (h.clean.load(std::memory_order_relaxed) != 0 ||
      std::memcmp(h.boot_id, current_boot_id(), sizeof h.boot_id) != 0) {
    std::memcpy(h.boot_id, current_boot_id(), sizeof h.boot_id);
    h.clean.store(0);
    // Once a session, in every sync mode: after a power cut the file must not
    // claim to be clean while pages written since were lost.
    sync_header();
  }
  h.writing.store(kRecords, std::memory_order_relaxed);
}

void DataFile::end_change() noexcept { header().writing.store(kIdle, std::memory_order_release); }

void DataFile::close_clean() {
  FileHeader& h = header();
  if (h.clean.load() != 0 || h.writing.load() != 0) return;
  sync_all();  // everything durable first, then the claim that it is
  mark_durable();
  seal_clean(h);
  sync_header();
}

void DataFile::set_change_count(std::uint64_t count) noexcept {
  FileHeader& h = header();
  h.change_count = count;
  reseal(h);  // a freshly rebuilt file is clean
}

void DataFile::retire() noexcept { header().state.store(static_cast<std::uint32_t>(FileState::retired)); }

}  // namespace kvstore::detail
