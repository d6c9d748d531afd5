#!/bin/sh
# Soft-RoCE in the test VM: brings up the NIC QEMU gives the guest
# (virtio-net), gives it an IPv4 address (rxe's RoCE v2 GIDs are made from the
# netdev's addresses: an IPv4 one needs no IPv6 neighbour discovery) and
# creates rxe0 on it with
# iproute2's rdma tool.  Exit 77 where the kernel or the guest lacks a piece.
if [ ! -x /bin/rdma ]; then
  echo "rdma-setup: no rdma tool in the guest (iproute2 missing on the host?)"
  exit 77
fi
ip link set lo up
dev=
for d in /sys/class/net/*; do
  d=${d##*/}
  [ "$d" != lo ] && [ -e "/sys/class/net/$d/device" ] && { dev=$d; break; }
done
if [ -z "$dev" ]; then
  echo "rdma-setup: no network device (kernel without virtio-net, or QEMU without -netdev)"
  exit 77
fi
ip link set "$dev" up || exit 1
ip addr add 10.0.2.15/24 dev "$dev" || exit 1
rdma link add rxe0 type rxe netdev "$dev" || exit 1
rdma link show
ls /sys/class/infiniband /dev/infiniband
