#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the hand-written KFD topology trees under tests/data/ (the trees are
committed; this script documents how they were made).  Not recordings: the
layout follows the kernel's own writer (drivers/gpu/drm/amd/amdkfd/
kfd_topology.c, "key value" lines) and include/uapi/linux/kfd_sysfs.h, with
device ids, GFX versions and sizes of the public product descriptions.

  /sys/class/kfd/kfd/topology/generation_id, system_properties
  /sys/class/kfd/kfd/topology/nodes/N/{gpu_id,name,properties}
  .../nodes/N/mem_banks/M/properties, io_links/L/properties
  /sys/bus/pci/devices/<bdf>/{vendor,device,class}    (for the PCI name)
  /dev/dri/renderD<minor>                              (placeholder file)

Trees (each with one CPU node 0):
  kfd-mi210/        one Instinct MI210 (gfx90a) on PCIe: device-private VRAM
  kfd-mi250x-xgmi/  two MI250X dies (gfx90a) linked to the CPU by xGMI: device-coherent VRAM on 6.1
  kfd-mi300a/       an Instinct MI300A APU (gfx942): no VRAM bank, the GPU works on system memory
  kfd-rx7900/       a Radeon RX 7900 XTX (gfx1100) on PCIe: device-private VRAM, no XNACK
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
GIB = 1 << 30
SVM = 0x08000000        # HSA_CAP_SVMAPI_SUPPORTED
TOPO = "/sys/devices/virtual/kfd/kfd/topology"


def w(root, path, text):
    p = os.path.join(root, path.lstrip("/"))
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


def props(d):
    return "".join(f"{k} {v}\n" for k, v in d)


def cpu_node(root, n, cores):
    d = f"{TOPO}/nodes/{n}"
    w(root, d + "/gpu_id", "0")
    w(root, d + "/name", "")
    w(root, d + "/properties", props([
        ("cpu_cores_count", cores), ("simd_count", 0), ("mem_banks_count", 1), ("caches_count", 0),
        ("io_links_count", 0), ("p2p_links_count", 0), ("cpu_core_id_base", 0), ("simd_id_base", 0),
        ("max_waves_per_simd", 0), ("lds_size_in_kb", 0), ("gds_size_in_kb", 0), ("num_gws", 0),
        ("wave_front_size", 0), ("array_count", 0), ("simd_arrays_per_engine", 0), ("cu_per_simd_array", 0),
        ("simd_per_cu", 0), ("max_slots_scratch_cu", 0), ("gfx_target_version", 0), ("vendor_id", 0),
        ("device_id", 0), ("location_id", 0), ("domain", 0), ("drm_render_minor", 0), ("hive_id", 0),
        ("num_sdma_engines", 0), ("num_sdma_xgmi_engines", 0), ("num_sdma_queues_per_engine", 0),
        ("num_cp_queues", 0), ("max_engine_clk_ccompute", 3500)]))
    w(root, d + "/mem_banks/0/properties", props([
        ("heap_type", 0), ("size_in_bytes", 256 * GIB), ("flags", 0), ("width", 64), ("mem_clk_max", 3200)]))


