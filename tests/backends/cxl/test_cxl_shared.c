/* SPDX-License-Identifier: MIT */
/*
 * Chunk ownership across unrelated processes on a real device-dax device (the
 * VM's /dev/dax0.0): this program runs itself again through posix_spawn (no
 * fork: each holder is a process of its own with a context of its own), and
 * the holders and this process allocate distinct chunks of the device (their
 * device offsets, from /proc/self/maps, do not overlap, and each one's data
 * stays its own); a holder killed with SIGKILL while holding chunks loses
 * them to the next process that needs them, reaped or still a zombie; one
 * that exits normally gives them back.
 * Prints "N passed, N failed"; exit 77 without a device-dax target.
 */
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent.h"
#include "seedfill.h"
#include "tally.h"

extern char **environ;

#define CHUNK (2u << 20)

static coh_context *ctx;

static coh_target *dax_target(void)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .log_level = -1 };
	if (coh_context_create(&o, &ctx))
		return NULL;
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (coh_target_kind(u) == COH_KIND_DEVICE_DAX)
			return u;
	return NULL;
}

/* The device offset of p: its mapping of /dev/dax* in /proc/self/maps; -1 if none. */
static long long dev_offset(const void *p)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	long long off = -1;
	while (f && off < 0 && fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;
		unsigned long long pg;
		if (sscanf(line, "%lx-%lx %*s %llx", &lo, &hi, &pg) == 3 && strstr(line, "/dev/dax") &&
		    (uintptr_t)p >= lo && (uintptr_t)p < hi)
			off = (long long)(pg + ((uintptr_t)p - lo));
	}
	if (f)
		fclose(f);
	return off;
}


/* A holder: "hold N SEED": one allocation of N chunks (N 0: single chunks
 * until the device is full), filled; says "HELD count offset" (offset of the
 * one allocation, -1 for single chunks); then each line "check" on stdin is
 * answered "OK" or "BAD"; at the end of stdin it frees everything and exits. */
static int hold(int n, unsigned seed)
{
	coh_target *t = dax_target();
	if (!t)
		return 77;
	static void *mine[4096];
	size_t len[4096];
	int k = 0;
	long long off = -1;
	if (n > 0) {
		len[0] = (size_t)n * CHUNK;
		if (coh_alloc(t, len[0], NULL, &mine[0]))
			return 2;
		off = dev_offset(mine[0]);
		k = 1;
	} else {
		while (k < 4096 && coh_alloc(t, CHUNK, NULL, &mine[k]) == 0)
			len[k++] = CHUNK;
	}
	for (int i = 0; i < k; i++)
		fill(mine[i], len[i], seed);
	printf("HELD %d %lld\n", n > 0 ? n : k, off);
	fflush(stdout);
	char line[32];
	while (fgets(line, sizeof(line), stdin)) {
		bool ok = true;
		for (int i = 0; i < k; i++)
			ok &= same(mine[i], len[i], seed);
		printf("%s\n", ok ? "OK" : "BAD");
		fflush(stdout);
	}
	for (int i = 0; i < k; i++)
		coh_free(ctx, mine[i]);
	coh_context_unref(ctx);
	return 0;
}

struct holder {
	pid_t pid;
	FILE *in, *out;
	int count;
	long long off;
	bool live;
};

static bool spawn(struct holder *h, int n, unsigned seed)
{
	int to[2], from[2];
	if (pipe(to) || pipe(from))
		return false;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to[0], 0);
	posix_spawn_file_actions_adddup2(&fa, from[1], 1);
	posix_spawn_file_actions_addclose(&fa, to[1]);
	posix_spawn_file_actions_addclose(&fa, from[0]);
	char self[256], ns[16], ss[16];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l <= 0)
		return false;
	self[l] = '\0';
	snprintf(ns, sizeof(ns), "%d", n);
	snprintf(ss, sizeof(ss), "%u", seed);
	char *argv[] = { self, "hold", ns, ss, NULL };
	int e = posix_spawn(&h->pid, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	h->live = !e;
	close(to[0]);
	close(from[1]);
	h->in = fdopen(to[1], "w");
	h->out = fdopen(from[0], "r");
	if (e || !h->in || !h->out)
		return false;
	return fscanf(h->out, " HELD %d %lld", &h->count, &h->off) == 2;
}

static bool check(struct holder *h)
{
	char line[16] = "";
	fprintf(h->in, "check\n");
	fflush(h->in);
	return fscanf(h->out, " %15s", line) == 1 && !strcmp(line, "OK");
}

