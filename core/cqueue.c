/* SPDX-License-Identifier: MIT */
/*
 * Asynchronous migrations: the context's worker pool, the jobs, the
 * coh_migration handles and the completion queues.
 *
 * A job is one asynchronous migration.  Where the owning backend has native
 * asynchronous migration (ops->migrate_start: a driver's streams and events) no
 * thread of ours runs it: a coh_migration handle polls the backend, and a
 * queued job asks the backend to call job_notified() when it is done
 * (ops->migrate_notify: a host callback on the driver's stream); without that a pooled
 * worker waits on it.  Every other job runs ops->migrate on a pooled
 * worker: at most async.workers threads (COH_ASYNC_WORKERS, default
 * min(4, online CPUs)), started when work waits and none is idle, kept
 * until the context ends.
 *
 * One lock per context (ctx->workers.lock, after the map's in the lock
 * order) guards the work list, the list of jobs in flight, each job's state
 * and each queue's completion list; workers run the migration itself
 * outside it.  A completion is appended to its queue's list, and the
 * queue's eventfd is written when the list goes from empty to not empty and
 * read (reset) when a reap empties it: it is readable exactly while
 * completions wait.  What a completion still needs (a native result read
 * through migrate_poll, the token released, the record's reference dropped)
 * is done by the thread that reaps it, never under the lock and never on a
 * driver's callback thread.
 *
 * Fork: the child has no worker, and no driver callback reaches it.  The
 * fork prepare handler takes the lock; the child handler completes every
 * job in flight with -ECHILD (the memory stays wherever the parent had it
 * when it forked), gives each queue an eventfd of its own at the same
 * descriptor number (the parent's is shared with the child otherwise) and
 * resets the pool, which starts again on the child's next request.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "growth.h"
#include "internal.h"

#define WORKERS_LIMIT 64
#define QUEUE_MAGIC 0x63717565u
#define QUEUE_FLAGS_KNOWN 0u

enum job_kind {
	JOB_RUN,       /* a worker runs ops->migrate */
	JOB_WAIT,      /* native: a worker waits with migrate_poll */
	JOB_NOTIFIED,  /* native: the backend calls job_notified() */
	JOB_POLLED,    /* native, a coh_migration handle: its caller polls */
};

enum job_state { JOB_QUEUED, JOB_RUNNING, JOB_DONE };

struct coh_migration {
	coh_context *ctx;
	struct coh_queue *q;          /* NULL: a coh_migrate_async handle */
	struct coh_rec *rec;
	void *addr;
	size_t len;
	coh_target *dst;
	unsigned flags;
	uint64_t cookie;
	const struct coh_backend_ops *native;
	void *token;
	int kind;                     /* enum job_kind */
	int state;                    /* enum job_state, under the pool's lock */
	int result;
	/* the result is final (a native one read, the landing recorded);
	 * false: the reaper still asks migrate_poll */
	bool settled;
	struct coh_migration *next;   /* work list, or the queue's completions */
	struct coh_migration *iprev, *inext;   /* jobs in flight */
	pthread_cond_t cond;          /* a handle's waiter (not JOB_POLLED) */
};

struct coh_queue {
	unsigned magic;
	coh_context *ctx;
	int efd;
	pthread_cond_t cond;          /* reapers and destroy, with the pool's lock */
	struct coh_migration *done_head, *done_tail;
	size_t inflight;
	struct coh_queue *next;       /* ctx->workers.queues */
	struct coh_queue *live_next;  /* the live-queue registry */
};

