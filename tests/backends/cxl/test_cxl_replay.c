/* SPDX-License-Identifier: MIT */
/* The cxl backend's discovery on recorded machines: device-dax devices in
 * devdax mode become targets, kmem-bound ones (system RAM) do not; and on the
 * hand-written CXL trees (tests/data/make-cxl-trees.py): memory devices,
 * regions and dax devices are correlated, a devdax-mode expander is a target
 * named after its region and PCI function, and system-RAM expanders are
 * reported on their CPU-less host nodes as CXL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

static coh_context *replay(const char *tarball, char **root)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", getenv("COH_TEST_DATA"), tarball);
	*root = t_untar(path);
	ck_assert_ptr_nonnull(*root);
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .fsroot = *root, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void cleanup(char *root)
{
	char cmd[600];
	char *slash = strrchr(root, '/');
	*slash = '\0';   /* the mkdtemp folder above the tree */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
	free(root);
}

static void expect(coh_context *ctx, const char *name, uint64_t size)
{
	coh_target *t = coh_target_find(ctx, name);
	ck_assert_msg(t != NULL, "%s not discovered", name);
	ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_DAX);
	ck_assert_str_eq(coh_target_backend(t), "cxl");
	uint64_t total = 0;
	ck_assert_int_eq(coh_target_capacity(t, &total, NULL), 0);
	ck_assert_uint_eq(total, size);
	ck_assert_uint_eq(coh_target_caps(t), COH_CAP_ALLOC | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_MIGRATE_STICKY | COH_CAP_QUERY |
						      COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_SHARE |
						      COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO | COH_CAP_FORK_KERNEL | COH_CAP_SHARE);
	ck_assert_int_eq(coh_target_numa_node(t), -ENOENT);
	/* nothing to allocate from yet: refused, not faked */
	void *p;
	ck_assert_int_eq(coh_alloc(t, 4096, NULL, &p), -EROFS);   /* replay first */
}


