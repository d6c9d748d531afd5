/* SPDX-License-Identifier: MIT */
/*
 * Device-dax (cxl backend), against raw paths in the same run:
 *  - the sub-allocator: coh_alloc+coh_free of one device chunk against
 *    mmap+munmap of the same size of anonymous memory;
 *  - migration of up to 256 MiB device-dax -> host and back (copy and remap at
 *    the same addresses) against a memcpy of the same size between the device
 *    and already populated host memory.
 * Without a device-dax target the suite reports nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "bench.h"
#include "coherent.h"

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return v[n / 2];
}

int bench_cxl(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	struct coh_context_options opt = { .size = sizeof(opt), .backends = "cxl,host", .log_level = -1 };
	int e = coh_context_create(&opt, &ctx);
	if (e)
		return e;
	coh_target *t = NULL, *u;
	coh_target_foreach(ctx, u)
		if (coh_target_kind(u) == COH_KIND_DEVICE_DAX && (coh_target_caps(u) & COH_CAP_ALLOC)) {
			t = u;
			break;
		}
	coh_target *h = coh_target_by_node(ctx, 0);
	if (!t || !h) {
		coh_context_unref(ctx);
		return 0;
	}
	int n = 0;
	char name[96];
	/* one chunk: the device's alignment (2 MiB on the usual devices) */
	void *p;
	size_t chunk = 2u << 20;   /* one chunk of the usual device alignment */
	if (o->progress)
		o->progress("cxl: sub-allocator");
	int iters = o->quick ? 2000 : 20000;
	double ta[5], tr[5];
	for (int r = 0; r < 5; r++) {
		double t0 = bench_now_ns();
		for (int i = 0; i < iters; i++) {
			if (coh_alloc(t, chunk, NULL, &p) || coh_free(ctx, p)) {
				e = -EIO;
				goto out;
			}
		}
		ta[r] = (bench_now_ns() - t0) / iters;
		t0 = bench_now_ns();
		for (int i = 0; i < iters; i++) {
			void *q = mmap(NULL, chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (q == MAP_FAILED) {
				e = -ENOMEM;
				goto out;
			}
			munmap(q, chunk);
		}
		tr[r] = (bench_now_ns() - t0) / iters;
	}
	double a = median(ta, 5), m = median(tr, 5);
	snprintf(name, sizeof(name), "alloc+free of a 2 MiB device chunk");
	bench_set(&out[n++], "cxl", name, a, "ns", "mmap+munmap 2 MiB", m, "<= 0.5", a <= 0.5 * m);

	/* migration, copy and remap */
	uint64_t total = 0, free_b = 0;
	coh_target_capacity(t, &total, &free_b);
	size_t len = 256u << 20;
	if (len > free_b)
		len = (size_t)(free_b / chunk * chunk);
	if (o->quick && len > (32u << 20))
		len = 32u << 20;
	if (len < chunk || n >= max)
		goto done;
	if (o->progress)
		o->progress("cxl: migrate");
	unsigned char *d;
	if ((e = coh_alloc(t, len, NULL, (void **)&d)))
		goto out;
	memset(d, 0x5a, len);
	unsigned char *hb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	if (hb == MAP_FAILED) {
		coh_free(ctx, d);
		e = -ENOMEM;
		goto out;
	}
	double tm[5], th[5], tdv[5], tmb[5], tf[5];
	int reps = o->quick ? 3 : 5;
	for (int r = 0; r < reps && !e; r++) {
		/* raw: copies between the device (where d is now) and populated host memory */
		double t0 = bench_now_ns();
		memcpy(hb, d, len);
		tm[r] = bench_now_ns() - t0;
		t0 = bench_now_ns();
		memcpy(d, hb, len);
		tmb[r] = bench_now_ns() - t0;
		/* raw, into fresh memory: what any copy to new host memory pays (the kernel zeroes it first) */
		t0 = bench_now_ns();
		unsigned char *fr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fr == MAP_FAILED) {
			e = -ENOMEM;
			break;
		}
		madvise(fr, len, MADV_HUGEPAGE);
		memcpy(fr, d, len);
		tf[r] = bench_now_ns() - t0;
		munmap(fr, len);
		t0 = bench_now_ns();
		e = coh_migrate(ctx, d, len, h, 0);
		th[r] = bench_now_ns() - t0;
		t0 = bench_now_ns();
		if (!e)
			e = coh_migrate(ctx, d, len, t, 0);
		tdv[r] = bench_now_ns() - t0;
	}
	bool intact = d[0] == 0x5a && d[len - 1] == 0x5a;
	munmap(hb, len);
	coh_free(ctx, d);
	if (e)
		goto out;
	double mm = median(tm, reps), mh = median(th, reps), mb = median(tmb, reps), md = median(tdv, reps);
	snprintf(name, sizeof(name), "migrate %zu MiB device-dax -> host%s", len >> 20, intact ? "" : " (DATA WRONG)");
	bench_set(&out[n++], "cxl", name, (double)len / mh, "GB/s", "memcpy device -> host", (double)len / mm,
		  ">= 0.90", intact && mm / mh >= 0.9);
	if (n < max) {
		double mf = median(tf, reps);
		snprintf(name, sizeof(name), "migrate %zu MiB device-dax -> host, vs a copy into fresh memory", len >> 20);
		bench_set(&out[n++], "cxl", name, (double)len / mh, "GB/s", "mmap + memcpy device -> host", (double)len / mf,
			  ">= 0.90", intact && mf / mh >= 0.9);
	}
	if (n < max) {
		snprintf(name, sizeof(name), "migrate %zu MiB host -> device-dax", len >> 20);
		bench_set(&out[n++], "cxl", name, (double)len / md, "GB/s", "memcpy host -> device", (double)len / mb,
			  ">= 0.90", intact && mb / md >= 0.9);
	}
done:
	e = 0;
out:
	coh_context_unref(ctx);
	return e ? e : n;
}
