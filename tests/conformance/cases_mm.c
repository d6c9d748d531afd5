/* SPDX-License-Identifier: MIT */
/*
 * Conformance: the mm group.  Ranges in every shape (parts of an allocation,
 * ranges across two, zero and overflowing lengths), many small and huge
 * allocations, capacity, adoption of part of a mapping, and the application
 * changing the mappings behind the library's back (munmap, mprotect,
 * MADV_DONTNEED, mremap).  Data is checked from the CPU after every step and,
 * where the target has COH_CAP_DEVICE_ACCESS, from the device too.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE   /* mremap */
#endif
#include <sys/mman.h>

#include "suite.h"

#define MIB (1024u * 1024u)

/* The unit a target's allocations split at: device-dax maps and migrates
 * whole chunks of the device's alignment (2 MiB on the usual devices,
 * backends/cxl/README.md), every other target single pages. */
static size_t granule(const coh_target *t)
{
	return coh_target_kind(t) == COH_KIND_DEVICE_DAX ? 2 * MIB : ps;
}

/* The case applies only where the target allocates. */
static bool can_alloc(coh_target *t, const char *name)
{
	if (coh_target_caps(t) & COH_CAP_ALLOC)
		return true;
	report(t, name, SKIP, "no alloc capability");
	return false;
}

/* same() for the part of a fill(base, ., seed) that starts at byte off. */
static bool same_at(const unsigned char *base, size_t off, size_t len, unsigned seed)
{
	return same(base + off, len, seed + (unsigned)(off * 31));
}

static bool all_zero(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return false;
	return true;
}

/* Where the target's device reaches memory: its block sums of [p, p+len)
 * must be the CPU's.  NULL when they agree (or the device cannot reach the
 * memory there: -EFAULT, documented), else what went wrong.  *checks counts
 * the ranges the device did read. */
static const char *dev_agrees(coh_target *t, void *p, size_t len, int *checks)
{
	static char why[128];
	if (!(coh_target_caps(t) & COH_CAP_DEVICE_ACCESS) || len < COH_SUM_BLOCK)
		return NULL;
	size_t nb = len / COH_SUM_BLOCK;
	uint64_t *sums = calloc(nb, sizeof(*sums));
	if (!sums)
		return "out of memory";
	int e = coh_device_access(ctx, t, p, nb * COH_SUM_BLOCK, COH_DEVICE_SUM, 0, sums, nb);
	const char *r = NULL;
	if (e && e != -EFAULT) {
		snprintf(why, sizeof(why), "device read: %s", coh_strerror(e));
		r = why;
	}
	for (size_t b = 0; !e && b < nb; b++)
		if (sums[b] != coh_block_sum((const unsigned char *)p + b * COH_SUM_BLOCK)) {
			snprintf(why, sizeof(why), "the device read block %zu unlike the CPU", b);
			r = why;
			break;
		}
	if (!e)
		(*checks)++;
	free(sums);
	return r;
}

/* The residency of [p, p+len) (page aligned) page by page: the extents of
 * cursor queries must tile the range exactly.  0, -ERANGE when they do not,
 * or the query's error. */
static int page_view(const void *p, size_t len, int *kind, coh_target **tg)
{
	struct coh_extent x[16];
	uintptr_t a = (uintptr_t)p, end = a + len;
	while (a < end) {
		int n = coh_query(ctx, (const void *)a, end - a, x, 16, sizeof(x[0]));
		if (n < 1)
			return n < 0 ? n : -EIO;
		for (int i = 0; i < n; i++) {
			if (x[i].start != a || !x[i].length || x[i].length % ps || x[i].length > end - a)
				return -ERANGE;
			for (size_t k = 0; k < x[i].length / ps; k++) {
				size_t pg = (a - (uintptr_t)p) / ps + k;
				kind[pg] = x[i].kind;
				tg[pg] = x[i].target;
			}
			a += x[i].length;
		}
	}
	return 0;
}

/* A page view with its storage. */
struct view {
	size_t np;
	int *kind;
	coh_target **tg;
};

static int view_take(struct view *v, const void *p, size_t len)
{
	if (!v->kind) {
		v->np = len / ps;
		v->kind = calloc(v->np, sizeof(*v->kind));
		v->tg = calloc(v->np, sizeof(*v->tg));
		if (!v->kind || !v->tg)
			return -ENOMEM;
	}
	return page_view(p, len, v->kind, v->tg);
}

static void view_free(struct view *v)
{
	free(v->kind);
	free(v->tg);
	v->kind = NULL;
	v->tg = NULL;
}

static bool view_same(const struct view *a, const struct view *b)
{
	return !memcmp(a->kind, b->kind, a->np * sizeof(*a->kind)) && !memcmp(a->tg, b->tg, a->np * sizeof(*a->tg));
}

/* A query of [a, a+len) must cover exactly its pages: from a rounded down to
 * a page to a+len rounded up, extents contiguous.  0 or what went wrong. */
static const char *covers(const void *addr, size_t len)
{
	static char why[128];
	struct coh_extent x[4];   /* small on purpose: the cursor is used */
	uintptr_t a = (uintptr_t)addr & ~(uintptr_t)(ps - 1);
	uintptr_t end = ((uintptr_t)addr + len + ps - 1) & ~(uintptr_t)(ps - 1);
	uintptr_t at = a;
	const void *from = addr;
	size_t left = len;
	while (at < end) {
		int n = coh_query(ctx, from, left, x, 4, sizeof(x[0]));
		if (n < 1) {
			snprintf(why, sizeof(why), "query at %#lx: %s", (unsigned long)at, coh_strerror(n));
			return why;
		}
		for (int i = 0; i < n; i++) {
			if (x[i].start != at || !x[i].length || x[i].length > end - at) {
				snprintf(why, sizeof(why), "extent %#lx+%zu where %#lx..%#lx was asked",
					 (unsigned long)x[i].start, x[i].length, (unsigned long)at, (unsigned long)end);
				return why;
			}
			at += x[i].length;
		}
		left = (size_t)((uintptr_t)addr + len - at);
		from = (const void *)at;
		if ((uintptr_t)addr + len <= at)
			break;
	}
	if (at != end) {
		snprintf(why, sizeof(why), "extents end at %#lx, not %#lx", (unsigned long)at, (unsigned long)end);
		return why;
	}
	return NULL;
}

/* The first other target with COH_CAP_MIGRATE that takes [p, p+len), moved
 * there (0), or NULL when none does (the data checked intact after each try). */
