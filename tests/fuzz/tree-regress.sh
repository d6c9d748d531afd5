#!/usr/bin/env bash
# What the whole-tree fuzzer found, kept: cohctl on a replay tree whose files
# are FIFOs, symlink loops or folders must answer within the time (it hung
# reading a FIFO before coh_fs_open refused them) with exit 0 or a message.
#   tests/fuzz/tree-regress.sh COHCTL
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cohctl=${1:?usage: tree-regress.sh COHCTL}
work=$(mktemp -d /tmp/coh-tree-regress-XXXXXX)
trap 'rm -rf "$work"' EXIT
bad=0
for tree in cxl-cpuless kfd-mi210; do
  for f in proc/cpuinfo proc/sys/kernel/osrelease sys/devices/system/node/node0/meminfo; do
    for kind in fifo loop dir; do
      rm -rf "$work/t"; cp -a "$here/../data/$tree" "$work/t"
      rm -f "$work/t/$f"; mkdir -p "$(dirname "$work/t/$f")"
      case $kind in
        fifo) mkfifo "$work/t/$f" ;;
        loop) ln -s "$(basename "$f")" "$work/t/$f" ;;
        dir) mkdir -p "$work/t/$f" ;;
      esac
      timeout 20 "$cohctl" --fsroot "$work/t" devices --json >"$work/out" 2>"$work/err"
      rc=$?
      if ((rc == 124)); then
        echo "FAIL: $tree/$f as a $kind: cohctl hung"; bad=$((bad + 1))
      elif ((rc != 0 && rc != 1)) || { ((rc == 1)) && [[ ! -s $work/err ]]; }; then
        echo "FAIL: $tree/$f as a $kind: exit $rc"; cat "$work/err"; bad=$((bad + 1))
      fi
    done
  done
done
# A device-dax align of 1 byte (or 0, or not a power of two) on a 16 GiB device
# once sized the chunk map at size/align entries: 64 GiB of calloc. Such a
# device is skipped with a note; a 4 KiB align on a 16 TiB device is served
# with larger chunks, the map bounded.
dax=sys/devices/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0/dax0.0
for case in "1 17179869184 skipped" "0 17179869184 cxl:dax0.0" "3 17179869184 skipped" \
            "12288 17179869184 skipped" "4096 17592186044416 cxl:dax0.0" \
            "18446744073709551615 17179869184 skipped" "4096 18446744073709551615 cxl:dax0.0"; do
  read -r align size want <<<"$case"
  rm -rf "$work/t"; cp -a "$here/../data/cxl-expander-devdax" "$work/t"
  printf '%s\n' "$align" >"$work/t/$dax/align"
  printf '%s\n' "$size" >"$work/t/$dax/size"
  timeout 20 "$cohctl" --fsroot "$work/t" devices >"$work/out" 2>&1
  rc=$?
  if ((rc != 0)) || ! grep -q -- "$want" "$work/out"; then
    echo "FAIL: dax align $align size $size: exit $rc, wanted '$want'"; cat "$work/out"; bad=$((bad + 1))
  fi
done
echo "tree-regress: $bad failure(s)"
((bad == 0))
