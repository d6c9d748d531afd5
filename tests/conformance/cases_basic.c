/* SPDX-License-Identifier: MIT */
/* Conformance: allocation, data, lookup, query, migration, bad input. */
#include <sys/mman.h>

#include "suite.h"

/* ---- allocation, data, lookup, query ---- */

static void check_alloc(coh_target *t)
{
	const char *name = "alloc";
	unsigned char *p = NULL;
	size_t len = 64 * ps;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		void *q;
		int e = coh_alloc(t, len, NULL, &q);
		report(t, name, e == -EOPNOTSUPP ? PASS : FAIL, "no alloc capability: refused with %s",
		       coh_strerror(e));
		return;
	}
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	struct coh_extent ext[8];
	int n = coh_query(ctx, p, len, ext, 8, sizeof(struct coh_extent));
	CHECK(n >= 1, "query of a fresh allocation: %s", coh_strerror(n));
	for (int i = 0; i < n; i++)
		CHECK(kind_fits_fresh(coh_target_kind(t), ext[i].kind), "fresh page reported as %s",
		      coh_mem_kind_name(ext[i].kind));
	fill(p, len, 1);
	CHECK(same(p, len, 1), "data read back differs");
	struct coh_alloc_info info = { .size = sizeof(info) };
	CHECK(coh_lookup(ctx, p + len / 2, &info) == 0 && info.base == p && info.target == t,
	      "lookup of an interior address");
	n = coh_query(ctx, p, len, ext, 8, sizeof(struct coh_extent));
	CHECK(n >= 1, "query: %s", coh_strerror(n));
	size_t covered = 0;
	for (int i = 0; i < n; i++) {
		CHECK(kind_fits_written(coh_target_kind(t), ext[i].kind), "written page reported as %s",
		      coh_mem_kind_name(ext[i].kind));
		if (coh_target_numa_node(t) >= 0 && is_host_kind(coh_target_kind(t)))
			CHECK(ext[i].node == coh_target_numa_node(t), "page on node %d, target node %d", ext[i].node,
			      coh_target_numa_node(t));
		covered += ext[i].length;
	}
	CHECK(covered == len, "extents cover %zu of %zu bytes", covered, len);
	report(t, name, PASS, "%d extent(s), kind %s", n, coh_mem_kind_name(ext[0].kind));
out:
	if (p) {
		e = coh_free(ctx, p);
		if (e)
			report(t, "free", FAIL, "coh_free: %s", coh_strerror(e));
		else if (coh_free(ctx, p) != -ENOENT)
			report(t, "free", FAIL, "double free not refused");
	}
}

static void check_query_moves_nothing(coh_target *t)
{
	const char *name = "query-passive";
	unsigned char *p = NULL;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 32 * ps;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len / 2, 2);
	struct coh_extent a[8], b[8];
	struct coh_pin_extent pe[8];
	struct coh_fork_extent fe[8];
	int na = coh_query(ctx, p, len, a, 8, sizeof(struct coh_extent));
	CHECK(coh_pin_query(ctx, p, len, pe, 8, sizeof(struct coh_pin_extent)) > 0, "pin-query failed");
	CHECK(coh_fork_query(ctx, p, len, fe, 8, sizeof(struct coh_fork_extent)) > 0, "fork-query failed");
	int nb = coh_query(ctx, p, len, b, 8, sizeof(struct coh_extent));
	CHECK(na == nb && !memcmp(a, b, sizeof(a[0]) * (size_t)na), "residency changed by the queries");
	if (is_host_kind(coh_target_kind(t)))
		CHECK(b[nb - 1].kind == COH_MEM_NOT_POPULATED, "untouched half populated by the queries (%s)",
		      coh_mem_kind_name(b[nb - 1].kind));
	report(t, name, PASS, NULL);
out:
	if (p)
		coh_free(ctx, p);
}

