/* SPDX-License-Identifier: MIT */
/*
 * The allocation map: start address -> record, for "which allocation holds
 * this address".  Two levels: a sorted array of leaves (each with up to
 * LEAF_MAX sorted keys) and a parallel array of each leaf's first key.
 * Lookup is two binary searches, O(log n), touching few cache lines: the top
 * array is 1/LEAF_MAX of the keys.  Insert/remove move at most one leaf's
 * keys, plus the top array when a leaf splits or empties (every ~LEAF_MAX/2
 * operations).  Records never overlap; the caller holds m->lock.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define LEAF_MAX 128

struct amap_leaf {
	unsigned n;
	struct amap_leaf *next_dead;   /* on the map's dead list (fork child) */
	uintptr_t keys[LEAF_MAX];
	/* What a lookup reports sits beside the key, so it never touches the
	 * record itself: one cache line fewer per lookup. */
	struct coh_amap_val vals[LEAF_MAX];
	struct coh_rec *recs[LEAF_MAX];
};

int coh_amap_init(struct coh_amap *m)
{
	memset(m, 0, sizeof(*m));
	int e = coh_ptab_init(&m->ptab);
	if (e)
		return e;
	int r = pthread_mutex_init(&m->lock, NULL);
	if (r)
		coh_ptab_destroy(&m->ptab);
	return -r;
}

/* Frees what a fork child's handler unlinked; the records' users were the
 * parent's other threads, which the child does not have. */
static void amap_reap(struct coh_amap *m)
{
	while (m->dead_recs) {
		struct coh_rec *r = m->dead_recs;
		m->dead_recs = r->next_dead;
		free(r);
	}
	while (m->dead_leaves) {
		struct amap_leaf *l = m->dead_leaves;
		m->dead_leaves = l->next_dead;
		free(l);
	}
}

int coh_amap_destroy(struct coh_amap *m, void (*drop)(struct coh_rec *, void *), void *arg)
{
	amap_reap(m);
	for (size_t i = 0; i < m->nleaves; i++) {
		struct amap_leaf *l = m->leaves[i];
		for (unsigned j = 0; drop && j < l->n; j++)
			drop(l->recs[j], arg);
		free(l);
	}
	free(m->spare);
	free(m->leaves);
	free(m->firsts);
	int e = coh_ptab_destroy(&m->ptab);
	pthread_mutex_destroy(&m->lock);
	memset(m, 0, sizeof(*m));
	return e;
}

/* Index of the last element <= key in a sorted array, or -1. */
static inline long last_le(const uintptr_t *a, size_t n, uintptr_t key)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (a[mid] <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (long)lo - 1;
}

/* Position of the greatest key <= addr: leaf li, slot si; false if none. */
static bool locate(const struct coh_amap *m, uintptr_t addr, long *li, long *si)
{
	long l = last_le(m->firsts, m->nleaves, addr);
	if (l < 0)
		return false;
	const struct amap_leaf *leaf = m->leaves[l];
	*li = l;
	*si = last_le(leaf->keys, leaf->n, addr);
	return true;
}

struct coh_rec *coh_amap_find(const struct coh_amap *m, uintptr_t addr)
{
	long li, si;
	if (!locate(m, addr, &li, &si) || si < 0)
		return NULL;
	const struct amap_leaf *l = m->leaves[li];
	return addr - l->keys[si] < l->vals[si].length ? l->recs[si] : NULL;
}

const struct coh_amap_val *coh_amap_find_val(const struct coh_amap *m, uintptr_t addr, uintptr_t *start)
{
	long li, si;
	if (!locate(m, addr, &li, &si) || si < 0)
		return NULL;
	const struct amap_leaf *l = m->leaves[li];
	if (addr - l->keys[si] >= l->vals[si].length)
		return NULL;
	*start = l->keys[si];
	return &l->vals[si];
}

