/* SPDX-License-Identifier: MIT */
/*
 * Conformance: the concurrent group.  Migrations in flight together, with
 * CPU writers and readers, queries, long and short pins and frees running
 * beside them; two threads migrating one range; threads allocating at once;
 * and the lifetimes around the memory: a child that exits holding memory,
 * a context dropped with live allocations, two contexts side by side.
 *
 * Every case checks the data from the CPU after each step and, where the
 * target has COH_CAP_DEVICE_ACCESS, from the device as well (intact()).
 * Ranges are small and rounds few: the group stays well under 20 s a target
 * in the TCG VM.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pinhelp.h"

#include "suite.h"

#define ROUNDS 4     /* ping-pong rounds of the *-during-migrate cases */
#define MAXDEST 16

/* The unit of a range: a page, and at least one device checksum block. */
static size_t unit(void)
{
	return ps > COH_SUM_BLOCK ? ps : COH_SUM_BLOCK;
}

/* ---- where this target's memory can go ---- */

struct dests {
	coh_target *u[MAXDEST];   /* other targets a migration of t's memory reached */
	int n;
	bool back;                /* and back to t */
};

/* Tries each other target with a small allocation, the way check_migrate does. */
static void find_dests(coh_target *t, struct dests *d)
{
	memset(d, 0, sizeof(*d));
	void *p;
	size_t len = 4 * unit();
	if (alloc_plain(t, len, &p))
		return;
	fill(p, len, 90);
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (u != t && (coh_target_caps(u) & COH_CAP_MIGRATE) && d->n < MAXDEST &&
		    coh_migrate(ctx, p, len, u, 0) == 0)
			d->u[d->n++] = u;
	d->back = (coh_target_caps(t) & COH_CAP_MIGRATE) && coh_migrate(ctx, p, len, t, 0) == 0;
	coh_free(ctx, p);
}

/* Two places to move memory between: another target and t, or two others. */
static bool two_places(coh_target *t, const struct dests *d, coh_target **a, coh_target **b)
{
	if (d->n == 0 || (!d->back && d->n < 2))
		return false;
	*a = d->u[0];
	*b = d->back ? t : d->u[1];
	return true;
}

static const char *no_places(const struct dests *d)
{
	return d->n ? "this memory reaches one other target and cannot come back: nothing to move between"
		    : "no other target takes this memory";
}

/* Another target with COH_CAP_MIGRATE_ASYNC that takes the memory, else NULL. */
static coh_target *async_dest(const struct dests *d)
{
	for (int i = 0; i < d->n; i++)
		if (coh_target_caps(d->u[i]) & COH_CAP_MIGRATE_ASYNC)
			return d->u[i];
	return NULL;
}

/* ---- the data, from the CPU and from the device ---- */

static void say(char *why, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void say(char *why, size_t n, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, n, fmt, ap);
	va_end(ap);
}

/* [p, p+len) holds want, as the CPU reads it and, where t has device access,
 * as t's device sums it (a device that cannot reach the memory where it is
 * now, -EFAULT, checks nothing).  false with the reason in why. */
static bool intact(coh_context *c, coh_target *t, const unsigned char *p, const unsigned char *want, size_t len,
		   char *why, size_t whylen)
{
	if (coh_target_caps(t) & COH_CAP_DEVICE_ACCESS) {
		size_t nb = len / COH_SUM_BLOCK;
		uint64_t *sums = calloc(nb, sizeof(*sums));
		if (!sums) {
			say(why, whylen, "out of memory");
			return false;
		}
		int e = coh_device_access(c, t, (void *)p, len, COH_DEVICE_SUM, 0, sums, nb);
		size_t bad = nb;
		for (size_t i = 0; e == 0 && i < nb && bad == nb; i++)
			if (sums[i] != coh_block_sum(want + i * COH_SUM_BLOCK))
				bad = i;
		free(sums);
		if (e && e != -EFAULT) {
			say(why, whylen, "device read: %s", coh_strerror(e));
			return false;
		}
		if (bad != nb) {
			say(why, whylen, "the device reads block %zu wrong", bad);
			return false;
		}
	}
	for (size_t i = 0; i < len; i++)
		if (p[i] != want[i]) {
			say(why, whylen, "the CPU reads byte %zu as %#x, want %#x", i, p[i], want[i]);
			return false;
		}
	return true;
}

/* The populated pages of [p, p+len) are on dst (a target without a NUMA node
 * may be unnamed where the backend cannot tell). */
static bool all_on(const void *p, size_t len, const coh_target *dst, char *why, size_t whylen)
{
	struct coh_extent x[64];
	int n = coh_query(ctx, p, len, x, 64, sizeof(x[0]));
	if (n < 1) {
		say(why, whylen, "query: %s", coh_strerror(n));
		return false;
	}
	for (int i = 0; i < n; i++) {
		if (x[i].kind == COH_MEM_NOT_POPULATED)
			continue;
		if (x[i].target != dst && !(x[i].target == NULL && coh_target_numa_node(dst) < 0)) {
			say(why, whylen, "a page at +%zu is on %s (%s), not %s", (size_t)(x[i].start - (uintptr_t)p),
			    x[i].target ? coh_target_name(x[i].target) : "-", coh_mem_kind_name(x[i].kind),
			    coh_target_name(dst));
			return false;
		}
	}
	return true;
}

/* Moves [p, p+len) to a, b, a, b, ... (2 * rounds moves).  -EBUSY (pages
 * in use could not move; the data stays intact) is counted, not an error.
 * 0, or the first other error. */
static int pingpong(void *p, size_t len, coh_target *a, coh_target *b, int rounds, int *moved, int *busy)
{
	*moved = *busy = 0;
	for (int i = 0; i < 2 * rounds; i++) {
		int e = coh_migrate(ctx, p, len, i % 2 ? b : a, 0);
		if (e == -EBUSY)
			(*busy)++;
		else if (e)
			return e;
		else
			(*moved)++;
	}
	return 0;
}

/* ---- threads beside the migrations ---- */

struct side {
	coh_target *t;
	unsigned char *p;
	const unsigned char *want;
	size_t len;
	atomic_int stop;
	atomic_int ready;       /* threads that did their first round */
	atomic_int failed;
	pthread_mutex_t lock;
	char err[192];          /* the first failure, under lock */
	int fd;                 /* short pins: the O_DIRECT file */
};

struct worker {
	struct side *s;
	int id;
	long rounds;
	uint64_t counts[64];    /* writers: increments per page */
};

