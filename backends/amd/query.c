/* SPDX-License-Identifier: MIT */
/* amd backend: device extents named after the GPU KFD prefetched them to. */
#include <errno.h>

#include "amd.h"

/* Device pages the kernel reports are named after the GPU KFD put them on. */
int amd_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		      size_t max)
{
	(void)max;
	if (in->kind != COH_MEM_DEVICE_PRIVATE && in->kind != COH_MEM_DEVICE_COHERENT)
		return -ENOENT;   /* system memory: the kernel's view holds */
	struct amd_backend *ab = ab_of(rec->target);
	int e = amd_enter(ab);
	if (e)
		return e;
	coh_target *g = amd_prefetch_gpu(ab, in->start, in->length);
	amd_leave(ab);
	out[0] = *in;
	out[0].target = g ? g : (is_amd(rec->home) ? rec->home : rec->target);
	return 1;
}
