/* SPDX-License-Identifier: MIT */
/*
 * The completion queue, the worker pool behind coh_migrate_async and the
 * batched calls, on the host backend: create/destroy, submit and reap many,
 * eventfd readiness with poll(), timeouts, bad input changing nothing,
 * 10 000 requests in flight on no more threads than the pool, several
 * threads submitting and reaping, and a fork child using its context.
 */
#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

#define PS 4096u

static coh_context *ctx;
static coh_target *t;
static unsigned char *buf;     /* 64 pages, a pattern */
#define NPAGES 64

static bool pattern_ok(void)
{
	for (size_t i = 0; i < NPAGES * PS; i++)
		if (buf[i] != (unsigned char)(i * 7 + 1))
			return false;
	return true;
}

static void *nothing(void *arg)
{
	return arg;
}

static void setup(void)
{
	/* a sanitizer's own helper thread starts with the first thread: not the pool's */
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, nothing, NULL), 0);
	pthread_join(th, NULL);
	ctx = t_ctx();
	t = t_node0(ctx);
	ck_assert_int_eq(coh_alloc(t, NPAGES * PS, NULL, (void **)&buf), 0);
	for (size_t i = 0; i < NPAGES * PS; i++)
		buf[i] = (unsigned char)(i * 7 + 1);
}

static void teardown(void)
{
	ck_assert_int_eq(coh_free(ctx, buf), 0);
	coh_context_unref(ctx);
}

static struct coh_migrate_req req(size_t page, uint64_t cookie)
{
	return (struct coh_migrate_req){ .addr = buf + page * PS, .len = PS, .dst = t, .cookie = cookie };
}

static bool fd_readable(int fd, int timeout_ms)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

START_TEST(create_destroy)
{
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	int fd = coh_queue_fd(q);
	ck_assert_int_ge(fd, 0);
	ck_assert(!fd_readable(fd, 0));
	ck_assert_int_eq(coh_queue_destroy(q), 0);
	/* with props, an older and a newer size */
	struct { struct coh_queue_props p; uint64_t more; } big = { { .size = sizeof(big) }, 0 };
	ck_assert_int_eq(coh_queue_create(ctx, &big.p, &q), 0);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
	big.more = 1;
	ck_assert_int_eq(coh_queue_create(ctx, &big.p, &q), -E2BIG);
	ck_assert_ptr_null(q);
	/* destroy with requests in flight waits for them */
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	struct coh_migrate_req r[8];
	for (int i = 0; i < 8; i++)
		r[i] = req((size_t)i, (uint64_t)i);
	ck_assert_int_eq(coh_queue_migrate(q, r, 8, sizeof(r[0])), 8);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
	ck_assert_int_eq(coh_free(ctx, buf), 0);   /* no reference left behind */
	ck_assert_int_eq(coh_alloc(t, NPAGES * PS, NULL, (void **)&buf), 0);
	for (size_t i = 0; i < NPAGES * PS; i++)
		buf[i] = (unsigned char)(i * 7 + 1);
}
END_TEST

START_TEST(submit_reap_many)
{
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	struct coh_migrate_req r[NPAGES];
	for (int i = 0; i < NPAGES; i++)
		r[i] = req((size_t)i, 1000u + (uint64_t)i);
	ck_assert_int_eq(coh_queue_migrate(q, r, NPAGES, sizeof(r[0])), NPAGES);
	bool seen[NPAGES] = { false };
	int got = 0;
	while (got < NPAGES) {
		ck_assert(fd_readable(coh_queue_fd(q), 10000));
		struct coh_completion c[16];
		int n = coh_queue_reap(q, c, 16, sizeof(c[0]), 0);
		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++) {
			ck_assert_int_eq(c[i].result, 0);
			uint64_t k = c[i].cookie - 1000u;
			ck_assert_uint_lt(k, NPAGES);
			ck_assert(!seen[k]);
			seen[k] = true;
			ck_assert_ptr_eq(c[i].addr, buf + k * PS);
			ck_assert_uint_eq(c[i].len, PS);
			ck_assert_ptr_eq(c[i].dst, t);
		}
		got += n;
	}
	/* all reaped: not readable, nothing to wait for */
	ck_assert(!fd_readable(coh_queue_fd(q), 0));
	struct coh_completion c;
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), 100), 0);
	ck_assert(pattern_ok());
	ck_assert_int_eq(coh_queue_destroy(q), 0);
}
END_TEST

