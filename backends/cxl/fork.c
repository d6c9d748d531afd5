/* SPDX-License-Identifier: MIT */
/* cxl backend: fork policies, the core's staging hooks and the atfork hooks. */
#include <errno.h>
#include <sys/mman.h>

#include "cxl.h"

/* ---------------- fork ---------------- */

/* How many chunks of rec are on the device (ct->lock held). */
static size_t chunks_on_device(struct cxl_target *ct, const struct coh_alloc_rec *rec)
{
	long c = cxl_first_chunk(ct, (void *)rec->start);
	size_t k = 0;
	for (size_t i = 0; c >= 0 && i < ct->run[c]; i++)
		k += ct->state[(size_t)c + i] == CH_DEV;
	return k;
}

/* Device chunks: the window's DOFORK/DONTFORK (and the core's fork staging
 * for COPY and ZERO); chunks moved to the host: the kernel's own controls. */
int cxl_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	struct cxl_target *ct = ct_of(rec->target);
	pthread_mutex_lock(&ct->lock);
	long c = cxl_first_chunk(ct, (void *)rec->start);
	if (c < 0) {
		/* an import (coh_import): the device mapped at an address of its
		 * own, shared memory: the kernel's controls, no COPY or ZERO */
		pthread_mutex_unlock(&ct->lock);
		if (policy == COH_FORK_COPY || policy == COH_FORK_ZERO)
			return -EOPNOTSUPP;
		return coh_sys_madvise((void *)rec->start, rec->length,
				       policy == COH_FORK_EXCLUDE ? MADV_DONTFORK : MADV_DOFORK);
	}
	int e = 0;
	size_t a = ct->align, n = c < 0 ? 0 : ct->run[c];
	for (size_t i = 0; i < n && !e;) {
		size_t j = i + 1;
		while (j < n && ct->state[(size_t)c + j] == ct->state[(size_t)c + i])
			j++;
		void *p = ct->base + ((size_t)c + i) * a;
		if (ct->state[(size_t)c + i] == CH_HOST)
			e = cxl_host_fork_controls(p, (j - i) * a, policy, rec->shared);
		else
			e = coh_sys_madvise(p, (j - i) * a, cxl_policy_forks(policy) ? MADV_DOFORK : MADV_DONTFORK);
		i = j;
	}
	if (!e)
		ct->forks[c] = cxl_policy_forks(policy);
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* COPY and ZERO of a range with chunks on the device are staged by the core:
 * the window is DONTFORK already, so the child gets the copy or zeroes in the
 * hole; a range all on the host forks by the kernel's controls.  At fork the
 * prepare hook holds the chunk maps' locks. */
int cxl_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	if (rec->fork_policy != COH_FORK_COPY && rec->fork_policy != COH_FORK_ZERO)
		return 0;
	struct cxl_target *ct = ct_of(rec->target);
	if (!at_fork)
		pthread_mutex_lock(&ct->lock);
	bool host = chunks_on_device(ct, rec) == 0;
	if (!at_fork)
		pthread_mutex_unlock(&ct->lock);
	if (host)
		return 0;   /* the kernel's copy-on-write or wipe-on-fork */
	plan->stage = rec->fork_policy == COH_FORK_COPY ? COH_STAGE_COPY : COH_STAGE_ZERO;
	if (rec->fork_policy == COH_FORK_COPY)
		plan->reason = "device-dax is shared: copied into private memory before fork, moved to the same address "
			       "in the child";
	return 0;
}

/* Device chunks are read in place; chunks on the host too. */
int cxl_fork_copy(const struct coh_alloc_rec *rec, void *copy)
{
	coh_fork_snapshot(copy, (void *)rec->start, rec->length);
	return 0;
}

/* The chunk maps' locks are held across fork (released in the parent and in
 * the child, whose allocations then answer -ECHILD: the window is the
 * parent's). */
void cxl_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_lock(&cb->ts[i]->lock);
}

void cxl_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_unlock(&cb->ts[i]->lock);
}

void cxl_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_unlock(&cb->ts[i]->lock);   /* taken by the forking thread, the child's own */
}
