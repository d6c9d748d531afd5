/* SPDX-License-Identifier: MIT */
/* Conformance: pin-query against real pins. */
#include <sys/mman.h>
#include <unistd.h>

#include "pinhelp.h"

#include "suite.h"

/* ---- pin-query against real pins ---- */

static void check_pins(coh_target *t)
{
	const char *name = "pin-long";
	unsigned char *p = NULL;
	uint64_t *before = NULL, *after = NULL;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	if (!longpin_available()) {
		report(t, name, SKIP, "io_uring unavailable: cannot take a long-term pin here");
		return;
	}
	size_t len = 32 * ps, np = 32;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 4);
	/* the CPU's writes may have pulled the pages out (device-private): put them back */
	if (coh_target_caps(t) & COH_CAP_MIGRATE)
		CHECK(coh_migrate(ctx, p, len, t, 0) == 0, "migrate back to the target");
	struct coh_pin_extent pe[4];
	int n = coh_pin_query(ctx, p, len, pe, 4, sizeof(struct coh_pin_extent));
	CHECK(n == 1, "expected one pin extent, got %d", n);
	int predicted = pe[0].long_term;
	before = calloc(np, 8);
	after = calloc(np, 8);
	int have_pfn = pfns_of(p, np, before) == 0;
	struct longpin lp;
	e = longpin_take(&lp, p, len);
	if (e == -EOPNOTSUPP && pe[0].kind == COH_MEM_DEVICE_DAX) {
		/* io_uring takes no file-backed buffers on 6.1 (6.12 does): ask the mm itself */
		int g = longpin_gup(p, len);
		if (g == -ENOSYS) {
			report(t, name, SKIP, "io_uring refuses file-backed memory and gup_test is absent");
			goto out;
		}
		CHECK((g == 0) == (predicted != COH_PIN_NEVER), "gup_test long-term pin: %s, pin-query said %s",
		      coh_strerror(g), coh_pin_answer_name(predicted));
		pfns_of(p, np, after);
		if (have_pfn)
			CHECK(!memcmp(before, after, np * 8), "device-dax frames moved under a pin");
		report(t, name, PASS, "%s: predicted %s, checked through gup_test (io_uring refuses file-backed memory)",
		       coh_mem_kind_name(pe[0].kind), coh_pin_answer_name(predicted));
		goto out;
	}
	if (predicted == COH_PIN_NEVER) {
		CHECK(e < 0, "pinned, but pin-query said never (%s)", pe[0].reason);
	} else if (predicted == COH_PIN_UNKNOWN) {
		if (e == 0)
			longpin_drop(&lp);
		report(t, name, SKIP, "pin-query says unknown: %s", pe[0].reason);
		goto out;
	} else {
		CHECK(e == 0, "pin failed (%s), pin-query said %s", coh_strerror(e), coh_pin_answer_name(predicted));
		pfns_of(p, np, after);
		if (have_pfn) {
			bool moved = false;
			for (size_t i = 0; i < np; i++)
				moved |= before[i] != after[i];
			CHECK(moved == (predicted == COH_PIN_AFTER_MIGRATE), "pages %s, pin-query said %s",
			      moved ? "moved" : "stayed", coh_pin_answer_name(predicted));
		}
		/* a migration into a device while pinned must not claim success, unless
		 * the pin left the pages where they were, on that device (device-dax on
		 * kernels whose io_uring takes it, 6.12): then there is nothing to move */
		bool refused = false, in_place = false;
		/* the /dev/kfd emulator (tests/doubles/kfdemu) cannot see pins taken through the kernel */
		bool sees_pins = !(getenv("KFDEMU_ROOT") && !strcmp(coh_target_backend(t), "amd"));
		if (!sees_pins)
			report(t, "pin-migrate", SKIP, "the /dev/kfd emulator cannot see pins taken by the kernel");
		if (sees_pins && !is_host_kind(coh_target_kind(t)) && (coh_target_caps(t) & COH_CAP_MIGRATE)) {
			struct coh_extent x[4];
			int nx = coh_query(ctx, p, len, x, 4, sizeof(struct coh_extent));
			in_place = nx == 1 && x[0].target == t;
			e = coh_migrate(ctx, p, len, t, 0);
			if (in_place) {
				CHECK(e == 0, "pinned pages already on %s: migrating them there failed (%s)",
				      coh_target_name(t), coh_strerror(e));
				if (have_pfn) {
					pfns_of(p, np, after);
					CHECK(!memcmp(before, after, np * 8), "pinned frames moved by a migration in place");
				}
			} else
				CHECK(e != 0, "migrating pinned pages into %s reported success", coh_target_name(t));
			refused = !in_place;
		}
		longpin_drop(&lp);
		CHECK(same(p, len, 4), "data changed by the pin");
		if (predicted == COH_PIN_AFTER_MIGRATE) {
			struct coh_extent x[4];
			int nx = coh_query(ctx, p, len, x, 4, sizeof(struct coh_extent));
			CHECK(nx == 1 && x[0].kind == COH_MEM_SYSTEM, "after the pin the pages are %s, not system memory",
			      coh_mem_kind_name(x[0].kind));
		}
		if (refused)
			report(t, "pin-migrate", PASS, "migrating pinned pages refused: %s", coh_strerror(e));
		else if (in_place)
			report(t, "pin-migrate", PASS, "pinned in place on the target: migrating there moved nothing, "
			       "data intact");
	}
	report(t, name, PASS, "%s: predicted %s%s", coh_mem_kind_name(pe[0].kind), coh_pin_answer_name(predicted),
	       have_pfn ? ", frames compared" : ", frames hidden (not root)");