/* ---------------- the live-queue registry ---------------- */
/* Lets coh_queue_destroy() refuse a queue destroyed already without
 * reading it.  Its lock is taken alone, and held across fork. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static struct coh_queue *live_head;
static pthread_once_t live_once = PTHREAD_ONCE_INIT;

static void live_prepare(void)
{
	pthread_mutex_lock(&live_lock);
}

static void live_release(void)
{
	pthread_mutex_unlock(&live_lock);
}

static void live_install(void)
{
	pthread_atfork(live_prepare, live_release, live_release);
}

static void live_add(struct coh_queue *q)
{
	pthread_once(&live_once, live_install);
	pthread_mutex_lock(&live_lock);
	q->live_next = live_head;
	live_head = q;
	pthread_mutex_unlock(&live_lock);
}

static bool live_remove(struct coh_queue *q)
{
	pthread_once(&live_once, live_install);
	pthread_mutex_lock(&live_lock);
	bool found = false;
	for (struct coh_queue **p = &live_head; *p; p = &(*p)->live_next)
		if (*p == q) {
			*p = q->live_next;
			found = true;
			break;
		}
	pthread_mutex_unlock(&live_lock);
	return found;
}

/* ---------------- the pool ---------------- */
static void cond_init_mono(pthread_cond_t *c)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(c, &ca);
	pthread_condattr_destroy(&ca);
}

static void deadline(struct timespec *until, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, until);
	until->tv_sec += timeout_ms / 1000;
	until->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (until->tv_nsec >= 1000000000L) {
		until->tv_sec++;
		until->tv_nsec -= 1000000000L;
	}
}

/* Waits on c (the pool's lock held) until the deadline: false once it passed. */
static bool cond_wait_until(pthread_cond_t *c, pthread_mutex_t *l, int timeout_ms, const struct timespec *until)
{
	if (timeout_ms < 0) {
		pthread_cond_wait(c, l);
		return true;
	}
	return pthread_cond_timedwait(c, l, until) != ETIMEDOUT;
}

void coh_workers_init(coh_context *ctx)
{
	struct coh_workers *w = &ctx->workers;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->work, NULL);
}

static int workers_max(coh_context *ctx)
{
	const char *s = coh_ctx_tunable(ctx, "async.workers");
	uint64_t v;
	if (s && *s && coh_parse_u64(s, 10, &v) == 0 && v >= 1 && v <= WORKERS_LIMIT)
		return (int)v;
	if (s && *s)
		coh_warn(ctx, "async.workers=%s: not 1..%d, using the default", s, WORKERS_LIMIT);
	long cpus = sysconf(_SC_NPROCESSORS_ONLN);
	return cpus >= 4 ? 4 : cpus >= 1 ? (int)cpus : 1;
}

static void job_complete_locked(struct coh_migration *m, int result, bool settled);
static int job_execute(struct coh_migration *m);

