/* SPDX-License-Identifier: MIT */
/*
 * The application's own managed memory handed to libcoherent, on whatever
 * driver COH_CUDA_LIBRARY (or libcuda.so.1) is: the double in CI, a real GPU
 * in tests/device/nvidia.sh.  Allocates with the raw driver, adopts, checks
 * residency on the host and after a migration on the GPU, forks with COPY
 * (the child reads the data, the parent stays on the GPU), releases.
 * Exit 0 pass, 1 fail, 77 no GPU.
 */
#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../../backends/nvidia/cuda_abi.h"
#include "coherent.h"

#define FAIL(...) do { fprintf(stderr, "nvidia_adopt: " __VA_ARGS__); fputc('\n', stderr); return 1; } while (0)

static bool where(coh_context *ctx, const void *p, size_t len, int kind, const coh_target *t)
{
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	return n == 1 && x[0].kind == kind && x[0].target == t && x[0].length == len;
}

int main(void)
{
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "nvidia,host", .log_level = -1 };
	if (coh_context_create(&o, &ctx))
		FAIL("context");
	coh_target *g = coh_target_find(ctx, "nvidia:gpu0"), *h = coh_target_by_node(ctx, 0);
	if (!g || !h) {
		char why[192] = "";
		coh_backend_status(ctx, "nvidia", why, sizeof(why));
		fprintf(stderr, "nvidia_adopt: no GPU (%s): skipped\n", why);
		return 77;
	}
	struct coh_device_info di = { .size = sizeof(di) };
	if (coh_target_device(g, &di) || !(di.status & COH_DEVICE_HAS_UUID))
		FAIL("no UUID for %s", coh_target_model(g));
	const char *path = getenv("COH_CUDA_LIBRARY");
	void *lib = dlopen(path && *path ? path : "libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lib)
		FAIL("dlopen: %s", dlerror());
	cu_device_get_fn dev_get = (cu_device_get_fn)dlsym(lib, "cuDeviceGet");
	cu_primary_retain_fn retain = (cu_primary_retain_fn)dlsym(lib, "cuDevicePrimaryCtxRetain");
	cu_ctx_push_fn push = (cu_ctx_push_fn)dlsym(lib, "cuCtxPushCurrent_v2");
	cu_alloc_managed_fn alloc = (cu_alloc_managed_fn)dlsym(lib, "cuMemAllocManaged");
	cu_mem_free_fn mfree = (cu_mem_free_fn)dlsym(lib, "cuMemFree_v2");
	CUdevice dev;
	CUcontext cu;
	CUdeviceptr dp = 0;
	size_t len = 8u << 20;
	if (!dev_get || !retain || !push || !alloc || !mfree || dev_get(&dev, 0) || retain(&cu, dev) || push(cu) ||
	    alloc(&dp, len, CU_MEM_ATTACH_GLOBAL))
		FAIL("raw driver calls");
	unsigned char *p = (unsigned char *)(uintptr_t)dp;
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7 + 3);
	int e = coh_adopt(g, p, len, NULL);
	if (e)
		FAIL("adopt: %s", coh_strerror(e));
	if (!where(ctx, p, len, COH_MEM_VENDOR_MANAGED, h))
		FAIL("written managed memory is not reported on the host");
	if ((e = coh_migrate(ctx, p, len, g, 0)))
		FAIL("migrate: %s", coh_strerror(e));
	if (!where(ctx, p, len, COH_MEM_VENDOR_MANAGED, g))
		FAIL("after the migration not reported on the GPU");
	fflush(stderr);
	pid_t pid = fork();
	if (pid == 0) {
		for (size_t i = 0; i < len; i++)
			if (p[i] != (unsigned char)(i * 7 + 3))
				_exit(2);
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		FAIL("the child did not read its copy (status %#x)", st);
	if (!where(ctx, p, len, COH_MEM_VENDOR_MANAGED, g))
		FAIL("the parent's pages left the GPU at fork");
	if ((e = coh_release(ctx, p)))
		FAIL("release: %s", coh_strerror(e));
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 7 + 3))
			FAIL("data changed at %zu", i);
	mfree(dp);
	coh_context_unref(ctx);
	printf("nvidia_adopt: application managed memory adopted, migrated, forked with COPY, released: ok\n");
	return 0;
}
