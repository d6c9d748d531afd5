/* SPDX-License-Identifier: MIT */
/*
 * The seed's fork claims, row by row, on real DEVICE_PRIVATE and
 * DEVICE_COHERENT memory (test_hmm), with the kernel's own fork semantics
 * (policy KERNEL): what the parent's pages are after each scenario.
 *   coherent, child reads          -> parent's pages stay on the device
 *   coherent, child writes first   -> child copies; parent's pages stay
 *   coherent, parent writes first  -> the parent ends up in system memory,
 *                                     unless the kernel carries
 *                                     kernel/patches (test_hmm's
 *                                     cow_on_device parameter is Y): then the
 *                                     parent's copy stays on the device
 *   private,  child reads          -> the page comes back to system memory
 *   coherent, the device reads     -> the parent's pages stay shared, on
 *                                     the device (no write fault)
 *   coherent, the device writes    -> the parent's pages break the sharing:
 *                                     system memory, or the device with the
 *                                     patches
 * Then the figure of kernel/README.md: 1000 pages, parent and child both
 * write after fork, parent first and child first; how many of each
 * process's pages are still on the device, and the time of a write fault,
 * with cow_on_device Y and N where the parameter exists; then the copying
 * fault's cost, N against Y, as medians of interleaved rounds.
 * Skips (77) where no test_hmm device exists.
 */
#include <errno.h>
#include <fcntl.h>
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

/* The child: once go_fd has a byte, writes 4 over [p, p + len) or checks
 * that it still holds 3, says so on done_fd (when >= 0) and exits 0 when
 * its data was right. */
static pid_t fork_child(unsigned char *p, size_t len, int go_fd, int done_fd, bool writes)
{
	fflush(stdout);
	pid_t pid = fork();
	if (pid != 0)
		return pid;
	char c;
	if (read(go_fd, &c, 1) != 1)
		_exit(2);
	int bad = 0;
	if (writes)
		memset(p, 4, len);
	else
		for (size_t i = 0; i < len; i++)
			bad |= p[i] != 3;
	if (done_fd >= 0 && write(done_fd, "d", 1) != 1)
		_exit(2);
	_exit(bad);
}

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
	pid_t pid = fork_child(p, len, go[0], done[1], sc == CHILD_WRITES_FIRST);
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

/* Pages of [p, p + n pages) that pagemap shows exclusively mapped (bit 56):
 * a page still shared with the child after fork is not. */
static int exclusive_pages(const unsigned char *p, size_t n)
{
	uint64_t e[64];
	int fd = open("/proc/self/pagemap", O_RDONLY);
	if (fd < 0 || n > 64 || pread(fd, e, n * 8, (off_t)((uintptr_t)p / ps) * 8) != (ssize_t)(n * 8)) {
		if (fd >= 0)
			close(fd);
		return -1;
	}
	close(fd);
	int x = 0;
	for (size_t i = 0; i < n; i++)
		x += (e[i] >> 56) & 1;
	return x;
}

/*
 * The device itself touches the parent's pages after fork, the child alive
 * and sharing them (test_hmm's HMM_DMIRROR_READ / WRITE through
 * coh_device_access).  A device read asks hmm_range_fault() for read access
 * only: the pages stay shared (not exclusive) and on the device.  A device
 * write breaks the sharing like a CPU write: the parent's pages become
 * exclusive, on the device with cow_on_device Y, in system memory without.
 * The child's data stays as it was in both cases.
 */
