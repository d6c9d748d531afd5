#!/usr/bin/env bash
# QEMU's own CXL type-3 device (-M q35,cxl=on) under the test kernel built with
# the CXL drivers (kernel/configs/test-vm-cxl.config): does libcoherent's cxl
# backend see the memory device and its decoders, and can a region be made
# through sysfs alone?
#   tests/vm/run-cxl.sh [BUILD_DIR]     (after tests/vm/run.sh BUILD_DIR: reuses its static cohctl)
#   COH_VM_KERNEL=6.12 selects the kernel as for run.sh (default 6.1)
# QEMU 7.2 (Debian 12) offers only a persistent-memory type-3 device
# (memdev=, lsa=), and Linux 6.1 makes only pmem regions, whose dax device
# would need ndctl's namespace tools; so the check is discovery of the memdev
# (and of a region when the sysfs steps succeed), and the script prints what
# each step did.  Prints "N passed, N failed"; exit 1 on a failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
build=${1:-build}
[[ $build = /* ]] || build=$top/$build
static=$build/vm-static
[[ -x $static/tools/cohctl ]] || { echo "vm-cxl: $static/tools/cohctl missing: run tests/vm/run.sh $1 first" >&2; exit 1; }
kernel=$(COH_VM_FRAGMENT=$top/kernel/configs/test-vm-cxl.config "$here/build-kernel.sh")
work=$(mktemp -d /tmp/coh-vm-cxl-XXXXXX)
qpid=
cleanup() {
  [[ -n $qpid ]] && kill -9 "$qpid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

root=$work/root
mkdir -p "$root"/{bin,sbin,proc,sys,dev,tmp}
cp /bin/busybox "$root/bin/busybox"
cp "$static/tools/cohctl" "$root/bin/cohctl"
cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
echo "COH-CXL-BEGIN"
echo "cxl bus: $(ls /sys/bus/cxl/devices 2>&1 | tr '\n' ' ')"
cohctl devices
# a pmem region through sysfs (the steps cxl-cli's create-region takes)
try() { if sh -c "$1" 2>/tmp/err; then echo "step ok: $1"; else echo "step failed: $1: $(cat /tmp/err)"; fi; }
cd /sys/bus/cxl/devices 2>/dev/null && {
  root_dec=$(ls -d decoder0.* 2>/dev/null | head -1)
  ep_dec=$(for d in decoder*; do [ -e $d/dpa_size ] && echo $d; done | head -1)
  region=$(cat $root_dec/create_pmem_region 2>/dev/null)
  echo "root decoder $root_dec, endpoint decoder $ep_dec, next region $region"
  try "echo pmem > $ep_dec/mode"
  try "echo 0x10000000 > $ep_dec/dpa_size"
  try "echo $region > $root_dec/create_pmem_region"
  try "echo 256 > $region/interleave_granularity"
  try "echo 1 > $region/interleave_ways"
  # a PMEM region takes its size only once it has a uuid (alloc_hpa(): ENXIO before)
  try "echo 0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f1 > $region/uuid"
  try "echo 0x10000000 > $region/size"
  try "echo $ep_dec > $region/target0"
  try "echo 1 > $region/commit"
  # cxl enable-region: the region driver makes the pmem region (an nd region on the nvdimm bus)
  try "echo $region > /sys/bus/cxl/drivers/cxl_region/bind"
  echo "nd bus: $(ls /sys/bus/nd/devices 2>&1 | tr '\n' ' ')"
  cd /
}
echo "cxl bus after: $(ls /sys/bus/cxl/devices 2>&1 | tr '\n' ' ')"
cohctl devices
echo "COH-CXL-DONE"
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc 2>/dev/null | gzip -1) >"$work/initramfs.cpio.gz"
truncate -s 256M "$work/cxl-mem0"
truncate -s 256M "$work/cxl-lsa0"
log=$work/console.log
echo "vm-cxl: booting $(basename "$(dirname "$kernel")") on q35 with a CXL type-3 device (TCG)" >&2
qemu-system-x86_64 -accel tcg -nographic -no-reboot -m 2G,maxmem=8G,slots=4 -smp 2 \
  -M q35,cxl=on \
  -object memory-backend-file,id=cxl-mem0,share=on,mem-path="$work/cxl-mem0",size=256M \
  -object memory-backend-file,id=cxl-lsa0,share=on,mem-path="$work/cxl-lsa0",size=256M \
  -device pxb-cxl,bus_nr=12,bus=pcie.0,id=cxl.1 \
  -device cxl-rp,port=0,bus=cxl.1,id=root_port13,chassis=0,slot=2 \
  -device cxl-type3,bus=root_port13,memdev=cxl-mem0,lsa=cxl-lsa0,id=cxl-pmem0 \
  -M cxl-fmw.0.targets.0=cxl.1,cxl-fmw.0.size=4G \
  -kernel "$kernel" -initrd "$work/initramfs.cpio.gz" -append 'console=ttyS0 panic=-1 loglevel=4' \
  </dev/null >"$log" 2>&1 &
qpid=$!
start=$(date +%s)
while kill -0 "$qpid" 2>/dev/null; do
  (( $(date +%s) - start > ${COH_VM_TIMEOUT:-600} )) && { echo "vm-cxl: timeout" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 1
done
qpid=
tr -d '\r' <"$log" | sed -n '/^COH-CXL-BEGIN/,/^COH-CXL-DONE/p' | tee "$work/out.txt"
[[ -n ${COH_VM_KEEP_LOG:-} ]] && tr -d '\r' <"$log" >"$COH_VM_KEEP_LOG"
passed=0 failed=0
check() { if grep -q "$2" "$work/out.txt"; then passed=$((passed + 1)); else echo "FAIL: $1" >&2; failed=$((failed + 1)); fi; }
check "the guest finished" '^COH-CXL-DONE'
check "the kernel shows the memory device" '^cxl bus: .*mem0'
check "cohctl names the CXL memory device" 'backend cxl      mem0: CXL memory device'
check "the PMEM partition's size is read" 'backend cxl      mem0: CXL memory device .*pmem 0.2 GiB'
if grep -q '^cxl bus after: .*region0' "$work/out.txt"; then
  check "cohctl names the region made through sysfs" 'backend cxl      region0: CXL region'
  if grep -q '^step ok: echo 1 > region0/commit' "$work/out.txt"; then
    check "cohctl sees the region committed" 'backend cxl      region0: CXL region, .*, committed$'
  else
    echo "vm-cxl: the region was made but not committed (see the step lines above)" >&2
  fi
else
  echo "vm-cxl: no region could be made through sysfs (see the step lines above)" >&2
fi
echo "$passed passed, $failed failed"
((failed == 0))
