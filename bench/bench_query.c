/* SPDX-License-Identifier: MIT */
/* Residency query of 1 GiB of 4 KiB pages against the raw kernel paths, same run. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "bench.h"
#include "coherent.h"

static double raw_move_pages(char *p, size_t npages, size_t ps, size_t batch)
{
	void **pages = malloc(batch * sizeof(void *));
	int *status = malloc(batch * sizeof(int));
	if (!pages || !status) {
		free(pages);
		free(status);
		return -1;
	}
	double t0 = bench_now_ns();
	for (size_t i = 0; i < npages; i += batch) {
		size_t c = npages - i < batch ? npages - i : batch;
		for (size_t j = 0; j < c; j++)
			pages[j] = p + (i + j) * ps;
		if (syscall(SYS_move_pages, 0, c, pages, NULL, status, 0) < 0)
			break;
	}
	double dt = bench_now_ns() - t0;
	free(pages);
	free(status);
	return (double)npages / dt * 1e3;   /* Mpages/s */
}

static double raw_pagemap(char *p, size_t npages, size_t ps)
{
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return -1;
	size_t chunk = 65536;
	uint64_t *buf = malloc(chunk * 8);
	double t0 = bench_now_ns();
	for (size_t i = 0; buf && i < npages; i += chunk) {
		size_t c = npages - i < chunk ? npages - i : chunk;
		if (pread(fd, buf, c * 8, (off_t)(((uintptr_t)p / ps + i) * 8)) < 0)
			break;
	}
	double dt = bench_now_ns() - t0;
	free(buf);
	close(fd);
	return (double)npages / dt * 1e3;
}

/* 64 MiB of 4 KiB pages interleaved page by page over every memory node of
 * the host (mbind MPOL_INTERLEAVE, then written): coh_query against batched
 * move_pages(nodes=NULL) on the same range, and every page's node compared.
 * Nothing with fewer than two memory nodes. */
static int bench_query_multinode(coh_context *ctx, const struct bench_opts *o, struct bench_result *out,
				 int max)
{
	unsigned long mask = 0;
	int nodes = 0, maxnode = 0, n = 0;
	coh_target *t;
	coh_target_foreach(ctx, t) {
		uint64_t total = 0, free_b = 0;
		int nd = coh_target_numa_node(t);
		if (nd >= 0 && nd < 64 && coh_target_capacity(t, &total, &free_b) == 0 && free_b > (96u << 20)) {
			mask |= 1ul << nd;
			nodes++;
			maxnode = nd + 1 > maxnode ? nd + 1 : maxnode;
		}
	}
	if (nodes < 2 || max < 1)
		return 0;
	size_t len = 64u << 20, ps = (size_t)sysconf(_SC_PAGESIZE), npages = len / ps;
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return -ENOMEM;
	struct coh_extent *ext = calloc(npages + 1, sizeof(*ext));
	void **pages = malloc(npages * sizeof(void *));
	int *status = malloc(npages * sizeof(int));
	int e = 0;
	if (!ext || !pages || !status) {
		e = -ENOMEM;
		goto out;
	}
	if (madvise(p, len, MADV_NOHUGEPAGE) ||
	    syscall(SYS_mbind, p, len, 3 /* MPOL_INTERLEAVE */, &mask, (unsigned long)maxnode + 1, 0)) {
		e = -errno;
		goto out;
	}
	if (o->progress)
		o->progress("query: 64 MiB interleaved over the memory nodes");
	for (size_t i = 0; i < npages; i++)
		p[i * ps] = 1;
	double mpb = 0;
	for (int round = 0; round < 3; round++) {
		double r = raw_move_pages(p, npages, ps, 4096);
		mpb = r > mpb ? r : mpb;
	}
	/* the same without the PFN table (query.pfn=0): numa_maps and move_pages */
	double nopfn = 0;
	coh_context *plain;
	struct coh_context_options opt = { .size = sizeof(opt), .backends = "host", .log_level = -1,
					   .tunables = "query.pfn=0" };
	if (coh_context_create(&opt, &plain) == 0) {
		for (int round = 0; round < 3; round++) {
			double t0 = bench_now_ns();
			int k = coh_query(plain, p, len, ext, npages + 1, sizeof(struct coh_extent));
			double rate = (double)npages / (bench_now_ns() - t0) * 1e3;
			nopfn = k > 0 && rate > nopfn ? rate : nopfn;
		}
		coh_context_unref(plain);
	}
	double best = 0;
	int next = 0;
	for (int round = 0; round < 5; round++) {
		double t0 = bench_now_ns();
		next = coh_query(ctx, p, len, ext, npages + 1, sizeof(struct coh_extent));
		double rate = (double)npages / (bench_now_ns() - t0) * 1e3;
		if (next < 0) {
			e = next;
			goto out;
		}
		best = rate > best ? rate : best;
	}
	/* the answer must be move_pages' own, page for page */
	for (size_t i = 0; i < npages; i++)
		pages[i] = p + i * ps;
	size_t agree = 0, i = 0;
	if (syscall(SYS_move_pages, 0, npages, pages, NULL, status, 0) == 0)
		for (int x = 0; x < next; x++)
			for (size_t k = 0; k < ext[x].length / ps && i < npages; k++, i++)
				agree += ext[x].node == status[i];
	char name[96];
	snprintf(name, sizeof(name), "coh_query 64 MiB over %d nodes (%zu/%zu pages agree)", nodes, agree, npages);
	bench_set(&out[n++], "query", name, best, "Mpages/s", "move_pages x4096", mpb, ">= 2x, nodes agree",
		  best >= 2 * mpb && agree == npages);
	if (n < max)
		bench_set(&out[n++], "query", "  the same with COH_QUERY_PFN=0", nopfn, "Mpages/s", "move_pages x4096",
			  mpb, "-", true);
out:
	free(ext);
	free(pages);
	free(status);
	munmap(p, len);
	return e ? e : n;
}

