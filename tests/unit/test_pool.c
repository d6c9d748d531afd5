/* SPDX-License-Identifier: MIT */
/*
 * Pools (core/pool.c): size classes, alignment, lookups that name the pool
 * and the block, residency, pin- and fork-query of a block, bad input that
 * changes nothing, trim, many threads, a fork child that uses and destroys
 * the pool it inherited, and the fallback to the next target.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static coh_context *ctx;
static coh_target *t;

static coh_pool *pool_new(int policy, unsigned flags)
{
	coh_target *ts[1] = { t };
	coh_pool *p = NULL;
	ck_assert_int_eq(coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props),
			.targets = ts, .ntargets = 1, .fork_policy = policy, .flags = flags }, &p), 0);
	return p;
}

static struct coh_pool_stats stats_of(coh_pool *p)
{
	struct coh_pool_stats s = { .size = sizeof(s) };
	ck_assert_int_eq(coh_pool_stats(p, &s), 0);
	return s;
}

static void setup(void)
{
	ctx = t_ctx();
	t = t_node0(ctx);
}

static void teardown(void)
{
	coh_context_unref(ctx);
}

START_TEST(size_classes)
{
	coh_pool *p = pool_new(COH_FORK_COPY, 0);
	static const size_t sizes[] = { 1, 15, 16, 17, 64, 100, 128, 129, 1000, 4095, 4096, 4097, 40000, 65536, 65537, 300000 };
	void *b[sizeof(sizes) / sizeof(sizes[0])];
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		ck_assert_int_eq(coh_pool_alloc(p, sizes[i], 0, &b[i]), 0);
		ck_assert_uint_eq((uintptr_t)b[i] % 16, 0);
		memset(b[i], (int)i + 1, sizes[i]);
		struct coh_alloc_info info = { .size = sizeof(info) };
		ck_assert_int_eq(coh_lookup(ctx, (char *)b[i] + sizes[i] - 1, &info), 0);
		ck_assert_ptr_eq(info.pool, p);
		ck_assert_ptr_eq(info.block, b[i]);
		ck_assert_uint_ge(info.block_size, sizes[i]);
		ck_assert_uint_le(info.block_size, sizes[i] < 128 ? sizes[i] + 15 : sizes[i] + sizes[i] / 4 + 4096);
		if (sizes[i] == 64 || sizes[i] == 4096)
			ck_assert_uint_eq(info.block_size, sizes[i]);
	}
	struct coh_pool_stats s = stats_of(p);
	ck_assert_uint_eq(s.live_blocks, sizeof(sizes) / sizeof(sizes[0]));
	ck_assert_uint_eq(s.large, 2);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		for (size_t j = 0; j < sizes[i]; j += 97)
			ck_assert_uint_eq(((unsigned char *)b[i])[j], i + 1);
		ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
	}
	ck_assert_uint_eq(stats_of(p).live_blocks, 0);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
}
END_TEST

START_TEST(alignment)
{
	coh_pool *p = pool_new(COH_FORK_COPY, 0);
	static const size_t sizes[] = { 1, 48, 100, 3000, 5000 };
	for (size_t a = 1; a <= ((size_t)4 << 20); a <<= 1)
		for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
			void *b;
			ck_assert_int_eq(coh_pool_alloc(p, sizes[i], a, &b), 0);
			ck_assert_msg((uintptr_t)b % a == 0, "size %zu align %zu: %p", sizes[i], a, b);
			memset(b, 0x5a, sizes[i]);
			ck_assert_int_eq(coh_pool_free(p, b), 0);
		}
	ck_assert_int_eq(coh_pool_destroy(p), 0);
}
END_TEST

START_TEST(lookup_and_query)
{
	coh_pool *p = pool_new(COH_FORK_ZERO, 0);
	char *b, *c;
	ck_assert_int_eq(coh_pool_alloc(p, 200, 0, (void **)&b), 0);
	ck_assert_int_eq(coh_pool_alloc(p, 200, 0, (void **)&c), 0);
	memset(b, 1, 200);
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, b + 150, &info), 0);
	ck_assert_ptr_eq(info.pool, p);
	ck_assert_ptr_eq(info.block, b);
	ck_assert_uint_eq(info.block_size, 224);
	ck_assert_ptr_eq(info.target, t);
	ck_assert_int_eq(info.fork_policy, COH_FORK_ZERO);
	ck_assert_uint_eq(info.length, 2u << 20);   /* the chunk */
	ck_assert((uintptr_t)b - (uintptr_t)info.base < info.length);
	ck_assert_int_eq(coh_fork_policy_get(ctx, b), COH_FORK_ZERO);

	/* an older caller: its struct ends before the pool fields, nothing past it is written */
	unsigned char old[sizeof(struct coh_alloc_info) + 16];
	memset(old, 0xee, sizeof(old));
	size_t osz = offsetof(struct coh_alloc_info, pool);
	memcpy(old, &osz, sizeof(osz));
	ck_assert_int_eq(coh_lookup(ctx, b, (struct coh_alloc_info *)old), 0);
	for (size_t i = osz; i < sizeof(old); i++)
		ck_assert_uint_eq(old[i], 0xee);

	/* a free block of a live chunk: the pool is named, no block */
	ck_assert_int_eq(coh_pool_free(p, c), 0);
	ck_assert_int_eq(coh_lookup(ctx, c, &info), 0);
	ck_assert_ptr_eq(info.pool, p);
	ck_assert_ptr_null(info.block);
	ck_assert_uint_eq(info.block_size, 0);

	/* residency, pin-query and fork-query of a block */
	struct coh_extent e[4];
	int n = coh_query(ctx, b, 200, e, 4, sizeof(e[0]));
	ck_assert_int_ge(n, 1);
	ck_assert_uint_le(e[0].start, (uintptr_t)b);
	ck_assert(e[0].kind == COH_MEM_SYSTEM || e[0].kind == COH_MEM_SYSTEM_THP);
	struct coh_pin_extent pe[4];
	ck_assert_int_ge(coh_pin_query(ctx, b, 200, pe, 4, sizeof(pe[0])), 1);
	struct coh_fork_extent fe[4];
	ck_assert_int_ge(coh_fork_query(ctx, b, 200, fe, 4, sizeof(fe[0])), 1);
	ck_assert_int_eq(fe[0].policy, COH_FORK_ZERO);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_ZERO);

	/* migrating the pool moves its backing; blocks keep their addresses */
	ck_assert_int_eq(coh_pool_migrate(p, t, 0), 0);
	ck_assert_uint_eq((unsigned char)b[199], 1);
	ck_assert_int_eq(coh_pool_free(p, b), 0);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
}
END_TEST