static void device_after_fork(coh_target *t, bool device_writes, int cow)
{
	enum { N = 16 };
	size_t len = N * ps;
	unsigned char *p;
	const char *what = device_writes ? "fork, the device writes the parent's pages"
					 : "fork, the device reads the parent's pages";
	if (coh_alloc(t, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_KERNEL), (void **)&p)) {
		printf("FAIL %s %s: alloc\n", coh_target_name(t), what);
		failed++;
		return;
	}
	memset(p, 3, len);
	int go[2];
	if (coh_migrate(ctx, p, len, t, 0) || pipe(go)) {
		printf("FAIL %s %s: migrate or pipe\n", coh_target_name(t), what);
		failed++;
		coh_free(ctx, p);
		return;
	}
	pid_t pid = fork_child(p, len, go[0], -1, false);
	uint64_t sums[N * 16];   /* one per 4 KiB, for pages up to 64 KiB */
	size_t nsums = len / COH_SUM_BLOCK;
	int e = nsums <= sizeof(sums) / sizeof(sums[0])
			? coh_device_access(ctx, t, p, len, device_writes ? COH_DEVICE_FILL : COH_DEVICE_SUM, 0x5eed,
					    sums, nsums)
			: -E2BIG;
	int excl = exclusive_pages(p, N);
	int k = kind_of(p, len);
	bool data_ok = true;
	if (device_writes) {
		for (size_t off = 0; off < len; off += 8)
			data_ok &= *(uint64_t *)(p + off) == coh_pattern_word(0x5eed, off);
	} else {
		unsigned char blk[COH_SUM_BLOCK];
		memset(blk, 3, sizeof(blk));
		for (size_t i = 0; i < nsums && e == 0; i++)
			data_ok &= sums[i] == coh_block_sum(blk);
	}
	if (write(go[1], "g", 1) != 1)
		kill(pid, SIGKILL);
	int st;
	waitpid(pid, &st, 0);
	int want_kind = device_writes && cow != 1 ? COH_MEM_SYSTEM : COH_MEM_DEVICE_COHERENT;
	int want_excl = device_writes ? N : 0;
	if (e == -EOPNOTSUPP) {
		printf("SKIP %s: %s: no device access on this target\n", coh_target_name(t), what);
	} else if (e == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && data_ok && k == want_kind && excl == want_excl) {
		passed++;
		printf("PASS %s: %s: the parent's pages are %s, %d of %d exclusive (cow_on_device %s); "
		       "the child's data unchanged\n",
		       coh_target_name(t), what, coh_mem_kind_name(k), excl, N, cow < 0 ? "absent" : cow ? "Y" : "N");
	} else {
		failed++;
		printf("FAIL %s: %s: device access %s, parent's pages %s (want %s), %d of %d exclusive (want %d), "
		       "data %s, child status %#x\n",
		       coh_target_name(t), what, coh_strerror(e), k >= 0 ? coh_mem_kind_name(k) : "mixed",
		       coh_mem_kind_name(want_kind), excl, N, want_excl, data_ok ? "ok" : "WRONG", st);
	}
	close(go[0]);
	close(go[1]);
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
static double figure(coh_target *t, bool parent_first, int cow, bool quiet)
{
	size_t len = FIG_PAGES * ps;
	unsigned char *p;
	const char *order = parent_first ? "parent writes first" : "child writes first";
	if (coh_alloc(t, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_KERNEL), (void **)&p)) {
		printf("FAIL %s figure %s: alloc\n", coh_target_name(t), order);
		failed++;
		return -1;
	}
	memset(p, 3, len);
	if (coh_migrate(ctx, p, len, t, 0) || on_device(p, 3, &(int){ 0 }) != FIG_PAGES) {
		printf("FAIL %s figure %s: the pages are not on the device before fork\n", coh_target_name(t), order);
		failed++;
		coh_free(ctx, p);
		return -1;
	}
	int turn[2], back[2];
	if (pipe(turn) || pipe(back)) {
		printf("FAIL %s figure %s: pipe\n", coh_target_name(t), order);
		failed++;
		coh_free(ctx, p);
		return -1;
	}
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
	if (!quiet || !pass)
		printf("%s %s: figure, cow_on_device %s, %s: parent %d/%d pages on the device, child %lld/%d; "
		       "data %s; write fault %.1f us (parent), %.1f us (child) per page\n",
		       pass ? "PASS" : "FAIL", coh_target_name(t), cow < 0 ? "absent" : cow ? "Y" : "N", order, mine,
		       FIG_PAGES, (long long)r[0], FIG_PAGES, ok && r[1] ? "right in both" : "WRONG", parent_ns / 1000,
		       (double)r[2] / 1000);
	if (!pass)
		failed++;
	else if (!quiet)
		passed++;
	close(turn[0]);
	close(turn[1]);
	close(back[0]);
	close(back[1]);
	coh_free(ctx, p);
	/* the first writer's fault is the one that copies */
	return pass ? (parent_first ? parent_ns : (double)r[2]) : -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/*
 * The cost of the copying write fault, N against Y: one TCG run of each is
 * noise (translation, the device pool growing on the first copies), so a
 * warm-up round of every case, then FAULT_ROUNDS rounds with N and Y
 * interleaved; the medians and their ratio.
 */
enum { FAULT_ROUNDS = 7 };

static void fault_cost(coh_target *t, int cow)
{
	double v[2][2][FAULT_ROUNDS];   /* [parent first][cow_on_device][round] */
	for (int r = -1; r < FAULT_ROUNDS; r++)
		for (int pf = 0; pf < 2; pf++)
			for (int on = 0; on <= 1; on++) {
				if (cow_set(on)) {
					printf("FAIL %s: cannot set cow_on_device\n", coh_target_name(t));
					failed++;
					cow_set(cow);
					return;
				}
				double ns = figure(t, pf, on, true);
				if (ns < 0) {
					cow_set(cow);
					return;
				}
				if (r >= 0)
					v[pf][on][r] = ns;
			}
	cow_set(cow);
	for (int pf = 1; pf >= 0; pf--) {
		qsort(v[pf][0], FAULT_ROUNDS, sizeof(double), cmp_double);
		qsort(v[pf][1], FAULT_ROUNDS, sizeof(double), cmp_double);
		double n = v[pf][0][FAULT_ROUNDS / 2], y = v[pf][1][FAULT_ROUNDS / 2];
		bool pass = n > 0 && y > 0;
		printf("%s %s: figure, the copying write fault (%s writes first), median of %d rounds: "
		       "N %.1f us (%.1f-%.1f), Y %.1f us (%.1f-%.1f) per page, Y/N %.2f\n",
		       pass ? "PASS" : "FAIL", coh_target_name(t), pf ? "parent" : "child", FAULT_ROUNDS, n / 1000,
		       v[pf][0][0] / 1000, v[pf][0][FAULT_ROUNDS - 1] / 1000, y / 1000, v[pf][1][0] / 1000,
		       v[pf][1][FAULT_ROUNDS - 1] / 1000, pass ? y / n : 0);
		pass ? passed++ : failed++;
	}
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
		device_after_fork(coh, false, cow);
		device_after_fork(coh, true, cow);
		if (cow >= 0 && !cow_set(!cow)) {   /* the other setting too */
			device_after_fork(coh, true, !cow);
			cow_set(cow);
		}
		if (cow < 0) {
			figure(coh, true, -1, false);
			figure(coh, false, -1, false);
		} else {
			for (int on = 0; on <= 1; on++) {
				if (cow_set(on)) {
					printf("FAIL %s: cannot set cow_on_device\n", coh_target_name(coh));
					failed++;
					continue;
				}
				figure(coh, true, on, false);
				figure(coh, false, on, false);
			}
			cow_set(cow);
			fault_cost(coh, cow);
		}
	}
	if (priv)
		run(priv, CHILD_READS, COH_MEM_SYSTEM, "fork, child reads");
	coh_context_unref(ctx);
	printf("test_seed_fork: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