bool coh_amap_next_start(const struct coh_amap *m, uintptr_t addr, uintptr_t *start)
{
	long li = 0, si = -1;
	if (m->nleaves == 0)
		return false;
	if (!locate(m, addr, &li, &si))
		li = 0, si = -1;   /* addr lies before every key */
	if (si + 1 < (long)m->leaves[li]->n) {
		*start = m->leaves[li]->keys[si + 1];
		return true;
	}
	if ((size_t)li + 1 < m->nleaves) {
		*start = m->leaves[li + 1]->keys[0];
		return true;
	}
	return false;
}

int coh_amap_walk(const struct coh_amap *m, int (*fn)(struct coh_rec *r, void *arg), void *arg)
{
	for (size_t i = 0; i < m->nleaves; i++)
		for (unsigned j = 0; j < m->leaves[i]->n; j++) {
			int e = fn(m->leaves[i]->recs[j], arg);
			if (e)
				return e;
		}
	return 0;
}

void coh_amap_set_policy(struct coh_amap *m, uintptr_t start, int policy)
{
	long li, si;
	if (locate(m, start, &li, &si) && si >= 0 && m->leaves[li]->keys[si] == start) {
		struct coh_amap_val *v = &m->leaves[li]->vals[si];
		v->fork_policy = (int16_t)policy;
		/* the nodes exist already: rewriting the entries cannot fail */
		coh_ptab_set(&m->ptab, start, v, coh_target_index(v->target));
	}
}

int coh_amap_set_user_data(struct coh_amap *m, uintptr_t addr, void *data)
{
	long li, si;
	if (!locate(m, addr, &li, &si) || si < 0)
		return -ENOENT;
	struct amap_leaf *l = m->leaves[li];
	struct coh_amap_val *v = &l->vals[si];
	if (addr - l->keys[si] >= v->length)
		return -ENOENT;
	v->user_data = data;
	l->recs[si]->user_data = data;
	/* the nodes exist already: rewriting the entries cannot fail */
	coh_ptab_set(&m->ptab, l->keys[si], v, coh_target_index(v->target));
	return 0;
}

static void val_of(struct coh_amap_val *v, const struct coh_rec *r)
{
	v->length = r->pub.length;
	v->target = r->pub.target;
	v->flags = r->pub.flags;
	v->fork_policy = (int16_t)r->pub.fork_policy;
	v->adopted = (uint8_t)r->pub.adopted;
	v->user_data = r->user_data;
}

bool coh_amap_overlaps(const struct coh_amap *m, uintptr_t start, size_t len)
{
	long li, si;
	uintptr_t last = start + len - 1;
	/* The greatest record starting at or before the last byte decides. */
	if (!locate(m, last, &li, &si) || si < 0)
		return false;
	const struct amap_leaf *l = m->leaves[li];
	return l->keys[si] + l->vals[si].length > start;
}

static int top_insert(struct coh_amap *m, size_t at, struct amap_leaf *leaf)
{
	if (m->nleaves == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : 16;
		struct amap_leaf **nl = realloc(m->leaves, cap * sizeof(*nl));
		if (!nl)
			return -ENOMEM;
		m->leaves = nl;
		uintptr_t *nf = realloc(m->firsts, cap * sizeof(*nf));
		if (!nf)
			return -ENOMEM;
		m->firsts = nf;
		m->cap = cap;
	}
	memmove(&m->leaves[at + 1], &m->leaves[at], (m->nleaves - at) * sizeof(*m->leaves));
	memmove(&m->firsts[at + 1], &m->firsts[at], (m->nleaves - at) * sizeof(*m->firsts));
	m->leaves[at] = leaf;
	m->firsts[at] = leaf->keys[0];
	m->nleaves++;
	return 0;
}

/* One emptied leaf is kept for the next split or first insert, so a map that
 * goes 0 -> 1 -> 0 entries (alloc+free in a loop) never calls malloc. */
static struct amap_leaf *leaf_new(struct coh_amap *m)
{
	struct amap_leaf *l = m->spare;
	if (l) {
		m->spare = NULL;
	} else {
		l = malloc(sizeof(*l));
		if (!l)
			return NULL;
	}
	l->n = 0;
	return l;
}