START_TEST(bad_input)
{
	coh_pool *p = pool_new(COH_FORK_COPY, 0), *q = pool_new(COH_FORK_COPY, 0);
	coh_context *other = t_ctx();
	coh_target *to = t_node0(other);
	void *b, *qb, *big, *out = (void *)0x1;
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &b), 0);
	ck_assert_int_eq(coh_pool_alloc(q, 64, 0, &qb), 0);
	ck_assert_int_eq(coh_pool_alloc(p, 1 << 20, 0, &big), 0);
	memset(b, 7, 64);
	char *heap = malloc(64);
	struct coh_pool_stats s0 = stats_of(p);
	int count0 = coh_alloc_count(ctx);

	ck_assert_int_eq(coh_pool_alloc(NULL, 64, 0, &out), -EINVAL);
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, NULL), -EFAULT);
	ck_assert_int_eq(coh_pool_alloc(p, 0, 0, &out), -EINVAL);
	ck_assert_int_eq(coh_pool_alloc(p, 64, 3, &out), -EINVAL);
	ck_assert_int_eq(coh_pool_alloc(p, (size_t)-1, 0, &out), -EOVERFLOW);
	ck_assert_int_eq(coh_pool_alloc(p, 64, (size_t)1 << 63, &out), -EOVERFLOW);
	ck_assert_ptr_eq(out, (void *)0x1);
	ck_assert_int_eq(coh_pool_free(NULL, b), -EINVAL);
	ck_assert_int_eq(coh_pool_free(p, NULL), -EFAULT);
	ck_assert_int_eq(coh_pool_free(p, (char *)b + 8), -EINVAL);     /* inside a block */
	ck_assert_int_eq(coh_pool_free(p, (char *)big + 4096), -EINVAL); /* inside a large one */
	ck_assert_int_eq(coh_pool_free(p, heap), -ENOENT);              /* plain memory */
	ck_assert_int_eq(coh_pool_free(p, qb), -ENOENT);                /* another pool's */
	ck_assert_int_eq(coh_pool_free(p, (char *)b + 64), -ENOENT);    /* a free block */
	ck_assert_int_eq(coh_pool_trim(NULL), -EINVAL);
	ck_assert_int_eq(coh_pool_stats(NULL, &s0), -EINVAL);
	ck_assert_int_eq(coh_pool_stats(p, NULL), -EINVAL);
	ck_assert_int_eq(coh_pool_migrate(NULL, t, 0), -EINVAL);
	ck_assert_int_eq(coh_pool_migrate(p, NULL, 0), -EINVAL);
	ck_assert_int_eq(coh_pool_migrate(p, to, 0), -EXDEV);
	ck_assert_int_eq(coh_pool_destroy(NULL), -EINVAL);

	/* creation */
	coh_pool *np = (coh_pool *)0x1;
	coh_target *ts[2] = { t, NULL }, *tso[1] = { to };
