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

# OpenCL is only a test tool here: test_opencl is built where a loader and
# headers exist (or are carried in .devdeps/debs); its absence stops nothing.
ocl_inc= ocl_lib=
[ -e /usr/include/CL/cl.h ] && ocl_inc=/usr/include
ocl_lib=$(ldconfig -p 2>/dev/null | awk '/libOpenCL\.so\.1 /{print $NF; exit}')
if { [ -z "$ocl_inc" ] || [ -z "$ocl_lib" ]; } && command -v dpkg-deb >/dev/null &&
	ls .devdeps/debs/ocl-icd-libopencl1_*.deb .devdeps/debs/opencl-c-headers_*.deb >/dev/null 2>&1; then
	od=/tmp/coh-ocl
	rm -rf "$od"; mkdir -p "$od"
	for d in .devdeps/debs/ocl-icd-*.deb .devdeps/debs/opencl-c-headers_*.deb; do dpkg-deb -x "$d" "$od"; done
	[ -n "$ocl_inc" ] || ocl_inc=$od/usr/include
	if [ -z "$ocl_lib" ]; then
		ocl_lib=$od/usr/lib/x86_64-linux-gnu/libOpenCL.so.1
		export LD_LIBRARY_PATH=$od/usr/lib/x86_64-linux-gnu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	fi
	echo "OpenCL: unpacked the carried loader and headers into $od"
fi
if [ -n "$ocl_inc" ] && [ -e "$ocl_inc/CL/cl.h" ] && [ -n "$ocl_lib" ] && [ -e "$ocl_lib" ]; then
	extra+=(-DOpenCL_INCLUDE_DIR="$ocl_inc" -DOpenCL_LIBRARY="$ocl_lib")
	echo "OpenCL: loader $ocl_lib, headers $ocl_inc"
else
	echo "OpenCL: no loader or headers here (carry them: tests/device/fetch-deps.sh): test_opencl not built"
fi

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
COH_BACKENDS=nvidia,host timeout 180 $b/tests/conformance/coh-conformance 2>&1 | tee "$out/conformance.txt" | grep -vE "^ *PASS" | tail -40
rc=${PIPESTATUS[0]}
echo "coh-conformance exit $rc"
grep -E "passed" "$out/conformance.txt"
if [ "$rc" -gt 1 ]; then
	# it died (a signal, the timeout): each group on its own, so that one
	# crash hides none of the others
	say "conformance again, one group at a time (the whole run exited $rc)"
	for g in basic mm pin fork device concurrent; do
		COH_BACKENDS=nvidia timeout 120 $b/tests/conformance/coh-conformance --groups $g >/tmp/conf-$g.txt 2>&1
		gr=$?
		cat /tmp/conf-$g.txt >>"$out/conformance-groups.txt"
		echo "group $g: exit $gr: $(grep -E '^nvidia:gpu0: ' /tmp/conf-$g.txt || echo 'no summary (died)')"
		grep -vE "^ *PASS" /tmp/conf-$g.txt | grep -v "^nvidia:gpu0 (" | tail -8
		[ $gr -gt 1 ] && tail -3 /tmp/conf-$g.txt
	done
fi

say "the application's managed memory, adopted"
timeout 60 $b/tests/backends/nvidia/nvidia_adopt 2>&1 | tee "$out/adopt.txt"

say "OpenCL on the GPU (a test tool, not a backend: tests/opencl/test_opencl.c)"
# Only NVIDIA's ICD, named in a .icd file of our own; the output is kept
# whatever happens, and nothing here stops the script.
ocl_out=$out/opencl.txt
nvcl=$(ldconfig -p 2>/dev/null | awk '/libnvidia-opencl\.so\.1 /{print $NF; exit}')
if [ ! -x $b/tests/opencl/test_opencl ]; then
	echo "OpenCL: test_opencl was not built (no OpenCL loader or headers on this machine)" | tee "$ocl_out"
elif [ -z "$nvcl" ]; then
	echo "OpenCL: no libnvidia-opencl.so.1 on this machine (the driver's OpenCL is not installed)" | tee "$ocl_out"
else
	icd=$(mktemp -d)
	echo "$nvcl" >"$icd/nvidia.icd"
	OCL_ICD_VENDORS=$icd COH_OPENCL_FORK_TRAP=1 COH_BACKENDS=nvidia,host timeout 120 \
		$b/tests/opencl/test_opencl >"$ocl_out" 2>&1
	echo "test_opencl exit $? (ICD $nvcl)" >>"$ocl_out"
	grep -vE "^ *PASS" "$ocl_out" | tail -30
	rm -rf "$icd"
fi

say "benchmark"
timeout 240 $b/bench/coh-bench --markdown nvidia 2>&1 | tee "$out/bench.md"

say "summary"
echo "card: $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null | head -1), kernel $(uname -r), $(date -u +%F)"
grep -E "passed|failed" "$out/conformance.txt" | tail -3
echo "device access (the PTX kernel, coh_device_access) on the GPU:"
grep -E "nvidia:gpu[0-9]+ +(dev-|cpu-sees-dev|device-access)" "$out/conformance.txt" | cut -c1-160 || echo "no device-access cases ran"
tail -1 "$out/adopt.txt"
grep -E "^\| nvidia" "$out/bench.md" || echo "no benchmark rows"
grep -E "SVM:|match|/host-ptr|fork-trap|build|exit|^OpenCL" "$out/opencl.txt" 2>/dev/null | cut -c1-200 | head -12 || true
dmesg 2>/dev/null | grep -iE "nvidia|uvm|segfault" | tail -5