START_TEST(readiness_and_sizes)
{
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	/* a larger request stride with zeroed tails, a smaller completion */
	struct { struct coh_migrate_req r; uint64_t pad[2]; } r2[3];
	memset(r2, 0, sizeof(r2));
	for (int i = 0; i < 3; i++)
		r2[i].r = req((size_t)i, 7u + (uint64_t)i);
	ck_assert_int_eq(coh_queue_migrate(q, &r2[0].r, 3, sizeof(r2[0])), 3);
	/* readable once the first completes, stays readable until all are reaped */
	ck_assert(fd_readable(coh_queue_fd(q), 10000));
	uint64_t small[2 * 3];   /* cookie and result only */
	int got = 0;
	while (got < 3) {
		int n = coh_queue_reap(q, (struct coh_completion *)(small + 2 * got), (size_t)(3 - got), 16, 10000);
		ck_assert_int_ge(n, 1);
		got += n;
		if (got < 3)
			continue;
	}
	for (int i = 0; i < 3; i++) {
		int res;
		memcpy(&res, &small[2 * i + 1], sizeof(res));
		ck_assert_int_eq(res, 0);
		ck_assert_uint_ge(small[2 * i], 7);
	}
	ck_assert(!fd_readable(coh_queue_fd(q), 0));
	/* a larger completion: the bytes past the library's struct are zeroed */
	ck_assert_int_eq(coh_queue_migrate(q, &r2[0].r, 1, sizeof(r2[0])), 1);
	struct { struct coh_completion c; uint64_t extra; } big;
	memset(&big, 0xff, sizeof(big));
	ck_assert_int_eq(coh_queue_reap(q, &big.c, 1, sizeof(big), -1), 1);
	ck_assert_uint_eq(big.extra, 0);
	ck_assert_int_eq(big.c.result, 0);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
}
END_TEST

START_TEST(timeouts)
{
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	struct coh_completion c;
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), 0), 0);
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), 50), 0);   /* nothing in flight: at once */
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), -1), 0);
	struct coh_migrate_req r = req(0, 1);
	ck_assert_int_eq(coh_queue_migrate(q, &r, 1, sizeof(r)), 1);
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), 10000), 1);
	ck_assert_int_eq(c.result, 0);
	/* handles: test and wait with a timeout */
	coh_migration *m;
	ck_assert_int_eq(coh_migrate_async(ctx, buf, PS, t, 0, &m), 0);
	int e = coh_migration_test(m);
	ck_assert(e == 0 || e == -EINPROGRESS);
	ck_assert_int_eq(coh_migration_wait(m, 10000), 0);
	ck_assert_int_eq(coh_migration_test(m), 0);
	coh_migration_free(m);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
}
END_TEST

