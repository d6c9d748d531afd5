/* SPDX-License-Identifier: MIT */
/*
 * The seed's fork claims, row by row, on real DEVICE_PRIVATE and
 * DEVICE_COHERENT memory (test_hmm), with the kernel's own fork semantics
 * (policy KERNEL): what the parent's pages are after each scenario.
 *   coherent, child reads          -> parent's pages stay on the device
 *   coherent, child writes first   -> child copies; parent's pages stay
 *   coherent, parent writes first  -> the parent ends up in system memory
 *   private,  child reads          -> the page comes back to system memory
 * Skips (77) where no test_hmm device exists.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
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
	if (coh) {
		run(coh, CHILD_READS, COH_MEM_DEVICE_COHERENT, "fork, child reads");
		run(coh, CHILD_WRITES_FIRST, COH_MEM_DEVICE_COHERENT, "fork, child writes first");
		run(coh, PARENT_WRITES_FIRST, COH_MEM_SYSTEM, "fork, parent writes first");
	}
	if (priv)
		run(priv, CHILD_READS, COH_MEM_SYSTEM, "fork, child reads");
	coh_context_unref(ctx);
	printf("test_seed_fork: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
