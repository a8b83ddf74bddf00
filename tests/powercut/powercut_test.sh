#!/usr/bin/env bash
# A real power cut (issue 11, "Power cuts heal unaided").
#
#   powercut_test.sh WRITER CHECKER [--images N] [--modes "always none"] [--seed S] [--keep-failed DIR]
#                    [--no-writeback]
# By hand, as root, after `cmake --build build --target powercut_writer powercut_check`:
#   bash tests/powercut/powercut_test.sh build/tests/powercut/powercut_writer \
#     build/tests/powercut/powercut_check --images 30
# (ctest -L powercut runs 6 images per mode; the soak test, 30.)
#
# A writer (powercut_writer) runs on ext4 inside a loop device whose backing file
# lives on XFS. At random moments the backing file is cloned with
# `cp --reflink=always` (FICLONE): XFS flushes the file and shares its extents,
# so each clone is the device exactly as the loop driver had it at one instant,
# with whatever the ext4 journal and the page cache had not written yet missing:
# a real crash state, not a simulated mix of pages. Each clone is then mounted
# (ext4 replays its journal, as after a reboot) and checked by powercut_check,
# which opens the store the normal way in a mount namespace where
# /proc/sys/kernel/random/boot_id shows another uuid: the library sees another
# boot, as it would after the machine came back.
#
# The kernel writes dirty pages of a mapping back on its own only after 30 s,
# so a short run would see Sync::none stores that never left the page cache.
# Meanwhile the script starts writeback of the store file at random moments
# (powercut_writer --writeback: sync_file_range, no fsync, no journal commit),
# as the flusher would: the clones then also hold stores with some unsynced
# pages on disk and others not. --no-writeback leaves the kernel alone.
#
# Goals (exit 1 when one fails): Sync::always: every image opens by itself, with
# every op acknowledged before the clone, and check() is clean. Sync::none:
# every image opens by itself, check() is clean, the contents are a prefix of
# the history (batches all or nothing), and the store file exists once
# Store::open had returned.
# Exit 77 (ctest: skipped) when the machine cannot run it: not root, no loop
# device, no mkfs.xfs, no reflink, no mount namespace.
set -uo pipefail

skip() {
  echo "powercut: SKIPPED: $*"
  exit 77
}

if [ $# -lt 2 ]; then
  echo "usage: powercut_test.sh WRITER CHECKER [--images N] [--modes \"always none\"] [--seed S] [--keep-failed DIR] [--no-writeback]" >&2
  exit 2
fi
writer=$(realpath "$1")
checker=$(realpath "$2")
shift 2
images=6
modes="always none"
seed=$(( $(date +%s) % 100000 ))
keep_failed=""
writeback=1
while [ $# -gt 0 ]; do
  case "$1" in
    --images) images=$2; shift 2 ;;
    --modes) modes=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --keep-failed) keep_failed=$2; shift 2 ;;
    --no-writeback) writeback=0; shift ;;
    *) echo "powercut: unknown argument $1" >&2; exit 2 ;;
  esac
done

# ------------------------------------------------------------ can this machine do it?
[ "$(id -u)" = 0 ] || skip "needs root (loop devices, mount, a bind mount over the boot id)"
for tool in losetup mount umount mkfs.ext4 unshare cp timeout; do
  command -v "$tool" >/dev/null || skip "$tool not found"
done
command -v mkfs.xfs >/dev/null || skip "mkfs.xfs not found (Debian package xfsprogs)"
[ -e /dev/loop-control ] || ls /dev/loop[0-9]* >/dev/null 2>&1 || skip "no loop devices (/dev/loop-control, /dev/loopN)"
grep -qw xfs /proc/filesystems || modprobe xfs 2>/dev/null || true
grep -qw xfs /proc/filesystems || skip "the kernel has no xfs"
grep -qw ext4 /proc/filesystems || skip "the kernel has no ext4"
[ -r /proc/sys/kernel/random/boot_id ] || skip "no /proc/sys/kernel/random/boot_id"

work=$(mktemp -d "${TMPDIR:-/tmp}/kvpowercut.XXXXXX") || exit 1
mounts=()  # mounted here, innermost last
loops=()   # attached here, innermost last
writer_pid=""
flusher_pid=""

