/* SPDX-License-Identifier: MIT */
/* Allocate, free, adopt, release and look up: the allocation map's users. */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "internal.h"

#define FLAGS_KNOWN (COH_ALLOC_HUGE | COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE | COH_ALLOC_SHAREABLE)

int coh_check_range(const void *addr, size_t len)
{
	if (!addr)
		return -EFAULT;
	if (len == 0)
		return -EINVAL;
	if ((uintptr_t)addr + len < (uintptr_t)addr || len > (SIZE_MAX >> 1))
		return -EOVERFLOW;
	return 0;
}

/* The caller's properties (NULL: the defaults), checked: 0 or -errno. */
static int props_get(const struct coh_alloc_props *user, struct coh_alloc_props *p)
{
	*p = (struct coh_alloc_props){ .size = sizeof(*p), .fork_policy = COH_FORK_COPY };
	if (user) {
		int e = coh_struct_in(p, sizeof(*p), user);
		if (e)
			return e;
	}
	if (p->flags & ~FLAGS_KNOWN)
		return -EINVAL;
	if ((p->flags & COH_ALLOC_HUGE) && (p->flags & COH_ALLOC_NOHUGE))
		return -EINVAL;
	if (p->fork_policy < COH_FORK_COPY || p->fork_policy > COH_FORK_KERNEL)
		return -EINVAL;
	if (p->align & (p->align - 1))
		return -EINVAL;
	return 0;
}

void coh_rec_put(struct coh_rec *r)
{
	if (!r || atomic_fetch_sub(&r->refs, 1) != 1)
		return;
	/* keep one record for the next allocation: alloc+free loops skip malloc */
	struct coh_rec *none = NULL;
	if (!r->pub.target || !atomic_compare_exchange_strong(&r->pub.target->ctx->spare_rec, &none, r))
		free(r);
}

int coh_rec_get(coh_context *ctx, const void *addr, size_t len, struct coh_rec **out)
{
	uintptr_t a = (uintptr_t)addr;
	coh_amap_lock(&ctx->amap);
	struct coh_rec *r = coh_amap_find(&ctx->amap, a);
	if (r) {
		if (len > r->pub.start + r->pub.length - a) {
			coh_amap_unlock(&ctx->amap);
			return -EINVAL;   /* runs past the end of the allocation */
		}
		atomic_fetch_add(&r->refs, 1);
	}
	coh_amap_unlock(&ctx->amap);
	if (!r)
		return -ENOENT;
	*out = r;
	return 0;
}

static struct coh_rec *rec_new(coh_target *t, void *p, size_t len, const struct coh_alloc_props *props,
			       int adopted)
{
	struct coh_rec *r = atomic_exchange(&t->ctx->spare_rec, NULL);
	if (!r && !(r = malloc(sizeof(*r))))
		return NULL;
	memset(&r->pub, 0, sizeof(r->pub));
	r->pub.start = (uintptr_t)p;
	r->pub.length = len;
	r->pub.target = t;
	r->pub.flags = props->flags;
	r->pub.fork_policy = props->fork_policy;
	r->pub.adopted = adopted;
	r->user_data = props->user_data;
	/* shareable memory is a shared mapping whatever its fork policy */
	r->pub.shared = r->pub.fork_policy == COH_FORK_SHARE || (props->flags & COH_ALLOC_SHAREABLE);
	r->pub.home = adopted ? NULL : t;
	atomic_init(&r->refs, 1);
	return r;
}

static int check_target(coh_target *t, uint64_t cap)
{
	if (!t)
		return -EINVAL;
	if (t->ctx->replay)
		return -EROFS;
	if (!(t->d.caps & cap))
		return -EOPNOTSUPP;
	return 0;
}

