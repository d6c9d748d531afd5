#!/usr/bin/env bash
# The VM suite: boots the project's test kernel under QEMU (TCG) with three
# NUMA nodes (1 and 2 memory-only), reserved ranges for test_hmm's
# DEVICE_COHERENT devices and a pmem range, runs the project's tests there
# and reports one line per target and a total.
#   tests/vm/run.sh BUILD_DIR      (the static test programs are built in BUILD_DIR/vm-static)
#   COH_VM_ONLY=REGEX runs only the tests whose names match; COH_VM_KEEP_LOG=FILE keeps the console
#   COH_VM_KERNEL=6.12 boots a kernel from linux-source-6.12 instead of 6.1 (tests/vm/build-kernel.sh)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:?usage: run.sh BUILD_DIR}" && pwd)
timeout_s=${COH_VM_TIMEOUT:-1200}
work=$(mktemp -d /tmp/coh-vm-XXXXXX)
qpid=
cleanup() {
  if [[ -n $qpid ]] && kill -0 "$qpid" 2>/dev/null; then
    kill "$qpid" 2>/dev/null || true
    sleep 1
    kill -9 "$qpid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

kernel=$("$here/build-kernel.sh")

# ---- the test programs, linked statically (a build of its own) ----
static=$build/vm-static
echo "vm: building the test programs statically in $static" >&2
cmake -S "$here/../.." -B "$static" -DCOH_STATIC_PROGRAMS=ON -DCOH_WITH_LIBPCI=OFF -DCOH_BUILD_EXAMPLES=OFF \
      -DCOH_BACKEND_HOST=ON -DCOH_BACKEND_HMMTEST=ON -DCOH_BACKEND_CXL=ON -DCOH_BACKEND_NVIDIA=OFF -DCOH_BACKEND_AMD=OFF \
      -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
# test_rdma_pin exists where libibverbs-dev is installed (tests/rdma/CMakeLists.txt)
rdma_prog=
pkg-config --exists libibverbs 2>/dev/null && rdma_prog=test_rdma_pin
cmake --build "$static" -j"$(nproc)" --target $rdma_prog cohctl coh-conformance test_host test_pin test_badinput \
      test_amap test_core test_devdax test_cxl_alloc test_cxl_shared test_share test_hmm_residency test_seed_fork test_faults test_query_nodes coh-bench >"$work/static-build.log" 2>&1 || {
  tail -30 "$work/static-build.log" >&2
  exit 1
}

# ---- initramfs: busybox, the test programs and the libraries they load ----
root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
install -m 0755 "$here/init.sh" "$root/init"
install -m 0755 "$here/../backends/cxl/devdax-setup.sh" "$root/bin/devdax-setup.sh"
progs=(tools/cohctl tests/conformance/coh-conformance tests/backends/host/test_host tests/unit/test_pin
       tests/unit/test_badinput tests/unit/test_amap tests/unit/test_core tests/backends/cxl/test_devdax
       tests/backends/cxl/test_cxl_alloc tests/backends/cxl/test_cxl_shared tests/test_share tests/backends/hmmtest/test_hmm_residency tests/backends/hmmtest/test_seed_fork
       tests/unit/test_faults tests/unit/test_query_nodes bench/coh-bench)
for p in "${progs[@]}"; do
  if ldd "$static/$p" >/dev/null 2>&1; then
    echo "vm: $p is not static" >&2
    exit 1
  fi
  cp "$static/$p" "$root/bin/"
done
# A dynamically linked program: it goes to /bin, each library it loads to the
# path the host's loader found it at (the guest's loader searches the same
# default folders).
copy_with_libs() {
  local f=$1 dest=$2 lib
  mkdir -p "$root$(dirname "$dest")"
  cp -L "$f" "$root$dest"
  for lib in $(ldd "$f" | grep -oE '/[^ ]+'); do
    [[ -e $root$lib ]] && continue
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
}
# RDMA: soft-RoCE (rxe) through rdma-core.  libibverbs finds its providers by
# the driver files in /etc/libibverbs.d and dlopens them from its own folder,
# so the rxe provider and its driver file go in next to the library.
if [[ -n $rdma_prog ]]; then
  copy_with_libs "$static/tests/rdma/test_rdma_pin" /bin/test_rdma_pin
  provider=$(ls "$(pkg-config --variable=libdir libibverbs)"/libibverbs/librxe-*.so 2>/dev/null | head -1)
  if [[ -n $provider && -f /etc/libibverbs.d/rxe.driver ]]; then
    copy_with_libs "$provider" "$provider"
    mkdir -p "$root/etc/libibverbs.d" && cp /etc/libibverbs.d/rxe.driver "$root/etc/libibverbs.d/"
  else
    echo "vm: the rxe provider of libibverbs (ibverbs-providers) is missing: test_rdma_pin will skip" >&2
  fi
  rdma_tool=$(command -v rdma || true)
  [[ -n $rdma_tool ]] && copy_with_libs "$rdma_tool" /bin/rdma
  install -m 0755 "$here/rdma-setup.sh" "$root/bin/rdma-setup.sh"
fi
# the kernel's own test_hmm selftest, from the same source, checks the VM itself
# (tools/testing/selftests/vm up to 6.2, selftests/mm from 6.3 on)
src=$(cat "$(dirname "$kernel")/source" 2>/dev/null || true)
hmm_tests=
for d in mm vm; do
  if [[ -n $src && -f $src/tools/testing/selftests/$d/hmm-tests.c ]]; then
    hmm_tests=$src/tools/testing/selftests/$d/hmm-tests.c
    break
  fi
done
if [[ -n $hmm_tests ]]; then
  cc -O2 -static -I"$src" -I"$src/tools/include/uapi" -o "$root/bin/hmm-tests" "$hmm_tests" -lpthread
else
  echo "vm: kernel source not found: the hmm-tests selftest is left out" >&2
fi
cat >"$root/tests.list" <<'LIST'
devdax-setup devdax-setup.sh
cohctl-devices cohctl devices
cohctl-devices-kinds cohctl devices | grep -q '^host:node0 .*host-node' && cohctl devices | grep -q '^host:node2 .*cpuless-node'
cohctl-devices-no-warnings ! COH_LOG=warn cohctl devices 2>&1 | grep 'libcoherent: warn'
cohctl-check cohctl check
cohctl-check-host cohctl check | grep -q '^host     ready'
cohctl-check-hmmtest cohctl check | grep -q '^hmmtest  ready'
cohctl-check-amd-missing cohctl check | grep -q '^amd      missing'
hmm-tests [ -x /bin/hmm-tests ] && hmm-tests
conformance coh-conformance
test_hmm_residency test_hmm_residency
test_seed_fork test_seed_fork
nopfn-conformance-hmmtest COH_QUERY_PFN=0 COH_BACKENDS=hmmtest coh-conformance
nopfn-test_hmm_residency COH_QUERY_PFN=0 test_hmm_residency
test_host CK_DEFAULT_TIMEOUT=300 test_host
test_pin CK_DEFAULT_TIMEOUT=300 test_pin
test_badinput test_badinput
test_amap CK_DEFAULT_TIMEOUT=300 test_amap
test_core test_core
test_devdax test_devdax
test_cxl_alloc test_cxl_alloc
test_cxl_shared test_cxl_shared
test_share_host test_share host
test_share_cxl test_share cxl
test_faults_host FAULTS_BACKEND=host CK_DEFAULT_TIMEOUT=300 test_faults
test_faults_hmmtest FAULTS_BACKEND=hmmtest CK_DEFAULT_TIMEOUT=300 test_faults
test_faults_cxl FAULTS_BACKEND=cxl CK_DEFAULT_TIMEOUT=300 test_faults
bench-cxl coh-bench cxl
test_query_nodes test_query_nodes
test_query_nodes_multinode test_query_nodes multinode
bench-query coh-bench --quick query
rdma-setup if [ -x /bin/rdma-setup.sh ]; then rdma-setup.sh; else echo "no libibverbs on the host"; exit 77; fi
test_rdma_pin if [ -x /bin/test_rdma_pin ]; then test_rdma_pin rxe0; else echo "no libibverbs on the host"; exit 77; fi
test_rdma_fork if [ -x /bin/test_rdma_pin ]; then test_rdma_pin --fork rxe0; else echo "no libibverbs on the host"; exit 77; fi
test_rdma_fork_safe if [ -x /bin/test_rdma_pin ]; then RDMAV_FORK_SAFE=1 test_rdma_pin --fork rxe0; else echo "no libibverbs on the host"; exit 77; fi
LIST
# COH_VM_ONLY=REGEX keeps the tests whose names match (and the devdax and RDMA setups)
if [[ -n ${COH_VM_ONLY:-} ]]; then
  grep -E "^(devdax-setup|rdma-setup|${COH_VM_ONLY}) " "$root/tests.list" >"$work/tests.list" && mv "$work/tests.list" "$root/tests.list"
fi
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"

# ---- boot ----
log=${COH_VM_LOG:-$work/console.log}
cmdline='console=ttyS0 panic=-1 loglevel=4 memmap=256M$0x40000000 memmap=256M$0x50000000'
cmdline+=${COH_VM_CMDLINE:+ $COH_VM_CMDLINE}   # extra kernel parameters (e.g. test_hmm.cow_on_device=0)
cmdline+=' test_hmm.spm_addr_dev0=0x40000000 test_hmm.spm_addr_dev1=0x50000000 memmap=256M!0x90000000 hugepages=16'
# pin-query against real CMA and ZONE_MOVABLE frames (test_pin cma_frames, movable_frames): a
# 64 MiB CMA area at a fixed place in node 0 (used for user pages only when the node runs
# low), and 256 MiB of ZONE_MOVABLE, carved from the highest zone (Normal: node 2 only)
cmdline+=' cma=64M@0x70000000 movablecore=256M'
echo "vm: booting $(basename "$(dirname "$kernel")") under QEMU (TCG), console in $log" >&2
start=$(date +%s)
qemu-system-x86_64 -accel tcg -nographic -no-reboot -m 4G -smp 2 \
  -object memory-backend-ram,id=m0,size=2G -object memory-backend-ram,id=m1,size=1G \
  -object memory-backend-ram,id=m2,size=1G \
  -numa node,nodeid=0,cpus=0-1,memdev=m0 -numa node,nodeid=1,memdev=m1 -numa node,nodeid=2,memdev=m2 \
  -netdev user,id=n0 -device virtio-net-pci,netdev=n0 \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" -append "$cmdline" \
  </dev/null >"$log" 2>&1 &
qpid=$!
while kill -0 "$qpid" 2>/dev/null; do
  if (( $(date +%s) - start > timeout_s )); then
    echo "vm: timeout after ${timeout_s}s; last console lines:" >&2
    tail -30 "$log" >&2
    exit 1
  fi
  if grep -qE 'Kernel panic|Oops:|BUG:' "$log" 2>/dev/null; then
    sleep 2   # let the trace finish printing
    echo "vm: the guest kernel crashed; the test running then and the trace:" >&2
    tr -d '\r' <"$log" | grep '^COH-VM-BEGIN' | tail -1 >&2
    tr -d '\r' <"$log" | grep -E -A30 'Kernel panic|Oops:|BUG:' | head -60 >&2
    exit 1
  fi
  sleep 1
done
wait "$qpid" || true
qpid=
echo "vm: guest ran $(( $(date +%s) - start ))s" >&2
tr -d '\r' <"$log" >"$work/clean.log"
grep -q '^COH-VM-DONE' "$work/clean.log" || { echo "vm: the guest did not finish its tests" >&2; tail -40 "$work/clean.log" >&2; exit 1; }

# ---- results ----
passed=0 failed=0 skipped=0
grep '^COH-VM-KERNEL' "$work/clean.log" >&2 || true
# per-target lines of the conformance suite
while read -r line; do
  echo "$line"
  set -- $(sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped/\1 \2 \3/' <<<"$line")
  passed=$((passed + $1)); failed=$((failed + $2)); skipped=$((skipped + $3))
done < <(awk '/^COH-VM-BEGIN conformance/{on=1;next} /^COH-VM-END conformance/{on=0} on && /^[a-z]+:[a-z0-9.]+: [0-9]+ passed/' "$work/clean.log")
# every other test program: one result each
while read -r name rc; do
  if [[ $name == conformance ]]; then
    if [[ $rc != 0 ]] && ! grep -q 'failed' <(awk '/^COH-VM-BEGIN conformance/{on=1;next} /^COH-VM-END/{on=0} on && / [1-9][0-9]* failed/' "$work/clean.log"); then
      echo "conformance: exited $rc without a failed check"; failed=$((failed + 1))
      awk '$0=="COH-VM-BEGIN conformance" {on=1;next} /^COH-VM-END/{on=0} on' "$work/clean.log" | tail -20 >&2
    fi
    continue
  fi
  if [[ $rc == 0 ]]; then
    echo "$name: 1 passed, 0 failed, 0 skipped"; passed=$((passed + 1))
  elif [[ $rc == 77 ]]; then
    echo "$name: 0 passed, 0 failed, 1 skipped"; skipped=$((skipped + 1))
  else
    echo "$name: 0 passed, 1 failed, 0 skipped (exit $rc)"; failed=$((failed + 1))
    awk -v n="$name" '$0=="COH-VM-BEGIN " n {on=1;next} /^COH-VM-END/{on=0} on' "$work/clean.log" | tail -40 >&2
  fi
done < <(sed -n 's/^COH-VM-END \([^ ]*\) rc=\([0-9]*\)$/\1 \2/p' "$work/clean.log")
for bad in $(sed -n 's/^COH-VM-DMESG \(.*\)$/\1/p' "$work/clean.log"); do
  echo "kernel log after $bad: BUG/WARNING/Oops"; failed=$((failed + 1))
done
[[ -n ${COH_VM_KEEP_LOG:-} ]] && cp "$work/clean.log" "$COH_VM_KEEP_LOG"
echo "$passed passed, $failed failed, $skipped skipped"
((failed == 0))
