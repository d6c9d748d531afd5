/* SPDX-License-Identifier: MIT */
/*
 * NVIDIA managed memory: libcoherent against the raw driver calls on the same
 * memory in the same run (the driver library is opened here too, with the
 * same path the backend uses).
 *  - migrate host->GPU and GPU->host of 1 GiB: coh_migrate vs one
 *    cuMemPrefetchAsync + sync, interleaved; host->GPU also against a pinned
 *    copy into the GPU-resident range (the link's practical limit), GPU->host
 *    also against discard-and-prefetch to host (the driver populating host
 *    pages without data: the floor of any GPU->host migration), where the
 *    driver has it;
 *  - overhead on a range that is already on the GPU;
 *  - fork() with a 1 GiB GPU-resident COPY allocation: the parent's fork time
 *    against 1.2 x (the copy-out of 1 GiB into pinned memory) + a raw fork,
 *    the child's data checked, the parent's residency checked.
 * Without a GPU (or driver) the suite reports nothing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../backends/nvidia/cuda_abi.h"
#include "bench.h"
#include "coherent.h"

struct raw {
#define X(field, type, name, req) type field;
	COH_CU_NAMES(X)
#undef X
	CUresult (*discard_prefetch)(CUdeviceptr *p, size_t *sizes, size_t count, CUmemLocation *locs,
				     size_t *loc_idx, size_t nlocs, unsigned long long flags, CUstream s);
	CUcontext cuctx;
	CUstream s;
};

static int raw_open(struct raw *r)
{
	const char *path = getenv("COH_CUDA_LIBRARY");
	void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		return -ENODEV;
#define X(field, type, name, req) r->field = (type)dlsym(lib, name);
	COH_CU_NAMES(X)
#undef X
	r->discard_prefetch = (CUresult(*)(CUdeviceptr *, size_t *, size_t, CUmemLocation *, size_t *, size_t,
					   unsigned long long, CUstream))dlsym(lib, "cuMemDiscardAndPrefetchBatchAsync");
	if (!r->prefetch_v2 || !r->primary_retain || !r->ctx_push || !r->stream_create)
		return -ENODEV;
	CUdevice d;
	if (r->init(0) || r->device_get(&d, 0) || r->primary_retain(&r->cuctx, d) || r->ctx_push(r->cuctx) ||
	    r->stream_create(&r->s, CU_STREAM_NON_BLOCKING))
		return -ENODEV;
	return 0;   /* the context stays pushed on this thread for the suite */
}

static double t_prefetch(struct raw *r, void *p, size_t len, int type, int id)
{
	double t0 = bench_now_ns();
	CUresult e = r->prefetch_v2((uintptr_t)p, len, (CUmemLocation){ type, id }, 0, r->s);
	if (e == CUDA_SUCCESS)
		e = r->stream_sync(r->s);
	return e ? -1 : bench_now_ns() - t0;
}

static double t_copy(struct raw *r, void *dst, const void *src, size_t len)
{
	double t0 = bench_now_ns();
	CUresult e = r->memcpy_async((uintptr_t)dst, (uintptr_t)src, len, r->s);
	if (e == CUDA_SUCCESS)
		e = r->stream_sync(r->s);
	return e ? -1 : bench_now_ns() - t0;
}

static double t_migrate(coh_context *ctx, void *p, size_t len, coh_target *t)
{
	double t0 = bench_now_ns();
	int e = coh_migrate(ctx, p, len, t, 0);
	return e ? -1 : bench_now_ns() - t0;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(double), bench_cmp_double);
	return v[n / 2];
}

static double gbs(size_t len, double ns)
{
	return ns > 0 ? (double)len / ns : 0;   /* bytes per ns = GB/s */
}

static bool on_gpu(coh_context *ctx, void *p, size_t len, coh_target *gpu)
{
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	return n == 1 && x[0].target == gpu && x[0].length == len;
}

/* Child: checks every byte of the pattern, exits 0 when it matches. */
static void child_check(const unsigned char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 4096)
		if (p[i] != (unsigned char)(i / 4096 * 7 + 1))
			_exit(3);
	_exit(0);
}

/* ---- many small ranges: a batch, the queue, and the driver's own batch ---- */

#define NB_MAX 256

