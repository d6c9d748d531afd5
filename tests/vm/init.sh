#!/bin/busybox sh
# /init of the test VM's initramfs: mounts what the tests need, runs each
# test in /tests.list with a timeout, checks the kernel log after each, and
# powers off.  Markers on the console are read by tests/vm/run.sh.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t debugfs none /sys/kernel/debug
mount -t tmpfs tmp /tmp
echo madvise > /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null
cd /tmp
# tmpfs refuses O_DIRECT: short-term pins go through the ram disk instead
[ -b /dev/ram0 ] && export COH_TEST_DIRECTIO_DEV=/dev/ram0
echo "COH-VM-KERNEL $(uname -r) nodes $(cat /sys/devices/system/node/online)"
dmesg -c >/dev/null
while read -r name cmd; do
  [ -z "$name" ] && continue
  echo "COH-VM-BEGIN $name"
  timeout 600 sh -c "$cmd"
  rc=$?
  echo "COH-VM-END $name rc=$rc"
  if dmesg | grep -E 'BUG|WARNING|Oops|Call Trace' >/tmp/dmesg.bad; then
    cat /tmp/dmesg.bad
    echo "COH-VM-DMESG $name"
  fi
  dmesg -c >/dev/null
done </tests.list
echo "COH-VM-DONE"
poweroff -f