static coh_target *move_elsewhere(coh_target *t, void *p, size_t len, unsigned seed, bool *intact)
{
	coh_target *u;
	*intact = true;
	coh_target_foreach(ctx, u) {
		if (u == t || !(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		int e = coh_migrate(ctx, p, len, u, 0);
		if (!same(p, len, seed))
			*intact = false;
		if (!e)
			return u;
	}
	return NULL;
}

/* ---- 1. partial-migrate ---- */

static void check_partial_migrate(coh_target *t)
{
	const char *name = "partial-migrate";
	unsigned char *p = NULL;
	struct view before = { 0 }, after = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t g = granule(t), len = 8 * g;
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 11);
	int dev = 0, moved = 0;
	/* Every page is checked by its target: the moved ones on the
	 * destination, the others where they were, device pages included (a
	 * kernel extent of device memory may span pages of several devices: the
	 * backend names each run). */
	const char *bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	/* the middle, then the first and the last granule */
	const size_t part[3][2] = { { 2 * g, 4 * g }, { 0, g }, { 7 * g, g } };
	coh_target *u;
	coh_target_foreach(ctx, u) {
		if (u == t || !(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		bool took = true;
		for (int k = 0; k < 3 && took; k++) {
			size_t off = part[k][0], n = part[k][1];
			CHECK(view_take(&before, p, len) == 0, "query before the move");
			e = coh_migrate(ctx, p + off, n, u, 0);
			if (e) {
				CHECK(same(p, len, 11), "data changed by failing to move [%zu, %zu) to %s (%s)", off,
				      off + n, coh_target_name(u), coh_strerror(e));
				if (e == -EOPNOTSUPP && k == 0) {
					took = false;   /* this memory cannot go there */
					break;
				}
				CHECK(e == 0, "moving [%zu, %zu) to %s: %s", off, off + n, coh_target_name(u),
				      coh_strerror(e));
			}
			/* the query before the CPU reads again: its reads may move pages home */
			e = view_take(&after, p, len);
			CHECK(e == 0, "query after the move: %s", coh_strerror(e));
			for (size_t i = 0; i < after.np; i++) {
				bool in = i * ps >= off && i * ps < off + n;
				if (in)
					CHECK(after.tg[i] == u, "page %zu, moved to %s, is on %s", i, coh_target_name(u),
					      after.tg[i] ? coh_target_name(after.tg[i]) : "-");
				else
					CHECK(after.kind[i] == before.kind[i] && after.tg[i] == before.tg[i],
					      "page %zu outside the moved part changed: %s on %s, was %s on %s", i,
					      coh_mem_kind_name(after.kind[i]), after.tg[i] ? coh_target_name(after.tg[i]) : "-",
					      coh_mem_kind_name(before.kind[i]), before.tg[i] ? coh_target_name(before.tg[i]) : "-");
			}
			CHECK(same(p, len, 11), "data after moving [%zu, %zu) to %s", off, off + n, coh_target_name(u));
			bad = dev_agrees(t, p, len, &dev);
			CHECK(!bad, "after moving part to %s: %s", coh_target_name(u), bad);
		}
		if (!took)
			continue;
		if (coh_target_caps(t) & COH_CAP_MIGRATE) {
			e = coh_migrate(ctx, p, len, t, 0);
			CHECK(e == 0 && same(p, len, 11), "back to %s: %s", coh_target_name(t), coh_strerror(e));
		}
		moved++;
	}
	if (moved)
		report(t, name, PASS, "%d destination(s), 3 parts each, %d device reads", moved, dev);
	else
		report(t, name, SKIP, "no other target takes this memory");
out:
	view_free(&before);
	view_free(&after);
	if (p)
		coh_free(ctx, p);
}

/* ---- 2. partial-query ---- */

static void check_partial_query(coh_target *t)
{
	const char *name = "partial-query";
	unsigned char *p = NULL;
	struct view whole = { 0 }, sub = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t len = 16 * ps;
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len / 2, 12);   /* populated and untouched halves: two kinds on host memory */
	CHECK(view_take(&whole, p, len) == 0, "query of the whole allocation");
	/* (start, length) in bytes from p: aligned and not, inside and across the end */
	const size_t r[][2] = {
		{ 3 * ps, 2 * ps }, { ps + 100, 3 * ps - 200 }, { len - ps, ps }, { 0, len - ps },
		{ 7 * ps + ps / 2, ps }, { ps - 1, 2 }, { len - 2 * ps, 4 * ps }, { 5 * ps, 1 },
	};
	for (size_t k = 0; k < sizeof(r) / sizeof(r[0]); k++) {
		const char *bad = covers(p + r[k][0], r[k][1]);
		CHECK(!bad, "query of +%zu len %zu: %s", r[k][0], r[k][1], bad);
		/* pages inside the allocation are described as the whole query does */
		size_t a = r[k][0] / ps * ps, end = (r[k][0] + r[k][1] + ps - 1) / ps * ps;
		if (end > len)
			end = len;
		view_free(&sub);
		e = view_take(&sub, p + a, end - a);
		CHECK(e == 0, "page view of +%zu: %s", a, coh_strerror(e));
		for (size_t i = 0; i < sub.np; i++)
			CHECK(sub.kind[i] == whole.kind[a / ps + i] && sub.tg[i] == whole.tg[a / ps + i],
			      "page %zu: %s in a query from +%zu, %s in the whole one", a / ps + i,
			      coh_mem_kind_name(sub.kind[i]), a, coh_mem_kind_name(whole.kind[a / ps + i]));
	}
	CHECK(same(p, len / 2, 12), "data changed by the queries");
	/* the device reads written pages only: on the 6.1 test_hmm driver a
	 * device read of device-private pages the CPU never wrote (made from
	 * holes at allocation) oopses the kernel in dmirror_do_read */
	fill(p, len, 12);
	int dev = 0;
	const char *bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	report(t, name, PASS, "%zu sub-ranges", sizeof(r) / sizeof(r[0]));
out:
	view_free(&whole);
	view_free(&sub);
	if (p)
		coh_free(ctx, p);
}

/* ---- 3. across-allocs ---- */

static void check_across_allocs(coh_target *t)
{
	const char *name = "across-allocs";
	unsigned char *a = NULL, *b = NULL;
	struct view va = { 0 }, vb = { 0 }, va2 = { 0 }, vb2 = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t g = granule(t), len = 4 * g;
	int e = alloc_plain(t, len, (void **)&a);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	e = alloc_plain(t, len, (void **)&b);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(a, len, 13);
	fill(b, len, 14);
	unsigned char *lo = a < b ? a : b, *hi = a < b ? b : a;
	CHECK(view_take(&va, a, len) == 0 && view_take(&vb, b, len) == 0, "queries of the two allocations");
	/* from the last granule of the lower one into the first of the higher */
	unsigned char *from = lo + len - g;
	size_t span = (size_t)(hi - from) + g;
	coh_target *u, *dst = NULL;
	coh_target_foreach(ctx, u)
		if (!dst && (coh_target_caps(u) & COH_CAP_MIGRATE))
			dst = u;
	int tried = 0;
	coh_target_foreach(ctx, u) {
		if (!(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		e = coh_migrate(ctx, from, span, u, 0);
		CHECK(e == -EINVAL, "a migration to %s across two allocations: %s", coh_target_name(u), coh_strerror(e));
		e = coh_migrate(ctx, lo, (size_t)(hi - lo) + len, u, 0);
		CHECK(e == -EINVAL, "a migration to %s of both whole allocations: %s", coh_target_name(u), coh_strerror(e));
		tried++;
	}
	CHECK(view_take(&va2, a, len) == 0 && view_take(&vb2, b, len) == 0, "queries after");
	CHECK(view_same(&va, &va2) && view_same(&vb, &vb2), "a refused migration moved pages");
	CHECK(same(a, len, 13) && same(b, len, 14), "a refused migration changed data");
	/* a query across both, and whatever lies between them */
	const char *bad = covers(from, span);
	CHECK(!bad, "query across both: %s", bad);
	bad = covers(lo, (size_t)(hi - lo) + len);
	CHECK(!bad, "query of both whole: %s", bad);
	int dev = 0;
	bad = dev_agrees(t, a, len, &dev);
	CHECK(!bad, "%s", bad);
	bad = dev_agrees(t, b, len, &dev);
	CHECK(!bad, "%s", bad);
	report(t, name, PASS, "%d destination(s) refused; allocations %s (gap %zu bytes)", tried,
	       hi == lo + len ? "adjacent" : "apart", (size_t)(hi - lo) - len);
out:
	view_free(&va);
	view_free(&vb);
	view_free(&va2);
	view_free(&vb2);
	if (a)
		coh_free(ctx, a);
	if (b)
		coh_free(ctx, b);
}

/* ---- 4. many-small ---- */

static int cmp_ptr(const void *x, const void *y)
{
	uintptr_t a = (uintptr_t) * (void *const *)x, b = (uintptr_t) * (void *const *)y;
	return a < b ? -1 : a > b;
}

static void check_many_small(coh_target *t)
{
	const char *name = "many-small";
	unsigned char **p = NULL;
	void **sorted = NULL;
	size_t n = 256, made = 0;
	if (!can_alloc(t, name))
		return;
	/* a granule each: leave at least half the target free */
	uint64_t fr = 0;
	if (granule(t) > ps && coh_target_capacity(t, NULL, &fr) == 0 && fr / granule(t) / 2 < n)
		n = fr / granule(t) / 2;
	if (n < 8) {
		report(t, name, SKIP, "room for %zu allocations only", n);
		return;
	}
	int c0 = coh_alloc_count(ctx);
	p = calloc(n, sizeof(*p));
	sorted = calloc(n, sizeof(*sorted));
	CHECK(p && sorted, "out of memory");
	for (; made < n; made++) {
		int e = alloc_plain(t, ps, (void **)&p[made]);
		CHECK(e == 0, "allocation %zu: %s", made, coh_strerror(e));
		fill(p[made], ps, (unsigned)made);
	}
	CHECK(coh_alloc_count(ctx) == c0 + (int)n, "count %d after %zu allocations, was %d", coh_alloc_count(ctx), n, c0);
	memcpy(sorted, p, n * sizeof(*p));
	qsort(sorted, n, sizeof(*sorted), cmp_ptr);
	for (size_t i = 1; i < n; i++)
		CHECK((uintptr_t)sorted[i - 1] + ps <= (uintptr_t)sorted[i], "allocations at %p and %p overlap",
		      sorted[i - 1], sorted[i]);
	for (size_t i = 0; i < n; i++) {
		struct coh_alloc_info info = { .size = sizeof(info) };
		int e = coh_lookup(ctx, p[i] + ps - 1, &info);
		CHECK(e == 0 && info.base == p[i] && info.length == ps && info.target == t && !info.adopted,
		      "lookup of allocation %zu: %s", i, coh_strerror(e));
	}
	size_t moved = 0;
	int dev = 0;
	coh_target *dst = NULL;
	for (size_t i = 0; i < n; i++) {
		bool intact;
		if (i == 0)
			dst = move_elsewhere(t, p[i], ps, 0, &intact);
		else if (dst) {
			int e = coh_migrate(ctx, p[i], ps, dst, 0);
			CHECK(e == 0, "allocation %zu to %s: %s", i, coh_target_name(dst), coh_strerror(e));
			intact = same(p[i], ps, (unsigned)i);
		} else
			intact = true;
		CHECK(intact, "allocation %zu changed by a migration", i);
		moved += dst != NULL;
		CHECK(same(p[i], ps, (unsigned)i), "allocation %zu changed", i);
		const char *bad = dev_agrees(t, p[i], ps, &dev);
		CHECK(!bad, "allocation %zu: %s", i, bad);
	}
	for (size_t i = 0; i < n; i++) {
		int e = coh_free(ctx, p[i]);
		CHECK(e == 0, "free of allocation %zu: %s", i, coh_strerror(e));
		p[i] = NULL;
	}
	made = 0;
	CHECK(coh_alloc_count(ctx) == c0, "count %d after the frees, was %d", coh_alloc_count(ctx), c0);
	struct coh_alloc_info info = { .size = sizeof(info) };
	for (size_t i = 0; i < n; i++)
		CHECK(coh_lookup(ctx, sorted[i], &info) == -ENOENT, "a freed allocation is still found");
	report(t, name, PASS, "%zu allocations, %zu moved%s%s, %d device reads", n, moved, dst ? " to " : "",
	       dst ? coh_target_name(dst) : "", dev);
out:
	for (size_t i = 0; p && i < made; i++)
		if (p[i])
			coh_free(ctx, p[i]);
	free(p);
	free(sorted);
}

/* ---- 5. huge-pages ---- */

static void check_huge_pages(coh_target *t)
{
	const char *name = "huge-pages";
	unsigned char *p = NULL;
	struct view v = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t len = 4 * MIB;
	void *q;
	if (!(coh_target_caps(t) & COH_CAP_HUGE_PAGES)) {
		int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE, .fork_policy = first_policy(t)), &q);
		if (e == 0)
			coh_free(ctx, q);
		CHECK(e == -EOPNOTSUPP, "COH_ALLOC_HUGE without the capability: %s", coh_strerror(e));
		report(t, name, SKIP, "no huge-page capability (COH_ALLOC_HUGE refused)");
		return;
	}
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc(COH_ALLOC_HUGE): %s", coh_strerror(e));
	CHECK((uintptr_t)p % (2 * MIB) == 0, "a huge-page allocation at %p, not 2 MiB aligned", (void *)p);
	struct coh_alloc_info info = { .size = sizeof(info) };
	CHECK(coh_lookup(ctx, p, &info) == 0 && (info.flags & COH_ALLOC_HUGE), "lookup: flags %#x", info.flags);
	fill(p, len, 15);
	CHECK(view_take(&v, p, len) == 0, "query");
	size_t thp = 0;
	for (size_t i = 0; i < v.np; i++) {
		CHECK(kind_fits_written(coh_target_kind(t), v.kind[i]), "page %zu reported as %s", i,
		      coh_mem_kind_name(v.kind[i]));
		thp += v.kind[i] == COH_MEM_SYSTEM_THP;
	}
	int dev = 0;
	const char *bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	bool intact;
	coh_target *u = move_elsewhere(t, p, len, 15, &intact);
	CHECK(intact, "data changed by a migration");
	if (u && (coh_target_caps(t) & COH_CAP_MIGRATE)) {
		e = coh_migrate(ctx, p, len, t, 0);
		CHECK(e == 0, "back to %s: %s", coh_target_name(t), coh_strerror(e));
	}
	CHECK(same(p, len, 15), "data after the moves");
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	/* system-thp needs PAGEMAP_SCAN (6.7+) or readable frame numbers, and a granted huge page: counted, not required */
	report(t, name, PASS, "%zu of %zu pages system-thp; %s%s", thp, v.np, u ? "moved and back: " : "no other target takes it",
	       u ? coh_target_name(u) : "");
out:
	view_free(&v);
	if (p)
		coh_free(ctx, p);
}

/* ---- 6. app-munmap ---- */

/* The library documents nothing for memory the application unmaps itself
 * (coh_free(3), coh_query(3)): the kernel's facts are checked (the query
 * works on any memory and names the hole unmapped), and that the library
 * survives it with clean answers. */
static void check_app_munmap(coh_target *t)
{
	const char *name = "app-munmap";
	unsigned char *p = NULL;
	if (!can_alloc(t, name))
		return;
	size_t len = 8 * ps, hole = 3 * ps;
	int c0 = coh_alloc_count(ctx);
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 16);
	if (munmap(p + hole, ps)) {
		int err = errno;
		CHECK(same(p, len, 16), "a refused munmap changed data");
		report(t, name, SKIP, "the kernel refuses to unmap one page of this memory (%s)", strerror(err));
		goto out;
	}
	struct coh_extent x[2];
	int n = coh_query(ctx, p + hole, ps, x, 2, sizeof(x[0]));
	CHECK(n == 1 && x[0].kind == COH_MEM_UNMAPPED && x[0].start == (uintptr_t)(p + hole) && x[0].length == ps,
	      "the unmapped page is reported as %s (%d extents)", n > 0 ? coh_mem_kind_name(x[0].kind) : "-", n);
	const char *bad = covers(p, len);
	CHECK(!bad, "query over the hole: %s", bad);
	CHECK(same(p, hole, 16) && same_at(p, hole + ps, len - hole - ps, 16), "the pages around the hole changed");
	int dev = 0;
	bad = dev_agrees(t, p, hole, &dev);
	CHECK(!bad, "below the hole: %s", bad);
	bad = dev_agrees(t, p + hole + ps, len - hole - ps, &dev);
	CHECK(!bad, "above the hole: %s", bad);
	struct coh_alloc_info info = { .size = sizeof(info) };
	CHECK(coh_lookup(ctx, p + len - 1, &info) == 0 && info.base == p, "lookup of a page kept");
	int lk = coh_lookup(ctx, p + hole, &info);
	e = coh_free(ctx, p);
	CHECK(e == 0 || (e < 0 && e != -ENOENT), "coh_free after the application's munmap: %d", e);
	CHECK(coh_alloc_count(ctx) == c0 + (e != 0), "count %d after coh_free answered %s", coh_alloc_count(ctx),
	      coh_strerror(e));
	if (e == 0) {
		CHECK(coh_lookup(ctx, p, &info) == -ENOENT, "lookup after coh_free");
		p = NULL;
	}
	report(t, name, PASS, "hole reported unmapped; coh_free: %s; lookup of the hole before: %s",
	       e ? coh_strerror(e) : "0", lk ? coh_strerror(lk) : "found (the map does not follow munmap)");
out:
	if (p)
		coh_free(ctx, p);
}

/* ---- 7. app-mprotect ---- */

static void check_app_mprotect(coh_target *t)
{
	const char *name = "app-mprotect";
	unsigned char *p = NULL;
	size_t off = 0, plen = 0;
	if (!can_alloc(t, name))
		return;
	size_t g = granule(t), len = 8 * g;
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 17);   /* every page resident for the CPU before it becomes read-only */
	off = 2 * g;
	plen = 4 * g;
	CHECK(mprotect(p + off, plen, PROT_READ) == 0, "mprotect(PROT_READ): %s", strerror(errno));
	const char *bad = covers(p, len);
	CHECK(!bad, "query of a partly read-only allocation: %s", bad);
	CHECK(same(p, len, 17), "data read back");
	int dev = 0;
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	/* moves of the read-only part and of the whole: done, or refused, data intact */
	int ok = 0, refused = 0;
	coh_target *u;
	coh_target_foreach(ctx, u) {
		if (!(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		e = coh_migrate(ctx, p + off, plen, u, 0);
		CHECK(same(p, len, 17), "moving the read-only part to %s (%s) changed data", coh_target_name(u),
		      coh_strerror(e));
		e ? refused++ : ok++;
		e = coh_migrate(ctx, p, len, u, 0);
		CHECK(same(p, len, 17), "moving the whole to %s (%s) changed data", coh_target_name(u), coh_strerror(e));
		e ? refused++ : ok++;
		bad = covers(p, len);
		CHECK(!bad, "query after a move to %s: %s", coh_target_name(u), bad);
	}
	if (coh_target_caps(t) & COH_CAP_MIGRATE)
		coh_migrate(ctx, p, len, t, 0);
	CHECK(same(p, len, 17), "data after the moves");
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	CHECK(mprotect(p + off, plen, PROT_READ | PROT_WRITE) == 0, "mprotect back: %s", strerror(errno));
	plen = 0;
	fill(p, len, 18);
	CHECK(same(p, len, 18), "writes after the protection was restored");
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	report(t, name, PASS, "%d moves done, %d refused, data intact; %d device reads", ok, refused, dev);
out:
	if (p && plen)
		mprotect(p + off, plen, PROT_READ | PROT_WRITE);
	if (p)
		coh_free(ctx, p);
}

/* ---- 8. app-dontneed ---- */

/* MADV_DONTNEED drops private anonymous pages (the CPU then reads zeros) and
 * only unmaps shared ones (page cache, shmem, device-dax: the data stays).
 * Which the allocation is follows from its memory (docs/semantics.md): host
 * memory with SHARE is shmem (`file`), device-dax is a shared device mapping,
 * everything else of the host and hmmtest backends is private anonymous
 * memory.  Driver-managed memory (vendor-managed, SVM) is the driver's: no
 * rule is documented, so it must read either zeros or its data, page by page. */
enum { PRIVATE_ANON, SHARED_MAP, DRIVER };

static int dontneed_class(coh_target *t, int policy)
{
	switch (coh_target_kind(t)) {
	case COH_KIND_DEVICE_DAX:
		return SHARED_MAP;
	case COH_KIND_VENDOR_MANAGED:
		return DRIVER;
	default:
		if (!strcmp(coh_target_backend(t), "amd"))
			return DRIVER;
		return policy == COH_FORK_SHARE ? SHARED_MAP : PRIVATE_ANON;
	}
}

static void check_app_dontneed(coh_target *t)
{
	const char *name = "app-dontneed";
	unsigned char *p = NULL;
	struct view v = { 0 };
	if (!can_alloc(t, name))
		return;
	char done[160] = "";
	int policies[2] = { first_policy(t), COH_FORK_SHARE }, np = 1, dev = 0;
	if (policies[0] != COH_FORK_SHARE && (coh_target_caps(t) & COH_CAP_FORK_SHARE))
		np = 2;
	size_t g = granule(t), len = 8 * g, off = 2 * g, dlen = 3 * g;
	for (int k = 0; k < np; k++) {
		int cls = dontneed_class(t, policies[k]);
		int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policies[k]), (void **)&p);
		CHECK(e == 0, "coh_alloc (%s): %s", coh_fork_policy_name(policies[k]), coh_strerror(e));
		fill(p, len, 19);
		if (madvise(p + off, dlen, MADV_DONTNEED)) {
			int err = errno;
			CHECK(same(p, len, 19), "a refused MADV_DONTNEED changed data");
			snprintf(done + strlen(done), sizeof(done) - strlen(done), "%s: refused (%s); ",
				 coh_fork_policy_name(policies[k]), strerror(err));
			goto next;
		}
		/* the query first: reading brings pages back */
		view_free(&v);
		e = view_take(&v, p, len);
		CHECK(e == 0, "query: %s", coh_strerror(e));
		if (cls == PRIVATE_ANON)
			for (size_t i = off / ps; i < (off + dlen) / ps; i++)
				CHECK(v.kind[i] == COH_MEM_NOT_POPULATED, "a dropped page is %s",
				      coh_mem_kind_name(v.kind[i]));
		CHECK(same(p, off, 19) && same_at(p, off + dlen, len - off - dlen, 19), "the rest changed (%s)",
		      coh_fork_policy_name(policies[k]));
		size_t zero = 0, kept = 0;
		for (size_t i = off; i < off + dlen; i += ps) {
			if (all_zero(p + i, ps))
				zero++;
			else if (same_at(p, i, ps, 19))
				kept++;
		}
		size_t n = dlen / ps;
		if (cls == PRIVATE_ANON)
			CHECK(zero == n, "private memory: %zu of %zu dropped pages read zeros", zero, n);
		else if (cls == SHARED_MAP)
			CHECK(kept == n, "shared memory: %zu of %zu dropped pages kept their data", kept, n);
		else
			CHECK(zero + kept == n, "driver memory: %zu pages neither zero nor their data", n - zero - kept);
		const char *bad = dev_agrees(t, p, len, &dev);
		CHECK(!bad, "%s", bad);
		fill(p, len, 20);
		CHECK(same(p, len, 20), "writes after MADV_DONTNEED");
		snprintf(done + strlen(done), sizeof(done) - strlen(done), "%s: %s%s; ", coh_fork_policy_name(policies[k]),
			 zero == n ? "zeros" : kept == n ? "data kept" : "mixed",
			 cls == DRIVER ? " (driver memory: undocumented)" : "");
	next:
		coh_free(ctx, p);
		p = NULL;
	}
	report(t, name, PASS, "%s%d device reads", done, dev);
out:
	view_free(&v);
	if (p)
		coh_free(ctx, p);
}