struct many {
	size_t n, each;
	unsigned char *p[NB_MAX];
	struct coh_migrate_req req[NB_MAX];
	CUdeviceptr dp[NB_MAX];
	size_t sizes[NB_MAX];
};

static void many_to(struct many *m, coh_target *t)
{
	for (size_t i = 0; i < m->n; i++)
		m->req[i] = (struct coh_migrate_req){ .addr = m->p[i], .len = m->each, .dst = t, .cookie = i };
}

static double t_batch(coh_context *ctx, struct many *m, coh_target *t)
{
	int res[NB_MAX];
	many_to(m, t);
	double t0 = bench_now_ns();
	int e = coh_migrate_batch(ctx, m->req, m->n, sizeof(m->req[0]), res);
	return e < 0 ? -1 : bench_now_ns() - t0;
}

static double t_queue(coh_queue *q, struct many *m, coh_target *t)
{
	struct coh_completion c[64];
	many_to(m, t);
	double t0 = bench_now_ns();
	if (coh_queue_migrate(q, m->req, m->n, sizeof(m->req[0])) != (int)m->n)
		return -1;
	for (size_t got = 0; got < m->n;) {
		int k = coh_queue_reap(q, c, 64, sizeof(c[0]), -1);
		if (k <= 0)
			return -1;
		for (int i = 0; i < k; i++)
			if (c[i].result)
				return -1;
		got += (size_t)k;
	}
	return bench_now_ns() - t0;
}

/* The driver's own batch (or, without one, a prefetch per range), one sync. */
static double t_native_many(struct raw *r, struct many *m, int type, int id)
{
	CUmemLocation loc = { type, id };
	size_t idx = 0;
	double t0 = bench_now_ns();
	CUresult e = CUDA_SUCCESS;
	if (r->prefetch_batch) {
		e = r->prefetch_batch(m->dp, m->sizes, m->n, &loc, &idx, 1, 0, r->s);
	} else {
		for (size_t i = 0; i < m->n && e == CUDA_SUCCESS; i++)
			e = r->prefetch_v2(m->dp[i], m->sizes[i], loc, 0, r->s);
	}
	if (e == CUDA_SUCCESS)
		e = r->stream_sync(r->s);
	return e ? -1 : bench_now_ns() - t0;
}

static int bench_many(const struct bench_opts *o, coh_context *ctx, struct raw *r, coh_target *gpu,
		      coh_target *host, struct bench_result *out, int max)
{
	struct many *m = calloc(1, sizeof(*m));
	coh_queue *q = NULL;
	int n = 0, reps = o->quick ? 3 : 9;
	if (!m)
		return 0;
	m->n = o->quick ? 64 : NB_MAX;
	m->each = 2u << 20;
	size_t ok = 0;
	for (; ok < m->n; ok++) {
		if (coh_alloc(gpu, m->each, NULL, (void **)&m->p[ok]))
			break;
		memset(m->p[ok], 1, m->each);
		m->dp[ok] = (uintptr_t)m->p[ok];
		m->sizes[ok] = m->each;
	}
	if (ok == m->n && coh_queue_create(ctx, NULL, &q) == 0) {
		double bl[16], bn[16], ql[16], hl[16], hn[16];
		for (int i = 0; i < reps; i++) {
			/* from the host each time; who goes first alternates */
			if (i & 1) {
				bn[i] = t_native_many(r, m, CU_MEM_LOCATION_TYPE_DEVICE, 0);
				hn[i] = t_native_many(r, m, CU_MEM_LOCATION_TYPE_HOST, 0);
				bl[i] = t_batch(ctx, m, gpu);
				hl[i] = t_batch(ctx, m, host);
			} else {
				bl[i] = t_batch(ctx, m, gpu);
				hl[i] = t_batch(ctx, m, host);
				bn[i] = t_native_many(r, m, CU_MEM_LOCATION_TYPE_DEVICE, 0);
				hn[i] = t_native_many(r, m, CU_MEM_LOCATION_TYPE_HOST, 0);
			}
			ql[i] = t_queue(q, m, gpu);
			if (t_batch(ctx, m, host) < 0 || bl[i] < 0 || bn[i] < 0 || ql[i] < 0 || hl[i] < 0 || hn[i] < 0) {
				reps = 0;
				break;
			}
		}
		char name[96];
		const char *nat = r->prefetch_batch ? "cuMemPrefetchBatchAsync" : "per-range prefetches";
		if (reps > 0 && n + 3 <= max) {
			double a = median(bl, reps), b = median(bn, reps), c = median(ql, reps), d = median(hl, reps),
			       f = median(hn, reps);
			size_t tot = m->n * m->each;
			snprintf(name, sizeof(name), "batch of %zu x 2 MiB host->GPU (coh_migrate_batch)", m->n);
			bench_set(&out[n++], "nvidia", name, gbs(tot, a), "GB/s", nat, gbs(tot, b), ">= 0.95",
				  gbs(tot, a) >= 0.95 * gbs(tot, b));
			snprintf(name, sizeof(name), "batch of %zu x 2 MiB GPU->host (coh_migrate_batch)", m->n);
			bench_set(&out[n++], "nvidia", name, gbs(tot, d), "GB/s", nat, gbs(tot, f), ">= 0.95",
				  gbs(tot, d) >= 0.95 * gbs(tot, f));
			snprintf(name, sizeof(name), "%zu x 2 MiB host->GPU through the completion queue", m->n);
			bench_set(&out[n++], "nvidia", name, gbs(tot, c), "GB/s", nat, gbs(tot, b), "(recorded)", true);
		}
	}
	if (q)
		coh_queue_destroy(q);
	for (size_t i = 0; i < ok; i++)
		coh_free(ctx, m->p[i]);
	free(m);
	return n;
}

