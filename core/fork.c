/* SPDX-License-Identifier: MIT */
/*
 * Fork engine: the per-allocation fork policy (madvise DONTFORK/WIPEONFORK,
 * coh_fork_policy_set/get), the staging helpers backends' fork hooks use
 * (coh_fork_snapshot, coh_fork_unstage), and the one pthread_atfork registry
 * that calls every backend's prepare/parent/child hooks.
 *
 * A separate pair of handlers holds the loader lock across fork (held across
 * every dlopen/dlsym of the library's own, coh_dlopen: a child forked while
 * another thread is inside the dynamic loader inherits the loader's state
 * half-changed).
 * prepare (in the forking thread): takes the registry lock, then runs each
 * context's backend prepare hooks (which take the backends' locks), takes its
 * allocation-map lock, stages the ranges the backends' fork plans name
 * (core/forkstage.c), takes the worker pool's lock (core/cqueue.c) and the log lock, in the library's lock order (see
 * core/internal.h), so that no other parent thread is inside them when the
 * address space is copied.
 * parent: undoes the staging, unlocks the map and log, runs the backends'
 * parent hooks (which unlock theirs), logs what staging could not undo.
 * child: the child's one thread is the one that called fork and took the
 * locks, so the child handler unlocks them as the parent's does (defined by
 * POSIX; re-initialising a held lock is not).  It first puts the staged
 * copies in place and drops the records of EXCLUDE ranges, which the child
 * does not have.  Only async-signal-safe work happens there, and backends'
 * child hooks must keep to that too.
 * pthread_atfork handlers do not run for vfork(), posix_spawn() or raw clone():
 * those children share or replace the address space, so no policy applies.
 */
#include <dlfcn.h>
#include <errno.h>
#include <sys/mman.h>

#include "internal.h"

static pthread_mutex_t loader_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static coh_context *registry_head;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static pthread_once_t loader_once = PTHREAD_ONCE_INIT;

static void fork_prepare(void)
{
	pthread_mutex_lock(&registry_lock);
	for (coh_context *c = registry_head; c; c = c->fork_next) {
		for (int i = c->nslots - 1; i >= 0; i--)
			if (c->slots[i].ops->atfork_prepare)
				c->slots[i].ops->atfork_prepare(c, c->slots[i].priv);
		coh_amap_lock(&c->amap);   /* the lock order: map before log */
		coh_forkstage_prepare(c);  /* may log: before the log lock */
		coh_workers_atfork_prepare(c);   /* then the worker pool's */
		pthread_mutex_lock(&c->log_lock);
	}
}

static void fork_parent(void)
{
	coh_forkstage_parent();   /* while no thread can free a staged range */
	for (coh_context *c = registry_head; c; c = c->fork_next) {
		coh_amap_unlock(&c->amap);
		coh_workers_atfork_parent(c);
		pthread_mutex_unlock(&c->log_lock);
		for (int i = 0; i < c->nslots; i++)
			if (c->slots[i].ops->atfork_parent)
				c->slots[i].ops->atfork_parent(c, c->slots[i].priv);
	}
	coh_forkstage_parent_report();
	pthread_mutex_unlock(&registry_lock);
}

static void fork_child(void)
{
	coh_forkstage_child();    /* before the backends' child hooks drop their buffers */
	for (coh_context *c = registry_head; c; c = c->fork_next) {
		/* the child has no mapping there: lookups must not find one, and
		 * nothing may later unmap what the child puts in the hole */
		coh_amap_drop_excluded(&c->amap);
		coh_amap_unlock(&c->amap);
		/* no worker survives: the parent's jobs end with -ECHILD here */
		coh_workers_atfork_child(c);
		pthread_mutex_unlock(&c->log_lock);
		for (int i = 0; i < c->nslots; i++)
			if (c->slots[i].ops->atfork_child)
				c->slots[i].ops->atfork_child(c, c->slots[i].priv);
	}
	pthread_mutex_unlock(&registry_lock);
}

