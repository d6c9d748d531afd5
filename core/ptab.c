/* SPDX-License-Identifier: MIT */
/*
 * The lookup table: page number -> what coh_lookup() reports, read without a
 * lock.  Three levels over 36-bit page numbers: a top array (13 bits) of
 * middle nodes (12 bits: 32 GiB each) of leaves (11 bits: 8 MiB each, one
 * 16-byte entry per page).  The caller's user data of an entry sits in a
 * parallel array of the same node, read only when the entry says it has one,
 * so that the entries a lookup touches stay as dense as without it.  A middle node also holds one "block" entry per
 * 8 MiB, and a leaf one "granule" entry per 64 KiB: an allocation is written
 * once per whole aligned block or granule it covers and page by page only at
 * its ragged ends, so large allocations stay cheap to add and remove.
 *
 * Writers hold the allocation map's write lock and bump a sequence counter
 * around their stores (odd while writing); readers retry when the counter
 * moved.  Nodes are never freed before the context is, so a reader never
 * touches freed memory.  Leaves come from 2 MiB huge-page chunks so that a
 * million live allocations stay within a few TLB entries.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#define PT_PAGE_SHIFT 12
#define LEAF_BITS 11
#define MID_BITS 12
#define TOP_BITS 13
#define LEAF_N (1u << LEAF_BITS)
#define MID_N (1u << MID_BITS)
#define TOP_N (1u << TOP_BITS)
#define GRAN_BITS 4               /* 16 pages = 64 KiB */
#define GRAN_N (LEAF_N >> GRAN_BITS)
#define CHUNK (2u << 20)
/* First address the table cannot hold. */
#define PT_LIMIT ((uint64_t)1 << (PT_PAGE_SHIFT + LEAF_BITS + MID_BITS + TOP_BITS))

struct pt_ent {
	_Atomic uint64_t w0;   /* base page | (target index + 1) << 36 | flags << 48; 0 = empty */
	_Atomic uint64_t w1;   /* length in pages | fork policy << 56 | adopted << 60 | user data << 61 */
};
#define PT_HAS_USER (1ull << 61)

struct pt_leaf {
	struct pt_ent e[LEAF_N];
	struct pt_ent g[GRAN_N];
	_Atomic uint64_t ue[LEAF_N];   /* user data of e[i], valid with PT_HAS_USER */
	_Atomic uint64_t ug[GRAN_N];
};

struct pt_mid {
	_Atomic(struct pt_leaf *) leaf[MID_N];
	struct pt_ent block[MID_N];
	_Atomic uint64_t ublock[MID_N];
};

struct pt_chunk {
	struct pt_chunk *next;
	size_t used;
};

/* The three words of an entry. */
struct pt_val {
	uint64_t w0, w1, w2;
};

static inline void ent_load(const struct pt_ent *e, struct pt_val *v)
{
	v->w0 = atomic_load_explicit(&((struct pt_ent *)e)->w0, memory_order_relaxed);
	v->w1 = atomic_load_explicit(&((struct pt_ent *)e)->w1, memory_order_relaxed);
}

/* An entry and its user-data slot u; the slot is written only when the entry
 * has user data (a stale slot is never read). */
static inline void ent_store(struct pt_ent *e, _Atomic uint64_t *u, const struct pt_val *v)
{
	if (v->w1 & PT_HAS_USER)
		atomic_store_explicit(u, v->w2, memory_order_relaxed);
	atomic_store_explicit(&e->w0, v->w0, memory_order_relaxed);
	atomic_store_explicit(&e->w1, v->w1, memory_order_relaxed);
}

int coh_ptab_init(struct coh_ptab *t)
{
	memset(t, 0, sizeof(*t));
	t->top = calloc(TOP_N, sizeof(*t->top));
	return t->top ? 0 : -ENOMEM;
}

