// Dump and load in the text format of mdb_dump / db_dump (VERSION=3).
//
// dump() writes format=bytevalue (every byte as two hex digits). load() reads
// bytevalue and print (printable bytes as themselves, others as \hh, a
// backslash as \\). kvtool, the tests and the fuzzers share these.
#pragma once

#include <cstdint>
#include <functional>
#include <iosfwd>

#include "kvstore/store.hpp"

namespace kvstore {

struct DumpResult {
  std::uint64_t pairs = 0;
};

struct DumpOptions {
  // Write LMDB's mapsize= header line, sized so that mdb_load can take the
  // data (without it mdb_load uses 1 MiB). Berkeley DB's db_load rejects the
  // line: turn it off for dumps meant for db_load.
  bool mapsize = true;
  // Called now and then with the number of pairs written so far (for progress displays).
  std::function<void(std::uint64_t pairs)> progress;
};

// Writes every pair of `store` (a snapshot: writers are not held up).
// Throws Error: busy, corrupt, io.
DumpResult dump(const Store& store, std::ostream& out, const DumpOptions& options = {});

struct LoadResult {
  std::uint64_t pairs = 0;
};

// Reads a dump from `in` and stores its pairs through Store::apply, all or
// nothing: on malformed input nothing is stored. Throws Error: invalid_argument
// (malformed input; what() names the line), and whatever Store::apply throws.
struct LoadOptions {
  // Called now and then with the number of pairs parsed so far.
  std::function<void(std::uint64_t pairs)> progress;
};

LoadResult load(Store& store, std::istream& in, const LoadOptions& options = {});

}  // namespace kvstore
