/* SPDX-License-Identifier: MIT */
/* amd backend: alloc, free, adopt, release and free bytes. */
#include <errno.h>
#include <sys/mman.h>

#include "amd.h"

int amd_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct amd_backend *ab = ab_of(t);
	struct amd_gpu *g = gpu_of(t);
	if (g->mem == AMD_UNIFIED || !g->svm)
		return -EOPNOTSUPP;
	int e = amd_enter(ab);
	if (e)
		return e;
	struct kfd_ioctl_get_available_memory_args a = { .gpu_id = g->gpu_id };
	e = amd_kfd_ioctl(ab, AMDKFD_IOC_AVAILABLE_MEMORY, &a);
	amd_leave(ab);
	if (!e)
		*free_bytes = a.available;
	return e;
}

int amd_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	struct amd_backend *ab = ab_of(t);
	(void)flags;
	void *p;
	int e = coh_sys_mmap_aligned(size, align, PROT_READ | PROT_WRITE, MAP_PRIVATE, &p);
	if (e)
		return e;
	uintptr_t a = (uintptr_t)p;
	if ((e = amd_enter(ab)) == 0) {
		e = amd_to_gpu(ab, gpu_of(t), a, size, true);   /* pages are made on the GPU */
		amd_leave(ab);
	}
	if (e) {
		coh_sys_munmap((void *)a, size);
		return e;
	}
	*out = (void *)a;
	return 0;
}

int amd_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)priv;
	struct amd_backend *ab = ab_of(t);
	/* under the lock: the fork hook copies ranges it found and must not see them go */
	bool locked = amd_enter(ab) == 0;
	int e = coh_sys_munmap(ptr, size);   /* KFD drops the SVM range with the mapping */
	if (locked)
		amd_leave(ab);
	return e;
}

int amd_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)priv;
	(void)flags;
	struct amd_backend *ab = ab_of(t);
	int e = coh_range_anon_private(coh_target_context(t), addr, len);
	if (e)
		return e;
	if ((e = amd_enter(ab)))
		return e;
	e = amd_svm_set1(ab, (uintptr_t)addr, len, KFD_IOCTL_SVM_ATTR_ACCESS, gpu_of(t)->gpu_id);   /* in place */
	amd_leave(ab);
	return e;
}

int amd_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	(void)t;
	(void)rec;
	return 0;   /* the attributes stay with the memory until it is unmapped; the caller keeps it */
}
