/* SPDX-License-Identifier: MIT */
/*
 * The conformance suite: the same checks on every target a context discovers,
 * whatever its backend, so that every later backend inherits them.  Each check
 * passes, fails or is skipped with a reason; a target whose capability bits
 * deny an operation must refuse it with -EOPNOTSUPP (that refusal is checked).
 *
 * Output: one line per check, then per target
 *   TARGET: N passed, N failed, N skipped
 * and finally "N passed, N failed, N skipped".  Exit 1 on any failure, 77 when
 * no target was found.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent.h"
#include "pinhelp.h"

static size_t ps;
static coh_context *ctx;
static int n_pass, n_fail, n_skip;
static int t_pass, t_fail, t_skip;

enum { PASS, FAIL, SKIP };

static void report(const coh_target *t, const char *check, int verdict, const char *fmt, ...)
{
	char why[256] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
	}
	static const char *const names[] = { "PASS", "FAIL", "SKIP" };
	printf("  %-4s %-16s %-14s %s\n", names[verdict], coh_target_name(t), check, why);
	int *c[] = { &t_pass, &t_fail, &t_skip };
	(*c[verdict])++;
}

#define CHECK(cond, ...)                                       \
	do {                                                   \
		if (!(cond)) {                                 \
			report(t, name, FAIL, __VA_ARGS__);    \
			goto out;                              \
		}                                              \
	} while (0)

/* Checks that are not about fork use COPY, or the first policy the target offers. */
static int first_policy(const coh_target *t)
{
	for (int p = COH_FORK_COPY; p <= COH_FORK_KERNEL; p++)
		if (coh_target_caps(t) & (COH_CAP_FORK_COPY << p))
			return p;
	return COH_FORK_COPY;
}

static bool is_host_kind(int tkind)
{
	return tkind == COH_KIND_HOST_NODE || tkind == COH_KIND_CPULESS_NODE;
}

/* Memory kinds a page of this target may show before the CPU touched it. */
static bool kind_fits_fresh(int tkind, int mkind)
{
	if (mkind == COH_MEM_NOT_POPULATED)
		return true;
	switch (tkind) {
	case COH_KIND_DEVICE_COHERENT: return mkind == COH_MEM_DEVICE_COHERENT;
	case COH_KIND_DEVICE_PRIVATE: return mkind == COH_MEM_DEVICE_PRIVATE;
	case COH_KIND_DEVICE_DAX: return mkind == COH_MEM_DEVICE_DAX;
	case COH_KIND_VENDOR_MANAGED: return mkind == COH_MEM_VENDOR_MANAGED;
	default: return false;
	}
}

/* ... and once the CPU wrote it: device-private memory faults back to system
 * memory on any CPU access (the seed's claim 5), device-coherent stays. */