int bench_query(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	coh_target *t;
	int e = bench_host_ctx(&ctx, &t);
	if (e)
		return e;
	size_t len = o->quick ? (64u << 20) : (1u << 30), ps = (size_t)sysconf(_SC_PAGESIZE);
	size_t npages = len / ps;
	char *p = NULL;
	int n = 0;
	struct coh_extent *ext = calloc(npages / 2 + 8, sizeof(*ext));
	if (!t || !ext) {
		e = -ENOMEM;
		goto out;
	}
	if (o->progress)
		o->progress("query: populating 4 KiB pages");
	if ((e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE), (void **)&p)))
		goto out;

	if (o->progress)
		o->progress("query: move_pages page by page");
	double mp1 = raw_move_pages(p, npages, ps, 1);
	double mpb = raw_move_pages(p, npages, ps, 4096);
	double pm = raw_pagemap(p, npages, ps);
	if (o->progress)
		o->progress("query: coh_query");
	double best = 0;
	int next = 0;
	for (int round = 0; round < 5; round++) {
		double t0 = bench_now_ns();
		next = coh_query(ctx, p, len, ext, npages / 2 + 8, sizeof(struct coh_extent));
		double rate = (double)npages / (bench_now_ns() - t0) * 1e3;
		if (next < 0) {
			e = next;
			goto out;
		}
		best = rate > best ? rate : best;
	}
	char name[96];
	snprintf(name, sizeof(name), "coh_query 1 GiB resident (%d extent%s)", next, next == 1 ? "" : "s");
	if (o->quick)
		snprintf(name, sizeof(name), "coh_query 64 MiB resident (%d extent%s)", next, next == 1 ? "" : "s");
	if (n < max) {
		bench_set(&out[n++], "query", name, best, "Mpages/s", "move_pages x1", mp1, ">= 25 and >= 10x",
			  best >= 25 && best / mp1 >= 10);
	}
	if (n < max)
		bench_set(&out[n++], "query", "  reference: move_pages batched 4096", mpb, "Mpages/s", NULL, 0, "-", true);
	if (n < max)
		bench_set(&out[n++], "query", "  reference: pread /proc/self/pagemap", pm, "Mpages/s", NULL, 0, "-", true);

	/* Worst case for extents: every other page released, so nothing merges. */
	for (size_t i = 0; i < npages; i += 2)
		madvise(p + i * ps, ps, MADV_DONTNEED);
	best = 0;
	for (int round = 0; round < 3; round++) {
		double t0 = bench_now_ns();
		next = coh_query(ctx, p, len, ext, npages / 2 + 8, sizeof(struct coh_extent));
		double rate = (double)npages / (bench_now_ns() - t0) * 1e3;
		best = rate > best ? rate : best;
	}
	double mp1s = raw_move_pages(p, npages, ps, 1);
	snprintf(name, sizeof(name), "coh_query, every other page populated (%d ext.)", next);
	if (n < max)
		bench_set(&out[n++], "query", name, best, "Mpages/s", "move_pages x1", mp1s, ">= 10x move_pages",
			  best / mp1s >= 10);
	if (p) {
		coh_free(ctx, p);
		p = NULL;
	}
	int k = bench_query_multinode(ctx, o, out + n, max - n);
	if (k < 0)
		e = k;
	else
		n += k;
out:
	if (p)
		coh_free(ctx, p);
	free(ext);
	coh_context_unref(ctx);
	return e ? e : n;
}
