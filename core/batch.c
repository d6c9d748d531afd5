/* SPDX-License-Identifier: MIT */
/*
 * Batched calls: coh_migrate_batch and coh_query_batch.
 *
 * A migration batch checks every request first and takes every record
 * under one round-trip of the map's lock; then each run of consecutive
 * requests whose memory one backend owns goes to that backend's
 * migrate_batch (one driver batch) where it has one,
 * else to migrate one by one; the landings are recorded
 * under one more round-trip of the lock.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "internal.h"
#include "query.h"

struct batch_req {
	struct coh_migrate_req r;
	struct coh_rec *rec;
};

/* Checks every request and takes its record: 0, or the first error with
 * results[i] each request's check and no record held. */
static int batch_prepare(coh_context *ctx, const struct coh_migrate_req *v, size_t n, size_t req_size,
			 struct batch_req *b, int *results)
{
	int first = 0;
	for (size_t i = 0; i < n; i++) {
		memcpy(&b[i].r, coh_vec_at(v, i, req_size), sizeof(b[i].r));
		results[i] = b[i].r.reserved ? -EINVAL
					     : coh_migrate_check(ctx, b[i].r.addr, b[i].r.len, b[i].r.dst, b[i].r.flags);
	}
	coh_amap_lock(&ctx->amap);
	for (size_t i = 0; i < n; i++) {
		if (!results[i])
			results[i] = coh_migrate_prepare_locked(ctx, b[i].r.addr, b[i].r.len, b[i].r.dst, b[i].r.flags,
								&b[i].rec);
		if (results[i] && !first)
			first = results[i];
	}
	coh_amap_unlock(&ctx->amap);
	if (first)
		for (size_t i = 0; i < n; i++) {
			coh_rec_put(b[i].rec);
			b[i].rec = NULL;
		}
	return first;
}

static const struct coh_backend_ops *owner(const struct batch_req *b)
{
	return b->rec->pub.target->slot->ops;
}

/* Requests [i, j), all of one backend: migrate_batch where it has one. */
static void batch_run(const struct batch_req *b, size_t i, size_t j, struct coh_batch_item *items, int *results)
{
	const struct coh_backend_ops *ops = owner(&b[i]);
	if (ops->migrate_batch) {
		for (size_t k = i; k < j; k++)
			items[k - i] = (struct coh_batch_item){ b[k].r.dst, &b[k].rec->pub, b[k].r.addr, b[k].r.len,
								b[k].r.flags };
		if (ops->migrate_batch(items, j - i, results + i) == 0)
			return;
	}
	for (size_t k = i; k < j; k++)
		results[k] = ops->migrate(b[k].r.dst, &b[k].rec->pub, b[k].r.addr, b[k].r.len, b[k].r.flags);
}

int coh_migrate_batch(coh_context *ctx, const struct coh_migrate_req *v, size_t n, size_t req_size, int *results)
{
	if (!ctx)
		return -EINVAL;
	if (!v || !results)
		return -EFAULT;
	if (n == 0 || n > INT_MAX)
		return -EINVAL;
	int e = coh_vec_in_check(v, n, req_size, COH_MIGRATE_REQ_SIZE_MIN, sizeof(struct coh_migrate_req));
	if (e)
		return e;
	struct batch_req *b = calloc(n, sizeof(*b));
	struct coh_batch_item *items = calloc(n, sizeof(*items));
	if (!b || !items) {
		free(b);
		free(items);
		return -ENOMEM;
	}
	if ((e = batch_prepare(ctx, v, n, req_size, b, results)) != 0) {
		free(b);
		free(items);
		return e;
	}
	for (size_t i = 0, j; i < n; i = j) {
		for (j = i + 1; j < n && owner(&b[j]) == owner(&b[i]); j++)
			;
		batch_run(b, i, j, items, results);
	}
	int ok = 0;
	coh_amap_lock(&ctx->amap);
	for (size_t i = 0; i < n; i++)
		if (results[i] == 0) {
			b[i].rec->pub.home = b[i].r.dst;
			b[i].rec->pub.placed = 1;
			ok++;
		}
	coh_amap_unlock(&ctx->amap);
	for (size_t i = 0; i < n; i++)
		coh_rec_put(b[i].rec);
	free(b);
	free(items);
	return ok;
}

int coh_query_batch(coh_context *ctx, struct coh_query_range *v, size_t n, size_t ext_size)
{
	if (!ctx)
		return -EINVAL;
	if (!v)
		return -EFAULT;
	if (n == 0 || n > INT_MAX)
		return -EINVAL;
	size_t stride = coh_struct_size(v);
	int e = coh_vec_in_check(v, n, stride, COH_QUERY_RANGE_SIZE_MIN, sizeof(struct coh_query_range));
	if (e)
		return e;
	if ((e = coh_ext_size_check(ext_size)) != 0)
		return e;
	for (size_t i = 0; i < n; i++) {
		struct coh_query_range r;
		memcpy(&r, coh_vec_at(v, i, stride), sizeof(r));
		if (r.size != stride || r.reserved)
			return -EINVAL;   /* one size for the whole vector */
	}
	/* one maps read and one pagemap descriptor for the whole vector */
	uintptr_t lo = UINTPTR_MAX, hi = 0, pg = ctx->page_size - 1;
	for (size_t i = 0; i < n; i++) {
		struct coh_query_range r;
		memcpy(&r, coh_vec_at(v, i, stride), sizeof(r));
		uintptr_t a = (uintptr_t)r.addr;
		if (!r.addr || r.len == 0 || a + r.len < a || ((a + r.len - 1) | pg) == UINTPTR_MAX)
			continue;   /* coh_query refuses it below */
		if ((a & ~pg) < lo)
			lo = a & ~pg;
		if (((a + r.len - 1) | pg) + 1 > hi)
			hi = ((a + r.len - 1) | pg) + 1;
	}
	struct coh_query_session qs;
	coh_query_session_begin(ctx, &qs, lo, hi);
	int ok = 0;
	for (size_t i = 0; i < n; i++) {
		char *el = (char *)v + i * stride;
		struct coh_query_range r;
		memcpy(&r, el, sizeof(r));
		int res = coh_query(ctx, r.addr, r.len, r.ext, r.max, ext_size);
		memcpy(el + offsetof(struct coh_query_range, result), &res, sizeof(res));
		if (res >= 0)
			ok++;
	}
	coh_query_session_end(&qs);
	return ok;
}
