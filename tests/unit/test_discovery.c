/* SPDX-License-Identifier: MIT */
/*
 * Node discovery on the hand-written trees of tests/data/make-numa-trees.py:
 * where CPUs are listed (has_cpu, cpulist, cpumap), sparse node ids, HMAT
 * zeros, memory-side caches, NVDIMM-backed nodes, and numbers no kernel
 * writes (each dropped with a warning naming the file, the node kept).  Also
 * the fsroot reader on FIFOs and roots that are not a recorded machine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define GIB (1024ull * 1024 * 1024)

static const char *data_dir(void)
{
	const char *env = getenv("COH_TEST_DATA");
	return env && *env ? env : "../tests/data";
}

/* Every message the library logs, one per line. */
static char logbuf[16384];

static void log_collect(void *data, int level, const char *msg)
{
	(void)data;
	(void)level;
	size_t used = strlen(logbuf);
	snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", msg);
}

static int open_root(const char *root, coh_context **ctx)
{
	logbuf[0] = '\0';
	struct coh_context_options o = { .size = sizeof(o), .fsroot = root, .backends = "host",
					 .log_level = COH_LOG_WARN, .log_fn = log_collect };
	*ctx = NULL;
	return coh_context_create(&o, ctx);
}

static coh_context *open_tree(const char *name)
{
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s/%s", data_dir(), name);
	coh_context *ctx;
	int e = open_root(root, &ctx);
	ck_assert_msg(e == 0, "%s: %s", root, coh_strerror(e));
	return ctx;
}

static coh_target *node_t(coh_context *ctx, int node)
{
	coh_target *t = coh_target_by_node(ctx, node);
	ck_assert_msg(t != NULL, "no target for node %d", node);
	return t;
}

static void check_kind(coh_context *ctx, int node, int kind)
{
	int k = coh_target_kind(node_t(ctx, node));
	ck_assert_msg(k == kind, "node%d: %s, expected %s", node, coh_target_kind_name(k), coh_target_kind_name(kind));
}

static void check_logged(const char *what)
{
	ck_assert_msg(strstr(logbuf, what) != NULL, "no warning with '%s' in:\n%s", what, logbuf);
}

/* ---- where CPUs are listed ---- */

/* Each tree: its nodes, each with or without CPUs, and the vendor read for node `vnode`. */
static const struct cpu_shape {
	const char *tree;
	int count;
	struct {
		int node, kind;
	} nodes[3];
	int vnode;
	const char *vendor;
} cpu_shapes[] = {
	/* has_cpu is 0 bytes; node0/cpulist 0-3, node1/cpulist 4-7 */
	{ "numa-empty-has-cpu", 2, { { 0, COH_KIND_HOST_NODE }, { 1, COH_KIND_HOST_NODE } }, 1, "GenuineIntel" },
	/* no has_cpu; node0 cpulist 0-3; node1 only cpumap 000000f0; node2 cpulist "" and cpumap 0 */
	{ "numa-no-has-cpu", 3,
	  { { 0, COH_KIND_HOST_NODE }, { 1, COH_KIND_HOST_NODE }, { 2, COH_KIND_CPULESS_NODE } }, 1, "GenuineIntel" },
	/* POWER: cpumap files only, four 32-bit words; nodes 0 (CPUs 0-7), 8 (40-47), 250 (none) */
	{ "numa-cpumap-only", 3,
	  { { 0, COH_KIND_HOST_NODE }, { 8, COH_KIND_HOST_NODE }, { 250, COH_KIND_CPULESS_NODE } }, 8, "POWER9" },
	/* online 1,3,6 (no node 0); has_cpu a bare newline; node6 cpulist empty */
	{ "numa-sparse-ids", 3,
	  { { 1, COH_KIND_HOST_NODE }, { 3, COH_KIND_HOST_NODE }, { 6, COH_KIND_CPULESS_NODE } }, 3, "GenuineIntel" },
	/* cpu0 offline: node0/cpulist "1-3"; has_cpu 0-1; cpuinfo starts at processor 1 */
	{ "numa-cpu0-offline", 2, { { 0, COH_KIND_HOST_NODE }, { 1, COH_KIND_HOST_NODE } }, 0, "AuthenticAMD" },
};

