/* SPDX-License-Identifier: MIT */
/* amd backend: migration (synchronous; the core runs the asynchronous ones on
 * its worker) and advice, as SVM attributes. */
#include <errno.h>
#include <numaif.h>

#include "amd.h"

int amd_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	struct amd_backend *ab = ab_of(rec->target);
	if (is_amd(dst)) {
		struct amd_gpu *g = gpu_of(dst);
		if (!g->svm)
			return -EOPNOTSUPP;
		int e = amd_enter(ab);
		if (!e) {
			e = amd_to_gpu(ab, g, (uintptr_t)addr, len, false);
			amd_leave(ab);
		}
		/* KFD migrates what it can and says nothing of pages it could not
		 * move (pinned ones): the kernel's page view tells whether all went */
		return e ? e : g->mem == AMD_UNIFIED ? 0 : coh_range_on_device(ab->ctx, addr, len);
	}
	int node = coh_target_numa_node(dst);
	if (node < 0 || node >= COH_NODE_LIMIT)
		return -EOPNOTSUPP;
	int e = amd_enter(ab);
	if (e)
		return e;
	e = amd_svm_set1(ab, (uintptr_t)addr, len, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM);
	amd_leave(ab);
	if (e)
		return e;
	/* system memory now; then onto the node asked for */
	e = coh_sys_mbind_node(addr, len, node, MPOL_BIND, MPOL_MF_MOVE);
	return e == -ENOSYS ? 0 : e;   /* a kernel without NUMA has one node anyway */
}

int amd_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t)
{
	struct amd_backend *ab = ab_of(rec->target);
	uint32_t where = KFD_IOCTL_SVM_LOCATION_SYSMEM;
	if (is_amd(t))
		where = gpu_of(t)->gpu_id;
	else if (t && coh_target_numa_node(t) < 0)
		return -EOPNOTSUPP;
	struct kfd_ioctl_svm_attribute a;
	switch (advice) {
	case COH_ADVISE_PREFERRED_LOCATION: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, where }; break;
	case COH_ADVISE_UNSET_PREFERRED_LOCATION:
		a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, KFD_IOCTL_SVM_LOCATION_UNDEFINED };
		break;
	case COH_ADVISE_ACCESSED_BY:
	case COH_ADVISE_UNSET_ACCESSED_BY:
		if (!is_amd(t))
			return -EOPNOTSUPP;   /* access attributes name GPUs */
		a = (struct kfd_ioctl_svm_attribute){ advice == COH_ADVISE_ACCESSED_BY ? KFD_IOCTL_SVM_ATTR_ACCESS
										 : KFD_IOCTL_SVM_ATTR_NO_ACCESS,
						      where };
		break;
	case COH_ADVISE_READ_MOSTLY: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY }; break;
	case COH_ADVISE_UNSET_READ_MOSTLY: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_CLR_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY }; break;
	default: return -EINVAL;
	}
	/* KFD moves every range an attribute change touches to its prefetch
	 * location (svm_range_trigger_migration), which is where the last
	 * migration sent it: pages the CPU has faulted back since would move
	 * again.  So runs of pages in system memory are given the system as
	 * their prefetch location in the same call, and advice moves nothing;
	 * runs on the device are where their prefetch location says already. */
	struct coh_extent x[64];
	uintptr_t cur = (uintptr_t)addr, end = cur + len;
	int e = 0;
	while (cur < end && !e) {
		int n = coh_kernel_view(ab->ctx, (void *)cur, end - cur, x, 64);
		if (n < 0) {
			e = n;
			break;
		}
		for (int i = 0; i < n && !e;) {
			bool dev = x[i].kind == COH_MEM_DEVICE_PRIVATE || x[i].kind == COH_MEM_DEVICE_COHERENT;
			uintptr_t s = x[i].start, r_end = s + x[i].length;
			for (i++; i < n && dev == (x[i].kind == COH_MEM_DEVICE_PRIVATE ||
						   x[i].kind == COH_MEM_DEVICE_COHERENT); i++)
				r_end = x[i].start + x[i].length;
			if (s < cur)
				s = cur;
			if (r_end > end)
				r_end = end;
			struct kfd_ioctl_svm_attribute at[2] = {
				a, { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM } };
			if (!(e = amd_enter(ab))) {
				e = amd_svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, s, r_end - s, at, dev ? 1 : 2);
				amd_leave(ab);
			}
			cur = r_end;
		}
	}
	return e;
}