/* A hand-written tree (a folder in tests/data), both backends. */
static coh_context *tree(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", getenv("COH_TEST_DATA"), name);
	struct coh_context_options o = { .size = sizeof(o), .backends = "host,cxl", .fsroot = path, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void note_has(coh_context *ctx, const char *what)
{
	char note[2048];
	ck_assert_int_ge(coh_backend_status(ctx, "cxl", note, sizeof(note)), 0);
	ck_assert_msg(strstr(note, what), "cxl note lacks \"%s\":\n%s", what, note);
}

/* More device-dax devices than the backend once tracked (64): every one is a
 * target, and the fork hooks know them all. */
START_TEST(many_dax_devices)
{
	char root[] = "/tmp/coh-many-dax-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(root));
	t_put_file(root, "sys/devices/system/node/node0/cpulist", "0\n");
	t_put_file(root, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1048576 kB\n");
	t_put_file(root, "sys/bus/dax/drivers/device_dax/bind", "");
	enum { N = 70 };
	for (int i = 0; i < N; i++) {
		char rel[128], link[256];
		snprintf(rel, sizeof(rel), "sys/bus/dax/devices/dax%d.0/size", i);
		t_put_file(root, rel, "2147483648\n");
		snprintf(rel, sizeof(rel), "sys/bus/dax/devices/dax%d.0/align", i);
		t_put_file(root, rel, "2097152\n");
		snprintf(rel, sizeof(rel), "sys/bus/dax/devices/dax%d.0/target_node", i);
		t_put_file(root, rel, "1\n");
		snprintf(rel, sizeof(rel), "sys/bus/dax/devices/dax%d.0/numa_node", i);
		t_put_file(root, rel, "0\n");
		snprintf(link, sizeof(link), "%s/sys/bus/dax/devices/dax%d.0/driver", root, i);
		ck_assert_int_eq(symlink("../../drivers/device_dax", link), 0);
	}
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .fsroot = root, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_target_count(ctx), N);
	ck_assert_ptr_nonnull(coh_target_find(ctx, "cxl:dax0.0"));
	ck_assert_ptr_nonnull(coh_target_find(ctx, "cxl:dax69.0"));
	coh_context_unref(ctx);
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(expander_system_ram)
{
	coh_context *ctx = tree("cxl-expander-ram");
	ck_assert_int_eq(coh_target_count(ctx), 2);   /* node 0 and the expander's node 1, no dax target */
	coh_target *n1 = coh_target_by_node(ctx, 1);
	ck_assert_ptr_nonnull(n1);
	ck_assert_int_eq(coh_target_kind(n1), COH_KIND_CPULESS_NODE);
	ck_assert_str_eq(coh_target_vendor(n1), "CXL");
	ck_assert_msg(strstr(coh_target_model(n1), "CXL region0 (ram, 16.0 GiB: mem0 0000:0d:00.0"), "model %s",
		      coh_target_model(n1));
	ck_assert_msg(strstr(coh_target_model(n1), "system RAM through dax0.0"), "model %s", coh_target_model(n1));
	ck_assert_int_eq(coh_target_memory_tier(n1), 22);
	ck_assert_str_ne(coh_target_vendor(coh_target_by_node(ctx, 0)), "CXL");
	note_has(ctx, "mem0: CXL memory device 0000:0d:00.0");
	note_has(ctx, "ram 16.0 GiB, pmem 0.0 GiB, serial 0x1234, near node 0");
	note_has(ctx, "region0: CXL region, ram, 16.0 GiB at 0x1080000000, 1-way over mem0, committed");
	note_has(ctx, "dax0.0: system RAM (kmem) on node 1");
	coh_context_unref(ctx);
}
END_TEST

START_TEST(expander_devdax)
{
	coh_context *ctx = tree("cxl-expander-devdax");
	ck_assert_int_eq(coh_target_count(ctx), 2);
	coh_target *t = coh_target_find(ctx, "cxl:dax0.0");
	ck_assert_ptr_nonnull(t);
	ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_DAX);
	ck_assert_str_eq(coh_target_vendor(t), "CXL");
	ck_assert_msg(strstr(coh_target_model(t), "device-dax dax0.0 of CXL region0 (ram, 16.0 GiB: mem0 0000:0d:00.0"),
		      "model %s", coh_target_model(t));
	ck_assert_str_eq(coh_target_pci_address(t), "0000:0d:00.0");
	ck_assert_ptr_nonnull(coh_target_pci_name(t));
	uint64_t total = 0;
	ck_assert_int_eq(coh_target_capacity(t, &total, NULL), 0);
	ck_assert_uint_eq(total, 16ull << 30);
	ck_assert_ptr_null(coh_target_by_node(ctx, 1));   /* not onlined */
	note_has(ctx, "dax0.0: device-dax, 16.0 GiB, CXL region0");
	void *p;
	ck_assert_int_eq(coh_alloc(t, 4096, NULL, &p), -EROFS);   /* a recording: described, never used */
	coh_context_unref(ctx);
}
END_TEST

START_TEST(two_cxl_nodes)
{
	coh_context *ctx = tree("cxl-two-nodes");
	ck_assert_int_eq(coh_target_count(ctx), 4);
	static const char *const want[] = { "CXL region0 (ram, 64.0 GiB: mem0 0000:38:00.0",
					    "CXL region1 (ram, 64.0 GiB: mem1 0000:b8:00.0" };
	for (int n = 2; n <= 3; n++) {
		coh_target *t = coh_target_by_node(ctx, n);
		ck_assert_ptr_nonnull(t);
		ck_assert_int_eq(coh_target_kind(t), COH_KIND_CPULESS_NODE);
		ck_assert_str_eq(coh_target_vendor(t), "CXL");
		ck_assert_msg(strstr(coh_target_model(t), want[n - 2]), "node %d: %s", n, coh_target_model(t));
		uint64_t total = 0;
		coh_target_capacity(t, &total, NULL);
		ck_assert_uint_eq(total, 64ull << 30);
	}
	for (int n = 0; n <= 1; n++)
		ck_assert_int_eq(coh_target_kind(coh_target_by_node(ctx, n)), COH_KIND_HOST_NODE);
	/* each expander sits next to its own socket */
	ck_assert_int_eq(coh_target_distance(coh_target_by_node(ctx, 0), coh_target_by_node(ctx, 2)), 14);
	ck_assert_int_eq(coh_target_distance(coh_target_by_node(ctx, 1), coh_target_by_node(ctx, 3)), 14);
	note_has(ctx, "mem1: CXL memory device 0000:b8:00.0");
	note_has(ctx, "near node 1");
	note_has(ctx, "dax1.0: system RAM (kmem) on node 3");
	coh_context_unref(ctx);
}
END_TEST

START_TEST(fake_hetero_tiers)
{
	char *root;
	coh_context *ctx = replay("fakeheteromemtiers.tar.bz2", &root);
	/* hwloc: "OSDev[Memory](SPM) ... Size=524288KiB ... dax0.0"; dax1.0, 3.0, 5.0, 7.0, 8.0 are kmem */
	ck_assert_int_eq(coh_target_count(ctx), 3);
	expect(ctx, "cxl:dax0.0", 536870912);
	expect(ctx, "cxl:dax2.0", 536870912);
	expect(ctx, "cxl:dax6.0", 526385152);
	ck_assert_ptr_null(coh_target_find(ctx, "cxl:dax1.0"));
	ck_assert_ptr_nonnull(strstr(coh_target_model(coh_target_find(ctx, "cxl:dax0.0")), "hmem.0"));
	coh_context_unref(ctx);
	cleanup(root);
}
END_TEST

START_TEST(two_socket_with_dax)
{
	char *root;
	coh_context *ctx = replay("32em64t-2n8c+dax+nvme+mic+dimms.tar.bz2", &root);
	/* dax0.0 and dax1.3 in devdax mode (hwloc lists both as NVM DAX devices); dax1.4 is kmem */
	ck_assert_int_eq(coh_target_count(ctx), 2);
	expect(ctx, "cxl:dax0.0", 107808292864ull);
	expect(ctx, "cxl:dax1.3", 63415779328ull);
	ck_assert_ptr_nonnull(strstr(coh_target_model(coh_target_find(ctx, "cxl:dax1.3")), "region1"));
	coh_context_unref(ctx);
	cleanup(root);
}
END_TEST

START_TEST(no_dax_here)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	coh_target *t;
	coh_target_foreach(ctx, t) ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_DAX);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cxl_replay");
	TCase *tc = tcase_create("cxl_replay");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fake_hetero_tiers);
	tcase_add_test(tc, two_socket_with_dax);
	tcase_add_test(tc, no_dax_here);
	tcase_add_test(tc, expander_system_ram);
	tcase_add_test(tc, expander_devdax);
	tcase_add_test(tc, two_cxl_nodes);
	tcase_add_test(tc, many_dax_devices);
	suite_add_tcase(s, tc);
	return t_run(s);
}