/* ---- bad input: a clear error, and nothing changed ---- */
START_TEST(bad_input)
{
	coh_context *other = t_ctx();
	coh_target *t2 = t_node0(other);
	coh_queue *q, *qo, *scratch;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	ck_assert_int_eq(coh_queue_create(NULL, NULL, &scratch), -EINVAL);
	ck_assert_int_eq(coh_queue_create(ctx, NULL, NULL), -EFAULT);
	ck_assert_int_eq(coh_queue_create(ctx, &(struct coh_queue_props){ .size = sizeof(struct coh_queue_props), .flags = 1 }, &qo),
			 -EINVAL);
	ck_assert_ptr_null(qo);
	ck_assert_int_eq(coh_queue_create(other, NULL, &qo), 0);
	ck_assert_int_eq(coh_queue_fd(NULL), -EINVAL);
	int before = coh_alloc_count(ctx);

	struct coh_migrate_req ok = req(0, 1), r2[2];
	ck_assert_int_eq(coh_queue_migrate(NULL, &ok, 1, sizeof(ok)), -EINVAL);
	ck_assert_int_eq(coh_queue_migrate(q, NULL, 1, sizeof(ok)), -EFAULT);
	ck_assert_int_eq(coh_queue_migrate(q, &ok, 0, sizeof(ok)), -EINVAL);
	ck_assert_int_eq(coh_queue_migrate(q, &ok, 1, sizeof(ok) - 8), -EINVAL);
	ck_assert_int_eq(coh_queue_migrate(q, &ok, 1, sizeof(ok) + 4), -EINVAL);
	ck_assert_int_eq(coh_queue_migrate(q, &ok, SIZE_MAX / 8, sizeof(ok)), -EINVAL);
	/* one bad request of two: nothing submitted */
	r2[0] = ok;
	r2[1] = ok;
	r2[1].addr = (void *)0x1000;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -ENOENT);
	r2[1] = ok;
	r2[1].dst = t2;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EXDEV);
	r2[1] = ok;
	r2[1].addr = buf + 1;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EINVAL);
	r2[1] = ok;
	r2[1].len = 0;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EINVAL);
	r2[1] = ok;
	r2[1].addr = NULL;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EFAULT);
	r2[1] = ok;
	r2[1].flags = 0x100;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EINVAL);
	r2[1] = ok;
	r2[1].reserved = 1;
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EINVAL);
	r2[1] = ok;
	r2[1].len = NPAGES * PS + PS;   /* past the allocation */
	ck_assert_int_eq(coh_queue_migrate(q, r2, 2, sizeof(ok)), -EINVAL);
	struct { struct coh_migrate_req r; uint64_t tail; } big = { ok, 5 };
	ck_assert_int_eq(coh_queue_migrate(q, &big.r, 1, sizeof(big)), -E2BIG);
	/* nothing was submitted */
	struct coh_completion c;
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, sizeof(c), 0), 0);
	ck_assert(!fd_readable(coh_queue_fd(q), 0));

	ck_assert_int_eq(coh_queue_reap(NULL, &c, 1, sizeof(c), 0), -EINVAL);
	ck_assert_int_eq(coh_queue_reap(q, NULL, 1, sizeof(c), 0), -EFAULT);
	ck_assert_int_eq(coh_queue_reap(q, &c, 0, sizeof(c), 0), -EINVAL);
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, 8, 0), -EINVAL);
	ck_assert_int_eq(coh_queue_reap(q, &c, 1, 20, 0), -EINVAL);

	/* batches */
	int res[2] = { 99, 99 };
	ck_assert_int_eq(coh_migrate_batch(NULL, &ok, 1, sizeof(ok), res), -EINVAL);
	ck_assert_int_eq(coh_migrate_batch(ctx, NULL, 1, sizeof(ok), res), -EFAULT);
	ck_assert_int_eq(coh_migrate_batch(ctx, &ok, 1, sizeof(ok), NULL), -EFAULT);
	ck_assert_int_eq(coh_migrate_batch(ctx, &ok, 0, sizeof(ok), res), -EINVAL);
	ck_assert_int_eq(coh_migrate_batch(ctx, &ok, 1, 12, res), -EINVAL);
	ck_assert_int_eq(res[0], 99);
	r2[0] = ok;
	r2[1] = ok;
	r2[1].dst = t2;
	ck_assert_int_eq(coh_migrate_batch(ctx, r2, 2, sizeof(ok), res), -EXDEV);
	ck_assert_int_eq(res[0], 0);
	ck_assert_int_eq(res[1], -EXDEV);
	struct coh_extent ext[4];
	struct coh_query_range qr = { .size = sizeof(qr), .addr = buf, .len = PS, .ext = ext, .max = 4, .result = 77 };
	ck_assert_int_eq(coh_query_batch(NULL, &qr, 1, sizeof(ext[0])), -EINVAL);
	ck_assert_int_eq(coh_query_batch(ctx, NULL, 1, sizeof(ext[0])), -EFAULT);
	ck_assert_int_eq(coh_query_batch(ctx, &qr, 0, sizeof(ext[0])), -EINVAL);
	ck_assert_int_eq(coh_query_batch(ctx, &qr, 1, 4), -EINVAL);
	qr.size = 8;
	ck_assert_int_eq(coh_query_batch(ctx, &qr, 1, sizeof(ext[0])), -EINVAL);
	struct coh_query_range two[2] = { qr, qr };
	two[0].size = two[1].size = sizeof(qr);
	two[1].size = sizeof(qr) + 8;
	ck_assert_int_eq(coh_query_batch(ctx, two, 2, sizeof(ext[0])), -EINVAL);
	ck_assert_int_eq(two[0].result, 77);

	/* a batch answers each range as coh_query does, in one maps read */
	struct coh_extent bx[3][4], sx[4];
	struct coh_query_range br[3] = {
		{ .size = sizeof(br[0]), .addr = buf, .len = 2 * PS, .ext = bx[0], .max = 4 },
		{ .size = sizeof(br[0]), .addr = (void *)0x1000, .len = PS, .ext = bx[1], .max = 4 },   /* nothing mapped */
		{ .size = sizeof(br[0]), .addr = buf + PS + 1, .len = 10, .ext = bx[2], .max = 4 },
	};
	ck_assert_int_eq(coh_query_batch(ctx, br, 3, sizeof(bx[0][0])), 3);
	for (int i = 0; i < 3; i++) {
		int sn = coh_query(ctx, br[i].addr, br[i].len, sx, 4, sizeof(sx[0]));
		ck_assert_int_eq(br[i].result, sn);
		for (int k = 0; k < sn; k++)
			ck_assert(bx[i][k].start == sx[k].start && bx[i][k].length == sx[k].length &&
				  bx[i][k].kind == sx[k].kind && bx[i][k].target == sx[k].target);
	}

	/* double destroy, and destroy of NULL */
	ck_assert_int_eq(coh_queue_destroy(NULL), -EINVAL);
	ck_assert_int_eq(coh_queue_destroy(qo), 0);
	ck_assert_int_eq(coh_queue_destroy(qo), -EINVAL);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
	ck_assert_int_eq(coh_queue_destroy(q), -EINVAL);

	ck_assert_int_eq(coh_alloc_count(ctx), before);
	ck_assert(pattern_ok());
	coh_context_unref(other);
}
END_TEST

