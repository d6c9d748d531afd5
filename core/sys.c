/* SPDX-License-Identifier: MIT */
/* The thin syscall layer: each wrapper returns -errno, never touches errno's meaning. */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <numaif.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* ---- fault injection ---- */
#ifdef COH_FAULT_INJECTION
atomic_int coh_fault_active;
#endif
static atomic_long fault_nth, fault_count;
static atomic_int fault_err, fault_fired = -1;
static atomic_uint fault_mask;

#ifdef COH_FAULT_INJECTION
int coh_fault_hit(enum coh_fault_call c)
{
	if (!(atomic_load(&fault_mask) & (1u << c)))
		return 0;
	long n = atomic_fetch_add(&fault_count, 1) + 1;
	if (n != atomic_load(&fault_nth))
		return 0;
	atomic_store(&fault_fired, (int)c);
	return -atomic_load(&fault_err);
}
#endif

void coh_fault_arm(long nth, int err, unsigned mask)
{
	atomic_store(&fault_nth, nth > 0 && err > 0 ? nth : 0);
	atomic_store(&fault_err, err);
	atomic_store(&fault_mask, mask & COH_FC_ALL);
	atomic_store(&fault_count, 0);
	atomic_store(&fault_fired, -1);
#ifdef COH_FAULT_INJECTION
	atomic_store(&coh_fault_active, 1);
#endif
}

void coh_fault_disarm(void)
{
#ifdef COH_FAULT_INJECTION
	atomic_store(&coh_fault_active, 0);
#endif
	atomic_store(&fault_nth, 0);
}

long coh_fault_calls(void)
{
	return atomic_load(&fault_count);
}

int coh_fault_fired(void)
{
	return atomic_load(&fault_fired);
}

static const char *const fault_names[COH_FC_NKINDS] = {
	"mmap", "munmap", "mremap", "madvise", "mbind", "move_pages",
	"ioctl", "pread", "open", "read", "readlink", "fd", "sock",
};

const char *coh_fault_call_name(int c)
{
	return c >= 0 && c < COH_FC_NKINDS ? fault_names[c] : "?";
}

#ifdef COH_FAULT_INJECTION
static const struct {
	const char *name;
	int err;
} fault_errnos[] = {
	{ "ENOMEM", ENOMEM }, { "EINTR", EINTR }, { "EAGAIN", EAGAIN }, { "EBUSY", EBUSY },
	{ "EFAULT", EFAULT }, { "EIO", EIO }, { "EPERM", EPERM }, { "EINVAL", EINVAL },
};

static void fault_env_parse(void)
{
	const char *env = getenv("COH_FAULT");
	if (!env || !*env)
		return;
	long nth = 0;
	int err = 0;
	unsigned mask = COH_FC_ALL;
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", env);
	char *save = NULL;
	for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		if (!strncmp(tok, "nth=", 4)) {
			nth = strtol(tok + 4, NULL, 10);
		} else if (!strncmp(tok, "errno=", 6)) {
			for (size_t i = 0; i < sizeof(fault_errnos) / sizeof(fault_errnos[0]); i++)
				if (!strcmp(tok + 6, fault_errnos[i].name))
					err = fault_errnos[i].err;
			if (!err)
				err = (int)strtol(tok + 6, NULL, 10);
		} else if (!strncmp(tok, "call=", 5)) {
			mask = 0;
			for (int c = 0; c < COH_FC_NKINDS; c++)
				if (!strcmp(tok + 5, fault_names[c]))
					mask = 1u << c;
		}
	}
	if (nth > 0 && err > 0 && mask)
		coh_fault_arm(nth, err, mask);
}

void coh_fault_env(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, fault_env_parse);
}
#else
void coh_fault_env(void)
{
}
#endif

/* ---- the wrappers ---- */
#define FAULT_RETURN(c)                \
	do {                           \
		int f_ = COH_FAULT(c); \
		if (f_)                \
			return f_;     \
	} while (0)