/* ---- 9. app-mremap ---- */

/* Moving the library's memory with mremap is not documented (neither
 * allowed nor refused): the allocation is moved away, checked there (data,
 * query; the library's map still names the old address, which is now
 * unmapped), moved back and freed. */
static void check_app_mremap(coh_target *t)
{
	const char *name = "app-mremap";
	unsigned char *p = NULL, *res = MAP_FAILED, *away = NULL;
	size_t rlen = 0;
	if (!can_alloc(t, name))
		return;
	size_t g = granule(t), len = 4 * g;
	int c0 = coh_alloc_count(ctx);
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 21);   /* resident for the CPU: the kernel moves the pages with their tables */
	/* a free place aligned to 2 MiB (device-dax faults need its alignment) */
	rlen = len + 2 * MIB;
	res = mmap(NULL, rlen, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	CHECK(res != MAP_FAILED, "mmap: %s", strerror(errno));
	unsigned char *to = (unsigned char *)(((uintptr_t)res + 2 * MIB - 1) & ~(uintptr_t)(2 * MIB - 1));
	void *m = mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to);
	if (m == MAP_FAILED) {
		int err = errno;
		CHECK(same(p, len, 21), "a refused mremap changed data");
		report(t, name, SKIP, "the kernel refuses to move this memory (%s)", strerror(err));
		goto out;
	}
	away = m;
	if (!readable(away, len)) {
		/* The driver let the kernel move its mapping but disabled the new
		 * one (CUDA managed memory: measured on an H200, driver 580): the
		 * data is gone.  Move it back, see what answers, free it. */
		m = mremap(away, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p);
		bool back = m == (void *)p;
		if (back)
			away = NULL;
		bool back_ok = back && readable(p, len);
		/* the driver's free may refuse what it no longer maps: then the
		 * record stays (coh_free keeps what it could not release) */
		e = coh_free(ctx, p);
		if (e == 0)
			p = NULL;
		CHECK(e != 0 || coh_alloc_count(ctx) == c0, "count %d, was %d", coh_alloc_count(ctx), c0);
		report(t, name, SKIP, "the driver disables a mapping mremap moved: reads at the new address fault "
		       "(EFAULT); moved back: %s; coh_free: %s", back_ok ? "readable" : back ? "still faults" : "refused",
		       e ? coh_strerror(e) : "0");
		p = NULL;   /* not freed again: what the driver refused once it refuses again */
		goto out;
	}
	CHECK(same(away, len, 21), "data at the new address");
	const char *bad = covers(away, len);
	CHECK(!bad, "query at the new address: %s", bad);
	struct coh_extent x[2];
	int n = coh_query(ctx, p, len, x, 2, sizeof(x[0]));
	CHECK(n == 1 && x[0].kind == COH_MEM_UNMAPPED, "the old address is %s (%d extents)",
	      n > 0 ? coh_mem_kind_name(x[0].kind) : "-", n);
	struct coh_alloc_info info = { .size = sizeof(info) };
	int lk_old = coh_lookup(ctx, p, &info), lk_new = coh_lookup(ctx, away, &info);
	CHECK(lk_new == -ENOENT, "the new address is found as an allocation (%s)", coh_strerror(lk_new));
	/* back where the library has it */
	m = mremap(away, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, p);
	CHECK(m == p, "moving it back: %s", strerror(errno));
	away = NULL;
	CHECK(same(p, len, 21), "data after moving back");
	bad = covers(p, len);
	CHECK(!bad, "query after moving back: %s", bad);
	int dev = 0;
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	bool intact;
	coh_target *u = move_elsewhere(t, p, len, 21, &intact);
	CHECK(intact, "a migration after moving back changed data");
	e = coh_free(ctx, p);
	CHECK(e == 0, "coh_free: %s", coh_strerror(e));
	p = NULL;
	CHECK(coh_alloc_count(ctx) == c0, "count %d, was %d", coh_alloc_count(ctx), c0);
	report(t, name, PASS, "moved and back, data intact; lookup of the old address while away: %s%s%s",
	       lk_old ? coh_strerror(lk_old) : "found (the map does not follow mremap)", u ? "; then moved to " : "",
	       u ? coh_target_name(u) : "");
