/* SPDX-License-Identifier: MIT */
/*
 * The seed's fork claims, row by row, on real DEVICE_PRIVATE and
 * DEVICE_COHERENT memory (test_hmm), with the kernel's own fork semantics
 * (policy KERNEL): what the parent's pages are after each scenario.
 *   coherent, child reads          -> parent's pages stay on the device
 *   coherent, child writes first   -> child copies; parent's pages stay
 *   coherent, parent writes first  -> the parent ends up in system memory,
 *                                     unless the kernel carries
 *                                     kernel/patches/6.1 (test_hmm's
 *                                     cow_on_device parameter is Y): then the
 *                                     parent's copy stays on the device
 *   private,  child reads          -> the page comes back to system memory
 * Then the figure of kernel/README.md: 1000 pages, parent and child both
 * write after fork, parent first and child first; how many of each
 * process's pages are still on the device, and the time of a write fault,
 * with cow_on_device Y and N where the parameter exists.
 * Skips (77) where no test_hmm device exists.
 */
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coherent.h"

static int passed, failed;
static coh_context *ctx;
static size_t ps;

static int kind_of(void *p, size_t len)
{
	struct coh_extent e[4];
	int n = coh_query(ctx, p, len, e, 4, sizeof(struct coh_extent));
	return n == 1 ? e[0].kind : -1;   /* -1: mixed */
}

/* test_hmm's marker of the CoW-on-device patch: 1 (Y), 0 (N), -1 (absent:
 * the kernel does not carry it). */
static const char cow_param[] = "/sys/module/test_hmm/parameters/cow_on_device";

static int cow_get(void)
{
	FILE *f = fopen(cow_param, "r");
	if (!f)
		return -1;
	int c = fgetc(f);
	fclose(f);
	return c == 'Y' ? 1 : c == 'N' ? 0 : -1;
}

static int cow_set(int on)
{
	FILE *f = fopen(cow_param, "w");
	if (!f)
		return -1;
	int ok = fputs(on ? "Y" : "N", f) >= 0;
	return fclose(f) == 0 && ok ? 0 : -1;
}

enum scenario { CHILD_READS, CHILD_WRITES_FIRST, PARENT_WRITES_FIRST };

static void run(coh_target *t, enum scenario sc, int want_kind, const char *what)
{
	size_t len = 8 * ps;
	unsigned char *p;
	if (coh_alloc(t, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_KERNEL), (void **)&p)) {
		printf("FAIL %s %s: alloc\n", coh_target_name(t), what);
		failed++;
		return;
	}
	memset(p, 3, len);
	coh_migrate(ctx, p, len, t, 0);   /* device-resident, data 3 */
	int go[2], done[2];
	if (pipe(go) || pipe(done))
		return;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		int bad = 0;
		if (sc == CHILD_WRITES_FIRST)
			memset(p, 4, len);
		else
			for (size_t i = 0; i < len; i++)
				bad |= p[i] != 3;
		if (write(done[1], "d", 1) != 1)
			_exit(2);
		_exit(bad);
	}
	if (sc == PARENT_WRITES_FIRST)
		memset(p, 5, len);
	char c;
	if (write(go[1], "g", 1) != 1 || read(done[0], &c, 1) != 1) {
		kill(pid, SIGKILL);
	}
	int st;
	waitpid(pid, &st, 0);
	int k = kind_of(p, len);
	unsigned char expect = sc == PARENT_WRITES_FIRST ? 5 : 3;
	int data_ok = 1;
	for (size_t i = 0; i < len; i++)
		data_ok &= p[i] == expect;
	if (WIFEXITED(st) && WEXITSTATUS(st) == 0 && data_ok && k == want_kind) {
		passed++;
		printf("PASS %s: %s: the parent's pages are %s\n", coh_target_name(t), what, coh_mem_kind_name(k));
	} else {
		failed++;
		printf("FAIL %s: %s: parent's pages %s (want %s), child status %#x, data %s\n", coh_target_name(t),
		       what, k >= 0 ? coh_mem_kind_name(k) : "mixed", coh_mem_kind_name(want_kind), st,
		       data_ok ? "ok" : "changed");
	}
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
	coh_free(ctx, p);
}