static void *worker_main(void *arg)
{
	struct coh_workers *w = &((coh_context *)arg)->workers;
	pthread_mutex_lock(&w->lock);
	for (;;) {
		while (!w->head && !w->stopping) {
			w->idle++;
			pthread_cond_wait(&w->work, &w->lock);
			w->idle--;
		}
		struct coh_migration *m = w->head;
		if (!m)
			break;   /* stopping, and nothing left */
		w->head = m->next;
		if (!w->head)
			w->tail = NULL;
		m->next = NULL;
		m->state = JOB_RUNNING;
		pthread_mutex_unlock(&w->lock);
		int e = job_execute(m);
		pthread_mutex_lock(&w->lock);
		job_complete_locked(m, e, true);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* Starts workers for the queued jobs no idle worker will take, up to the
 * pool's size (the pool's lock held): 0, or -errno when no worker exists
 * and none could be started (the queued jobs would never run). */
static int workers_grow_locked(coh_context *ctx, size_t queued)
{
	struct coh_workers *w = &ctx->workers;
	if (!w->threads) {
		int max = workers_max(ctx);
		w->threads = calloc((size_t)max, sizeof(*w->threads));
		if (!w->threads)
			return -ENOMEM;
		w->max = max;
	}
	int e = 0;
	sigset_t all, old;
	sigfillset(&all);
	/* faults of the worker itself must still reach it (a driver's fault-back handler) */
	sigdelset(&all, SIGSEGV);
	sigdelset(&all, SIGBUS);
	sigdelset(&all, SIGFPE);
	sigdelset(&all, SIGILL);
	sigdelset(&all, SIGTRAP);
	sigdelset(&all, SIGSYS);
	bool masked = false;
	while (w->nthreads < w->max && queued > (size_t)w->idle) {
		if (!masked) {
			pthread_sigmask(SIG_SETMASK, &all, &old);
			masked = true;
		}
		e = -pthread_create(&w->threads[w->nthreads], NULL, worker_main, ctx);
		if (e)
			break;
		w->nthreads++;
		queued--;
	}
	if (masked)
		pthread_sigmask(SIG_SETMASK, &old, NULL);
	return w->nthreads > 0 ? 0 : e;
}

void coh_workers_fini(coh_context *ctx)
{
	struct coh_workers *w = &ctx->workers;
	pthread_mutex_lock(&w->lock);
	w->stopping = true;
	pthread_cond_broadcast(&w->work);
	int n = w->nthreads;
	pthread_mutex_unlock(&w->lock);
	for (int i = 0; i < n; i++)
		pthread_join(w->threads[i], NULL);
	free(w->threads);
	pthread_cond_destroy(&w->work);
	pthread_mutex_destroy(&w->lock);
}

static void inflight_add_locked(struct coh_workers *w, struct coh_migration *m)
{
	m->iprev = NULL;
	m->inext = w->inflight;
	if (w->inflight)
		w->inflight->iprev = m;
	w->inflight = m;
}

static void inflight_del_locked(struct coh_workers *w, struct coh_migration *m)
{
	if (m->iprev)
		m->iprev->inext = m->inext;
	else
		w->inflight = m->inext;
	if (m->inext)
		m->inext->iprev = m->iprev;
	m->iprev = m->inext = NULL;
}

static void work_add_locked(struct coh_workers *w, struct coh_migration *m)
{
	m->state = JOB_QUEUED;
	m->next = NULL;
	if (w->tail)
		w->tail->next = m;
	else
		w->head = m;
	w->tail = m;
}

/* Takes m off the work list if it is still there (the pool's lock held). */
static void work_del_locked(struct coh_workers *w, struct coh_migration *m)
{
	struct coh_migration *prev = NULL;
	for (struct coh_migration *p = w->head; p; prev = p, p = p->next)
		if (p == m) {
			if (prev)
				prev->next = m->next;
			else
				w->head = m->next;
			if (w->tail == m)
				w->tail = prev;
			m->next = NULL;
			return;
		}
}

static void efd_signal(int fd)
{
	uint64_t one = 1;
	ssize_t r = write(fd, &one, sizeof(one));
	(void)r;   /* a counter at its limit is readable already */
}

static void efd_drain(int fd)
{
	uint64_t v;
	ssize_t r = read(fd, &v, sizeof(v));
	(void)r;   /* EAGAIN: it was not signalled */
}

static void job_complete_locked(struct coh_migration *m, int result, bool settled)
{
	struct coh_workers *w = &m->ctx->workers;
	inflight_del_locked(w, m);
	m->state = JOB_DONE;
	m->result = result;
	m->settled = settled;
	struct coh_queue *q = m->q;
	if (!q) {
		pthread_cond_broadcast(&m->cond);
		return;
	}
	m->next = NULL;
	if (q->done_tail) {
		q->done_tail->next = m;
	} else {
		q->done_head = m;
		efd_signal(q->efd);
	}
	q->done_tail = m;
	q->inflight--;
	pthread_cond_broadcast(&q->cond);
}

/* On a worker, without the lock. */
static int job_execute(struct coh_migration *m)
{
	if (m->kind == JOB_RUN)
		return coh_migrate_run(m->rec, m->addr, m->len, m->dst, m->flags);
	int e = m->native->migrate_poll(m->token, -1);
	if (e == 0)
		coh_migrate_landed(m->rec, m->dst);
	return e;
}

/* The backend's callback (ops->migrate_notify), from any thread. */
static void job_notified(void *arg)
{
	struct coh_migration *m = arg;
	struct coh_workers *w = &m->ctx->workers;
	pthread_mutex_lock(&w->lock);
	if (m->state != JOB_DONE)
		job_complete_locked(m, 0, false);
	pthread_mutex_unlock(&w->lock);
}

/* What a completed job still needs, by the thread that collects it: its
 * final result.  Drops the record's reference; the caller frees m. */
static int job_finish(struct coh_migration *m)
{
	int e = m->result;
	if (m->token) {
		if (!m->settled) {
			e = m->native->migrate_poll(m->token, -1);
			if (e == 0)
				coh_migrate_landed(m->rec, m->dst);
		}
		m->native->migrate_done(m->token);
	}
	coh_rec_put(m->rec);
	return e;
}

void coh_workers_atfork_prepare(coh_context *ctx)
{
	pthread_mutex_lock(&ctx->workers.lock);
}

void coh_workers_atfork_parent(coh_context *ctx)
{
	pthread_mutex_unlock(&ctx->workers.lock);
}

/* Async-signal-safe but for the condition variables' initialisation, which
 * only stores into them (no waiter exists in the child). */
void coh_workers_atfork_child(coh_context *ctx)
{
	struct coh_workers *w = &ctx->workers;
	pthread_cond_init(&w->work, NULL);
	w->head = w->tail = NULL;
	w->nthreads = 0;
	w->idle = 0;
	for (struct coh_queue *q = w->queues; q; q = q->next) {
		cond_init_mono(&q->cond);
		int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd >= 0 && fd != q->efd) {
			if (dup3(fd, q->efd, O_CLOEXEC) < 0)
				efd_drain(q->efd);   /* still the parent's: better empty than wrong */
			close(fd);
		}
		if (q->done_head)
			efd_signal(q->efd);
	}
	while (w->inflight) {
		struct coh_migration *m = w->inflight;
		if (!m->q)
			cond_init_mono(&m->cond);
		job_complete_locked(m, -ECHILD, true);
	}
	pthread_mutex_unlock(&w->lock);
}