static bool kind_fits_written(int tkind, int mkind)
{
	switch (tkind) {
	case COH_KIND_HOST_NODE:
	case COH_KIND_CPULESS_NODE:
		return mkind == COH_MEM_SYSTEM || mkind == COH_MEM_SYSTEM_THP || mkind == COH_MEM_FILE;
	case COH_KIND_DEVICE_COHERENT: return mkind == COH_MEM_DEVICE_COHERENT;
	case COH_KIND_DEVICE_PRIVATE: return mkind == COH_MEM_SYSTEM;
	case COH_KIND_DEVICE_DAX: return mkind == COH_MEM_DEVICE_DAX;
	case COH_KIND_VENDOR_MANAGED: return mkind == COH_MEM_VENDOR_MANAGED || mkind == COH_MEM_SYSTEM;
	default: return false;
	}
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

static bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 31 + seed))
			return false;
	return true;
}

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
		/* io_uring takes no file-backed buffers (6.1): ask the mm itself */
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
		/* a migration into a device while pinned must not claim success */
		bool refused = false;
		/* the /dev/kfd emulator (tests/doubles/kfdemu) cannot see pins taken through the kernel */
		bool sees_pins = !(getenv("KFDEMU_ROOT") && !strcmp(coh_target_backend(t), "amd"));
		if (!sees_pins)
			report(t, "pin-migrate", SKIP, "the /dev/kfd emulator cannot see pins taken by the kernel");
		if (sees_pins && !is_host_kind(coh_target_kind(t)) && (coh_target_caps(t) & COH_CAP_MIGRATE)) {
			e = coh_migrate(ctx, p, len, t, 0);
			CHECK(e != 0, "migrating pinned pages into %s reported success", coh_target_name(t));
			refused = true;
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

/* ---- fork policies, with real forks ---- */

struct child_job {
	unsigned char *p;
	size_t len;
	int view;
};

static int child_main(struct child_job *j)
{
	signal(SIGSEGV, SIG_DFL);
	switch (j->view) {
	case COH_CHILD_COPY:
		if (!same(j->p, j->len, 6))
			return 10;
		memset(j->p, 0xee, j->len);   /* private: the parent must not see it */
		return 0;
	case COH_CHILD_SHARED:
		if (!same(j->p, j->len, 6))
			return 11;
		memset(j->p, 0x5e, j->len);   /* the parent must see it */
		return 0;
	case COH_CHILD_ZERO:
		for (size_t i = 0; i < j->len; i++)
			if (j->p[i])
				return 12;
		return 0;
	case COH_CHILD_ABSENT:
	case COH_CHILD_UNREADABLE:
		return *(volatile unsigned char *)j->p;   /* must not survive */
	default:
		return 13;
	}
}

static const char *keeps_name(int keeps)
{
	switch (keeps) {
	case COH_KEEPS_YES: return "yes";
	case COH_KEEPS_NO: return "no";
	case COH_KEEPS_FIRST_WRITER: return "if the child writes first";
	default: return "unknown";
	}
}

static void check_fork(coh_target *t, int policy)
{
	char name[32];
	snprintf(name, sizeof(name), "fork-%s", coh_fork_policy_name(policy));
	unsigned char *p = NULL;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	size_t len = 16 * ps;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policy), (void **)&p);
	if (!(coh_target_caps(t) & (COH_CAP_FORK_COPY << policy))) {
		report(t, name, e == -EOPNOTSUPP ? PASS : FAIL, "policy not offered: alloc answered %s",
		       coh_strerror(e));
		if (!e)
			coh_free(ctx, p);
		return;
	}
	CHECK(e == 0, "coh_alloc: %s", coh_strerror(e));
	fill(p, len, 6);
	struct coh_fork_extent fe[4];
	int n = coh_fork_query(ctx, p, len, fe, 4, sizeof(struct coh_fork_extent));
	CHECK(n == 1, "fork-query: %d extents (%s)", n, n < 0 ? coh_strerror(n) : "");
	CHECK(fe[0].policy == policy, "fork-query reports policy %d", fe[0].policy);
	struct coh_extent before[8], after[8];
	int nb = coh_query(ctx, p, len, before, 8, sizeof(struct coh_extent));
	struct child_job job = { .p = p, .len = len, .view = fe[0].child_view };
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(child_main(&job));
	int st;
	CHECK(waitpid(pid, &st, 0) == pid, "waitpid");
	if (fe[0].child_view == COH_CHILD_ABSENT || fe[0].child_view == COH_CHILD_UNREADABLE)
		CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child view '%s' but the child was not "
		      "killed by SIGSEGV (status %#x)", coh_child_view_name(fe[0].child_view), st);
	else
		CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child saw something other than '%s' (status %#x)",
		      coh_child_view_name(fe[0].child_view), st);
	if (fe[0].child_view == COH_CHILD_SHARED)
		CHECK(p[0] == 0x5e && p[len - 1] == 0x5e, "child's writes not visible in the parent");
	else
		CHECK(same(p, len, 6), "parent's data changed by the child");
	/* Any CPU access moves device-private pages whatever fork did, and this
	 * range was filled by the CPU: fork-residency measures those instead. */
	if (fe[0].parent_keeps == 1 && coh_target_kind(t) != COH_KIND_DEVICE_PRIVATE) {
		p[0] = p[0];   /* a parent write after fork must not move anything either */
		int na = coh_query(ctx, p, len, after, 8, sizeof(struct coh_extent));
		CHECK(na == nb, "parent residency changed: %d extents, was %d", na, nb);
		for (int i = 0; i < na; i++)
			CHECK(after[i].kind == before[i].kind && after[i].node == before[i].node,
			      "parent residency changed: %s node %d, was %s node %d", coh_mem_kind_name(after[i].kind),
			      after[i].node, coh_mem_kind_name(before[i].kind), before[i].node);
	}
	report(t, name, PASS, "child: %s; parent keeps residency: %s", coh_child_view_name(fe[0].child_view),
	       keeps_name(fe[0].parent_keeps));
