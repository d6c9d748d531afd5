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
echo "tree-regress: $bad failure(s)"
((bad == 0))