/* ---------------- coh_migration handles ---------------- */
static void job_free(struct coh_migration *m)
{
	if (!m->q && m->kind != JOB_POLLED)
		pthread_cond_destroy(&m->cond);
	free(m);
}

int coh_migrate_async(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags,
		      coh_migration **out)
{
	if (!out)
		return -EFAULT;
	*out = NULL;
	struct coh_rec *r;
	int e = coh_migrate_check(ctx, addr, len, dst, flags);
	if (e)
		return e;
	coh_amap_lock(&ctx->amap);
	e = coh_migrate_prepare_locked(ctx, addr, len, dst, flags, &r);
	coh_amap_unlock(&ctx->amap);
	if (e)
		return e;
	if (!(dst->d.caps & COH_CAP_MIGRATE_ASYNC)) {
		coh_rec_put(r);
		return -EOPNOTSUPP;
	}
	struct coh_migration *m = calloc(1, sizeof(*m));
	if (!m) {
		coh_rec_put(r);
		return -ENOMEM;
	}
	m->ctx = ctx;
	m->rec = r;
	m->addr = addr;
	m->len = len;
	m->dst = dst;
	m->flags = flags;
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (ops->migrate_start) {
		e = ops->migrate_start(dst, &r->pub, addr, len, flags, &m->token);
		if (e) {
			coh_rec_put(r);
			free(m);
			return e;
		}
		m->native = ops;
		m->kind = JOB_POLLED;
		m->state = JOB_RUNNING;
		coh_context_ref(ctx);
		*out = m;
		return 0;
	}
	m->kind = JOB_RUN;
	cond_init_mono(&m->cond);
	struct coh_workers *w = &ctx->workers;
	pthread_mutex_lock(&w->lock);
	inflight_add_locked(w, m);
	work_add_locked(w, m);
	e = workers_grow_locked(ctx, 1);
	if (e) {
		work_del_locked(w, m);
		inflight_del_locked(w, m);
	} else {
		pthread_cond_signal(&w->work);
	}
	pthread_mutex_unlock(&w->lock);
	if (e) {
		coh_rec_put(r);
		job_free(m);
		return e;
	}
	coh_context_ref(ctx);
	*out = m;
	return 0;
}

/* A native handle: asks the backend; the first completion records the placement. */
static int native_poll(coh_migration *m, int timeout_ms)
{
	struct coh_workers *w = &m->ctx->workers;
	pthread_mutex_lock(&w->lock);
	int e = m->state == JOB_DONE ? m->result : -EINPROGRESS;
	pthread_mutex_unlock(&w->lock);
	if (e != -EINPROGRESS)
		return e;
	e = m->native->migrate_poll(m->token, timeout_ms);
	if (e == -EINPROGRESS || e == -ETIMEDOUT)
		return e;
	pthread_mutex_lock(&w->lock);
	bool first = m->state != JOB_DONE;
	if (first) {
		m->state = JOB_DONE;
		m->result = e;
	}
	e = m->result;
	pthread_mutex_unlock(&w->lock);
	if (first && e == 0)
		coh_migrate_landed(m->rec, m->dst);   /* the map's lock comes before the pool's */
	return e;
}