START_TEST(batches)
{
	struct coh_migrate_req r[NPAGES / 2];
	int res[NPAGES / 2];
	for (int i = 0; i < NPAGES / 2; i++)
		r[i] = (struct coh_migrate_req){ .addr = buf + (size_t)i * 2 * PS, .len = 2 * PS, .dst = t };
	ck_assert_int_eq(coh_migrate_batch(ctx, r, NPAGES / 2, sizeof(r[0]), res), NPAGES / 2);
	for (int i = 0; i < NPAGES / 2; i++)
		ck_assert_int_eq(res[i], 0);
	ck_assert(pattern_ok());
	struct coh_extent ext[3][4];
	struct coh_query_range qr[3];
	for (int i = 0; i < 3; i++)
		qr[i] = (struct coh_query_range){ .size = sizeof(qr[0]), .addr = buf + (size_t)i * 4 * PS, .len = 4 * PS,
						 .ext = ext[i], .max = 4 };
	qr[2].addr = (void *)0x1000;   /* an unmapped range: its own result */
	int n = coh_query_batch(ctx, qr, 3, sizeof(ext[0][0]));
	ck_assert_int_ge(n, 2);
	for (int i = 0; i < 2; i++) {
		ck_assert_int_ge(qr[i].result, 1);
		ck_assert_uint_eq(ext[i][0].start, (uintptr_t)(buf + (size_t)i * 4 * PS));
		struct coh_extent one[4];
		ck_assert_int_eq(coh_query(ctx, qr[i].addr, qr[i].len, one, 4, sizeof(one[0])), qr[i].result);
		ck_assert_int_eq(one[0].kind, ext[i][0].kind);
	}
}
END_TEST

/* ---- 10 000 in flight on the pool's threads ---- */
#define MANY 10000

