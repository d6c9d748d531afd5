/* SPDX-License-Identifier: MIT */
/* Alloc+free latency against mmap+munmap, interleaved in the same run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "coherent.h"

static double time_raw(size_t size, int iters)
{
	double t0 = bench_now_ns();
	for (int i = 0; i < iters; i++) {
		void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		munmap(p, size);
	}
	return (bench_now_ns() - t0) / iters;
}

static double time_coh(coh_context *ctx, coh_target *t, size_t size, int iters)
{
	double t0 = bench_now_ns();
	for (int i = 0; i < iters; i++) {
		void *p;
		if (coh_alloc(t, size, NULL, &p))
			return -1;
		coh_free(ctx, p);
	}
	return (bench_now_ns() - t0) / iters;
}

int bench_alloc(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	coh_target *t;
	int e = bench_host_ctx(&ctx, &t);
	if (e)
		return e;
	if (!t) {
		coh_context_unref(ctx);
		return -ENODEV;
	}
	static const size_t sizes[] = { 4096, 1 << 20 };
	int iters = o->quick ? 2000 : 50000, n = 0;
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]) && n < max; s++) {
		if (o->progress)
			o->progress("alloc: alloc+free vs mmap+munmap");
		/* Short rounds, alternating, so both see the same machine state; the
		 * median of each resists bursts from whatever else the machine runs. */
		enum { ROUNDS = 21 };
		double raw[ROUNDS], coh[ROUNDS];
		for (int round = 0; round < ROUNDS; round++) {
			raw[round] = time_raw(sizes[s], iters / ROUNDS);
			coh[round] = time_coh(ctx, t, sizes[s], iters / ROUNDS);
			if (raw[round] < 0 || coh[round] < 0) {
				coh_context_unref(ctx);
				return -ENOMEM;
			}
		}
		qsort(raw, ROUNDS, sizeof(double), bench_cmp_double);
		qsort(coh, ROUNDS, sizeof(double), bench_cmp_double);
		double best_raw = raw[ROUNDS / 2], best_coh = coh[ROUNDS / 2];
		char name[96];
		snprintf(name, sizeof(name), "coh_alloc+coh_free, %zu KiB, untouched (median)", sizes[s] >> 10);
		bench_set(&out[n++], "alloc", name, best_coh, "ns", "mmap+munmap", best_raw, "<= 1.10",
			  best_coh / best_raw <= 1.10);
	}
	coh_context_unref(ctx);
	return n;
}