static void leaf_drop(struct coh_amap *m, struct amap_leaf *l)
{
	if (m->spare)
		free(l);
	else
		m->spare = l;
}

static void top_remove(struct coh_amap *m, size_t at)
{
	leaf_drop(m, m->leaves[at]);
	memmove(&m->leaves[at], &m->leaves[at + 1], (m->nleaves - at - 1) * sizeof(*m->leaves));
	memmove(&m->firsts[at], &m->firsts[at + 1], (m->nleaves - at - 1) * sizeof(*m->firsts));
	m->nleaves--;
}

static int amap_insert(struct coh_amap *m, struct coh_rec *r)
{
	uintptr_t key = r->pub.start;
	if (r->pub.length == 0 || key + r->pub.length < key)
		return -EINVAL;
	if (coh_amap_overlaps(m, key, r->pub.length))
		return -EEXIST;

	if (m->nleaves == 1 && m->leaves[0]->n == 0) {
		/* the map's last leaf stays in place when it empties */
		m->leaves[0]->keys[0] = key;
		m->leaves[0]->recs[0] = r;
		val_of(&m->leaves[0]->vals[0], r);
		m->leaves[0]->n = 1;
		m->firsts[0] = key;
		m->count = 1;
		return 0;
	}
	if (m->nleaves == 0) {
		struct amap_leaf *leaf = leaf_new(m);
		if (!leaf)
			return -ENOMEM;
		leaf->keys[0] = key;
		leaf->recs[0] = r;
		val_of(&leaf->vals[0], r);
		leaf->n = 1;
		int e = top_insert(m, 0, leaf);
		if (e) {
			leaf_drop(m, leaf);
			return e;
		}
		m->count = 1;
		return 0;
	}

	long li = last_le(m->firsts, m->nleaves, key);
	if (li < 0)
		li = 0;   /* smaller than every key: goes to the front of leaf 0 */
	struct amap_leaf *leaf = m->leaves[li];

	if (leaf->n == LEAF_MAX) {
		struct amap_leaf *right = leaf_new(m);
		if (!right)
			return -ENOMEM;
		unsigned half = LEAF_MAX / 2;
		right->n = LEAF_MAX - half;
		memcpy(right->keys, &leaf->keys[half], right->n * sizeof(uintptr_t));
		memcpy(right->recs, &leaf->recs[half], right->n * sizeof(leaf->recs[0]));
		memcpy(right->vals, &leaf->vals[half], right->n * sizeof(leaf->vals[0]));
		int e = top_insert(m, (size_t)li + 1, right);
		if (e) {
			leaf_drop(m, right);
			return e;
		}
		leaf->n = half;
		if (key >= right->keys[0]) {
			leaf = right;
			li++;
		}
	}

	long pos = last_le(leaf->keys, leaf->n, key) + 1;
	memmove(&leaf->keys[pos + 1], &leaf->keys[pos], (leaf->n - (size_t)pos) * sizeof(uintptr_t));
	memmove(&leaf->recs[pos + 1], &leaf->recs[pos], (leaf->n - (size_t)pos) * sizeof(leaf->recs[0]));
	memmove(&leaf->vals[pos + 1], &leaf->vals[pos], (leaf->n - (size_t)pos) * sizeof(leaf->vals[0]));
	leaf->keys[pos] = key;
	leaf->recs[pos] = r;
	val_of(&leaf->vals[pos], r);
	leaf->n++;
	m->firsts[li] = leaf->keys[0];
	m->count++;
	return 0;
}

static struct coh_rec *remove_at(struct coh_amap *m, long li, long si);

static struct coh_rec *amap_remove(struct coh_amap *m, uintptr_t start)
{
	long li, si;
	if (!locate(m, start, &li, &si) || si < 0 || m->leaves[li]->keys[si] != start)
		return NULL;
	return remove_at(m, li, si);
}

