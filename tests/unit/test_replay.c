/* SPDX-License-Identifier: MIT */
/*
 * Replayed machines: contexts whose fsroot is a recorded (or hand-written)
 * /sys + /proc tree.  Every number asserted here was read from the tree
 * itself (nodeN/meminfo, nodeN/distance, accessY/initiators/{read,write}_{bandwidth,latency},
 * memory_tiering/memory_tierN/nodelist) or from hwloc's expected output for
 * the same tree; see tests/data/README.md.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <numaif.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "internal.h"   /* coh_target::d.zone_movable has no public accessor */

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define GIB (1024ull * 1024 * 1024)

/* ------------------------------------------------------------------ */
/* The trees                                                           */
/* ------------------------------------------------------------------ */

enum tree {
	TREE_2SOCKET,   /* 32em64t-2n8c+dax+nvme+mic+dimms: Intel, 2 nodes */
	TREE_8NODE,     /* 16amd64-8n2c: AMD Opteron, 8 nodes */
	TREE_TIERS,     /* fakeheteromemtiers: synthetic, CPU-less nodes, HMAT access1 */
	TREE_GPU,       /* nvidiagpunumanodes: POWER9, V100 memory as nodes 250-255 */
	TREE_CXL,       /* cxl-cpuless: hand-written, CPU-less CXL expander node 1 */
	TREE_COUNT
};

static const char *const tree_tarball[TREE_COUNT] = {
	[TREE_2SOCKET] = "32em64t-2n8c+dax+nvme+mic+dimms.tar.bz2",
	[TREE_8NODE] = "16amd64-8n2c.tar.bz2",
	[TREE_TIERS] = "fakeheteromemtiers.tar.bz2",
	[TREE_GPU] = "nvidiagpunumanodes.tar.bz2",
	[TREE_CXL] = NULL,   /* a plain folder: tests/data/cxl-cpuless */
};

static char *tree_root[TREE_COUNT];     /* fsroot of each tree */
static char *tree_tmpdir[TREE_COUNT];   /* what t_untar() created, removed at the end */

/* tests/data: COH_TEST_DATA (set by coh_add_check_test), else next to this file. */
static const char *data_dir(void)
{
	static char buf[PATH_MAX];
	const char *env = getenv("COH_TEST_DATA");
	if (env && *env)
		return env;
	snprintf(buf, sizeof(buf), "%s", __FILE__);
	char *slash = strrchr(buf, '/');   /* .../tests/unit/test_replay.c */
	if (slash) {
		*slash = '\0';
		slash = strrchr(buf, '/');
	}
	if (slash)
		snprintf(slash, sizeof(buf) - (size_t)(slash - buf), "/data");
	else
		snprintf(buf, sizeof(buf), "../data");
	return buf;
}

/* The recording in tests/data: the tests read nothing outside the repository. */
static char *find_tarball(const char *name)
{
	char *p = NULL;
	if (asprintf(&p, "%s/%s", data_dir(), name) < 0)
		return NULL;
	if (access(p, R_OK) == 0)
		return p;
	free(p);
	return NULL;
}

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void trees_unpack(void)
{
	for (int i = 0; i < TREE_COUNT; i++) {
		if (!tree_tarball[i]) {
			if (asprintf(&tree_root[i], "%s/cxl-cpuless", data_dir()) < 0)
				tree_root[i] = NULL;
			continue;
		}
		char *tar = find_tarball(tree_tarball[i]);
		if (!tar) {
			fprintf(stderr, "test_replay: %s not found in %s\n", tree_tarball[i], data_dir());
			continue;
		}
		tree_root[i] = t_untar(tar);
		free(tar);
		if (!tree_root[i]) {
			fprintf(stderr, "test_replay: could not unpack %s\n", tree_tarball[i]);
			continue;
		}
		/* t_untar gives <mkdtemp folder>/<top entry>: remove the whole folder later. */
		tree_tmpdir[i] = strdup(tree_root[i]);
		char *slash = tree_tmpdir[i] ? strrchr(tree_tmpdir[i], '/') : NULL;
		if (slash)
			*slash = '\0';
	}
}

