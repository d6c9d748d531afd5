#!/usr/bin/env bash
# Whole-tree fuzzing: every replay tree of tests/data is copied, then each of
# its files in turn is mutated (truncated, garbage, NUL bytes, huge and
# negative numbers, replaced by a FIFO, a symlink loop, a folder) and
# `cohctl --fsroot COPY devices --json` run under a timeout.  Passes when each
# run exits 0 or 1 with a message (a clean error), within the time, without a
# sanitizer report.  The file is restored before the next mutation.
#   tests/fuzz/tree-fuzz.sh COHCTL [WORKDIR]
# COH_TREE_FUZZ_FILES: files per tree (default all); COH_TREE_FUZZ_SECONDS: the
# whole run's budget, shared evenly by the trees (default no limit); the files are taken
# in a shuffled order (COH_TREE_FUZZ_SEED, printed) so short runs vary.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
data=$here/../data
cohctl=${1:?usage: tree-fuzz.sh COHCTL [WORKDIR]}
if [[ -n ${2:-} ]]; then
  work=$2
else
  work=$(mktemp -d /tmp/coh-treefuzz-XXXXXX)
  trap 'rm -rf "$work"' EXIT
fi
per_tree=${COH_TREE_FUZZ_FILES:-0}
budget=${COH_TREE_FUZZ_SECONDS:-0}
seed=${COH_TREE_FUZZ_SEED:-$(date +%s)}
echo "tree-fuzz: seed $seed"
mkdir -p "$work"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
runs=0 bad=0

mutate() {   # file, mutation number
  local f=$1
  case $2 in
    0) : >"$f" ;;                                                  # empty
    1) head -c 3 "$f.orig" >"$f" ;;                                # truncated
    2) head -c 4096 /dev/urandom >"$f" ;;                          # garbage
    3) printf '1\0002\0003\n' >"$f" ;;                             # NUL bytes
    4) echo 99999999999999999999999999 >"$f" ;;                    # huge
    5) echo -2147483649 >"$f" ;;                                   # negative
    6) echo "0-1023,-5,0x40,18446744073709551615" >"$f" ;;         # list-shaped nonsense
    7) rm -f "$f"; mkfifo "$f" ;;                                  # FIFO: a read would block
    8) rm -f "$f"; ln -s "$(basename "$f")" "$f" ;;                # symlink loop
    9) rm -f "$f"; mkdir "$f" ;;                                   # a folder
    10) head -c 200000 /dev/zero | tr '\0' '7' >"$f" ;;            # long
  esac
}

check() {   # tree, file, mutation
  local out=$work/out rc
  timeout 20 "$cohctl" --fsroot "$1" devices --json >"$out" 2>"$out.err"
  rc=$?
  runs=$((runs + 1))
  if ((rc == 124)); then
    echo "tree-fuzz: HANG ($2, mutation $3)"; bad=$((bad + 1))
  elif ((rc != 0 && rc != 1)) || grep -qE 'Sanitizer|runtime error' "$out.err"; then
    echo "tree-fuzz: CRASH exit $rc ($2, mutation $3)"; head -5 "$out.err"; bad=$((bad + 1))
  elif ((rc == 1)) && [[ ! -s $out.err ]]; then
    echo "tree-fuzz: exit 1 without a message ($2, mutation $3)"; bad=$((bad + 1))
  fi
}

trees=("$data"/*/)
for src in "${trees[@]}"; do
  name=$(basename "$src")
  t0=$(date +%s)
  tree=$work/$name
  rm -rf "$tree"; cp -a "$src" "$tree"
  n=0
  while IFS= read -r f; do
    ((per_tree > 0 && n >= per_tree)) && break
    ((budget > 0 && $(date +%s) - t0 >= budget / ${#trees[@]})) && break
    n=$((n + 1))
    cp -a "$f" "$f.orig"
    for m in $(seq 0 10); do
      mutate "$f" "$m"
      check "$tree" "${f#"$tree"/}" "$m"
      rm -rf "$f"; cp -a "$f.orig" "$f"
    done
    rm -f "$f.orig"
  done < <(find "$tree" -type f | sort | shuf --random-source=<(yes "$seed"))
  rm -rf "$tree"
done
echo "tree-fuzz: $runs cohctl runs, $bad failure(s)"
((bad == 0))
