/* SPDX-License-Identifier: MIT */
/*
 * The core's fork staging (core/forkstage.c) through the host backend given
 * staging hooks: the child gets what the copy hook wrote, at the same address;
 * the parent's data stays and its range forks again afterwards (DOFORK back);
 * ZERO and UNMAP; a backend's own buffer; and a range whose staging fails (no
 * memory for the copy, the copy or madvise failing) forks as if not staged.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "internal.h"

#define NPAGES 4

static size_t ps;
/* What the test hooks do; set by each test before it forks. */
static int plan_stage, plan_dontfork, copy_err, copy_xor, ncopies;
static void *buffer;
static size_t buffer_need;

static int t_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	(void)rec;
	(void)at_fork;
	plan->stage = plan_stage;
	plan->dontfork = plan_dontfork;
	return 0;
}

/* A faithful copy, or one with every byte inverted: then the child's data
 * shows that it came from the staging, not from the kernel's copy-on-write. */
static int t_copy(const struct coh_alloc_rec *rec, void *dst)
{
	ncopies++;
	if (copy_err)
		return copy_err;
	memcpy(dst, (void *)rec->start, rec->length);
	for (size_t i = 0; copy_xor && i < rec->length; i++)
		((unsigned char *)dst)[i] ^= 0xff;
	return 0;
}

static void *t_buffer(coh_context *ctx, void *priv, size_t need)
{
	(void)ctx;
	(void)priv;
	buffer_need = need;
	return buffer;
}

enum expect { SEES_PATTERN, SEES_INVERTED, SEES_ZERO, SEES_NOTHING };

static bool check(const unsigned char *c, unsigned char seed, enum expect what)
{
	if (what == SEES_NOTHING) {
		unsigned char vec[NPAGES];
		return mincore((void *)c, NPAGES * ps, vec) == -1 && errno == ENOMEM;
	}
	for (size_t i = 0; i < NPAGES * ps; i++) {
		unsigned char want = what == SEES_ZERO ? 0 : (unsigned char)(i * 7 + seed);
		if (what == SEES_INVERTED)
			want ^= 0xff;
		if (c[i] != want)
			return false;
	}
	return true;
}

static unsigned char *pattern_alloc(coh_target *t, unsigned char seed)
{
	void *a;
	ck_assert_int_eq(coh_alloc(t, NPAGES * ps, NULL, &a), 0);
	unsigned char *c = a;
	for (size_t i = 0; i < NPAGES * ps; i++)
		c[i] = (unsigned char)(i * 7 + seed);
	return c;
}

/* Each test: a host context whose backend stages through the hooks above,
 * and one allocation p filled with the pattern of SEED, which every fork
 * leaves intact in the parent. */
#define SEED 1
static coh_context *ctx;
static coh_target *tgt;
static unsigned char *p;

static void setup(void)
{
	ctx = t_ctx();
	ps = (size_t)sysconf(_SC_PAGESIZE);
	tgt = t_node0(ctx);
	struct coh_backend_ops *ops = &tgt->slot->table;
	ops->fork_plan = t_plan;
	ops->fork_copy = t_copy;
	plan_stage = COH_STAGE_COPY;
	plan_dontfork = 1;
	copy_err = copy_xor = ncopies = 0;
	buffer = NULL;
	p = pattern_alloc(tgt, SEED);
}

static void teardown(void)
{
	ck_assert(check(p, SEED, SEES_PATTERN));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}

/* Forks; the child checks c and writes to it (its copy is its own). */
static void child_sees(unsigned char *c, unsigned char seed, enum expect what)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		bool ok = check(c, seed, what);
		if (ok && what != SEES_NOTHING)
			memset(c, 0x5a, NPAGES * ps);
		_exit(ok ? 0 : 1);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child did not see what it should (%d)", (int)what);
}