static void trees_cleanup(void)
{
	for (int i = 0; i < TREE_COUNT; i++) {
		if (tree_tmpdir[i] && !strncmp(tree_tmpdir[i], "/tmp/coh-replay-", 16))
			nftw(tree_tmpdir[i], rm_entry, 16, FTW_DEPTH | FTW_PHYS);
		free(tree_tmpdir[i]);
		free(tree_root[i]);
		tree_tmpdir[i] = tree_root[i] = NULL;
	}
}

static coh_context *replay_ctx(int tree)
{
	ck_assert_msg(tree_root[tree] != NULL, "tree #%d is missing (see stderr)", tree);
	struct coh_context_options o = { .size = sizeof(o), .fsroot = tree_root[tree],
					 .backends = "host", .log_level = -1 };
	coh_context *ctx = NULL;
	int e = coh_context_create(&o, &ctx);
	ck_assert_msg(e == 0, "coh_context_create(fsroot=%s): %s", tree_root[tree], coh_strerror(e));
	ck_assert_int_eq(coh_context_is_replay(ctx), 1);
	return ctx;
}

/* ------------------------------------------------------------------ */
/* Checks shared by the trees                                          */
/* ------------------------------------------------------------------ */

struct node_exp {
	int node;
	int kind;             /* COH_KIND_HOST_NODE or COH_KIND_CPULESS_NODE */
	uint64_t total_kb;    /* "Node N MemTotal:" in nodeN/meminfo */
	uint64_t free_kb;     /* "Node N MemFree:" in nodeN/meminfo */
	int movable;          /* every present page of the node in ZONE_MOVABLE (proc/zoneinfo) */
};

static coh_target *node_target(coh_context *ctx, int node)
{
	coh_target *t = coh_target_by_node(ctx, node);
	ck_assert_msg(t != NULL, "no target for node %d", node);
	return t;
}

/* vendor: what the host backend reads from proc/cpuinfo for nodes with CPUs. */
static void check_nodes(coh_context *ctx, const struct node_exp *x, int n, const char *vendor)
{
	ck_assert_int_eq(coh_target_count(ctx), n);

	/* Every target is one of the expected nodes, each exactly once. */
	int seen[64] = { 0 };
	ck_assert_int_le(n, 64);
	coh_target *t;
	coh_target_foreach(ctx, t) {
		int k;
		for (k = 0; k < n && x[k].node != coh_target_numa_node(t); k++)
			;
		ck_assert_msg(k < n, "unexpected target %s (node %d)", coh_target_name(t),
			      coh_target_numa_node(t));
		seen[k]++;
	}
	for (int i = 0; i < n; i++)
		ck_assert_msg(seen[i] == 1, "node %d seen %d times", x[i].node, seen[i]);

	for (int i = 0; i < n; i++) {
		char name[32];
		snprintf(name, sizeof(name), "host:node%d", x[i].node);
		t = node_target(ctx, x[i].node);
		ck_assert_ptr_eq(coh_target_find(ctx, name), t);
		ck_assert_str_eq(coh_target_name(t), name);
		ck_assert_str_eq(coh_target_backend(t), "host");
		ck_assert_ptr_eq(coh_target_context(t), ctx);
		ck_assert_msg(coh_target_kind(t) == x[i].kind, "%s: kind %s, expected %s", name,
			      coh_target_kind_name(coh_target_kind(t)), coh_target_kind_name(x[i].kind));
		ck_assert_int_eq(coh_target_numa_node(t), x[i].node);
		ck_assert_str_eq(coh_target_vendor(t),
				 x[i].kind == COH_KIND_HOST_NODE ? vendor : "unknown");
		ck_assert_ptr_null(coh_target_pci_address(t));

		uint64_t total = 0, free_bytes = 0;
		ck_assert_int_eq(coh_target_capacity(t, &total, &free_bytes), 0);
		ck_assert_msg(total == x[i].total_kb * KIB, "%s: total %llu, MemTotal %llu kB", name,
			      (unsigned long long)total, (unsigned long long)x[i].total_kb);
		ck_assert_msg(free_bytes == x[i].free_kb * KIB, "%s: free %llu, MemFree %llu kB", name,
			      (unsigned long long)free_bytes, (unsigned long long)x[i].free_kb);
		ck_assert_msg(t->d.zone_movable == x[i].movable, "%s: zone_movable %d, expected %d",
			      name, t->d.zone_movable, x[i].movable);

		/* Replay describes a NUMA kernel: host targets keep their NUMA caps. */
		uint64_t caps = coh_target_caps(t);
		ck_assert(caps & COH_CAP_ALLOC);
		ck_assert(caps & COH_CAP_MIGRATE);

		/* Diagonal of every SLIT here is 10. */
		ck_assert_int_eq(coh_target_distance(t, t), 10);
	}
}