out:
	if (away)
		munmap(away, len);   /* could not go back: the library frees the old, empty place */
	if (res != MAP_FAILED)
		munmap(res, rlen);
	if (p)
		coh_free(ctx, p);
}

/* ---- 10. over-capacity ---- */

static bool near(uint64_t a, uint64_t b, uint64_t slack)
{
	return a > b ? a - b <= slack : b - a <= slack;
}

static void check_over_capacity(coh_target *t)
{
	const char *name = "over-capacity";
	void *q = NULL;
	if (!can_alloc(t, name))
		return;
	uint64_t total = 0, f0 = 0, f1 = 0;
	int ce = coh_target_capacity(t, &total, &f0);
	uint64_t slack = total / 8 > 256ull * MIB ? total / 8 : 256ull * MIB;
	int c0 = coh_alloc_count(ctx);
	const struct coh_alloc_props *pr = &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t));
	/* above SIZE_MAX/2: -EOVERFLOW (coh_alloc(3)) */
	int e = coh_alloc(t, SIZE_MAX / 2 + 1, pr, &q);
	CHECK(e == -EOVERFLOW, "SIZE_MAX/2+1 bytes: %s", coh_strerror(e));
	/* SIZE_MAX/2: larger than any address space: -ENOMEM.  Not asked of
	 * driver-managed memory: the CUDA driver double sizes per-page state
	 * with calloc first, which AddressSanitizer aborts on at this size. */
	bool huge_tried = coh_target_kind(t) != COH_KIND_VENDOR_MANAGED;
	if (huge_tried) {
		e = coh_alloc(t, SIZE_MAX / 2, pr, &q);
		if (e == 0)
			coh_free(ctx, q);
		CHECK(e == -ENOMEM, "SIZE_MAX/2 bytes: %s", coh_strerror(e));
	}
	CHECK(coh_alloc_count(ctx) == c0, "count %d after refusals, was %d", coh_alloc_count(ctx), c0);
	char twice[96] = "twice the capacity: not tried (capacity unknown)";
	if (ce == 0 && total) {
		int k = coh_target_kind(t);
		if (is_host_kind(k) || k == COH_KIND_DEVICE_DAX) {
			/* host memory is mapped MAP_NORESERVE (coh_alloc(3)) and placed at
			 * first touch; device-dax is a chunk map: neither touches memory */
			e = coh_alloc(t, (size_t)(2 * total), pr, &q);
			if (e == 0) {
				CHECK(is_host_kind(k), "device-dax took twice its capacity");
				CHECK(coh_alloc_count(ctx) == c0 + 1, "count after a lazy allocation");
				struct coh_extent x[1];
				int n = coh_query(ctx, q, ps, x, 1, sizeof(x[0]));
				CHECK(n == 1 && kind_fits_fresh(k, x[0].kind), "the untouched allocation is %s",
				      n > 0 ? coh_mem_kind_name(x[0].kind) : "-");
				e = coh_free(ctx, q);
				CHECK(e == 0, "coh_free: %s", coh_strerror(e));
				snprintf(twice, sizeof(twice), "twice the capacity: succeeded untouched (MAP_NORESERVE), freed");
			} else {
				CHECK(e == -ENOMEM, "twice the capacity: %s", coh_strerror(e));
				snprintf(twice, sizeof(twice), "twice the capacity: -ENOMEM");
			}
		} else
			snprintf(twice, sizeof(twice), "twice the capacity: not tried (the backend places pages at allocation)");
	}
	CHECK(coh_alloc_count(ctx) == c0, "count %d at the end, was %d", coh_alloc_count(ctx), c0);
	if (f0 && coh_target_capacity(t, NULL, &f1) == 0)
		CHECK(near(f0, f1, slack), "free bytes %llu before, %llu after", (unsigned long long)f0,
		      (unsigned long long)f1);
	report(t, name, PASS, "SIZE_MAX/2+1: -EOVERFLOW, SIZE_MAX/2: %s; %s", huge_tried ? "-ENOMEM" : "not tried", twice);
