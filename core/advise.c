/* SPDX-License-Identifier: MIT */
/* Advice: validated here, honoured (or refused with -EOPNOTSUPP) by the owning backend. */
#include <errno.h>

#include "internal.h"

int coh_advise(coh_context *ctx, void *addr, size_t len, int advice, coh_target *t)
{
	int e;
	if (!ctx)
		return -EINVAL;
	if ((e = coh_check_range(addr, len)))
		return e;
	if (((uintptr_t)addr | len) & (ctx->page_size - 1))
		return -EINVAL;
	if (advice < COH_ADVISE_PREFERRED_LOCATION || advice > COH_ADVISE_UNSET_READ_MOSTLY)
		return -EINVAL;
	bool needs_target = advice == COH_ADVISE_PREFERRED_LOCATION || advice == COH_ADVISE_ACCESSED_BY ||
			    advice == COH_ADVISE_UNSET_ACCESSED_BY;
	if (needs_target && !t)
		return -EINVAL;
	if (t && t->ctx != ctx)
		return -EXDEV;
	if (ctx->replay)
		return -EROFS;
	struct coh_rec *r;
	if ((e = coh_rec_get(ctx, addr, len, &r)))
		return e;
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (!ops->advise || !(r->pub.target->d.caps & COH_CAP_ADVISE))
		e = -EOPNOTSUPP;
	else
		e = ops->advise(&r->pub, addr, len, advice, t);
	if (e == 0 && advice == COH_ADVISE_PREFERRED_LOCATION) {
		coh_amap_lock(&ctx->amap);
		r->pub.placed = 1;
		coh_amap_unlock(&ctx->amap);
	}
	coh_rec_put(r);
	return e;
}
