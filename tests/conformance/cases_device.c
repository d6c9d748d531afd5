/* SPDX-License-Identifier: MIT */
/* Conformance: coherence seen from the device (coh_device_access). */

#include "suite.h"

/* ---- coherence seen from the device (coh_device_access) ---- */

static size_t sums_mismatch(const uint64_t *got, const uint64_t *want, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (got[i] != want[i])
			return i;
	return n;
}

/* The device reads what the CPU wrote, the CPU reads what the device wrote,
 * both in one pass, and again after the memory moved to each other target. */
static void check_device_access(coh_target *t)
{
	const char *name = "device-access";
	uint64_t *p = NULL, *sums = NULL, *want = NULL;
	struct coh_device_info di = { .size = sizeof(di) };
	coh_target_device(t, &di);
	if (!(coh_target_caps(t) & COH_CAP_DEVICE_ACCESS)) {
		char b[8];
		int e = coh_device_access(ctx, t, b, sizeof(b), COH_DEVICE_FILL, 0, NULL, 0);
		CHECK(e == -EINVAL || e == -EOPNOTSUPP, "refused with %s", coh_strerror(e));
		report(t, name, SKIP, "%s", di.access_note);
		return;
	}
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability: nothing of this target's to reach");
		return;
	}
	size_t len = 16 * (ps > COH_SUM_BLOCK ? ps : COH_SUM_BLOCK), nb = len / COH_SUM_BLOCK;
	sums = calloc(nb, sizeof(*sums));
	want = calloc(nb, sizeof(*want));
	CHECK(sums && want, "out of memory");
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));

	/* CPU writes, device reads */
	pattern_fill(p, len, 0x1111);
	pattern_sums(0x1111, len, want);
	e = coh_device_access(ctx, t, p, len, COH_DEVICE_SUM, 0, sums, nb);
	CHECK(e == 0, "device read: %s", coh_strerror(e));
	size_t bad = sums_mismatch(sums, want, nb);
	CHECK(bad == nb, "the device read block %zu unlike the CPU wrote it", bad);
	report(t, "dev-sees-cpu", PASS, "%zu blocks summed by the device", nb);

	/* device writes, CPU reads */
	e = coh_device_access(ctx, t, p, len, COH_DEVICE_FILL, 0x2222, NULL, 0);
	CHECK(e == 0, "device write: %s", coh_strerror(e));
	bad = pattern_mismatch(p, len, 0x2222);
	CHECK(bad == len / 8, "the CPU reads word %zu unlike the device wrote it", bad);
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	CHECK(n >= 1, "query after device writes: %s", coh_strerror(n));
	report(t, "cpu-sees-dev", PASS, "%zu words", len / 8);

	/* one pass: read the old words, write new ones */
	e = coh_device_access(ctx, t, p, len, COH_DEVICE_SUM | COH_DEVICE_FILL, 0x3333, sums, nb);
	CHECK(e == 0, "device read+write: %s", coh_strerror(e));
	pattern_sums(0x2222, len, want);
	bad = sums_mismatch(sums, want, nb);
	CHECK(bad == nb, "the read+write pass summed block %zu wrong", bad);
	bad = pattern_mismatch(p, len, 0x3333);
	CHECK(bad == len / 8, "after the read+write pass word %zu is wrong", bad);
	report(t, "dev-read-write", PASS, NULL);

	/* after the memory moved: every other target, then back */
	int moved = 0;
	coh_target *u;
	pattern_sums(0x3333, len, want);
	coh_target_foreach(ctx, u) {
		if (u == t || !(coh_target_caps(u) & COH_CAP_MIGRATE))
			continue;
		if (coh_migrate(ctx, p, len, u, 0))
			continue;   /* this memory cannot go there (check_migrate says why) */
		e = coh_device_access(ctx, t, p, len, COH_DEVICE_SUM, 0, sums, nb);
		CHECK(e == 0 || e == -EFAULT, "device read after a move to %s: %s", coh_target_name(u), coh_strerror(e));
		if (e == 0) {
			bad = sums_mismatch(sums, want, nb);
			CHECK(bad == nb, "after a move to %s the device read block %zu wrong", coh_target_name(u), bad);
			moved++;
		}
		CHECK(coh_migrate(ctx, p, len, t, 0) == 0 || !(coh_target_caps(t) & COH_CAP_MIGRATE), "back to %s",
		      coh_target_name(t));
	}
	bad = pattern_mismatch(p, len, 0x3333);
	CHECK(bad == len / 8, "after the moves word %zu is wrong", bad);
	if (moved)
		report(t, "dev-after-move", PASS, "%d other target(s)", moved);
	else
		report(t, "dev-after-move", SKIP, "no other target this memory moves to and the device reaches");

	/* bad input changes nothing */
	CHECK(coh_device_access(ctx, t, (char *)p + 8, len - ps, COH_DEVICE_FILL, 1, NULL, 0) == -EINVAL, "unaligned accepted");
	CHECK(coh_device_access(ctx, t, p, len, COH_DEVICE_SUM, 1, NULL, nb) == -EINVAL, "SUM without sums accepted");
	CHECK(coh_device_access(ctx, t, p, len, COH_DEVICE_SUM, 1, sums, nb - 1) == -EINVAL, "short sums accepted");
	CHECK(coh_device_access(ctx, t, p, len, 0, 1, NULL, 0) == -EINVAL, "no operation accepted");
	CHECK(coh_device_access(ctx, t, p, len, 4, 1, NULL, 0) == -EINVAL, "unknown operation accepted");
	CHECK(coh_device_access(ctx, t, p, 2 * len, COH_DEVICE_FILL, 1, NULL, 0) == -EINVAL, "past the end accepted");
	CHECK(coh_device_access(ctx, t, (void *)(uintptr_t)0x10000, ps, COH_DEVICE_FILL, 1, NULL, 0) == -ENOENT,
	      "unknown memory accepted");
	bad = pattern_mismatch(p, len, 0x3333);
	CHECK(bad == len / 8, "a refused call changed word %zu", bad);
	report(t, "dev-bad-input", PASS, NULL);
out:
	if (p)
		coh_free(ctx, p);
	free(sums);
	free(want);
}


static const struct conf_case cases[] = {
	{ "device-access", "a target without COH_CAP_DEVICE_ACCESS refuses coh_device_access; reported as a skip "
			   "with the target's access_note", "every target with device access (it runs the dev-* cases)" },
	{ "dev-sees-cpu", "the device sums what the CPU wrote, block by block", "targets without device access" },
	{ "cpu-sees-dev", "the CPU reads every word the device wrote; the residency query still answers",
	  "targets without device access" },
	{ "dev-read-write", "one device pass reads the old words and writes new ones", "targets without device access" },
	{ "dev-after-move", "after the memory moved to each other target and back the device reads it right",
	  "targets without device access; no other target this memory moves to" },
	{ "dev-bad-input", "unaligned ranges, missing or short sums, unknown operations, ranges past the end and "
			   "unknown memory are refused and change nothing", "targets without device access" },
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	check_device_access(t);
}

const struct conf_group conf_device = { "device", run, cases };