int bench_nvidia(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	struct coh_context_options opt = { .size = sizeof(opt), .backends = "nvidia,host", .log_level = -1 };
	int e = coh_context_create(&opt, &ctx);
	if (e)
		return e;
	coh_target *gpu = coh_target_find(ctx, "nvidia:gpu0");
	coh_target *host = coh_target_by_node(ctx, 0);
	if (!gpu || !host) {
		coh_context_unref(ctx);
		return 0;   /* no GPU here */
	}
	struct raw r = { 0 };
	if (raw_open(&r)) {
		coh_context_unref(ctx);
		return 0;
	}
	size_t len = o->quick ? (64u << 20) : (1u << 30);
	int reps = o->quick ? 2 : 7, n = 0;
	const char *sz = o->quick ? "64 MiB" : "1 GiB";
	char name[96];
	unsigned char *p = NULL, *hb = NULL;
	double th[8], tl[8], dh[8], dl[8], floor_t[8], res_n[32], res_l[32];
	int nfloor = 0;

	if (o->progress)
		o->progress("nvidia: migrate");
	e = coh_alloc(gpu, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_COPY), (void **)&p);
	if (e)
		goto out;
	for (size_t i = 0; i < len; i += 4096)
		p[i] = (unsigned char)(i / 4096 * 7 + 1);   /* faults the pages to the host */
	for (int i = 0; i < reps; i++) {
		/* alternate who goes first in each direction */
		if (i & 1) {
			tl[i] = t_migrate(ctx, p, len, gpu);
			dl[i] = t_migrate(ctx, p, len, host);
			th[i] = t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_DEVICE, 0);
			dh[i] = t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_HOST, 0);
		} else {
			th[i] = t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_DEVICE, 0);
			dh[i] = t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_HOST, 0);
			tl[i] = t_migrate(ctx, p, len, gpu);
			dl[i] = t_migrate(ctx, p, len, host);
		}
		if (th[i] < 0 || tl[i] < 0 || dh[i] < 0 || dl[i] < 0) {
			e = -EIO;
			goto out;
		}
	}
	double nh = median(th, reps), lh = median(tl, reps), nd = median(dh, reps), ld = median(dl, reps);
	/* the floor: discard + prefetch to host populates host pages, moves no data */
	if (r.discard_prefetch) {
		for (int i = 0; i < reps; i++) {
			if (t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_DEVICE, 0) < 0)
				break;
			CUdeviceptr dp = (uintptr_t)p;
			size_t sz1 = len, idx = 0;
			CUmemLocation loc = { CU_MEM_LOCATION_TYPE_HOST, 0 };
			double t0 = bench_now_ns();
			if (r.discard_prefetch(&dp, &sz1, 1, &loc, &idx, 1, 0, r.s) || r.stream_sync(r.s))
				break;
			floor_t[nfloor++] = bench_now_ns() - t0;
		}
		/* the data was discarded: write the pattern again */
		for (size_t i = 0; i < len; i += 4096)
			p[i] = (unsigned char)(i / 4096 * 7 + 1);
	}
	/* pinned copies: host->GPU-resident range, and the copy-out back */
	hb = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
	double pin_h2d = -1, pin_d2h = -1;
	if (hb != MAP_FAILED && r.host_register(hb, len, 0) == CUDA_SUCCESS) {
		double a[8], b[8];
		memcpy(hb, p, len);
		t_migrate(ctx, p, len, gpu);
		for (int i = 0; i < reps; i++) {
			a[i] = t_copy(&r, p, hb, len);
			b[i] = t_copy(&r, hb, p, len);
		}
		pin_h2d = median(a, reps);
		pin_d2h = median(b, reps);
		r.host_unregister(hb);
	}
	if (hb == MAP_FAILED)
		hb = NULL;

	snprintf(name, sizeof(name), "migrate %s host->GPU vs cuMemPrefetchAsync", sz);
	bench_set(&out[n++], "nvidia", name, gbs(len, lh), "GB/s", "native prefetch", gbs(len, nh), ">= 1.0",
		  gbs(len, lh) >= gbs(len, nh));
	if (pin_h2d > 0 && n < max) {
		snprintf(name, sizeof(name), "migrate %s host->GPU vs pinned memcpy", sz);
		bench_set(&out[n++], "nvidia", name, gbs(len, lh), "GB/s", "pinned memcpy H2D", gbs(len, pin_h2d),
			  ">= 0.95", gbs(len, lh) >= 0.95 * gbs(len, pin_h2d));
	}
	if (n < max) {
		snprintf(name, sizeof(name), "migrate %s GPU->host vs cuMemPrefetchAsync", sz);
		bench_set(&out[n++], "nvidia", name, gbs(len, ld), "GB/s", "native prefetch", gbs(len, nd), ">= 1.0",
			  gbs(len, ld) >= gbs(len, nd));
	}
	if (nfloor > 0 && n < max) {
		double f = median(floor_t, nfloor);
		snprintf(name, sizeof(name), "migrate %s GPU->host vs population floor", sz);
		bench_set(&out[n++], "nvidia", name, gbs(len, ld), "GB/s", "discard+prefetch to host", gbs(len, f),
			  ">= 0.90", gbs(len, ld) >= 0.9 * gbs(len, f));
	}

	/* variants of the backend, each against the native prefetch in the same loop */
	static const struct {
		const char *label, *tunables;
	} variants[] = {
		{ "64 MiB x 16 streams", "nvidia.chunk_mb=64,nvidia.streams=16" },
		/* sticky migrations advise the preferred location whenever the
		 * destination changes, which this loop's every migration does */
		{ "preferred location follows (nvidia.prefer=1)", "nvidia.prefer=1" },
	};
	for (size_t v = 0; v < sizeof(variants) / sizeof(variants[0]) && !o->quick && n + 2 <= max; v++) {
		coh_context *c2;
		struct coh_context_options o2 = opt;
		o2.tunables = variants[v].tunables;
		int e2 = coh_context_create(&o2, &c2);
		if (e2)
			continue;
		unsigned char *q = NULL;
		coh_target *g2 = coh_target_find(c2, "nvidia:gpu0"), *h2 = coh_target_by_node(c2, 0);
		if (g2 && h2 && coh_alloc(g2, len, NULL, (void **)&q) == 0) {
			double a[8], b[8], c[8], d[8];
			for (size_t i = 0; i < len; i += 4096)
				q[i] = 1;
			for (int i = 0; i < reps; i++) {
				a[i] = t_prefetch(&r, q, len, CU_MEM_LOCATION_TYPE_DEVICE, 0);
				c[i] = t_prefetch(&r, q, len, CU_MEM_LOCATION_TYPE_HOST, 0);
				b[i] = t_migrate(c2, q, len, g2);
				d[i] = t_migrate(c2, q, len, h2);
			}
			double na = median(a, reps), lb = median(b, reps), nc = median(c, reps), ld2 = median(d, reps);
			snprintf(name, sizeof(name), "migrate %s host->GPU, %s", sz, variants[v].label);
			bench_set(&out[n++], "nvidia", name, gbs(len, lb), "GB/s", "native prefetch", gbs(len, na),
				  "(experiment)", true);
			snprintf(name, sizeof(name), "migrate %s GPU->host, %s", sz, variants[v].label);
			bench_set(&out[n++], "nvidia", name, gbs(len, ld2), "GB/s", "native prefetch", gbs(len, nc),
				  "(experiment)", true);
			coh_free(c2, q);
		}
		coh_context_unref(c2);
	}

	/* many small ranges: the batch and the queue against the driver's batch */
	if (o->progress)
		o->progress("nvidia: batches and the completion queue");
	n += bench_many(o, ctx, &r, gpu, host, out + n, max - n);

	/* already resident: the cost of asking */
	if (o->progress)
		o->progress("nvidia: resident overhead");
	t_migrate(ctx, p, len, gpu);
	for (int i = 0; i < 21; i++) {
		res_n[i] = t_prefetch(&r, p, len, CU_MEM_LOCATION_TYPE_DEVICE, 0);
		res_l[i] = t_migrate(ctx, p, len, gpu);
	}
	double rn = median(res_n, 21) / 1e3, rl = median(res_l, 21) / 1e3;
	if (n < max) {
		snprintf(name, sizeof(name), "migrate %s already on the GPU", sz);
		bench_set(&out[n++], "nvidia", name, rl, "us", "native prefetch", rn, "<= 1.05", rl <= 1.05 * rn);
	}

	/* fork with COPY: child correct, parent resident, time vs copy-out + raw fork */
	if (o->progress)
		o->progress("nvidia: fork COPY");
	double fk[8], fr[8], first = -1;
	int bad_child = 0, bad_parent = 0;
	for (int i = 0; i < reps + 1; i++) {
		double t0 = bench_now_ns();
		pid_t pid = fork();
		if (pid == 0)
			child_check(p, len);
		double t = bench_now_ns() - t0;
		if (pid < 0) {
			e = -errno;
			goto out;
		}
		int st = 0;
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
			bad_child++;
		if (!on_gpu(ctx, p, len, gpu))
			bad_parent++;
		if (i == 0)
			first = t;   /* includes making and pinning the staging buffer */
		else
			fk[i - 1] = t;
	}
	coh_fork_policy_set(ctx, p, len, COH_FORK_KERNEL);
	for (int i = 0; i < reps; i++) {
		double t0 = bench_now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		fr[i] = bench_now_ns() - t0;
		waitpid(pid, NULL, 0);
	}
	double fc = median(fk, reps) / 1e6, fraw = median(fr, reps) / 1e6;
	double budget = (pin_d2h > 0 ? 1.2 * pin_d2h / 1e6 : 1.2 * (double)len / 52.4e9 * 1e3) + fraw;
	if (n < max) {
		snprintf(name, sizeof(name), "fork, %s GPU-resident COPY (child %s, parent %s)", sz,
			 bad_child ? "WRONG" : "ok", bad_parent ? "LOST residency" : "resident");
		bench_set(&out[n++], "nvidia", name, fc, "ms", "1.2 x copy-out + raw fork", budget, "<= 1.0",
			  fc <= budget && !bad_child && !bad_parent);
	}
	if (n < max) {
		snprintf(name, sizeof(name), "first fork, %s COPY (pins the staging buffer)", sz);
		bench_set(&out[n++], "nvidia", name, first / 1e6, "ms", "raw fork", fraw, "(recorded)", true);
	}
	if (pin_d2h > 0 && n < max) {
		snprintf(name, sizeof(name), "copy-out %s GPU-resident -> pinned", sz);
		bench_set(&out[n++], "nvidia", name, gbs(len, pin_d2h), "GB/s", NULL, 0, "(reference)", true);
	}
	e = 0;
out:
	if (hb)
		munmap(hb, len);
	if (p)
		coh_free(ctx, p);
	CUcontext c;
	r.stream_destroy(r.s);
	r.ctx_pop(&c);
	coh_context_unref(ctx);
	return e ? e : n;
}
