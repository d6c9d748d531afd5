/* SPDX-License-Identifier: MIT */
/* cxl backend: alloc, free and free bytes, as runs of window chunks. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cxl.h"

int cxl_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	struct cxl_target *ct = ct_of(t);
	size_t a = ct->align, n = (size + a - 1) / a;
	if (align > a)
		return -EINVAL;   /* the device's own alignment is the only one it offers */
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ct->lock);
	int e = cxl_window(t, ct);
	if (!e)
		e = cxl_map_lock(&ct->map);
	if (e)
		goto out;
	/* free chunks machine-wide; those of holders that are gone when there is no room */
	long first = cxl_map_find(&ct->map, n, ct->hint);
	if (first < 0 && cxl_map_reclaim(coh_target_context(t), &ct->map))
		first = cxl_map_find(&ct->map, n, ct->hint);
	e = first < 0 ? -ENOMEM : 0;
	uint8_t *p = e ? NULL : ct->base + (size_t)first * a;
	int policy = coh_backend_fork_policy(flags);
	if (!e && cxl_policy_forks(policy))
		e = coh_sys_madvise(p, n * a, MADV_DOFORK);
	if (!e)
		cxl_map_claim(&ct->map, (size_t)first, n);   /* the map changes only for an allocation made */
	cxl_map_unlock(&ct->map);
	if (e)
		goto out;
	memset(ct->state + first, CH_DEV, n);
	ct->run[first] = (uint32_t)n;
	ct->forks[first] = cxl_policy_forks(policy);
	ct->nused += n;
	ct->hint = (size_t)first + n < ct->nchunks ? (size_t)first + n : 0;
	*out = p;
out:
	pthread_mutex_unlock(&ct->lock);
	return e;
}

int cxl_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	if (priv)
		return cxl_import_free(t, ptr, priv);   /* only imports carry a priv */
	struct cxl_target *ct = ct_of(t);
	if (ct->base && ct->pid != getpid())
		return coh_sys_munmap(ptr, (size + ct->align - 1) / ct->align * ct->align);   /* a child's view */
	pthread_mutex_lock(&ct->lock);
	long c = cxl_first_chunk(ct, ptr);
	int e = c < 0 ? -ENOENT : 0;
	if (!e) {
		size_t n = ct->run[c];
		bool host = false;
		for (size_t i = (size_t)c; i < (size_t)c + n; i++)
			host |= ct->state[i] == CH_HOST;
		/* the window gets the device back where host memory replaced it */
		if (host)
			e = cxl_remap_device(ct, (size_t)c, n, false);
		else if (ct->forks[c])
			e = coh_sys_madvise(ptr, n * ct->align, MADV_DONTFORK);
		memset(ct->state + c, CH_FREE, n);
		ct->run[c] = 0;
		ct->forks[c] = 0;
		ct->nused -= n;
		/* the chunks go back to every process; without the lock they stay
		 * this process's until it exits */
		int le = cxl_map_lock(&ct->map);
		size_t foreign = 0;
		if (!le) {
			/* an exported run stays with the processes that imported it */
			int sh = cxl_map_leave(coh_target_context(t), &ct->map, (size_t)c, n);
			if (sh <= 0)
				foreign = cxl_map_release(&ct->map, (size_t)c, n);
			cxl_map_unlock(&ct->map);
		}
		if (le || foreign)
			coh_warn(coh_target_context(t), "cxl: %s: %zu chunks at %p: %s", coh_target_name(t), n, ptr,
				 le ? "the map's lock failed: held until this process exits"
				    : "another holder's in the map: left to it");
		if (!e)
			e = le;
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* Free chunks machine-wide (the chunks of holders that are gone count as
 * free: they are reclaimed here); a replay, or a process that cannot open the
 * device or its map, counts this context's own. */
int cxl_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct cxl_target *ct = ct_of(t);
	coh_context *ctx = coh_target_context(t);
	pthread_mutex_lock(&ct->lock);
	size_t nfree = ct->nchunks - ct->nused;
	if (ct->base && ct->pid != getpid()) {
		if (ct->map.nchunks)
			nfree = cxl_map_free_count(&ct->map);   /* a forked child: read, never written */
	} else if (!coh_ctx_replay(ctx) && !cxl_attach(t, ct, false) && !cxl_map_lock(&ct->map)) {
		cxl_map_reclaim(ctx, &ct->map);
		nfree = cxl_map_free_count(&ct->map);
		cxl_map_unlock(&ct->map);
	}
	*free_bytes = (uint64_t)nfree * ct->align;
	pthread_mutex_unlock(&ct->lock);
	return 0;
}
