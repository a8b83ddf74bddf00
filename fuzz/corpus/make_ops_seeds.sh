#!/bin/sh
# Writes the generated seeds of fuzz/corpus/ops/ (the encoding is described at
# the top of fuzz/ops_fuzzer.cpp). Deterministic: rerunning it gives the same
# bytes. seed0..seed7 were written by hand earlier and are kept as they are.
set -eu
out=$(dirname "$0")/ops
mkdir -p "$out"

# Puts, a get, an erase, a get of the erased key, the empty key, a NUL byte in a key.
printf '\000\003abc\005hello\003\003abc\002\003abc\003\003abc\000\000\001x\003\000\001\003a\000b\001z\003\003a\000b\004\000' \
  >"$out/gen-basic"

# Long values (opcode 1, length byte >= 0x80) until the 64 KiB file has grown
# several times, then a full iteration, stats, compact, stats, reopen, iteration.
{
  i=0
  while [ $i -lt 24 ]; do
    printf '\001\002k%c\377' "$(printf "\\$(printf '%03o' $((65 + i)))")"
    i=$((i + 1))
  done
  printf '\004\000\011\000\005\000\011\000\006\000\004\000'
} >"$out/gen-grow"

# Two handles: write through one, switch, read and erase through the other,
# compact through the second while the first is open, switch back, iterate.
printf '\000\001a\0011\010\000\003\001a\002\001a\001\001b\377\005\000\010\000\003\001a\003\001b\004\000\011\000' \
  >"$out/gen-two-handles"

# A batch of puts and an erase, then iteration and a reopen.
printf '\007\000\002\001p\0011\000\001q\0012\000\001p\000\001\004\000\006\000\004\000' \
  >"$out/gen-batch"

# Coordination: a transaction (put p, erase q, get p), one that throws, a view,
# increments of a counter and of a word, compare_exchange, insert, change count.
printf '\000\001q\0011\012\000\002\000\001p\001v\001\001q\002\001p\000\012\000\000\000\001x\001y\001\013\000\001\001p\001q\014\001n\005\014\001n\373\014\001p\001\015\001n\001\001\0012\015\001n\006\016\001i\0011\016\001i\0012\017\000\004\000' \
  >"$out/gen-coordination"
