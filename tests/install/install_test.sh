#!/usr/bin/env bash
# Installs the build to a temporary prefix, then builds the README example as
# an outside consumer three ways: find_package(kvstore), pkg-config, and
# add_subdirectory of the source tree. Usage: install_test.sh BUILD_DIR SOURCE_DIR
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
"$t/pc" "$t/b.kv"
cmake -S "$src/tests/install/consumer" -B "$t/sub" -DKVSTORE_SOURCE_DIR="$src" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$t/sub" -j2 >/dev/null
"$t/sub/consumer" "$t/c.kv"
echo "install test: find_package, pkg-config and add_subdirectory consumers ok"
