/* SPDX-License-Identifier: MIT */
/* cxl backend: migration by copy and remap at the same addresses. */
#include <errno.h>
#include <numaif.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cxl.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---------------- migration: copy and remap ---------------- */

/* The kernel's fork controls for host memory that replaced chunks of an
 * allocation with this policy (set from scratch: the policy may change). */
int cxl_host_fork_controls(void *p, size_t len, int policy, bool shared)
{
	int e = coh_sys_madvise(p, len, MADV_DOFORK);
	if (!e && !shared)
		e = coh_sys_madvise(p, len, MADV_KEEPONFORK);
	if (!e && policy == COH_FORK_EXCLUDE)
		e = coh_sys_madvise(p, len, MADV_DONTFORK);
	if (!e && policy == COH_FORK_ZERO && !shared)
		e = coh_sys_madvise(p, len, MADV_WIPEONFORK);
	return e;   /* COPY: copy-on-write; SHARE, KERNEL: as mapped */
}

/* A second mapping of chunks [c, c+n) of the device, aligned like it:
 * *res is the reservation to unmap afterwards. */
static int device_view(struct cxl_target *ct, size_t c, size_t n, void **res, void **view)
{
	size_t len = n * ct->align;
	int e = coh_sys_mmap_aligned(len, ct->align, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, res);
	if (e)
		return e;
	e = coh_sys_mmap(*res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd, (off_t)(c * ct->align),
			 view);
	if (e)
		coh_sys_munmap_own(*res, len);
	return e;
}

/* Host memory to another node: the kernel migrates it and holds its users. */
static int host_to_node(struct cxl_target *ct, size_t c, size_t n, int node)
{
	int e = coh_sys_mbind_node(ct->base + c * ct->align, n * ct->align, node, MPOL_BIND, MPOL_MF_MOVE | MPOL_MF_STRICT);
	return e == -ENOSYS ? 0 : e;   /* a kernel without NUMA has one node anyway */
}

static int to_host(const struct coh_alloc_rec *rec, struct cxl_target *ct, size_t c, size_t n, int node)
{
	if (ct->state[c] == CH_HOST)
		return host_to_node(ct, c, n, node);
	size_t a = ct->align, len = n * a;
	uint8_t *src = ct->base + c * a;
	void *tmp, *res = NULL, *view = NULL;
	/* memory allocated to be shared stays shared on the host; aligned like
	 * the device, so huge pages can back it and move whole */
	int e = coh_sys_mmap_aligned(len, a, PROT_READ | PROT_WRITE, rec->shared ? MAP_SHARED : MAP_PRIVATE, &tmp);
	if (e)
		return e;
	if (!rec->shared)
		coh_sys_madvise(tmp, len, MADV_HUGEPAGE);   /* a hint: fewer faults to populate and to free */
	e = coh_sys_mbind_node(tmp, len, node, MPOL_BIND, 0);
	if (e == -ENOSYS || e == -EPERM)
		e = 0;   /* a kernel without NUMA: there is one node anyway */
	if (!e)
		e = cxl_host_fork_controls(tmp, len, rec->fork_policy, rec->shared);
	/* the new memory replaces the device's at once and is filled from a
	 * second view of the chunks while the CPU's accesses wait (hold.c) */
	if (!e)
		e = device_view(ct, c, n, &res, &view);
	if (!e) {
		e = cxl_move_to_host(tmp, src, view, len);
		coh_sys_munmap_own(res, len);
		if (!e) {
			memset(ct->state + c, CH_HOST, n);
			return 0;
		}
		if (e != -ENOSYS && e != -EPERM && e != -EOPNOTSUPP && e != -EINVAL)
			goto fail;
		/* no userfaultfd here: a copy, then the remap (writes made
		 * in between are lost: backends/cxl/README.md) */
		e = 0;
	}
	void *got;
	if (!e) {
		coh_sys_madvise(tmp, len, MADV_POPULATE_WRITE);   /* faults in bulk; an old kernel faults in memcpy */
		memcpy(tmp, src, len);
		e = coh_sys_mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, src, &got);
	}
	if (!e) {
		memset(ct->state + c, CH_HOST, n);
		return 0;
	}
fail:
	coh_sys_munmap_own(tmp, len);   /* the data is still where it was */
	return e;
}

static int to_device(const struct coh_alloc_rec *rec, struct cxl_target *ct, size_t c, size_t n)
{
	size_t a = ct->align, len = n * a;
	uint8_t *src = ct->base + c * a;
	/* writers wait from here until the device has replaced the host memory */
	int held = cxl_hold_writers(src, len, rec->shared);
	/* copy into the device's chunks through a second, aligned mapping */
	void *res, *dev;
	int e = device_view(ct, c, n, &res, &dev);
	if (!e) {
		memcpy(dev, src, len);
		coh_sys_munmap_own(res, len);
	}
	/* then the device replaces the host memory at the same addresses */
	if (!e)
		e = cxl_remap_device(ct, c, n, cxl_policy_forks(rec->fork_policy));
	cxl_release_writers(held, src, len);
	if (e)
		return e;
	memset(ct->state + c, CH_DEV, n);
	return 0;
}

int cxl_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	coh_target *t = rec->target;
	struct cxl_target *ct = ct_of(t);
	int node = coh_target_numa_node(dst);
	if (dst != t && (is_cxl(dst) || node < 0 || node >= COH_NODE_LIMIT))
		return -EOPNOTSUPP;   /* another device, or no node to put host pages on */
	pthread_mutex_lock(&ct->lock);
	int e = ct->base && ct->pid != getpid() ? -ECHILD : 0;
	long c0 = e ? -1 : cxl_first_chunk(ct, (void *)rec->start);
	size_t a = ct->align;
	uintptr_t off = (uintptr_t)addr - rec->start, end = off + len;
	if (!e && rec->priv)
		e = -EOPNOTSUPP;   /* an import maps another process's chunks: it cannot move them */
	if (!e && c0 < 0)
		e = -ENOENT;
	if (!e && cxl_map_shared(&ct->map, (size_t)c0, ct->run[c0]))
		e = -EBUSY;   /* exported: the importers would keep the device's copy */
	/* whole chunks only: the device maps and splits at its alignment */
	if (!e && (off % a || (end % a && end != rec->length)))
		e = -EINVAL;
	if (!e) {
		size_t c = (size_t)c0 + off / a, n = (end - off + a - 1) / a;
		/* chunk runs that are not at the destination yet */
		for (size_t i = c; i < c + n && !e;) {
			if (dst == t && ct->state[i] == CH_DEV) {
				i++;
				continue;
			}
			size_t j = i + 1;
			while (j < c + n && ct->state[j] == ct->state[i])
				j++;
			if (dst == t)
				e = to_device(rec, ct, i, j - i);
			else
				e = to_host(rec, ct, i, j - i, node);   /* host to another node is a copy too */
			i = j;
		}
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}