#define PP(...) (&(struct coh_pool_props){ .size = sizeof(struct coh_pool_props), __VA_ARGS__ })
	ck_assert_int_eq(coh_pool_create(NULL, PP(.targets = ts, .ntargets = 1), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, NULL, &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 1), NULL), -EFAULT);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = NULL, .ntargets = 1), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 0), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 2), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = tso, .ntargets = 1), &np), -EXDEV);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 1, .fork_policy = 7), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 1, .flags = 0x100), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 1, .alloc_flags = 0x100), &np), -EINVAL);
	ck_assert_int_eq(coh_pool_create(ctx, PP(.targets = ts, .ntargets = 1,
						 .alloc_flags = COH_ALLOC_HUGE | COH_ALLOC_NOHUGE), &np), -EINVAL);
	struct { struct coh_pool_props p; uint64_t extra; } big_props = {
		.p = { .size = sizeof(big_props), .targets = ts, .ntargets = 1 }, .extra = 1 };
	ck_assert_int_eq(coh_pool_create(ctx, &big_props.p, &np), -E2BIG);
	ck_assert_ptr_eq(np, (coh_pool *)0x1);
#undef PP

	/* the pool's backing is the pool's: no coh_free, no other fork policy */
	struct coh_alloc_info ci = { .size = sizeof(ci) };
	ck_assert_int_eq(coh_lookup(ctx, b, &ci), 0);
	ck_assert_int_eq(coh_free(ctx, ci.base), -EINVAL);
	ck_assert_int_eq(coh_free(ctx, big), -EINVAL);
	ck_assert_int_eq(coh_fork_policy_set(ctx, ci.base, ci.length, COH_FORK_EXCLUDE), -EINVAL);
	ck_assert_int_eq(coh_fork_policy_get(ctx, b), COH_FORK_COPY);

	/* nothing changed: the same blocks, contents and backing; the pool still works */
	struct coh_pool_stats s1 = stats_of(p);
	ck_assert_int_eq(memcmp(&s0, &s1, sizeof(s0)), 0);
	ck_assert_int_eq(coh_alloc_count(ctx), count0);
	for (int i = 0; i < 64; i++)
		ck_assert_uint_eq(((unsigned char *)b)[i], 7);
	ck_assert_int_eq(coh_pool_free(p, b), 0);
	ck_assert_int_eq(coh_pool_free(p, b), -ENOENT);   /* double free */
	ck_assert_int_eq(coh_pool_free(p, big), 0);
	ck_assert_int_eq(coh_pool_free(p, big), -ENOENT);
	ck_assert_uint_eq(stats_of(p).live_blocks, 0);
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &b), 0);
	ck_assert_int_eq(coh_pool_free(p, b), 0);
	free(heap);
	ck_assert_int_eq(coh_pool_destroy(q), 0);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
	coh_context_unref(other);
}
END_TEST

START_TEST(trim)
{
	coh_pool *p = pool_new(COH_FORK_COPY, _i ? COH_POOL_NO_TCACHE : 0);
	enum { N = 100000 };
	void **b = malloc(N * sizeof(void *));
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &b[i]), 0);
	struct coh_pool_stats s = stats_of(p);
	ck_assert_uint_eq(s.live_blocks, N);
	ck_assert_uint_eq(s.live_bytes, (uint64_t)N * 64);
	ck_assert_uint_ge(s.chunks, 3);
	ck_assert_uint_eq(s.backing_bytes, s.chunks << 21);
	ck_assert_int_eq(coh_alloc_count(ctx), (int)s.chunks);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
	s = stats_of(p);
	ck_assert_uint_eq(s.live_blocks, 0);
	ck_assert_uint_le(s.backing_bytes, (4u << 20) + (2u << 20));   /* the default keeps 4 MiB of empty chunks */
	ck_assert_int_ge(coh_pool_trim(p), 1);
	s = stats_of(p);
	ck_assert_uint_eq(s.chunks, 0);
	ck_assert_uint_eq(s.backing_bytes, 0);
	ck_assert_uint_eq(s.cached_bytes, 0);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	ck_assert_int_eq(coh_pool_trim(p), 0);
	/* and it works after a trim */
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &b[0]), 0);
	ck_assert_int_eq(coh_pool_free(p, b[0]), 0);
	free(b);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
}
END_TEST