def gpu_node(root, n, gpu_id, name, gfx, dev, bdf_bus, simd, vram, cap, links, render, hive=0, cores=0, domain=0):
    """links: list of (type, node_to); vram 0 means no VRAM bank (APU)."""
    d = f"{TOPO}/nodes/{n}"
    loc = bdf_bus << 8
    w(root, d + "/gpu_id", str(gpu_id))
    w(root, d + "/name", name)
    w(root, d + "/properties", props([
        ("cpu_cores_count", cores), ("simd_count", simd), ("mem_banks_count", 1 if vram else 0),
        ("caches_count", 0), ("io_links_count", len(links)), ("p2p_links_count", 0),
        ("cpu_core_id_base", 0), ("simd_id_base", 2147487744 + n), ("max_waves_per_simd", 8),
        ("lds_size_in_kb", 64), ("gds_size_in_kb", 0), ("num_gws", 64), ("wave_front_size", 64),
        ("array_count", 8), ("simd_arrays_per_engine", 1), ("cu_per_simd_array", 14), ("simd_per_cu", 4),
        ("max_slots_scratch_cu", 32), ("gfx_target_version", gfx), ("vendor_id", 0x1002), ("device_id", dev),
        ("location_id", loc), ("domain", domain), ("drm_render_minor", render), ("hive_id", hive),
        ("num_sdma_engines", 2), ("num_sdma_xgmi_engines", 6 if hive else 0), ("num_sdma_queues_per_engine", 8),
        ("num_cp_queues", 24), ("max_engine_clk_fcompute", 1700), ("local_mem_size", 0), ("fw_version", 78),
        ("capability", cap), ("sdma_fw_version", 8), ("unique_id", 0x1234_0000 + n),
        ("max_engine_clk_ccompute", 3500)]))
    if vram:
        w(root, d + "/mem_banks/0/properties", props([
            ("heap_type", 1), ("size_in_bytes", vram), ("flags", 0), ("width", 4096), ("mem_clk_max", 1600)]))
    for i, (typ, to) in enumerate(links):
        w(root, d + f"/io_links/{i}/properties", props([
            ("type", typ), ("version_major", 0), ("version_minor", 0), ("node_from", n), ("node_to", to),
            ("weight", 20 if typ == 2 else 13), ("min_latency", 0), ("max_latency", 0), ("min_bandwidth", 312),
            ("max_bandwidth", 64000), ("recommended_transfer_size", 0), ("flags", 1)]))
    bdf = f"{domain:04x}:{bdf_bus:02x}:00.0"
    w(root, f"/sys/bus/pci/devices/{bdf}/vendor", "0x1002")
    w(root, f"/sys/bus/pci/devices/{bdf}/device", hex(dev))
    w(root, f"/sys/bus/pci/devices/{bdf}/class", "0x038000" if name.startswith("gfx90") else "0x030000")
    w(root, f"/dev/dri/renderD{render}", "")


def machine(root, gpus):
    if os.path.exists(root):
        shutil.rmtree(root)
    w(root, TOPO + "/generation_id", "1")
    w(root, TOPO + "/system_properties", "platform_oem 0\nplatform_id 0\nplatform_rev 0\n")
    os.makedirs(os.path.join(root, "sys/class/kfd"), exist_ok=True)
    os.symlink("../../devices/virtual/kfd/kfd", os.path.join(root, "sys/class/kfd/kfd"))
    w(root, "/proc/sys/kernel/osrelease", "6.1.0-kfd-replay")
    w(root, "/sys/devices/system/node/online", "0")
    w(root, "/sys/devices/system/node/has_cpu", "0")
    w(root, "/sys/devices/system/node/has_memory", "0")
    w(root, "/sys/devices/system/node/node0/cpulist", "0-31")
    w(root, "/sys/devices/system/node/node0/distance", "10")
    w(root, "/sys/devices/system/node/node0/meminfo",
      "Node 0 MemTotal:       268435456 kB\nNode 0 MemFree:        260000000 kB\n")
    w(root, "/proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: replayed KFD host\n")
    cpu_node(root, 0, 32)
    for g in gpus:
        gpu_node(root, **g)


def main():
    machine(os.path.join(HERE, "kfd-mi210"), [
        dict(n=1, gpu_id=51238, name="gfx90a", gfx=90010, dev=0x740f, bdf_bus=0x03, simd=416, vram=64 * GIB,
             cap=SVM | 0x00482280, links=[(2, 0)], render=128)])
    machine(os.path.join(HERE, "kfd-mi250x-xgmi"), [
        dict(n=1, gpu_id=11011, name="gfx90a", gfx=90010, dev=0x7408, bdf_bus=0xc1, simd=440, vram=64 * GIB,
             cap=SVM | 0x00482280, links=[(11, 0), (11, 2)], render=128, hive=0x5d0ca1f0),
        dict(n=2, gpu_id=22022, name="gfx90a", gfx=90010, dev=0x7408, bdf_bus=0xc9, simd=440, vram=64 * GIB,
             cap=SVM | 0x00482280, links=[(11, 0), (11, 1)], render=129, hive=0x5d0ca1f0)])
    machine(os.path.join(HERE, "kfd-mi300a"), [
        dict(n=1, gpu_id=47477, name="gfx942", gfx=90402, dev=0x74a0, bdf_bus=0x02, simd=912, vram=0,
             cap=SVM | 0x00482280, links=[(11, 0)], render=128)])
    machine(os.path.join(HERE, "kfd-rx7900"), [
        dict(n=1, gpu_id=60961, name="gfx1100", gfx=110000, dev=0x744c, bdf_bus=0x0b, simd=192, vram=24 * GIB,
             cap=SVM | 0x00080280, links=[(2, 0)], render=128)])


if __name__ == "__main__":
    main()