START_TEST(copy_in_child_parent_intact)
{
	unsigned char *b = pattern_alloc(tgt, 2);
	child_sees(p, SEED, SEES_PATTERN);
	ck_assert_int_eq(ncopies, 2);   /* both ranges, by the hook */
	ck_assert(check(b, 2, SEES_PATTERN));
	/* the child's data is the staged copy, at the same address */
	copy_xor = 1;
	child_sees(p, SEED, SEES_INVERTED);
	child_sees(b, 2, SEES_INVERTED);
	ck_assert(check(b, 2, SEES_PATTERN));
	ck_assert_int_eq(coh_free(ctx, b), 0);
	/* DOFORK again in the parent: not staged, the range goes to a child */
	plan_stage = COH_STAGE_NONE;
	ncopies = 0;
	child_sees(p, SEED, SEES_PATTERN);
	ck_assert_int_eq(ncopies, 0);
	struct coh_fork_extent fe[2];
	ck_assert_int_eq(coh_fork_query(ctx, p, NPAGES * ps, fe, 2, sizeof(fe[0])), 1);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_COPY);   /* the VMA flags: not VM_DONTCOPY */
}
END_TEST

START_TEST(zero_and_unmap)
{
	plan_dontfork = 0;   /* the child gets the range, then the core replaces it */
	plan_stage = COH_STAGE_ZERO;
	child_sees(p, SEED, SEES_ZERO);
	plan_stage = COH_STAGE_UNMAP;
	child_sees(p, SEED, SEES_NOTHING);
	ck_assert_int_eq(ncopies, 0);
}
END_TEST

START_TEST(query_answers_for_staged)
{
	static const struct {
		int stage, view;
	} cases[] = { { COH_STAGE_COPY, COH_CHILD_COPY }, { COH_STAGE_ZERO, COH_CHILD_ZERO },
		      { COH_STAGE_UNMAP, COH_CHILD_ABSENT } };
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		plan_stage = cases[i].stage;
		struct coh_fork_extent fe[2];
		ck_assert_int_eq(coh_fork_query(ctx, p, NPAGES * ps, fe, 2, sizeof(fe[0])), 1);
		ck_assert_int_eq(fe[0].child_view, cases[i].view);
		ck_assert_int_eq(fe[0].parent_keeps, COH_KEEPS_YES);
		ck_assert_ptr_nonnull(fe[0].reason);
	}
	ck_assert_int_eq(ncopies, 0);   /* asking copies nothing */
}
END_TEST

START_TEST(backend_buffer)
{
	buffer = mmap(NULL, 2 * NPAGES * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(buffer, MAP_FAILED);
	tgt->slot->table.fork_buffer = t_buffer;
	copy_xor = 1;
	child_sees(p, SEED, SEES_INVERTED);
	ck_assert_uint_eq(buffer_need, NPAGES * ps);
	/* the copy went to the buffer, which the core leaves to its backend */
	ck_assert(check(buffer, SEED, SEES_INVERTED));
	tgt->slot->table.fork_buffer = NULL;
	ck_assert_int_eq(munmap(buffer, 2 * NPAGES * ps), 0);
}
END_TEST

/* Forks with the nth call of kind c failing with err: the child gets the
 * kernel's copy; 1 when the fault fired (0: the hook is compiled out). */
static bool fails_unstaged(enum coh_fault_call c, int err)
{
	coh_fault_arm(1, err, 1u << c);
	child_sees(p, SEED, SEES_PATTERN);
	int fired = coh_fault_fired();
	coh_fault_disarm();
	ck_assert(fired == -1 || fired == (int)c);
	return fired == (int)c;
}

START_TEST(failed_staging_forks_unstaged)
{
	copy_xor = 1;   /* a staged copy would show inverted */
	/* the copy hook fails */
	copy_err = -EIO;
	child_sees(p, SEED, SEES_PATTERN);
	ck_assert_int_eq(ncopies, 1);
	copy_err = 0;
	/* no memory for the copy: the hook is not called */
	ncopies = 0;
	if (fails_unstaged(COH_FC_MMAP, ENOMEM))
		ck_assert_int_eq(ncopies, 0);
	/* MADV_DONTFORK fails: the copy is dropped */
	fails_unstaged(COH_FC_MADVISE, EIO);
	/* and staging works again */
	child_sees(p, SEED, SEES_INVERTED);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("forkstage");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, copy_in_child_parent_intact);
	tcase_add_test(tc, zero_and_unmap);
	tcase_add_test(tc, query_answers_for_staged);
	tcase_add_test(tc, backend_buffer);
	tcase_add_test(tc, failed_staging_forks_unstaged);
	suite_add_tcase(s, tc);
	return t_run(s);
}