out:
	return;
}

/* ---- 11. adopt-partial ---- */

static void check_adopt_partial(coh_target *t)
{
	const char *name = "adopt-partial";
	unsigned char *m = MAP_FAILED;
	size_t len = 8 * ps;
	bool adopted = false;
	if (!(coh_target_caps(t) & COH_CAP_ADOPT)) {
		report(t, name, SKIP, "no adopt capability");
		return;
	}
	int c0 = coh_alloc_count(ctx);
	m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(m != MAP_FAILED, "mmap: %s", strerror(errno));
	fill(m, len, 22);
	int e = coh_adopt(t, m + 2 * ps, 4 * ps, NULL);   /* part of the mapping */
	if (e == -EOPNOTSUPP && coh_target_kind(t) == COH_KIND_VENDOR_MANAGED) {
		/* docs/semantics.md, nvidia: ordinary memory only with pageable memory access */
		CHECK(coh_alloc_count(ctx) == c0 && same(m, len, 22), "a refused adoption changed something");
		report(t, name, SKIP, "ordinary memory is adopted only where the GPU has pageable memory access "
				      "(refused: %s)", coh_strerror(e));
		goto out;
	}
	CHECK(e == 0, "coh_adopt of part of a mapping: %s", coh_strerror(e));
	adopted = true;
	struct coh_alloc_info info = { .size = sizeof(info) };
	CHECK(coh_lookup(ctx, m + 3 * ps, &info) == 0 && info.base == m + 2 * ps && info.length == 4 * ps &&
		      info.adopted == 1 && info.target == t,
	      "lookup inside the adopted part");
	CHECK(coh_lookup(ctx, m + ps, &info) == -ENOENT && coh_lookup(ctx, m + 6 * ps, &info) == -ENOENT,
	      "lookup outside the adopted part found something");
	CHECK(coh_alloc_count(ctx) == c0 + 1, "count after adopting");
	const char *bad = covers(m + 3 * ps, 2 * ps);
	CHECK(!bad, "query of part of the adopted range: %s", bad);
	/* overlapping adoptions: -EEXIST; free of an adopted range: -EINVAL */
	CHECK(coh_adopt(t, m + 4 * ps, 4 * ps, NULL) == -EEXIST, "overlapping adoption (tail) accepted");
	CHECK(coh_adopt(t, m, 3 * ps, NULL) == -EEXIST, "overlapping adoption (head) accepted");
	CHECK(coh_adopt(t, m, len, NULL) == -EEXIST, "adoption of a range around it accepted");
	CHECK(coh_free(ctx, m + 2 * ps) == -EINVAL, "coh_free of an adopted range");
	CHECK(coh_release(ctx, m + 3 * ps) == -ENOENT, "coh_release inside the range");
	int moved = 0, refused = 0;
	coh_target *u;
	coh_target_foreach(ctx, u) {
		if (!(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		e = coh_migrate(ctx, m + 3 * ps, 2 * ps, u, 0);
		CHECK(same(m, len, 22), "moving part of the adopted range to %s (%s) changed data", coh_target_name(u),
		      coh_strerror(e));
		CHECK(e == 0 || e == -EOPNOTSUPP || e == -EBUSY, "moving part to %s: %s", coh_target_name(u),
		      coh_strerror(e));
		e ? refused++ : moved++;
		CHECK(coh_migrate(ctx, m + ps, 2 * ps, u, 0) == -ENOENT, "a migration starting before the adopted range");
	}
	int dev = 0;
	bad = dev_agrees(t, m + 2 * ps, 4 * ps, &dev);
	CHECK(!bad, "%s", bad);
	e = coh_release(ctx, m + 2 * ps);
	CHECK(e == 0, "coh_release: %s", coh_strerror(e));
	adopted = false;
	CHECK(coh_lookup(ctx, m + 3 * ps, &info) == -ENOENT, "lookup after release");
	CHECK(coh_alloc_count(ctx) == c0, "count after release");
	CHECK(same(m, len, 22), "data after release");
	/* released: the same memory can be adopted again, whole this time */
	e = coh_adopt(t, m, len, NULL);
	CHECK(e == 0, "adopting again after release: %s", coh_strerror(e));
	CHECK(coh_release(ctx, m) == 0, "second release");
	CHECK(munmap(m, len) == 0, "munmap: %s", strerror(errno));
	m = MAP_FAILED;
	report(t, name, PASS, "part moved to %d target(s), %d refused; overlaps refused with -EEXIST", moved, refused);
out:
	if (adopted)
		coh_release(ctx, m + 2 * ps);
	if (m != MAP_FAILED) {
		coh_release(ctx, m);
		munmap(m, len);
	}
}

/* ---- 12. zero-length-and-edges ---- */

static void check_edges(coh_target *t)
{
	const char *name = "zero-length-and-edges";
	unsigned char *p = NULL;
	struct view v0 = { 0 }, v1 = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t len = 4 * ps;
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 23);
	int c0 = coh_alloc_count(ctx);
	CHECK(view_take(&v0, p, len) == 0, "query");
	struct coh_extent x[4];
	const size_t xs = sizeof(x[0]);
	uintptr_t top = UINTPTR_MAX & ~(uintptr_t)(ps - 1);   /* the last page */
	/* zero length: -EINVAL (coh_query(3), coh_migrate(3)) */
	CHECK((e = coh_query(ctx, p, 0, x, 4, xs)) == -EINVAL, "query of 0 bytes: %s", coh_strerror(e));
	CHECK((e = coh_migrate(ctx, p, 0, t, 0)) == -EINVAL, "migration of 0 bytes: %s", coh_strerror(e));
	/* migration off the page: -EINVAL; a query widens to whole pages */
	CHECK((e = coh_migrate(ctx, p, ps + 1, t, 0)) == -EINVAL, "migration of ps+1 bytes: %s", coh_strerror(e));
	CHECK((e = coh_migrate(ctx, p + 1, ps, t, 0)) == -EINVAL, "migration from p+1: %s", coh_strerror(e));
	CHECK((e = coh_migrate(ctx, p, ps / 2, t, 0)) == -EINVAL, "migration of half a page: %s", coh_strerror(e));
	e = coh_query(ctx, p + 1, ps - 2, x, 4, xs);
	CHECK(e == 1 && x[0].start == (uintptr_t)p && x[0].length == ps, "query inside one page: %d extents, %#lx+%zu", e,
	      e > 0 ? (unsigned long)x[0].start : 0ul, e > 0 ? x[0].length : 0);
	const char *bad = covers(p + ps - 1, 2);
	CHECK(!bad, "two bytes across a page boundary: %s", bad);
	/* wrapping ranges and lengths over SIZE_MAX/2: -EOVERFLOW */
	CHECK((e = coh_query(ctx, p, UINTPTR_MAX - (uintptr_t)p + 2, x, 4, xs)) == -EOVERFLOW, "wrapping query: %s",
	      coh_strerror(e));
	CHECK((e = coh_query(ctx, p, SIZE_MAX / 2 + 1, x, 4, xs)) == -EOVERFLOW, "query over SIZE_MAX/2: %s",
	      coh_strerror(e));
	CHECK((e = coh_query(ctx, (void *)top, ps - 1, x, 4, xs)) == -EOVERFLOW, "query in the last page: %s",
	      coh_strerror(e));
	CHECK((e = coh_query(ctx, (void *)(top - ps), ps, x, 4, xs)) == 1 && x[0].kind == COH_MEM_UNMAPPED,
	      "query of the page below the last: %s", e > 0 ? coh_mem_kind_name(x[0].kind) : coh_strerror(e));
	CHECK((e = coh_migrate(ctx, (void *)top, ps, t, 0)) == -EOVERFLOW, "migration wrapping at the top: %s",
	      coh_strerror(e));
	CHECK((e = coh_migrate(ctx, p, (SIZE_MAX / 2 + 1) & ~(size_t)(ps - 1), t, 0)) == -EOVERFLOW,
	      "migration over SIZE_MAX/2: %s", coh_strerror(e));
	CHECK((e = coh_migrate(ctx, p, UINTPTR_MAX - (uintptr_t)p + 1 + ps, t, 0)) == -EOVERFLOW,
	      "wrapping migration: %s", coh_strerror(e));
	/* and past the allocation's end by a page: -EINVAL, or -EOPNOTSUPP first without the capability */
	int want = coh_target_caps(t) & COH_CAP_MIGRATE ? -EINVAL : -EOPNOTSUPP;
	CHECK((e = coh_migrate(ctx, p + ps, len, t, 0)) == want, "one page past the end: %s", coh_strerror(e));
	/* nothing changed */
	CHECK(view_take(&v1, p, len) == 0 && view_same(&v0, &v1), "a refused call moved pages");
	CHECK(same(p, len, 23), "a refused call changed data");
	CHECK(coh_alloc_count(ctx) == c0, "count changed");
	int dev = 0;
	bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	report(t, name, PASS, NULL);
out:
	view_free(&v0);
	view_free(&v1);
	if (p)
		coh_free(ctx, p);
}

/* ---- 13. realloc-same-address ---- */

static void check_realloc(coh_target *t)
{
	const char *name = "realloc-same-address";
	unsigned char *p = NULL;
	struct view v = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t len = 4 * ps;
	int tag[2], reused = 0, rounds = 8, dev = 0;
	void *old = NULL;
	for (int r = 0; r < rounds; r++) {
		int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t),
							   .user_data = &tag[r & 1]),
				  (void **)&p);
		CHECK(e == 0, "coh_alloc, round %d: %s", r, coh_strerror(e));
		struct coh_alloc_info info = { .size = sizeof(info) };
		CHECK(coh_lookup(ctx, p + ps, &info) == 0 && info.base == p && info.length == len &&
			      info.user_data == &tag[r & 1] && info.target == t,
		      "round %d: lookup of the new allocation", r);
		if (old && old != p) {
			CHECK(coh_lookup(ctx, old, &info) == -ENOENT, "round %d: the freed allocation is still found", r);
			CHECK(coh_free(ctx, old) == -ENOENT, "round %d: the freed allocation freed again", r);
		}
		reused += old == p;
		/* a fresh allocation: nothing touched it (device-dax may hold old data, but no CPU page) */
		view_free(&v);
		CHECK(view_take(&v, p, len) == 0, "round %d: query", r);
		for (size_t i = 0; i < v.np; i++)
			CHECK(kind_fits_fresh(coh_target_kind(t), v.kind[i]), "round %d: fresh page %zu is %s", r, i,
			      coh_mem_kind_name(v.kind[i]));
		fill(p, len, 24 + (unsigned)r);
		CHECK(same(p, len, 24 + (unsigned)r), "round %d: data", r);
		const char *bad = dev_agrees(t, p, len, &dev);
		CHECK(!bad, "round %d: %s", r, bad);
		e = coh_free(ctx, p);
		CHECK(e == 0, "round %d: coh_free: %s", r, coh_strerror(e));
		old = p;
		p = NULL;
		struct coh_alloc_info gone = { .size = sizeof(gone) };
		CHECK(coh_lookup(ctx, old, &gone) == -ENOENT, "round %d: lookup after free", r);
	}
	report(t, name, PASS, "%d rounds, address reused %d times", rounds, reused);
