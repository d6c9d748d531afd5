/* SPDX-License-Identifier: MIT */
/* The thin syscall layer: each wrapper returns -errno, never touches errno's meaning. */
#include <errno.h>
#include <numaif.h>
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

int coh_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	void *p = mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int coh_sys_munmap(void *addr, size_t len)
{
	return munmap(addr, len) ? -errno : 0;
}

int coh_sys_mmap_aligned(size_t len, size_t align, int prot, int flags, void **out)
{
	size_t ps = (size_t)sysconf(_SC_PAGESIZE), extra = align > ps ? align - ps : 0;
	if (len + extra < len)
		return -EOVERFLOW;
	void *p = NULL;
	int e = coh_sys_mmap(NULL, len + extra, prot, flags | MAP_ANONYMOUS, -1, 0, &p);
	if (e || extra == 0) {
		if (!e)
			*out = p;
		return e;
	}
	/* over-reserved by align - page: trim both ends to an aligned start */
	uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	uintptr_t tail = (uintptr_t)p + len + extra, end = a + len;
	if (a > (uintptr_t)p)
		coh_sys_munmap(p, a - (uintptr_t)p);
	if (tail > end)
		coh_sys_munmap((void *)end, tail - end);
	*out = (void *)a;
	return 0;
}

int coh_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, void **out)
{
	void *p = mremap(old, old_len, new_len, flags, new_addr);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int coh_sys_madvise(void *addr, size_t len, int advice)
{
	return madvise(addr, len, advice) ? -errno : 0;
}

int coh_sys_mbind(void *addr, size_t len, int mode, const unsigned long *nodemask,
		  unsigned long maxnode, unsigned flags)
{
	long r = syscall(SYS_mbind, addr, len, mode, nodemask, maxnode, flags);
	return r ? -errno : 0;
}

int coh_sys_mbind_node(void *addr, size_t len, int node, unsigned flags)
{
	if (node < 0 || node >= 1024)
		return -EINVAL;
	unsigned long mask[1024 / (8 * sizeof(unsigned long))] = { 0 };
	mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
	return coh_sys_mbind(addr, len, MPOL_BIND, mask, 1025, flags);
}

long coh_sys_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes,
			int *status, int flags)
{
	long r = syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
	return r < 0 ? -errno : r;
}

int coh_sys_ioctl(int fd, unsigned long req, void *arg)
{
	int r = ioctl(fd, req, arg);
	return r < 0 ? -errno : r;
}

ssize_t coh_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	ssize_t r;
	do {
		r = pread(fd, buf, len, off);
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}
