#!/usr/bin/env bash
# Installs the build to a temporary prefix, then builds the README example as
# an outside consumer three ways: find_package(kvstore), pkg-config, and
# add_subdirectory of the source tree; then the README's C example with plain
# `cc` and pkg-config only (C99, pedantic, warnings as errors), linked to the
# shared libkvstore.so. Usage: install_test.sh BUILD_DIR SOURCE_DIR
set -eu
build=$1; src=$2
t=$(mktemp -d); trap 'rm -rf "$t"' EXIT
cmake --install "$build" --prefix "$t/prefix" >/dev/null
test -x "$t/prefix/bin/kvtool"
cmake -S "$src/tests/install/consumer" -B "$t/fp" -DCMAKE_PREFIX_PATH="$t/prefix" >/dev/null
cmake --build "$t/fp" >/dev/null
"$t/fp/consumer" "$t/a.kv"
PKG_CONFIG_PATH="$t/prefix/lib/pkgconfig" g++ -std=c++20 "$src/tests/install/consumer/main.cpp" -o "$t/pc" \
  $(PKG_CONFIG_PATH="$t/prefix/lib/pkgconfig" pkg-config --cflags --libs kvstore)
LD_LIBRARY_PATH="$t/prefix/lib" "$t/pc" "$t/b.kv"   # the shared library, found as from a system directory
cmake -S "$src/tests/install/consumer" -B "$t/sub" -DKVSTORE_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$t/sub" -j2 >/dev/null
"$t/sub/consumer" "$t/c.kv"
# C: the flags come from pkg-config alone; the program finds libkvstore.so by
# LD_LIBRARY_PATH as it would from a system library directory.
export PKG_CONFIG_PATH="$t/prefix/lib/pkgconfig"
case " $(pkg-config --cflags kvstore) " in *c++*) echo "install test: C++ flag in Cflags" >&2; exit 1 ;; esac
cc -std=c99 -Wall -Wextra -Werror -pedantic "$src/tests/install/consumer/example.c" -o "$t/c" \
  $(pkg-config --cflags --libs kvstore)
LD_LIBRARY_PATH="$t/prefix/lib" "$t/c" "$t/d.kv" > "$t/c.out"
LD_LIBRARY_PATH="$t/prefix/lib" "$t/c" "$t/d.kv" >> "$t/c.out"   # second run: the counter and the leader persist
diff -u - "$t/c.out" <<'OUT'
key: 8 bytes, starts "bytes"
nope: absent
hits 1, transfer: success
key: 8 bytes, starts "bytes"
nope: absent
someone leads
hits 2, transfer: success
OUT
# The header is also valid C++.
echo '#include <kvstore/kvstore.h>' | g++ -x c++ -std=c++11 -Wall -Wextra -Werror -pedantic -fsyntax-only \
  $(pkg-config --cflags kvstore) -
# The shared library carries a SONAME and a version.
objdump -p "$t/prefix/lib/libkvstore.so" | grep -q 'SONAME *libkvstore.so.[0-9]'
test -x "$t/prefix/bin/kvtool" && "$t/prefix/bin/kvtool" -f "$t/d.kv" get hits | grep -qx 2
echo "install test: find_package, pkg-config and add_subdirectory consumers, C example ok"