out:
	if (p)
		coh_free(ctx, p);
}

/* ---- the seed's complaint, measured: does the parent keep its device pages? ---- */

/* Percentage of the range's bytes that are of the given kind. */
/* Percentage of [p, p+len) of this kind (and, for driver-managed memory,
 * on target t: its pages show one kind wherever they are). */
static int percent_of_kind(void *p, size_t len, int kind, const coh_target *t)
{
	struct coh_extent x[64];
	int n = coh_query(ctx, p, len, x, 64, sizeof(struct coh_extent));
	size_t got = 0;
	for (int i = 0; i < n; i++)
		if (x[i].kind == kind && (kind != COH_MEM_VENDOR_MANAGED || x[i].target == t))
			got += x[i].length;
	return (int)(got * 100 / len);
}

/* Fork; on device-coherent memory the parent writes every page first (it
 * writes in place there), then the child checks its copy and writes too.  On
 * device-private memory any CPU access by the parent would fault its pages
 * back whatever fork did, so only the child touches.  Returns the percentage
 * of the parent's pages still on the device, or -1 when the child saw wrong
 * data. */
static int fork_and_write(coh_target *t, int policy, bool parent_first, int *keeps)
{
	size_t len = 32 * ps;
	unsigned char *p;
	*keeps = COH_KEEPS_UNKNOWN;
	if (coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policy), (void **)&p))
		return -2;
	fill(p, len, 8);
	coh_migrate(ctx, p, len, t, 0);
	int tk = coh_target_kind(t);
	int kind = tk == COH_KIND_DEVICE_PRIVATE   ? COH_MEM_DEVICE_PRIVATE
		   : tk == COH_KIND_VENDOR_MANAGED ? COH_MEM_VENDOR_MANAGED
						   : COH_MEM_DEVICE_COHERENT;
	/* what coh_fork_query promises, asked just before the fork */
	struct coh_fork_extent fe[4];
	if (coh_fork_query(ctx, p, len, fe, 4, sizeof(struct coh_fork_extent)) == 1)
		*keeps = fe[0].parent_keeps;
	int go[2];
	if (pipe(go)) {
		coh_free(ctx, p);
		return -2;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(go[1]);
		if (read(go[0], &c, 1) != 1)
			_exit(3);
		if (!same(p, len, 8))
			_exit(1);
		memset(p, 0x11, len);
		_exit(0);
	}
	close(go[0]);
	if (parent_first)
		for (size_t i = 0; i < len; i += ps)   /* the parent writes first, same values */
			p[i] = (unsigned char)(i * 31 + 8);
	if (write(go[1], "g", 1) != 1)
		kill(pid, SIGKILL);
	close(go[1]);
	int st;
	waitpid(pid, &st, 0);
	/* count before the parent reads anything back */
	int pct = WIFEXITED(st) && WEXITSTATUS(st) == 0 ? percent_of_kind(p, len, kind, t) : -1;
	if (WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV && kind == COH_MEM_VENDOR_MANAGED)
		pct = -3;   /* the driver's way: the child cannot read it at all */
	if (pct >= 0 && !same(p, len, 8))
		pct = -1;
	coh_free(ctx, p);
	return pct;
}

/* Whether a measured percentage (of the parent's pages still on the device)
 * is what coh_fork_query's parent_keeps promised; a failed measurement
 * (negative) proves nothing either way. */
static bool keeps_agree(int keeps, int pct, bool parent_wrote_first)
{
	if (pct < 0)
		return true;
	switch (keeps) {
	case COH_KEEPS_YES: return pct == 100;
	case COH_KEEPS_NO: return pct < 100;
	/* the promise is about the child writing first; after the parent's own
	 * first write Linux leaves it a system copy (the VM measures 0 %), an
	 * emulated device (tests/doubles/kfdemu) may keep the pages: both agree */
	case COH_KEEPS_FIRST_WRITER: return parent_wrote_first || pct == 100;
	default: return true;
	}
}

