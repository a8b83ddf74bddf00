// The text format of mdb_dump / db_dump (VERSION=3), both directions.
//
//   VERSION=3
//   format=bytevalue | print
//   type=btree                 (and other name=value lines: ignored on load)
//   HEADER=END
//    <key>                     one space, then the key: hex pairs (bytevalue)
//    <value>                   or printable bytes with \hh escapes (print)
//   ...
//   DATA=END
#include "kvstore/dump.hpp"

#include <istream>
#include <ostream>
#include <string>
#include <vector>

#include "kvstore/error.hpp"

namespace kvstore {
namespace {

constexpr char kHex[] = "0123456789abcdef";

void put_hex_line(std::ostream& out, std::string_view bytes) {
  std::string line;
  line.reserve(bytes.size() * 2 + 2);
  line.push_back(' ');
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    line.push_back(kHex[b >> 4]);
    line.push_back(kHex[b & 15]);
  }
  line.push_back('\n');
  out.write(line.data(), static_cast<std::streamsize>(line.size()));
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

[[noreturn]] void bad(std::uint64_t line, const std::string& what) {
  throw Error(Errc::invalid_argument, "line " + std::to_string(line) + ": " + what);
}

std::string decode_hex(std::string_view text, std::uint64_t line) {
  if (text.size() % 2 != 0) bad(line, "odd number of hex digits");
  std::string out(text.size() / 2, '\0');
  for (std::size_t i = 0; i < out.size(); ++i) {
    const int hi = hex_digit(text[2 * i]);
    const int lo = hex_digit(text[2 * i + 1]);
    if (hi < 0 || lo < 0) bad(line, "bad hex digit");
    out[i] = static_cast<char>(hi * 16 + lo);
  }
  return out;
}

// print format: printable bytes stand for themselves, others are \hh, and a
// backslash is \\. mdb_dump -p does not escape backslashes, so a backslash not
// followed by a valid escape is taken literally.
std::string decode_print(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '\\' && i + 1 < text.size()) {
      if (text[i + 1] == '\\') {
        out.push_back('\\');
        ++i;
        continue;
      }
      if (i + 2 < text.size() && hex_digit(text[i + 1]) >= 0 && hex_digit(text[i + 2]) >= 0) {
        out.push_back(static_cast<char>(hex_digit(text[i + 1]) * 16 + hex_digit(text[i + 2])));
        i += 2;
        continue;
      }
    }
    out.push_back(text[i]);
  }
  return out;
}

}  // namespace

DumpResult dump(const Store& store, std::ostream& out, const DumpOptions& options) {
  // type=btree: the one type both mdb_load and db_load accept.
  out << "VERSION=3\nformat=bytevalue\ntype=btree\n";
  if (options.mapsize) {
    // mdb_load takes its map size from this line (1 MiB without one): leave room.
    const Stats st = store.stats();
    std::uint64_t mapsize = (st.key_bytes + st.value_bytes) * 4 + st.keys * 64;
    if (mapsize < (std::uint64_t{1} << 30)) mapsize = std::uint64_t{1} << 30;
    mapsize = (mapsize + 4095) / 4096 * 4096;
    out << "mapsize=" << mapsize << '\n';
  }
  out << "HEADER=END\n";
  DumpResult r;
  store.for_each([&](std::string_view key, std::string_view value) {
    put_hex_line(out, key);
    put_hex_line(out, value);
    if (++r.pairs % 65536 == 0 && options.progress) options.progress(r.pairs);
    return static_cast<bool>(out);
  });
  out << "DATA=END\n";
  out.flush();
  if (!out) throw Error(Errc::io, "write failed while dumping");
  return r;
}

LoadResult load(Store& store, std::istream& in, const LoadOptions& options) {
  std::string line;
  std::uint64_t n = 0;
  bool print = false;
  bool header_done = false;
  bool version_seen = false;
  // The header.
  while (std::getline(in, line)) {
    ++n;
    if (line == "HEADER=END") {
      header_done = true;
      break;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos) bad(n, "expected name=value in the header");
    const std::string name = line.substr(0, eq);
    const std::string value = line.substr(eq + 1);
    if (name == "VERSION") {
      if (value != "3") bad(n, "unsupported VERSION " + value);
      version_seen = true;
    } else if (name == "format") {
      if (value == "print") {
        print = true;
      } else if (value != "bytevalue") {
        bad(n, "unknown format " + value);
      }
    } else if (name == "database" || name == "subdatabase") {
      // A named sub-database: its pairs load like any others.
    }
  }
  if (!header_done) bad(n, "missing HEADER=END");
  if (!version_seen) bad(n, "missing VERSION=3");
  // The pairs, all parsed before anything is stored.
  std::vector<BatchOp> ops;
  bool data_done = false;
  auto decode = [&](const std::string& text) {
    if (text.empty() || text[0] != ' ') bad(n, "a data line must begin with a space");
    const std::string_view body = std::string_view(text).substr(1);
    return print ? decode_print(body) : decode_hex(body, n);
  };
  while (std::getline(in, line)) {
    ++n;
    if (line == "DATA=END") {
      data_done = true;
      break;
    }
    BatchOp op;
    op.key = decode(line);
    if (!std::getline(in, line)) bad(n, "key without a value (truncated input)");
    ++n;
    if (line == "DATA=END") bad(n, "key without a value");
    op.value = decode(line);
    ops.push_back(std::move(op));
    if (ops.size() % 65536 == 0 && options.progress) options.progress(ops.size());
  }
  if (!data_done) bad(n, "missing DATA=END (truncated input)");
  if (in.bad()) throw Error(Errc::io, "read failed while loading");
  store.apply(ops);
  return LoadResult{ops.size()};
}

}  // namespace kvstore
