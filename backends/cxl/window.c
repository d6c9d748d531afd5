/* SPDX-License-Identifier: MIT */
/* cxl backend: the device window (mapped once, at the first allocation) and
 * its chunk map. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cxl.h"

/* Opens the device and maps its window (first allocation); the caller holds ct->lock. */
int cxl_window(coh_target *t, struct cxl_target *ct)
{
	if (ct->base)
		return ct->pid == getpid() ? 0 : -ECHILD;   /* the window belongs to the process that made it */
	char path[48];
	snprintf(path, sizeof(path), "/dev/%s", ct->dev);
	int fd = coh_fs_open(coh_target_context(t), path, O_RDWR);
	if (fd < 0)
		return fd;
	size_t a = ct->align, len = ct->nchunks * a;
	/* an aligned virtual range first: device-dax faults need VA aligned like the offset */
	void *res, *p;
	int e = coh_sys_mmap_aligned(len, a, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (e) {
		close(fd);
		return e;
	}
	e = coh_sys_mmap(res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0, &p);
	if (!e)
		e = coh_sys_madvise(p, len, MADV_DONTFORK);   /* only allocations that share go to a child */
	if (e) {
		coh_sys_munmap(res, len);
		close(fd);
		return e;
	}
	ct->fd = fd;
	ct->pid = getpid();
	ct->base = p;
	return 0;
}

/* First fit of n free chunks from the hint, wrapping once; -1 when none. */
long cxl_find_run(struct cxl_target *ct, size_t n)
{
	for (int pass = 0; pass < 2; pass++) {
		size_t from = pass ? 0 : ct->hint, to = pass ? ct->hint : ct->nchunks;
		size_t run = 0;
		for (size_t i = from; i < to; i++) {
			run = ct->state[i] == CH_FREE ? run + 1 : 0;
			if (run == n)
				return (long)(i + 1 - n);
		}
	}
	return -1;
}

bool cxl_policy_forks(int policy)
{
	return policy == COH_FORK_SHARE || policy == COH_FORK_KERNEL;
}

/* The allocation's first chunk, or -1 (ct->lock held). */
long cxl_first_chunk(const struct cxl_target *ct, const void *ptr)
{
	if (!ct->base || (uint8_t *)ptr < ct->base)
		return -1;
	size_t off = (size_t)((uint8_t *)ptr - ct->base);
	if (off % ct->align || off / ct->align >= ct->nchunks)
		return -1;
	long c = (long)(off / ct->align);
	return ct->state[c] != CH_FREE && ct->run[c] ? c : -1;
}

/* Maps the device back over chunks [c, c+n) of the window (their data is
 * already in the device), DONTFORK like the rest of the window unless forks. */
int cxl_remap_device(struct cxl_target *ct, size_t c, size_t n, bool forks)
{
	void *p;
	size_t a = ct->align;
	int e = coh_sys_mmap(ct->base + c * a, n * a, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd,
			     (off_t)(c * a), &p);
	if (!e && !forks)
		e = coh_sys_madvise(p, n * a, MADV_DONTFORK);
	return e;
}