static void check_fork_residency(coh_target *t)
{
	const char *name = "fork-residency";
	int tk = coh_target_kind(t);
	if (tk != COH_KIND_DEVICE_PRIVATE && tk != COH_KIND_DEVICE_COHERENT && tk != COH_KIND_VENDOR_MANAGED) {
		report(t, name, SKIP, "not device memory");
		return;
	}
	if (!(coh_target_caps(t) & COH_CAP_FORK_COPY) || !(coh_target_caps(t) & COH_CAP_MIGRATE)) {
		report(t, name, SKIP, "no COPY policy or no migration here");
		return;
	}
	/* On device-coherent memory the parent writes in place, so both orders
	 * are measured; device-private pages move on any CPU access, so there
	 * only the child touches. */
	bool coherent = tk == COH_KIND_DEVICE_COHERENT;
	int kk, kc, kk2 = COH_KEEPS_UNKNOWN;
	int kern = fork_and_write(t, COH_FORK_KERNEL, coherent, &kk);
	int copy = fork_and_write(t, COH_FORK_COPY, coherent, &kc);
	int kern2 = coherent ? fork_and_write(t, COH_FORK_KERNEL, false, &kk2) : -4;
	/* coh_fork_query's answer must be what happened */
	const char *bad = !keeps_agree(kk, kern, coherent)   ? "kernel"
			  : !keeps_agree(kc, copy, coherent)  ? "COPY"
			  : !keeps_agree(kk2, kern2, false)   ? "kernel, child first"
							      : NULL;
	if (bad)
		report(t, name, FAIL, "fork-query disagrees (%s): it said the parent keeps its pages: kernel '%s', "
		       "COPY '%s'; measured kernel %d %% (%s), COPY %d %%, kernel with the child writing first %d %%",
		       bad, keeps_name(kk), keeps_name(kc), kern, coherent ? "parent first" : "child only", copy, kern2);
	else if (copy == 100 && kern == -3)
		report(t, name, PASS, "parent's pages still on the device after fork and the child's reads and writes: "
		       "COPY %d %%; with the driver's own fork the child cannot read them (SIGSEGV); fork-query agrees",
		       copy);
	else if (copy == 100 && kern >= 0 && coherent)
		report(t, name, PASS, "parent's pages still on the device after fork and writes by both: kernel %d %% "
		       "(parent first), %d %% (child first), COPY %d %%; fork-query agrees", kern, kern2, copy);
	else if (copy == 100 && kern >= 0)
		report(t, name, PASS, "parent's pages still on the device after fork and the child's writes: kernel "
		       "%d %%, COPY %d %%; fork-query agrees", kern, copy);
	else
		report(t, name, FAIL, "parent's pages still on the device: kernel %d %%, COPY %d %% (want 100; -1: "
		       "child saw wrong data)", kern, copy);
}

/* ---- a busy multi-threaded parent forks ---- */

struct busy {
	coh_target *t;
	atomic_int stop;
	atomic_int errors;
};

static void *busy_thread(void *arg)
{
	struct busy *b = arg;
	while (!atomic_load(&b->stop)) {
		void *q;
		if (coh_alloc(b->t, ps, &COH_ALLOC_PROPS(.fork_policy = first_policy(b->t)), &q) == 0) {
			memset(q, 1, ps);
			if (coh_free(ctx, q))
				atomic_fetch_add(&b->errors, 1);
		}
	}
	return NULL;
}

static void check_fork_threads(coh_target *t)
{
	const char *name = "fork-threads";
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return;
	}
	void *mine = NULL;
	if (coh_alloc(t, ps, &COH_ALLOC_PROPS(.fork_policy = first_policy(t)), &mine)) {
		report(t, name, FAIL, "alloc in the parent");
		return;
	}
	struct busy b = { .t = t };
	atomic_init(&b.stop, 0);
	atomic_init(&b.errors, 0);
	pthread_t th[3];
	for (int i = 0; i < 3; i++)
		pthread_create(&th[i], NULL, busy_thread, &b);
	int bad = 0;
	for (int f = 0; f < 10; f++) {
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			/* the map's lock works in the child: the parent's record is there */
			void *q;
			struct coh_alloc_info info = { .size = sizeof(info) };
			if (coh_lookup(ctx, mine, &info) || info.base != mine)
				_exit(1);
			/* device handles belong to the parent: -ECHILD is the documented answer */
			int e = coh_alloc(t, ps, &COH_ALLOC_PROPS(.fork_policy = first_policy(t)), &q);
			if (e == -ECHILD)
				_exit(0);
			if (e || coh_lookup(ctx, q, &info) || coh_free(ctx, q))
				_exit(2);
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		bad += !(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	}
	atomic_store(&b.stop, 1);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	coh_free(ctx, mine);
	int errors = atomic_load(&b.errors);
	if (bad || errors)
		report(t, name, FAIL, "%d of 10 children failed, %d parent errors", bad, errors);
	else
		report(t, name, PASS, "10 forks while 3 threads allocate and free");
}

