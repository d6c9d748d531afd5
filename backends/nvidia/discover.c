/* SPDX-License-Identifier: MIT */
/* nvidia backend: discovery of the GPUs, and teardown (the design: nvidia.h). */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvidia.h"

static int tunable_int(const coh_context *ctx, const char *key, int dflt, int lo, int hi)
{
	const char *s = coh_ctx_tunable(ctx, key);
	if (!s || !*s)
		return dflt;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < lo || v > hi)
		return dflt;
	return (int)v;
}

static int attr(struct nv_backend *nb, CUdevice d, int a)
{
	int v = 0;
	return nb->cu.device_attribute(&v, a, d) == CUDA_SUCCESS ? v : -1;
}

static int add_gpu(coh_context *ctx, struct nv_backend *nb, int ordinal)
{
	CUdevice d;
	CUresult r = nb->cu.device_get(&d, ordinal);
	if (r != CUDA_SUCCESS)
		return nv_cu_fail(nb, "cuDeviceGet", r);
	if (attr(nb, d, CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY) != 1) {
		coh_info(ctx, "nvidia: GPU %d has no managed memory: skipped", ordinal);
		return 0;
	}
	struct nv_gpu *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->ordinal = ordinal;
	g->dev = d;
	g->pageable = attr(nb, d, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS) == 1;
	g->host_pt = attr(nb, d, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES) == 1;
	g->concurrent = attr(nb, d, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS) == 1;

	struct coh_target_desc desc = { 0 };
	desc.kind = COH_KIND_VENDOR_MANAGED;
	snprintf(desc.name, sizeof(desc.name), NV_TARGET_NAME, ordinal);
	snprintf(desc.vendor, sizeof(desc.vendor), "NVIDIA");
	char name[96] = "";
	nb->cu.device_name(name, sizeof(name), d);
	CUuuid u;
	if (nb->cu.device_uuid && nb->cu.device_uuid(&u, d) == CUDA_SUCCESS) {
		memcpy(desc.uuid, u.bytes, sizeof(desc.uuid));
		desc.device_status |= COH_DEVICE_HAS_UUID;
	}
	desc.memory_model = COH_MODEL_MANAGED;
	const char *model = !g->pageable ? "managed memory" : g->host_pt ? "managed + ATS" : "managed + HMM";
	char full[256];
	snprintf(full, sizeof(full), "%s (%s%s, sm_%d%d)", name, model, g->concurrent ? "" : ", no concurrent access",
		 attr(nb, d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) & 0xff,
		 attr(nb, d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) & 0xff);
	snprintf(desc.model, sizeof(desc.model), "%.*s", (int)sizeof(desc.model) - 1, full);
	int dom = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID), bus = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
	    dev = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
	if (dom >= 0 && bus >= 0 && dev >= 0)
		snprintf(desc.pci_address, sizeof(desc.pci_address), "%04x:%02x:%02x.0", dom & 0xffff, bus & 0xff,
			 dev & 0x1f);
	desc.numa_node = -1;
	size_t total = 0;
	nb->cu.device_total_mem(&total, d);
	desc.total_bytes = total;
	/* adopt: the application's managed memory anywhere, ordinary memory with HMM/ATS */
	desc.caps = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_ADVISE | COH_CAP_QUERY |
		    COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
		    COH_CAP_FORK_KERNEL | (nb->prefer ? COH_CAP_MIGRATE_STICKY : 0) |
		    (nv_can_launch(nb) ? COH_CAP_DEVICE_ACCESS : 0);
	desc.access_note = !nv_can_launch(nb) ? "none: the driver lacks cuModuleLoadData or cuLaunchKernel"
			   : g->pageable ? "a CUDA kernel (PTX, cuLaunchKernel) on managed and pageable memory"
					 : "a CUDA kernel (PTX, cuLaunchKernel) on managed memory";
	desc.priv = g;
	int e = coh_target_add(ctx, &desc);
	if (e) {
		free(g);
		return e;
	}
	return 1;
}

int nv_discover(coh_context *ctx, void **priv)
{
	struct nv_backend *nb = calloc(1, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	*priv = nb;
	nb->ctx = ctx;
	nb->pid = getpid();
	nb->host_node = -2;
	nb->nstreams = tunable_int(ctx, "nvidia.streams", 1, 1, NV_MAX_STREAMS);
	nb->chunk = (size_t)tunable_int(ctx, "nvidia.chunk_mb", 0, 0, 1 << 20) << 20;
	nb->prefer = tunable_int(ctx, "nvidia.prefer", 0, 0, 1) == 1;
	pthread_mutex_init(&nb->lock, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&nb->calls, &ra);
	pthread_rwlockattr_destroy(&ra);
	if (coh_ctx_replay(ctx)) {
		coh_backend_note(ctx, "recorded machine: the CUDA driver is not consulted");
		return 0;
	}
	if (nv_load_driver(ctx, nb))
		return 0;   /* unavailable, and the note says why */
	int n = 0;
	CUresult r = nb->cu.device_count(&n);
	if (r != CUDA_SUCCESS || n <= 0) {
		coh_backend_note(ctx, "CUDA driver %d.%d sees no GPU", nb->driver_version / 1000,
				 nb->driver_version % 1000 / 10);
		return 0;
	}
	int added = 0;
	for (int i = 0; i < n; i++) {
		int e = add_gpu(ctx, nb, i);
		if (e < 0)
			return e;
		added += e;
	}
	coh_backend_note(ctx, "CUDA driver %d.%d, %d GPU(s) with managed memory", nb->driver_version / 1000,
			 nb->driver_version % 1000 / 10, added);
	return added;
}

void nv_target_fini(coh_target *t, void *priv)
{
	struct nv_backend *nb = nb_of(t);
	struct nv_gpu *g = priv;
	if (g->ready && !in_child(nb)) {
		if (nb->cu.ctx_push(g->cuctx) == CUDA_SUCCESS) {
			for (int i = 0; i < g->nstreams; i++)
				nb->cu.stream_destroy(g->stream[i]);
			CUcontext c;
			nb->cu.ctx_pop(&c);
		}
		nb->cu.primary_release(g->dev);
	}
	free(g);
}

void nv_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	nv_staging_drop(nb);
	if (!in_child(nb))
		pthread_rwlock_destroy(&nb->calls);   /* a fork child's copy may be held (nv_atfork_child) */
	pthread_mutex_destroy(&nb->lock);
	free(nb);   /* the driver library stays loaded (see nvidia.h) */
}