START_TEST(many_handles_bounded)
{
	int base = t_thread_count();
	coh_migration **m = calloc(MANY, sizeof(*m));
	ck_assert_ptr_nonnull(m);
	int peak = base;
	for (int i = 0; i < MANY; i++) {
		ck_assert_int_eq(coh_migrate_async(ctx, buf + (size_t)(i % NPAGES) * PS, PS, t, 0, &m[i]), 0);
		if (i % 1000 == 0) {
			int n = t_thread_count();
			peak = n > peak ? n : peak;
		}
	}
	int n = t_thread_count();
	peak = n > peak ? n : peak;
	for (int i = 0; i < MANY; i++) {
		ck_assert_int_eq(coh_migration_wait(m[i], -1), 0);
		coh_migration_free(m[i]);
	}
	free(m);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int pool = cpus >= 4 ? 4 : (int)cpus;
	ck_assert_msg(peak - base <= pool, "%d threads beside the %d before (pool %d)", peak - base, base, pool);
	ck_assert(pattern_ok());
}
END_TEST

START_TEST(many_queued_bounded)
{
	int base = t_thread_count();
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	struct coh_migrate_req *r = calloc(MANY, sizeof(*r));
	for (int i = 0; i < MANY; i++)
		r[i] = req((size_t)(i % NPAGES), (uint64_t)i);
	ck_assert_int_eq(coh_queue_migrate(q, r, MANY, sizeof(r[0])), MANY);
	int peak = t_thread_count();
	char *seen = calloc(MANY, 1);
	struct coh_completion c[256];
	for (int got = 0; got < MANY;) {
		int n = coh_queue_reap(q, c, 256, sizeof(c[0]), -1);
		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++) {
			ck_assert_int_eq(c[i].result, 0);
			ck_assert_uint_lt(c[i].cookie, MANY);
			ck_assert(!seen[c[i].cookie]);
			seen[c[i].cookie] = 1;
		}
		got += n;
		int tc = t_thread_count();
		peak = tc > peak ? tc : peak;
	}
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	int pool = cpus >= 4 ? 4 : (int)cpus;
	ck_assert_msg(peak - base <= pool, "%d threads beside the %d before (pool %d)", peak - base, base, pool);
	free(seen);
	free(r);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
}
END_TEST

/* ---- several threads submitting and reaping one queue ---- */
#define SUBMITTERS 3
#define PER_THREAD 600
static coh_queue *shared_q;
static atomic_int reaped;

static void *submitter(void *arg)
{
	uint64_t id = (uint64_t)(uintptr_t)arg;
	for (int i = 0; i < PER_THREAD; i += 20) {
		struct coh_migrate_req r[20];
		for (int k = 0; k < 20; k++)
			r[k] = req((size_t)((i + k) % NPAGES), id * 100000u + (uint64_t)(i + k));
		if (coh_queue_migrate(shared_q, r, 20, sizeof(r[0])) != 20)
			return (void *)1;
	}
	return NULL;
}

static void *reaper(void *arg)
{
	(void)arg;
	struct coh_completion c[32];
	while (atomic_load(&reaped) < SUBMITTERS * PER_THREAD) {
		int n = coh_queue_reap(shared_q, c, 32, sizeof(c[0]), 20);
		if (n < 0)
			return (void *)1;
		for (int i = 0; i < n; i++)
			if (c[i].result != 0)
				return (void *)1;
		atomic_fetch_add(&reaped, n);
	}
	return NULL;
}

START_TEST(threads_submit_reap)
{
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &shared_q), 0);
	atomic_store(&reaped, 0);
	pthread_t s[SUBMITTERS], r[2];
	for (int i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&r[i], NULL, reaper, NULL), 0);
	for (int i = 0; i < SUBMITTERS; i++)
		ck_assert_int_eq(pthread_create(&s[i], NULL, submitter, (void *)(uintptr_t)(i + 1)), 0);
	void *rv;
	for (int i = 0; i < SUBMITTERS; i++) {
		pthread_join(s[i], &rv);
		ck_assert_ptr_null(rv);
	}
	for (int i = 0; i < 2; i++) {
		pthread_join(r[i], &rv);
		ck_assert_ptr_null(rv);
	}
	ck_assert_int_eq(atomic_load(&reaped), SUBMITTERS * PER_THREAD);
	ck_assert_int_eq(coh_queue_destroy(shared_q), 0);
	ck_assert(pattern_ok());
}
END_TEST