int coh_migration_test(coh_migration *m)
{
	return coh_migration_wait(m, 0);
}

int coh_migration_wait(coh_migration *m, int timeout_ms)
{
	if (!m)
		return -EINVAL;
	if (m->kind == JOB_POLLED)
		return native_poll(m, timeout_ms);
	struct coh_workers *w = &m->ctx->workers;
	struct timespec until;
	if (timeout_ms > 0)
		deadline(&until, timeout_ms);
	pthread_mutex_lock(&w->lock);
	while (m->state != JOB_DONE && timeout_ms != 0 && cond_wait_until(&m->cond, &w->lock, timeout_ms, &until))
		;
	int e = m->state == JOB_DONE ? m->result : timeout_ms == 0 ? -EINPROGRESS : -ETIMEDOUT;
	pthread_mutex_unlock(&w->lock);
	return e;
}

void coh_migration_free(coh_migration *m)
{
	if (!m)
		return;
	coh_context *ctx = m->ctx;
	coh_migration_wait(m, -1);
	if (m->kind == JOB_POLLED)
		m->native->migrate_done(m->token);
	coh_rec_put(m->rec);
	job_free(m);
	coh_context_unref(ctx);
}

/* ---------------- completion queues ---------------- */
int coh_queue_create(coh_context *ctx, const struct coh_queue_props *props, coh_queue **out)
{
	if (!out)
		return -EFAULT;
	*out = NULL;
	if (!ctx)
		return -EINVAL;
	struct coh_queue_props p = { .size = sizeof(p) };
	if (props) {
		int e = coh_struct_in(&p, sizeof(p), props);
		if (e)
			return e;
	}
	if (p.flags & ~QUEUE_FLAGS_KNOWN)
		return -EINVAL;
	struct coh_queue *q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (q->efd < 0) {
		int e = -errno;
		free(q);
		return e;
	}
	q->magic = QUEUE_MAGIC;
	q->ctx = coh_context_ref(ctx);
	cond_init_mono(&q->cond);
	struct coh_workers *w = &ctx->workers;
	pthread_mutex_lock(&w->lock);
	q->next = w->queues;
	w->queues = q;
	pthread_mutex_unlock(&w->lock);
	live_add(q);
	*out = q;
	return 0;
}

static bool queue_ok(const coh_queue *q)
{
	return q && q->magic == QUEUE_MAGIC;
}

int coh_queue_fd(const coh_queue *q)
{
	return queue_ok(q) ? q->efd : -EINVAL;
}

int coh_queue_destroy(coh_queue *q)
{
	if (!q || !live_remove(q))
		return -EINVAL;
	coh_context *ctx = q->ctx;
	struct coh_workers *w = &ctx->workers;
	pthread_mutex_lock(&w->lock);
	while (q->inflight)
		pthread_cond_wait(&q->cond, &w->lock);
	struct coh_migration *list = q->done_head;
	q->done_head = q->done_tail = NULL;
	for (struct coh_queue **pp = &w->queues; *pp; pp = &(*pp)->next)
		if (*pp == q) {
			*pp = q->next;
			break;
		}
	pthread_mutex_unlock(&w->lock);
	while (list) {
		struct coh_migration *m = list;
		list = m->next;
		job_finish(m);
		job_free(m);
	}
	close(q->efd);
	pthread_cond_destroy(&q->cond);
	q->magic = 0;
	free(q);
	coh_context_unref(ctx);
	return 0;
}

/* Hands the native jobs of a submission to their backends (no lock held). */
/* A native job whose start gave e and token: completes it on failure, else
 * asks the backend to post its completion.  m may be reaped once it returns. */
