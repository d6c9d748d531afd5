/* SPDX-License-Identifier: MIT */
/* nvidia backend: device access, a kernel of the backend's own PTX
 * (kernels/access.cu) launched on the GPU (the design: nvidia.h). */
#include <errno.h>
#include <string.h>

#include "nvidia.h"
#include "kernels/access_ptx.h"

#define NV_ACCESS_THREADS 128     /* access.cu's THREADS */
#define NV_ACCESS_GRID 65535u     /* thread blocks at most; each loops over the rest */

bool nv_can_launch(const struct nv_backend *nb)
{
	return nb->cu.module_load_data && nb->cu.module_get_function && nb->cu.launch_kernel;
}

/* The GPU's module, loaded (JIT-compiled) at the first access; the caller
 * is inside the driver for g.  It goes with the primary context. */
static int access_function(struct nv_backend *nb, struct nv_gpu *g, CUfunction *fn)
{
	pthread_mutex_lock(&nb->lock);
	int e = g->access_err;
	if (!e && !g->access_fn) {
		CUmodule mod;
		CUresult r = nb->cu.module_load_data(&mod, nv_access_ptx);
		if (r != CUDA_SUCCESS) {
			e = nv_cu_fail(nb, "cuModuleLoadData (the device-access PTX)", r);
		} else if ((r = nb->cu.module_get_function(&g->access_fn, mod, "coh_access")) != CUDA_SUCCESS) {
			e = nv_cu_fail(nb, "cuModuleGetFunction(coh_access)", r);
			if (nb->cu.module_unload)
				nb->cu.module_unload(mod);
		}
		g->access_err = e;   /* a PTX the driver refuses once is refused for good */
	}
	*fn = g->access_fn;
	pthread_mutex_unlock(&nb->lock);
	return e;
}

int nv_device_access(coh_target *dev, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned ops,
		     uint64_t pattern, uint64_t *sums)
{
	struct nv_backend *nb = nb_of(dev);
	struct nv_gpu *g = gpu_of(dev);
	/* A kernel touching memory the GPU cannot reach faults the whole CUDA
	 * context (every later call fails): check before launching.  Managed
	 * memory is reachable from every GPU; other memory only with pageable
	 * memory access (HMM or ATS). */
	bool managed = is_nvidia(rec->target) && nv_rec_managed(nb, rec);
	if (!managed && !g->pageable)
		return -EFAULT;
	int e = nv_enter(nb, g);
	if (e)
		return e;
	CUfunction fn;
	CUdeviceptr dsums = 0;
	if ((e = access_function(nb, g, &fn)))
		goto out;
	unsigned long long nblocks = len / COH_SUM_BLOCK;
	if ((ops & COH_DEVICE_SUM) &&
	    (e = nv_cu_fail(nb, "cuMemAllocManaged (sums)",
			    nb->cu.alloc_managed(&dsums, nblocks * sizeof(uint64_t), CU_MEM_ATTACH_GLOBAL))))
		goto out;
	void *base = addr, *sp = (void *)(uintptr_t)dsums;
	unsigned int o = ops;
	unsigned long long pat = pattern;
	void *params[] = { &base, &nblocks, &o, &pat, &sp };
	unsigned grid = nblocks < NV_ACCESS_GRID ? (unsigned)nblocks : NV_ACCESS_GRID;
	CUstream s = g->stream[0];
	e = nv_cu_fail(nb, "cuLaunchKernel(coh_access)",
		       nb->cu.launch_kernel(fn, grid, 1, 1, NV_ACCESS_THREADS, 1, 1, 0, s, params, NULL));
	if (!e)
		e = nv_cu_fail(nb, "cuStreamSynchronize (device access)", nb->cu.stream_sync(s));
	if (!e && (ops & COH_DEVICE_SUM))
		memcpy(sums, sp, nblocks * sizeof(uint64_t));   /* CPU reads of managed memory: it comes back */
out:
	if (dsums)
		nb->cu.mem_free(dsums);
	nv_leave(nb);
	return e;
}
