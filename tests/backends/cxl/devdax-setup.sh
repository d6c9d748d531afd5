#!/bin/sh
# Turns the legacy pmem namespace (memmap=!) into a device-dax device through
# sysfs, as ndctl would: unbind namespace0.0 from nd_pmem, configure the
# region's dax seed (uuid, mode, 2 MiB alignment, namespace), bind dax_pmem.
set -e
echo namespace0.0 > /sys/bus/nd/drivers/nd_pmem/unbind
for r in /sys/bus/nd/devices/region*; do
  [ -e "$r/dax_seed" ] || continue
  seed=$(cat "$r/dax_seed")
  [ -n "$seed" ] && break
done
d=/sys/bus/nd/devices/$seed
cat /proc/sys/kernel/random/uuid > "$d/uuid"
echo pmem > "$d/mode"
echo 2097152 > "$d/align"
echo namespace0.0 > "$d/namespace"
echo "$seed" > /sys/bus/nd/drivers/dax_pmem/bind
ls /dev/dax*
