/* SPDX-License-Identifier: MIT */
/* amd backend: discovery from the KFD topology, one target per GPU, and the
 * teardown. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "amd.h"

/* ---------------- topology ---------------- */

/* One "key value" from a properties file; -1 when absent. */
static long long prop(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = text; p && *p;) {
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return strtoll(p + kl + 1, NULL, 0);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static int read_props(coh_context *ctx, char *buf, size_t len, const char *fmt, int a, int b)
{
	char path[160];
	snprintf(path, sizeof(path), fmt, a, b);
	return coh_fs_read(ctx, path, buf, len);
}

/* Is node n a CPU node (cores, no SIMDs)? */
static bool cpu_node(coh_context *ctx, int n)
{
	char buf[8192];
	if (read_props(ctx, buf, sizeof(buf), TOPO "/%d/properties", n, 0) < 0)
		return false;
	return prop(buf, "simd_count") == 0 && prop(buf, "cpu_cores_count") > 0;
}

static struct amd_gpu *read_gpu(coh_context *ctx, int n)
{
	char buf[8192];
	if (read_props(ctx, buf, sizeof(buf), TOPO "/%d/gpu_id", n, 0) < 0)
		return NULL;
	uint32_t id = (uint32_t)strtoul(buf, NULL, 0);
	if (id == 0 || read_props(ctx, buf, sizeof(buf), TOPO "/%d/properties", n, 0) < 0)
		return NULL;   /* a CPU node */
	struct amd_gpu *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->node = n;
	g->gpu_id = id;
	g->render_fd = -1;
	g->render_minor = (int)prop(buf, "drm_render_minor");
	g->gfx = (int)prop(buf, "gfx_target_version");
	g->domain = (int)prop(buf, "domain");
	g->location = (int)prop(buf, "location_id");
	g->cap = (uint32_t)prop(buf, "capability");
	g->simd = (uint64_t)prop(buf, "simd_count");
	long long banks = prop(buf, "mem_banks_count"), links = prop(buf, "io_links_count");
	char nm[64] = "";
	read_props(ctx, nm, sizeof(nm), TOPO "/%d/name", n, 0);
	snprintf(g->name, sizeof(g->name), "%.31s", nm);
	for (int m = 0; m < banks && m < 64; m++) {
		char mb[1024];
		if (read_props(ctx, mb, sizeof(mb), TOPO "/%d/mem_banks/%d/properties", n, m) < 0)
			continue;
		long long heap = prop(mb, "heap_type");
		if (heap == HSA_MEM_HEAP_TYPE_FB_PUBLIC || heap == HSA_MEM_HEAP_TYPE_FB_PRIVATE)
			g->vram += (uint64_t)prop(mb, "size_in_bytes");
	}
	bool xgmi_cpu = false;
	for (int l = 0; l < links && l < 64; l++) {
		char lb[1024];
		if (read_props(ctx, lb, sizeof(lb), TOPO "/%d/io_links/%d/properties", n, l) < 0)
			continue;
		if (prop(lb, "type") == HSA_IOLINK_TYPE_XGMI && cpu_node(ctx, (int)prop(lb, "node_to")))
			xgmi_cpu = true;
	}
	/* Linux 6.1 svm_migrate_init: MEMORY_DEVICE_COHERENT only for an Aldebaran
	 * (gfx90a) whose xGMI reaches the CPU; an APU has no VRAM bank at all. */
	g->mem = g->vram == 0 ? AMD_UNIFIED : xgmi_cpu && g->gfx == 90010 ? AMD_COHERENT : AMD_PRIVATE;
	return g;
}

static int node_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

int amd_discover(coh_context *ctx, void **priv)
{
	struct amd_backend *ab = calloc(1, sizeof(*ab));
	if (!ab)
		return -ENOMEM;
	*priv = ab;
	ab->ctx = ctx;
	ab->kfd = -1;
	ab->xnack = -1;
	ab->pid = getpid();
	pthread_mutex_init(&ab->lock, NULL);
	DIR *d = coh_fs_opendir(ctx, TOPO);
	if (!d)
		return 0;   /* no amdkfd */
	int nodes[64], nn = 0;
	struct dirent *de;
	while ((de = readdir(d)) && nn < 64)
		if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
			nodes[nn++] = atoi(de->d_name);
	closedir(d);
	qsort(nodes, (size_t)nn, sizeof(int), node_cmp);
	for (int i = 0; i < nn && ab->ngpus < AMD_MAX_GPUS; i++) {
		struct amd_gpu *g = read_gpu(ctx, nodes[i]);
		if (g)
			ab->gpus[ab->ngpus++] = g;
	}
	if (ab->ngpus == 0) {
		coh_backend_note(ctx, "KFD topology has no GPU node");
		return 0;
	}
	if (!coh_ctx_replay(ctx))
		amd_kfd_open(ctx, ab);
	int added = 0;
	for (int i = 0; i < ab->ngpus; i++) {
		struct amd_gpu *g = ab->gpus[i];
		struct coh_target_desc desc = { 0 };
		static const char *const mem[] = { "device-private", "device-coherent", "system memory (APU)" };
		desc.kind = g->mem == AMD_COHERENT ? COH_KIND_DEVICE_COHERENT
			    : g->mem == AMD_PRIVATE ? COH_KIND_DEVICE_PRIVATE
						    : COH_KIND_VENDOR_MANAGED;
		snprintf(desc.name, sizeof(desc.name), AMD_TARGET_NAME, g->node);
		snprintf(desc.vendor, sizeof(desc.vendor), "AMD");
		char vram[48];
		if (g->mem == AMD_UNIFIED)
			snprintf(vram, sizeof(vram), "no VRAM, %s", mem[g->mem]);
		else
			snprintf(vram, sizeof(vram), "%.0f GiB VRAM %s", (double)g->vram / (1 << 30), mem[g->mem]);
		char full[256];
		snprintf(full, sizeof(full), "%s (gfx %d), %s, SVM %s, render D%d", g->name, g->gfx, vram,
			 (g->cap & HSA_CAP_SVMAPI_SUPPORTED) ? "yes" : "no", g->render_minor);
		desc.gpu_id = g->gpu_id;
		/* proven against recorded trees and the KFD emulator only */
		desc.device_status = COH_DEVICE_HAS_GPU_ID | COH_DEVICE_UNVERIFIED;
		if (g->cap & HSA_CAP_SVMAPI_SUPPORTED)
			desc.memory_model = COH_MODEL_SVM;
		snprintf(desc.model, sizeof(desc.model), "%.*s", (int)sizeof(desc.model) - 1, full);
		if (g->domain >= 0 && g->location >= 0)
			snprintf(desc.pci_address, sizeof(desc.pci_address), "%04x:%02x:%02x.%x", g->domain & 0xffff,
				 (g->location >> 8) & 0xff, (g->location >> 3) & 0x1f, g->location & 7);
		desc.numa_node = -1;
		desc.total_bytes = g->vram;
		desc.access_note = "none: a GPU access is a kernel dispatch through the HSA runtime, which the amd backend does not use";
		desc.caps = COH_CAP_QUERY | COH_CAP_PIN_QUERY;
		/* a recording describes what the live machine would offer */
		if ((g->cap & HSA_CAP_SVMAPI_SUPPORTED) && (coh_ctx_replay(ctx) || g->svm))
			desc.caps |= COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC |
				     COH_CAP_ADVISE | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
				     COH_CAP_FORK_KERNEL;
		desc.priv = g;
		int e = coh_target_add(ctx, &desc);
		if (e)
			return e;
		added++;
	}
	return added;
}

void amd_target_fini(coh_target *t, void *priv)
{
	(void)t;
	struct amd_gpu *g = priv;
	g->node = -1;   /* freed with the backend: the fd outlives the target list */
}

void amd_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	for (int i = 0; i < ab->ngpus; i++) {
		free(ab->gpus[i]);   /* its render fd stays with the process (see render_get) */
	}
	if (ab->kfd >= 0)
		close(ab->kfd);
	pthread_mutex_destroy(&ab->lock);
	free(ab);
}