static void check_migrate(coh_target *t)
{
	const char *name = "migrate";
	unsigned char *p = NULL;
	coh_target *u;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 64 * ps;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 3);
	int moved = 0;
	coh_target_foreach(ctx, u) {
		e = coh_migrate(ctx, p, len, u, 0);
		if (!(coh_target_caps(u) & COH_CAP_MIGRATE)) {
			CHECK(e == -EOPNOTSUPP, "migrate to %s without the capability: %s", coh_target_name(u),
			      coh_strerror(e));
			continue;
		}
		CHECK(same(p, len, 3), "data changed by migrating to %s (%s)", coh_target_name(u), coh_strerror(e));
		if (e == -EOPNOTSUPP)
			continue;   /* this memory cannot reach u */
		CHECK(e == 0, "migrate to %s: %s", coh_target_name(u), coh_strerror(e));
		struct coh_extent x[8];
		int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
		for (int i = 0; i < n; i++)
			CHECK(x[i].target == u || coh_target_numa_node(u) < 0, "after migrating to %s a page is on %s",
			      coh_target_name(u), x[i].target ? coh_target_name(x[i].target) : "-");
		moved++;
	}
	/* and back home */
	if (coh_target_caps(t) & COH_CAP_MIGRATE) {
		e = coh_migrate(ctx, p, len, t, 0);
		CHECK(e == 0 && same(p, len, 3), "back to %s: %s", coh_target_name(t), coh_strerror(e));
	}
	if (moved)
		report(t, name, PASS, "%d destination(s), data intact", moved);
	else
		report(t, name, SKIP, "no destination takes this memory");
out:
	if (p)
		coh_free(ctx, p);
}


static void check_bad_input(coh_target *t)
{
	const char *name = "bad-input";
	unsigned char *p = NULL;
	void *q;
	CHECK(coh_alloc(t, 0, NULL, &q) == -EINVAL || !(coh_target_caps(t) & COH_CAP_ALLOC), "zero size accepted");
	CHECK(coh_alloc(t, ps, &COH_ALLOC_PROPS(.align = 3), &q) == -EINVAL || !(coh_target_caps(t) & COH_CAP_ALLOC), "bad alignment accepted");
	CHECK(coh_free(ctx, (void *)0x1000) == -ENOENT, "unknown pointer not refused");
	if (coh_target_caps(t) & COH_CAP_ALLOC) {
		CHECK(coh_alloc(t, 4 * ps, &COH_ALLOC_PROPS(.fork_policy = first_policy(t)), (void **)&p) == 0, "alloc");
		CHECK(coh_migrate(ctx, p + 1, ps, t, 0) == -EINVAL, "unaligned migrate accepted");
		int want = coh_target_caps(t) & COH_CAP_MIGRATE ? -EINVAL : -EOPNOTSUPP;
		CHECK(coh_migrate(ctx, p, 8 * ps, t, 0) == want, "migrate past the end accepted");
		CHECK(coh_fork_policy_set(ctx, p, ps, COH_FORK_ZERO) == -EINVAL, "partial fork policy accepted");
		CHECK(coh_free(ctx, p + ps) == -ENOENT, "interior free accepted");
	}
	report(t, name, PASS, NULL);
out:
	if (p)
		coh_free(ctx, p);
}


/* ---- advice ---- */

/* Where each extent of [p, p+len) is, for comparing before and after. */
static int where(const unsigned char *p, size_t len, struct coh_extent *x, int max)
{
	return coh_query(ctx, p, len, x, (size_t)max, sizeof(struct coh_extent));
}

static bool same_places(const struct coh_extent *a, int na, const struct coh_extent *b, int nb)
{
	if (na != nb)
		return false;
	for (int i = 0; i < na; i++)
		if (a[i].start != b[i].start || a[i].length != b[i].length || a[i].kind != b[i].kind ||
		    a[i].node != b[i].node || a[i].target != b[i].target)
			return false;
	return true;
}