START_TEST(cpu_sources)
{
	const struct cpu_shape *x = &cpu_shapes[_i];
	coh_context *ctx = open_tree(x->tree);
	ck_assert_int_eq(coh_target_count(ctx), x->count);
	for (int i = 0; i < x->count; i++)
		check_kind(ctx, x->nodes[i].node, x->nodes[i].kind);
	ck_assert_str_eq(coh_target_vendor(node_t(ctx, x->vnode)), x->vendor);
	ck_assert_str_eq(logbuf, "");   /* nothing in these trees is wrong */
	coh_context_unref(ctx);
}
END_TEST

START_TEST(sparse_distances)
{
	/* online 1,3,6; node1/distance "10 16 255": node6 is unreachable from node1 (SLIT 255) */
	coh_context *ctx = open_tree("numa-sparse-ids");
	ck_assert_ptr_null(coh_target_by_node(ctx, 0));
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 1), node_t(ctx, 3)), 16);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 1), node_t(ctx, 6)), 255);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 6), node_t(ctx, 3)), 22);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 6), node_t(ctx, 6)), 10);
	coh_context_unref(ctx);
	/* numa-cpumap-only: node8/distance "40 10 80" */
	ctx = open_tree("numa-cpumap-only");
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 8), node_t(ctx, 250)), 80);
	coh_context_unref(ctx);
}
END_TEST

/* ---- HMAT, memory-side caches, persistent memory ---- */

/* Access class 0 of t: these four figures, node0 the one initiator. */
static void check_access0(coh_target *t, uint32_t rbw, uint32_t wbw, uint32_t rlat, uint32_t wlat)
{
	struct coh_access a = { .size = sizeof(a) };
	ck_assert_int_eq(coh_target_access(t, 0, &a), 0);
	ck_assert_uint_eq(a.read_bandwidth, rbw);
	ck_assert_uint_eq(a.write_bandwidth, wbw);
	ck_assert_uint_eq(a.read_latency, rlat);
	ck_assert_uint_eq(a.write_latency, wlat);
	ck_assert_int_eq(a.nr_initiators, 1);
	int init[2] = { -1, -1 };
	ck_assert_int_eq(coh_target_initiators(t, 0, init, 2), 1);
	ck_assert_int_eq(init[0], 0);
	ck_assert_int_eq(init[1], -1);
}

START_TEST(hmat_zeros)
{
	coh_context *ctx = open_tree("numa-hmat-zeros");
	/* node0/access0: bandwidths 0, read_latency 90, write_latency 0: only the latency is a figure */
	check_access0(node_t(ctx, 0), 0, 0, 90, 0);
	/* node1/access0: all four 0, nothing provided */
	struct coh_access a = { .size = sizeof(a) };
	ck_assert_int_eq(coh_target_access(node_t(ctx, 1), 0, &a), -ENOENT);
	ck_assert_str_eq(logbuf, "");   /* 0 is valid HMAT ("not provided"), not an error */
	coh_context_unref(ctx);
}
END_TEST