static void native_started(struct coh_workers *w, struct coh_migration *m, int e, void *token)
{
	const struct coh_backend_ops *ops = m->rec->pub.target->slot->ops;
	pthread_mutex_lock(&w->lock);
	if (e) {
		job_complete_locked(m, e, true);
		pthread_mutex_unlock(&w->lock);
		return;
	}
	m->native = ops;
	m->token = token;
	m->kind = JOB_NOTIFIED;
	pthread_mutex_unlock(&w->lock);
	if (ops->migrate_notify && ops->migrate_notify(token, job_notified, m) == 0)
		return;   /* m may be reaped already */
	pthread_mutex_lock(&w->lock);
	if (m->state != JOB_DONE) {   /* not in a fork child that completed it */
		m->kind = JOB_WAIT;
		work_add_locked(w, m);
		if (workers_grow_locked(m->ctx, 1) == 0) {
			pthread_cond_signal(&w->work);
		} else {
			/* no worker at all: wait here */
			work_del_locked(w, m);
			m->state = JOB_RUNNING;
			pthread_mutex_unlock(&w->lock);
			e = job_execute(m);
			pthread_mutex_lock(&w->lock);
			job_complete_locked(m, e, true);
		}
	}
	pthread_mutex_unlock(&w->lock);
}

static void native_submit(struct coh_workers *w, struct coh_migration *m)
{
	const struct coh_backend_ops *ops = m->rec->pub.target->slot->ops;
	void *token = NULL;
	int e = ops->migrate_start(m->dst, &m->rec->pub, m->addr, m->len, m->flags, &token);
	native_started(w, m, e, token);
}

/* Native jobs [i, j) of one backend: one driver batch where the backend starts
 * one, else one start each.  No job is touched once it has been handed on. */
static void native_submit_run(struct coh_workers *w, struct coh_migration **jobs, size_t i, size_t j)
{
	const struct coh_backend_ops *ops = jobs[i]->rec->pub.target->slot->ops;
	size_t n = j - i;
	if (n >= 2 && ops->migrate_batch_start) {
		struct coh_batch_item *items = calloc(n, sizeof(*items));
		void **tokens = calloc(n, sizeof(*tokens));
		if (items && tokens) {
			for (size_t k = 0; k < n; k++) {
				struct coh_migration *m = jobs[i + k];
				items[k] = (struct coh_batch_item){ m->dst, &m->rec->pub, m->addr, m->len, m->flags };
			}
			if (ops->migrate_batch_start(items, n, tokens) == 0) {
				free(items);
				for (size_t k = 0; k < n; k++)
					native_started(w, jobs[i + k], 0, tokens[k]);
				free(tokens);
				return;
			}
		}
		free(items);
		free(tokens);
	}
	for (size_t k = i; k < j; k++)
		native_submit(w, jobs[k]);
}

