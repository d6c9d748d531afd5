/* SPDX-License-Identifier: MIT */
/*
 * Pools: alloc+free of 64 B and 4 KiB blocks on a host target, one thread
 * and two, against glibc malloc, jemalloc (mallocx/dallocx) and memkind
 * (MEMKIND_DEFAULT and the node-bound MEMKIND_REGULAR) measured in the same
 * rounds; and the memory overhead (RSS growth over the bytes live) after a
 * mixed workload.
 *
 * The peers are optional.  memkind is opened at run time (RTLD_LOCAL; its
 * jemalloc is a private copy).  Debian's jemalloc cannot be opened at run
 * time (its initial-exec TLS does not fit the static TLS block), so coh-bench
 * links it where it is installed (bench/CMakeLists.txt), which makes it the
 * program's malloc: the glibc column therefore calls __libc_malloc and
 * __libc_free, glibc's own allocator under any interposer.  Symbols are
 * weak: cohctl, which does not link jemalloc, leaves that column out.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"
#include "coherent.h"

enum { ROUNDS = 21, MAXT = 2, NPEER = 6 };

struct peer {
	const char *name;
	void *(*alloc)(struct peer *pe, size_t n);
	void (*free)(struct peer *pe, void *p);
	void *kind;        /* memkind_t */
	coh_pool *pool;
};

extern void *mallocx(size_t size, int flags) __attribute__((weak));
extern void dallocx(void *p, int flags) __attribute__((weak));
extern int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen) __attribute__((weak));
extern void *__libc_malloc(size_t size) __attribute__((weak));
extern void __libc_free(void *p) __attribute__((weak));
static void *(*mk_malloc)(void *, size_t);
static void (*mk_free)(void *, void *);

static void *pool_alloc(struct peer *pe, size_t n)
{
	void *p;
	return coh_pool_alloc(pe->pool, n, 0, &p) ? NULL : p;
}
static void pool_free(struct peer *pe, void *p)
{
	coh_pool_free(pe->pool, p);
}
static void *libc_alloc(struct peer *pe, size_t n)
{
	(void)pe;
	return __libc_malloc ? __libc_malloc(n) : malloc(n);
}
static void libc_free(struct peer *pe, void *p)
{
	(void)pe;
	if (__libc_free)
		__libc_free(p);
	else
		free(p);
}
static void *je_alloc(struct peer *pe, size_t n)
{
	(void)pe;
	return mallocx(n, 0);
}
static void je_free(struct peer *pe, void *p)
{
	(void)pe;
	dallocx(p, 0);
}
static void *mk_alloc(struct peer *pe, size_t n)
{
	return mk_malloc(pe->kind, n);
}
static void mk_free_one(struct peer *pe, void *p)
{
	mk_free(pe->kind, p);
}

/*
 * The other way to build a pool, measured beside ours: a jemalloc arena whose
 * extents come from coh_alloc() (extent hooks, jemalloc 5's extent_hooks_t,
 * declared here so that no jemalloc header is needed), used with a
 * per-thread explicit tcache: what memkind and UMF's jemalloc pool do.  It is
 * the lower bound of that design: the block bookkeeping a coh_pool keeps for
 * coh_lookup and for refusing a double free is not in it.
 */
struct je_hooks {
	void *(*alloc)(struct je_hooks *, void *, size_t, size_t, bool *, bool *, unsigned);
	bool (*dalloc)(struct je_hooks *, void *, size_t, bool, unsigned);
	void (*destroy)(struct je_hooks *, void *, size_t, bool, unsigned);
	bool (*commit)(struct je_hooks *, void *, size_t, size_t, size_t, unsigned);
	bool (*decommit)(struct je_hooks *, void *, size_t, size_t, size_t, unsigned);
	bool (*purge_lazy)(struct je_hooks *, void *, size_t, size_t, size_t, unsigned);
	bool (*purge_forced)(struct je_hooks *, void *, size_t, size_t, size_t, unsigned);
	bool (*split)(struct je_hooks *, void *, size_t, size_t, size_t, bool, unsigned);
	bool (*merge)(struct je_hooks *, void *, size_t, void *, size_t, bool, unsigned);
};
static coh_target *hook_target;
static unsigned hook_arena;
static _Thread_local int hook_tcache = -1;
#define JE_ARENA(a) ((int)(((unsigned)(a) + 1) << 20))
#define JE_TCACHE(t) ((int)(((unsigned)(t) + 2) << 8))