/* A fragmented chunk: refills then come from whole free groups, fresh
 * groups and odd blocks; none of them may hand out a live block twice, and
 * each free must still be refused a second time. */
static int ptr_cmp(const void *a, const void *b)
{
	uintptr_t x = *(const uintptr_t *)a, y = *(const uintptr_t *)b;
	return x < y ? -1 : x > y;
}

START_TEST(fragmented_refills)
{
	enum { N = 3000 };
	static const size_t sizes[] = { 16, 64, 4096 };
	size_t sz = sizes[_i];
	coh_pool *p = pool_new(COH_FORK_COPY, 0);
	void **b = calloc(2 * N, sizeof(void *));
	ck_assert_ptr_nonnull(b);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(coh_pool_alloc(p, sz, 0, &b[i]), 0);
		memset(b[i], (unsigned char)i, sz);
	}
	/* free in a pattern that leaves partial and whole free groups */
	for (int i = 0; i < N; i++)
		if (i % 3 == 1 || (i / 128) % 4 == 2) {
			ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
			ck_assert_int_eq(coh_pool_free(p, b[i]), -ENOENT);
			b[i] = NULL;
		}
	ck_assert_int_ge(coh_pool_trim(p), 0);   /* the cache's blocks back into the chunks */
	for (int i = N; i < 2 * N; i++) {
		ck_assert_int_eq(coh_pool_alloc(p, sz, 0, &b[i]), 0);
		memset(b[i], 0xee, sz);
	}
	for (int i = 0; i < N; i++)   /* the survivors kept their bytes */
		if (b[i])
			ck_assert_uint_eq(((unsigned char *)b[i])[sz - 1], (unsigned char)i);
	uintptr_t *v = malloc(2 * N * sizeof(uintptr_t));
	ck_assert_ptr_nonnull(v);
	int n = 0;
	for (int i = 0; i < 2 * N; i++)
		if (b[i])
			v[n++] = (uintptr_t)b[i];
	qsort(v, (size_t)n, sizeof(v[0]), ptr_cmp);
	for (int i = 1; i < n; i++)
		ck_assert_uint_ge(v[i] - v[i - 1], sz);   /* no block handed out twice */
	struct coh_pool_stats st = stats_of(p);
	ck_assert_uint_eq(st.live_blocks, (uint64_t)n);
	for (int i = 0; i < 2 * N; i++)
		if (b[i]) {
			ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
			ck_assert_int_eq(coh_pool_free(p, b[i]), -ENOENT);
		}
	ck_assert_uint_eq(stats_of(p).live_blocks, 0);
	free(v);
	free(b);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
}
END_TEST

/* coh_pool_trim on one thread: another live thread's cache gives its
 * blocks back at its next call on the pool. */
static coh_pool *trim_pool;
static pthread_barrier_t trim_bar;
static void *trim_worker(void *arg)
{
	(void)arg;
	void *b[40];
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(coh_pool_alloc(trim_pool, 1024, 0, &b[i]), 0);
	for (int i = 0; i < 40; i++)
		ck_assert_int_eq(coh_pool_free(trim_pool, b[i]), 0);   /* into this thread's cache */
	pthread_barrier_wait(&trim_bar);   /* main: stats, trim */
	pthread_barrier_wait(&trim_bar);
	void *x;
	ck_assert_int_eq(coh_pool_alloc(trim_pool, 64, 0, &x), 0);   /* any call hands the cache back */
	ck_assert_int_eq(coh_pool_free(trim_pool, x), 0);
	pthread_barrier_wait(&trim_bar);   /* main: stats */
	pthread_barrier_wait(&trim_bar);
	return NULL;
}