/* ---- fork: the child gets a usable context and queue ---- */
static int child_body(coh_queue *q)
{
	/* the parent's in-flight requests end here with -ECHILD or completed
	 * before the fork; either way each completes once */
	struct coh_completion c[64];
	int got = 0, n;
	while ((n = coh_queue_reap(q, c, 64, sizeof(c[0]), 0)) > 0)
		for (int i = 0; i < n; i++, got++)
			if (c[i].result != 0 && c[i].result != -ECHILD)
				return 10;
	if (n < 0)
		return 11;
#ifdef __SANITIZE_THREAD__
	/* ThreadSanitizer cannot start threads in the child of a threaded parent */
	return coh_queue_destroy(q) ? 17 : 0;
#endif
	/* the child's own requests run on a fresh pool */
	struct coh_migrate_req r[16];
	for (int i = 0; i < 16; i++)
		r[i] = req((size_t)i, 500u + (uint64_t)i);
	if (coh_queue_migrate(q, r, 16, sizeof(r[0])) != 16)
		return 12;
	for (int left = 16; left > 0;) {
		struct pollfd p = { .fd = coh_queue_fd(q), .events = POLLIN };
		if (poll(&p, 1, 10000) != 1)
			return 13;
		n = coh_queue_reap(q, c, 16, sizeof(c[0]), 0);
		if (n < 0)
			return 14;
		for (int i = 0; i < n; i++)
			if (c[i].result != 0 || c[i].cookie < 500)
				return 15;
		left -= n;
	}
	coh_migration *m;
	if (coh_migrate_async(ctx, buf, PS, t, 0, &m) || coh_migration_wait(m, 10000))
		return 16;
	coh_migration_free(m);
	if (coh_queue_destroy(q))
		return 17;
	if (!pattern_ok())
		return 18;
	return 0;
}

START_TEST(fork_child_uses_context)
{
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	struct coh_migrate_req *r = calloc(2000, sizeof(*r));
	for (int i = 0; i < 2000; i++)
		r[i] = req((size_t)(i % NPAGES), (uint64_t)i);
	ck_assert_int_eq(coh_queue_migrate(q, r, 2000, sizeof(r[0])), 2000);
	coh_migration *m;
	ck_assert_int_eq(coh_migrate_async(ctx, buf, PS, t, 0, &m), 0);
	int left = 2000;
#ifdef __SANITIZE_ADDRESS__
	/* this AddressSanitizer's allocator has no fork handlers: a worker in
	 * malloc at the fork would leave the child's heap locked.  Fork with
	 * the workers idle: everything completed and reaped. */
	ck_assert_int_eq(coh_migration_wait(m, -1), 0);
	for (struct coh_completion c1[64]; left > 0;) {
		int n = coh_queue_reap(q, c1, 64, sizeof(c1[0]), 10000);
		ck_assert_int_ge(n, 1);
		left -= n;
	}
#endif
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(child_body(q));
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	/* the parent's requests all complete in the parent, none lost to the child */
	ck_assert_int_eq(coh_migration_wait(m, -1), 0);
	coh_migration_free(m);
	struct coh_completion c[256];
	for (int got = 0; got < left;) {
		int n = coh_queue_reap(q, c, 256, sizeof(c[0]), 10000);
		ck_assert_int_ge(n, 1);
		for (int i = 0; i < n; i++)
			ck_assert_int_eq(c[i].result, 0);
		got += n;
	}
	ck_assert(!fd_readable(coh_queue_fd(q), 0));
	free(r);
	ck_assert_int_eq(coh_queue_destroy(q), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("queue");
	TCase *tc = tcase_create("queue");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, create_destroy);
	tcase_add_test(tc, submit_reap_many);
	tcase_add_test(tc, readiness_and_sizes);
	tcase_add_test(tc, timeouts);
	tcase_add_test(tc, bad_input);
	tcase_add_test(tc, batches);
	tcase_add_test(tc, many_handles_bounded);
	tcase_add_test(tc, many_queued_bounded);
	tcase_add_test(tc, threads_submit_reap);
	tcase_add_test(tc, fork_child_uses_context);
	suite_add_tcase(s, tc);
	return t_run(s);
}
