/* SPDX-License-Identifier: MIT */
/*
 * Pin-query predictions against real pins on host memory: long-term pins
 * through io_uring fixed buffers (FOLL_LONGTERM), short-term through O_DIRECT
 * (FOLL_PIN).  For each kind of mapping the test asks coh_pin_query first, then
 * pins, and checks the outcome: "in place" pins succeed and (as root, where
 * pagemap shows frame numbers) leave every page frame where it was; "never"
 * pins fail.  The query itself must not move or populate anything.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"
#include "pinhelp.h"

static size_t ps;
static coh_context *ctx;

static void setup(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	ctx = t_ctx();
}

static void teardown(void)
{
	coh_context_unref(ctx);
}

/* One verdict for the whole range, or fail. */
static struct coh_pin_extent one_verdict(void *p, size_t len)
{
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, len, pe, 8);
	ck_assert_msg(n == 1, "expected one pin extent, got %d", n);
	ck_assert_uint_eq(pe[0].length, len);
	return pe[0];
}

/* Long-term pin; compares frames before and after where they are visible. */
static void check_long(void *p, size_t len, int predicted)
{
	if (!longpin_available()) {
		fprintf(stderr, "test_pin: io_uring unavailable here: long-term pins not checked\n");
		return;
	}
	size_t np = len / ps;
	uint64_t *before = calloc(np, 8), *after = calloc(np, 8);
	int have_pfn = pfns_of(p, np, before) == 0;
	struct longpin lp;
	int e = longpin_take(&lp, p, len);
	if (predicted == COH_PIN_NEVER) {
		ck_assert_msg(e < 0, "long-term pin succeeded where pin-query said never");
	} else {
		ck_assert_msg(e == 0, "long-term pin failed (%s) where pin-query said %s", coh_strerror(e),
			      coh_pin_answer_name(predicted));
		ck_assert_int_eq(pfns_of(p, np, after) == 0 || !have_pfn, 1);
		if (have_pfn && predicted == COH_PIN_IN_PLACE)
			for (size_t i = 0; i < np; i++)
				if (before[i])
					ck_assert_msg(before[i] == after[i], "page %zu moved while pinned in place", i);
		longpin_drop(&lp);
	}
	free(before);
	free(after);
}

static void check_short(void *p, size_t len, int predicted, int writable)
{
	char path[64];
	int fd = directio_open(path, sizeof(path));
	if (fd < 0) {
		fprintf(stderr, "test_pin: O_DIRECT unavailable in this folder (%s): short pins not checked\n",
			coh_strerror(fd));
		return;
	}
	/* a block of known data for the read-into direction */
	void *blk;
	ck_assert_int_eq(posix_memalign(&blk, ps, len), 0);
	memset(blk, 0x3c, len);
	ck_assert_int_eq(directio_from(fd, blk, len), (long)len);
	long r = writable ? directio_into(fd, p, len) : directio_from(fd, p, len);
	if (predicted == COH_PIN_NEVER)
		ck_assert_msg(r < 0, "short pin (O_DIRECT) succeeded where pin-query said never");
	else
		ck_assert_msg(r == (long)len, "short pin (O_DIRECT) failed (%ld) where pin-query said %s", r,
			      coh_pin_answer_name(predicted));
	if (writable && r == (long)len)
		ck_assert_int_eq(memcmp(p, blk, len), 0);
	free(blk);
	directio_close(fd, path);
}

