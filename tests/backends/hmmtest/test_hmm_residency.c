/* SPDX-License-Identifier: MIT */
/*
 * The generic residency query (pagemap, move_pages) checked page by page
 * against the authority: the test_hmm driver's own snapshot.  For each
 * emulated device, a buffer is migrated in, then some pages are touched by
 * the CPU (device-private pages fault back, coherent ones stay) and some are
 * moved to system memory; every page's kind from coh_query must agree with
 * the snapshot.  Then partial migrations between the devices: the query must
 * name the device of every page (one run per device, with small cursors).
 * Skips (77) where no /dev/hmm_dmirror device exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../backends/hmmtest/hmm_uapi.h"
#include "coherent.h"

static int passed, failed;

static int kind_at(coh_context *ctx, const char *p)
{
	struct coh_extent e[2];
	int n = coh_query(ctx, p, 1, e, 2, sizeof(struct coh_extent));
	return n == 1 ? e[0].kind : -1;
}

static int expected_kind(unsigned char snap)
{
	switch (snap & 0xf0) {
	case HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL:
	case HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE:
		return COH_MEM_DEVICE_PRIVATE;
	case HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL:
	case HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE:
		return COH_MEM_DEVICE_COHERENT;
	default:
		return snap == HMM_DMIRROR_PROT_NONE || (snap & HMM_DMIRROR_PROT_ZERO) ? COH_MEM_NOT_POPULATED
										     : COH_MEM_SYSTEM;
	}
}

static void one_device(coh_context *ctx, coh_target *t, int minor)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), np = 32, len = np * ps;
	char *p;
	int e = coh_alloc(t, len, NULL, (void **)&p);
	if (e) {
		printf("FAIL %s: alloc: %s\n", coh_target_name(t), coh_strerror(e));
		failed++;
		return;
	}
	memset(p, 5, len);   /* private: faults everything back; coherent: stays */
	coh_migrate(ctx, p, len, t, 0);
	/* mixed states: pages 8-15 touched by the CPU, 16-23 moved to node 0 */
	for (size_t i = 8; i < 16; i++)
		p[i * ps] = 6;
	coh_target *host = coh_target_by_node(ctx, 0);
	if (host)
		coh_migrate(ctx, p + 16 * ps, 8 * ps, host, 0);
	char dev[32];
	snprintf(dev, sizeof(dev), "/dev/hmm_dmirror%d", minor);
	int fd = open(dev, O_RDWR | O_CLOEXEC);   /* kept open until exit: closing evicts */
	unsigned char snap[32];
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .ptr = (uintptr_t)snap, .npages = np };
	if (fd < 0 || ioctl(fd, HMM_DMIRROR_SNAPSHOT, &cmd) < 0) {
		printf("FAIL %s: snapshot: %s\n", coh_target_name(t), strerror(errno));
		failed++;
		return;
	}
	int agree = 0;
	for (size_t i = 0; i < np; i++) {
		int want = expected_kind(snap[i]), got = kind_at(ctx, p + i * ps);
		if (want == got) {
			agree++;
		} else {
			printf("  %s page %zu: snapshot %#x (%s), query %s\n", coh_target_name(t), i, snap[i],
			       coh_mem_kind_name(want), coh_mem_kind_name(got));
		}
	}
	if (agree == (int)np) {
		passed++;
		printf("PASS %s: query agrees with the driver's snapshot on all %zu pages\n", coh_target_name(t), np);
	} else {
		failed++;
		printf("FAIL %s: query agrees on %d of %zu pages\n", coh_target_name(t), agree, np);
	}
	for (size_t i = 0; i < len; i++)
		if (p[i] != (i / ps >= 8 && i / ps < 16 && i % ps == 0 ? 6 : 5)) {
			printf("FAIL %s: data changed at %zu\n", coh_target_name(t), i);
			failed++;
			break;
		}
	coh_free(ctx, p);
}

/* One run the query must report: pages [first, first + count) of kind on dev
 * (a dmirror minor, or -1 for system memory on node 0). */
struct run {
	int first, count, kind, dev;
};

static coh_target *dmirror_target(coh_context *ctx, int minor)
{
	char name[32];
	snprintf(name, sizeof(name), "hmmtest:dmirror%d", minor);
	return coh_target_find(ctx, name);
}

/* The residency of [p, p+np pages) must be exactly the runs, with cursor
 * queries of at most max extents each (the backend splits a kernel extent
 * of device pages by the device that holds each page). */