int coh_amap_take(struct coh_amap *m, uintptr_t start, int (*check)(const struct coh_rec *r),
		  struct coh_rec **out)
{
	long li, si;
	if (!locate(m, start, &li, &si) || si < 0 || m->leaves[li]->keys[si] != start)
		return -ENOENT;
	struct coh_rec *r = m->leaves[li]->recs[si];
	int e = check(r);
	if (e)
		return e;
	remove_at(m, li, si);
	coh_ptab_clear(&m->ptab, r->pub.start, r->pub.length);
	*out = r;
	return 0;
}

static struct coh_rec *remove_at(struct coh_amap *m, long li, long si)
{
	struct amap_leaf *leaf = m->leaves[li];
	struct coh_rec *r = leaf->recs[si];
	leaf->n--;
	memmove(&leaf->keys[si], &leaf->keys[si + 1], (leaf->n - (size_t)si) * sizeof(uintptr_t));
	memmove(&leaf->recs[si], &leaf->recs[si + 1], (leaf->n - (size_t)si) * sizeof(leaf->recs[0]));
	memmove(&leaf->vals[si], &leaf->vals[si + 1], (leaf->n - (size_t)si) * sizeof(leaf->vals[0]));
	if (leaf->n == 0) {
		if (m->nleaves > 1)
			top_remove(m, (size_t)li);
	} else {
		m->firsts[li] = leaf->keys[0];
		/* Keep leaves reasonably full: fold a thin leaf into its right neighbour's space. */
		if (leaf->n < LEAF_MAX / 4 && (size_t)li + 1 < m->nleaves) {
			struct amap_leaf *next = m->leaves[li + 1];
			if (leaf->n + next->n <= LEAF_MAX * 3 / 4) {
				memcpy(&leaf->keys[leaf->n], next->keys, next->n * sizeof(uintptr_t));
				memcpy(&leaf->recs[leaf->n], next->recs, next->n * sizeof(leaf->recs[0]));
				memcpy(&leaf->vals[leaf->n], next->vals, next->n * sizeof(leaf->vals[0]));
				leaf->n += next->n;
				top_remove(m, (size_t)li + 1);
			}
		}
	}
	m->count--;
	return r;
}

size_t coh_amap_drop_excluded(struct coh_amap *m)
{
	size_t dropped = 0, kept_leaves = 0;
	for (size_t i = 0; i < m->nleaves; i++) {
		struct amap_leaf *l = m->leaves[i];
		unsigned k = 0;
		for (unsigned j = 0; j < l->n; j++) {
			if (l->vals[j].fork_policy != COH_FORK_EXCLUDE) {
				l->keys[k] = l->keys[j];
				l->vals[k] = l->vals[j];
				l->recs[k] = l->recs[j];
				k++;
				continue;
			}
			struct coh_rec *r = l->recs[j];
			coh_ptab_clear(&m->ptab, l->keys[j], l->vals[j].length);
			r->next_dead = m->dead_recs;
			m->dead_recs = r;
			dropped++;
		}
		l->n = k;
		if (k == 0) {
			/* an empty leaf leaves the top array (a map with no leaf is valid) */
			l->next_dead = m->dead_leaves;
			m->dead_leaves = l;
			continue;
		}
		m->leaves[kept_leaves] = l;
		m->firsts[kept_leaves] = l->keys[0];
		kept_leaves++;
	}
	m->nleaves = kept_leaves;
	m->count -= dropped;
	return dropped;
}

int coh_amap_insert(struct coh_amap *m, struct coh_rec *r)
{
	amap_reap(m);
	int e = amap_insert(m, r);
	if (e)
		return e;
	struct coh_amap_val v;
	val_of(&v, r);
	e = coh_ptab_set(&m->ptab, r->pub.start, &v, r->pub.target ? coh_target_index(r->pub.target) : -1);
	if (e)
		amap_remove(m, r->pub.start);
	return e;
}

struct coh_rec *coh_amap_remove(struct coh_amap *m, uintptr_t start)
{
	struct coh_rec *r = amap_remove(m, start);
	if (r)
		coh_ptab_clear(&m->ptab, r->pub.start, r->pub.length);
	return r;
}