START_TEST(memory_cache)
{
	coh_context *ctx = open_tree("numa-memcache");
	coh_target *t = node_t(ctx, 0);
	struct coh_memory_cache c = { .size = sizeof(c) };
	/* memory_side_cache/index1: size 103079215104, line_size 64, indexing 0, write_policy 0 */
	ck_assert_int_eq(coh_target_memory_cache(t, 0, &c), 0);
	ck_assert_uint_eq(c.size, sizeof(c));
	ck_assert_uint_eq(c.level, 1);
	ck_assert_uint_eq(c.cache_bytes, 96 * GIB);
	ck_assert_uint_eq(c.line_size, 64);
	ck_assert_int_eq(c.indexing, 0);
	ck_assert_int_eq(c.write_policy, 0);
	ck_assert_int_eq(coh_target_memory_cache(t, 1, &c), -ENOENT);
	/* bad arguments change nothing */
	c.size = sizeof(size_t) - 1;   /* not even its size member */
	ck_assert_int_eq(coh_target_memory_cache(t, 0, &c), -EINVAL);
	ck_assert_int_eq(coh_target_memory_cache(NULL, 0, &c), -EINVAL);
	ck_assert_int_eq(coh_target_memory_cache(t, 0, NULL), -EINVAL);
	coh_context_unref(ctx);
	/* a node without one */
	ctx = open_tree("numa-hmat-zeros");
	c.size = sizeof(c);
	ck_assert_int_eq(coh_target_memory_cache(node_t(ctx, 0), 0, &c), -ENOENT);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(nvdimm)
{
	/* dax0.0 (kmem, target_node 2) under ndbus0/region0; dax1.0 (device_dax, node 3) not a node */
	coh_context *ctx = open_tree("numa-nvdimm");
	ck_assert_int_eq(coh_target_count(ctx), 3);
	ck_assert_int_eq(coh_target_persistent(node_t(ctx, 2)), 1);
	ck_assert_int_eq(coh_target_persistent(node_t(ctx, 0)), 0);
	ck_assert_int_eq(coh_target_persistent(node_t(ctx, 1)), 0);
	ck_assert_int_eq(coh_target_persistent(NULL), -EINVAL);
	check_kind(ctx, 2, COH_KIND_CPULESS_NODE);
	ck_assert_ptr_nonnull(strstr(coh_target_model(node_t(ctx, 2)), "ndbus0/region0"));
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 0), node_t(ctx, 2)), 17);
	coh_context_unref(ctx);
}
END_TEST

/* ---- impossible data: dropped, logged, the node kept ---- */

START_TEST(impossible_capacity)
{
	coh_context *ctx = open_tree("numa-impossible");
	ck_assert_int_eq(coh_target_count(ctx), 6);
	/* node0 MemTotal 99999999999999999999 kB, node1 -4 kB, node2's meminfo is 9000 bytes */
	for (int n = 0; n <= 2; n++) {
		uint64_t total = 1;
		ck_assert_int_eq(coh_target_capacity(node_t(ctx, n), &total, NULL), -ENODATA);
		ck_assert_uint_eq(total, 0);
	}
	check_logged("node0/meminfo: MemTotal '99999999999999999999' is not a size");
	check_logged("node1/meminfo: MemTotal '-4' is not a size");
	check_logged("node2/meminfo: longer than 4095 bytes");
	uint64_t total = 0;
	ck_assert_int_eq(coh_target_capacity(node_t(ctx, 3), &total, NULL), 0);
	ck_assert_uint_eq(total, 4194304ull * 1024);
	check_kind(ctx, 0, COH_KIND_HOST_NODE);
	check_kind(ctx, 1, COH_KIND_CPULESS_NODE);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(impossible_distances)
{
	coh_context *ctx = open_tree("numa-impossible");
	coh_target *t[6];
	for (int n = 0; n < 6; n++)
		t[n] = node_t(ctx, n);
	/* node0: 7 entries, 6 online nodes; node1: self 11; node2: -5000; node3: 4294967306; node4: -2 */
	for (int n = 0; n <= 4; n++)
		for (int m = 0; m < 6; m++) {
			int d = coh_target_distance(t[n], t[m]);
			ck_assert_msg(d == -ENOENT, "node%d -> node%d: %d, expected -ENOENT", n, m, d);
		}
	check_logged("node0/distance: more entries than online nodes");
	check_logged("node1/distance: a distance to itself other than 10");
	check_logged("node2/distance: an entry outside 10..255");
	check_logged("node3/distance: an entry outside 10..255");
	check_logged("node4/distance: an entry outside 10..255");
	/* node5 "20 20 20 20 255 10" is valid */
	ck_assert_int_eq(coh_target_distance(t[5], t[0]), 20);
	ck_assert_int_eq(coh_target_distance(t[5], t[4]), 255);
	ck_assert_int_eq(coh_target_distance(t[5], t[5]), 10);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(impossible_hmat)
{
	coh_context *ctx = open_tree("numa-impossible");
	/* node3/access0: read_bandwidth 1000, write_bandwidth 2^64-1, read_latency -1,
	 * write_latency 2^32; initiators node0, node-5, node99999999999 */
	check_access0(node_t(ctx, 3), 1000, 0, 0, 0);
	check_logged("access0/initiators/read_latency: '-1' is not a figure");
	check_logged("access0/initiators/write_latency: '4294967296' is not a figure");
	check_logged("access0/initiators/write_bandwidth: '18446744073709551615' is not a figure");
	check_logged("access0/initiators/node-5: not a node id");
	check_logged("access0/initiators/node99999999999: not a node id");
	coh_context_unref(ctx);
}
END_TEST

/* ---- the fsroot reader ---- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

START_TEST(fifo_does_not_hang)
{
	/* FIFOs where node1's meminfo and distance and has_cpu would be: opening one
	 * without O_NONBLOCK blocks until a writer comes, which never happens. */
	char dir[] = "/tmp/coh-disc-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	t_put_file(dir, "sys/devices/system/node/online", "0-1\n");
	t_put_file(dir, "sys/devices/system/node/has_memory", "0-1\n");
	t_put_file(dir, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1048576 kB\n");
	t_put_file(dir, "sys/devices/system/node/node0/cpulist", "0-1\n");
	t_put_file(dir, "sys/devices/system/node/node0/distance", "10 20\n");
	t_put_file(dir, "sys/devices/system/node/node1/cpulist", "\n");
	char path[PATH_MAX];
	static const char *const fifos[] = { "node1/meminfo", "node1/distance", "has_cpu" };
	for (size_t i = 0; i < sizeof(fifos) / sizeof(fifos[0]); i++) {
		snprintf(path, sizeof(path), "%s/sys/devices/system/node/%s", dir, fifos[i]);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
	}
	alarm(20);   /* a hang fails the test rather than the whole run */
	coh_context *ctx;
	ck_assert_int_eq(open_root(dir, &ctx), 0);
	ck_assert_int_eq(coh_target_count(ctx), 2);
	uint64_t total = 1;
	ck_assert_int_eq(coh_target_capacity(node_t(ctx, 1), &total, NULL), -ENODATA);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 1), node_t(ctx, 0)), -ENOENT);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 0), node_t(ctx, 1)), 20);
	check_kind(ctx, 0, COH_KIND_HOST_NODE);
	check_logged("node1/meminfo: not a regular file");
	coh_context_unref(ctx);
	alarm(0);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

