/* SPDX-License-Identifier: MIT */
/*
 * Node of each page in a residency query.
 *   test_query_nodes            the PFN -> node table read from replayed trees
 *   test_query_nodes multinode  on the live machine: a range interleaved over
 *                               every memory node, coh_query's node of each
 *                               page against move_pages' (exit 77 with fewer
 *                               than two memory nodes)
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "common.h"
#include "internal.h"
#include "query.h"

static char tree[64];

/* A replay tree with the given block_size_bytes text and node -> blocks links. */
static coh_context *tree_ctx(const char *block_size, const char *const *entries)
{
	char cmd[4096];
	strcpy(tree, "/tmp/coh-pfn-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tree));
	int n = snprintf(cmd, sizeof(cmd), "cd %s && mkdir -p sys/devices/system/memory sys/devices/system/node", tree);
	if (block_size)
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n,
			      " && printf '%%s\\n' '%s' > sys/devices/system/memory/block_size_bytes", block_size);
	for (int i = 0; entries[i]; i++)   /* "node1/memory9": a block link in a node folder */
		n += snprintf(cmd + n, sizeof(cmd) - (size_t)n,
			      " && mkdir -p $(dirname sys/devices/system/node/%s) && ln -s ../../memory/x sys/devices/system/node/%s",
			      entries[i], entries[i]);
	ck_assert_int_eq(system(cmd), 0);
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .fsroot = tree, .log_level = 0 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void tree_done(coh_context *ctx)
{
	char cmd[128];
	coh_context_unref(ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf %s", tree);
	ck_assert_int_eq(system(cmd), 0);
}

START_TEST(pfn_table)
{
	static const char *const e[] = { "node0/memory0", "node0/memory1", "node1/memory9", "node2/memory32",
					 "node2/memoryX", "node1/memory", "node1/notmemory3", "nodeZ/memory5", NULL };
	coh_context *ctx = tree_ctx("8000000", e);   /* 128 MiB blocks */
	struct coh_pfn_map *m;
	ck_assert_int_eq(coh_pfn_map_build(ctx, &m), 0);
	uint64_t bp = (128u << 20) / ctx->page_size;
	ck_assert_uint_eq(m->block_pages, bp);
	ck_assert_int_eq(coh_pfn_node(m, 1), 0);
	ck_assert_int_eq(coh_pfn_node(m, 2 * bp - 1), 0);
	ck_assert_int_eq(coh_pfn_node(m, 2 * bp), -1);       /* a hole between blocks */
	ck_assert_int_eq(coh_pfn_node(m, 9 * bp + 5), 1);
	ck_assert_int_eq(coh_pfn_node(m, 32 * bp), 2);
	ck_assert_int_eq(coh_pfn_node(m, 5 * bp), -1);       /* nodeZ is no node */
	ck_assert_int_eq(coh_pfn_node(m, 33 * bp), -1);      /* past the last block */
	ck_assert_int_eq(coh_pfn_node(m, UINT64_MAX >> 9), -1);
	free(m);
	/* the context's own copy, freed with it */
	const struct coh_pfn_map *c = coh_pfn_map_get(ctx, false);
	ck_assert_ptr_nonnull(c);
	ck_assert_ptr_eq(coh_pfn_map_get(ctx, true), c);     /* read less than a second ago */
	tree_done(ctx);
}
END_TEST

START_TEST(pfn_table_bad_input)
{
	static const char *const some[] = { "node0/memory0", NULL };
	static const char *const none[] = { NULL };
	static const char *const sizes[] = { "", "zz", "0", "3", "8000001", "g8000000", "8000000 junk", "-8000000", NULL };
	struct coh_pfn_map *m;
	for (int i = 0; sizes[i]; i++) {
		coh_context *ctx = tree_ctx(sizes[i], some);
		ck_assert_msg(coh_pfn_map_build(ctx, &m) == -EINVAL, "block size \"%s\" accepted", sizes[i]);
		ck_assert_ptr_null(m);
		ck_assert_ptr_null(coh_pfn_map_get(ctx, false));
		ck_assert_int_eq(atomic_load(&ctx->pfn_unusable), 1);   /* tried once, not at every query */
		tree_done(ctx);
	}
	coh_context *ctx = tree_ctx(NULL, some);
	ck_assert_int_eq(coh_pfn_map_build(ctx, &m), -ENOENT);   /* no block_size_bytes */
	tree_done(ctx);
	ctx = tree_ctx("1000", some);   /* one page per block: odd, but a valid table */
	ck_assert_int_eq(coh_pfn_map_build(ctx, &m), 0);
	ck_assert_uint_eq(m->block_pages, 4096 / ctx->page_size);
	free(m);
	tree_done(ctx);
	ctx = tree_ctx("8000000", none);
	ck_assert_int_eq(coh_pfn_map_build(ctx, &m), -ENOENT);   /* no blocks */
	tree_done(ctx);
}
END_TEST

/* ---- live: every page's node against move_pages ---- */

static int multinode(void)
{
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .log_level = -1 };
	if (coh_context_create(&o, &ctx)) {
		fprintf(stderr, "FAIL: no host context\n");
		return 1;
	}
	unsigned long mask = 0;
	int nodes = 0, maxnode = 0;
	coh_target *t;
	coh_target_foreach(ctx, t) {
		uint64_t total = 0, free_b = 0;
		int nd = coh_target_numa_node(t);
		if (nd >= 0 && nd < 64 && coh_target_capacity(t, &total, &free_b) == 0 && free_b > (64u << 20)) {
			mask |= 1ul << nd;
			nodes++;
			maxnode = nd + 1 > maxnode ? nd + 1 : maxnode;
		}
	}
	if (nodes < 2) {
		printf("skip: %d memory node(s) with room: the query's node resolution needs two\n", nodes);
		coh_context_unref(ctx);
		return 77;
	}
	size_t ps = ctx->page_size, npages = 4096, len = npages * ps;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int bad = 0;
	if (p == MAP_FAILED || madvise(p, len, MADV_NOHUGEPAGE) ||
	    syscall(SYS_mbind, p, len, 3 /* MPOL_INTERLEAVE */, &mask, (unsigned long)maxnode + 1, 0)) {
		fprintf(stderr, "FAIL: cannot map an interleaved range\n");
		return 1;
	}
	/* written, not read: no zero page; every fourth page left out: holes */
	for (size_t i = 0; i < npages; i++)
		if (i % 4 != 3)
			p[i * ps] = (char)i;
	struct coh_extent *ext = calloc(npages + 1, sizeof(*ext));
	void **pages = malloc(npages * sizeof(void *));
	int *status = malloc(npages * sizeof(int));
	for (size_t i = 0; i < npages; i++)
		pages[i] = p + i * ps;
	if (syscall(SYS_move_pages, 0, npages, pages, NULL, status, 0) < 0) {
		fprintf(stderr, "FAIL: move_pages\n");
		return 1;
	}
	int n = coh_query(ctx, p, len, ext, npages + 1, sizeof(struct coh_extent));
	if (n <= 0) {
		fprintf(stderr, "FAIL: coh_query: %s\n", coh_strerror(n));
		return 1;
	}
	int seen_nodes = 0;
	unsigned long seen = 0;
	for (int x = 0, i = 0; x < n; x++) {
		for (uintptr_t a = ext[x].start; a < ext[x].start + ext[x].length; a += ps, i++) {
			int want = status[i] >= 0 ? status[i] : -1;
			bool ok = i % 4 == 3 ? ext[x].kind == COH_MEM_NOT_POPULATED
					     : ext[x].kind == COH_MEM_SYSTEM && ext[x].node == want;
			if (!ok && bad++ < 5)
				fprintf(stderr, "FAIL: page %d: kind %s node %d, move_pages says %d\n", i,
					coh_mem_kind_name(ext[x].kind), ext[x].node, status[i]);
			if (want >= 0 && want < 64 && !(seen & (1ul << want))) {
				seen |= 1ul << want;
				seen_nodes++;
			}
		}
	}
	if (seen_nodes < 2) {
		fprintf(stderr, "FAIL: interleaving left every page on one node\n");
		bad++;
	}
	/* as root the nodes came from the PFNs: the table must have been built */
	bool pfn = atomic_load(&ctx->pfn_map) != NULL && !atomic_load(&ctx->pfn_unusable);
	if (geteuid() == 0 && access("/sys/devices/system/memory/block_size_bytes", R_OK) == 0 && !pfn) {
		fprintf(stderr, "FAIL: root with memory blocks, yet no PFN table\n");
		bad++;
	}
	printf("%zu pages over %d nodes: %s, nodes from %s\n", npages, seen_nodes, bad ? "MISMATCH" : "all agree",
	       pfn ? "PFNs" : "move_pages");
	free(ext);
	free(pages);
	free(status);
	munmap(p, len);
	coh_context_unref(ctx);
	return bad ? 1 : 0;
}

/* The VMA holding p in /proc/self/smaps: its range and AnonHugePages in bytes. */
static bool smaps_vma(const void *p, uintptr_t *vs, uintptr_t *ve, size_t *huge)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	ck_assert_ptr_nonnull(f);
	char line[512];
	bool in = false, found = false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b, kb;
		if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {   /* a mapping's first line */
			in = (uintptr_t)p >= a && (uintptr_t)p < b;
			if (in) {
				*vs = a;
				*ve = b;
			}
		} else if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1) {
			*huge = (size_t)kb * 1024;
			found = true;
		}
	}
	fclose(f);
	return found;
}

