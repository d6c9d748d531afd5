#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-written CXL replay trees under tests/data/ (run from anywhere;
the trees are committed, this script documents how they were made).

The layout follows the kernel's documentation (Documentation/ABI/testing/
sysfs-bus-cxl, sysfs-bus-dax, Documentation/driver-api/cxl/) for a 6.3+
kernel, where a volatile CXL region gets a dax_region and dax devices:

  /sys/bus/cxl/devices/memN      -> devices/pci.../<bdf>/memN         (ram/size, pmem/size, serial, numa_node)
  /sys/bus/cxl/devices/endpointK -> devices/platform/ACPI0017:00/root0/portP/endpointK  (uport -> the memdev)
  /sys/bus/cxl/devices/decoderK.0 -> .../endpointK/decoderK.0         (mode, size, dpa_size)
  /sys/bus/cxl/devices/regionR   -> devices/platform/ACPI0017:00/root0/decoder0.R/regionR
                                    (size, resource, mode, interleave_ways, target0 = decoderK.0)
  /sys/bus/dax/devices/daxR.0    -> .../regionR/dax_regionR/daxR.0    (size, align, target_node, driver)

Trees:
  cxl-expander-ram/    one type-3 expander, its region onlined as system RAM (kmem) on CPU-less node 1
  cxl-expander-devdax/ the same expander, its dax device left in devdax mode
  cxl-two-nodes/       a two-socket server with two expanders, onlined as CPU-less nodes 2 and 3
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
GIB = 1 << 30


def w(root, path, text):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def link(root, path, target):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    os.symlink(target, p)


def node(root, n, cpus, mem_kib, dist):
    d = f"/sys/devices/system/node/node{n}"
    w(root, d + "/cpulist", cpus)
    w(root, d + "/meminfo",
      f"Node {n} MemTotal:       {mem_kib} kB\nNode {n} MemFree:        {mem_kib - 2048} kB\n"
      f"Node {n} MemUsed:           2048 kB\n")
    w(root, d + "/distance", " ".join(str(x) for x in dist))


def machine(root, nodes, cpu_nodes, tiers):
    """nodes: list of (node, cpulist, MiB, distances); tiers: {tier: nodelist}."""
    if os.path.exists(root):
        shutil.rmtree(root)
    for n, cpus, mib, dist in nodes:
        node(root, n, cpus, mib * 1024, dist)
    ids = ",".join(str(n[0]) for n in nodes)
    w(root, "/sys/devices/system/node/online", ids)
    w(root, "/sys/devices/system/node/possible", ids)
    w(root, "/sys/devices/system/node/has_memory", ids)
    w(root, "/sys/devices/system/node/has_normal_memory", ids)
    w(root, "/sys/devices/system/node/has_cpu", cpu_nodes)
    for t, nl in tiers.items():
        w(root, f"/sys/devices/virtual/memory_tiering/memory_tier{t}/nodelist", nl)
    w(root, "/proc/sys/kernel/osrelease", "6.8.0-cxl-replay")
    w(root, "/proc/cpuinfo", "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: replayed CXL host\n")
    w(root, "/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never")


