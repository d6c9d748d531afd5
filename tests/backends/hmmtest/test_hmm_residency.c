/* SPDX-License-Identifier: MIT */
/*
 * The generic residency query (pagemap, move_pages) checked page by page
 * against the authority: the test_hmm driver's own snapshot.  For each
 * emulated device, a buffer is migrated in, then some pages are touched by
 * the CPU (device-private pages fault back, coherent ones stay) and some are
 * moved to system memory; every page's kind from coh_query must agree with
 * the snapshot.  Skips (77) where no /dev/hmm_dmirror device exists.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../backends/hmmtest/hmm_uapi.h"
#include "coherent.h"

static int passed, failed;

static int kind_at(coh_context *ctx, const char *p)
{
	struct coh_extent e[2];
	int n = coh_query(ctx, p, 1, e, 2, sizeof(struct coh_extent));
	return n == 1 ? e[0].kind : -1;
}

static int expected_kind(unsigned char snap)
{
	switch (snap & 0xf0) {
	case HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL:
	case HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE:
		return COH_MEM_DEVICE_PRIVATE;
	case HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL:
	case HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE:
		return COH_MEM_DEVICE_COHERENT;
	default:
		return snap == HMM_DMIRROR_PROT_NONE || (snap & HMM_DMIRROR_PROT_ZERO) ? COH_MEM_NOT_POPULATED
										     : COH_MEM_SYSTEM;
	}
}

static void one_device(coh_context *ctx, coh_target *t, int minor)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), np = 32, len = np * ps;
	char *p;
	int e = coh_alloc(t, len, NULL, (void **)&p);
	if (e) {
		printf("FAIL %s: alloc: %s\n", coh_target_name(t), coh_strerror(e));
		failed++;
		return;
	}
	memset(p, 5, len);   /* private: faults everything back; coherent: stays */
	coh_migrate(ctx, p, len, t, 0);
	/* mixed states: pages 8-15 touched by the CPU, 16-23 moved to node 0 */
	for (size_t i = 8; i < 16; i++)
		p[i * ps] = 6;
	coh_target *host = coh_target_by_node(ctx, 0);
	if (host)
		coh_migrate(ctx, p + 16 * ps, 8 * ps, host, 0);
	char dev[32];
	snprintf(dev, sizeof(dev), "/dev/hmm_dmirror%d", minor);
	int fd = open(dev, O_RDWR | O_CLOEXEC);   /* kept open until exit: closing evicts */
	unsigned char snap[32];
	struct hmm_dmirror_cmd cmd = { .addr = (uintptr_t)p, .ptr = (uintptr_t)snap, .npages = np };
	if (fd < 0 || ioctl(fd, HMM_DMIRROR_SNAPSHOT, &cmd) < 0) {
		printf("FAIL %s: snapshot: %s\n", coh_target_name(t), strerror(errno));
		failed++;
		return;
	}
	int agree = 0;
	for (size_t i = 0; i < np; i++) {
		int want = expected_kind(snap[i]), got = kind_at(ctx, p + i * ps);
		if (want == got) {
			agree++;
		} else {
			printf("  %s page %zu: snapshot %#x (%s), query %s\n", coh_target_name(t), i, snap[i],
			       coh_mem_kind_name(want), coh_mem_kind_name(got));
		}
	}
	if (agree == (int)np) {
		passed++;
		printf("PASS %s: query agrees with the driver's snapshot on all %zu pages\n", coh_target_name(t), np);
	} else {
		failed++;
		printf("FAIL %s: query agrees on %d of %zu pages\n", coh_target_name(t), agree, np);
	}
	for (size_t i = 0; i < len; i++)
		if (p[i] != (i / ps >= 8 && i / ps < 16 && i % ps == 0 ? 6 : 5)) {
			printf("FAIL %s: data changed at %zu\n", coh_target_name(t), i);
			failed++;
			break;
		}
	coh_free(ctx, p);
}

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	int seen = 0;
	for (int minor = 0; minor < 4; minor++) {
		char name[32];
		snprintf(name, sizeof(name), "hmmtest:dmirror%d", minor);
		coh_target *t = coh_target_find(ctx, name);
		if (!t)
			continue;
		seen++;
		one_device(ctx, t, minor);
	}
	coh_context_unref(ctx);
	if (!seen) {
		printf("test_hmm_residency: no test_hmm device here (skip)\n");
		return 77;
	}
	printf("test_hmm_residency: %d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
