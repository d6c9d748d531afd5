#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each (default 60) and fails on any
# crash, leak, timeout or broken invariant; the input that did it is kept in
# $COH_FUZZ_OUT (default a temporary folder, printed) to be added to
# tests/fuzz/regressions/<target>/.  Then the whole-tree fuzzer (tree-fuzz.sh,
# COH_TREE_FUZZ_SECONDS of it, default 120).
#   tests/fuzz/run.sh [SECONDS] [BUILD_DIR]     (BUILD_DIR default build-fuzz, configured with clang)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
secs=${1:-60}
build=${2:-$src/build-fuzz}
command -v clang >/dev/null || { echo "fuzz: clang is not installed (scripts/deps.sh)" >&2; exit 1; }
CC=clang cmake -S "$src" -B "$build" -DCOH_FUZZ=ON -DCOH_WERROR=ON -DCOH_BUILD_EXAMPLES=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
read -r -a targets < <(tr ';' ' ' <"$build/tests/fuzz/targets.txt")
# Only the fuzz targets: the instrumented objects cannot make the shared library.
cmake --build "$build" -j"$(nproc)" --target $(printf 'fuzz_%s ' "${targets[@]}") >/dev/null
# cohctl for the whole-tree fuzzer: a gcc ASan+UBSan build of its own.
asan=$build-cohctl
CC=${COH_TREE_FUZZ_CC:-gcc} cmake -S "$src" -B "$asan" -DCOH_SANITIZE=address,undefined -DCOH_WERROR=ON \
  -DCOH_BUILD_TESTS=OFF -DCOH_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$asan" -j"$(nproc)" --target cohctl >/dev/null
out=${COH_FUZZ_OUT:-$(mktemp -d /tmp/coh-fuzz-XXXXXX)}
mkdir -p "$out"
echo "fuzz: ${#targets[@]} targets, ${secs}s each, work in $out"

seed() {   # seed the corpus of target $1 into folder $2
  local t=$1 dir=$2 bin=$build/tests/fuzz/fuzz_$1
  mkdir -p "$dir"
  case $t in
    list)
      local i=0
      for f in $(find "$src/tests/data" -name online -o -name has_memory -o -name has_cpu -o -name cpulist -o -name nodelist); do
        { printf '\x3f'; cat "$f"; } >"$dir/seed-$((i++))"
      done ;;
    maps) cp /proc/self/maps "$dir/maps"; cp /proc/self/smaps "$dir/smaps" ;;
    numa_maps) cp /proc/self/numa_maps "$dir/numa_maps" 2>/dev/null || printf '00400000 default\n' >"$dir/numa_maps" ;;
    api) head -c 256 /dev/urandom >"$dir/random"; printf '\x00\x00\x01\x10\x01\x05\x00\x00\x04\x00\x00\x07\x00\x00\x00\x00' >"$dir/alloc-query" ;;
    *) FUZZ_SEEDS=$dir "$bin" ;;
  esac
  # what was found before is part of the corpus too
  cp "$here/regressions/$t/"* "$dir/" 2>/dev/null || true
}

export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp}
fail=0
summary=$out/summary.txt
: >"$summary"
for t in "${targets[@]}"; do
  corpus=$out/corpus/$t
  seed "$t" "$corpus"
  log=$out/$t.log
  set +e
  (cd "$out" && "$build/tests/fuzz/fuzz_$t" "$corpus" -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 \
     -max_len=8192 -print_final_stats=1 -artifact_prefix="$out/$t-" >"$log" 2>&1)
  rc=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2 || true)
  if ((rc != 0)); then
    fail=1
    echo "fuzz: $t FAILED (exit $rc), input: $(ls "$out/$t-"* 2>/dev/null | head -1)" | tee -a "$summary"
    grep -E 'ERROR|invariant|SUMMARY|runtime error' "$log" | head -5 >&2 || true
  else
    echo "fuzz: $t ok, ${execs:-?} executions in ${secs}s, coverage ${cov:-?} edges" | tee -a "$summary"
  fi
done

echo "fuzz: whole-tree mutations through cohctl"
if ! COH_TREE_FUZZ_SECONDS=${COH_TREE_FUZZ_SECONDS:-120} "$here/tree-fuzz.sh" "$asan/tools/cohctl" "$out/tree" | tee -a "$summary"; then
  fail=1
fi
((fail == 0)) && echo "fuzz: no crash" || echo "fuzz: crashes above; inputs in $out" >&2
exit $fail