int coh_alloc(coh_target *t, size_t size, const struct coh_alloc_props *props, void **out)
{
	int e;
	struct coh_alloc_props pr;
	if (!out)
		return -EFAULT;
	if ((e = check_target(t, COH_CAP_ALLOC)))
		return e;
	if (size == 0)
		return -EINVAL;
	if (size > (SIZE_MAX >> 1))
		return -EOVERFLOW;
	if ((e = props_get(props, &pr)))
		return e;
	if (!(t->d.caps & (COH_CAP_FORK_COPY << pr.fork_policy)))
		return -EOPNOTSUPP;
	if ((pr.flags & COH_ALLOC_HUGE) && !(t->d.caps & COH_CAP_HUGE_PAGES))
		return -EOPNOTSUPP;
	if ((pr.flags & COH_ALLOC_SHAREABLE) &&
	    (!(t->d.caps & COH_CAP_SHARE) || pr.fork_policy == COH_FORK_COPY || pr.fork_policy == COH_FORK_ZERO))
		return -EOPNOTSUPP;   /* shared memory gives a child neither a private copy nor zeroes */
	coh_context *ctx = t->ctx;
	size_t align = pr.align < ctx->page_size ? ctx->page_size : pr.align;
	size_t len = (size + ctx->page_size - 1) & ~(ctx->page_size - 1);

	void *p = NULL, *priv = NULL;
	e = t->slot->ops->alloc(t, len, align, coh_backend_flags(pr.flags, pr.fork_policy), &p, &priv);
	if (e)
		return e;
	struct coh_rec *r = rec_new(t, p, len, &pr, 0);
	if (!r) {
		t->slot->ops->free(t, p, len, priv);
		return -ENOMEM;
	}
	r->pub.priv = priv;   /* before the record is in the map */
	/* New mappings already fork the kernel's way (copy-on-write): only the
	 * other policies need a madvise. */
	if (r->pub.fork_policy != COH_FORK_COPY && r->pub.fork_policy != COH_FORK_KERNEL)
		e = coh_fork_apply(ctx, r, r->pub.fork_policy);
	if (!e) {
		coh_amap_lock(&ctx->amap);
		e = coh_amap_insert(&ctx->amap, r);
		coh_amap_unlock(&ctx->amap);
	}
	if (e) {
		t->slot->ops->free(t, p, len, priv);
		free(r);
		return e;
	}
	*out = p;
	return 0;
}

int coh_rec_add_import(coh_target *t, void *p, size_t len, void *priv)
{
	struct coh_alloc_props pr = { .size = sizeof(pr), .flags = COH_ALLOC_SHAREABLE | COH_ALLOC_IMPORTED,
				      .fork_policy = COH_FORK_SHARE };
	struct coh_rec *r = rec_new(t, p, len, &pr, 0);
	if (!r)
		return -ENOMEM;
	r->pub.priv = priv;
	coh_amap_lock(&t->ctx->amap);
	int e = coh_amap_insert(&t->ctx->amap, r);
	coh_amap_unlock(&t->ctx->amap);
	if (e)
		free(r);
	return e;
}

/* Puts back a record taken out of the map whose memory the backend could not
 * free or release: the caller keeps it, and may try again. */
static void rec_restore(coh_context *ctx, struct coh_rec *r, int why)
{
	coh_amap_lock(&ctx->amap);
	int e = coh_amap_insert(&ctx->amap, r);
	coh_amap_unlock(&ctx->amap);
	if (e) {
		coh_warn(ctx, "%#lx+%zu: could not be freed (%s) nor kept in the map (%s): no longer tracked",
			 (unsigned long)r->pub.start, r->pub.length, strerror(-why), strerror(-e));
		coh_rec_put(r);
	}
}

static int free_check(const struct coh_rec *r)
{
	if (r->pub.adopted)
		return -EINVAL;   /* adopted memory is released, not freed */
	if (atomic_load(&((struct coh_rec *)r)->refs) > 1)
		return -EBUSY;    /* a migration or advice is using it: free it after that */
	return 0;
}

/* coh_free's own: a pool's backing is the pool's to free */
static int free_check_user(const struct coh_rec *r)
{
	if (coh_pool_owns(r->pub.start))
		return -EINVAL;
	return free_check(r);
}

