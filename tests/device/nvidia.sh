#!/bin/bash
# On a machine with an NVIDIA GPU (the device tool, or any CUDA box): builds
# libcoherent with the nvidia backend, runs the backend's tests against the
# driver double, the conformance suite on the real GPU, the nvidia benchmark
# suite, and prints a short table last.  Everything also lands in $OUT (or
# /tmp/coh-device-out).  One call, well under 10 minutes on 16 cores.
#   tests/device/fetch-deps.sh   (here, first: Debian packages for a bare image)
#   device run: bash tests/device/nvidia.sh     with carry [".devdeps"]
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-/tmp/coh-device-out}
mkdir -p "$out"
cd "$root"
exec > >(tee "$out/device.log") 2>&1
t_start=$(date +%s)
say() { echo "== $* (+$(($(date +%s) - t_start)) s)"; }

say "machine"
uname -r
nvidia-smi --query-gpu=name,driver_version,pci.bus_id,memory.total,memory.used --format=csv,noheader 2>&1 | head -4
nvidia-smi -q 2>/dev/null | grep -E "Addressing Mode" | head -1
grep -o "Open Kernel Module[^ ]*\|Kernel Module  [0-9.]*" /proc/driver/nvidia/version 2>/dev/null | head -1
ldconfig -p | grep -E "libcuda\.so\.1|libnuma\.so|libcheck" | head -5

say "dependencies"
extra=()
need=0
command -v pkg-config >/dev/null || need=1
[ -e /usr/include/numa.h ] || need=1
pkg-config --exists check 2>/dev/null || need=1
if [ $need = 1 ] && ls .devdeps/debs/*.deb >/dev/null 2>&1; then
	dr=/tmp/coh-devroot
	rm -rf "$dr"; mkdir -p "$dr"
	for d in .devdeps/debs/*.deb; do dpkg-deb -x "$d" "$dr"; done
	la=$dr/usr/lib/x86_64-linux-gnu
	for pc in "$la"/pkgconfig/*.pc; do sed -i "s|^prefix=.*|prefix=$dr/usr|" "$pc"; done
	export PKG_CONFIG_PATH=$la/pkgconfig LD_LIBRARY_PATH=$la${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	command -v pkg-config >/dev/null || { ln -sf "$dr/usr/bin/pkgconf" "$dr/usr/bin/pkg-config"; export PATH=$dr/usr/bin:$PATH; }
	extra+=(-DCMAKE_PREFIX_PATH="$dr/usr")
	echo "unpacked $(ls .devdeps/debs | wc -l) carried Debian packages into $dr"
fi
pkg-config --version || echo "no pkg-config"
pkg-config --exists check && echo "check $(pkg-config --modversion check)" || extra+=(-DCOH_REQUIRE_CHECK=OFF)

say "build"
b=build-device
cmake -S . -B $b -DCMAKE_BUILD_TYPE=Release -DCOH_BUILD_EXAMPLES=OFF -DCOH_WITH_LIBPCI=OFF "${extra[@]}" >"$out/cmake.log" 2>&1 ||
	{ tail -30 "$out/cmake.log"; exit 1; }
cmake --build $b -j"$(nproc)" >"$out/build.log" 2>&1 || { grep -E "error|Error" -A3 "$out/build.log" | head -40; exit 1; }
echo "built"

say "tests against the driver double"
ctest --test-dir $b -L nvidia --output-on-failure --timeout 60 2>&1 | tail -15

say "devices"
$b/tools/cohctl devices

say "conformance on the GPU"
COH_BACKENDS=nvidia,host timeout 60 $b/tests/conformance/coh-conformance 2>&1 | tee "$out/conformance.txt" | grep -vE "^ *PASS" | tail -40
grep -E "passed" "$out/conformance.txt"

say "the application's managed memory, adopted"
timeout 60 $b/tests/backends/nvidia/nvidia_adopt 2>&1 | tee "$out/adopt.txt"

say "benchmark"
timeout 240 $b/bench/coh-bench --markdown nvidia 2>&1 | tee "$out/bench.md"

say "summary"
echo "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1), kernel $(uname -r), $(date -u +%F)"
grep -E "passed|failed" "$out/conformance.txt" | tail -3
tail -1 "$out/adopt.txt"
grep -E "^\| nvidia" "$out/bench.md" || echo "no benchmark rows"
dmesg 2>/dev/null | grep -iE "nvidia|uvm|segfault" | tail -5