int coh_ptab_destroy(struct coh_ptab *t)
{
	int err = 0;
	for (unsigned i = 0; t->top && i < TOP_N; i++)
		free(atomic_load_explicit(&t->top[i], memory_order_relaxed));
	free(t->top);
	struct pt_chunk *c = t->chunks;
	while (c) {
		struct pt_chunk *n = c->next;
		int e = coh_sys_munmap(c, CHUNK);
		err = err ? err : e;
		c = n;
	}
	memset(t, 0, sizeof(*t));
	return err;
}

/* Leaves are carved from 2 MiB chunks (the chunk header takes the first leaf's room). */
static struct pt_leaf *leaf_alloc(struct coh_ptab *t)
{
	struct pt_chunk *c = t->chunks;
	size_t sz = sizeof(struct pt_leaf);
	if (!c || c->used + sz > CHUNK) {
		void *p;
		if (coh_sys_mmap_aligned(CHUNK, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE, &p))
			return NULL;
		coh_sys_madvise(p, CHUNK, MADV_HUGEPAGE);   /* a hint */
		c = p;
		c->next = t->chunks;
		c->used = sz;   /* the header sits in the first leaf's slot */
		t->chunks = c;
	}
	struct pt_leaf *l = (struct pt_leaf *)((char *)c + c->used);
	c->used += sz;
	return l;   /* fresh anonymous memory: all zero */
}

static struct pt_mid *mid_get(struct coh_ptab *t, uint64_t pn, bool create)
{
	unsigned ti = (unsigned)(pn >> (LEAF_BITS + MID_BITS)) & (TOP_N - 1);
	struct pt_mid *m = atomic_load_explicit(&t->top[ti], memory_order_acquire);
	if (!m && create) {
		m = calloc(1, sizeof(*m));
		if (m)
			atomic_store_explicit(&t->top[ti], m, memory_order_release);
	}
	return m;
}

static struct pt_leaf *leaf_get(struct coh_ptab *t, struct pt_mid *m, uint64_t pn, bool create)
{
	unsigned mi = (unsigned)(pn >> LEAF_BITS) & (MID_N - 1);
	struct pt_leaf *l = atomic_load_explicit(&m->leaf[mi], memory_order_acquire);
	if (!l && create) {
		l = leaf_alloc(t);
		if (l)
			atomic_store_explicit(&m->leaf[mi], l, memory_order_release);
	}
	return l;
}

static void encode(const struct coh_amap_val *v, uintptr_t start, int tindex, struct pt_val *w)
{
	w->w0 = ((uint64_t)start >> PT_PAGE_SHIFT) | ((uint64_t)(tindex + 1) << 36) | ((uint64_t)(v->flags & 0xffff) << 48);
	w->w1 = ((uint64_t)v->length >> PT_PAGE_SHIFT) | ((uint64_t)(v->fork_policy & 0xf) << 56) |
		((uint64_t)(v->adopted & 1) << 60) | (v->user_data ? PT_HAS_USER : 0);
	w->w2 = (uint64_t)(uintptr_t)v->user_data;
}

/* Prepares every node the range needs, so that the stores cannot fail. */
static int prepare(struct coh_ptab *t, uint64_t pn0, uint64_t pn1)
{
	for (uint64_t pn = pn0; pn < pn1;) {
		uint64_t block_end = (pn | (LEAF_N - 1)) + 1;
		struct pt_mid *m = mid_get(t, pn, true);
		if (!m)
			return -ENOMEM;
		bool whole = (pn & (LEAF_N - 1)) == 0 && block_end <= pn1;
		if (!whole && !leaf_get(t, m, pn, true))
			return -ENOMEM;
		pn = block_end;
	}
	return 0;
}