int coh_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out)
{
	FAULT_RETURN(COH_FC_MMAP);
	void *p = mmap(addr, len, prot, flags, fd, off);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int coh_sys_memfd_create(const char *name, unsigned flags)
{
	FAULT_RETURN(COH_FC_FD);
	int fd = memfd_create(name, flags);
	return fd < 0 ? -errno : fd;
}

int coh_sys_ftruncate(int fd, off_t len)
{
	FAULT_RETURN(COH_FC_FD);
	return ftruncate(fd, len) ? -errno : 0;
}

int coh_sys_fcntl(int fd, int cmd, int arg)
{
	FAULT_RETURN(COH_FC_FD);
	int r = fcntl(fd, cmd, arg);
	return r < 0 ? -errno : r;
}

int coh_sys_fstat(int fd, struct stat *st)
{
	FAULT_RETURN(COH_FC_FD);
	return fstat(fd, st) ? -errno : 0;
}

ssize_t coh_sys_sendmsg(int sock, const struct msghdr *m, int flags)
{
	FAULT_RETURN(COH_FC_SOCK);
	ssize_t n;
	while ((n = sendmsg(sock, m, flags)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : n;
}

ssize_t coh_sys_recvmsg(int sock, struct msghdr *m, int flags)
{
	FAULT_RETURN(COH_FC_SOCK);
	ssize_t n;
	while ((n = recvmsg(sock, m, flags)) < 0 && errno == EINTR)
		;
	return n < 0 ? -errno : n;
}

int coh_sys_munmap(void *addr, size_t len)
{
	FAULT_RETURN(COH_FC_MUNMAP);
	return munmap(addr, len) ? -errno : 0;
}

void coh_sys_munmap_own(void *addr, size_t len)
{
	munmap(addr, len);
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
	/* a failed trim gives the rest of the reservation back (not injected:
	 * the one failure is the trim's) and reports the error */
	if (a > (uintptr_t)p && (e = coh_sys_munmap(p, a - (uintptr_t)p))) {
		munmap(p, tail - (uintptr_t)p);
		return e;
	}
	if (tail > end && (e = coh_sys_munmap((void *)end, tail - end))) {
		munmap((void *)a, tail - a);
		return e;
	}
	*out = (void *)a;
	return 0;
}

int coh_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, void **out)
{
	FAULT_RETURN(COH_FC_MREMAP);
	void *p = mremap(old, old_len, new_len, flags, new_addr);
	if (p == MAP_FAILED)
		return -errno;
	*out = p;
	return 0;
}

int coh_sys_madvise(void *addr, size_t len, int advice)
{
	FAULT_RETURN(COH_FC_MADVISE);
	return madvise(addr, len, advice) ? -errno : 0;
}

int coh_sys_mbind(void *addr, size_t len, int mode, const unsigned long *nodemask,
		  unsigned long maxnode, unsigned flags)
{
	FAULT_RETURN(COH_FC_MBIND);
	long r = syscall(SYS_mbind, addr, len, mode, nodemask, maxnode, flags);
	return r ? -errno : 0;
}

int coh_sys_mbind_node(void *addr, size_t len, int node, int mode, unsigned flags)
{
	if (node < 0 || node >= COH_NODE_LIMIT)
		return -EINVAL;
	unsigned long mask[COH_NODE_LIMIT / (8 * sizeof(unsigned long))] = { 0 };
	mask[node / (8 * sizeof(unsigned long))] |= 1UL << (node % (8 * sizeof(unsigned long)));
	/* maxnode counts bits, and the kernel reads maxnode - 1 of them */
	return coh_sys_mbind(addr, len, mode, mask, COH_NODE_LIMIT + 1, flags);
}

long coh_sys_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes,
			int *status, int flags)
{
	FAULT_RETURN(COH_FC_MOVE_PAGES);
	long r = syscall(SYS_move_pages, pid, count, pages, nodes, status, flags);
	return r < 0 ? -errno : r;
}

int coh_sys_ioctl(int fd, unsigned long req, void *arg)
{
	FAULT_RETURN(COH_FC_IOCTL);
	int r = ioctl(fd, req, arg);
	return r < 0 ? -errno : r;
}

ssize_t coh_sys_pread(int fd, void *buf, size_t len, off_t off)
{
	ssize_t r;
	do {
		int f = COH_FAULT(COH_FC_PREAD);
		if (f) {
			errno = -f;
			r = -1;
		} else {
			r = pread(fd, buf, len, off);
		}
	} while (r < 0 && errno == EINTR);
	return r < 0 ? -errno : r;
}

int coh_sys_openat(int dirfd, const char *path, int flags, bool in_root)
{
	FAULT_RETURN(COH_FC_OPEN);
	if (flags & O_CREAT)
		return -EINVAL;   /* the library opens existing files only */
	if (in_root) {
		/* symlinks and ".." resolved inside dirfd (openat2 RESOLVE_IN_ROOT) */
		struct open_how how = { .flags = (uint64_t)flags, .resolve = RESOLVE_IN_ROOT };
		long fd = syscall(SYS_openat2, dirfd, path, &how, sizeof(how));
		if (fd >= 0)
			return (int)fd;
		if (errno != ENOSYS)
			return -errno;
	}
	int fd = openat(dirfd, path, flags);
	return fd < 0 ? -errno : fd;
}

ssize_t coh_sys_read(int fd, void *buf, size_t len)
{
	FAULT_RETURN(COH_FC_READ);
	ssize_t r = read(fd, buf, len);
	return r < 0 ? -errno : r;
}

ssize_t coh_sys_readlinkat(int dirfd, const char *path, char *buf, size_t len)
{
	FAULT_RETURN(COH_FC_READLINK);
	ssize_t r = readlinkat(dirfd, path, buf, len);
	return r < 0 ? -errno : r;
}
