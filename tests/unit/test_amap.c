/* SPDX-License-Identifier: MIT */
/* The allocation map against a brute-force model, through splits and merges. */
#include <stdlib.h>

#include "common.h"
#include "internal.h"

#define SLOT 0x10000u   /* each model slot is 64 KiB of address space */
#define NSLOTS 20000

static struct coh_rec *mk(uintptr_t start, size_t len)
{
	struct coh_rec *r = calloc(1, sizeof(*r));
	r->pub.start = start;
	r->pub.length = len;
	atomic_init(&r->refs, 1);
	return r;
}

START_TEST(amap_basic)
{
	struct coh_amap m;
	ck_assert_int_eq(coh_amap_init(&m), 0);
	ck_assert_ptr_null(coh_amap_find(&m, 0x1000));
	struct coh_rec *a = mk(0x10000, 0x3000), *b = mk(0x20000, 0x1000);
	ck_assert_int_eq(coh_amap_insert(&m, a), 0);
	ck_assert_int_eq(coh_amap_insert(&m, b), 0);
	ck_assert_ptr_eq(coh_amap_find(&m, 0x10000), a);
	ck_assert_ptr_eq(coh_amap_find(&m, 0x12fff), a);
	ck_assert_ptr_null(coh_amap_find(&m, 0x13000));
	ck_assert_ptr_null(coh_amap_find(&m, 0xffff));
	ck_assert_ptr_eq(coh_amap_find(&m, 0x20fff), b);
	uintptr_t start = 0;
	const struct coh_amap_val *v = coh_amap_find_val(&m, 0x11234, &start);
	ck_assert_ptr_nonnull(v);
	ck_assert_uint_eq(start, 0x10000);
	ck_assert_uint_eq(v->length, 0x3000);
	/* overlaps are refused, in every direction */
	struct coh_rec *c = mk(0x12000, 0x2000), *d = mk(0xf000, 0x2000), *e = mk(0x8000, 0x30000);
	ck_assert_int_eq(coh_amap_insert(&m, c), -EEXIST);
	ck_assert_int_eq(coh_amap_insert(&m, d), -EEXIST);
	ck_assert_int_eq(coh_amap_insert(&m, e), -EEXIST);
	ck_assert_uint_eq(m.count, 2);
	/* removal by start only */
	ck_assert_ptr_null(coh_amap_remove(&m, 0x11000));
	ck_assert_ptr_eq(coh_amap_remove(&m, 0x10000), a);
	ck_assert_ptr_null(coh_amap_find(&m, 0x10000));
	ck_assert_uint_eq(m.count, 1);
	free(a);
	free(c);
	free(d);
	free(e);
	coh_amap_destroy(&m, NULL, NULL);
	free(b);
}
END_TEST

START_TEST(amap_model)
{
	struct coh_amap m;
	struct coh_rec **model = calloc(NSLOTS, sizeof(*model));
	ck_assert_int_eq(coh_amap_init(&m), 0);
	srand(1234);
	size_t live = 0;
	for (int step = 0; step < 200000; step++) {
		size_t s = (size_t)rand() % NSLOTS;
		uintptr_t base = 0x100000000ull + (uintptr_t)s * SLOT;
		if (model[s]) {
			ck_assert_ptr_eq(coh_amap_remove(&m, base), model[s]);
			free(model[s]);
			model[s] = NULL;
			live--;
		} else {
			model[s] = mk(base, SLOT / 2);
			ck_assert_int_eq(coh_amap_insert(&m, model[s]), 0);
			live++;
		}
		if (step % 997 == 0) {
			/* every address class agrees with the model */
			for (int k = 0; k < 64; k++) {
				size_t q = (size_t)rand() % NSLOTS;
				uintptr_t qb = 0x100000000ull + (uintptr_t)q * SLOT;
				ck_assert_ptr_eq(coh_amap_find(&m, qb), model[q]);
				ck_assert_ptr_eq(coh_amap_find(&m, qb + SLOT / 2 - 1), model[q]);
				ck_assert_ptr_null(coh_amap_find(&m, qb + SLOT / 2));
				/* the lock-free page table agrees */
				struct coh_ptab_hit h;
				bool hit = coh_ptab_get(&m.ptab, qb + SLOT / 2 - 1, &h);
				ck_assert_int_eq(hit, model[q] != NULL);
				if (hit) {
					ck_assert_uint_eq(h.start, qb);
					ck_assert_uint_eq(h.length, SLOT / 2);
				}
				ck_assert(!coh_ptab_get(&m.ptab, qb + SLOT / 2, &h));
			}
		}
	}
	ck_assert_uint_eq(m.count, live);
	for (size_t s = 0; s < NSLOTS; s++)
		ck_assert_ptr_eq(coh_amap_find(&m, 0x100000000ull + s * SLOT + 5), model[s]);
	/* leaves stay reasonably full after heavy churn */
	ck_assert_uint_le(m.nleaves, live / 16 + 2);
	for (size_t s = 0; s < NSLOTS; s++)
		free(model[s]);
	coh_amap_destroy(&m, NULL, NULL);
	free(model);
}
END_TEST

