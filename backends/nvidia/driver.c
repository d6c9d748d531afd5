/* SPDX-License-Identifier: MIT */
/* nvidia backend: the CUDA driver library (loading, entry points, error
 * names), the GPUs' contexts, entering and leaving the driver (the design: nvidia.h). */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>

#include "nvidia.h"

const char *nv_cu_name(const struct nv_backend *nb, CUresult r)
{
	const char *s = NULL;
	if (nb->cu.error_name && nb->cu.error_name(r, &s) == CUDA_SUCCESS && s)
		return s;
	return "CUDA error";
}

static int cu_errno(CUresult r)
{
	switch (r) {
	case CUDA_SUCCESS: return 0;
	case CUDA_ERROR_INVALID_VALUE: return -EINVAL;
	case CUDA_ERROR_OUT_OF_MEMORY: return -ENOMEM;
	case CUDA_ERROR_NOT_INITIALIZED:
	case CUDA_ERROR_DEINITIALIZED:
	case CUDA_ERROR_NO_DEVICE:
	case CUDA_ERROR_INVALID_DEVICE: return -ENODEV;
	case CUDA_ERROR_NOT_READY: return -EINPROGRESS;
	case CUDA_ERROR_NOT_SUPPORTED: return -EOPNOTSUPP;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: return -EEXIST;
	default: return -EIO;
	}
}

/* Logs a failed driver call and gives its errno. */
int nv_cu_fail(struct nv_backend *nb, const char *what, CUresult r)
{
	if (r != CUDA_SUCCESS)
		coh_dbg(nb->ctx, "nvidia: %s: %s (%d)", what, nv_cu_name(nb, r), r);
	return cu_errno(r);
}

int nv_load_driver(coh_context *ctx, struct nv_backend *nb)
{
	const char *path = coh_ctx_tunable(ctx, "nvidia.cuda_library");
	if (!path || !*path)
		path = "libcuda.so.1";
	nb->lib = coh_dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!nb->lib) {
		const char *why = dlerror();
		coh_backend_note(ctx, "no CUDA driver: cannot load %s (%s)", path, why ? why : "?");
		return -ENODEV;
	}
#define X(field, type, name, req)                                                        \
	nb->cu.field = (type)coh_dlsym(nb->lib, name);                                       \
	if (req && !nb->cu.field) {                                                      \
		coh_backend_note(ctx, "%s lacks %s: driver too old for libcoherent", path, name); \
		return -ENODEV;                                                          \
	}
	COH_CU_NAMES(X)
#undef X
	if (!nb->cu.prefetch_v2 && !nb->cu.prefetch) {
		coh_backend_note(ctx, "%s has no cuMemPrefetchAsync", path);
		return -ENODEV;
	}
	if (!nb->cu.advise_v2 && !nb->cu.advise) {
		coh_backend_note(ctx, "%s has no cuMemAdvise", path);
		return -ENODEV;
	}
	CUresult r = nb->cu.init(0);
	if (r != CUDA_SUCCESS) {
		coh_backend_note(ctx, "cuInit failed: %s (%d)", nv_cu_name(nb, r), r);
		return -ENODEV;
	}
	nb->cu.driver_version(&nb->driver_version);
	return 0;
}

/* ---------------- contexts ---------------- */

static int gpu_ready(struct nv_backend *nb, struct nv_gpu *g)
{
	if (__atomic_load_n(&g->ready, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&nb->lock);
	int e = 0;
	if (!g->ready) {
		CUresult r = nb->cu.primary_retain(&g->cuctx, g->dev);
		if (r != CUDA_SUCCESS) {
			e = nv_cu_fail(nb, "cuDevicePrimaryCtxRetain", r);
		} else if ((r = nb->cu.ctx_push(g->cuctx)) != CUDA_SUCCESS) {
			e = nv_cu_fail(nb, "cuCtxPushCurrent", r);
			nb->cu.primary_release(g->dev);
		} else {
			int k = 0;
			for (; k < nb->nstreams; k++)
				if ((r = nb->cu.stream_create(&g->stream[k], CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS)
					break;
			if (k == 0) {
				e = nv_cu_fail(nb, "cuStreamCreate", r);
			} else {
				g->nstreams = k;
			}
			CUcontext c;
			nb->cu.ctx_pop(&c);
			if (e)
				nb->cu.primary_release(g->dev);
			else
				__atomic_store_n(&g->ready, true, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&nb->lock);
	return e;
}

/* The GPU's context made current on this thread (the caller holds calls). */
int nv_ctx_in(struct nv_backend *nb, struct nv_gpu *g)
{
	int e = gpu_ready(nb, g);
	if (e)
		return e;
	return nv_cu_fail(nb, "cuCtxPushCurrent", nb->cu.ctx_push(g->cuctx));
}

void nv_ctx_out(struct nv_backend *nb)
{
	CUcontext c;
	nb->cu.ctx_pop(&c);
}

/* Enters the driver for one operation: nv_leave() restores. */
int nv_enter(struct nv_backend *nb, struct nv_gpu *g)
{
	if (in_child(nb))
		return -ECHILD;   /* CUDA does not work in a forked child */
	pthread_rwlock_rdlock(&nb->calls);
	int e = nv_ctx_in(nb, g);
	if (e)
		pthread_rwlock_unlock(&nb->calls);
	return e;
}

void nv_leave(struct nv_backend *nb)
{
	nv_ctx_out(nb);
	pthread_rwlock_unlock(&nb->calls);
}

/* ---------------- entry points with a legacy form ---------------- */

CUresult nv_cu_prefetch(struct nv_backend *nb, uintptr_t p, size_t len, CUmemLocation loc, CUstream s)
{
	if (nb->cu.prefetch_v2)
		return nb->cu.prefetch_v2(p, len, loc, 0, s);
	return nb->cu.prefetch(p, len, loc.type == CU_MEM_LOCATION_TYPE_DEVICE ? loc.id : CU_DEVICE_CPU, s);
}

CUresult nv_cu_advise(struct nv_backend *nb, uintptr_t p, size_t len, int advice, CUmemLocation loc)
{
	if (nb->cu.advise_v2)
		return nb->cu.advise_v2(p, len, advice, loc);
	return nb->cu.advise(p, len, advice, loc.type == CU_MEM_LOCATION_TYPE_DEVICE ? loc.id : CU_DEVICE_CPU);
}
