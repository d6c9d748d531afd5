/* SPDX-License-Identifier: MIT */
/* nvidia backend: allocation, adoption, release, free memory (the design: nvidia.h). */
#include <errno.h>
#include <stdint.h>

#include "nvidia.h"

int nv_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct nv_backend *nb = nb_of(t);
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	size_t f = 0, total = 0;
	e = nv_cu_fail(nb, "cuMemGetInfo", nb->cu.mem_get_info(&f, &total));
	nv_leave(nb);
	if (!e)
		*free_bytes = f;
	return e;
}

int nv_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	struct nv_backend *nb = nb_of(t);
	struct nv_gpu *g = gpu_of(t);
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	int e = nv_enter(nb, g);
	if (e)
		return e;
	CUdeviceptr p = 0, base = 0;
	CUresult r = nb->cu.alloc_managed(&p, size, CU_MEM_ATTACH_GLOBAL);
	if (r == CUDA_SUCCESS && (p & (align - 1))) {
		/* the driver aligns to 2 MiB or more; a larger alignment needs room */
		nb->cu.mem_free(p);
		r = nb->cu.alloc_managed(&base, size + align, CU_MEM_ATTACH_GLOBAL);
		p = r == CUDA_SUCCESS ? (base + align - 1) & ~(CUdeviceptr)(align - 1) : 0;
	}
	if (r != CUDA_SUCCESS) {
		e = nv_cu_fail(nb, "cuMemAllocManaged", r);
		nv_leave(nb);
		return e;
	}
	CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, g->ordinal };
	r = nv_cu_advise(nb, p, size, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, loc);
	if (r == CUDA_SUCCESS)
		r = nv_cu_prefetch(nb, p, size, loc, g->stream[0]);   /* pages are made on the GPU */
	if (r == CUDA_SUCCESS)
		r = nb->cu.stream_sync(g->stream[0]);
	if (r != CUDA_SUCCESS) {
		e = nv_cu_fail(nb, "placing a new managed allocation", r);
		nb->cu.mem_free(base ? base : p);
		nv_leave(nb);
		return e;
	}
	nv_leave(nb);
	*out = (void *)(uintptr_t)p;
	*priv = (void *)(uintptr_t)(base ? base : p);
	return 0;
}

int nv_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	struct nv_backend *nb = nb_of(t);
	if (in_child(nb))
		return coh_sys_munmap(ptr, size);   /* the child's own copy (or the driver's dead mapping) */
	CUdeviceptr p = priv ? (uintptr_t)priv : (uintptr_t)ptr;   /* the driver's base */
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	e = nv_cu_fail(nb, "cuMemFree", nb->cu.mem_free(p));
	nv_leave(nb);
	return e;
}

/* Is addr CUDA managed memory?  (The caller is inside the driver.) */
static bool managed_at(struct nv_backend *nb, uintptr_t addr)
{
	unsigned int v = 0;
	return nb->cu.pointer_attribute(&v, CU_POINTER_ATTRIBUTE_IS_MANAGED, addr) == CUDA_SUCCESS && v == 1;
}

/* Managed memory: allocated here, or the application's own that it adopted.
 * A record's priv is the driver's base address of managed memory (the
 * over-allocation's base for a large alignment, else the start), NULL for
 * ordinary memory adopted in place. */
bool nv_rec_managed(struct nv_backend *nb, const struct coh_alloc_rec *rec)
{
	(void)nb;
	return rec->priv != NULL;
}

/* Adopt: the application's own managed memory (cudaMallocManaged, recognised
 * by the pointer attribute IS_MANAGED; MEMORY_TYPE says "device" for it), on
 * any GPU; ordinary private memory only where the GPU has pageable memory
 * access (HMM/ATS) and works on it in place. */
int nv_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)flags;
	struct nv_backend *nb = nb_of(t);
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	bool managed = managed_at(nb, (uintptr_t)addr) && managed_at(nb, (uintptr_t)addr + len - 1);
	nv_leave(nb);
	if (managed) {
		*priv = addr;   /* managed: see nv_rec_managed */
		return 0;
	}
	if (!gpu_of(t)->pageable) {
		coh_warn(nb->ctx, "nvidia: %s has no pageable memory access (no HMM/ATS): only managed memory can be "
			 "adopted", coh_target_name(t));
		return -EOPNOTSUPP;
	}
	return coh_range_anon_private(coh_target_context(t), addr, len);
}

int nv_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	(void)t;
	(void)rec;
	return 0;   /* the memory stays where it is, with the caller; priv points to nothing of ours */
}