static void check_advise(coh_target *t)
{
	const char *name = "advise";
	size_t len = 16 * ps;
	unsigned char *p = case_alloc(t, name, len, 9);
	if (!p)
		return;
	int e;
	struct coh_extent before[16], after[16];
	int nb = where(p, len, before, 16);
	CHECK(nb >= 1, "query: %s", coh_strerror(nb));
	/* bad input first: refused, and nothing changes */
	CHECK(coh_advise(ctx, p, len, 0, t) == -EINVAL && coh_advise(ctx, p, len, COH_ADVISE_UNSET_READ_MOSTLY + 1, t) ==
	      -EINVAL, "an unknown advice is not refused with -EINVAL");
	CHECK(coh_advise(ctx, p, len, COH_ADVISE_PREFERRED_LOCATION, NULL) == -EINVAL &&
	      coh_advise(ctx, p, len, COH_ADVISE_ACCESSED_BY, NULL) == -EINVAL,
	      "advice that names a location accepted without one");
	CHECK(coh_advise(ctx, p + 1, ps, COH_ADVISE_READ_MOSTLY, NULL) == -EINVAL &&
	      coh_advise(ctx, p, ps + 1, COH_ADVISE_READ_MOSTLY, NULL) == -EINVAL, "unaligned advice accepted");
	CHECK(coh_advise(ctx, p, len + 64 * ps, COH_ADVISE_READ_MOSTLY, NULL) < 0, "advice past the allocation accepted");
	if (!(coh_target_caps(t) & COH_CAP_ADVISE)) {
		e = coh_advise(ctx, p, len, COH_ADVISE_READ_MOSTLY, NULL);
		CHECK(e == -EOPNOTSUPP, "no advise capability, but READ_MOSTLY answered %s", coh_strerror(e));
		CHECK(same(p, len, 9), "refused advice changed data");
		report(t, name, PASS, "no advise capability: refused (-EOPNOTSUPP), bad advice -EINVAL, nothing changed");
		goto out;
	}
	/* every advice, naming every target where it takes one: 0 or refused */
	int honoured = 0, refused = 0;
	char took[96] = "";
	for (int a = COH_ADVISE_PREFERRED_LOCATION; a <= COH_ADVISE_UNSET_READ_MOSTLY; a++) {
		bool names = a == COH_ADVISE_PREFERRED_LOCATION || a == COH_ADVISE_ACCESSED_BY ||
			     a == COH_ADVISE_UNSET_ACCESSED_BY;
		coh_target *u;
		bool ok = false;
		coh_target_foreach(ctx, u) {
			if (!names && u != t)
				continue;
			e = coh_advise(ctx, p, len, a, names ? u : NULL);
			CHECK(e == 0 || e == -EOPNOTSUPP || e == -EINVAL, "advice %d naming %s: %s", a,
			      coh_target_name(u), coh_strerror(e));
			ok |= e == 0;
			e == 0 ? honoured++ : refused++;
		}
		if (ok)
			snprintf(took + strlen(took), sizeof(took) - strlen(took), "%s%d", took[0] ? "," : "", a);
	}
	/* advice moves nothing that is there already */
	int na = where(p, len, after, 16);
	CHECK(same(p, len, 9), "data changed by advice");
	CHECK(same_places(before, nb, after, na), "advice moved pages: %d extents before, %d after (first on %s, was %s)",
	      nb, na, na > 0 && after[0].target ? coh_target_name(after[0].target) : "-",
	      before[0].target ? coh_target_name(before[0].target) : "-");
	/* the withdrawals leave it migratable as before */
	coh_advise(ctx, p, len, COH_ADVISE_UNSET_PREFERRED_LOCATION, NULL);
	if (coh_target_caps(t) & COH_CAP_MIGRATE) {
		e = coh_migrate(ctx, p, len, t, 0);
		CHECK(e == 0 && same(p, len, 9), "migrating after the advice: %s", coh_strerror(e));
	}
	report(t, name, PASS, "%d answers 0 (advice %s), %d refused; bad advice -EINVAL; nothing moved, data intact",
	       honoured, took[0] ? took : "none", refused);
out:
	if (p)
		coh_free(ctx, p);
}

static const struct conf_case cases[] = {
	{ "alloc", "coh_alloc gives memory of the target's kind, readable and writable, found by coh_lookup from any "
		   "interior address, covered by the residency query on the target's node",
	  "none: a target without COH_CAP_ALLOC must refuse with -EOPNOTSUPP" },
	{ "free", "coh_free succeeds once and refuses the second free (-ENOENT); reported only when it fails", "" },
	{ "query-passive", "residency, pin and fork queries move nothing and populate nothing", "targets without alloc" },
	{ "migrate", "migration to every target with COH_CAP_MIGRATE and back keeps the data; the query names the "
		     "destination; targets without the capability refuse", "targets without alloc; no destination" },
	{ "bad-input", "zero size, bad alignment, unknown, interior and unaligned pointers and ranges past the end are "
		       "refused with the documented errno", "" },
	{ "advise", "every advice naming every target answers 0 or a refusal; unknown advice, a missing location, "
		    "unaligned and over-long ranges are -EINVAL; without COH_CAP_ADVISE -EOPNOTSUPP; no page moves, "
		    "the data is intact", "targets without alloc" },
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	check_alloc(t);
	check_query_moves_nothing(t);
	check_migrate(t);
	check_bad_input(t);
	check_advise(t);
}

const struct conf_group conf_basic = { "basic", run, cases };
