#!/bin/bash
# For a machine with an AMD GPU and amdkfd (none has been available yet):
# builds libcoherent, shows what the amd backend discovers, runs the
# conformance suite on the AMD targets (and the host), and prints a summary.
# Everything also lands in $OUT (or /tmp/coh-amd-out).  Needs read/write
# access to /dev/kfd and /dev/dri/renderD*.  Expect surprises: the backend has
# only run against tests/doubles/kfdemu so far; keep the output for the issue.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/coh-amd-out}
mkdir -p "$out"
cd "$root"
exec > >(tee "$out/amd.log") 2>&1
echo "== machine"
uname -r
ls -l /dev/kfd /dev/dri/renderD* 2>&1 | head
cat /sys/class/kfd/kfd/topology/nodes/*/name 2>/dev/null | sort | uniq -c
(zcat /proc/config.gz 2>/dev/null || cat /boot/config-"$(uname -r)" 2>/dev/null) | grep -E 'CONFIG_(HSA_AMD|HSA_AMD_SVM|DEVICE_PRIVATE|ZONE_DEVICE)=' 
echo "== build"
b=build-amd
cmake -S . -B $b -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCOH_BUILD_EXAMPLES=OFF >"$out/cmake.log" 2>&1 || { tail -20 "$out/cmake.log"; exit 1; }
cmake --build $b -j"$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error" -A3 "$out/build.log" | head -30; exit 1; }
echo "== devices"
COH_LOG=info $b/tools/cohctl devices 2>&1
$b/tools/cohctl check
echo "== conformance on the AMD targets"
COH_BACKENDS=amd,host timeout 600 $b/tests/conformance/coh-conformance 2>&1 | tee "$out/conformance.txt" | grep -vE "^ *PASS"
echo "== tests against the emulator, for comparison"
ctest --test-dir $b -L amd --output-on-failure --timeout 120 2>&1 | tail -8
echo "== summary"
echo "$(uname -r), $(date -u +%F)"
grep -E "passed" "$out/conformance.txt" | tail -4
