/* SPDX-License-Identifier: MIT */
/* nvidia backend: fork policies, the plan and copy for the core's fork
 * staging, the staging buffer, the atfork hooks (the design: nvidia.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/mman.h>

#include "nvidia.h"

struct stage_hdr {
	atomic_int busy;          /* a child has not finished reading the staging buffer */
};

void nv_staging_drop(struct nv_backend *nb)
{
	if (!nb->staging)
		return;
	if (nb->staging_pinned && !in_child(nb))
		nb->cu.host_unregister(nb->staging);
	coh_sys_munmap(nb->staging, nb->staging_len);
	nb->staging = NULL;
	nb->staging_len = 0;
	nb->staging_pinned = false;
}

int nv_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	if (!nv_rec_managed(nb_of(rec->target), rec))
		return coh_fork_madvise(rec, policy);   /* ordinary private memory: the kernel's controls */
	/* managed memory: the core's fork staging acts on the policy at fork time */
	return policy == COH_FORK_SHARE ? -EOPNOTSUPP : 0;
}

/* Managed memory: CUDA disables the mapping in a child, so COPY, ZERO and
 * EXCLUDE are staged by the core (the child's mapping is the driver's: no
 * DONTFORK, the core maps over it); KERNEL leaves the driver's way. */
int nv_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	struct nv_backend *nb = nb_of(rec->target);
	/* not ours to stage, or no CUDA in this process; in a forked child the
	 * range is the child's own private memory (or nothing), which the
	 * kernel forks like any other */
	if (!nv_rec_managed(nb, rec) || in_child(nb) || (at_fork && !nb->fork_locked))
		return 0;
	plan->parent_keeps = 1;
	switch (rec->fork_policy) {
	case COH_FORK_COPY:
		plan->stage = COH_STAGE_COPY;
		plan->child_view = COH_CHILD_COPY;
		plan->reason = "copied out through the GPU before fork: the child gets a private copy at the same address";
		return 0;
	case COH_FORK_EXCLUDE:
		plan->stage = COH_STAGE_UNMAP;
		plan->child_view = COH_CHILD_ABSENT;
		plan->reason = "unmapped in the child: an access raises SIGSEGV";
		return 0;
	case COH_FORK_ZERO:
		plan->stage = COH_STAGE_ZERO;
		plan->child_view = COH_CHILD_ZERO;
		plan->reason = "zero-filled private memory in the child";
		return 0;
	default:
		plan->child_view = COH_CHILD_UNREADABLE;
		plan->reason = "CUDA disables managed mappings in a forked child: an access raises SIGSEGV";
		return 0;
	}
}

/* Through the GPU's copy engine, to the staging buffer (or the core's copy
 * where that could not be had); the prepare hook holds the driver calls. */
int nv_fork_copy(const struct coh_alloc_rec *rec, void *dst)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = gpu_of(rec->target);
	int e = nv_ctx_in(nb, g);
	if (e)
		return e;
	CUresult r = nb->cu.memcpy_async((uintptr_t)dst, rec->start, rec->length, g->stream[0]);
	if (r == CUDA_SUCCESS)
		r = nb->cu.stream_sync(g->stream[0]);
	nv_ctx_out(nb);
	if (r == CUDA_SUCCESS)
		return 0;
	coh_warn(nb->ctx, "nvidia: fork copy of %#lx+%zu failed: %s", (unsigned long)rec->start, rec->length,
		 nv_cu_name(nb, r));
	return -EIO;
}

/* A shared staging buffer of at least need bytes after its header page, pinned
 * for copy-engine speed; a buffer a child may still be reading is retired. */
static int staging_ready(struct nv_backend *nb, size_t need)
{
	size_t ps = coh_ctx_page_size(nb->ctx);
	if (nb->staging) {
		struct stage_hdr *h = nb->staging;
		if (atomic_load(&h->busy) == 0 && nb->staging_len >= need + ps)
			return 0;
		nv_staging_drop(nb);
	}
	size_t len = (need + ps + NV_2M - 1) & ~(size_t)(NV_2M - 1);
	void *p;
	int e = coh_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0, &p);
	if (e)
		return e;
	nb->staging = p;
	nb->staging_len = len;
	CUresult r = nb->cu.host_register(p, len, 0);
	nb->staging_pinned = r == CUDA_SUCCESS;
	if (!nb->staging_pinned)
		coh_warn(nb->ctx, "nvidia: fork staging buffer not pinned (%s): fork COPY runs slower",
			 nv_cu_name(nb, r));
	return 0;
}

/* This fork's COPY data: the staging buffer, which the child reads. */
void *nv_fork_buffer(coh_context *ctx, void *priv, size_t need)
{
	struct nv_backend *nb = priv;
	if (staging_ready(nb, need)) {
		coh_warn(ctx, "nvidia: no memory for the fork staging buffer: COPY ranges are copied to unpinned memory");
		return NULL;
	}
	nb->staged_copy = true;
	atomic_store(&((struct stage_hdr *)nb->staging)->busy, 1);
	return (char *)nb->staging + coh_ctx_page_size(ctx);
}

void nv_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	nb->staged_copy = false;
	nb->fork_locked = false;
	if (!nb->lib || in_child(nb))
		return;
	pthread_rwlock_wrlock(&nb->calls);   /* held until the parent or child hook */
	nb->fork_locked = true;
}

void nv_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	/* the child reads the staging buffer; the next fork checks it is done */
	if (nb->fork_locked) {
		nb->fork_locked = false;
		pthread_rwlock_unlock(&nb->calls);
	}
}

/* Async-signal-safe: munmap.  The core has copied the staged data out. */
void nv_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	/* nb->calls stays as the prepare hook left it: every driver call answers
	 * -ECHILD here before taking it, and re-initialising a held lock is
	 * undefined (glibc's rwlock cannot be unlocked by the child either) */
	nb->fork_locked = false;
	if (nb->staging) {
		if (nb->staged_copy)
			atomic_store(&((struct stage_hdr *)nb->staging)->busy, 0);
		coh_sys_munmap(nb->staging, nb->staging_len);   /* the parent keeps its own view */
		nb->staging = NULL;
		nb->staging_len = 0;
		nb->staging_pinned = false;
	}
}