/* Pages [p, e) of one leaf: ragged head page by page, whole granules, ragged tail. */
static void fill_leaf(struct pt_leaf *l, uint64_t p, uint64_t e, const struct pt_val *w)
{
	const uint64_t gmask = (1u << GRAN_BITS) - 1;
	uint64_t head = (p + gmask) & ~gmask;
	if (head > e)
		head = e;
	for (; p < head; p++)
		ent_store(&l->e[p & (LEAF_N - 1)], &l->ue[p & (LEAF_N - 1)], w);
	for (; p + gmask < e; p += gmask + 1)
		ent_store(&l->g[(p & (LEAF_N - 1)) >> GRAN_BITS], &l->ug[(p & (LEAF_N - 1)) >> GRAN_BITS], w);
	for (; p < e; p++)
		ent_store(&l->e[p & (LEAF_N - 1)], &l->ue[p & (LEAF_N - 1)], w);
}

static void fill(struct coh_ptab *t, uint64_t pn0, uint64_t pn1, const struct pt_val *w)
{
	for (uint64_t pn = pn0; pn < pn1;) {
		uint64_t block_end = (pn | (LEAF_N - 1)) + 1;
		struct pt_mid *m = mid_get(t, pn, false);
		bool whole = (pn & (LEAF_N - 1)) == 0 && block_end <= pn1;
		if (whole) {
			ent_store(&m->block[(pn >> LEAF_BITS) & (MID_N - 1)], &m->ublock[(pn >> LEAF_BITS) & (MID_N - 1)],
				  w);
		} else {
			fill_leaf(leaf_get(t, m, pn, false), pn, block_end < pn1 ? block_end : pn1, w);
		}
		pn = block_end;
	}
}

