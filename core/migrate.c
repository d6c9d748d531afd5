/* SPDX-License-Identifier: MIT */
/* Migration engine: validation, then the owning backend moves the pages.
 * The asynchronous and queued forms (core/cqueue.c) and the batched form
 * (core/batch.c) run the same path. */
#include <errno.h>
#include <stdlib.h>

#include "internal.h"

#define MIGRATE_FLAGS_KNOWN 0u

/* Everything that needs no lock: 0 or -errno. */
int coh_migrate_check(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags)
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
	return 0;
}

/* The record holding the range, a reference taken; the caller holds the map's lock. */
static int rec_get_locked(coh_context *ctx, void *addr, size_t len, struct coh_rec **out)
{
	uintptr_t a = (uintptr_t)addr;
	struct coh_rec *r = coh_amap_find(&ctx->amap, a);
	if (!r)
		return -ENOENT;
	if (len > r->pub.start + r->pub.length - a)
		return -EINVAL;   /* runs past the end of the allocation */
	if (!r->pub.target->slot->ops->migrate)
		return -EOPNOTSUPP;
	atomic_fetch_add(&r->refs, 1);
	*out = r;
	return 0;
}

int coh_migrate_prepare_locked(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags,
			       struct coh_rec **rec)
{
	int e = coh_migrate_check(ctx, addr, len, dst, flags);
	return e ? e : rec_get_locked(ctx, addr, len, rec);
}

/* Validates and takes a reference on the record holding the range. */
static int migrate_prepare(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags,
			   struct coh_rec **rec)
{
	int e = coh_migrate_check(ctx, addr, len, dst, flags);
	if (e)
		return e;
	coh_amap_lock(&ctx->amap);
	e = rec_get_locked(ctx, addr, len, rec);
	coh_amap_unlock(&ctx->amap);
	return e;
}

void coh_migrate_landed(struct coh_rec *r, coh_target *dst)
{
	coh_context *ctx = dst->ctx;
	coh_amap_lock(&ctx->amap);
	r->pub.home = dst;
	r->pub.placed = 1;
	coh_amap_unlock(&ctx->amap);
}

int coh_migrate_run(struct coh_rec *r, void *addr, size_t len, coh_target *dst, unsigned flags)
{
	/* The backend that owns the memory moves it, whatever the destination. */
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	int e = ops->migrate(dst, &r->pub, addr, len, flags);
	if (e == 0)
		coh_migrate_landed(r, dst);
	return e;
}

int coh_migrate(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags)
{
	struct coh_rec *r;
	int e = migrate_prepare(ctx, addr, len, dst, flags, &r);
	if (e)
		return e;
	e = coh_migrate_run(r, addr, len, dst, flags);
	if (e)
		coh_dbg(ctx, "migrate %p+%zu to %s: %d", addr, len, dst->d.name, e);
	coh_rec_put(r);
	return e;
}
