/* SPDX-License-Identifier: MIT */
/* nvidia backend: residency queries and the mappings the backend owns (the design: nvidia.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvidia.h"

/* ---------------- residency ---------------- */

static int host_node(struct nv_backend *nb)
{
	int hn = __atomic_load_n(&nb->host_node, __ATOMIC_RELAXED);
	if (hn != -2)
		return hn;
	int node = -1, count = 0;
	coh_target *t;
	coh_target_foreach(nb->ctx, t)
	{
		int k = coh_target_kind(t);
		if ((k == COH_KIND_HOST_NODE || k == COH_KIND_CPULESS_NODE) && coh_target_numa_node(t) != node) {
			node = coh_target_numa_node(t);
			count++;
		}
	}
	if (count == 0) {
		/* no host backend in this context: the machine's own node list */
		char buf[64];
		if (coh_fs_read(nb->ctx, "/sys/devices/system/node/online", buf, sizeof(buf)) > 0 &&
		    !strcmp(buf, "0"))
			node = 0, count = 1;
	}
	hn = count == 1 ? node : -1;
	__atomic_store_n(&nb->host_node, hn, __ATOMIC_RELAXED);
	return hn;
}

struct resolve_out {
	struct coh_extent *out;
	size_t n, max;
	bool full;
};

static bool emit(struct resolve_out *o, uintptr_t a, size_t len, int kind, int node, coh_target *t)
{
	if (!coh_ext_append(o->out, &o->n, o->max, a, len, kind, node, t))
		o->full = true;
	return !o->full;
}

static coh_target *gpu_target(coh_context *ctx, int ordinal)
{
	char name[32];
	snprintf(name, sizeof(name), NV_TARGET_NAME, ordinal);
	return coh_target_find(ctx, name);
}

/* Pages not mapped on the CPU: where the driver's last prefetch put them;
 * a run the driver cannot answer for as one is halved until it can. */
static bool absent_run(struct nv_backend *nb, struct resolve_out *o, uintptr_t a, size_t len, size_t ps, int depth)
{
	int loc = CU_DEVICE_INVALID;
	CUresult r = nb->cu.range_attribute(&loc, sizeof(loc), CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, a, len);
	if (r != CUDA_SUCCESS)
		loc = CU_DEVICE_INVALID;
	if (loc == CU_DEVICE_INVALID && len > ps && depth < 24) {
		size_t half = (len / ps / 2) * ps;
		return absent_run(nb, o, a, half, ps, depth + 1) &&
		       absent_run(nb, o, a + half, len - half, ps, depth + 1);
	}
	coh_target *t = loc >= 0 ? gpu_target(nb->ctx, loc) : NULL;
	/* not on the CPU and the driver names no GPU: managed, place unknown */
	return emit(o, a, len, COH_MEM_VENDOR_MANAGED, -1, t);
}

int nv_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		     size_t max)
{
	struct nv_backend *nb = nb_of(rec->target);
	coh_context *ctx = nb->ctx;
	if (!nv_rec_managed(nb, rec)) {
		/* pageable memory: the kernel's view holds; device-private pages are on the GPU */
		out[0] = *in;
		if (in->kind == COH_MEM_DEVICE_PRIVATE || in->kind == COH_MEM_DEVICE_COHERENT)
			out[0].target = is_nvidia(rec->home) ? rec->home : rec->target;
		return 1;
	}
	if (in->kind == COH_MEM_UNMAPPED)
		return -ENOENT;   /* freed under us: keep the kernel's answer */
	struct nv_gpu *g = gpu_of(rec->target);
	int e = nv_enter(nb, g);
	if (e)
		return e;
	size_t ps = coh_ctx_page_size(ctx), np = in->length / ps;
	uint8_t *present = malloc(np ? np : 1);
	if (!present) {
		nv_leave(nb);
		return -ENOMEM;
	}
	e = coh_pagemap_present(ctx, in->start, np, present);
	struct resolve_out o = { .out = out, .max = max };
	int hn = in->node >= 0 ? in->node : host_node(nb);
	coh_target *ht = hn >= 0 ? coh_target_of_node(ctx, hn) : NULL;
	for (size_t i = 0; i < np && !e && !o.full;) {
		size_t j = i + 1;
		while (j < np && present[j] == present[i])
			j++;
		uintptr_t a = in->start + i * ps;
		if (present[i])
			emit(&o, a, (j - i) * ps, COH_MEM_VENDOR_MANAGED, hn, ht);
		else
			absent_run(nb, &o, a, (j - i) * ps, ps, 0);
		i = j;
	}
	free(present);
	nv_leave(nb);
	if (e)
		return e;
	return o.n ? (int)o.n : -ENOSPC;
}

/* Mappings of the UVM driver's device file are managed memory the CPU may not see. */
const struct coh_owned_mapping nv_owned[] = {
	{ "/dev/nvidia-uvm", COH_MEM_VENDOR_MANAGED },
	{ NULL, 0 },
};
