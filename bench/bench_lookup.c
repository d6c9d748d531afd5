/* SPDX-License-Identifier: MIT */
/* Pointer lookup (interior addresses, random order) at 1k and 1M live allocations. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "coherent.h"

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next_rand(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static int cmp_uptr(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

/* Fills r[0] (random) and r[1] (address order). */
static int one(const struct bench_opts *o, coh_context *ctx, coh_target *t, size_t count,
	       struct bench_result *r)
{
	void **ptrs = calloc(count, sizeof(void *));
	size_t nq = 1u << 20;
	const void **q = calloc(nq, sizeof(void *));
	int e = 0;
	size_t made = 0;
	if (!ptrs || !q) {
		e = -ENOMEM;
		goto out;
	}
	char msg[96];
	snprintf(msg, sizeof(msg), "lookup: creating %zu allocations", count);
	if (o->progress)
		o->progress(msg);
	for (; made < count; made++)
		if ((e = coh_alloc(t, 4096, NULL, &ptrs[made])))
			goto out;
	for (size_t i = 0; i < nq; i++)
		q[i] = (char *)ptrs[next_rand() % count] + (next_rand() % 4096);
	struct coh_alloc_info info = { .size = sizeof(info) };
	double best = 1e30, best_seq = 1e30;
	for (int round = 0; round < 5; round++) {
		double t0 = bench_now_ns();
		for (size_t i = 0; i < nq; i++)
			if (coh_lookup(ctx, q[i], &info)) {
				e = -EIO;
				goto out;
			}
		double ns = (bench_now_ns() - t0) / (double)nq;
		best = ns < best ? ns : best;
		/* in allocation order: a runtime walking its own buffers */
		t0 = bench_now_ns();
		for (size_t i = 0; i < count; i++)
			if (coh_lookup(ctx, (char *)ptrs[i] + 100, &info)) {
				e = -EIO;
				goto out;
			}
		ns = (bench_now_ns() - t0) / (double)count;
		best_seq = ns < best_seq ? ns : best_seq;
	}
	/* The same queries against a plain sorted array of the same starts, no
	 * lock, no lengths: the floor of any ordered search on this machine. */
	uintptr_t *keys = malloc(count * sizeof(*keys));
	double floor_ns = 0;
	if (keys) {
		for (size_t i = 0; i < count; i++)
			keys[i] = (uintptr_t)ptrs[i];
		qsort(keys, count, sizeof(*keys), cmp_uptr);
		floor_ns = 1e30;
		for (int round = 0; round < 3; round++) {
			size_t sink = 0;
			double t0 = bench_now_ns();
			for (size_t i = 0; i < nq; i++) {
				size_t lo = 0, hi = count;
				while (lo < hi) {
					size_t mid = (lo + hi) / 2;
					if (keys[mid] <= (uintptr_t)q[i])
						lo = mid + 1;
					else
						hi = mid;
				}
				sink += lo;
			}
			double ns = (bench_now_ns() - t0) / (double)nq;
			floor_ns = ns < floor_ns ? ns : floor_ns;
			if (sink == 0)
				floor_ns = 0;
		}
		free(keys);
	}
	char name[96];
	const char *goal = count >= 1000000 ? "<= 100 ns" : "-";
	snprintf(name, sizeof(name), "coh_lookup, %zu live, random interior", count);
	bench_set(&r[0], "lookup", name, best, "ns", "sorted-array bsearch", floor_ns, goal, best <= 100.0);
	snprintf(name, sizeof(name), "coh_lookup, %zu live, in address order", count);
	bench_set(&r[1], "lookup", name, best_seq, "ns", NULL, 0, goal, best_seq <= 100.0);
out:
	for (size_t i = 0; i < made; i++)
		coh_free(ctx, ptrs[i]);
	free(ptrs);
	free(q);
	return e;
}

int bench_lookup(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	coh_target *t;
	int e = bench_host_ctx(&ctx, &t);
	if (e)
		return e;
	size_t counts[] = { 1000, o->quick ? 100000 : 1000000 };
	int n = 0;
	for (size_t i = 0; t && i < 2 && n + 2 <= max; i++) {
		e = one(o, ctx, t, counts[i], &out[n]);
		if (e)
			break;
		n += 2;
	}
	coh_context_unref(ctx);
	return e ? e : n;
}