static void check_distance(coh_context *ctx, int a, int b, int d)
{
	int got = coh_target_distance(node_target(ctx, a), node_target(ctx, b));
	ck_assert_msg(got == d, "distance node%d -> node%d: %d, the tree says %d", a, b, got, d);
}

/* Every pair: off-diagonal value `off`, diagonal 10. */
static void check_uniform_distances(coh_context *ctx, const struct node_exp *x, int n, int off)
{
	for (int i = 0; i < n; i++)
		for (int j = 0; j < n; j++)
			check_distance(ctx, x[i].node, x[j].node, i == j ? 10 : off);
}

static void check_no_tier(coh_context *ctx)
{
	coh_target *t;
	coh_target_foreach(ctx, t)
		ck_assert_int_eq(coh_target_memory_tier(t), -ENOENT);
}

static void check_no_access(coh_target *t, unsigned cls)
{
	struct coh_access a = { .size = sizeof(a) };
	int e = coh_target_access(t, cls, &a);
	ck_assert_msg(e == -ENOENT, "%s access%u: %d, expected -ENOENT", coh_target_name(t), cls, e);
}

static void check_access(coh_target *t, unsigned cls, uint32_t rbw, uint32_t wbw, uint32_t rlat,
			 uint32_t wlat, int ninit, const int *init)
{
	struct coh_access a = { .size = sizeof(a) };
	int e = coh_target_access(t, cls, &a);
	ck_assert_msg(e == 0, "%s access%u: %s", coh_target_name(t), cls, coh_strerror(e));
	ck_assert_uint_eq(a.size, sizeof(a));
	ck_assert_uint_eq(a.read_bandwidth, rbw);
	ck_assert_uint_eq(a.write_bandwidth, wbw);
	ck_assert_uint_eq(a.read_latency, rlat);
	ck_assert_uint_eq(a.write_latency, wlat);
	ck_assert_int_eq(a.nr_initiators, ninit);
	int nodes[64];
	ck_assert_int_eq(coh_target_initiators(t, cls, nodes, 64), ninit);
	for (int i = 0; i < ninit; i++)
		ck_assert_int_eq(nodes[i], init[i]);
	ck_assert_int_eq(coh_target_initiators(t, cls, NULL, 0), ninit);
}

/* hwloc's console prints sizes rounded to the nearest unit. */
static uint64_t round_to(uint64_t bytes, uint64_t unit)
{
	return (bytes + unit / 2) / unit;
}

static uint64_t total_of(coh_context *ctx, int node)
{
	uint64_t total = 0;
	ck_assert_int_eq(coh_target_capacity(node_target(ctx, node), &total, NULL), 0);
	return total;
}

static int count_kind(coh_context *ctx, int kind)
{
	int n = 0;
	coh_target *t;
	coh_target_foreach(ctx, t)
		n += coh_target_kind(t) == kind;
	return n;
}

/* ------------------------------------------------------------------ */
/* (a) Two-socket Intel server: 32em64t-2n8c+dax+nvme+mic+dimms         */
/* ------------------------------------------------------------------ */

