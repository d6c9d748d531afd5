/* SPDX-License-Identifier: MIT */
/* cxl backend: device-dax extents are the record's device. */
#include <errno.h>

#include "cxl.h"

/* Device-dax pages are the record's device. */
int cxl_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		      size_t max)
{
	(void)max;
	if (in->kind != COH_MEM_DEVICE_DAX)
		return -ENOENT;   /* moved to host memory: the kernel's view holds */
	out[0] = *in;
	out[0].target = rec->target;
	return 1;
}
