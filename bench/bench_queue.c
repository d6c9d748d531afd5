/* SPDX-License-Identifier: MIT */
/*
 * The completion queue on a host target: what one asynchronous migration
 * through the queue costs beside a synchronous coh_migrate of the same range
 * (4 KiB and 2 MiB, populated, to the node they are on: the call still
 * checks, finds the record and asks the kernel to move the pages, which are
 * there already, so this measures the library's and the kernel's per-call
 * path, not a copy), and the rate of 10 000 requests of 4 KiB: through the
 * queue (one submit, reaped 256 at a time), as one coh_migrate_batch, and
 * as 10 000 coh_migrate calls.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "coherent.h"

#define MANY 10000

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(v[0]), bench_cmp_double);
	return v[n / 2];
}

/* Median ns of one synchronous migration, and of one submit + reap through q. */
static int per_request(coh_context *ctx, coh_queue *q, coh_target *t, unsigned char *p, size_t len, int reps,
		       double *sync_ns, double *queue_ns)
{
	double *a = calloc((size_t)reps, sizeof(double)), *b = calloc((size_t)reps, sizeof(double));
	int e = a && b ? 0 : -ENOMEM;
	struct coh_migrate_req r = { .addr = p, .len = len, .dst = t };
	struct coh_completion c;
	for (int i = 0; i < reps && !e; i++) {
		double t0 = bench_now_ns();
		e = coh_migrate(ctx, p, len, t, 0);
		double t1 = bench_now_ns();
		if (!e && coh_queue_migrate(q, &r, 1, sizeof(r)) != 1)
			e = -EIO;
		if (!e && (coh_queue_reap(q, &c, 1, sizeof(c), -1) != 1 || c.result))
			e = -EIO;
		double t2 = bench_now_ns();
		a[i] = t1 - t0;
		b[i] = t2 - t1;
	}
	if (!e) {
		*sync_ns = median(a, reps);
		*queue_ns = median(b, reps);
	}
	free(a);
	free(b);
	return e;
}

static int many(coh_context *ctx, coh_queue *q, coh_target *t, unsigned char *p, size_t pages, double *queue_s,
		double *batch_s, double *sync_s)
{
	struct coh_migrate_req *r = calloc(MANY, sizeof(*r));
	int *res = calloc(MANY, sizeof(int));
	int e = r && res ? 0 : -ENOMEM;
	for (int i = 0; i < MANY && !e; i++)
		r[i] = (struct coh_migrate_req){ .addr = p + (size_t)(i % (int)pages) * 4096, .len = 4096, .dst = t };
	double t0 = bench_now_ns();
	if (!e && coh_queue_migrate(q, r, MANY, sizeof(r[0])) != MANY)
		e = -EIO;
	struct coh_completion c[256];
	for (int left = MANY; !e && left > 0;) {
		int n = coh_queue_reap(q, c, 256, sizeof(c[0]), -1);
		if (n <= 0)
			e = -EIO;
		left -= n;
	}
	double t1 = bench_now_ns();
	if (!e && coh_migrate_batch(ctx, r, MANY, sizeof(r[0]), res) != MANY)
		e = -EIO;
	double t2 = bench_now_ns();
	for (int i = 0; i < MANY && !e; i++)
		e = coh_migrate(ctx, r[i].addr, 4096, t, 0);
	double t3 = bench_now_ns();
	*queue_s = (t1 - t0) / 1e9;
	*batch_s = (t2 - t1) / 1e9;
	*sync_s = (t3 - t2) / 1e9;
	free(r);
	free(res);
	return e;
}

int bench_queue(const struct bench_opts *o, struct bench_result *out, int max)
{
	if (max < 6)
		return -ENOSPC;
	coh_context *ctx;
	struct coh_context_options opt = { .size = sizeof(opt), .backends = "host", .log_level = -1 };
	int e = coh_context_create(&opt, &ctx);
	if (e)
		return e;
	coh_target *t = coh_target_get(ctx, 0);
	size_t len = 4u << 20;
	unsigned char *p = NULL;
	coh_queue *q = NULL;
	if (!t)
		e = -ENODEV;
	if (!e)
		e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p);
	if (!e)
		memset(p, 1, len);
	if (!e)
		e = coh_queue_create(ctx, NULL, &q);
	int n = 0, reps = o->quick ? 200 : 2000;
	static const size_t sizes[2] = { 4096, 2u << 20 };
	for (int k = 0; k < 2 && !e; k++) {
		double s, qn;
		if (o->progress)
			o->progress(k ? "queue: per-request overhead, 2 MiB" : "queue: per-request overhead, 4 KiB");
		e = per_request(ctx, q, t, p, sizes[k], k ? reps / 4 : reps, &s, &qn);
		if (e)
			break;
		char name[96];
		snprintf(name, sizeof(name), "one async migration of %s through the queue (submit+reap)",
			 k ? "2 MiB" : "4 KiB");
		bench_set(&out[n++], "queue", name, qn, "ns", "sync coh_migrate", s, "-", true);
	}
	if (!e) {
		if (o->progress)
			o->progress("queue: 10 000 requests of 4 KiB");
		double qs, bs, ss;
		e = many(ctx, q, t, p, len / 4096, &qs, &bs, &ss);
		if (!e) {
			bench_set(&out[n++], "queue", "10 000 x 4 KiB through the queue", MANY / qs / 1e3, "k req/s",
				  "10 000 coh_migrate", MANY / ss / 1e3, "-", true);
			bench_set(&out[n++], "queue", "10 000 x 4 KiB as one coh_migrate_batch", MANY / bs / 1e3, "k req/s",
				  "10 000 coh_migrate", MANY / ss / 1e3, "-", true);
		}
	}
	if (!e && n < max) {
		/* 1 000 one-page ranges: one coh_query_batch against a coh_query loop */
		if (o->progress)
			o->progress("queue: 1 000 one-page queries, batch and loop");
		enum { NQ = 1000 };
		struct coh_query_range *qr = calloc(NQ, sizeof(*qr));
		struct coh_extent *x = calloc(NQ * 2, sizeof(*x));
		size_t pages = len / 4096;
		double tb[21], tl[21];
		int rr = o->quick ? 5 : 21;
		for (int r = 0; qr && x && r < rr; r++) {
			for (int i = 0; i < NQ; i++)
				qr[i] = (struct coh_query_range){ .size = sizeof(qr[0]), .addr = p + (size_t)(i * 7 % pages) * 4096,
								  .len = 4096, .ext = x + 2 * i, .max = 2 };
			double t0 = bench_now_ns();
			coh_query_batch(ctx, qr, NQ, sizeof(x[0]));
			tb[r] = bench_now_ns() - t0;
			t0 = bench_now_ns();
			for (int i = 0; i < NQ; i++)
				coh_query(ctx, qr[i].addr, 4096, x + 2 * i, 2, sizeof(x[0]));
			tl[r] = bench_now_ns() - t0;
		}
		if (qr && x)
			bench_set(&out[n++], "queue", "1 000 one-page queries as one coh_query_batch (per range)",
				  median(tb, rr) / NQ, "ns", "a coh_query loop", median(tl, rr) / NQ, "-", true);
		free(qr);
		free(x);
	}
	if (q)
		coh_queue_destroy(q);
	if (p)
		coh_free(ctx, p);
	coh_context_unref(ctx);
	return e ? e : n;
}