out:
	free(before);
	free(after);
	if (p)
		coh_free(ctx, p);
}

static void check_short_pin(coh_target *t)
{
	const char *name = "pin-short";
	unsigned char *p = NULL;
	int fd = -1;
	char path[64];
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	fd = directio_open(path, sizeof(path));
	if (fd < 0) {
		report(t, name, SKIP, "O_DIRECT unavailable in this folder: %s", coh_strerror(fd));
		return;
	}
	size_t len = 16 * ps;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), (void **)&p);
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 5);
	if (coh_target_caps(t) & COH_CAP_MIGRATE)
		CHECK(coh_migrate(ctx, p, len, t, 0) == 0, "migrate back to the target");
	struct coh_pin_extent pe[4];
	int n = coh_pin_query(ctx, p, len, pe, 4, sizeof(struct coh_pin_extent));
	CHECK(n == 1, "expected one pin extent, got %d", n);
	if (pe[0].kind == COH_MEM_VENDOR_MANAGED && strstr(coh_target_model(t), "CUDA double")) {
		/* its GPU-resident pages are PROT_NONE: the kernel's GUP cannot fault them in */
		report(t, name, SKIP, "the CUDA driver double cannot fault pages in for GUP; predicted %s (checked on a "
		       "real GPU by tests/device/nvidia.sh)", coh_pin_answer_name(pe[0].short_term));
		goto out;
	}
	long r = directio_from(fd, p, len);   /* device reads the memory */
	if (pe[0].short_term == COH_PIN_NEVER)
		CHECK(r < 0, "O_DIRECT worked, pin-query said never");
	else if (pe[0].short_term != COH_PIN_UNKNOWN)
		CHECK(r == (long)len, "O_DIRECT failed (%ld), pin-query said %s", r,
		      coh_pin_answer_name(pe[0].short_term));
	{
		/* in place: the pages are where they were; after-migrate: system memory now */
		struct coh_extent x[4];
		int nx = coh_query(ctx, p, len, x, 4, sizeof(struct coh_extent));
		if (pe[0].short_term == COH_PIN_IN_PLACE)
			CHECK(nx == 1 && x[0].kind == pe[0].kind, "after a short pin the pages are %s, were %s",
			      coh_mem_kind_name(x[0].kind), coh_mem_kind_name(pe[0].kind));
		else if (pe[0].short_term == COH_PIN_AFTER_MIGRATE && pe[0].kind == COH_MEM_VENDOR_MANAGED)
			CHECK(nx == 1 && x[0].kind == COH_MEM_VENDOR_MANAGED && x[0].node >= 0,
			      "after a short pin the managed pages are %s on node %d, not on the host",
			      coh_mem_kind_name(x[0].kind), x[0].node);
		else if (pe[0].short_term == COH_PIN_AFTER_MIGRATE)
			CHECK(nx == 1 && x[0].kind == COH_MEM_SYSTEM, "after a short pin the pages are %s, not system",
			      coh_mem_kind_name(x[0].kind));
	}
	memset(p, 0, len);
	r = directio_into(fd, p, len);        /* device writes the memory */
	if (pe[0].short_term == COH_PIN_IN_PLACE || pe[0].short_term == COH_PIN_AFTER_MIGRATE)
		CHECK(r == (long)len && same(p, len, 5), "O_DIRECT read back differs (%ld)", r);
	report(t, name, PASS, "%s: predicted %s", coh_mem_kind_name(pe[0].kind), coh_pin_answer_name(pe[0].short_term));
out:
	if (fd >= 0)
		directio_close(fd, path);
	if (p)
		coh_free(ctx, p);
}


static const struct conf_case cases[] = {
	{ "pin-long", "a real long-term pin (io_uring fixed buffer, else gup_test) is predicted by coh_pin_query",
	  "no io_uring and no gup_test; pin-query answers unknown" },
	{ "pin-migrate", "migrating long-term pinned pages is refused or leaves the data intact",
	  "the /dev/kfd emulator (it cannot see kernel pins)" },
	{ "pin-short", "a short-term pin (O_DIRECT read into the range) matches the pin-query answer",
	  "O_DIRECT unavailable; the CUDA double (GUP cannot fault its pages)" },
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	check_pins(t);
	check_short_pin(t);
}

const struct conf_group conf_pin = { "pin", run, cases };