static double now_ns(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

enum { FIG_PAGES = 1000 };

/* Writes v to the first byte of every page (one write fault each): ns per page. */
static double write_pages(unsigned char *p, unsigned char v)
{
	double t0 = now_ns();
	for (size_t i = 0; i < FIG_PAGES; i++)
		p[i * ps] = v;
	return (now_ns() - t0) / FIG_PAGES;
}

/* Pages of [p, p + FIG_PAGES pages) on the device, and whether each holds v
 * in its first byte and the bytes from before the fork (3) after it. */
static int on_device(unsigned char *p, unsigned char v, int *data_ok)
{
	int n = 0;
	*data_ok = 1;
	for (size_t i = 0; i < FIG_PAGES; i++) {
		n += kind_of(p + i * ps, ps) == COH_MEM_DEVICE_COHERENT;
		*data_ok &= p[i * ps] == v && p[i * ps + 1] == 3 && p[i * ps + ps - 1] == 3;
	}
	return n;
}

/*
 * The seed's scenario on 1000 coherent pages: both processes write every
 * page after fork (KERNEL policy), parent first or child first.  cow is the
 * setting of cow_on_device (-1: the kernel lacks it).  Without the method
 * the first writer's pages go to system memory and the second writer keeps
 * the device pages (it is their only user by then); with it both stay.
 */
static void figure(coh_target *t, bool parent_first, int cow)
{
	size_t len = FIG_PAGES * ps;
	unsigned char *p;
	const char *order = parent_first ? "parent writes first" : "child writes first";
	if (coh_alloc(t, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_KERNEL), (void **)&p)) {
		printf("FAIL %s figure %s: alloc\n", coh_target_name(t), order);
		failed++;
		return;
	}
	memset(p, 3, len);
	if (coh_migrate(ctx, p, len, t, 0) || on_device(p, 3, &(int){ 0 }) != FIG_PAGES) {
		printf("FAIL %s figure %s: the pages are not on the device before fork\n", coh_target_name(t), order);
		failed++;
		coh_free(ctx, p);
		return;
	}
	int turn[2], back[2];
	if (pipe(turn) || pipe(back))
		return;
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		if (parent_first && read(turn[0], &c, 1) != 1)
			_exit(2);
		int64_t r[3];
		r[2] = (int64_t)write_pages(p, 4);
		if (!parent_first && write(back[1], "c", 1) != 1)
			_exit(2);
		int ok;
		r[0] = on_device(p, 4, &ok);
		r[1] = ok;
		if (write(back[1], r, sizeof(r)) != (ssize_t)sizeof(r))
			_exit(2);
		_exit(0);
	}
	char c;
	double parent_ns = 0;
	if (parent_first) {
		parent_ns = write_pages(p, 5);
		if (write(turn[1], "p", 1) != 1)
			kill(pid, SIGKILL);
	} else {
		if (read(back[0], &c, 1) != 1)
			kill(pid, SIGKILL);
		parent_ns = write_pages(p, 5);
	}
	int64_t r[3] = { -1, 0, 0 };
	if (read(back[0], r, sizeof(r)) != (ssize_t)sizeof(r))
		r[0] = -1;
	int st;
	waitpid(pid, &st, 0);
	int ok;
	int mine = on_device(p, 5, &ok);
	int want_parent = cow == 1 || !parent_first ? FIG_PAGES : 0;
	int want_child = cow == 1 || parent_first ? FIG_PAGES : 0;
	bool pass = WIFEXITED(st) && WEXITSTATUS(st) == 0 && ok && r[1] && mine == want_parent &&
		    r[0] == want_child;
	printf("%s %s: figure, cow_on_device %s, %s: parent %d/%d pages on the device, child %lld/%d; "
	       "data %s; write fault %.1f us (parent), %.1f us (child) per page\n",
	       pass ? "PASS" : "FAIL", coh_target_name(t), cow < 0 ? "absent" : cow ? "Y" : "N", order, mine,
	       FIG_PAGES, (long long)r[0], FIG_PAGES, ok && r[1] ? "right in both" : "WRONG", parent_ns / 1000,
	       (double)r[2] / 1000);
	pass ? passed++ : failed++;
	close(turn[0]);
	close(turn[1]);
	close(back[0]);
	close(back[1]);
	coh_free(ctx, p);
}

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *priv = coh_target_find(ctx, "hmmtest:dmirror0");
	coh_target *coh = coh_target_find(ctx, "hmmtest:dmirror2");
	if (!priv && !coh) {
		printf("test_seed_fork: no test_hmm device here (skip)\n");
		coh_context_unref(ctx);
		return 77;
	}
	int cow = cow_get();
	printf("test_seed_fork: the kernel %s CoW-on-device method (%s: %s)\n",
	       cow < 0 ? "lacks the" : "carries the", cow_param, cow < 0 ? "absent" : cow ? "Y" : "N");
	if (coh) {
		run(coh, CHILD_READS, COH_MEM_DEVICE_COHERENT, "fork, child reads");
		run(coh, CHILD_WRITES_FIRST, COH_MEM_DEVICE_COHERENT, "fork, child writes first");
		run(coh, PARENT_WRITES_FIRST, cow == 1 ? COH_MEM_DEVICE_COHERENT : COH_MEM_SYSTEM,
		    "fork, parent writes first");
		if (cow < 0) {
			figure(coh, true, -1);
			figure(coh, false, -1);
		} else {
			for (int on = 0; on <= 1; on++) {
				if (cow_set(on)) {
					printf("FAIL %s: cannot set cow_on_device\n", coh_target_name(coh));
					failed++;
					continue;
				}
				figure(coh, true, on);
				figure(coh, false, on);
			}
			cow_set(cow);
		}
	}
	if (priv)
		run(priv, CHILD_READS, COH_MEM_SYSTEM, "fork, child reads");
	coh_context_unref(ctx);
	printf("test_seed_fork: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
