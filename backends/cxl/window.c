/* SPDX-License-Identifier: MIT */
/* cxl backend: the device window (mapped once, at the first allocation) and
 * its chunk map. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cxl.h"

/* Opens the device (once) and this process's view of its ownership map;
 * create: make the map file when there is none (else -ENOENT).  The caller
 * holds ct->lock. */
int cxl_attach(coh_target *t, struct cxl_target *ct, bool create)
{
	coh_context *ctx = coh_target_context(t);
	if (ct->fd < 0) {
		char path[48];
		snprintf(path, sizeof(path), "/dev/%s", ct->dev);
		int fd = coh_fs_open(ctx, path, O_RDWR);
		if (fd < 0)
			return fd;
		ct->fd = fd;
	}
	/* a forked child's copy shares the parent's open file description, and
	 * so its flock: the child opens its own, with its own owner word */
	if (ct->map.nchunks && ct->map.pid != getpid() && cxl_map_close(&ct->map))
		coh_warn(ctx, "cxl: %s: the parent's chunk map left mapped in this child", ct->dev);
	if (ct->map.nchunks)
		return 0;
	struct stat st;
	if (fstat(ct->fd, &st))
		return -errno;
	return cxl_map_open(ctx, &ct->map, cxl_map_dir(ctx), &st, ct->size, ct->align, ct->nchunks, create);
}

/* Opens the device and its map and maps its window (first allocation); the
 * caller holds ct->lock. */
int cxl_window(coh_target *t, struct cxl_target *ct)
{
	if (ct->base)
		return ct->pid == getpid() ? 0 : -ECHILD;   /* the window belongs to the process that made it */
	int e = cxl_attach(t, ct, true);
	if (e)
		return e;
	size_t a = ct->align, len = ct->nchunks * a;
	/* an aligned virtual range first: device-dax faults need VA aligned like the offset */
	void *res, *p;
	e = coh_sys_mmap_aligned(len, a, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (e)
		return e;
	e = coh_sys_mmap(res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd, 0, &p);
	if (!e)
		e = coh_sys_madvise(p, len, MADV_DONTFORK);   /* only allocations that share go to a child */
	if (e) {
		coh_sys_munmap(res, len);
		return e;
	}
	ct->pid = getpid();
	ct->base = p;
	return 0;
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