/* node0/meminfo: MemTotal 16747124 kB, MemFree 15794148 kB; node1: 16777216 / 13669108.
 * has_cpu 0-1; no has_memory (the host backend falls back to MemTotal). */
static const struct node_exp two_socket[] = {
	{ 0, COH_KIND_HOST_NODE, 16747124, 15794148, 0 },
	{ 1, COH_KIND_HOST_NODE, 16777216, 13669108, 0 },
};

START_TEST(test_two_socket)
{
	coh_context *ctx = replay_ctx(TREE_2SOCKET);
	check_nodes(ctx, two_socket, 2, "GenuineIntel");
	/* node0/distance "10 21", node1/distance "21 10" */
	check_distance(ctx, 0, 1, 21);
	check_distance(ctx, 1, 0, 21);
	check_no_tier(ctx);
	check_no_access(node_target(ctx, 0), 0);
	check_no_access(node_target(ctx, 1), 1);
	/* No transparent_hugepage folder was recorded. */
	ck_assert(!(coh_target_caps(node_target(ctx, 0)) & COH_CAP_HUGE_PAGES));
	coh_context_unref(ctx);
}
END_TEST

START_TEST(test_two_socket_hwloc)
{
	coh_context *ctx = replay_ctx(TREE_2SOCKET);
	/* 32em64t-2n8c+dax+nvme+mic+dimms.hwloc-expected.xml: two NUMANode objects,
	 * os_index 0 local_memory="17149054976", os_index 1 local_memory="17179869184";
	 * <distances2 ... indexing="os"> <u64values>10 21 21 10</u64values>. */
	ck_assert_int_eq(coh_target_count(ctx), 2);
	ck_assert_uint_eq(total_of(ctx, 0), 17149054976ull);
	ck_assert_uint_eq(total_of(ctx, 1), 17179869184ull);
	check_distance(ctx, 0, 0, 10);
	check_distance(ctx, 0, 1, 21);
	check_distance(ctx, 1, 0, 21);
	check_distance(ctx, 1, 1, 10);
	coh_context_unref(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Eight-node AMD server: 16amd64-8n2c                                 */
/* ------------------------------------------------------------------ */

static const struct node_exp eight_node[] = {
	{ 0, COH_KIND_HOST_NODE, 8386704, 6895672, 0 },
	{ 1, COH_KIND_HOST_NODE, 8388608, 8226932, 0 },
	{ 2, COH_KIND_HOST_NODE, 8388608, 8238444, 0 },
	{ 3, COH_KIND_HOST_NODE, 8388608, 8230804, 0 },
	{ 4, COH_KIND_HOST_NODE, 8388608, 8234628, 0 },
	{ 5, COH_KIND_HOST_NODE, 8388608, 8246360, 0 },
	{ 6, COH_KIND_HOST_NODE, 8388608, 8242876, 0 },
	{ 7, COH_KIND_HOST_NODE, 8388608, 8249784, 0 },
};

START_TEST(test_eight_node)
{
	coh_context *ctx = replay_ctx(TREE_8NODE);
	check_nodes(ctx, eight_node, 8, "AuthenticAMD");
	/* nodeN/distance: 10 on the diagonal, 20 elsewhere. */
	check_uniform_distances(ctx, eight_node, 8, 20);
	check_no_tier(ctx);
	coh_target *t;
	coh_target_foreach(ctx, t) {
		check_no_access(t, 0);
		check_no_access(t, 1);
	}
	coh_context_unref(ctx);
}
END_TEST

START_TEST(test_eight_node_hwloc)
{
	coh_context *ctx = replay_ctx(TREE_8NODE);
	/* 16amd64-8n2c.hwloc-expected.console: "Special depth -3: 8 NUMANode";
	 * NUMANode P#0 local=8190MiB, P#1..P#7 local=8192MiB; Machine total=64GiB;
	 * NUMALatency matrix 10 on the diagonal, 20 elsewhere. */
	ck_assert_int_eq(coh_target_count(ctx), 8);
	ck_assert_uint_eq(round_to(total_of(ctx, 0), MIB), 8190);
	uint64_t sum = total_of(ctx, 0);
	for (int n = 1; n < 8; n++) {
		ck_assert_uint_eq(round_to(total_of(ctx, n), MIB), 8192);
		sum += total_of(ctx, n);
	}
	ck_assert_uint_eq(round_to(sum, GIB), 64);
	check_distance(ctx, 3, 6, 20);
	check_distance(ctx, 7, 7, 10);
	coh_context_unref(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* (b) Synthetic memory tiers: fakeheteromemtiers                      */
/* ------------------------------------------------------------------ */

/* online 0-2,4,6,8-9; has_cpu 0-2; has_memory 0-2,4,6,8-9; nodes 3, 5, 7 possible only. */
static const struct node_exp tiers[] = {
	{ 0, COH_KIND_HOST_NODE, 3005392, 2814956, 0 },
	{ 1, COH_KIND_HOST_NODE, 1002460, 949304, 0 },
	{ 2, COH_KIND_HOST_NODE, 524288, 521992, 0 },
	{ 4, COH_KIND_CPULESS_NODE, 524288, 524288, 0 },
	{ 6, COH_KIND_CPULESS_NODE, 393216, 393216, 0 },
	{ 8, COH_KIND_CPULESS_NODE, 393216, 393216, 0 },
	{ 9, COH_KIND_CPULESS_NODE, 393216, 393216, 0 },
};

START_TEST(test_tiers)
{
	coh_context *ctx = replay_ctx(TREE_TIERS);
	check_nodes(ctx, tiers, 7, "GenuineIntel");
	for (int n = 3; n <= 7; n += 2)
		ck_assert_ptr_null(coh_target_by_node(ctx, n));   /* possible, not online */
	/* Columns of nodeN/distance follow "online" (7 of them, node ids with gaps):
	 * every row is 10 on its own column and 20 elsewhere. */
	check_uniform_distances(ctx, tiers, 7, 20);
	check_distance(ctx, 9, 9, 10);   /* 7th column, not the 10th */
	check_distance(ctx, 4, 6, 20);
	/* No sys/devices/virtual/memory_tiering in the recording: hwloc's
	 * "memorytier=" in the expected output is hwloc's own ranking, not the kernel's. */
	check_no_tier(ctx);

	/* HMAT: only access1 (CPU initiators) was recorded, access0 is absent.
	 * nodeN/access1/initiators/{read,write}_bandwidth, {read,write}_latency, nodeM links. */
	static const struct {
		int node, rbw, init;
	} hmat[] = {
		{ 0, 1000, 0 }, { 1, 1000, 1 }, { 2, 10000, 2 }, { 4, 10000, 1 },
		{ 6, 100, 1 },  { 8, 100, 0 },  { 9, 100, 2 },
	};
	for (size_t i = 0; i < sizeof(hmat) / sizeof(hmat[0]); i++) {
		coh_target *t = node_target(ctx, hmat[i].node);
		check_access(t, 1, (uint32_t)hmat[i].rbw, (uint32_t)hmat[i].rbw, 0, 0, 1, &hmat[i].init);
		check_no_access(t, 0);
	}
	/* Bad arguments. */
	struct coh_access a = { .size = sizeof(a) };
	ck_assert_int_eq(coh_target_access(node_target(ctx, 4), 2, &a), -EINVAL);
	a.size = sizeof(size_t) - 1;   /* not even its size member */
	ck_assert_int_eq(coh_target_access(node_target(ctx, 4), 1, &a), -EINVAL);
	ck_assert_int_eq(coh_target_access(node_target(ctx, 4), 1, NULL), -EINVAL);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(test_tiers_hwloc)
{
	coh_context *ctx = replay_ctx(TREE_TIERS);
	/* fakeheteromemtiers.hwloc-expected.console: "Special depth -3: 7 NUMANode";
	 * NUMANode(DRAM) P#0 local=2935MiB, (DRAM) P#1 979MiB, (HBM) P#2 512MiB,
	 * (HBM) P#4 512MiB, (NVM) P#6, P#8, P#9 384MiB each. */
	static const struct {
		int node;
		uint64_t mib;
	} h[] = { { 0, 2935 }, { 1, 979 }, { 2, 512 }, { 4, 512 }, { 6, 384 }, { 8, 384 }, { 9, 384 } };
	ck_assert_int_eq(coh_target_count(ctx), 7);
	for (size_t i = 0; i < sizeof(h) / sizeof(h[0]); i++)
		ck_assert_uint_eq(round_to(total_of(ctx, h[i].node), MIB), h[i].mib);
	/* hwloc's memory attribute "Bandwidth": L#3 = P#4 = 10000 from cpuset 0x0000000c
	 * (CPUs 2-3 = node1); L#1 = P#8 = 100 from cpuset 0x00000003 (node0);
	 * L#6 = P#9 = 100 from cpuset 0x00000030 (node2). */
	static const int n1 = 1, n0 = 0, n2 = 2;
	check_access(node_target(ctx, 4), 1, 10000, 10000, 0, 0, 1, &n1);
	check_access(node_target(ctx, 8), 1, 100, 100, 0, 0, 1, &n0);
	check_access(node_target(ctx, 9), 1, 100, 100, 0, 0, 1, &n2);
	coh_context_unref(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* (c) GPU memory as NUMA nodes: nvidiagpunumanodes (POWER9 + V100)    */
/* ------------------------------------------------------------------ */

/* online 0,8,250-255; has_cpu 0,8; MemTotal per nodeN/meminfo. */
static const struct node_exp gpu[] = {
	{ 0, COH_KIND_HOST_NODE, 129839104, 121541952, 0 },
	{ 8, COH_KIND_HOST_NODE, 133952000, 127784000, 0 },
	{ 250, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
	{ 251, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
	{ 252, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
	{ 253, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
	{ 254, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
	{ 255, COH_KIND_CPULESS_NODE, 15728640, 15728576, 0 },
};

START_TEST(test_gpu_nodes)
{
	coh_context *ctx = replay_ctx(TREE_GPU);
	/* proc/cpuinfo has no vendor_id: "cpu : POWER9, altivec supported". */
	check_nodes(ctx, gpu, 8, "POWER9");
	/* node0/distance "10 40 80 80 80 80 80 80", node8 "40 10 80 ...",
	 * node250 "80 80 10 80 80 80 80 80", ... node255 "80 80 80 80 80 80 80 10". */
	check_distance(ctx, 0, 8, 40);
	check_distance(ctx, 8, 0, 40);
	check_distance(ctx, 0, 250, 80);
	check_distance(ctx, 8, 255, 80);
	check_distance(ctx, 250, 0, 80);
	check_distance(ctx, 250, 251, 80);
	check_distance(ctx, 255, 254, 80);
	check_distance(ctx, 255, 255, 10);   /* 8th column */
	check_no_tier(ctx);
	check_no_access(node_target(ctx, 250), 0);
	check_no_access(node_target(ctx, 250), 1);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(test_gpu_nodes_hwloc)
{
	coh_context *ctx = replay_ctx(TREE_GPU);
	/* nvidiagpunumanodes.hwloc-expected.console: "Special depth -3: 2 NUMANode",
	 * P#0 local=124GiB, P#8 local=128GiB, NUMALatency 10 40 / 40 10.  hwloc hides
	 * the nodes that proc/driver/nvidia/gpus/<pci>/numa_status names (250-255)
	 * unless HWLOC_KEEP_NVIDIA_GPU_NUMA_NODES is set; libcoherent keeps them, as
	 * CPU-less nodes.  So hwloc's two nodes are our nodes with CPUs. */
	ck_assert_int_eq(count_kind(ctx, COH_KIND_HOST_NODE), 2);
	ck_assert_int_eq(count_kind(ctx, COH_KIND_CPULESS_NODE), 6);
	ck_assert_uint_eq(round_to(total_of(ctx, 0), GIB), 124);
	ck_assert_uint_eq(round_to(total_of(ctx, 8), GIB), 128);
	check_distance(ctx, 0, 8, 40);
	/* numa_status "Node: 250" ... "Node: 255", one per V100 (PCI 0004:05:00.0,
	 * 0004:06:00.0, 0006:00:00.0, 0007:00:00.0, 0035:04:00.0, 0035:05:00.0). */
	for (int n = 250; n <= 255; n++)
		ck_assert_int_eq(coh_target_kind(node_target(ctx, n)), COH_KIND_CPULESS_NODE);
	coh_context_unref(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* (b) CPU-less CXL memory expander: cxl-cpuless (hand-written)        */
/* ------------------------------------------------------------------ */

/* node0: CPUs 0-3, MemTotal 16214564 kB; node1: no CPUs, MemTotal 67108864 kB
 * (64 GiB), all of it ZONE_MOVABLE in proc/zoneinfo. */
static const struct node_exp cxl[] = {
	{ 0, COH_KIND_HOST_NODE, 16214564, 14592100, 0 },
	{ 1, COH_KIND_CPULESS_NODE, 67108864, 66912460, 1 },
};

START_TEST(test_cxl)
{
	coh_context *ctx = replay_ctx(TREE_CXL);
	check_nodes(ctx, cxl, 2, "GenuineIntel");
	ck_assert_uint_eq(total_of(ctx, 1), 64 * GIB);
	ck_assert_ptr_null(coh_target_by_node(ctx, 2));   /* possible 0-3, online 0-1 */
	/* node0/distance "10 20", node1/distance "20 10" */
	check_distance(ctx, 0, 1, 20);
	check_distance(ctx, 1, 0, 20);
	/* memory_tier4/nodelist "0" (DRAM), memory_tier22/nodelist "1" (default dax tier). */
	ck_assert_int_eq(coh_target_memory_tier(node_target(ctx, 0)), 4);
	ck_assert_int_eq(coh_target_memory_tier(node_target(ctx, 1)), 22);
	/* HMAT, both classes (no generic initiators: identical numbers).
	 * node0/accessY/initiators: 96000 / 88000 MB/s, 94 / 102 ns, initiator node0;
	 * node1/accessY/initiators: 22000 / 19000 MB/s, 265 / 280 ns, initiator node0. */
	static const int n0 = 0;
	for (unsigned cls = 0; cls <= 1; cls++) {
		check_access(node_target(ctx, 0), cls, 96000, 88000, 94, 102, 1, &n0);
		check_access(node_target(ctx, 1), cls, 22000, 19000, 265, 280, 1, &n0);
	}
	/* transparent_hugepage/enabled "always [madvise] never" */
	ck_assert(coh_target_caps(node_target(ctx, 0)) & COH_CAP_HUGE_PAGES);
	ck_assert(coh_target_caps(node_target(ctx, 1)) & COH_CAP_HUGE_PAGES);
	ck_assert_str_eq(coh_target_model(node_target(ctx, 1)), "CPU-less memory node 1");
	coh_context_unref(ctx);
}
END_TEST

/* COH_FSROOT selects the tree when the options leave fsroot NULL. */
START_TEST(test_cxl_env_fsroot)
{
	ck_assert_ptr_nonnull(tree_root[TREE_CXL]);
	ck_assert_int_eq(setenv("COH_FSROOT", tree_root[TREE_CXL], 1), 0);
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .log_level = -1 };
	coh_context *ctx = NULL;
	int e = coh_context_create(&o, &ctx);
	unsetenv("COH_FSROOT");
	ck_assert_msg(e == 0, "coh_context_create: %s", coh_strerror(e));
	ck_assert_int_eq(coh_context_is_replay(ctx), 1);
	check_nodes(ctx, cxl, 2, "GenuineIntel");
	coh_context_unref(ctx);
}
END_TEST

/* ------------------------------------------------------------------ */
/* Replay mode is read-only                                             */
/* ------------------------------------------------------------------ */

START_TEST(test_replay_refuses_changes)
{
	coh_context *ctx = replay_ctx(_i);
	int n = coh_target_count(ctx);
	ck_assert_int_gt(n, 0);
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = 4 * ps;
	unsigned char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(buf != MAP_FAILED);
	memset(buf, 0x5a, len);

	for (int i = 0; i < n; i++) {
		coh_target *t = coh_target_get(ctx, (unsigned)i);
		void *p = buf;   /* must stay untouched */
		ck_assert_int_eq(coh_alloc(t, ps, NULL, &p), -EROFS);
		ck_assert_int_eq(coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_POPULATE), &p), -EROFS);
		ck_assert_ptr_eq(p, buf);
		ck_assert_int_eq(coh_adopt(t, buf, len, NULL), -EROFS);
		ck_assert_int_eq(coh_migrate(ctx, buf, len, t, 0), -EROFS);
		coh_migration *m = (coh_migration *)buf;
		ck_assert_int_eq(coh_migrate_async(ctx, buf, len, t, 0, &m), -EROFS);
		ck_assert_ptr_null(m);
		ck_assert_int_eq(coh_advise(ctx, buf, len, COH_ADVISE_PREFERRED_LOCATION, t), -EROFS);
	}
	ck_assert_int_eq(coh_free(ctx, buf), -EROFS);
	ck_assert_int_eq(coh_release(ctx, buf), -EROFS);
	ck_assert_int_eq(coh_fork_policy_set(ctx, buf, len, COH_FORK_EXCLUDE), -EROFS);

	/* Nothing was recorded or changed. */
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, buf, &info), -ENOENT);
	int mode = -1;
	if (syscall(SYS_get_mempolicy, &mode, NULL, 0UL, buf, (unsigned long)MPOL_F_ADDR) == 0)
		ck_assert_int_eq(mode, MPOL_DEFAULT);
	for (size_t i = 0; i < len; i++)
		if (buf[i] != 0x5a)
			ck_abort_msg("byte %zu changed", i);
	munmap(buf, len);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(test_live_is_not_replay)
{
	coh_context *ctx = t_ctx();   /* fsroot "/" */
	ck_assert_int_eq(coh_context_is_replay(ctx), 0);
	coh_context_unref(ctx);
	/* Another spelling of "/" is still the live machine. */
	struct coh_context_options o = { .size = sizeof(o), .fsroot = "/tmp/..", .backends = "host",
					 .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_context_is_replay(ctx), 0);
	coh_context_unref(ctx);
	/* A root that does not exist is refused. */
	o.fsroot = "/nonexistent/coh-replay-root";
	ctx = (coh_context *)&o;
	ck_assert_int_eq(coh_context_create(&o, &ctx), -ENOENT);
	ck_assert_ptr_null(ctx);
}
END_TEST

static Suite *replay_suite(void)
{
	Suite *s = suite_create("replay");
	TCase *tc = tcase_create("machines");
	tcase_add_test(tc, test_two_socket);
	tcase_add_test(tc, test_two_socket_hwloc);
	tcase_add_test(tc, test_eight_node);
	tcase_add_test(tc, test_eight_node_hwloc);
	tcase_add_test(tc, test_tiers);
	tcase_add_test(tc, test_tiers_hwloc);
	tcase_add_test(tc, test_gpu_nodes);
	tcase_add_test(tc, test_gpu_nodes_hwloc);
	tcase_add_test(tc, test_cxl);
	tcase_add_test(tc, test_cxl_env_fsroot);
	suite_add_tcase(s, tc);

	tc = tcase_create("read-only");
	tcase_add_loop_test(tc, test_replay_refuses_changes, 0, TREE_COUNT);
	tcase_add_test(tc, test_live_is_not_replay);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	trees_unpack();
	int rc = t_run(replay_suite());
	trees_cleanup();
	return rc;
}
