#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-written NUMA discovery trees under tests/data/ (run from
anywhere; the trees are committed, this script documents how they were made).

Each tree is one shape of /sys/devices/system/node (and /proc) that recorded
machines showed or that the kernel allows, following
Documentation/ABI/stable/sysfs-devices-node, Documentation/admin-guide/mm/
numaperf.rst (HMAT access classes, memory-side caches) and the device-dax
layout of an NVDIMM region (.../ndbusX/regionY/daxY.Z).  Not recordings.

  numa-empty-has-cpu/   has_cpu of 0 bytes: the per-node cpulist files tell
  numa-no-has-cpu/      no has_cpu; node1 has a cpumap and no cpulist; node2 no CPU
  numa-cpumap-only/     POWER style: only multi-word cpumap files, nodes 0, 8, 250
  numa-sparse-ids/      nodes 1, 3, 6 (no node 0), has_cpu a bare newline
  numa-cpu0-offline/    CPU 0 offline: node0 lists CPUs 1-3 only
  numa-hmat-zeros/      HMAT figures of 0 ("not provided") beside real ones
  numa-memcache/        a 96 GiB direct-mapped memory-side cache in front of node0
  numa-nvdimm/          node2 onlined by kmem from NVDIMM region ndbus0/region0
  numa-impossible/      numbers no kernel writes: each is dropped, the node kept
The tests that replay them: tests/unit/test_discovery.c.
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
NODE = "/sys/devices/system/node"


def w(root, path, text, newline=True):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text + "\n" if newline and not text.endswith("\n") else text)


def link(root, path, target):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)


def meminfo(n, kib, free=None):
    free = kib - 4096 if free is None else free
    return (f"Node {n} MemTotal:       {kib} kB\nNode {n} MemFree:        {free} kB\n"
            f"Node {n} MemUsed:        {kib - free} kB\n")


def fresh(name, vendor="GenuineIntel"):
    root = os.path.join(HERE, name)
    if os.path.exists(root):
        shutil.rmtree(root)
    w(root, "/proc/sys/kernel/osrelease", "6.1.0-numa-replay")
    if vendor.startswith("POWER"):
        w(root, "/proc/cpuinfo", f"processor\t: 0\ncpu\t\t: {vendor}, altivec supported\n")
    else:
        w(root, "/proc/cpuinfo", f"processor\t: 0\nvendor_id\t: {vendor}\n")
    return root


def node(root, n, kib, dist, cpulist=None, cpumap=None):
    d = f"{NODE}/node{n}"
    w(root, d + "/meminfo", meminfo(n, kib))
    w(root, d + "/distance", " ".join(str(x) for x in dist))
    if cpulist is not None:
        w(root, d + "/cpulist", cpulist)
    if cpumap is not None:
        w(root, d + "/cpumap", cpumap)


def lists(root, online, has_memory=None, has_cpu=None):
    w(root, NODE + "/online", online)
    w(root, NODE + "/possible", online)
    w(root, NODE + "/has_memory", has_memory if has_memory is not None else online)
    if has_cpu is not None:
        w(root, NODE + "/has_cpu", has_cpu, newline=False)


def access(root, n, cls, figures, initiators):
    d = f"{NODE}/node{n}/access{cls}/initiators"
    for k, v in figures.items():
        w(root, f"{d}/{k}", str(v))
    for i in initiators:
        link(root, f"{d}/{i}", "../../../node0")


