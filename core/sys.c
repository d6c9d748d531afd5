/* SPDX-License-Identifier: MIT */
/* The thin syscall layer: each wrapper returns -errno, never touches errno's meaning. */
#include <errno.h>
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