START_TEST(trim_other_threads)
{
	trim_pool = pool_new(COH_FORK_COPY, 0);
	pthread_barrier_init(&trim_bar, NULL, 2);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, trim_worker, NULL), 0);
	pthread_barrier_wait(&trim_bar);
	ck_assert_uint_ge(stats_of(trim_pool).cached_bytes, 40 * 1024);
	ck_assert_int_ge(coh_pool_trim(trim_pool), 0);
	ck_assert_uint_ge(stats_of(trim_pool).cached_bytes, 40 * 1024);   /* still the owner's */
	pthread_barrier_wait(&trim_bar);
	pthread_barrier_wait(&trim_bar);
	struct coh_pool_stats st = stats_of(trim_pool);
	ck_assert_uint_le(st.cached_bytes, 64 * 64);   /* the 1 KiB blocks went back: one refill of 64 B left */
	ck_assert_uint_eq(st.live_blocks, 0);
	ck_assert_int_ge(coh_pool_trim(trim_pool), 1);   /* and their chunk empties */
	pthread_barrier_wait(&trim_bar);
	pthread_join(th, NULL);
	pthread_barrier_destroy(&trim_bar);
	ck_assert_int_eq(coh_pool_destroy(trim_pool), 0);
}
END_TEST

/* ---- threads ---- */
#define NTHREADS 8
#define PER 2000
static coh_pool *tp;
static void *shared[NTHREADS][PER];
static pthread_barrier_t bar;

static void *worker(void *arg)
{
	unsigned id = (unsigned)(uintptr_t)arg, seed = id * 7919u + 1;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < PER; i++) {
			size_t sz = 1 + rand_r(&seed) % (i % 50 == 0 ? 100000 : 600);
			void *b;
			if (coh_pool_alloc(tp, sz, 0, &b))
				return (void *)1;
			memset(b, (int)id, sz < 64 ? sz : 64);
			shared[id][i] = b;
			if (i % 3 == 0) {   /* some are freed by their own thread at once */
				if (coh_pool_free(tp, b))
					return (void *)2;
				shared[id][i] = NULL;
			}
		}
		pthread_barrier_wait(&bar);
		/* the rest are freed by the next thread: blocks cross caches */
		unsigned from = (id + 1) % NTHREADS;
		for (int i = 0; i < PER; i++) {
			unsigned char *b = shared[from][i];
			if (!b)
				continue;
			if (b[0] != from)
				return (void *)3;
			if (coh_pool_free(tp, b))
				return (void *)4;
			if (coh_pool_free(tp, b) != -ENOENT)   /* a second free is refused */
				return (void *)5;
		}
		pthread_barrier_wait(&bar);
	}
	return NULL;
}

START_TEST(threads)
{
	tp = pool_new(COH_FORK_COPY, 0);
	pthread_t th[NTHREADS];
	pthread_barrier_init(&bar, NULL, NTHREADS);
	for (uintptr_t i = 0; i < NTHREADS; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker, (void *)i), 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *r;
		pthread_join(th[i], &r);
		ck_assert_ptr_null(r);
	}
	pthread_barrier_destroy(&bar);
	struct coh_pool_stats s = stats_of(tp);
	ck_assert_uint_eq(s.live_blocks, 0);
	ck_assert_uint_eq(s.cached_bytes, 0);   /* exiting threads gave their caches back */
	ck_assert_int_ge(coh_pool_trim(tp), 1);
	ck_assert_uint_eq(stats_of(tp).backing_bytes, 0);
	ck_assert_int_eq(coh_pool_destroy(tp), 0);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
}
END_TEST

/* ---- fork ---- */
static pthread_barrier_t fbar;
static void *cacher(void *arg)
{
	coh_pool *p = arg;
	void *b[10];
	for (int i = 0; i < 10; i++)
		coh_pool_alloc(p, 64, 0, &b[i]);
	for (int i = 0; i < 10; i++)
		coh_pool_free(p, b[i]);   /* kept in this thread's cache */
	pthread_barrier_wait(&fbar);  /* alive across the fork */
	pthread_barrier_wait(&fbar);
	return NULL;
}