def main():
    # has_cpu of 0 bytes parses as an empty list: the cpulist files must decide.
    r = fresh("numa-empty-has-cpu")
    node(r, 0, 8388608, [10, 21], "0-3", "0f")
    node(r, 1, 8388608, [21, 10], "4-7", "f0")
    lists(r, "0-1", has_cpu="")

    # no has_cpu (older kernels): cpulist, else cpumap
    r = fresh("numa-no-has-cpu")
    node(r, 0, 4194304, [10, 20, 20], "0-3")
    node(r, 1, 4194304, [20, 10, 20], None, "000000f0")
    node(r, 2, 2097152, [20, 20, 10], "", "00000000")
    lists(r, "0-2")

    # POWER: cpumap only, 32-bit words, nodes 0 and 8 with CPUs, 250 without
    r = fresh("numa-cpumap-only", "POWER9")
    node(r, 0, 16777216, [10, 40, 80], None, "00000000,00000000,00000000,000000ff")
    node(r, 8, 16777216, [40, 10, 80], None, "00000000,00000000,0000ff00,00000000")
    node(r, 250, 15728640, [80, 80, 10], None, "00000000,00000000,00000000,00000000")
    lists(r, "0,8,250")

    # sparse ids, no node 0; has_cpu is a bare newline; node6 has no CPU
    r = fresh("numa-sparse-ids")
    node(r, 1, 4194304, [10, 16, 255], "0-1")
    node(r, 3, 4194304, [16, 10, 22], "2-3")
    node(r, 6, 1048576, [255, 22, 10], "")
    lists(r, "1,3,6", has_cpu="\n")

    # CPU 0 offline: the node's cpulist drops it, has_cpu still names node 0
    r = fresh("numa-cpu0-offline")
    node(r, 0, 4194304, [10, 20], "1-3", "0e")
    node(r, 1, 4194304, [20, 10], "4-7", "f0")
    lists(r, "0-1", has_cpu="0-1")
    w(r, "/sys/devices/system/cpu/online", "1-7")
    w(r, "/sys/devices/system/cpu/offline", "0")
    w(r, "/sys/devices/system/cpu/cpu0/online", "0")
    w(r, "/proc/cpuinfo", "processor\t: 1\nvendor_id\t: AuthenticAMD\n")

    # HMAT: 0 is "not provided"
    r = fresh("numa-hmat-zeros")
    node(r, 0, 8388608, [10, 20], "0-3")
    node(r, 1, 8388608, [20, 10], "")
    lists(r, "0-1", has_cpu="0")
    access(r, 0, 0, {"read_bandwidth": 0, "write_bandwidth": 0, "read_latency": 90,
                     "write_latency": 0}, ["node0"])
    access(r, 1, 0, {"read_bandwidth": 0, "write_bandwidth": 0, "read_latency": 0,
                     "write_latency": 0}, ["node0"])

    # a memory-side cache (two-level memory): 96 GiB, 64-byte lines, direct-mapped, write-back
    r = fresh("numa-memcache")
    node(r, 0, 1073741824, [10], "0-7")
    lists(r, "0", has_cpu="0")
    c = f"{NODE}/node0/memory_side_cache/index1"
    w(r, c + "/size", str(96 << 30))
    w(r, c + "/line_size", "64")
    w(r, c + "/indexing", "0")
    w(r, c + "/write_policy", "0")

    # NVDIMM region onlined as system RAM on node 2 (kmem); region1's dax1.0 stays devdax
    r = fresh("numa-nvdimm")
    node(r, 0, 16777216, [10, 21, 17], "0-7")
    node(r, 1, 16777216, [21, 10, 28], "8-15")
    node(r, 2, 132120576, [17, 28, 10], "")
    lists(r, "0-2", has_cpu="0-1")
    bus = "/sys/devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0"
    for reg, mode, tnode in (("region0", "kmem", 2), ("region1", "device_dax", 3)):
        dax = f"dax{reg[-1]}.0"
        d = f"{bus}/{reg}/{dax}/{dax}"
        w(r, d + "/target_node", str(tnode))
        w(r, d + "/size", str(126 << 30))
        link(r, d + "/driver", f"../../../../../../../../bus/dax/drivers/{mode}")
        os.makedirs(os.path.join(r, f"sys/bus/dax/drivers/{mode}"), exist_ok=True)
        link(r, f"/sys/bus/dax/devices/{dax}",
             f"../../../devices/LNXSYSTM:00/LNXSYBUS:00/ACPI0012:00/ndbus0/{reg}/{dax}/{dax}")

    # impossible numbers, one per file; node5 is the valid reference row
    r = fresh("numa-impossible")
    node(r, 0, 1, [10, 20, 20, 20, 20, 20, 20], "0-3")        # one entry too many
    node(r, 1, 1, [20, 11, 20, 20, 20, 20], "")                # self-distance 11
    node(r, 2, 1, [-5000, 20, 10, 20, 20, 20], "")             # a sign
    node(r, 3, 4194304, [4294967306, 20, 20, 10, 20, 20], "")  # 2^32 + 10
    node(r, 4, 4194304, [-2, 20, 20, 20, 10, 20], "")          # -2 would read as -ENOENT
    node(r, 5, 4194304, [20, 20, 20, 20, 255, 10], "")
    lists(r, "0-5", has_cpu="0")
    w(r, f"{NODE}/node0/meminfo", "Node 0 MemTotal:       99999999999999999999 kB\n")
    w(r, f"{NODE}/node1/meminfo", "Node 1 MemTotal:       -4 kB\n")
    # 9000 bytes: more than the reader's 4096-byte buffer
    pad = "".join(f"Node 2 Pad{i:04d}:  0 kB\n" for i in range(9000 // 20))
    w(r, f"{NODE}/node2/meminfo", (meminfo(2, 4194304) + pad)[:9000], newline=False)
    access(r, 3, 0, {"read_bandwidth": 1000, "write_bandwidth": 18446744073709551615,
                     "read_latency": -1, "write_latency": 4294967296},
           ["node0", "node-5", "node99999999999"])


if __name__ == "__main__":
    main()