static void end(struct holder *h, bool killed)
{
	int st;
	if (h->in)
		fclose(h->in);
	if (h->out)
		fclose(h->out);
	h->in = h->out = NULL;
	if (h->live && !killed)
		waitpid(h->pid, &st, 0);
	h->live = false;
}

static bool apart(long long a, int na, long long b, int nb)
{
	return a >= 0 && b >= 0 && (a + (long long)na * CHUNK <= b || b + (long long)nb * CHUNK <= a);
}

static uint64_t free_bytes(coh_target *t)
{
	uint64_t f = 0;
	coh_target_capacity(t, NULL, &f);
	return f;
}

int main(int argc, char **argv)
{
	if (argc == 4 && !strcmp(argv[1], "hold"))
		return hold(atoi(argv[2]), (unsigned)atoi(argv[3]));
	signal(SIGPIPE, SIG_IGN);
	coh_target *t = dax_target();
	if (!t) {
		printf("test_cxl_shared: no device-dax target here (skip)\n");
		return 77;
	}
	uint64_t total = 0;
	coh_target_capacity(t, &total, NULL);
	CHECK(free_bytes(t) == total && total >= 32ull * CHUNK, "device: %llu bytes, %llu free", (unsigned long long)total,
	      (unsigned long long)free_bytes(t));

	/* two unrelated processes and this one: distinct chunks, each its own data */
	struct holder a = { 0 }, b = { 0 }, d = { 0 };
	bool ok = spawn(&a, 3, 1) && spawn(&b, 5, 2);
	CHECK(ok, "two holders started (%d, %d chunks)", a.count, b.count);
	if (!ok)
		goto out;
	unsigned char *m = NULL;
	CHECK(coh_alloc(t, 2 * CHUNK, NULL, (void **)&m) == 0, "an allocation beside the holders");
	if (!m)
		goto out;
	fill(m, 2 * CHUNK, 3);
	long long mo = dev_offset(m);
	CHECK(apart(a.off, 3, b.off, 5) && apart(a.off, 3, mo, 2) && apart(b.off, 5, mo, 2),
	      "device offsets overlap: %lld (3 chunks), %lld (5), %lld (2, this process)", a.off, b.off, mo);
	CHECK(check(&a) && check(&b) && same(m, 2 * CHUNK, 3), "a process reads another's data");
	CHECK(free_bytes(t) == total - 10ull * CHUNK, "free bytes with 10 chunks held by three processes: %llu of %llu",
	      (unsigned long long)free_bytes(t), (unsigned long long)total);

	/* killed while holding chunks: they come back */
	kill(a.pid, SIGKILL);
	waitpid(a.pid, NULL, 0);
	end(&a, true);
	CHECK(free_bytes(t) == total - 7ull * CHUNK, "free bytes after a holder was killed: %llu of %llu",
	      (unsigned long long)free_bytes(t), (unsigned long long)total);
	/* a holder of everything left: a live holder keeps its chunks */
	ok = spawn(&d, 0, 4);
	CHECK(ok && d.count == (int)(total / CHUNK) - 7, "a holder of the rest took %d chunks, %d free",
	      d.count, (int)(total / CHUNK) - 7);
	void *q = NULL;
	CHECK(coh_alloc(t, CHUNK, NULL, &q) == -ENOMEM, "an allocation on a full device");
	/* killed, not reaped yet (a zombie): its chunks serve this process */
	kill(d.pid, SIGKILL);
	siginfo_t si;
	waitid(P_PID, (id_t)d.pid, &si, WEXITED | WNOWAIT);
	int e = coh_alloc(t, 4 * CHUNK, NULL, &q);
	CHECK(e == 0, "an allocation after the full device's holder was killed: %s", coh_strerror(e));
	waitpid(d.pid, NULL, 0);
	end(&d, true);
	CHECK(check(&b) && same(m, 2 * CHUNK, 3), "data after the reclaim");
	if (q)
		coh_free(ctx, q);
	coh_free(ctx, m);
	/* an orderly exit gives its chunks back */
	end(&b, false);
	CHECK(free_bytes(t) == total, "free bytes at the end: %llu of %llu", (unsigned long long)free_bytes(t),
	      (unsigned long long)total);
out:
	for (struct holder *h = &a; h; h = h == &a ? &b : h == &b ? &d : NULL)
		if (h->live) {
			kill(h->pid, SIGKILL);
			waitpid(h->pid, NULL, 0);
			end(h, true);
		}
	printf("test_cxl_shared (%s): %d passed, %d failed\n", coh_target_name(t), passed, failed);
	coh_context_unref(ctx);
	return failed ? 1 : 0;
}