static void *hook_alloc(struct je_hooks *h, void *addr, size_t size, size_t align, bool *zero, bool *commit,
			unsigned ind)
{
	(void)h;
	(void)ind;
	void *p;
	if (addr || coh_alloc(hook_target, size, &COH_ALLOC_PROPS(.align = align), &p))
		return NULL;
	*zero = true;
	*commit = true;
	return p;
}
static bool hook_dalloc(struct je_hooks *h, void *addr, size_t size, bool committed, unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)committed, (void)ind;
	return true;   /* opt out: jemalloc keeps the extent for reuse */
}
static bool hook_split(struct je_hooks *h, void *addr, size_t size, size_t a, size_t b, bool committed,
		       unsigned ind)
{
	(void)h, (void)addr, (void)size, (void)a, (void)b, (void)committed, (void)ind;
	return false;  /* jemalloc may cut an extent: the allocation stays whole to us */
}
static bool hook_merge(struct je_hooks *h, void *a, size_t sa, void *b, size_t sb, bool committed, unsigned ind)
{
	(void)h, (void)a, (void)sa, (void)b, (void)sb, (void)committed, (void)ind;
	return true;   /* never across two allocations */
}
static struct je_hooks hooks = { .alloc = hook_alloc, .dalloc = hook_dalloc, .split = hook_split,
				 .merge = hook_merge };

static int hook_flags(void)
{
	if (hook_tcache < 0) {
		unsigned tc;
		size_t sz = sizeof(tc);
		if (mallctl("tcache.create", &tc, &sz, NULL, 0))
			return JE_ARENA(hook_arena) | JE_TCACHE(-1);
		hook_tcache = (int)tc;
	}
	return JE_ARENA(hook_arena) | JE_TCACHE(hook_tcache);
}
static void *hook_alloc_one(struct peer *pe, size_t n)
{
	(void)pe;
	return mallocx(n, hook_flags());
}
static void hook_free_one(struct peer *pe, void *p)
{
	(void)pe;
	dallocx(p, hook_flags());
}

static bool hooks_open(coh_target *t)
{
	struct je_hooks *h = &hooks;
	size_t sz = sizeof(hook_arena);
	hook_target = t;
	return mallctl && !mallctl("arenas.create", &hook_arena, &sz, &h, sizeof(h));
}

/* Opens the peers found on this machine: how many of peers[] are usable. */
static int peers_open(struct peer *peers, coh_pool *pool, coh_target *t)
{
	int n = 0;
	peers[n++] = (struct peer){ "coh_pool", pool_alloc, pool_free, NULL, pool };
	peers[n++] = (struct peer){ "glibc malloc", libc_alloc, libc_free, NULL, NULL };
	if (mallocx && dallocx)
		peers[n++] = (struct peer){ "jemalloc", je_alloc, je_free, NULL, NULL };
	if (mallocx && dallocx && hooks_open(t))
		peers[n++] = (struct peer){ "jemalloc arena on coh_alloc (extent hooks)", hook_alloc_one, hook_free_one,
					    NULL, NULL };
	void *mk = dlopen("libmemkind.so.0", RTLD_NOW | RTLD_LOCAL);
	if (mk && (mk_malloc = (void *(*)(void *, size_t))dlsym(mk, "memkind_malloc")) &&
	    (mk_free = (void (*)(void *, void *))dlsym(mk, "memkind_free"))) {
		void **def = dlsym(mk, "MEMKIND_DEFAULT"), **reg = dlsym(mk, "MEMKIND_REGULAR");
		if (def && *def)
			peers[n++] = (struct peer){ "memkind DEFAULT", mk_alloc, mk_free_one, *def, NULL };
		if (reg && *reg)
			peers[n++] = (struct peer){ "memkind REGULAR (node-bound)", mk_alloc, mk_free_one, *reg, NULL };
	}
	return n;
}

struct job {
	struct peer *pe;
	size_t size;
	int iters;
	double ns;
	pthread_barrier_t *bar;
};

/* alloc+free pairs; the block is written once, as a user would */
static void *run_job(void *arg)
{
	struct job *j = arg;
	if (j->bar)
		pthread_barrier_wait(j->bar);
	double t0 = bench_now_ns();
	for (int i = 0; i < j->iters; i++) {
		void *p = j->pe->alloc(j->pe, j->size);
		if (!p) {
			j->ns = -1;
			return NULL;
		}
		*(volatile char *)p = (char)i;
		j->pe->free(j->pe, p);
	}
	j->ns = (bench_now_ns() - t0) / j->iters;
	return NULL;
}

/* ns per alloc+free in each of nt threads at once (their mean). */
static double time_peer(struct peer *pe, size_t size, int iters, int nt)
{
	struct job jobs[MAXT];
	pthread_t th[MAXT];
	pthread_barrier_t bar;
	if (nt == 1) {
		jobs[0] = (struct job){ pe, size, iters, 0, NULL };
		run_job(&jobs[0]);
		return jobs[0].ns;
	}
	pthread_barrier_init(&bar, NULL, (unsigned)nt);
	for (int i = 0; i < nt; i++) {
		jobs[i] = (struct job){ pe, size, iters, 0, &bar };
		if (pthread_create(&th[i], NULL, run_job, &jobs[i]))
			return -1;
	}
	double sum = 0;
	for (int i = 0; i < nt; i++) {
		pthread_join(th[i], NULL);
		if (jobs[i].ns < 0)
			sum = -1e30;
		sum += jobs[i].ns;
	}
	pthread_barrier_destroy(&bar);
	return sum / nt;
}