int coh_queue_migrate(coh_queue *q, const struct coh_migrate_req *reqs, size_t n, size_t req_size)
{
	if (!queue_ok(q))
		return -EINVAL;
	if (!reqs)
		return -EFAULT;
	if (n == 0 || n > INT_MAX)
		return -EINVAL;
	int e = coh_vec_in_check(reqs, n, req_size, COH_MIGRATE_REQ_SIZE_MIN, sizeof(struct coh_migrate_req));
	if (e)
		return e;
	coh_context *ctx = q->ctx;
	struct coh_migration **jobs = calloc(n, sizeof(*jobs));
	if (!jobs)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct coh_migrate_req r;
		memcpy(&r, coh_vec_at(reqs, i, req_size), sizeof(r));
		if (r.reserved)
			e = -EINVAL;
		else if (!(e = coh_migrate_check(ctx, r.addr, r.len, r.dst, r.flags)) &&
			 !(jobs[i] = calloc(1, sizeof(*jobs[i]))))
			e = -ENOMEM;
		if (e)
			goto undo;
		*jobs[i] = (struct coh_migration){ .ctx = ctx, .q = q, .addr = r.addr, .len = r.len, .dst = r.dst,
						   .flags = r.flags, .cookie = r.cookie };
	}
	/* one round-trip of the map's lock for every record */
	coh_amap_lock(&ctx->amap);
	for (size_t i = 0; i < n && !e; i++)
		e = coh_migrate_prepare_locked(ctx, jobs[i]->addr, jobs[i]->len, jobs[i]->dst, jobs[i]->flags,
					       &jobs[i]->rec);
	coh_amap_unlock(&ctx->amap);
	if (e)
		goto undo;

	struct coh_workers *w = &ctx->workers;
	size_t queued = 0;
	pthread_mutex_lock(&w->lock);
	for (size_t i = 0; i < n; i++) {
		struct coh_migration *m = jobs[i];
		inflight_add_locked(w, m);
		if (m->rec->pub.target->slot->ops->migrate_start) {
			m->state = JOB_RUNNING;   /* the backend's from now on */
		} else {
			m->kind = JOB_RUN;
			work_add_locked(w, m);
			queued++;
		}
	}
	q->inflight += n;
	if (queued && (e = workers_grow_locked(ctx, queued)) != 0) {
		for (size_t i = 0; i < n; i++) {
			work_del_locked(w, jobs[i]);
			inflight_del_locked(w, jobs[i]);
		}
		q->inflight -= n;
	} else {
		if (queued)
			pthread_cond_broadcast(&w->work);
		/* a worker may complete (and a reaper free) a pooled job from now on */
		for (size_t i = 0; i < n; i++)
			if (!jobs[i]->rec->pub.target->slot->ops->migrate_start)
				jobs[i] = NULL;
	}
	pthread_mutex_unlock(&w->lock);
	if (e)
		goto undo;
	/* runs of native jobs of one backend go to it together */
	for (size_t i = 0, j; i < n; i = j) {
		j = i + 1;
		if (!jobs[i])
			continue;
		const struct coh_backend_ops *ops = jobs[i]->rec->pub.target->slot->ops;
		while (j < n && jobs[j] && jobs[j]->rec->pub.target->slot->ops == ops)
			j++;
		native_submit_run(w, jobs, i, j);
	}
	free(jobs);
	return (int)n;
undo:
	for (size_t i = 0; i < n && jobs[i]; i++) {
		coh_rec_put(jobs[i]->rec);
		free(jobs[i]);
	}
	free(jobs);
	return e;
}

static void completion_out(void *dst, size_t comp_size, const struct coh_migration *m, int result)
{
	struct coh_completion c = { .cookie = m->cookie, .result = result, .addr = m->addr, .len = m->len,
				    .dst = m->dst };
	size_t full = sizeof(c);
	if (comp_size >= full) {
		memcpy(dst, &c, full);
		memset((char *)dst + full, 0, comp_size - full);
		return;
	}
	/* every field wholly inside comp_size (a multiple of 8: no field is cut) */
	memcpy(dst, &c, comp_size);
}

int coh_queue_reap(coh_queue *q, struct coh_completion *out, size_t max, size_t comp_size, int timeout_ms)
{
	if (!queue_ok(q))
		return -EINVAL;
	if (!out)
		return -EFAULT;
	if (max == 0 || max > INT_MAX || comp_size < COH_COMPLETION_SIZE_MIN || comp_size % 8)
		return -EINVAL;
	if (max > SIZE_MAX / comp_size)
		return -EOVERFLOW;
	struct coh_workers *w = &q->ctx->workers;
	struct timespec until;
	if (timeout_ms > 0)
		deadline(&until, timeout_ms);
	pthread_mutex_lock(&w->lock);
	while (!q->done_head && q->inflight && timeout_ms != 0 &&
	       cond_wait_until(&q->cond, &w->lock, timeout_ms, &until))
		;
	struct coh_migration *list = q->done_head, *last = NULL;
	size_t k = 0;
	for (struct coh_migration *m = list; m && k < max; m = m->next, k++)
		last = m;
	if (last) {
		q->done_head = last->next;
		last->next = NULL;
		if (!q->done_head) {
			q->done_tail = NULL;
			efd_drain(q->efd);
		}
	}
	pthread_mutex_unlock(&w->lock);
	for (size_t i = 0; i < k; i++) {
		struct coh_migration *m = list;
		list = m->next;
		int e = job_finish(m);
		completion_out((char *)out + i * comp_size, comp_size, m, e);
		job_free(m);
	}
	return (int)k;
}