out:
	view_free(&v);
	if (p)
		coh_free(ctx, p);
}

/* ---- 14. write-all-pages-query ---- */

static void check_all_pages_query(coh_target *t)
{
	const char *name = "write-all-pages-query";
	unsigned char *p = NULL;
	struct view v = { 0 };
	if (!can_alloc(t, name))
		return;
	size_t len = 32 * ps;
	int e = alloc_plain(t, len, (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	for (size_t i = 0; i < len; i += ps)
		fill(p + i, ps, (unsigned)(i / ps));
	CHECK(view_take(&v, p, len) == 0, "query of the whole");
	for (size_t i = 0; i < v.np; i++) {
		struct coh_extent x[2];
		int n = coh_query(ctx, p + i * ps, ps, x, 2, sizeof(x[0]));
		CHECK(n == 1 && x[0].start == (uintptr_t)(p + i * ps) && x[0].length == ps, "page %zu: %d extents", i, n);
		CHECK(x[0].kind == v.kind[i] && x[0].target == v.tg[i], "page %zu alone: %s on %s; in the whole: %s on %s", i,
		      coh_mem_kind_name(x[0].kind), x[0].target ? coh_target_name(x[0].target) : "-",
		      coh_mem_kind_name(v.kind[i]), v.tg[i] ? coh_target_name(v.tg[i]) : "-");
		CHECK(kind_fits_written(coh_target_kind(t), x[0].kind), "written page %zu is %s", i,
		      coh_mem_kind_name(x[0].kind));
	}
	for (size_t i = 0; i < len; i += ps)
		CHECK(same(p + i, ps, (unsigned)(i / ps)), "page %zu", i / ps);
	int dev = 0;
	const char *bad = dev_agrees(t, p, len, &dev);
	CHECK(!bad, "%s", bad);
	report(t, name, PASS, "%zu pages, one query each and one for all agree", v.np);
out:
	view_free(&v);
	if (p)
		coh_free(ctx, p);
}

static const struct conf_case cases[] = {
	{ "partial-migrate", "moving the middle, the first and the last page (device-dax: chunk) of an allocation "
			     "to each other target moves those pages only: the query names the destination for each "
			     "moved page and the old target for every other, data intact from the CPU and the device, "
			     "and back",
	  "targets without alloc; no other target takes the memory" },
	{ "partial-query", "queries of sub-ranges starting and ending inside pages and past the allocation's end "
			   "cover exactly the asked pages and agree with the whole query", "targets without alloc" },
	{ "across-allocs", "a migration spanning two allocations is refused (-EINVAL) and moves and changes nothing; a "
			   "query across both and the gap covers the range", "targets without alloc" },
	{ "many-small", "256 one-page allocations (device-dax: as many as half its free chunks) are distinct, found "
			"by lookup, move and keep their data; freeing them restores coh_alloc_count",
	  "targets without alloc; device-dax with room for fewer than 8 chunks" },
	{ "huge-pages", "a COH_ALLOC_HUGE allocation is 2 MiB aligned, reported as system or system-thp, moves and "
			"comes back intact; without COH_CAP_HUGE_PAGES the flag is refused (-EOPNOTSUPP)",
	  "targets without alloc or without COH_CAP_HUGE_PAGES" },
	{ "app-munmap", "a page the application unmaps in the middle of an allocation is reported unmapped, the "
			"other pages keep their data, and coh_free still answers cleanly (undocumented: no crash)",
	  "targets without alloc; device-dax (the kernel refuses to split the mapping)" },
	{ "app-mprotect", "with part of an allocation read-only the query works, migrations succeed or fail with the "
			  "data intact, and writes work again once the protection is restored", "targets without alloc" },
	{ "app-dontneed", "MADV_DONTNEED on part of an allocation: private anonymous memory reads zeros and is "
			  "reported not populated, shared memory (SHARE on the host, device-dax) keeps its data, "
			  "driver memory one or the other; the rest intact", "targets without alloc" },
	{ "app-mremap", "an allocation moved by mremap keeps its data and answers queries at the new address, the "
			"old one reads unmapped; moved back, it migrates and frees normally (undocumented: no crash)",
	  "targets without alloc; memory the kernel refuses to move; memory whose driver disables a moved mapping (CUDA managed)" },
	{ "over-capacity", "sizes above SIZE_MAX/2 are -EOVERFLOW, SIZE_MAX/2 is -ENOMEM, twice the capacity is "
			   "-ENOMEM or (host, MAP_NORESERVE) a lazy success; the count and free bytes unchanged",
	  "none (SIZE_MAX/2 not asked of vendor-managed memory)" },
	{ "adopt-partial", "part of a mapping is adopted, queried, moved in part and released; overlapping adoptions "
			   "are -EEXIST, coh_free of it -EINVAL, release inside it -ENOENT",
	  "targets without COH_CAP_ADOPT" },
	{ "zero-length-and-edges", "zero lengths and ranges off the page are -EINVAL for migration (a query widens "
				   "to whole pages), wrapping and over-long ranges -EOVERFLOW; nothing changes",
	  "targets without alloc" },
	{ "realloc-same-address", "after a free and a new allocation (the address often reused) lookup names the new "
				  "allocation and its user data, the old one is gone, and the query shows fresh pages",
	  "targets without alloc" },
	{ "write-all-pages-query", "with every page written, one query per page and one for the whole agree page by "
				   "page", "targets without alloc" },
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	check_partial_migrate(t);
	check_partial_query(t);
	check_across_allocs(t);
	check_many_small(t);
	check_huge_pages(t);
	check_app_munmap(t);
	check_app_mprotect(t);
	check_app_dontneed(t);
	check_app_mremap(t);
	check_over_capacity(t);
	check_adopt_partial(t);
	check_edges(t);
	check_realloc(t);
	check_all_pages_query(t);
}

const struct conf_group conf_mm = { "mm", run, cases };