/* Writers are serialised by the map's lock: the counter needs no RMW. */
static uint64_t write_begin(struct coh_ptab *t)
{
	uint64_t s = atomic_load_explicit(&t->seq, memory_order_relaxed);
	atomic_store_explicit(&t->seq, s + 1, memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
	return s;
}

static void write_end(struct coh_ptab *t, uint64_t s)
{
	atomic_store_explicit(&t->seq, s + 2, memory_order_release);
}

/* The leaf when [pn0, pn1) lies inside one leaf and covers no whole block. */
static struct pt_leaf *one_leaf(struct coh_ptab *t, uint64_t pn0, uint64_t pn1, bool create)
{
	if ((pn0 >> LEAF_BITS) != ((pn1 - 1) >> LEAF_BITS) || pn1 - pn0 == LEAF_N)
		return NULL;
	struct pt_mid *m = mid_get(t, pn0, create);
	return m ? leaf_get(t, m, pn0, create) : NULL;
}

static void store_range(struct coh_ptab *t, uint64_t pn0, uint64_t pn1, const struct pt_val *w,
			struct pt_leaf *l)
{
	uint64_t s = write_begin(t);
	if (l)
		fill_leaf(l, pn0, pn1, w);
	else
		fill(t, pn0, pn1, w);
	write_end(t, s);
}

/* The common case, kept tight: a few pages inside a leaf that exists already.
 * The writer holds the map's lock, so its own loads need no ordering. */
static inline bool small_store(struct coh_ptab *t, uint64_t pn0, uint64_t pn1, const struct pt_val *w)
{
	if (pn1 - pn0 > 8 || (pn0 >> LEAF_BITS) != ((pn1 - 1) >> LEAF_BITS))
		return false;
	struct pt_mid *m = atomic_load_explicit(&t->top[(pn0 >> (LEAF_BITS + MID_BITS)) & (TOP_N - 1)],
						memory_order_relaxed);
	if (!m)
		return false;
	struct pt_leaf *l = atomic_load_explicit(&m->leaf[(pn0 >> LEAF_BITS) & (MID_N - 1)], memory_order_relaxed);
	if (!l)
		return false;
	uint64_t s = write_begin(t);
	for (uint64_t p = pn0; p < pn1; p++)
		ent_store(&l->e[p & (LEAF_N - 1)], &l->ue[p & (LEAF_N - 1)], w);
	write_end(t, s);
	return true;
}

int coh_ptab_set(struct coh_ptab *t, uintptr_t start, const struct coh_amap_val *v, int tindex)
{
	uint64_t pn0 = start >> PT_PAGE_SHIFT, pn1 = (start + v->length) >> PT_PAGE_SHIFT;
	/* 36-bit page numbers: a 48-bit address space.  An address above it
	 * (5-level paging with a high mmap hint) would alias a lower one. */
	if (v->length > PT_LIMIT || start > PT_LIMIT - v->length)
		return -ERANGE;
	struct pt_val w;
	encode(v, start, tindex, &w);
	if (small_store(t, pn0, pn1, &w))
		return 0;
	struct pt_leaf *l = one_leaf(t, pn0, pn1, true);   /* the common, small case */
	if (!l) {
		int e = prepare(t, pn0, pn1);
		if (e)
			return e;
	}
	store_range(t, pn0, pn1, &w, l);
	return 0;
}

void coh_ptab_clear(struct coh_ptab *t, uintptr_t start, size_t length)
{
	uint64_t pn0 = start >> PT_PAGE_SHIFT, pn1 = (start + length) >> PT_PAGE_SHIFT;
	static const struct pt_val empty;
	if (!small_store(t, pn0, pn1, &empty))
		store_range(t, pn0, pn1, &empty, one_leaf(t, pn0, pn1, false));
}

bool coh_ptab_get(const struct coh_ptab *t, uintptr_t addr, struct coh_ptab_hit *hit)
{
	if ((uint64_t)addr >= PT_LIMIT)
		return false;   /* nothing is stored there (coh_ptab_set refuses it) */
	uint64_t pn = addr >> PT_PAGE_SHIFT;
	unsigned ti = (unsigned)(pn >> (LEAF_BITS + MID_BITS)) & (TOP_N - 1);
	unsigned mi = (unsigned)(pn >> LEAF_BITS) & (MID_N - 1);
	_Atomic uint64_t *seq = (_Atomic uint64_t *)&t->seq;
	for (;;) {
		uint64_t s1 = atomic_load_explicit(seq, memory_order_acquire);
		struct pt_val w = { 0, 0, 0 };
		if (s1 & 1)
			continue;   /* a writer is in the middle of it */
		_Atomic uint64_t *u = NULL;
		if ((addr >> 48) == 0) {
			struct pt_mid *m = atomic_load_explicit(&t->top[ti], memory_order_acquire);
			if (m) {
				ent_load(&m->block[mi], &w);
				u = &m->ublock[mi];
				if (!w.w0) {
					struct pt_leaf *l = atomic_load_explicit(&m->leaf[mi], memory_order_acquire);
					if (l) {
						unsigned li = pn & (LEAF_N - 1);
						ent_load(&l->e[li], &w);
						u = &l->ue[li];
						if (!w.w0) {
							ent_load(&l->g[li >> GRAN_BITS], &w);
							u = &l->ug[li >> GRAN_BITS];
						}
					}
				}
			}
		}
		if (w.w1 & PT_HAS_USER)
			w.w2 = atomic_load_explicit(u, memory_order_relaxed);
		atomic_thread_fence(memory_order_acquire);
		if (atomic_load_explicit(seq, memory_order_relaxed) != s1)
			continue;
		if (!w.w0)
			return false;
		hit->start = (uintptr_t)(w.w0 & ((1ull << 36) - 1)) << PT_PAGE_SHIFT;
		hit->tindex = (int)((w.w0 >> 36) & 0xfff) - 1;
		hit->flags = (unsigned)(w.w0 >> 48);
		hit->length = (size_t)(w.w1 & ((1ull << 56) - 1)) << PT_PAGE_SHIFT;
		hit->fork_policy = (int)((w.w1 >> 56) & 0xf);
		hit->adopted = (int)((w.w1 >> 60) & 1);
		hit->user_data = (void *)(uintptr_t)w.w2;
		return true;
	}
}
