/* SPDX-License-Identifier: MIT */
/*
 * The cxl backend's sub-allocator and migration on a real device-dax device
 * (the VM's /dev/dax0.0): thousands of alloc/free cycles leave nothing behind,
 * free runs coalesce, the device fills up exactly, and migration to host
 * memory and back copies and remaps at the same addresses with the data
 * intact, whole or in chunk-aligned parts, also across fork.
 * Prints "N passed, N failed"; exit 77 without a device-dax target.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent.h"
#include "tally.h"


static int maps_lines(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	int n = 0, c;
	while (f && (c = fgetc(f)) != EOF)
		n += c == '\n';
	if (f)
		fclose(f);
	return n;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 11 + seed);
}

static bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 11 + seed))
			return false;
	return true;
}

static int one_kind(coh_context *ctx, const void *p, size_t len, coh_target **t)
{
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	if (n != 1)
		return -1;
	*t = x[0].target;
	return x[0].kind;
}

int main(void)
{
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl,host", .log_level = -1 };
	if (coh_context_create(&o, &ctx)) {
		printf("FAIL: context\n");
		return 1;
	}
	coh_target *t = NULL, *u, *h = NULL;
	coh_target_foreach(ctx, u) {
		if (!t && coh_target_kind(u) == COH_KIND_DEVICE_DAX)
			t = u;
		if (coh_target_numa_node(u) >= 0 && (!h || coh_target_numa_node(u) == 1))
			h = u;   /* a memory-only node when there is one */
	}
	if (!t || !h) {
		printf("test_cxl_alloc: no device-dax target here (skip)\n");
		return 77;
	}
	uint64_t total = 0, free0 = 0, free1 = 0;
	coh_target_capacity(t, &total, &free0);
	const size_t chunk = 2u << 20;
	size_t nchunks = (size_t)(total / chunk);
	CHECK(free0 == total && nchunks >= 8, "device: %llu bytes, %llu free", (unsigned long long)total,
	      (unsigned long long)free0);

	/* thousands of cycles, all policies, 1-3 chunks: nothing left behind */
	void *p;
	CHECK(coh_alloc(t, chunk, NULL, &p) == 0 && coh_free(ctx, p) == 0, "first alloc/free");
	int lines = maps_lines();
	int bad = 0;
	static const int pols[] = { COH_FORK_COPY, COH_FORK_SHARE, COH_FORK_EXCLUDE, COH_FORK_ZERO, COH_FORK_KERNEL };
	for (int i = 0; i < 5000; i++) {
		size_t sz = (size_t)(i % 3 + 1) * chunk - (i % 2 ? 4096 : 0);
		if (coh_alloc(t, sz, &COH_ALLOC_PROPS(.fork_policy = pols[i % 5]), &p)) {
			bad++;
			continue;
		}
		((unsigned char *)p)[sz - 1] = (unsigned char)i;
		bad += coh_free(ctx, p) != 0;
	}
	coh_target_capacity(t, NULL, &free1);
	CHECK(bad == 0, "%d of 5000 alloc/free cycles failed", bad);
	CHECK(free1 == total, "after 5000 cycles %llu of %llu bytes free", (unsigned long long)free1,
	      (unsigned long long)total);
	CHECK(maps_lines() == lines, "mappings: %d after the cycles, %d before", maps_lines(), lines);
	CHECK(coh_alloc_count(ctx) == 0, "%d allocations left", coh_alloc_count(ctx));

	/* fill the device exactly; freed neighbours coalesce */
	void **all = calloc(nchunks, sizeof(*all));
	size_t got = 0;
	while (got < nchunks && coh_alloc(t, chunk, NULL, &all[got]) == 0)
		got++;
	CHECK(got == nchunks, "device filled with %zu of %zu chunks", got, nchunks);
	CHECK(coh_alloc(t, chunk, NULL, &p) == -ENOMEM, "allocation from a full device not refused");
	unsigned char *lo = all[2] < all[3] ? all[2] : all[3];
	coh_free(ctx, all[2]);
	coh_free(ctx, all[3]);
	all[2] = all[3] = NULL;
	void *two = NULL;
	CHECK(coh_alloc(t, 2 * chunk, NULL, &two) == 0 && two == lo, "two freed neighbours not reused as one run");
	coh_free(ctx, two);
	for (size_t i = 0; i < got; i++)
		if (all[i])
			coh_free(ctx, all[i]);
	free(all);
	coh_target_capacity(t, NULL, &free1);
	CHECK(free1 == total, "after filling and freeing %llu bytes free", (unsigned long long)free1);

	/* migration: copy and remap at the same addresses */
	unsigned char *m;
	size_t len = 4 * chunk;
	CHECK(coh_alloc(t, len, NULL, (void **)&m) == 0, "alloc 4 chunks");
	fill(m, len, 1);
	coh_target *at = NULL;
	int e = coh_migrate(ctx, m, len, h, 0);
	CHECK(e == 0 && same(m, len, 1), "to %s: %s, data %s", coh_target_name(h), coh_strerror(e),
	      same(m, len, 1) ? "intact" : "WRONG");
	int k = one_kind(ctx, m, len, &at);
	CHECK((k == COH_MEM_SYSTEM || k == COH_MEM_SYSTEM_THP) && at == h, "after the migration: %s on %s",
	      k >= 0 ? coh_mem_kind_name(k) : "several extents", at ? coh_target_name(at) : "-");
	/* the chunks stay reserved for the way back */
	coh_target_capacity(t, NULL, &free1);
	CHECK(free1 == total - len, "capacity while on the host: %llu", (unsigned long long)free1);
	/* fork COPY of host memory: the kernel's copy-on-write */
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0)
		_exit(same(m, len, 1) ? 0 : 1);
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child of a migrated COPY range saw wrong data");
	fill(m, len, 2);   /* written on the host, then back */
	e = coh_migrate(ctx, m, len, t, 0);
	k = one_kind(ctx, m, len, &at);
	CHECK(e == 0 && same(m, len, 2) && k == COH_MEM_DEVICE_DAX && at == t, "back to the device: %s, %s",
	      coh_strerror(e), k >= 0 ? coh_mem_kind_name(k) : "several extents");
	/* one chunk out, in the middle */
	e = coh_migrate(ctx, m + chunk, chunk, h, 0);
	struct coh_extent x[8];
	int nx = coh_query(ctx, m, len, x, 8, sizeof(struct coh_extent));
	CHECK(e == 0 && nx == 3 && x[1].start == (uintptr_t)(m + chunk) && x[1].length == chunk &&
		      x[0].kind == COH_MEM_DEVICE_DAX && x[2].kind == COH_MEM_DEVICE_DAX,
	      "one chunk to the host: %s, %d extents", coh_strerror(e), nx);
	CHECK(same(m, len, 2), "data after a partial migration");
	/* fork COPY across a mixed range: device chunks copied out, host chunk copy-on-write */
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		if (!same(m, len, 2))
			_exit(1);
		memset(m, 0, len);   /* private: the parent keeps its data */
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0 && same(m, len, 2), "fork COPY of a mixed range (status %#x)", st);
	/* the first chunk on the host too: the fork hooks still copy the device chunks */
	e = coh_migrate(ctx, m, chunk, h, 0);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(same(m, len, 2) ? 0 : 1);
	waitpid(pid, &st, 0);
	CHECK(e == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork COPY, first chunk on the host (status %#x)", st);
	/* ZERO across the mixed range: zeroes everywhere in the child */
	e = coh_fork_policy_set(ctx, m, len, COH_FORK_ZERO);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		for (size_t i = 0; i < len; i += 4096)
			if (m[i])
				_exit(1);
		_exit(0);
	}
	waitpid(pid, &st, 0);
	CHECK(e == 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0 && same(m, len, 2),
	      "fork ZERO of a mixed range (%s, status %#x)", coh_strerror(e), st);
	coh_fork_policy_set(ctx, m, len, COH_FORK_COPY);
	/* bad input changes nothing */
	CHECK(coh_migrate(ctx, m + 4096, chunk, h, 0) == -EINVAL, "a migration off the device alignment accepted");
	CHECK(same(m, len, 2), "data after a refused migration");
	/* freed while partly on the host: the window gets the device back */
	CHECK(coh_free(ctx, m) == 0, "free of a partly migrated allocation");
	coh_target_capacity(t, NULL, &free1);
	CHECK(free1 == total, "capacity after that free: %llu", (unsigned long long)free1);
	CHECK(coh_alloc(t, len, NULL, (void **)&m) == 0, "alloc after");
	fill(m, len, 3);
	k = one_kind(ctx, m, len, &at);
	CHECK(same(m, len, 3) && k == COH_MEM_DEVICE_DAX, "the window is device-dax again (%s)",
	      k >= 0 ? coh_mem_kind_name(k) : "several extents");
	coh_free(ctx, m);
	if (maps_lines() != lines) {
		FILE *mf = fopen("/proc/self/maps", "r");
		for (int c; mf && (c = fgetc(mf)) != EOF;)
			fputc(c, stderr);
		if (mf)
			fclose(mf);
	}
	CHECK(maps_lines() == lines, "mappings at the end: %d, %d before (the maps above)", maps_lines(), lines);
	coh_context_unref(ctx);
	printf("test_cxl_alloc (%s): %d passed, %d failed\n", coh_target_name(t), passed, failed);
	return failed ? 1 : 0;
}