static int child_checks(coh_pool *p, char **b, int n, int policy)
{
	for (int i = 0; i < n; i++) {
		struct coh_alloc_info info = { .size = sizeof(info) };
		int e = coh_lookup(ctx, b[i], &info);
		if (policy == COH_FORK_EXCLUDE) {
			if (e != -ENOENT)
				return 10;
			continue;
		}
		if (e || info.pool != p || info.block != b[i])
			return 11;
		if (b[i][0] != (char)(i + 1) && policy != COH_FORK_ZERO)
			return 12;
	}
	char *nb[50];
	for (int i = 0; i < 50; i++) {
		if (coh_pool_alloc(p, 100, 0, (void **)&nb[i]))
			return 13;
		memset(nb[i], 0x33, 100);
		struct coh_alloc_info ni = { .size = sizeof(ni) }, oi = { .size = sizeof(oi) };
		if (coh_lookup(ctx, nb[i], &ni) || ni.block != nb[i])
			return 20;
		for (int j = 0; policy == COH_FORK_SHARE && j < n; j++)
			if (coh_lookup(ctx, b[j], &oi) || oi.base == ni.base)
				return 14;   /* SHARE: never from a chunk the parent still allocates in */
	}
	if (policy != COH_FORK_EXCLUDE)
		for (int i = 0; i < n; i++)
			if (coh_pool_free(p, b[i]))
				return 15;
	for (int i = 0; i < 50; i++)
		if (coh_pool_free(p, nb[i]))
			return 16;
	struct coh_pool_stats s = { .size = sizeof(s) };
	if (coh_pool_stats(p, &s) || s.live_blocks)
		return 17;
	if (coh_pool_destroy(p))
		return 18;
	return coh_alloc_count(ctx) == 0 ? 0 : 19;
}

START_TEST(fork_child)
{
	static const int policies[] = { COH_FORK_COPY, COH_FORK_SHARE, COH_FORK_EXCLUDE, COH_FORK_ZERO };
	int policy = policies[_i];
	coh_pool *p = pool_new(policy, 0);
	pthread_barrier_init(&fbar, NULL, 2);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, cacher, p), 0);
	pthread_barrier_wait(&fbar);
	char *b[20];
	for (int i = 0; i < 20; i++) {
		ck_assert_int_eq(coh_pool_alloc(p, 100, 0, (void **)&b[i]), 0);
		memset(b[i], i + 1, 100);
	}
	ck_assert_uint_gt(stats_of(p).cached_bytes, 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_checks(p, b, 20, policy));
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s child: status %d", coh_fork_policy_name(policy),
		      WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	pthread_barrier_wait(&fbar);
	pthread_join(th, NULL);
	pthread_barrier_destroy(&fbar);
	for (int i = 0; i < 20; i++) {
		if (policy != COH_FORK_SHARE)
			ck_assert_int_eq(b[i][99], i + 1);
		ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
	}
	ck_assert_int_eq(coh_pool_destroy(p), 0);
}
END_TEST

START_TEST(fallback)
{
	coh_target *ts[2] = { t, t };
	uint64_t limits[2] = { 2u << 20, 0 };
	coh_pool *p;
	ck_assert_int_eq(coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props),
			.targets = ts, .ntargets = 2, .target_limits = limits }, &p), 0);
	void *b[3];
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &b[0]), 0);    /* a chunk from the first */
	ck_assert_uint_eq(stats_of(p).fallbacks, 0);
	ck_assert_int_eq(coh_pool_alloc(p, 4096, 0, &b[1]), 0);  /* the first is full: from the second */
	ck_assert_uint_eq(stats_of(p).fallbacks, 1);
	ck_assert_int_eq(coh_pool_alloc(p, 1 << 20, 0, &b[2]), 0);
	ck_assert_uint_eq(stats_of(p).fallbacks, 2);
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(coh_pool_free(p, b[i]), 0);
	ck_assert_int_eq(coh_pool_destroy(p), 0);

	/* every target at its limit: -ENOMEM, nothing taken */
	uint64_t tiny[1] = { 4096 };
	ck_assert_int_eq(coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props),
			.targets = ts, .ntargets = 1, .target_limits = tiny }, &p), 0);
	void *x = (void *)0x1;
	ck_assert_int_eq(coh_pool_alloc(p, 64, 0, &x), -ENOMEM);
	ck_assert_ptr_eq(x, (void *)0x1);
	ck_assert_uint_eq(stats_of(p).backing_bytes, 0);
	ck_assert_int_eq(coh_pool_destroy(p), 0);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pool");
	TCase *tc = tcase_create("pool");
	tcase_set_timeout(tc, 120);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, size_classes);
	tcase_add_test(tc, alignment);
	tcase_add_test(tc, lookup_and_query);
	tcase_add_test(tc, bad_input);
	tcase_add_loop_test(tc, trim, 0, 2);
	tcase_add_loop_test(tc, fragmented_refills, 0, 3);
	tcase_add_test(tc, trim_other_threads);
	tcase_add_test(tc, threads);
	tcase_add_loop_test(tc, fork_child, 0, 4);
	tcase_add_test(tc, fallback);
	suite_add_tcase(s, tc);
	return t_run(s);
}
