/* SPDX-License-Identifier: MIT */
/* amd backend: device extents named, run by run, after the GPU KFD prefetched them to. */
#include <errno.h>

#include "amd.h"

/* GET_ATTR calls one resolve may make before the rest of its extent is named
 * after the record's GPU (a range never prefetched anywhere halves down to
 * single pages, as its UNDEFINED location looks like a mix). */
#define AMD_RESOLVE_CALLS 256

struct amd_runs {
	struct amd_backend *ab;
	const struct coh_extent *in;
	coh_target *fallback;   /* for pages KFD names no GPU for */
	struct coh_extent *out;
	size_t n, max, ps;
	int calls;              /* GET_ATTR calls left */
};

/* KFD keeps its attributes per SVM range, and a prefetch of part of one
 * splits it; GET_ATTR over pieces with different locations answers
 * UNDEFINED, so such a run is halved until each half has one.  false when
 * out is full. */
static bool label_run(struct amd_runs *o, uintptr_t a, size_t len)
{
	uint32_t loc = KFD_IOCTL_SVM_LOCATION_UNDEFINED;
	if (o->calls > 0) {
		o->calls--;
		amd_prefetch_loc(o->ab, a, len, &loc);
	}
	if (loc == KFD_IOCTL_SVM_LOCATION_UNDEFINED && len > o->ps && o->calls > 0) {
		size_t half = len / o->ps / 2 * o->ps;
		return label_run(o, a, half) && label_run(o, a + half, len - half);
	}
	coh_target *g = amd_gpu_target(o->ab, loc);
	return coh_ext_append(o->out, &o->n, o->max, a, len, o->in->kind, o->in->node, g ? g : o->fallback);
}

/* Device pages the kernel reports are named after the GPU KFD put them on,
 * one extent per run of pages with the same PREFETCH_LOC. */
int amd_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		      size_t max)
{
	if (in->kind != COH_MEM_DEVICE_PRIVATE && in->kind != COH_MEM_DEVICE_COHERENT)
		return -ENOENT;   /* system memory: the kernel's view holds */
	coh_target *home = rec->home;
	struct amd_runs o = {
		.ab = ab_of(rec->target),
		.in = in,
		.fallback = is_amd(home) ? home : rec->target,
		.out = out,
		.max = max,
		.ps = coh_ctx_page_size(coh_target_context(rec->target)),
		.calls = AMD_RESOLVE_CALLS,
	};
	int e = amd_enter(o.ab);
	if (e)
		return e;
	label_run(&o, in->start, in->length);
	amd_leave(o.ab);
	return o.n ? (int)o.n : -ENOSPC;
}