START_TEST(system_populated)
{
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 64 * ps, 0, COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE, (void **)&p), 0);
	struct coh_pin_extent v = one_verdict(p, 64 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	check_long(p, 64 * ps, v.long_term);
	check_short(p, 64 * ps, v.short_term, 1);
	/* residency unchanged by the pins */
	struct coh_extent e[2];
	ck_assert_int_eq(coh_query(ctx, p, 64 * ps, e, 2), 1);
	ck_assert_int_eq(e[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(not_populated)
{
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 16 * ps, 0, COH_ALLOC_NOHUGE, (void **)&p), 0);
	struct coh_pin_extent v = one_verdict(p, 16 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_NOT_POPULATED);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	/* asking populated nothing */
	struct coh_extent e[2];
	ck_assert_int_eq(coh_query(ctx, p, 16 * ps, e, 2), 1);
	ck_assert_int_eq(e[0].kind, COH_MEM_NOT_POPULATED);
	check_long(p, 16 * ps, v.long_term);
	/* the pin faulted in ordinary system pages, as predicted */
	if (longpin_available()) {
		ck_assert_int_eq(coh_query(ctx, p, 16 * ps, e, 2), 1);
		ck_assert_int_eq(e[0].kind, COH_MEM_SYSTEM);
	}
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(huge_page)
{
	char *p;
	int e = coh_alloc(t_node0(ctx), 4 << 20, 0, COH_ALLOC_HUGE | COH_ALLOC_POPULATE, (void **)&p);
	if (e == -EOPNOTSUPP) {
		fprintf(stderr, "test_pin: no transparent huge pages here\n");
		return;
	}
	ck_assert_int_eq(e, 0);
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, 4 << 20, pe, 8);
	ck_assert_int_ge(n, 1);
	for (int i = 0; i < n; i++) {
		ck_assert(pe[i].kind == COH_MEM_SYSTEM_THP || pe[i].kind == COH_MEM_SYSTEM);
		ck_assert_int_eq(pe[i].long_term, COH_PIN_IN_PLACE);
	}
	check_long(p, 4 << 20, COH_PIN_IN_PLACE);
	check_short(p, 2 << 20, COH_PIN_IN_PLACE, 1);
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(prot_none)
{
	char *p = mmap(NULL, 8 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.short_term, COH_PIN_NEVER);
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 1);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(read_only)
{
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 9, 8 * ps);
	mprotect(p, 8 * ps, PROT_READ);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);   /* a read pin: O_DIRECT from memory */
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);       /* fixed buffers ask for write access */
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 0);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(shared_anonymous)
{
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(p, 9, 8 * ps);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 1);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(shared_file)
{
	char path[64];
	snprintf(path, sizeof(path), "coh-pinfile-%d.tmp", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(8 * ps)), 0);
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, 8 * ps);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	ck_assert_int_ne(v.long_term, COH_PIN_UNKNOWN);   /* the kernel version is known here */
	check_long(p, 8 * ps, v.long_term);
	munmap(p, 8 * ps);
	close(fd);
	unlink(path);
}
END_TEST

START_TEST(unmapped)
{
	char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(p, 4 * ps);
	struct coh_pin_extent v = one_verdict(p, 4 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_UNMAPPED);
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);
	check_long(p, 4 * ps, v.long_term);
}
END_TEST

START_TEST(mixed_range)
{
	/* populated | PROT_NONE | read-only, one call, three verdicts in address order */
	char *p = mmap(NULL, 12 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 1, 12 * ps);
	mprotect(p + 4 * ps, 4 * ps, PROT_NONE);
	mprotect(p + 8 * ps, 4 * ps, PROT_READ);
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, 12 * ps, pe, 8);
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(pe[0].long_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[1].short_term, COH_PIN_NEVER);
	ck_assert_int_eq(pe[2].long_term, COH_PIN_NEVER);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(pe[i].start, (uintptr_t)p + (size_t)i * 4 * ps);
		check_long((void *)pe[i].start, pe[i].length, pe[i].long_term);
	}
	/* cursor: one at a time */
	n = coh_pin_query(ctx, p, 12 * ps, pe, 1);
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(pe[0].length, 4 * ps);
	munmap(p, 12 * ps);
}
END_TEST

START_TEST(merging)
{
	/* two mappings (MADV_DONTFORK splits one), same kind and answers: one extent */
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, 8 * ps);
	ck_assert_int_eq(madvise(p + 4 * ps, 4 * ps, MADV_DONTFORK), 0);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	/* same answers, different kinds: two extents, as coh_pin_query(3) says */
	ck_assert_int_eq(madvise(p + 4 * ps, 4 * ps, MADV_DONTNEED), 0);
	struct coh_pin_extent pe[4];
	ck_assert_int_eq(coh_pin_query(ctx, p, 8 * ps, pe, 4), 2);
	ck_assert_int_eq(pe[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(pe[1].kind, COH_MEM_NOT_POPULATED);
	ck_assert_int_eq(pe[0].long_term, pe[1].long_term);
	ck_assert_int_eq(pe[0].short_term, pe[1].short_term);
	ck_assert_uint_eq(pe[1].start, (uintptr_t)p + 4 * ps);
	munmap(p, 8 * ps);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pin");
	TCase *tc = tcase_create("pin");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, system_populated);
	tcase_add_test(tc, not_populated);
	tcase_add_test(tc, huge_page);
	tcase_add_test(tc, prot_none);
	tcase_add_test(tc, read_only);
	tcase_add_test(tc, shared_anonymous);
	tcase_add_test(tc, shared_file);
	tcase_add_test(tc, unmapped);
	tcase_add_test(tc, mixed_range);
	tcase_add_test(tc, merging);
	suite_add_tcase(s, tc);
	return t_run(s);
}