START_TEST(amap_descending)
{
	/* mmap hands out descending addresses: the front insertion path */
	struct coh_amap m;
	ck_assert_int_eq(coh_amap_init(&m), 0);
	enum { N = 5000 };
	struct coh_rec **r = calloc(N, sizeof(*r));
	for (int i = 0; i < N; i++) {
		r[i] = mk(0x7f0000000000ull - (uintptr_t)i * 0x2000, 0x1000);
		ck_assert_int_eq(coh_amap_insert(&m, r[i]), 0);
	}
	for (int i = 0; i < N; i++)
		ck_assert_ptr_eq(coh_amap_find(&m, r[i]->pub.start + 0xfff), r[i]);
	for (int i = 0; i < N; i += 2)
		ck_assert_ptr_eq(coh_amap_remove(&m, r[i]->pub.start), r[i]);
	for (int i = 0; i < N; i++)
		ck_assert_ptr_eq(coh_amap_find(&m, r[i]->pub.start), i % 2 ? r[i] : NULL);
	for (int i = 0; i < N; i++)
		free(r[i]);
	free(r);
	coh_amap_destroy(&m, NULL, NULL);
}
END_TEST

/* Large and odd-sized ranges: whole 8 MiB blocks, whole 64 KiB granules and
 * ragged pages, checked page by page through the page table. */
/* The lookup table holds a 48-bit address space: a record above it (5-level
 * paging gives user addresses up to 2^56) is refused, not stored where it
 * would alias a low address. */
START_TEST(ptab_limit)
{
	struct coh_amap m;
	ck_assert_int_eq(coh_amap_init(&m), 0);
	const uintptr_t top = (uintptr_t)1 << 48;
	struct coh_rec *low = mk(0x10000, 0x1000), *high = mk(top + 0x10000, 0x1000);
	struct coh_rec *across = mk(top - 0x1000, 0x2000), *last = mk(top - 0x1000, 0x1000);
	ck_assert_int_eq(coh_amap_insert(&m, low), 0);
	ck_assert_int_eq(coh_amap_insert(&m, high), -ERANGE);
	ck_assert_int_eq(coh_amap_insert(&m, across), -ERANGE);
	ck_assert_uint_eq(m.count, 1);
	struct coh_ptab_hit h;
	ck_assert(coh_ptab_get(&m.ptab, 0x10000, &h) && h.start == 0x10000);
	ck_assert(!coh_ptab_get(&m.ptab, top + 0x10000, &h));
	ck_assert_int_eq(coh_amap_insert(&m, last), 0);   /* ends exactly at the limit */
	ck_assert(coh_ptab_get(&m.ptab, top - 1, &h) && h.start == top - 0x1000);
	free(high);
	free(across);
	coh_amap_destroy(&m, NULL, NULL);
	free(low);
	free(last);
}
END_TEST

START_TEST(ptab_shapes)
{
	struct coh_amap m;
	ck_assert_int_eq(coh_amap_init(&m), 0);
	static const struct { uintptr_t start; size_t len; } shapes[] = {
		{ 0x7f0000001000ull, 0x1000 },                    /* one page */
		{ 0x7f0000011000ull, 0x3f000 },                   /* ragged head, granules, ragged tail */
		{ 0x7f0000400000ull + 0x3000, (24u << 20) + 0x5000 }, /* spans whole 8 MiB blocks */
		{ 0x7f0010000000ull, 8u << 20 },                  /* exactly one block */
	};
	struct coh_rec *r[4];
	for (int i = 0; i < 4; i++) {
		r[i] = mk(shapes[i].start, shapes[i].len);
		ck_assert_int_eq(coh_amap_insert(&m, r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		struct coh_ptab_hit h;
		for (uintptr_t a = shapes[i].start - 0x1000; a < shapes[i].start + shapes[i].len + 0x1000; a += 0x1000) {
			bool in = a >= shapes[i].start && a < shapes[i].start + shapes[i].len;
			bool other = false;
			for (int j = 0; j < 4; j++)
				other |= j != i && a >= shapes[j].start && a < shapes[j].start + shapes[j].len;
			if (other)
				continue;
			ck_assert_int_eq(coh_ptab_get(&m.ptab, a + 7, &h), in);
			if (in) {
				ck_assert_uint_eq(h.start, shapes[i].start);
				ck_assert_uint_eq(h.length, shapes[i].len);
			}
		}
	}
	for (int i = 0; i < 4; i++) {
		ck_assert_ptr_eq(coh_amap_remove(&m, shapes[i].start), r[i]);
		struct coh_ptab_hit h;
		for (uintptr_t a = shapes[i].start; a < shapes[i].start + shapes[i].len; a += 0x1000)
			ck_assert(!coh_ptab_get(&m.ptab, a, &h));
		free(r[i]);
	}
	coh_amap_destroy(&m, NULL, NULL);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("amap");
	TCase *tc = tcase_create("amap");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, amap_basic);
	tcase_add_test(tc, amap_model);
	tcase_add_test(tc, amap_descending);
	tcase_add_test(tc, ptab_shapes);
	tcase_add_test(tc, ptab_limit);
	suite_add_tcase(s, tc);
	return t_run(s);
}