/* ---- bad input on this target ---- */

/* ---- coherence seen from the device (coh_device_access) ---- */

/* Expected sums of blocks whose words are coh_pattern_word(pattern, .). */
static void pattern_sums(uint64_t pattern, size_t len, uint64_t *sums)
{
	uint64_t blk[COH_SUM_BLOCK / 8];
	for (size_t b = 0; b < len / COH_SUM_BLOCK; b++) {
		for (size_t i = 0; i < COH_SUM_BLOCK / 8; i++)
			blk[i] = coh_pattern_word(pattern, b * COH_SUM_BLOCK + i * 8);
		sums[b] = coh_block_sum(blk);
	}
}

static void cpu_fill(uint64_t *w, size_t len, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		w[i] = coh_pattern_word(pattern, i * 8);
}

/* The first word that is not the pattern's, or len / 8. */
static size_t cpu_mismatch(const uint64_t *w, size_t len, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != coh_pattern_word(pattern, i * 8))
			return i;
	return len / 8;
}

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
	cpu_fill(p, len, 0x1111);
	pattern_sums(0x1111, len, want);
	e = coh_device_access(ctx, t, p, len, COH_DEVICE_SUM, 0, sums, nb);
	CHECK(e == 0, "device read: %s", coh_strerror(e));
	size_t bad = sums_mismatch(sums, want, nb);
	CHECK(bad == nb, "the device read block %zu unlike the CPU wrote it", bad);
	report(t, "dev-sees-cpu", PASS, "%zu blocks summed by the device", nb);

	/* device writes, CPU reads */
	e = coh_device_access(ctx, t, p, len, COH_DEVICE_FILL, 0x2222, NULL, 0);
	CHECK(e == 0, "device write: %s", coh_strerror(e));
	bad = cpu_mismatch(p, len, 0x2222);
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
	bad = cpu_mismatch(p, len, 0x3333);
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
	bad = cpu_mismatch(p, len, 0x3333);
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
	bad = cpu_mismatch(p, len, 0x3333);
	CHECK(bad == len / 8, "a refused call changed word %zu", bad);
	report(t, "dev-bad-input", PASS, NULL);
out:
	if (p)
		coh_free(ctx, p);
	free(sums);
	free(want);
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

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	int e = coh_context_create(NULL, &ctx);
	if (e) {
		fprintf(stderr, "conformance: no context: %s\n", coh_strerror(e));
		return 1;
	}
	if (coh_target_count(ctx) == 0) {
		printf("conformance: no targets discovered: nothing to check (skip)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	coh_target *t;
	coh_target_foreach(ctx, t) {
		t_pass = t_fail = t_skip = 0;
		char node[24] = "no NUMA node";
		if (coh_target_numa_node(t) >= 0)
			snprintf(node, sizeof(node), "node %d", coh_target_numa_node(t));
		printf("%s (%s, %s, %s)\n", coh_target_name(t), coh_target_backend(t),
		       coh_target_kind_name(coh_target_kind(t)), node);
		check_alloc(t);
		check_query_moves_nothing(t);
		check_migrate(t);
		check_pins(t);
		check_short_pin(t);
		for (int pol = COH_FORK_COPY; pol <= COH_FORK_KERNEL; pol++)
			check_fork(t, pol);
		check_fork_residency(t);
		check_fork_threads(t);
		check_device_access(t);
		check_bad_input(t);
		printf("%s: %d passed, %d failed, %d skipped\n", coh_target_name(t), t_pass, t_fail, t_skip);
		n_pass += t_pass;
		n_fail += t_fail;
		n_skip += t_skip;
	}
	coh_context_unref(ctx);
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail ? 1 : 0;
}