cleanup() {
  local i
  if [ -n "$flusher_pid" ]; then
    kill "$flusher_pid" 2>/dev/null
    wait "$flusher_pid" 2>/dev/null
  fi
  if [ -n "$writer_pid" ]; then
    kill -9 "$writer_pid" 2>/dev/null
    wait "$writer_pid" 2>/dev/null
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount "${mounts[i]}" 2>/dev/null || umount -l "${mounts[i]}" 2>/dev/null ||
      echo "powercut: could not unmount ${mounts[i]}" >&2
  done
  for ((i = ${#loops[@]} - 1; i >= 0; i--)); do
    losetup -d "${loops[i]}" 2>/dev/null || echo "powercut: could not detach ${loops[i]}" >&2
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# attach FILE: attaches FILE to a free loop device; sets $dev.
attach() {
  dev=$(losetup -f --show "$1") || return 1
  loops+=("$dev")
}
# detach DEV: the innermost attached device.
detach() {
  losetup -d "$1" || return 1
  unset 'loops[${#loops[@]}-1]'
  loops=("${loops[@]}")
}
# mount_dev DEV DIR [OPTIONS]
mount_dev() {
  mkdir -p "$2" && mount ${3:+-o "$3"} "$1" "$2" || return 1
  mounts+=("$2")
}
# unmount DIR: the innermost mount.
unmount() {
  umount "$1" || return 1
  unset 'mounts[${#mounts[@]}-1]'
  mounts=("${mounts[@]}")
}

# --------------------------------------------------- the XFS that holds the device images
# Sparse: 2 GiB of address space, a few hundred MB used (clones share extents).
truncate -s 2G "$work/xfs.img"
mkfs.xfs -q -m reflink=1 "$work/xfs.img" >/dev/null 2>&1 || skip "mkfs.xfs -m reflink=1 failed (xfsprogs too old?)"
attach "$work/xfs.img" || skip "no free loop device (losetup -f failed)"
mount_dev "$dev" "$work/xfs" || skip "cannot mount XFS from a loop device"
xfs="$work/xfs"
xfs_info "$xfs" 2>/dev/null | grep -q 'reflink=1' || skip "XFS without reflink (xfs_info shows no reflink=1)"
echo probe >"$xfs/probe" && cp --reflink=always "$xfs/probe" "$xfs/probe.clone" 2>/dev/null ||
  skip "cp --reflink=always fails on this XFS"
rm -f "$xfs/probe" "$xfs/probe.clone"

# ------------------------------------------------------------------- another boot id
# The checker runs in its own mount namespace with a file bind-mounted over
# /proc/sys/kernel/random/boot_id: the library reads that path (format.cpp,
# current_boot_id), so the image is opened "after a reboot". The checker prints
# the id the library read; every image's line is compared with this one.
host_boot=$(cat /proc/sys/kernel/random/boot_id)
fake_boot=$(cat /proc/sys/kernel/random/uuid)
echo "$fake_boot" >"$work/boot_id"
seen=$(unshare -m sh -c 'mount --bind "$1" /proc/sys/kernel/random/boot_id && cat /proc/sys/kernel/random/boot_id' \
  sh "$work/boot_id" 2>/dev/null)
[ "$seen" = "$fake_boot" ] && [ "$seen" != "$host_boot" ] ||
  skip "cannot show another boot id (unshare -m + mount --bind over /proc/sys/kernel/random/boot_id)"
[ "$(cat /proc/sys/kernel/random/boot_id)" = "$host_boot" ] || {
  echo "powercut: the boot id bind mount leaked out of its namespace" >&2
  exit 1
}

# ----------------------------------------------------------------------- one mode
RANDOM=$seed
echo "powercut: seed $seed, $images images per mode, modes: $modes, writeback at random moments: $([ "$writeback" = 1 ] && echo on || echo off), work dir $work"
failed=0
summaries=()

# clone_sleeps N SPAN: N sorted random moments in [0.2, SPAN] s, as sleeps between them.
clone_sleeps() {
  awk -v n="$1" -v span="$2" -v seed="$RANDOM" \
    'BEGIN { srand(seed); for (i = 0; i < n; i++) printf "%.3f\n", 0.2 + rand() * (span - 0.2) }' |
    sort -n | awk '{ printf "%.3f\n", $1 - prev; prev = $1 }'
}

run_mode() {
  local mode=$1 img="$xfs/$1.ext4" mnt="$work/$1.mnt" log="$work/$1.log" rate span i
  # Sync::none would write as fast as memory allows: paced to keep the image
  # small. Sync::always is paced by its own syncs.
  rate=0
  [ "$mode" = none ] && rate=2000
  # The moments spread over SPAN seconds after open: the first seconds hold the
  # creation of the file (ext4 commits its journal every 5 s); the long form
  # also passes the 30 s after which the kernel writes dirty pages back.
  span=$(( images * 13 / 10 ))
  [ "$span" -lt 12 ] && span=12

  truncate -s 1G "$img"
  mkfs.ext4 -q -F "$img" >/dev/null 2>&1 || { echo "powercut: mkfs.ext4 failed" >&2; return 1; }
  attach "$img" || { echo "powercut: no free loop device" >&2; return 1; }
  local edev=$dev
  mount_dev "$edev" "$mnt" || { echo "powercut: cannot mount ext4" >&2; return 1; }

  : >"$log"
  "$writer" "$mnt/store.kv" "$log" "$mode" 100000000 "$rate" 2>"$work/$mode.writer.err" &
  writer_pid=$!
  for ((i = 0; i < 200; i++)); do
    [ -s "$log" ] && break
    kill -0 "$writer_pid" 2>/dev/null || break
    sleep 0.05
  done
  if ! [ -s "$log" ]; then
    echo "powercut: the writer did not open the store: $(cat "$work/$mode.writer.err")" >&2
    return 1
  fi

  if [ "$writeback" = 1 ]; then
    (
      trap 'exit 0' TERM
      # Every 0.2-2 s; sleep in the background so that TERM ends the loop at once.
      for pause in $(awk -v seed="$RANDOM" 'BEGIN { srand(seed); for (i = 0; i < 10000; i++) printf "%.3f\n", 0.2 + rand() * 1.8 }'); do
        sleep "$pause" &
        wait $!
        "$writer" --writeback "$mnt/store.kv"
      done
    ) &
    flusher_pid=$!
  fi

  local lines=() delay n=0
  for delay in $(clone_sleeps "$images" "$span"); do
    # In the background: bash runs a trap only once its foreground child ends.
    sleep "$delay" &
    wait $!
    if ! kill -0 "$writer_pid" 2>/dev/null; then
      echo "powercut: the writer died: $(cat "$work/$mode.writer.err")" >&2
      return 1
    fi
    # Read before the clone starts: every op counted here returned before the
    # device's state was taken.
    lines[n]=$(wc -l <"$log")
    cp --reflink=always "$img" "$xfs/$mode.clone.$n" || { echo "powercut: reflink copy failed" >&2; return 1; }
    n=$((n + 1))
  done
  [ "$n" = "$images" ] || { echo "powercut: took $n clones of $images" >&2; return 1; }
  if [ -n "$flusher_pid" ]; then
    kill "$flusher_pid" 2>/dev/null
    wait "$flusher_pid" 2>/dev/null
    flusher_pid=""
  fi
  kill -9 "$writer_pid"
  wait "$writer_pid" 2>/dev/null
  writer_pid=""
  local final
  final=$(wc -l <"$log")
  if [ -s "$work/$mode.writer.err" ]; then
    echo "powercut: writer stderr: $(cat "$work/$mode.writer.err")" >&2
  fi
  unmount "$mnt" || return 1
  detach "$edev" || return 1
  rm -f "$img"

  local opened=0 clean=0 prefix=0 lost=0 missing_file=0 refused=0 repaired=0 crashed=0 behind=0 max_behind=0
  local line rc cdev cmnt
  for ((i = 0; i < n; i++)); do
    cmnt="$work/$mode.clone.mnt"
    attach "$xfs/$mode.clone.$i" || { echo "powercut: no free loop device" >&2; return 1; }
    cdev=$dev
    # Mounting replays the ext4 journal: what a reboot does.
    if ! mount_dev "$cdev" "$cmnt"; then
      echo "powercut: image $i: ext4 does not mount" >&2
      detach "$cdev"
      failed=1
      continue
    fi
    line=$(timeout 120 unshare -m sh -c 'mount --bind "$1" /proc/sys/kernel/random/boot_id && shift && exec "$@"' \
      sh "$work/boot_id" "$checker" "$cmnt/store.kv" "$mode" "${lines[i]}" "$final" 2>&1)
    rc=$?
    echo "powercut sync=$mode image $i: log lines ${lines[i]}/$final: $line"
    if [ $rc -gt 1 ]; then
      # A hang (124) or a crash: the image is what a user would have after the
      # power came back. Keep the store for the report when it is small.
      crashed=$((crashed + 1))
      echo "powercut sync=$mode image $i: the checker did not finish (exit $rc)" >&2
      if [ -f "$cmnt/store.kv" ]; then
        local keep=${keep_failed:-$PWD}
        mkdir -p "$keep"
        gzip -c "$cmnt/store.kv" >"$keep/powercut-$mode-$seed-$i.kv.gz"
        echo "powercut: kept $keep/powercut-$mode-$seed-$i.kv.gz ($(stat -c %s "$keep/powercut-$mode-$seed-$i.kv.gz") bytes)" >&2
      fi
    else
      case " $line " in *" boot_id=$fake_boot "*) ;; *)
        echo "powercut: image $i was not checked under the other boot id ($line)" >&2
        failed=1 ;;
      esac
    fi
    case " $line " in *" open=ok "*) opened=$((opened + 1)) ;; esac
    case " $line " in *" open=refused "*) refused=$((refused + 1)) ;; esac
    case " $line " in *" check=clean "*) clean=$((clean + 1)) ;; esac
    case " $line " in *" prefix=1 "*) prefix=$((prefix + 1)) ;; esac
    case " $line " in *" repair_check=clean repair_prefix=1 "*) repaired=$((repaired + 1)) ;; esac
    case " $line " in *" opened=1 "*" exists=0 "*) missing_file=$((missing_file + 1)) ;; esac
    # Acknowledged ops the store does not hold: for a prefix, how far behind
    # the log it is; otherwise the acknowledged keys it lost.
    local m
    m=$(sed -n 's/.* missing_acked_ops=\([0-9]*\).*/\1/p' <<<"$line")
    [ -n "$m" ] || m=$(sed -n 's/.* lost_acked_keys=\([0-9]*\).*/\1/p' <<<"$line")
    m=${m:-0}
    if [ "$mode" = always ]; then
      lost=$((lost + m))
    elif [ "$m" -gt 0 ]; then
      behind=$((behind + 1))
      [ "$m" -gt "$max_behind" ] && max_behind=$m
    fi
    unmount "$cmnt" || return 1
    detach "$cdev" || return 1
    rm -f "$xfs/$mode.clone.$i"
  done

  local summary goal=1
  if [ "$mode" = always ]; then
    summary="powercut sync=always: $n images, $opened opened, $clean check clean, $prefix prefix-consistent, $lost lost acknowledged ops, $missing_file missing the store file after open returned"
    [ "$opened" = "$n" ] && [ "$clean" = "$n" ] && [ "$prefix" = "$n" ] && [ "$lost" = 0 ] && [ "$missing_file" = 0 ] || goal=0
  else
    summary="powercut sync=none: $n images, $opened opened, $clean check clean, $prefix prefix-consistent, $missing_file missing the store file after open returned, $behind behind the log (at most $max_behind acknowledged ops missing)"
    [ "$opened" = "$n" ] && [ "$clean" = "$n" ] && [ "$prefix" = "$n" ] && [ "$missing_file" = 0 ] || goal=0
  fi
  summary+="; $refused refused ($repaired sound after check --repair), $crashed crashed or hung"
  [ "$crashed" = 0 ] || goal=0
  if [ "$goal" = 1 ]; then summary+=": goal met"; else summary+=": GOAL FAILED"; failed=1; fi
  summaries+=("$summary")
  echo "$summary"
}

for mode in $modes; do
  case "$mode" in always | none) ;; *) echo "powercut: unknown mode $mode" >&2; exit 2 ;; esac
  # A failure of the harness itself (not of the store): stop; the trap cleans up.
  run_mode "$mode" || { echo "powercut: harness error in sync=$mode, stopping" >&2; exit 1; }
done
echo "---"
for s in "${summaries[@]}"; do echo "$s"; done
exit $failed