static void check_refused(const char *root, int err)
{
	coh_context *ctx = (coh_context *)&logbuf;
	int e = open_root(root, &ctx);
	ck_assert_msg(e == err, "fsroot %s: %d (%s), expected %d", root, e, coh_strerror(e), err);
	ck_assert_ptr_null(ctx);
	check_logged(root);
	check_logged("/sys/devices/system/node");
}

START_TEST(wrong_fsroot)
{
	/* an empty folder */
	char dir[] = "/tmp/coh-disc-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	check_refused(dir, -ENOENT);
	check_logged(strerror(ENOENT));
	/* the folder above the recorded trees */
	check_refused(data_dir(), -ENOENT);
	/* sys/devices/system/node is a file */
	t_put_file(dir, "sys/devices/system/node", "");
	check_refused(dir, -ENOTDIR);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	/* a missing root names itself */
	coh_context *ctx;
	ck_assert_int_eq(open_root("/nonexistent/coh-disc-root", &ctx), -ENOENT);
	check_logged("/nonexistent/coh-disc-root");
}
END_TEST

static Suite *disc_suite(void)
{
	Suite *s = suite_create("discovery");
	TCase *tc = tcase_create("cpus");
	tcase_add_loop_test(tc, cpu_sources, 0, (int)(sizeof(cpu_shapes) / sizeof(cpu_shapes[0])));
	tcase_add_test(tc, sparse_distances);
	suite_add_tcase(s, tc);
	tc = tcase_create("attributes");
	tcase_add_test(tc, hmat_zeros);
	tcase_add_test(tc, memory_cache);
	tcase_add_test(tc, nvdimm);
	suite_add_tcase(s, tc);
	tc = tcase_create("impossible");
	tcase_add_test(tc, impossible_capacity);
	tcase_add_test(tc, impossible_distances);
	tcase_add_test(tc, impossible_hmat);
	suite_add_tcase(s, tc);
	tc = tcase_create("fsroot");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fifo_does_not_hang);
	tcase_add_test(tc, wrong_fsroot);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(disc_suite());
}