def expander(root, idx, bdf, host_bridge, size, serial, numa_node, dax_mode, target_node, hpa):
    """One type-3 memory expander memN with endpoint, decoder, region and dax device."""
    mem = f"mem{idx}"
    ep = f"endpoint{idx + 2}"
    dec = f"decoder{idx + 2}.0"
    region = f"region{idx}"
    dax = f"dax{idx}.0"
    port = f"port{idx + 1}"
    memdir = f"/sys/devices/pci0000:{host_bridge}/0000:{host_bridge}:00.0/{bdf}/{mem}"
    w(root, memdir + "/ram/size", hex(size))
    w(root, memdir + "/pmem/size", "0x0")
    w(root, memdir + "/serial", hex(serial))
    w(root, memdir + "/numa_node", str(numa_node))
    w(root, memdir + "/firmware_version", "1.0")
    w(root, memdir + "/devtype", "cxl_memdev")
    link(root, f"/sys/bus/cxl/devices/{mem}", f"../../../devices/pci0000:{host_bridge}/0000:{host_bridge}:00.0/{bdf}/{mem}")
    w(root, f"/sys/bus/pci/devices/{bdf}/class", "0x050210")
    w(root, f"/sys/bus/pci/devices/{bdf}/vendor", "0x8086")
    w(root, f"/sys/bus/pci/devices/{bdf}/device", "0x0d93")
    epdir = f"/sys/devices/platform/ACPI0017:00/root0/{port}/{ep}"
    link(root, epdir + "/uport", f"../../../../../pci0000:{host_bridge}/0000:{host_bridge}:00.0/{bdf}/{mem}")
    w(root, epdir + "/devtype", "cxl_port")
    link(root, f"/sys/bus/cxl/devices/{ep}", f"../../../devices/platform/ACPI0017:00/root0/{port}/{ep}")
    w(root, f"{epdir}/{dec}/mode", "ram")
    w(root, f"{epdir}/{dec}/size", hex(size))
    w(root, f"{epdir}/{dec}/dpa_size", hex(size))
    w(root, f"{epdir}/{dec}/interleave_ways", "1")
    link(root, f"/sys/bus/cxl/devices/{dec}", f"../../../devices/platform/ACPI0017:00/root0/{port}/{ep}/{dec}")
    rdir = f"/sys/devices/platform/ACPI0017:00/root0/decoder0.{idx}/{region}"
    w(root, rdir + "/size", hex(size))
    w(root, rdir + "/resource", hex(hpa))
    w(root, rdir + "/mode", "ram")
    w(root, rdir + "/interleave_ways", "1")
    w(root, rdir + "/interleave_granularity", "256")
    w(root, rdir + "/target0", dec)
    w(root, rdir + "/commit", "1")
    link(root, f"/sys/bus/cxl/devices/{region}", f"../../../devices/platform/ACPI0017:00/root0/decoder0.{idx}/{region}")
    ddir = f"{rdir}/dax_{region}/{dax}"
    w(root, ddir + "/size", str(size))
    w(root, ddir + "/align", str(2 << 20))
    w(root, ddir + "/target_node", str(target_node))
    w(root, ddir + "/numa_node", str(numa_node))
    drv = "kmem" if dax_mode == "system-ram" else "device_dax"
    link(root, ddir + "/driver", f"../../../../../../../../bus/dax/drivers/{drv}")
    os.makedirs(os.path.join(root, f"sys/bus/dax/drivers/{drv}"), exist_ok=True)
    link(root, f"/sys/bus/dax/devices/{dax}",
         f"../../../devices/platform/ACPI0017:00/root0/decoder0.{idx}/{region}/dax_{region}/{dax}")
    if dax_mode == "devdax":
        w(root, f"/dev/{dax}", "")   # a placeholder: replays never open it


def main():
    # one expander, 16 GiB, onlined as system RAM on CPU-less node 1
    r = os.path.join(HERE, "cxl-expander-ram")
    machine(r, [(0, "0-7", 32768, [10, 20]), (1, "", 16384, [20, 10])], "0", {4: "0", 22: "1"})
    expander(r, 0, "0000:0d:00.0", "0c", 16 * GIB, 0x1234, 0, "system-ram", 1, 0x1080000000)
    # the same expander, its dax device in devdax mode: no node 1
    r = os.path.join(HERE, "cxl-expander-devdax")
    machine(r, [(0, "0-7", 32768, [10])], "0", {4: "0"})
    expander(r, 0, "0000:0d:00.0", "0c", 16 * GIB, 0x1234, 0, "devdax", 1, 0x1080000000)
    # two sockets, one expander each, onlined as CPU-less nodes 2 and 3
    r = os.path.join(HERE, "cxl-two-nodes")
    machine(r, [(0, "0-15", 65536, [10, 21, 14, 24]), (1, "16-31", 65536, [21, 10, 24, 14]),
                (2, "", 65536, [14, 24, 10, 26]), (3, "", 65536, [24, 14, 26, 10])],
            "0-1", {4: "0-1", 22: "2-3"})
    expander(r, 0, "0000:38:00.0", "37", 64 * GIB, 0xa1, 0, "system-ram", 2, 0x4080000000)
    expander(r, 1, "0000:b8:00.0", "b7", 64 * GIB, 0xa2, 1, "system-ram", 3, 0x5080000000)


if __name__ == "__main__":
    main()