/* Huge pages on the pagemap pread path (query.scan=0, the only path before
 * 6.7 and the one taken when nodes come from frame numbers): with frame
 * numbers and /proc/kpageflags readable (root) every page of a PMD-mapped
 * THP reads system-thp, as many as smaps' AnonHugePages counts; without
 * them none does, and the pages read system. */
START_TEST(thp_pread)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .tunables = "query.scan=0", .log_level = 0 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_ge(coh_target_count(ctx), 1);
	size_t ps = ctx->page_size, len = 8u << 20;
	char *p;
	int e = coh_alloc(coh_target_get(ctx, 0), len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE | COH_ALLOC_POPULATE), (void **)&p);
	if (e == -EOPNOTSUPP) {
		fprintf(stderr, "test_query_nodes: no transparent huge pages here, thp_pread checks nothing\n");
		coh_context_unref(ctx);
		return;
	}
	ck_assert_int_eq(e, 0);
	memset(p, 7, len);
	uintptr_t vs = 0, ve = 0;
	size_t huge = 0;
	ck_assert(smaps_vma(p, &vs, &ve, &huge));
	struct coh_extent x[256];
	int n = coh_query(ctx, (void *)vs, ve - vs, x, 256, sizeof(x[0]));
	ck_assert_int_gt(n, 0);
	size_t thp = 0, sys = 0;
	for (int i = 0; i < n; i++) {
		ck_assert_msg(x[i].kind == COH_MEM_SYSTEM_THP || x[i].kind == COH_MEM_SYSTEM, "extent %d: %s", i,
			      coh_mem_kind_name(x[i].kind));
		*(x[i].kind == COH_MEM_SYSTEM_THP ? &thp : &sys) += x[i].length;
	}
	ck_assert_uint_eq(thp + sys, ve - vs);
	uint64_t ent = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, &ent, 8, (off_t)((uintptr_t)p / ps) * 8), 8);
	close(fd);
	bool frames = (ent & ((1ULL << 55) - 1)) != 0 && access("/proc/kpageflags", R_OK) == 0;
	printf("thp_pread: %zu of %zu bytes system-thp, smaps AnonHugePages %zu (frame numbers %s)\n", thp,
	       (size_t)(ve - vs), huge, frames ? "readable" : "hidden");
	ck_assert_uint_eq(thp, frames ? huge : 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "multinode"))
		return multinode();
	Suite *s = suite_create("query_nodes");
	TCase *tc = tcase_create("pfn");
	tcase_add_test(tc, pfn_table);
	tcase_add_test(tc, pfn_table_bad_input);
	tcase_add_test(tc, thp_pread);
	suite_add_tcase(s, tc);
	return t_run(s);
}