static bool runs_are(coh_context *ctx, const char *what, const char *p, size_t ps, const struct run *want, int nwant,
		     size_t max)
{
	struct coh_extent x[16];
	uintptr_t a = (uintptr_t)p, end = a + (size_t)(want[nwant - 1].first + want[nwant - 1].count) * ps;
	int k = 0;
	while (a < end) {
		int n = coh_query(ctx, (const void *)a, end - a, x, max, sizeof(x[0]));
		if (n < 1) {
			printf("  %s: query at page %zu: %s\n", what, (a - (uintptr_t)p) / ps, coh_strerror(n));
			return false;
		}
		for (int i = 0; i < n; i++, k++) {
			size_t first = (x[i].start - (uintptr_t)p) / ps, count = x[i].length / ps;
			const char *got = x[i].target ? coh_target_name(x[i].target) : "-";
			if (k >= nwant) {
				printf("  %s: extra run at page %zu (%zu pages, %s on %s)\n", what, first, count,
				       coh_mem_kind_name(x[i].kind), got);
				return false;
			}
			const struct run *w = &want[k];
			coh_target *wt = w->dev >= 0 ? dmirror_target(ctx, w->dev) : coh_target_by_node(ctx, 0);
			if (x[i].start != a || first != (size_t)w->first || count != (size_t)w->count || x[i].kind != w->kind ||
			    x[i].target != wt) {
				printf("  %s: run %d is pages %zu+%zu %s on %s, want %d+%d %s on %s\n", what, k, first, count,
				       coh_mem_kind_name(x[i].kind), got, w->first, w->count, coh_mem_kind_name(w->kind),
				       wt ? coh_target_name(wt) : "-");
				return false;
			}
			a += x[i].length;
		}
	}
	if (k != nwant) {
		printf("  %s: %d runs, want %d\n", what, k, nwant);
		return false;
	}
	return true;
}

/* Partial migrations leave one kernel extent of device pages spanning pages
 * of several mirror devices; every page must be named after its own.  8
 * pages on dmirror `base`, then moves[] (page ranges to a device, -1: node 0). */
static void partial_labels(coh_context *ctx, int base, const int (*moves)[3], int nmoves, const struct run *want,
			   int nwant)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), len = 8 * ps;
	coh_target *t = dmirror_target(ctx, base);
	char what[64];
	snprintf(what, sizeof(what), "partial labels from dmirror%d", base);
	for (int i = 0; i < nmoves; i++)
		if (moves[i][2] >= 0 ? !dmirror_target(ctx, moves[i][2]) : !coh_target_by_node(ctx, 0)) {
			printf("SKIP %s: a destination is missing\n", what);
			return;
		}
	char *p;
	int e = coh_alloc(t, len, NULL, (void **)&p);
	if (e) {
		printf("FAIL %s: alloc: %s\n", what, coh_strerror(e));
		failed++;
		return;
	}
	for (int i = 0; i < nmoves && !e; i++) {
		coh_target *d = moves[i][2] >= 0 ? dmirror_target(ctx, moves[i][2]) : coh_target_by_node(ctx, 0);
		e = coh_migrate(ctx, p + (size_t)moves[i][0] * ps, (size_t)moves[i][1] * ps, d, 0);
		if (e)
			printf("FAIL %s: moving pages %d+%d to %s: %s\n", what, moves[i][0], moves[i][1], coh_target_name(d),
			       coh_strerror(e));
	}
	bool ok = !e;
	/* one query for all, then cursors of 2 and of 1 extent */
	const size_t maxes[3] = { 16, 2, 1 };
	for (int m = 0; m < 3 && ok; m++)
		ok = runs_are(ctx, what, p, ps, want, nwant, maxes[m]);
	if (ok) {
		passed++;
		printf("PASS %s: %d runs, each page on its own device (queries of 16, 2 and 1 extents)\n", what, nwant);
	} else {
		failed++;
		if (!e)
			printf("FAIL %s: the query does not name each page's device\n", what);
	}
	coh_free(ctx, p);
}

static void partial_all(coh_context *ctx)
{
	const int P = COH_MEM_DEVICE_PRIVATE, C = COH_MEM_DEVICE_COHERENT, S = COH_MEM_SYSTEM;
	/* device-private base: pages 2-3 to the other private device, 5 to a
	 * coherent one, 7 to system memory */
	const int m0[][3] = { { 2, 2, 1 }, { 5, 1, 2 }, { 7, 1, -1 } };
	const struct run w0[] = { { 0, 2, P, 0 }, { 2, 2, P, 1 }, { 4, 1, P, 0 }, { 5, 1, C, 2 }, { 6, 1, P, 0 },
				  { 7, 1, S, -1 } };
	/* device-coherent base: pages 1-2 to the other coherent device, 4 to a
	 * private one, 6 to the other coherent device too */
	const int m2[][3] = { { 1, 2, 3 }, { 4, 1, 0 }, { 6, 1, 3 } };
	const struct run w2[] = { { 0, 1, C, 2 }, { 1, 2, C, 3 }, { 3, 1, C, 2 }, { 4, 1, P, 0 }, { 5, 1, C, 2 },
				  { 6, 1, C, 3 }, { 7, 1, C, 2 } };
	if (!dmirror_target(ctx, 0) || !dmirror_target(ctx, 1) || !dmirror_target(ctx, 2) || !dmirror_target(ctx, 3)) {
		printf("SKIP partial labels: needs dmirror0-3\n");
		return;
	}
	partial_labels(ctx, 0, m0, 3, w0, 6);
	partial_labels(ctx, 2, m2, 3, w2, 7);
}

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	int seen = 0;
	for (int minor = 0; minor < 4; minor++) {
		char name[32];
		snprintf(name, sizeof(name), "hmmtest:dmirror%d", minor);
		coh_target *t = coh_target_find(ctx, name);
		if (!t)
			continue;
		seen++;
		one_device(ctx, t, minor);
	}
	if (seen)
		partial_all(ctx);
	coh_context_unref(ctx);
	if (!seen) {
		printf("test_hmm_residency: no test_hmm device here (skip)\n");
		return 77;
	}
	printf("test_hmm_residency: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
