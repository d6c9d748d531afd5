/* SPDX-License-Identifier: MIT */
/* Device access: validation, then the device's backend reads or writes the
 * range itself (coh_device_access in coherent.h). */
#include <errno.h>

#include "internal.h"

#define DEVICE_OPS_KNOWN (COH_DEVICE_SUM | COH_DEVICE_FILL)

int coh_device_access(coh_context *ctx, coh_target *dev, void *addr, size_t len, unsigned ops,
		      uint64_t pattern, uint64_t *sums, size_t nsums)
{
	int e;
	if (!ctx || !dev)
		return -EINVAL;
	if (dev->ctx != ctx)
		return -EXDEV;
	if ((e = coh_check_range(addr, len)))
		return e;
	if (((uintptr_t)addr | len) & (ctx->page_size - 1) || ((uintptr_t)addr | len) & (COH_SUM_BLOCK - 1))
		return -EINVAL;
	if (!ops || (ops & ~DEVICE_OPS_KNOWN))
		return -EINVAL;
	if ((ops & COH_DEVICE_SUM) && (!sums || nsums < len / COH_SUM_BLOCK))
		return -EINVAL;
	if (ctx->replay)
		return -EROFS;
	const struct coh_backend_ops *o = dev->slot->ops;
	if (!(dev->d.caps & COH_CAP_DEVICE_ACCESS) || !o->device_access)
		return -EOPNOTSUPP;
	struct coh_rec *r;
	if ((e = coh_rec_get(ctx, addr, len, &r)))
		return e;
	e = o->device_access(dev, &r->pub, addr, len, ops, pattern, (ops & COH_DEVICE_SUM) ? sums : NULL);
	if (e)
		coh_dbg(ctx, "device access %p+%zu by %s: %d", addr, len, dev->d.name, e);
	coh_rec_put(r);
	return e;
}
