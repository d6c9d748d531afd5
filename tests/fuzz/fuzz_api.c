/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target: sequences of public calls on the live host backend.  Each
 * input is a program: one byte picks the call, the next bytes its arguments
 * (which allocation, offsets and lengths that may fall outside it, flags,
 * policies, targets).  A model of the live allocations is kept beside the
 * library and checked after every call: the count, lookups of each live
 * allocation, the contents written at allocation time, and that a failed
 * call changed nothing.  A pool (coh_pool_*) is driven beside the
 * allocations, its blocks modelled the same way: each lookup names the pool
 * and the block; a double free or an interior pointer is refused.
 * Everything is freed at the end of each input.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "coherent.h"
#include "fuzz.h"

#define SLOTS 8

static coh_context *ctx;
static coh_pool *pool;
static size_t ps;
static int ntargets;

struct slot {
	unsigned char *p;
	size_t len;
	unsigned char fill;
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .log_level = 0 };
	int e = coh_context_create(&o, &ctx);
	if (e || coh_target_count(ctx) < 1) {
		fprintf(stderr, "fuzz_api: no host context: %s\n", coh_strerror(e));
		exit(1);
	}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	ntargets = coh_target_count(ctx);
	coh_target *t0 = coh_target_get(ctx, 0);
	e = coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props), .targets = &t0,
							   .ntargets = 1, .max_cached = 1 }, &pool);
	if (e) {
		fprintf(stderr, "fuzz_api: no pool: %s\n", coh_strerror(e));
		exit(1);
	}
	return 0;
}

struct in {
	const uint8_t *d;
	size_t n;
};

static unsigned take(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->d++;
}

static void check_slot(const struct slot *s)
{
	struct coh_alloc_info info = { .size = sizeof(info) };
	FUZZ_ASSERT(coh_lookup(ctx, s->p + s->len - 1, &info) == 0);
	FUZZ_ASSERT(info.base == s->p && info.length >= s->len && !info.adopted);
	for (size_t i = 0; i < s->len; i += ps / 2)
		FUZZ_ASSERT(s->p[i] == s->fill);
}

/* A pool block: the lookup names the pool and this block. */
static void check_block(const struct slot *s)
{
	struct coh_alloc_info info = { .size = sizeof(info) };
	FUZZ_ASSERT(coh_lookup(ctx, s->p + s->len - 1, &info) == 0);
	FUZZ_ASSERT(info.pool == pool && info.block == s->p && info.block_size >= s->len);
	for (size_t i = 0; i < s->len; i += 61)
		FUZZ_ASSERT(s->p[i] == s->fill);
}

/* Allocations of the context: the model's, and the pool's chunks and large blocks. */
static void check_all(const struct slot *sl, const struct slot *pb, int live)
{
	struct coh_pool_stats st = { .size = sizeof(st) };
	FUZZ_ASSERT(coh_pool_stats(pool, &st) == 0);
	FUZZ_ASSERT(coh_alloc_count(ctx) == live + (int)(st.chunks + st.large));
	for (int i = 0; i < SLOTS; i++) {
		if (sl[i].p)
			check_slot(&sl[i]);
		if (pb[i].p)
			check_block(&pb[i]);
	}
}

