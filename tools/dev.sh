#!/usr/bin/env bash
# The project's two entry points (DESIGN.md section 1):
#   tools/dev.sh demo   install what is missing, build Release, run the multi-process demo
#   tools/dev.sh test   install what is missing, build, run every test (ctest), plus the
#                       sanitizer builds (ASan+UBSan, TSan) and the fuzzers, briefly
#   tools/dev.sh lint [FILE...]  clang-format (report only) and clang-tidy (.clang-format,
#                       .clang-tidy) over the library, or over FILEs; not part of `test`
# Environment: KVSTORE_SOAK=1 runs the long forms (kill cycles, fuzzing) instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$(pwd)
jobs=$(nproc 2>/dev/null || echo 2)

packages=(
  g++ make cmake pkg-config git ca-certificates
  libboost1.81-dev libcli11-dev nlohmann-json3-dev libfmt-dev libxxhash-dev
  librapidcheck-dev libgtest-dev
  liblmdb-dev lmdb-utils db5.3-util libkyotocabinet-dev libtkrzw-dev gnuplot-nox
  liblz4-dev libzstd-dev liblzma-dev zlib1g-dev python3
  xfsprogs  # mkfs.xfs: the power-cut test (tests/powercut) clones devices on XFS
  pybind11-dev python3-dev python3-pytest python3-lmdb python3-gdbm
  clang libclang-rt-14-dev
)

install_missing() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "dev.sh: installing ${missing[*]}" >&2
  local sudo=""
  [ "$(id -u)" = 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# build DIR [cmake args...]
build() {
  local dir=$1; shift
  cmake -S "$root" -B "$root/$dir" -DCMAKE_BUILD_TYPE=Release "$@" >/dev/null
  cmake --build "$root/$dir" -j "$jobs"
}

cmd_demo() {
  install_missing
  build build -DKVSTORE_BUILD_TESTS=OFF -DKVSTORE_BUILD_TOOLS=ON -DKVSTORE_BUILD_BENCH=ON
  "$root/build/tools/kvdemo" "$@"
}

cmd_test() {
  install_missing
  local failed=0
  # Sanitizer builds first, so that the run ends with the main suite's summary line.
  echo "== ASan + UBSan ==" >&2
  build build-asan -DKVSTORE_SANITIZE=address,undefined -DKVSTORE_BUILD_TESTS=ON -DKVSTORE_BUILD_TOOLS=ON -DKVSTORE_BUILD_PYTHON=OFF \
    -DKVSTORE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  # no-asan: the Python tests (an ASan-built extension needs the ASan runtime
  # preloaded into python3); the Release suite below runs them.
  (cd build-asan && ctest --output-on-failure -j "$jobs" -LE "soak|tsan-only|no-asan") || failed=1
  echo "== TSan ==" >&2
  build build-tsan -DKVSTORE_SANITIZE=thread -DKVSTORE_BUILD_TESTS=ON -DKVSTORE_BUILD_TOOLS=OFF \
    -DKVSTORE_BUILD_BENCH=OFF -DKVSTORE_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  (cd build-tsan && TSAN_OPTIONS=halt_on_error=1 ctest --output-on-failure -L threads) || failed=1
  echo "== fuzzers (clang, libFuzzer) ==" >&2
  CXX=clang++ build build-fuzz -DKVSTORE_BUILD_FUZZERS=ON -DKVSTORE_BUILD_TESTS=OFF -DKVSTORE_SANITIZE=address,undefined \
    -DKVSTORE_BUILD_TOOLS=OFF -DKVSTORE_BUILD_BENCH=OFF -DKVSTORE_BUILD_PYTHON=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo
  # The short form (label fuzz: a few thousand executions each), or with
  # KVSTORE_SOAK=1 the long one (label soak: an hour each; raw_file a million executions).
  local fuzz_label=fuzz
  [ "${KVSTORE_SOAK:-0}" = 1 ] && fuzz_label=soak
  (cd build-fuzz && ctest --output-on-failure -L "$fuzz_label") || failed=1
  echo "== main suite (Release) ==" >&2
  build build -DKVSTORE_BUILD_TESTS=ON -DKVSTORE_BUILD_TOOLS=ON -DKVSTORE_BUILD_BENCH=ON
  local label=()
  [ "${KVSTORE_SOAK:-0}" = 1 ] || label=(-LE soak)
  (cd build && ctest --output-on-failure -j "$jobs" "${label[@]}") || failed=1
  return $failed
}

cmd_lint() {
  packages+=(clang-format clang-tidy)
  install_missing
  cmake -S "$root" -B "$root/build-lint" -DCMAKE_BUILD_TYPE=Release -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
    -DKVSTORE_BUILD_TESTS=OFF -DKVSTORE_BUILD_TOOLS=ON -DKVSTORE_BUILD_BENCH=ON >/dev/null
  local files=("$@")
  [ ${#files[@]} -gt 0 ] || mapfile -t files < <(cd "$root" && ls kvstore/src/*.cpp tools/*.cpp)
  local failed=0
  (cd "$root" && clang-format --dry-run "${files[@]}") || failed=1
  (cd "$root" && clang-tidy -quiet -p build-lint "${files[@]}") || failed=1
  return $failed
}

case "${1:-}" in
  demo) shift; cmd_demo "$@" ;;
  test) shift; cmd_test "$@" ;;
  lint) shift; cmd_lint "$@" ;;
  *) echo "usage: tools/dev.sh demo|test|lint" >&2; exit 2 ;;
esac