static void side_fail(struct side *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void side_fail(struct side *s, const char *fmt, ...)
{
	pthread_mutex_lock(&s->lock);
	if (!atomic_load(&s->failed)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(s->err, sizeof(s->err), fmt, ap);
		va_end(ap);
		atomic_store(&s->failed, 1);
	}
	pthread_mutex_unlock(&s->lock);
}

/* Loops fn until stop, at least once; counts a thread ready after its first round. */
static void worker_loop(struct worker *w, bool (*fn)(struct worker *))
{
	do {
		if (!fn(w))
			break;
		if (w->rounds++ == 0)
			atomic_fetch_add(&w->s->ready, 1);
	} while (!atomic_load(&w->s->stop));
	if (w->rounds == 0)
		atomic_fetch_add(&w->s->ready, 1);
}

/* Writer w owns the cache line at offset 64 * (id + 1) of every page. */
static volatile uint64_t *counter(struct side *s, int id, size_t page)
{
	return (volatile uint64_t *)(s->p + page * unit() + 64 * (size_t)(id + 1));
}

static bool write_round(struct worker *w)
{
	size_t np = w->s->len / unit();
	for (size_t i = 0; i < np; i++) {
		(*counter(w->s, w->id, i))++;
		w->counts[i]++;
	}
	return true;
}

static bool read_round(struct worker *w)
{
	const volatile unsigned char *p = w->s->p;
	for (size_t i = 0; i < w->s->len; i += 8)
		if (p[i] != w->s->want[i] || p[i + 7] != w->s->want[i + 7]) {
			side_fail(w->s, "a reader saw byte %zu as %#x, want %#x", i, p[i], w->s->want[i]);
			return false;
		}
	return true;
}

/* The extents begin at p and follow each other to p+len exactly. */
static bool covers(struct side *s, const char *what, uintptr_t start, size_t length, uintptr_t *at)
{
	if (start != *at) {
		side_fail(s, "%s: an extent starts at +%zd, expected +%zu", what, (ssize_t)(start - (uintptr_t)s->p),
			  (size_t)(*at - (uintptr_t)s->p));
		return false;
	}
	*at += length;
	return true;
}

static bool covered(struct side *s, const char *what, uintptr_t at)
{
	if (at != (uintptr_t)s->p + s->len) {
		side_fail(s, "%s: extents end at +%zd of %zu", what, (ssize_t)(at - (uintptr_t)s->p), s->len);
		return false;
	}
	return true;
}

/* coh_query answers -EIO when the page map gave an inconsistent answer (a
 * page moved under it): documented and transient. */
static bool query_round(struct worker *w)
{
	struct side *s = w->s;
	struct coh_extent x[64];
	int n = coh_query(ctx, s->p, s->len, x, 64, sizeof(x[0]));
	if (n == -EIO)
		return true;
	if (n < 1) {
		side_fail(s, "coh_query: %s", coh_strerror(n));
		return false;
	}
	uintptr_t at = (uintptr_t)s->p;
	for (int i = 0; i < n; i++) {
		if (!covers(s, "query", x[i].start, x[i].length, &at))
			return false;
		if (x[i].kind == COH_MEM_UNMAPPED || !coh_mem_kind_name(x[i].kind)) {
			side_fail(s, "query: a page at +%zu is %s", (size_t)(x[i].start - (uintptr_t)s->p),
				  coh_mem_kind_name(x[i].kind) ? coh_mem_kind_name(x[i].kind) : "of no kind");
			return false;
		}
	}
	return covered(s, "query", at);
}

static bool pinfork_round(struct worker *w)
{
	struct side *s = w->s;
	struct coh_pin_extent pe[64];
	struct coh_fork_extent fe[64];
	int n = coh_pin_query(ctx, s->p, s->len, pe, 64, sizeof(pe[0]));
	if (n != -EIO) {
		if (n < 1) {
			side_fail(s, "coh_pin_query: %s", coh_strerror(n));
			return false;
		}
		uintptr_t at = (uintptr_t)s->p;
		for (int i = 0; i < n; i++) {
			if (!covers(s, "pin-query", pe[i].start, pe[i].length, &at))
				return false;
			if (!coh_pin_answer_name(pe[i].short_term) || !coh_pin_answer_name(pe[i].long_term) ||
			    !pe[i].reason || pe[i].kind == COH_MEM_UNMAPPED) {
				side_fail(s, "pin-query: answers %d/%d, kind %s", pe[i].short_term, pe[i].long_term,
					  coh_mem_kind_name(pe[i].kind));
				return false;
			}
		}
		if (!covered(s, "pin-query", at))
			return false;
	}
	n = coh_fork_query(ctx, s->p, s->len, fe, 64, sizeof(fe[0]));
	if (n == -EIO)
		return true;
	if (n < 1) {
		side_fail(s, "coh_fork_query: %s", coh_strerror(n));
		return false;
	}
	uintptr_t at = (uintptr_t)s->p;
	for (int i = 0; i < n; i++) {
		if (!covers(s, "fork-query", fe[i].start, fe[i].length, &at))
			return false;
		if (fe[i].policy != first_policy(s->t) || !coh_child_view_name(fe[i].child_view) || !fe[i].reason) {
			side_fail(s, "fork-query: policy %d (allocated with %d), child view %d", fe[i].policy,
				  first_policy(s->t), fe[i].child_view);
			return false;
		}
	}
	return covered(s, "fork-query", at);
}

/* O_DIRECT both ways: the file holds want, so reading it into the range
 * writes the same bytes, and writing the range out must give want again. */
static bool directio_round(struct worker *w)
{
	struct side *s = w->s;
	long r = directio_into(s->fd, s->p, s->len);
	if (r != (long)s->len) {
		side_fail(s, "O_DIRECT read into the range: %ld (%s)", r, r < 0 ? coh_strerror((int)r) : "short");
		return false;
	}
	r = directio_from(s->fd, s->p, s->len);
	if (r != (long)s->len) {
		side_fail(s, "O_DIRECT write from the range: %ld (%s)", r, r < 0 ? coh_strerror((int)r) : "short");
		return false;
	}
	return true;
}

static void *writer_main(void *arg) { worker_loop(arg, write_round); return NULL; }
static void *reader_main(void *arg) { worker_loop(arg, read_round); return NULL; }
static void *query_main(void *arg) { worker_loop(arg, query_round); return NULL; }
static void *pinfork_main(void *arg) { worker_loop(arg, pinfork_round); return NULL; }
static void *directio_main(void *arg) { worker_loop(arg, directio_round); return NULL; }

/* Starts n threads of fn on s, waits until each did a round, moves the range
 * back and forth between a and b, stops and joins them.  0 or the migration
 * error; s->failed says whether a thread failed. */
static int beside(struct side *s, void *(*fn)(void *), struct worker *w, int n, coh_target *a, coh_target *b,
		  int *moved, int *busy)
{
	pthread_t th[4];
	int started = 0;
	*moved = *busy = 0;
	for (int i = 0; i < n; i++) {
		w[i] = (struct worker){ .s = s, .id = i };
		if (pthread_create(&th[i], NULL, fn, &w[i]))
			break;
		started++;
	}
	if (started < n) {
		side_fail(s, "pthread_create failed");
		atomic_store(&s->stop, 1);
	}
	while (atomic_load(&s->ready) < started && !atomic_load(&s->failed))
		sched_yield();
	int e = started == n ? pingpong(s->p, s->len, a, b, ROUNDS, moved, busy) : 0;
	atomic_store(&s->stop, 1);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	return e;
}

static void side_init(struct side *s, coh_target *t, unsigned char *p, const unsigned char *want, size_t len)
{
	memset(s, 0, sizeof(*s));
	s->t = t;
	s->p = p;
	s->want = want;
	s->len = len;
	s->fd = -1;
	atomic_init(&s->stop, 0);
	atomic_init(&s->ready, 0);
	atomic_init(&s->failed, 0);
	pthread_mutex_init(&s->lock, NULL);
}

/* An allocation of n units on t holding fill(seed), and want the same. */
static int alloc_filled(coh_target *t, size_t len, unsigned seed, unsigned char **p, unsigned char **want)
{
	*want = malloc(len);
	if (!*want)
		return -ENOMEM;
	int e = alloc_plain(t, len, (void **)p);
	if (e) {
		*p = NULL;
		return e;
	}
	fill(*want, len, seed);
	memcpy(*p, *want, len);
	return 0;
}

/* ---- 1-2: asynchronous migrations ---- */

static void check_async_many(coh_target *t, const struct dests *d)
{
	const char *name = "async-many";
	unsigned char *p[8] = { NULL }, *want = NULL;
	coh_migration *m[8] = { NULL };
	char why[192];
	bool whole = false;
	coh_target *dst = async_dest(d);
	if (!dst) {
		report(t, name, SKIP, "%s", d->n ? "no other target this memory reaches migrates asynchronously"
						 : "no other target takes this memory");
		return;
	}
	/* 8 parts of one allocation; where the backend moves whole allocations
	 * only (device-dax: whole chunks, -EINVAL for a part), 8 allocations */
	size_t part = 4 * unit(), len = 8 * part;
	int e = alloc_filled(t, len, 31, &p[0], &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	e = coh_migrate(ctx, p[0], part, dst, 0);
	CHECK(e == 0 || e == -EINVAL, "migrating a part of an allocation to %s: %s", coh_target_name(dst), coh_strerror(e));
	whole = e == -EINVAL;
	if (whole) {
		coh_free(ctx, p[0]);
		for (int i = 0; i < 8; i++) {
			e = alloc_plain(t, part, (void **)&p[i]);
			CHECK(e == 0, "coh_alloc %d of 8: %s", i, coh_strerror(e));
			memcpy(p[i], want + i * part, part);
		}
	} else {
		for (int i = 1; i < 8; i++)
			p[i] = p[0] + i * part;
	}
	coh_target *back = d->back && (coh_target_caps(t) & COH_CAP_MIGRATE_ASYNC) ? t : NULL;
	for (int i = 0; i < d->n && !back; i++)
		if (d->u[i] != dst && (coh_target_caps(d->u[i]) & COH_CAP_MIGRATE_ASYNC))
			back = d->u[i];
	coh_target *to[2] = { dst, back };
	for (int leg = 0; leg < 2 && to[leg]; leg++) {
		for (int i = 0; i < 8; i++) {
			e = coh_migrate_async(ctx, p[i], part, to[leg], 0, &m[i]);
			CHECK(e == 0, "migration %d of 8 to %s did not start: %s", i, coh_target_name(to[leg]),
			      coh_strerror(e));
		}
		for (int i = 0; i < 8; i++) {
			e = coh_migration_wait(m[i], -1);
			coh_migration_free(m[i]);
			m[i] = NULL;
			CHECK(e == 0, "migration %d of 8 to %s: %s", i, coh_target_name(to[leg]), coh_strerror(e));
		}
		/* where they are first: a CPU read faults device-private pages back */
		for (int i = 0; i < 8; i++)
			CHECK(all_on(p[i], part, to[leg], why, sizeof(why)), "range %d after 8 migrations to %s: %s", i,
			      coh_target_name(to[leg]), why);
		for (int i = 0; i < 8; i++) {
			CHECK(intact(ctx, t, p[i], want + i * part, part, why, sizeof(why)), "range %d after 8 migrations "
			      "to %s: %s", i, coh_target_name(to[leg]), why);
		}
	}
	report(t, name, PASS, "8 %s in flight at once to %s%s%s", whole ? "allocations" : "parts of an allocation",
	       coh_target_name(dst), back ? ", then to " : "", back ? coh_target_name(back) : "");
out:
	for (int i = 0; i < 8; i++)
		coh_migration_free(m[i]);
	for (int i = 0; i < 8; i++)
		if (p[i] && (i == 0 || whole))
			coh_free(ctx, p[i]);
	free(want);
}

/* An asynchronous destination: another target, else t itself (the handle's
 * rules are the same); NULL after reporting the case skipped. */
static coh_target *async_somewhere(coh_target *t, const struct dests *d, const char *name)
{
	coh_target *dst = async_dest(d);
	if (!dst && (coh_target_caps(t) & COH_CAP_MIGRATE_ASYNC) && (coh_target_caps(t) & COH_CAP_ALLOC))
		dst = t;
	if (!dst)
		report(t, name, SKIP, "%s", !(coh_target_caps(t) & COH_CAP_ALLOC) ? "no alloc capability"
					   : "no target this memory reaches migrates asynchronously");
	return dst;
}

static long ms_since(const struct timespec *a)
{
	struct timespec b;
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a->tv_sec) * 1000 + (b.tv_nsec - a->tv_nsec) / 1000000;
}

static void check_async_test_wait(coh_target *t, const struct dests *d)
{
	const char *name = "async-test-wait";
	unsigned char *p = NULL, *want = NULL;
	coh_migration *m = NULL, *more[4] = { NULL };
	char why[192];
	coh_target *dst = async_somewhere(t, d, name);
	if (!dst)
		return;
	int count0 = coh_alloc_count(ctx);
	size_t len = 32 * unit();
	int e = alloc_filled(t, len, 32, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	e = coh_migrate_async(ctx, p, len, dst, 0, &m);
	CHECK(e == 0, "coh_migrate_async to %s: %s", coh_target_name(dst), coh_strerror(e));
	int polls = 0, timeouts = 0;
	struct timespec t0;
	for (;;) {
		e = coh_migration_test(m);
		CHECK(e == 0 || e == -EINPROGRESS, "coh_migration_test: %s", coh_strerror(e));
		if (e == 0)
			break;
		polls++;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		e = coh_migration_wait(m, 5);
		CHECK(e == 0 || e == -ETIMEDOUT, "coh_migration_wait(5 ms): %s", coh_strerror(e));
		if (e == -ETIMEDOUT) {
			timeouts++;
			CHECK(ms_since(&t0) >= 4, "coh_migration_wait(5 ms) timed out after %ld ms", ms_since(&t0));
		}
	}
	/* done: every later answer is the same, and waiting does not wait */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	CHECK(coh_migration_wait(m, 0) == 0 && coh_migration_wait(m, -1) == 0 && coh_migration_wait(m, 1000) == 0 &&
	      coh_migration_test(m) == 0, "a completed migration's result changed");
	CHECK(ms_since(&t0) < 500, "waiting on a completed migration took %ld ms", ms_since(&t0));
	CHECK(all_on(p, len, dst, why, sizeof(why)), "%s", why);
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the migration: %s", why);
	coh_migration_free(m);
	m = NULL;
	CHECK(coh_migration_test(NULL) == -EINVAL && coh_migration_wait(NULL, 0) == -EINVAL,
	      "a NULL handle not refused with -EINVAL");
	coh_migration_free(NULL);
	/* handles freed without their result collected: free waits for them */
	for (int i = 0; i < 4; i++) {
		coh_target *to = i % 2 && d->back && (coh_target_caps(t) & COH_CAP_MIGRATE_ASYNC) ? t : dst;
		e = coh_migrate_async(ctx, p, len, to, 0, &more[i]);
		CHECK(e == 0, "coh_migrate_async to %s: %s", coh_target_name(to), coh_strerror(e));
		coh_migration_free(more[i]);
		more[i] = NULL;
	}
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after 4 handles freed unwaited: %s", why);
	e = coh_free(ctx, p);
	p = NULL;
	CHECK(e == 0, "coh_free once every handle is freed: %s", coh_strerror(e));
	CHECK(coh_alloc_count(ctx) == count0, "%d allocations live, %d before", coh_alloc_count(ctx), count0);
	report(t, name, PASS, "to %s: %d poll(s) in progress, %d wait(s) timed out; 4 handles freed unwaited", coh_target_name(dst),
	       polls, timeouts);
out:
	coh_migration_free(m);
	for (int i = 0; i < 4; i++)
		coh_migration_free(more[i]);
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* ---- 3-6: writers, readers and queries beside migrations ---- */

/* A target of the /dev/kfd emulator (tests/doubles/kfdemu): it cannot see
 * pins taken through the kernel, and its moves to device-private VRAM are
 * not atomic against CPU writes (its README: a write between its copy and
 * its MADV_DONTNEED is lost; the kernel blocks it with migration entries). */
static bool kfd_emulated(const coh_target *t)
{
	return getenv("KFDEMU_ROOT") && !strcmp(coh_target_backend(t), "amd");
}

/* The case's skip for lack of alloc or of two places; false when skipped. */
static bool can_pingpong(coh_target *t, const char *name, const struct dests *d, coh_target **a, coh_target **b)
{
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return false;
	}
	if (!two_places(t, d, a, b)) {
		report(t, name, SKIP, "%s", no_places(d));
		return false;
	}
	return true;
}

static void check_writers(coh_target *t, const struct dests *d)
{
	const char *name = "writers-during-migrate";
	unsigned char *p = NULL, *want = NULL;
	coh_target *a, *b;
	char why[192];
	struct side s;
	struct worker w[2];
	if (!can_pingpong(t, name, d, &a, &b))
		return;
	for (int i = 0; i < 2; i++) {
		const coh_target *u = i ? b : a;
		if (kfd_emulated(u) && coh_target_kind(u) == COH_KIND_DEVICE_PRIVATE) {
			report(t, name, SKIP, "the /dev/kfd emulator's moves to device-private VRAM lose CPU writes made during "
			       "the copy (tests/doubles/kfdemu/README.md); the kernel blocks them");
			return;
		}
	}
	size_t len = 16 * unit(), np = 16;
	int e = alloc_filled(t, len, 33, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	for (size_t i = 0; i < np; i++)
		for (int id = 0; id < 2; id++) {
			memset(want + i * unit() + 64 * (size_t)(id + 1), 0, 8);
			memset(p + i * unit() + 64 * (size_t)(id + 1), 0, 8);
		}
	side_init(&s, t, p, want, len);
	int moved, busy;
	e = beside(&s, writer_main, w, 2, a, b, &moved, &busy);
	pthread_mutex_destroy(&s.lock);
	CHECK(e == 0, "migrating while 2 threads write: %s", coh_strerror(e));
	CHECK(!atomic_load(&s.failed), "%s", s.err);
	for (size_t i = 0; i < np; i++)
		for (int id = 0; id < 2; id++)
			memcpy(want + i * unit() + 64 * (size_t)(id + 1), &w[id].counts[i], 8);
	for (size_t i = 0; i < np; i++)
		for (int id = 0; id < 2; id++)
			CHECK(*counter(&s, id, i) == w[id].counts[i], "writer %d's counter in page %zu is %llu, it wrote %llu times: "
			      "writes lost", id, i, (unsigned long long)*counter(&s, id, i), (unsigned long long)w[id].counts[i]);
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the writers: %s", why);
	report(t, name, PASS, "%s <-> %s: %d moved, %d busy; %ld + %ld rounds of writes, none lost", coh_target_name(a),
	       coh_target_name(b), moved, busy, w[0].rounds, w[1].rounds);
out:
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* Readers, coh_query, pin and fork queries, or O_DIRECT beside the migrations. */
static void check_beside(coh_target *t, const struct dests *d, const char *name, void *(*fn)(void *), int nthreads,
			 const char *what)
{
	unsigned char *p = NULL, *want = NULL;
	coh_target *a, *b;
	char why[192];
	struct side s;
	struct worker w[2];
	if (!can_pingpong(t, name, d, &a, &b))
		return;
	size_t len = 16 * unit();
	int e = alloc_filled(t, len, 34, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	side_init(&s, t, p, want, len);
	int moved, busy;
	e = beside(&s, fn, w, nthreads, a, b, &moved, &busy);
	pthread_mutex_destroy(&s.lock);
	CHECK(e == 0, "migrating beside %s: %s", what, coh_strerror(e));
	CHECK(!atomic_load(&s.failed), "%s", s.err);
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the migrations: %s", why);
	report(t, name, PASS, "%s <-> %s: %d moved, %d busy; %ld round(s) of %s", coh_target_name(a), coh_target_name(b),
	       moved, busy, w[0].rounds + (nthreads > 1 ? w[1].rounds : 0), what);
out:
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* ---- 7-8: pins beside migrations ---- */

/* A file of len bytes of fill(seed) for the pin holder to read. */
static int pattern_file(size_t len, unsigned seed)
{
	char path[] = "/tmp/coh-conf-XXXXXX";
	int fd = mkstemp(path);
	if (fd < 0)
		return -errno;
	unlink(path);
	unsigned char *b = malloc(len);
	if (!b) {
		close(fd);
		return -ENOMEM;
	}
	fill(b, len, seed);
	long r = pwrite(fd, b, len, 0);
	free(b);
	if (r != (long)len) {
		close(fd);
		return -EIO;
	}
	return fd;
}

static void check_pin_beside(coh_target *t, const struct dests *d)
{
	const char *name = "pin-during-migrate";
	unsigned char *p = NULL, *want = NULL;
	char why[192];
	struct longpin lp = { .ring_fd = -1 };
	int fd = -1;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	if (kfd_emulated(t)) {
		report(t, name, SKIP, "the /dev/kfd emulator cannot see pins taken by the kernel");
		return;
	}
	if (!longpin_available()) {
		report(t, name, SKIP, "io_uring unavailable: cannot take a long-term pin here");
		return;
	}
	if (d->n == 0) {
		report(t, name, SKIP, "no other target takes this memory");
		return;
	}
	size_t len = 16 * unit(), half = len / 2;
	int e = alloc_filled(t, len, 35, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	if (d->back)
		CHECK(coh_migrate(ctx, p, len, t, 0) == 0, "migrate back to the target");
	e = longpin_take(&lp, p, half);
	if (e) {
		struct coh_pin_extent pe[4];
		int n = coh_pin_query(ctx, p, half, pe, 4, sizeof(pe[0]));
		report(t, name, SKIP, "a long-term pin of this memory is refused (%s); pin-query: %s", coh_strerror(e),
		       n > 0 ? pe[0].reason : coh_strerror(n));
		goto out;
	}
	fd = pattern_file(half, 36);
	CHECK(fd >= 0, "a file for the pin holder: %s", coh_strerror(fd));
	int refused = 0, moved = 0, last = 0;
	coh_target *to[MAXDEST + 1];
	int nto = 0;
	for (int i = 0; i < d->n; i++)
		to[nto++] = d->u[i];
	if (d->back)
		to[nto++] = t;
	for (int i = 0; i < nto; i++) {
		e = coh_migrate(ctx, p, len, to[i], 0);
		CHECK(e == 0 || e == -EBUSY, "migrating half-pinned memory to %s: %s (documented: 0 or -EBUSY)",
		      coh_target_name(to[i]), coh_strerror(e));
		if (e == 0) {
			moved++;
			CHECK(all_on(p, len, to[i], why, sizeof(why)), "migration to %s answered 0, yet %s", coh_target_name(to[i]),
			      why);
		} else {
			refused++;
			last = e;
		}
		CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after migrating to %s (%s): %s", coh_target_name(to[i]),
		      coh_strerror(e), why);
	}
	/* the pin holder still works: the device's write reaches what the CPU reads */
	long r = longpin_read(&lp, fd, p, half, 0);
	CHECK(r == (long)half, "io_uring read into the pinned buffer: %ld (%s)", r, r < 0 ? coh_strerror((int)r) : "short");
	fill(want, half, 36);
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the pin holder's read: %s", why);
	longpin_drop(&lp);
	report(t, name, PASS, "%d migration(s) of a half-pinned range: %d refused (%s), %d done; the pin holder's read "
	       "lands where the CPU reads", nto, refused, refused ? coh_strerror(last) : "-", moved);
out:
	longpin_drop(&lp);
	if (fd >= 0)
		close(fd);
	if (p)
		coh_free(ctx, p);
	free(want);
}

static void check_short_pin_beside(coh_target *t, const struct dests *d)
{
	const char *name = "short-pin-during-migrate";
	unsigned char *p = NULL, *want = NULL;
	coh_target *a, *b;
	char why[192], path[64];
	struct side s;
	struct worker w[1];
	int fd = -1;
	if (!can_pingpong(t, name, d, &a, &b))
		return;
	if (strstr(coh_target_model(t), "CUDA double")) {
		report(t, name, SKIP, "the CUDA driver double cannot fault pages in for GUP");
		return;
	}
	fd = directio_open(path, sizeof(path));
	if (fd < 0) {
		report(t, name, SKIP, "O_DIRECT unavailable in this folder: %s", coh_strerror(fd));
		return;
	}
	size_t len = 16 * unit();
	int e = alloc_filled(t, len, 37, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	struct coh_pin_extent pe[4];
	int n = coh_pin_query(ctx, p, len, pe, 4, sizeof(pe[0]));
	CHECK(n >= 1, "pin-query: %s", coh_strerror(n));
	if (pe[0].short_term == COH_PIN_NEVER || pe[0].short_term == COH_PIN_UNKNOWN) {
		report(t, name, SKIP, "pin-query says a short-term pin is %s: %s", coh_pin_answer_name(pe[0].short_term),
		       pe[0].reason);
		goto out;
	}
	long r = directio_from(fd, p, len);
	CHECK(r == (long)len, "O_DIRECT write of the pattern: %ld", r);
	side_init(&s, t, p, want, len);
	s.fd = fd;
	int moved, busy;
	e = beside(&s, directio_main, w, 1, a, b, &moved, &busy);
	pthread_mutex_destroy(&s.lock);
	CHECK(e == 0, "migrating beside O_DIRECT: %s", coh_strerror(e));
	CHECK(!atomic_load(&s.failed), "%s", s.err);
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the migrations: %s", why);
	void *back = NULL;   /* O_DIRECT: an aligned buffer */
	CHECK(posix_memalign(&back, unit(), len) == 0, "out of memory");
	r = pread(fd, back, len, 0);
	bool same_file = r == (long)len && !memcmp(back, want, len);
	free(back);
	CHECK(same_file, "the file O_DIRECT wrote from the range differs (%ld bytes)", r);
	report(t, name, PASS, "%s <-> %s: %d moved, %d busy; %ld O_DIRECT round(s) both ways", coh_target_name(a),
	       coh_target_name(b), moved, busy, w[0].rounds);
out:
	directio_close(fd, path);
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* ---- 9: free while an asynchronous migration holds the memory ---- */

static void check_free_during_async(coh_target *t, const struct dests *d)
{
	const char *name = "free-during-async";
	unsigned char *p = NULL, *want = NULL;
	coh_migration *m = NULL;
	char why[192];
	coh_target *dst = async_somewhere(t, d, name);
	if (!dst)
		return;
	int count0 = coh_alloc_count(ctx);
	size_t len = 32 * unit();
	int e = alloc_filled(t, len, 38, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	e = coh_migrate_async(ctx, p, len, dst, 0, &m);
	CHECK(e == 0, "coh_migrate_async to %s: %s", coh_target_name(dst), coh_strerror(e));
	e = coh_free(ctx, p);
	CHECK(e == -EBUSY, "coh_free with a migration handle live: %s, documented -EBUSY", e ? coh_strerror(e) : "freed");
	e = coh_migration_wait(m, -1);
	CHECK(e == 0, "the migration: %s", coh_strerror(e));
	e = coh_free(ctx, p);
	CHECK(e == -EBUSY, "coh_free after the wait, before the handle is freed: %s, documented -EBUSY",
	      e ? coh_strerror(e) : "freed");
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the refused frees: %s", why);
	coh_migration_free(m);
	m = NULL;
	e = coh_free(ctx, p);
	CHECK(e == 0, "coh_free once the handle is freed: %s", coh_strerror(e));
	p = NULL;
	CHECK(coh_alloc_count(ctx) == count0, "%d allocations live, %d before", coh_alloc_count(ctx), count0);
	report(t, name, PASS, "to %s: -EBUSY while the handle lives (also after the wait), then freed", coh_target_name(dst));
out:
	coh_migration_free(m);
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* ---- 10-12: processes and contexts ---- */

/* The target of context c named like t, or NULL. */
static coh_target *same_named(coh_context *c, const coh_target *t)
{
	return coh_target_find(c, coh_target_name(t));
}

/* Every target of ctx is in c under its name, and c has no others. */
static bool same_names(coh_context *c, char *why, size_t whylen)
{
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (!same_named(c, u)) {
			say(why, whylen, "%s is not rediscovered", coh_target_name(u));
			return false;
		}
	if (coh_target_count(c) != coh_target_count(ctx)) {
		say(why, whylen, "%d targets, the first context has %d", coh_target_count(c), coh_target_count(ctx));
		return false;
	}
	return true;
}

#ifdef __SANITIZE_THREAD__
static bool kfd_emulated_any(void)
{
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (kfd_emulated(u))
			return true;
	return false;
}
#endif

struct child_says {
	int inherited;     /* coh_alloc in the inherited context: 0 or -errno */
	int own;           /* in a context of its own: 0, -errno, or 1 when the target is missing there */
	char what[96];
};

static void child_work(coh_target *t, int wfd, bool own_ok)
{
	(void)own_ok;
	struct child_says cs = { 0 };
	size_t len = 8 * unit();
	unsigned char *q;
#ifdef __SANITIZE_THREAD__
	if (!own_ok && kfd_emulated_any()) {
		/* the emulator's munmap takes its lock, held across fork: ThreadSanitizer reports it */
		cs.inherited = cs.own = 2;
		if (write(wfd, &cs, sizeof(cs)) != (ssize_t)sizeof(cs))
			_exit(2);
		_exit(0);
	}
#endif
	cs.inherited = alloc_plain(t, len, (void **)&q);
	if (cs.inherited == 0) {
		fill(q, len, 41);
		if (!same(q, len, 41))
			snprintf(cs.what, sizeof(cs.what), "the inherited context's new memory reads back wrong");
	}
	coh_context *c;
#ifdef __SANITIZE_THREAD__
	if (!own_ok) {
		cs.own = 2;
		if (write(wfd, &cs, sizeof(cs)) != (ssize_t)sizeof(cs))
			_exit(2);
		_exit(cs.what[0] ? 1 : 0);
	}
#endif
	cs.own = coh_context_create(NULL, &c);
	if (cs.own == 0) {
		coh_target *u = same_named(c, t);
		cs.own = u ? alloc_plain(u, len, (void **)&q) : 1;
		if (cs.own == 0) {
			fill(q, len, 42);
			if (!same(q, len, 42))
				snprintf(cs.what, sizeof(cs.what), "its own context's memory reads back wrong");
		}
	}
	if (write(wfd, &cs, sizeof(cs)) != (ssize_t)sizeof(cs))
		_exit(2);
	_exit(cs.what[0] ? 1 : 0);   /* nothing freed, no context dropped */
}

static void check_exit_live(coh_target *t)
{
	const char *name = "exit-with-live-memory";
	unsigned char *p = NULL, *want = NULL;
	char why[192];
	int pfd[2] = { -1, -1 };
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 16 * unit();
	int e = alloc_filled(t, len, 40, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	int count0 = coh_alloc_count(ctx);
	/* Under ThreadSanitizer a child of a process whose nvidia backend or
	 * /dev/kfd emulator is loaded inherits a lock they hold across fork
	 * (backends/nvidia/fork.c nv_atfork_prepare; kfdemu at_prepare): a new
	 * context there draws a lock-order report (reported, not a data race) */
	bool own_ok = !tsan_fork_lock_inherited();
	CHECK(pipe(pfd) == 0, "pipe");
	fflush(stdout);
	pid_t pid = fork();
	CHECK(pid >= 0, "fork");
	if (pid == 0) {
		close(pfd[0]);
		child_work(t, pfd[1], own_ok);
	}
	close(pfd[1]);
	pfd[1] = -1;
	struct child_says cs;
	ssize_t got = read(pfd[0], &cs, sizeof(cs));
	int st;
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	CHECK(got == (ssize_t)sizeof(cs), "the child said nothing (status %#x)", st);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the child exited with status %#x: %s", st, cs.what);
	CHECK(cs.inherited == 0 || cs.inherited == -ECHILD || cs.inherited == 2, "coh_alloc in the child's inherited context: %s "
	      "(documented: 0, or -ECHILD where the device belongs to the parent)", coh_strerror(cs.inherited));
	CHECK(cs.own == 0 || cs.own == 1 || cs.own == 2 || cs.own == -ECHILD, "coh_alloc in the child's own context: %s",
	      coh_strerror(cs.own));
	CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after the child exited: %s", why);
	CHECK(coh_alloc_count(ctx) == count0, "%d allocations live in the parent, %d before", coh_alloc_count(ctx), count0);
	char own[128];
	if (cs.own == 0)
		snprintf(own, sizeof(own), "a context of its own allocated and wrote there");
	else if (cs.own == 2)
		snprintf(own, sizeof(own), "its own context skipped: ThreadSanitizer and a lock held across fork");
	else
		snprintf(own, sizeof(own), "its own context skipped: the %s backend cannot work in a forked child (%s)",
			 coh_target_backend(t), cs.own == 1 ? "the target is not discovered there" : coh_strerror(cs.own));
	report(t, name, PASS, "the child exited 0 holding memory: inherited context %s; %s; the parent's memory intact",
	       cs.inherited == 2 ? "skipped (ThreadSanitizer, the kfd emulator's lock held across fork)"
	       : cs.inherited ? "-ECHILD" : "allocated", own);
out:
	if (pfd[0] >= 0)
		close(pfd[0]);
	if (pfd[1] >= 0)
		close(pfd[1]);
	if (p)
		coh_free(ctx, p);
	free(want);
}

/* An allocation of c's target u holding fill(seed). */
static int alloc_in(coh_target *u, size_t len, unsigned seed, unsigned char **q)
{
	int e = alloc_plain(u, len, (void **)q);
	if (e)
		*q = NULL;
	else
		fill(*q, len, seed);
	return e;
}

/* mincore answers ENOMEM for a range with nothing mapped. */
static bool unmapped(const void *q, size_t len)
{
	unsigned char vec[64];
	return len / ps <= sizeof(vec) && mincore((void *)q, len, vec) == -1 && errno == ENOMEM;
}

/* Gone: nothing mapped there, or nothing there can be read (a driver that
 * keeps its address reservation after a free: the CUDA driver). */
static bool gone(const void *q, size_t len)
{
	return unmapped(q, len) || !readable(q, len);
}

/* What coh_free leaves behind on t: gone (1), or still readable (0). */
static int freed_is_gone(coh_target *t, size_t len)
{
	unsigned char *b = NULL;
	if (alloc_in(t, len, 49, &b) || coh_free(ctx, b))
		return -1;
	return gone(b, len);
}

static void check_context_again(coh_target *t, const struct dests *d)
{
	const char *name = "context-again";
	coh_context *c2 = NULL, *c3 = NULL;
	unsigned char *q[2] = { NULL }, *r = NULL, *mine = NULL, *want = NULL, *w3 = NULL;
	char why[192];
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 8 * unit();
	int e = alloc_filled(t, len, 50, &mine, &want);
	CHECK(e == 0, "coh_alloc in the first context: %s", coh_strerror(e));
	e = coh_context_create(NULL, &c2);
	CHECK(e == 0, "a second context: %s", coh_strerror(e));
	CHECK(same_names(c2, why, sizeof(why)), "second context: %s", why);
	coh_target *t2 = same_named(c2, t);
	for (int i = 0; i < 2; i++) {
		e = alloc_in(t2, len, 51 + (unsigned)i, &q[i]);
		CHECK(e == 0, "coh_alloc in the second context: %s", coh_strerror(e));
	}
	struct coh_alloc_info ai = { .size = sizeof(ai) };
	CHECK(coh_alloc_count(c2) == 2, "the second context counts %d allocations", coh_alloc_count(c2));
	CHECK(coh_lookup(c2, mine, &ai) == -ENOENT && coh_lookup(ctx, q[0], &ai) == -ENOENT,
	      "a context knows the other's allocation");
	CHECK(same(q[0], len, 51) && same(q[1], len, 52), "the second context's memory reads back wrong");
	CHECK(intact(ctx, t, mine, want, len, why, sizeof(why)), "the first context's memory: %s", why);
	/* the last reference goes with two allocations live: both are freed as
	 * coh_free frees (unmapped; with a driver that keeps its reservation,
	 * no longer readable) */
	int base = freed_is_gone(t, len);
	coh_context_unref(c2);
	c2 = NULL;
	CHECK(base != 1 || (gone(q[0], len) && gone(q[1], len)), "allocations live at the last coh_context_unref are "
	      "still readable (documented: freed as by coh_free, which leaves nothing readable on this target)");
	bool were_unmapped = unmapped(q[0], len) && unmapped(q[1], len);
	CHECK(intact(ctx, t, mine, want, len, why, sizeof(why)), "the first context's memory after the unref: %s", why);
	/* and a new one: the same targets, working */
	e = coh_context_create(NULL, &c3);
	CHECK(e == 0, "a third context: %s", coh_strerror(e));
	CHECK(same_names(c3, why, sizeof(why)), "third context: %s", why);
	coh_target *t3 = same_named(c3, t);
	CHECK(coh_lookup(c3, q[0], &ai) == -ENOENT && coh_lookup(c3, mine, &ai) == -ENOENT,
	      "the new context knows an address of another context");
	e = alloc_in(t3, len, 53, &r);
	CHECK(e == 0, "coh_alloc in the new context: %s", coh_strerror(e));
	CHECK(coh_lookup(c3, r, &ai) == 0 && ai.base == r && ai.target == t3, "lookup in the new context");
	w3 = malloc(len);
	CHECK(w3, "out of memory");
	fill(w3, len, 53);
	int moved = 0;
	for (int i = 0; i < d->n; i++) {
		coh_target *u3 = same_named(c3, d->u[i]);
		e = coh_migrate(c3, r, len, u3, 0);
		CHECK(e == 0, "migrating in the new context to %s: %s", coh_target_name(u3), coh_strerror(e));
		CHECK(intact(c3, t3, r, w3, len, why, sizeof(why)), "after migrating in the new context to %s: %s",
		      coh_target_name(u3), why);
		if (d->back) {
			e = coh_migrate(c3, r, len, t3, 0);
			CHECK(e == 0, "migrating in the new context back to %s: %s", coh_target_name(t3), coh_strerror(e));
			CHECK(intact(c3, t3, r, w3, len, why, sizeof(why)), "back in the new context: %s", why);
		}
		moved++;
	}
	e = coh_free(c3, r);
	r = NULL;
	CHECK(e == 0, "coh_free in the new context: %s", coh_strerror(e));
	CHECK(coh_alloc_count(c3) == 0, "the new context counts %d allocations", coh_alloc_count(c3));
	coh_context_unref(c3);
	c3 = NULL;
	CHECK(intact(ctx, t, mine, want, len, why, sizeof(why)), "the first context's memory at the end: %s", why);
	report(t, name, PASS, "unref with 2 live allocations %s; a new context found %d targets by name, "
	       "allocated%s", were_unmapped ? "unmapped them" : base == 1 ? "freed them (the driver keeps the "
	       "addresses reserved, unreadable, as after coh_free)" : "freed them (not checked: coh_free leaves "
	       "this target's memory readable)", coh_target_count(ctx), moved ? " and migrated there and back" : "");
out:
	if (r)
		coh_free(c3, r);
	coh_context_unref(c3);
	coh_context_unref(c2);
	if (mine)
		coh_free(ctx, mine);
	free(want);
	free(w3);
}

static void check_two_contexts(coh_target *t)
{
	const char *name = "two-contexts";
	coh_context *c[2] = { NULL, NULL };
	unsigned char *q[2] = { NULL, NULL };
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 8 * unit();
	coh_target *u[2];
	for (int i = 0; i < 2; i++) {
		int e = coh_context_create(NULL, &c[i]);
		CHECK(e == 0, "context %d: %s", i, coh_strerror(e));
		u[i] = same_named(c[i], t);
		CHECK(u[i], "context %d has no %s", i, coh_target_name(t));
	}
	struct coh_alloc_info ai = { .size = sizeof(ai) };
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < 2; i++) {
			int e = alloc_in(u[i], len, 60 + (unsigned)i, &q[i]);
			CHECK(e == 0, "coh_alloc in context %d: %s", i, coh_strerror(e));
		}
		for (int i = 0; i < 2; i++) {
			CHECK(coh_lookup(c[i], q[i], &ai) == 0 && ai.base == q[i] && ai.target == u[i],
			      "context %d does not find its own allocation", i);
			CHECK(coh_lookup(c[i], q[!i], &ai) == -ENOENT, "context %d finds the other's allocation", i);
			CHECK(coh_lookup(ctx, q[i], &ai) == -ENOENT, "the suite's context finds context %d's allocation", i);
			CHECK(coh_alloc_count(c[i]) == 1, "context %d counts %d allocations", i, coh_alloc_count(c[i]));
			CHECK(coh_free(c[i], q[!i]) == -ENOENT, "context %d frees the other's allocation", i);
			CHECK(coh_migrate(c[i], q[i], len, u[!i], 0) == -EXDEV, "context %d migrates to the other's target", i);
		}
		/* each wrote its own pattern: neither memory is the other's */
		CHECK(same(q[0], len, 60) && same(q[1], len, 61), "the two contexts' allocations overlap: one reads the "
		      "other's pattern");
		for (int k = 0; k < 2; k++) {
			int i = round ? 1 - k : k;   /* first round 0 then 1, second 1 then 0 */
			int e = coh_free(c[i], q[i]);
			CHECK(e == 0, "coh_free in context %d: %s", i, coh_strerror(e));
			q[i] = NULL;
			if (!k)
				CHECK(same(q[!i], len, 60 + (unsigned)!i), "freeing context %d's memory changed the other's", i);
		}
	}
	report(t, name, PASS, "each of two contexts finds only its own allocation; freed in both orders");
out:
	for (int i = 0; i < 2; i++) {
		if (q[i])
			coh_free(c[i], q[i]);
	}
	coh_context_unref(c[1]);
	coh_context_unref(c[0]);
}

/* ---- 13-14: threads on one target, and two migrations of one range ---- */

struct churner {
	coh_target *t;
	int id;
	int errors;
	char err[128];
};

static void *churn_main(void *arg)
{
	struct churner *c = arg;
	void *live[4] = { NULL };
	struct coh_alloc_info ai = { .size = sizeof(ai) };
	for (int i = 0; i < 200 && !c->errors; i++) {
		int slot = i % 4;
		if (live[slot]) {
			uint64_t v = *(uint64_t *)live[slot];
			int e = coh_free(ctx, live[slot]);
			if (v != (uint64_t)c->id << 32 || e) {
				snprintf(c->err, sizeof(c->err), "thread %d: freed memory read %#llx (%s)", c->id,
					 (unsigned long long)v, coh_strerror(e));
				c->errors++;
			}
			live[slot] = NULL;
		}
		int e = alloc_plain(c->t, ps, &live[slot]);
		if (e) {
			snprintf(c->err, sizeof(c->err), "thread %d: coh_alloc: %s", c->id, coh_strerror(e));
			live[slot] = NULL;
			c->errors++;
			break;
		}
		*(uint64_t *)live[slot] = (uint64_t)c->id << 32;
		if (coh_lookup(ctx, live[slot], &ai) || ai.base != live[slot] || ai.target != c->t) {
			snprintf(c->err, sizeof(c->err), "thread %d: lookup of a new allocation", c->id);
			c->errors++;
		}
	}
	for (int s = 0; s < 4; s++)
		if (live[s] && coh_free(ctx, live[s]) && !c->errors) {
			snprintf(c->err, sizeof(c->err), "thread %d: final coh_free", c->id);
			c->errors++;
		}
	return NULL;
}

static void check_threads_alloc_free(coh_target *t)
{
	const char *name = "threads-alloc-free";
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	int count0 = coh_alloc_count(ctx);
	struct churner c[4];
	pthread_t th[4];
	int started = 0;
	for (int i = 0; i < 4; i++) {
		c[i] = (struct churner){ .t = t, .id = i + 1 };
		if (pthread_create(&th[i], NULL, churn_main, &c[i]))
			break;
		started++;
	}
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	if (started < 4) {
		report(t, name, FAIL, "pthread_create failed");
		return;
	}
	for (int i = 0; i < 4; i++)
		if (c[i].errors) {
			report(t, name, FAIL, "%s", c[i].err);
			return;
		}
	int count = coh_alloc_count(ctx);
	if (count != count0)
		report(t, name, FAIL, "%d allocations live after the threads, %d before", count, count0);
	else
		report(t, name, PASS, "4 threads x 200 allocations (4 live each), every one found and freed");
}

struct racer {
	coh_target *dst;
	unsigned char *p;
	size_t len;
	atomic_int *go;
	int result;
};

static void *race_main(void *arg)
{
	struct racer *r = arg;
	atomic_fetch_add(r->go, 1);
	while (atomic_load(r->go) < 2)
		sched_yield();
	r->result = coh_migrate(ctx, r->p, r->len, r->dst, 0);
	return NULL;
}

/* Every populated page on one of a and b, and two queries agree. */
static bool on_one_of(const void *p, size_t len, const coh_target *a, const coh_target *b, char *why, size_t whylen)
{
	struct coh_extent x[64], y[64];
	int n = coh_query(ctx, p, len, x, 64, sizeof(x[0]));
	int m = coh_query(ctx, p, len, y, 64, sizeof(y[0]));
	if (n < 1 || n != m || memcmp(x, y, (size_t)n * sizeof(x[0]))) {
		say(why, whylen, "two queries in a row disagree (%d and %d extents)", n, m);
		return false;
	}
	size_t covered = 0;
	for (int i = 0; i < n; i++) {
		covered += x[i].length;
		if (x[i].kind == COH_MEM_NOT_POPULATED || x[i].target == a || x[i].target == b)
			continue;
		if (x[i].target == NULL && (coh_target_numa_node(a) < 0 || coh_target_numa_node(b) < 0))
			continue;   /* a node-less device the backend cannot name a page of */
		say(why, whylen, "a page at +%zu is on %s (%s)", (size_t)(x[i].start - (uintptr_t)p),
		    x[i].target ? coh_target_name(x[i].target) : "-", coh_mem_kind_name(x[i].kind));
		return false;
	}
	if (covered != len) {
		say(why, whylen, "the extents cover %zu of %zu bytes", covered, len);
		return false;
	}
	return true;
}

static void check_same_range_twice(coh_target *t, const struct dests *d)
{
	const char *name = "migrate-same-range-twice";
	unsigned char *p = NULL, *want = NULL;
	coh_target *a, *b;
	char why[192];
	if (!can_pingpong(t, name, d, &a, &b))
		return;
	size_t len = 16 * unit();
	int e = alloc_filled(t, len, 70, &p, &want);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	int ok = 0, busy = 0;
	for (int round = 0; round < ROUNDS; round++) {
		atomic_int go;
		atomic_init(&go, 0);
		struct racer r[2] = { { round % 2 ? b : a, p, len, &go, 0 }, { round % 2 ? a : b, p, len, &go, 0 } };
		pthread_t th[2];
		CHECK(pthread_create(&th[0], NULL, race_main, &r[0]) == 0, "pthread_create");
		if (pthread_create(&th[1], NULL, race_main, &r[1])) {
			atomic_fetch_add(&go, 1);
			pthread_join(th[0], NULL);
			CHECK(0, "pthread_create");
		}
		pthread_join(th[0], NULL);
		pthread_join(th[1], NULL);
		for (int i = 0; i < 2; i++) {
			CHECK(r[i].result == 0 || r[i].result == -EBUSY, "migrating to %s while another thread migrates the "
			      "range to %s: %s", coh_target_name(r[i].dst), coh_target_name(r[!i].dst), coh_strerror(r[i].result));
			ok += r[i].result == 0;
			busy += r[i].result == -EBUSY;
		}
		CHECK(on_one_of(p, len, a, b, why, sizeof(why)), "after two migrations at once: %s", why);
		CHECK(intact(ctx, t, p, want, len, why, sizeof(why)), "after two migrations at once: %s", why);
	}
	report(t, name, PASS, "%d rounds to %s and %s at once: %d done, %d busy; one target per page, data intact",
	       ROUNDS, coh_target_name(a), coh_target_name(b), ok, busy);
out:
	if (p)
		coh_free(ctx, p);
	free(want);
}

static const struct conf_case cases[] = {
	{ "async-many", "8 asynchronous migrations of disjoint ranges in flight at once all complete, to another "
			"target and on to a second place; the query names the destination, the data is intact",
	  "targets without alloc; no other target with COH_CAP_MIGRATE_ASYNC takes the memory" },
	{ "async-test-wait", "coh_migration_test answers -EINPROGRESS or 0, a timed wait -ETIMEDOUT only after its "
			     "timeout, a finished migration's result stays; handles freed unwaited; nothing left live",
	  "targets without alloc; no target (itself included) the memory migrates to asynchronously" },
	{ "writers-during-migrate", "2 threads increment counters in their own cache lines of every page while the range "
				    "moves back and forth: no write is lost",
	  "targets without alloc; fewer than two places the memory moves between; the /dev/kfd emulator's device-private "
	  "GPUs (its moves lose concurrent writes, unlike the kernel's)" },
	{ "readers-during-migrate", "2 threads read a known pattern while the range moves back and forth: never a wrong "
				    "value",
	  "targets without alloc; fewer than two places the memory moves between" },
	{ "query-during-migrate", "coh_query in a loop beside migrations: every answer succeeds (or -EIO, documented as "
				  "transient) and its extents cover the range exactly, never unmapped",
	  "targets without alloc; fewer than two places the memory moves between" },
	{ "pinquery-during-migrate", "coh_pin_query and coh_fork_query in a loop beside migrations: every answer "
				     "succeeds, covers the range exactly and names the allocation's policy",
	  "targets without alloc; fewer than two places the memory moves between" },
	{ "pin-during-migrate", "a range half held by a long-term pin (io_uring fixed buffer) migrates to every other "
				"target and back: 0 (and then the query names the destination) or -EBUSY, the data "
				"intact; afterwards the pin holder's read lands where the CPU reads",
	  "targets without alloc; io_uring unavailable or the pin refused; no other target; the /dev/kfd emulator "
	  "(it cannot see kernel pins)" },
	{ "short-pin-during-migrate", "O_DIRECT reads into and writes from the range in another thread while it moves "
				      "back and forth: every transfer completes and carries the right data",
	  "targets without alloc; fewer than two places; O_DIRECT unavailable; short pins predicted never or "
	  "unknown; the CUDA double (GUP cannot fault its pages)" },
	{ "free-during-async", "coh_free of memory whose asynchronous migration handle is live answers -EBUSY, also after "
			       "the wait, and frees once the handle is freed; nothing left live",
	  "targets without alloc; no target (itself included) the memory migrates to asynchronously" },
	{ "exit-with-live-memory", "a forked child allocates (inherited context: memory or -ECHILD; a context of its "
				   "own) and exits 0 without freeing; the parent's memory and count are unaffected",
	  "targets without alloc; the child's own context part where the backend cannot work in a forked child, "
	  "and under ThreadSanitizer with the nvidia backend or the kfd emulator loaded (reported in the pass line)" },
	{ "context-again", "the last unref of a second context with live allocations unmaps them; a new context "
			   "rediscovers the same target names, allocates and migrates; no context knows another's "
			   "pointers (coh_lookup -ENOENT)",
	  "targets without alloc" },
	{ "two-contexts", "two contexts at once on the same-named target: each finds only its own allocations, "
			  "refuses the other's (free -ENOENT, target -EXDEV), the memories do not overlap; frees in "
			  "either order",
	  "targets without alloc" },
	{ "threads-alloc-free", "4 threads allocate, write, look up and free 200 small allocations each at once; the "
				"allocation count is back where it was",
	  "targets without alloc" },
	{ "migrate-same-range-twice", "two threads migrate one range to two places at once: each answers 0 or -EBUSY; "
				      "every page is on one of them, two queries agree, the data is intact",
	  "targets without alloc; fewer than two places the memory moves between" },
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	struct dests d;
	find_dests(t, &d);
	check_async_many(t, &d);
	check_async_test_wait(t, &d);
	check_writers(t, &d);
	check_beside(t, &d, "readers-during-migrate", reader_main, 2, "reads of the whole range");
	check_beside(t, &d, "query-during-migrate", query_main, 1, "coh_query");
	check_beside(t, &d, "pinquery-during-migrate", pinfork_main, 1, "pin and fork queries");
	check_pin_beside(t, &d);
	check_short_pin_beside(t, &d);
	check_free_during_async(t, &d);
	check_exit_live(t);
	check_context_again(t, &d);
	check_two_contexts(t);
	check_threads_alloc_free(t);
	check_same_range_twice(t, &d);
}

const struct conf_group conf_concurrent = { "concurrent", run, cases };