static int release_check(const struct coh_rec *r)
{
	if (!r->pub.adopted && !(r->pub.flags & COH_ALLOC_IMPORTED))
		return -EINVAL;
	if (atomic_load(&((struct coh_rec *)r)->refs) > 1)
		return -EBUSY;
	return 0;
}

static int free_with(coh_context *ctx, void *ptr, int (*check)(const struct coh_rec *r))
{
	if (!ctx)
		return -EINVAL;
	if (!ptr)
		return -EFAULT;
	if (ctx->replay)
		return -EROFS;
	struct coh_rec *r = NULL;
	coh_amap_lock(&ctx->amap);
	int e = coh_amap_take(&ctx->amap, (uintptr_t)ptr, check, &r);
	coh_amap_unlock(&ctx->amap);
	if (e)
		return e;
	e = r->pub.target->slot->ops->free(r->pub.target, ptr, r->pub.length, r->pub.priv);
	if (e) {
		/* still mapped: keep it in the map, so that it can be freed again */
		rec_restore(ctx, r, e);
		return e;
	}
	coh_rec_put(r);
	return 0;
}

int coh_free(coh_context *ctx, void *ptr)
{
	return free_with(ctx, ptr, free_check_user);
}

int coh_free_backing(coh_context *ctx, void *ptr)
{
	return free_with(ctx, ptr, free_check);
}

int coh_adopt(coh_target *t, void *addr, size_t len, const struct coh_alloc_props *props)
{
	int e;
	struct coh_alloc_props pr;
	if ((e = check_target(t, COH_CAP_ADOPT)))
		return e;
	if ((e = coh_check_range(addr, len)))
		return e;
	if ((e = props_get(props, &pr)))
		return e;
	if (pr.flags || pr.align)
		return -EINVAL;   /* hints and alignment are for new memory only */
	coh_context *ctx = t->ctx;
	if (((uintptr_t)addr | len) & (ctx->page_size - 1))
		return -EINVAL;
	int policy = pr.fork_policy;
	if (policy == COH_FORK_SHARE)
		return -EOPNOTSUPP;   /* private memory cannot become shared in place */
	if (!(t->d.caps & (COH_CAP_FORK_COPY << policy)))
		return -EOPNOTSUPP;
	struct coh_rec *r = rec_new(t, addr, len, &pr, 1);
	if (!r)
		return -ENOMEM;

	/* Reserve the range first so two threads cannot adopt it twice. */
	coh_amap_lock(&ctx->amap);
	e = coh_amap_insert(&ctx->amap, r);
	coh_amap_unlock(&ctx->amap);
	if (e) {
		free(r);
		return e;
	}
	void *priv = NULL;
	e = t->slot->ops->adopt(t, addr, len, coh_backend_flags(pr.flags, policy), &priv);
	if (!e)
		r->pub.priv = priv;   /* atomic: the record is in the map already */
	if (!e && policy != COH_FORK_KERNEL) {
		/* Even COPY: the caller may have marked the range DONTFORK before. */
		e = coh_fork_apply(ctx, r, policy);
		if (e)
			t->slot->ops->release(t, &r->pub);
	}
	if (e) {
		coh_amap_lock(&ctx->amap);
		coh_amap_remove(&ctx->amap, r->pub.start);
		coh_amap_unlock(&ctx->amap);
		coh_rec_put(r);
		return e;
	}
	return 0;
}