static void atfork_install(void)
{
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* The loader lock has handlers of its own, installed before the first load:
 * prepare handlers run in the reverse order of their installation, so the
 * registry's (installed after the first context's discovery) runs before
 * those of the libraries discovery loaded (their locks are still free for
 * the backends' prepare hooks, which call into them), and this one last. */
static void loader_prepare(void)
{
	pthread_mutex_lock(&loader_lock);
}

static void loader_release(void)
{
	pthread_mutex_unlock(&loader_lock);   /* in the child too: the forking thread took it */
}

static void loader_install(void)
{
	pthread_atfork(loader_prepare, loader_release, loader_release);
}

/* Only the loader call itself is held: a library's own fork handlers,
 * registered when it loads, run before ours and may take its locks, so a
 * thread holding the loader lock must not call into such a library (cuInit,
 * for one) or the fork waits on it while it waits on the fork. */
void *coh_dlopen(const char *path, int flags)
{
	pthread_once(&loader_once, loader_install);   /* the first load is covered too */
	pthread_mutex_lock(&loader_lock);
	void *h = dlopen(path, flags);
	pthread_mutex_unlock(&loader_lock);
	return h;
}

void *coh_dlsym(void *handle, const char *name)
{
	pthread_once(&loader_once, loader_install);
	pthread_mutex_lock(&loader_lock);
	void *f = dlsym(handle, name);
	pthread_mutex_unlock(&loader_lock);
	return f;
}

void coh_fork_register(coh_context *ctx)
{
	pthread_once(&atfork_once, atfork_install);
	pthread_mutex_lock(&registry_lock);
	ctx->fork_next = registry_head;
	registry_head = ctx;
	pthread_mutex_unlock(&registry_lock);
}

void coh_fork_unregister(coh_context *ctx)
{
	pthread_mutex_lock(&registry_lock);
	for (coh_context **p = &registry_head; *p; p = &(*p)->fork_next)
		if (*p == ctx) {
			*p = ctx->fork_next;
			break;
		}
	if (!registry_head)
		coh_forkstage_release();
	pthread_mutex_unlock(&registry_lock);
}

/* The kernel's own controls, for memory whose fork behaviour is the VMA's. */
int coh_fork_madvise(const struct coh_alloc_rec *rec, int policy)
{
	void *a = (void *)rec->start;
	size_t len = rec->length;
	int e;
	switch (policy) {
	case COH_FORK_COPY:
		if (rec->shared)
			return -EOPNOTSUPP;  /* a shared mapping cannot give the child a private copy */
		/* private anonymous memory: the kernel's CoW gives the child its copy */
		__attribute__((fallthrough));
	case COH_FORK_KERNEL:
		if ((e = coh_sys_madvise(a, len, MADV_DOFORK)))
			return e;
		if (!rec->shared && (e = coh_sys_madvise(a, len, MADV_KEEPONFORK)))
			return e;
		return 0;
	case COH_FORK_SHARE:
		if (!rec->shared)
			return -EOPNOTSUPP;  /* only memory allocated with the SHARE policy */
		return coh_sys_madvise(a, len, MADV_DOFORK);
	case COH_FORK_EXCLUDE:
		if (!rec->shared && (e = coh_sys_madvise(a, len, MADV_KEEPONFORK)))
			return e;
		return coh_sys_madvise(a, len, MADV_DONTFORK);
	case COH_FORK_ZERO:
		if (rec->shared)
			return -EOPNOTSUPP;  /* MADV_WIPEONFORK takes private anonymous memory only */
		if ((e = coh_sys_madvise(a, len, MADV_DOFORK)))
			return e;
		return coh_sys_madvise(a, len, MADV_WIPEONFORK);
	default:
		return -EINVAL;
	}
}

int coh_fork_apply(coh_context *ctx, struct coh_rec *r, int policy)
{
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (!(r->pub.target->d.caps & (COH_CAP_FORK_COPY << policy)))
		return -EOPNOTSUPP;
	(void)ctx;
	return ops->fork_policy ? ops->fork_policy(&r->pub, policy) : coh_fork_madvise(&r->pub, policy);
}

int coh_fork_policy_set(coh_context *ctx, void *addr, size_t len, int policy)
{
	int e;
	if (!ctx)
		return -EINVAL;
	if ((e = coh_check_range(addr, len)))
		return e;
	if (policy < COH_FORK_COPY || policy > COH_FORK_KERNEL)
		return -EINVAL;
	if (ctx->replay)
		return -EROFS;
	struct coh_rec *r;
	if ((e = coh_rec_get(ctx, addr, len, &r)))
		return e;
	if (r->pub.start != (uintptr_t)addr || r->pub.length != len || coh_pool_owns(r->pub.start)) {
		coh_rec_put(r);
		return -EINVAL;   /* whole allocations only, and a pool has one policy */
	}
	e = coh_fork_apply(ctx, r, policy);
	if (!e) {
		coh_amap_lock(&ctx->amap);
		r->pub.fork_policy = policy;
		if (coh_amap_find(&ctx->amap, r->pub.start) == r)   /* not freed meanwhile */
			coh_amap_set_policy(&ctx->amap, r->pub.start, policy);
		coh_amap_unlock(&ctx->amap);
	}
	coh_rec_put(r);
	return e;
}

int coh_fork_policy_get(coh_context *ctx, const void *addr)
{
	struct coh_alloc_info info = { .size = sizeof(info) };
	int e = coh_lookup(ctx, addr, &info);
	return e ? e : info.fork_policy;
}

const char *coh_fork_policy_name(int policy)
{
	switch (policy) {
	case COH_FORK_COPY: return "copy";
	case COH_FORK_SHARE: return "share";
	case COH_FORK_EXCLUDE: return "exclude";
	case COH_FORK_ZERO: return "zero";
	case COH_FORK_KERNEL: return "kernel";
	default: return NULL;
	}
}