/* An address near slot s (or NULL) and a length, both from the input. */
static void range(struct in *in, const struct slot *s, unsigned char **a, size_t *len)
{
	unsigned mode = take(in);
	size_t off = (size_t)take(in) * (mode & 1 ? ps : 1);
	*len = (size_t)take(in) * (mode & 2 ? ps : 1) + (mode & 4 ? 0 : ps);
	if (mode & 8)
		*len = SIZE_MAX - (size_t)take(in);
	if (!s->p)
		*a = (mode & 16) ? NULL : (unsigned char *)(uintptr_t)(ps * (1 + take(in)));
	else
		*a = s->p + off;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static coh_queue *fq;   /* one queue for every input: nothing is left in flight */
	if (!fq)
		FUZZ_ASSERT(coh_queue_create(ctx, NULL, &fq) == 0);
	struct in in = { data, size };
	struct slot sl[SLOTS], pb[SLOTS];
	memset(sl, 0, sizeof(sl));
	memset(pb, 0, sizeof(pb));
	int live = 0;
	unsigned char fill = 1;
	for (int steps = 0; in.n && steps < 64; steps++) {
		/* 11, 12: the pool (bytes 0xe0 and up); 13-15: the queue; 16: sharing (0xd8-0xdf) */
		unsigned raw = take(&in), op = raw >= 0xe0 ? 11 + raw % 2 : raw % 14 < 11 ? raw % 14 : raw % 14 + 2;
		if (raw >= 0xd8 && raw < 0xe0)
			op = 16;
		unsigned which = take(&in) % SLOTS;
		struct slot *s = &sl[which], *b = &pb[which];
		coh_target *t = coh_target_get(ctx, take(&in) % (unsigned)(ntargets + 1));   /* NULL sometimes */
		unsigned char *a;
		size_t len;
		int e;
		switch (op) {
		case 0: {   /* alloc */
			size_t sz = ((size_t)take(&in) + 1) * (take(&in) % 2 ? ps : 100);
			size_t align = (size_t)1 << (take(&in) % 24);
			if (take(&in) % 4 == 0)
				align = 3 * ps;    /* not a power of two */
			unsigned flags = take(&in) & 0x7;
			int policy = take(&in) % 6;
			if (s->p)
				break;
			void *p = NULL;
			e = coh_alloc(t, sz, &COH_ALLOC_PROPS(.align = align, .flags = flags, .fork_policy = policy), &p);
			if (e == 0) {
				FUZZ_ASSERT(p && ((uintptr_t)p % ps) == 0);
				s->p = p;
				s->len = sz;
				s->fill = fill++;
				memset(p, s->fill, sz);
				live++;
			} else {
				FUZZ_ASSERT(e < 0);
			}
			break;
		}
		case 1:   /* free, sometimes of an address that is no start */
			if (!s->p) {
				FUZZ_ASSERT(coh_free(ctx, (void *)(uintptr_t)(ps * (1 + take(&in)))) < 0);
				break;
			}
			if (take(&in) % 4 == 0 && s->len > ps) {
				FUZZ_ASSERT(coh_free(ctx, s->p + ps) < 0);
				break;
			}
			FUZZ_ASSERT(coh_free(ctx, s->p) == 0);
			{
				struct coh_alloc_info info = { .size = sizeof(info) };
				FUZZ_ASSERT(coh_lookup(ctx, s->p, &info) == -ENOENT);
			}
			s->p = NULL;
			live--;
			break;
		case 2:   /* migrate */
			range(&in, s, &a, &len);
			e = coh_migrate(ctx, a, len, t, take(&in) % 3);
			FUZZ_ASSERT(e <= 0);
			break;
		case 3: {   /* migrate async */
			range(&in, s, &a, &len);
			coh_migration *m = NULL;
			e = coh_migrate_async(ctx, a, len, t, 0, &m);
			FUZZ_ASSERT(e <= 0);
			if (e == 0) {
				FUZZ_ASSERT(m != NULL);
				e = coh_migration_wait(m, -1);
				FUZZ_ASSERT(e <= 0);
				coh_migration_free(m);
			}
			break;
		}
		case 4: {   /* query */
			struct coh_extent ext[16];
			size_t max = take(&in) % 17;   /* 0..16: the buffers hold 16 */
			range(&in, s, &a, &len);
			e = coh_query(ctx, a, len, take(&in) % 8 ? ext : NULL, max, sizeof(struct coh_extent));
			FUZZ_ASSERT(e <= (int)max);
			for (int i = 1; i < e; i++)
				FUZZ_ASSERT(ext[i].start == ext[i - 1].start + ext[i - 1].length);
			break;
		}
		case 5: {   /* pin query */
			struct coh_pin_extent ext[16];
			size_t max = take(&in) % 17;   /* 0..16: the buffers hold 16 */
			range(&in, s, &a, &len);
			e = coh_pin_query(ctx, a, len, take(&in) % 8 ? ext : NULL, max, sizeof(struct coh_pin_extent));
			FUZZ_ASSERT(e <= (int)max);
			break;
		}
		case 6: {   /* fork policy set (and read back on success) */
			int pol = (int)take(&in) % 8 - 1;
			range(&in, s, &a, &len);
			e = coh_fork_policy_set(ctx, a, len, pol);
			FUZZ_ASSERT(e <= 0);
			if (e == 0)
				FUZZ_ASSERT(coh_fork_policy_get(ctx, a) == pol);
			break;
		}
		case 7: {   /* lookup anywhere near */
			struct coh_alloc_info info = { .size = sizeof(info) };
			range(&in, s, &a, &len);
			e = coh_lookup(ctx, a, &info);
			FUZZ_ASSERT(e == 0 || e == -ENOENT || e == -EINVAL || e == -EFAULT);
			if (e == 0)
				FUZZ_ASSERT((unsigned char *)info.base <= a &&
					    a < (unsigned char *)info.base + info.length);
			break;
		}
		case 8:   /* advise */
			range(&in, s, &a, &len);
			e = coh_advise(ctx, a, len, (int)take(&in) % 8 - 1, t);
			FUZZ_ASSERT(e <= 0);
			break;
		case 10: {   /* device access: no host target has a device; refused, nothing changed */
			uint64_t sums[16];
			range(&in, s, &a, &len);
			e = coh_device_access(ctx, t, a, len, take(&in) % 5, take(&in), take(&in) % 2 ? sums : NULL,
					      take(&in) % 17);
			FUZZ_ASSERT(e < 0);
			break;
		}
		case 11: {   /* pool alloc: small, sometimes large, sometimes aligned */
			size_t sz = ((size_t)take(&in) + 1) * (take(&in) % 8 == 0 ? 1024 : 3);
			unsigned am = take(&in);
			size_t align = am % 4 ? 0 : am % 16 == 4 ? 3 : (size_t)1 << (am % 23);
			if (take(&in) % 16 == 0)
				sz = take(&in) % 2 ? 0 : SIZE_MAX - take(&in);
			if (b->p)
				break;
			void *p = (void *)0x1;
			e = coh_pool_alloc(pool, sz, align, &p);
			if (e == 0) {
				FUZZ_ASSERT(p && (uintptr_t)p % 16 == 0 && (!align || (uintptr_t)p % align == 0));
				b->p = p;
				b->len = sz;
				b->fill = fill++;
				memset(p, b->fill, sz);
			} else {
				FUZZ_ASSERT(e < 0 && p == (void *)0x1);
			}
			break;
		}
		case 12:   /* pool free: the block, inside it, twice, or what is no block */
			if (!b->p) {
				FUZZ_ASSERT(coh_pool_free(pool, s->p ? (void *)s->p : (void *)(uintptr_t)(ps * (1 + take(&in)))) ==
					    -ENOENT);
				break;
			}
			if (take(&in) % 4 == 0) {
				FUZZ_ASSERT(coh_pool_free(pool, b->p + 8) == -EINVAL);   /* class sizes are multiples of 16 */
				break;
			}
			FUZZ_ASSERT(coh_pool_free(pool, b->p) == 0);
			FUZZ_ASSERT(coh_pool_free(pool, b->p) == -ENOENT);
			b->p = NULL;
			break;
		/* completion queue and batches: up to 4 requests from the input,
		 * a request stride and a completion size that may be wrong */
		case 13:
		case 14: {
			struct coh_migrate_req r[4][2];   /* room for a stride of two structs */
			memset(r, 0, sizeof(r));
			size_t n = take(&in) % 5;
			for (size_t k = 0; k < n; k++) {
				range(&in, s, &a, &len);
				r[k][0] = (struct coh_migrate_req){ .addr = a, .len = len, .dst = t, .cookie = k,
								    .flags = take(&in) % 8 == 0 };
			}
			size_t stride = take(&in) % 8 ? sizeof(r[0][0]) : (size_t)(take(&in) % 3) * 8 + 24;
			const struct coh_migrate_req *v = take(&in) % 16 ? &r[0][0] : NULL;
			if (stride != sizeof(r[0][0]) && stride != sizeof(r[0])) {
				FUZZ_ASSERT(op == 13 ? coh_queue_migrate(fq, v, n, stride) < 0
						     : coh_migrate_batch(ctx, v, n, stride, (int[4]){ 0 }) < 0);
				break;
			}
			/* the elements at the chosen stride, zero between them */
			struct coh_migrate_req at[8];
			memset(at, 0, sizeof(at));
			for (size_t k = 0; k < 4; k++)
				at[stride == sizeof(r[0]) ? 2 * k : k] = r[k][0];
			if (op == 13) {
				e = coh_queue_migrate(fq, v ? at : NULL, n, stride);
				FUZZ_ASSERT(e == (int)n || e < 0);
				for (int left = e > 0 ? e : 0; left > 0;) {
					struct coh_completion c[4];
					int k = coh_queue_reap(fq, c, 4, sizeof(c[0]), -1);
					FUZZ_ASSERT(k >= 1 && k <= left);
					for (int j = 0; j < k; j++)
						FUZZ_ASSERT(c[j].cookie < n && c[j].result <= 0);
					left -= k;
				}
			} else {
				int res[4];
				e = coh_migrate_batch(ctx, v ? at : NULL, n, stride, res);
				FUZZ_ASSERT(e <= (int)n);
				for (int j = 0; e >= 0 && j < (int)n; j++)
					FUZZ_ASSERT(res[j] <= 0);
			}
			break;
		}
		case 15: {   /* query batch */
			struct coh_extent ext[2][8];
			struct coh_query_range q[2];
			memset(q, 0, sizeof(q));
			for (int k = 0; k < 2; k++) {
				range(&in, s, &a, &len);
				q[k] = (struct coh_query_range){ .size = take(&in) % 8 ? sizeof(q[0]) : take(&in) % 64,
								 .addr = a, .len = len, .ext = ext[k], .max = take(&in) % 9 };
			}
			/* the elements at the stride q[0].size declares (the library reads
			 * that much of each), zero between them */
			_Alignas(struct coh_query_range) unsigned char at[2 * 64];
			size_t stride = q[0].size > sizeof(q[0]) ? q[0].size : sizeof(q[0]);
			memset(at, 0, sizeof(at));
			for (int k = 0; k < 2; k++)
				memcpy(at + k * stride, &q[k], sizeof(q[k]));
			e = coh_query_batch(ctx, (struct coh_query_range *)at, 1 + take(&in) % 2,
					    take(&in) % 8 ? sizeof(ext[0][0]) : take(&in) % 48);
			FUZZ_ASSERT(e <= 2);
			for (int k = 0; e >= 0 && k < 2; k++) {
				memcpy(&q[k], at + k * stride, sizeof(q[k]));
				FUZZ_ASSERT(q[k].result <= (int)q[k].max);
			}
			break;
		}
		case 16: {   /* sharing: a shareable allocation, exported, imported here, forged handles refused */
			if (!s->p) {
				static const int pols[] = { COH_FORK_SHARE, COH_FORK_EXCLUDE, COH_FORK_KERNEL };
				size_t sz = ((size_t)take(&in) % 16 + 1) * ps;
				void *p = NULL;
				e = coh_alloc(t, sz, &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE, .fork_policy = pols[take(&in) % 3]),
					      &p);
				FUZZ_ASSERT(e <= 0 && (e < 0) == (t == NULL));
				if (e)
					break;
				s->p = p;
				s->len = sz;
				s->fill = fill++;
				memset(p, s->fill, sz);
				live++;
				break;
			}
			struct coh_handle h;
			e = coh_export(ctx, s->p + (take(&in) % 4 == 0 ? ps : 0), &h);
			if (e) {
				FUZZ_ASSERT(e < 0);
				break;
			}
			struct coh_handle f = h;
			unsigned field = take(&in) % 8, v = take(&in);
			switch (field) {
			case 0: f.magic ^= 1u << (v % 32); break;
			case 1: f.version = (uint16_t)(f.version + 1 + v); break;
			case 2: f.size = (uint16_t)(v % sizeof(f)); break;
			case 3: f.length += ps * (1 + v); break;
			case 4: f.offset = ps * (1 + v); break;
			case 5: f.object_size += ps * (1 + v); break;
			case 6: f.reserved = 1 + v; break;
			default: break;   /* the genuine handle */
			}
			int before = coh_alloc_count(ctx);
			unsigned char *q = NULL;
			e = coh_import(ctx, &f, (void **)&q);
			if (field < 7) {
				FUZZ_ASSERT(e < 0 && q == NULL && coh_alloc_count(ctx) == before);
			} else {
				FUZZ_ASSERT(e == 0 && coh_alloc_count(ctx) == before + 1 && !memcmp(q, s->p, s->len));
				q[0] ^= 0xff;   /* the same memory */
				FUZZ_ASSERT(s->p[0] == (unsigned char)(s->fill ^ 0xff));
				q[0] ^= 0xff;
				FUZZ_ASSERT(coh_free(ctx, q) == 0);
			}
			FUZZ_ASSERT(coh_handle_close(&h) == 0 && h.fd == -1);
			break;
		}
		default: {   /* fork query */
			struct coh_fork_extent ext[8];
			range(&in, s, &a, &len);
			e = coh_fork_query(ctx, a, len, ext, 8, sizeof(struct coh_fork_extent));
			FUZZ_ASSERT(e <= 8);
			break;
		}
		}
		check_all(sl, pb, live);
	}
	for (int i = 0; i < SLOTS; i++) {
		if (sl[i].p)
			FUZZ_ASSERT(coh_free(ctx, sl[i].p) == 0);
		if (pb[i].p)
			FUZZ_ASSERT(coh_pool_free(pool, pb[i].p) == 0);
	}
	FUZZ_ASSERT(coh_pool_trim(pool) >= 0);
	FUZZ_ASSERT(coh_alloc_count(ctx) == 0);
	return 0;
}