int coh_release(coh_context *ctx, void *addr)
{
	if (!ctx)
		return -EINVAL;
	if (!addr)
		return -EFAULT;
	if (ctx->replay)
		return -EROFS;
	struct coh_rec *r = NULL;
	coh_amap_lock(&ctx->amap);
	int e = coh_amap_take(&ctx->amap, (uintptr_t)addr, release_check, &r);
	coh_amap_unlock(&ctx->amap);
	if (e)
		return e;
	if (r->pub.flags & COH_ALLOC_IMPORTED) {
		/* an import is the library's own mapping: released is unmapped */
		e = r->pub.target->slot->ops->free(r->pub.target, addr, r->pub.length, r->pub.priv);
		if (e)
			rec_restore(ctx, r, e);
		else
			coh_rec_put(r);
		return e;
	}
	/* The caller keeps the memory: undo what adopting changed.  When that
	 * fails the range stays adopted, under the policy it had. */
	if (r->pub.fork_policy != COH_FORK_KERNEL)
		e = coh_fork_apply(ctx, r, COH_FORK_KERNEL);
	if (!e) {
		e = r->pub.target->slot->ops->release(r->pub.target, &r->pub);
		if (e && r->pub.fork_policy != COH_FORK_KERNEL)
			coh_fork_apply(ctx, r, r->pub.fork_policy);
	} else if (r->pub.fork_policy != COH_FORK_KERNEL) {
		coh_fork_apply(ctx, r, r->pub.fork_policy);   /* a part may have changed */
	}
	if (e) {
		rec_restore(ctx, r, e);
		return e;
	}
	coh_rec_put(r);
	return 0;
}

int coh_lookup(coh_context *ctx, const void *addr, struct coh_alloc_info *info)
{
	if (!ctx || !info || coh_struct_out_check(info))
		return -EINVAL;
	if (!addr)
		return -EFAULT;
	/* lock-free: the page table mirrors the map (core/ptab.c) */
	struct coh_ptab_hit h;
	if (!coh_ptab_get(&ctx->amap.ptab, (uintptr_t)addr, &h))
		return -ENOENT;
	struct coh_alloc_info i, *o = info->size == sizeof(i) ? info : &i;   /* the common case: in place */
	if (o == &i)
		memset(&i, 0, sizeof(i));   /* padding too: the caller gets it */
	o->base = (void *)h.start;
	o->length = h.length;
	o->target = h.tindex >= 0 && h.tindex < ctx->ntargets ? ctx->targets[h.tindex] : NULL;
	o->flags = h.flags;
	o->fork_policy = h.fork_policy;
	o->adopted = h.adopted;
	o->user_data = h.user_data;
	o->pool = NULL;
	o->block = NULL;
	o->block_size = 0;
	coh_pool_describe(h.start, (uintptr_t)addr, o);
	if (o == &i) {
		i.size = sizeof(i);
		coh_struct_out(info, &i, sizeof(i));
	}
	return 0;
}

int coh_set_user_data(coh_context *ctx, const void *addr, void *data)
{
	if (!ctx)
		return -EINVAL;
	if (!addr)
		return -EFAULT;
	coh_amap_lock(&ctx->amap);
	int e = coh_amap_set_user_data(&ctx->amap, (uintptr_t)addr, data);
	coh_amap_unlock(&ctx->amap);
	return e;
}

struct foreach_arg {
	const struct coh_backend_ops *ops;
	int (*fn)(const struct coh_alloc_rec *, void *);
	void *arg;
};

static int foreach_one(struct coh_rec *r, void *arg)
{
	struct foreach_arg *a = arg;
	return r->pub.target->slot->orig == a->ops ? a->fn(&r->pub, a->arg) : 0;
}

int coh_rec_foreach(coh_context *ctx, const struct coh_backend_ops *ops,
		    int (*fn)(const struct coh_alloc_rec *rec, void *arg), void *arg)
{
	struct foreach_arg a = { ops, fn, arg };
	coh_amap_lock(&ctx->amap);
	int e = coh_amap_walk(&ctx->amap, foreach_one, &a);
	coh_amap_unlock(&ctx->amap);
	return e;
}

int coh_alloc_count(coh_context *ctx)
{
	if (!ctx)
		return -EINVAL;
	coh_amap_lock(&ctx->amap);
	size_t n = ctx->amap.count;
	coh_amap_unlock(&ctx->amap);
	return n > INT32_MAX ? INT32_MAX : (int)n;
}
