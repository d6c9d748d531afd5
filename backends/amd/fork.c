/* SPDX-License-Identifier: MIT */
/* amd backend: fork policies, the core's staging hooks and the atfork hooks. */
#include <errno.h>
#include <pthread.h>
#include <unistd.h>

#include "amd.h"

/* ---------------- fork ---------------- */

/* COPY of device pages: the CPU cannot read VRAM without moving it, and a
 * page shared copy-on-write with a child cannot move back.  So the core
 * stages the range (MADV_DONTFORK keeps it from the child, which gets the
 * copy at the same address), and the copy hook brings it to system memory,
 * copies it and sends it back to its GPU.  EXCLUDE and ZERO are the kernel's
 * controls on this private memory; KERNEL is the kernel's copy-on-write of
 * device pages. */
int amd_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	return policy == COH_FORK_SHARE ? -EOPNOTSUPP : coh_fork_madvise(rec, policy);
}

/*
 * KERNEL on device-coherent VRAM (MI200-class, xGMI to the CPU), read in
 * kfd_svm.c of Linux 6.1 and 6.12: amdkfd maps a range for the GPU with
 * write access whenever the VMA is writable (svm_range_validate_and_map
 * takes readonly from the VMA, not from the fault).  With XNACK off, fork's
 * write-protection of the parent's page tables reaches KFD as an
 * invalidation, it evicts the range, and the restore worker maps it again
 * with write access: every page still shared with the child takes a
 * copy-on-write fault in the parent at once, copied to system memory.  With
 * XNACK on the same happens on the GPU's first fault, a read included.  The
 * query answers for a range KFD last prefetched to a coherent GPU; nothing
 * here was measured on AMD hardware.
 */
static int kernel_coherent_plan(const struct coh_alloc_rec *rec, struct coh_fork_plan *plan)
{
	struct amd_backend *ab = ab_of(rec->target);
	if (ab->xnack < 0 || amd_enter(ab))
		return 0;   /* mode unknown, or a forked child: the core's answer by page kind */
	coh_target *g = amd_prefetch_gpu(ab, rec->start, rec->length);
	amd_leave(ab);
	if (!g || gpu_of(g)->mem != AMD_COHERENT)
		return 0;
	plan->child_view = COH_CHILD_COPY;
	if (ab->xnack == 0) {
		plan->parent_keeps = COH_KEEPS_NO;
		plan->reason = "XNACK off: after fork KFD maps the range for the GPU again with write access, which "
			       "copies every page shared with the child to system memory in the parent (read in "
			       "kfd_svm.c, Linux 6.1-6.12; not measured on AMD hardware)";
	} else {
		plan->parent_keeps = COH_KEEPS_FIRST_WRITER;
		plan->reason = "XNACK on: a GPU fault asks for write access even to read, so the parent keeps its "
			       "device-coherent pages only if the child writes them before the parent or its GPU "
			       "touches them (read in kfd_svm.c, Linux 6.1-6.12; not measured on AMD hardware)";
	}
	return 0;
}

int amd_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	if (rec->fork_policy == COH_FORK_KERNEL && gpu_of(rec->target)->mem == AMD_PRIVATE) {
		/* test_hmm's device-private pages move for both processes on the
		 * child's first access; KFD's fault handler is its own and was
		 * never measured on AMD hardware (the emulator keeps them) */
		plan->child_view = COH_CHILD_COPY;
		plan->parent_keeps = COH_KEEPS_UNKNOWN;
		plan->reason = "kernel copy-on-write of VRAM the CPU cannot map: KFD's fault handler decides whether "
			       "the parent's pages move (not measured on AMD hardware)";
		return 0;
	}
	if (rec->fork_policy == COH_FORK_KERNEL && !at_fork)
		return kernel_coherent_plan(rec, plan);
	if (rec->fork_policy != COH_FORK_COPY)
		return 0;
	if (at_fork) {
		struct amd_backend *ab = ab_of(rec->target);
		if (!ab->fork_locked)
			return 0;   /* no KFD process here: nothing to bring back */
		coh_target *g = amd_prefetch_gpu(ab, rec->start, rec->length);
		if (!g || gpu_of(g)->mem == AMD_UNIFIED)
			return 0;   /* in system memory: the kernel's copy-on-write is the copy */
	}
	plan->stage = COH_STAGE_COPY;
	plan->dontfork = 1;
	plan->reason = "device pages are brought to system memory, copied and sent back to the GPU before fork; the "
		       "child gets the copy at the same address";
	return 0;
}

/* The prepare hook holds the backend's lock. */
int amd_fork_copy(const struct coh_alloc_rec *rec, void *copy)
{
	struct amd_backend *ab = ab_of(rec->target);
	coh_target *g = amd_prefetch_gpu(ab, rec->start, rec->length);
	if (!g)
		return -ENODEV;
	int e = amd_svm_set1(ab, rec->start, rec->length, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM);
	if (e)
		return e;
	coh_fork_snapshot(copy, (void *)rec->start, rec->length);
	amd_svm_set1(ab, rec->start, rec->length, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, gpu_of(g)->gpu_id);
	return 0;
}

void amd_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	ab->fork_locked = false;
	if (ab->kfd < 0 || ab->pid != getpid())
		return;
	pthread_mutex_lock(&ab->lock);   /* no ioctl in flight across fork; released in parent/child */
	ab->fork_locked = true;
}

void amd_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	if (ab->fork_locked) {
		ab->fork_locked = false;
		pthread_mutex_unlock(&ab->lock);
	}
}

void amd_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	/* the forking thread took it and is the child's one thread: unlocked, not
	 * made anew (the KFD fd is the parent's: calls answer -ECHILD) */
	if (ab->fork_locked) {
		ab->fork_locked = false;
		pthread_mutex_unlock(&ab->lock);
	}
}