static long rss_bytes(void)
{
	long pages = 0, res = 0;
	FILE *f = fopen("/proc/self/statm", "r");
	if (!f)
		return -1;
	if (fscanf(f, "%ld %ld", &pages, &res) != 2)
		res = -1;
	fclose(f);
	return res * sysconf(_SC_PAGESIZE);
}

/* RSS growth / bytes live after a mixed workload: N blocks of 16 B to
 * 4 KiB (and one in 64 of up to 64 KiB), every one written, then every
 * other one freed. */
static double overhead(struct peer *pe, int N, double *live_mib)
{
	void **v = malloc(N * sizeof(void *));
	size_t *sz = malloc(N * sizeof(size_t));
	if (!v || !sz) {
		free(v);
		free(sz);
		return -1;
	}
	unsigned seed = 12345;
	long r0 = rss_bytes();
	size_t live = 0;
	for (int i = 0; i < N; i++) {
		sz[i] = i % 64 == 0 ? 1 + (size_t)rand_r(&seed) % 65536 : 16 + (size_t)rand_r(&seed) % 4081;
		v[i] = pe->alloc(pe, sz[i]);
		if (v[i])
			memset(v[i], 1, sz[i]);
	}
	for (int i = 0; i < N; i++) {
		if (v[i] && i % 2)
			pe->free(pe, v[i]);
		else if (v[i])
			live += sz[i];
	}
	long r1 = rss_bytes();
	for (int i = 0; i < N; i += 2)
		if (v[i])
			pe->free(pe, v[i]);
	free(v);
	free(sz);
	*live_mib = (double)live / (1 << 20);
	return live ? (double)(r1 - r0) / (double)live : -1;
}

int bench_pool(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	coh_target *t;
	int e = bench_host_ctx(&ctx, &t);
	if (e)
		return e;
	coh_pool *pool = NULL;
	if (!t || (e = coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props),
					  .targets = &t, .ntargets = 1 }, &pool))) {
		coh_context_unref(ctx);
		return t ? e : -ENODEV;
	}
	struct peer peers[NPEER];
	int np = peers_open(peers, pool, t);
	static const size_t sizes[] = { 64, 4096 };
	int iters = o->quick ? 20000 : 200000, n = 0;
	for (int nt = 1; nt <= MAXT; nt++)
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			if (o->progress)
				o->progress(nt == 1 ? "pool: alloc+free, one thread, vs malloc, jemalloc, memkind"
						    : "pool: alloc+free, two threads at once");
			double tm[NPEER][ROUNDS];
			for (int round = 0; round < ROUNDS; round++)
				for (int k = 0; k < np; k++)
					tm[k][round] = time_peer(&peers[k], sizes[s], iters / ROUNDS, nt);
			double med[NPEER];
			for (int k = 0; k < np; k++) {
				qsort(tm[k], ROUNDS, sizeof(double), bench_cmp_double);
				med[k] = tm[k][ROUNDS / 2];
			}
			if (med[0] < 0) {
				coh_pool_destroy(pool);
				coh_context_unref(ctx);
				return -ENOMEM;
			}
			for (int k = 1; k < np && n < max; k++) {
				char name[96];
				snprintf(name, sizeof(name), "alloc+free %zu B, %d thread%s: coh_pool vs %s",
					 sizes[s], nt, nt > 1 ? "s" : "", peers[k].name);
				bench_set(&out[n++], "pool", name, med[0], "ns", peers[k].name, med[k],
					  k == 1 ? "<= 50 ns" : "-", k == 1 ? med[0] <= 50 : true);
			}
		}
	if (o->progress)
		o->progress("pool: RSS over bytes live after a mixed workload");
	double ov[NPEER], live = 0;
	for (int k = 0; k < np; k++)
		ov[k] = overhead(&peers[k], o->quick ? 20000 : 200000, &live);
	coh_pool_trim(pool);
	for (int k = 1; k < np && n < max; k++) {
		char name[96];
		snprintf(name, sizeof(name), "RSS growth / bytes live (%.0f MiB live): coh_pool vs %s", live,
			 peers[k].name);
		bench_set(&out[n], "pool", name, ov[0], "x", peers[k].name, ov[k], "-", true);
		snprintf(out[n++].ratio_name, sizeof(out[0].ratio_name), "size x");
	}
	coh_pool_destroy(pool);
	coh_context_unref(ctx);
	return n;
}
