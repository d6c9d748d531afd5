/* SPDX-License-Identifier: MIT */
/* Migration engine: validation, then the owning backend moves the pages;
 * asynchronous requests run the same path on a worker thread. */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "internal.h"

#define MIGRATE_FLAGS_KNOWN 0u

struct coh_migration {
	coh_context *ctx;
	struct coh_rec *rec;
	void *addr;
	size_t len;
	coh_target *dst;
	unsigned flags;
	pthread_t thread;
	/* native: the owning backend's own asynchronous migration */
	const struct coh_backend_ops *native;
	void *token;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool done;
	int result;
};

/* Validates and takes a reference on the record holding the range. */
static int migrate_prepare(coh_context *ctx, void *addr, size_t len, coh_target *dst,
			   unsigned flags, struct coh_rec **rec)
{
	int e;
	if (!ctx || !dst)
		return -EINVAL;
	if (dst->ctx != ctx)
		return -EXDEV;
	if ((e = coh_check_range(addr, len)))
		return e;
	if (((uintptr_t)addr | len) & (ctx->page_size - 1))
		return -EINVAL;
	if (flags & ~MIGRATE_FLAGS_KNOWN)
		return -EINVAL;
	if (ctx->replay)
		return -EROFS;
	if (!(dst->d.caps & COH_CAP_MIGRATE))
		return -EOPNOTSUPP;
	if ((e = coh_rec_get(ctx, addr, len, rec)))
		return e;
	if (!(*rec)->pub.target->slot->ops->migrate) {
		coh_rec_put(*rec);
		return -EOPNOTSUPP;
	}
	return 0;
}

static void migrate_landed(struct coh_rec *r, coh_target *dst)
{
	coh_context *ctx = dst->ctx;
	coh_amap_lock(&ctx->amap);
	r->pub.home = dst;
	r->pub.placed = 1;
	coh_amap_unlock(&ctx->amap);
}

static int migrate_run(struct coh_rec *r, void *addr, size_t len, coh_target *dst, unsigned flags)
{
	/* The backend that owns the memory moves it, whatever the destination. */
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	int e = ops->migrate(dst, &r->pub, addr, len, flags);
	if (e == 0)
		migrate_landed(r, dst);
	return e;
}

int coh_migrate(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags)
{
	struct coh_rec *r;
	int e = migrate_prepare(ctx, addr, len, dst, flags, &r);
	if (e)
		return e;
	e = migrate_run(r, addr, len, dst, flags);
	if (e)
		coh_dbg(ctx, "migrate %p+%zu to %s: %d", addr, len, dst->d.name, e);
	coh_rec_put(r);
	return e;
}

static void *migrate_worker(void *arg)
{
	struct coh_migration *m = arg;
	int e = migrate_run(m->rec, m->addr, m->len, m->dst, m->flags);
	pthread_mutex_lock(&m->lock);
	m->result = e;
	m->done = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->lock);
	return NULL;
}

int coh_migrate_async(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags,
		      coh_migration **out)
{
	if (!out)
		return -EFAULT;
	*out = NULL;
	struct coh_rec *r;
	int e = migrate_prepare(ctx, addr, len, dst, flags, &r);
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
	m->ctx = coh_context_ref(ctx);
	m->rec = r;
	m->addr = addr;
	m->len = len;
	m->dst = dst;
	m->flags = flags;
	pthread_mutex_init(&m->lock, NULL);
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (ops->migrate_start) {
		e = ops->migrate_start(dst, &r->pub, addr, len, flags, &m->token);
		if (e) {
			pthread_mutex_destroy(&m->lock);
			coh_rec_put(r);
			coh_context_unref(ctx);
			free(m);
			return e;
		}
		m->native = ops;
		*out = m;
		return 0;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	e = -pthread_create(&m->thread, NULL, migrate_worker, m);
	if (e) {
		pthread_cond_destroy(&m->cond);
		pthread_mutex_destroy(&m->lock);
		coh_rec_put(r);
		coh_context_unref(ctx);
		free(m);
		return e;
	}
	*out = m;
	return 0;
}

/* Native migrations: asks the backend; the first completion records the placement. */
static int native_poll(coh_migration *m, int timeout_ms)
{
	pthread_mutex_lock(&m->lock);
	if (m->done) {
		int e = m->result;
		pthread_mutex_unlock(&m->lock);
		return e;
	}
	pthread_mutex_unlock(&m->lock);
	int e = m->native->migrate_poll(m->token, timeout_ms);
	if (e == -EINPROGRESS || e == -ETIMEDOUT)
		return e;
	pthread_mutex_lock(&m->lock);
	if (!m->done) {
		m->done = true;
		m->result = e;
		if (e == 0)
			migrate_landed(m->rec, m->dst);
	}
	e = m->result;
	pthread_mutex_unlock(&m->lock);
	return e;
}

int coh_migration_test(coh_migration *m)
{
	if (!m)
		return -EINVAL;
	if (m->native)
		return native_poll(m, 0);
	pthread_mutex_lock(&m->lock);
	int e = m->done ? m->result : -EINPROGRESS;
	pthread_mutex_unlock(&m->lock);
	return e;
}

int coh_migration_wait(coh_migration *m, int timeout_ms)
{
	if (!m)
		return -EINVAL;
	if (m->native)
		return native_poll(m, timeout_ms);
	struct timespec until;
	if (timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &until);
		until.tv_sec += timeout_ms / 1000;
		until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (until.tv_nsec >= 1000000000L) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000L;
		}
	}
	pthread_mutex_lock(&m->lock);
	int e = 0;
	while (!m->done && e == 0)
		e = timeout_ms < 0 ? pthread_cond_wait(&m->cond, &m->lock)
				   : pthread_cond_timedwait(&m->cond, &m->lock, &until);
	int r = m->done ? m->result : -ETIMEDOUT;
	pthread_mutex_unlock(&m->lock);
	return r;
}

void coh_migration_free(coh_migration *m)
{
	if (!m)
		return;
	if (m->native) {
		native_poll(m, -1);
		m->native->migrate_done(m->token);
		pthread_mutex_destroy(&m->lock);
		coh_rec_put(m->rec);
		coh_context_unref(m->ctx);
		free(m);
		return;
	}
	pthread_join(m->thread, NULL);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->lock);
	coh_rec_put(m->rec);
	coh_context_unref(m->ctx);
	free(m);
}
