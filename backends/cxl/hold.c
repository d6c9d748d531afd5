/* SPDX-License-Identifier: MIT */
/* cxl backend: keeping the CPU's accesses right while a range moves between
 * the device and host memory.
 *
 * A move is a copy followed by a remap at the same addresses.  A thread that
 * writes between the copy and the remap would lose its write, and one that
 * touches the new memory before the copy would read garbage.  A userfaultfd
 * holds them instead (the kernel's own migration holds them on migration
 * entries; device-dax pages are not migratable, so the library does it):
 *
 * - host -> device: the host range is write-protected (and registered for
 *   missing pages, so a write to a page never touched is held too) before
 *   the copy; a held writer wakes after the remap and writes to the device.
 * - device -> host: the new host memory is registered for missing pages
 *   before it replaces the device mapping (the registration follows it
 *   through mremap: UFFD_EVENT_REMAP); every page is then filled with
 *   UFFDIO_COPY from a second mapping of the device chunks, and an access
 *   to a page not filled yet waits for it (a helper thread fills that page
 *   first).
 *
 * Without a userfaultfd (a kernel without it, or an unprivileged process
 * where vm.unprivileged_userfaultfd is 0) moves are plain copies: writes
 * made during one can be lost.  A userfaultfd limited to user-mode faults
 * (UFFD_USER_MODE_ONLY) holds the CPU's own accesses; a system call that
 * reads or writes the range during a move then fails with EFAULT. */
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cxl.h"

#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

/* A userfaultfd with the features asked for, or -errno. */
static int uffd_open(uint64_t features)
{
#ifdef SYS_userfaultfd
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && errno == EPERM)
		fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (fd < 0)
		return -errno;
	struct uffdio_api api = { .api = UFFD_API, .features = features };
	int e = coh_sys_ioctl(fd, UFFDIO_API, &api);
	if (!e && (api.features & features) != features)
		e = -EOPNOTSUPP;
	if (e) {
		close(fd);
		return e;
	}
	return fd;
#else
	(void)features;
	return -ENOSYS;
#endif
}

static int uffd_register(int fd, void *p, size_t len, uint64_t mode)
{
	struct uffdio_register r = { .range = { (uintptr_t)p, len }, .mode = mode };
	return coh_sys_ioctl(fd, UFFDIO_REGISTER, &r);
}

/* ---- host -> device ---- */

int cxl_hold_writers(void *p, size_t len, bool shared)
{
	uint64_t features = UFFD_FEATURE_PAGEFAULT_FLAG_WP;
#ifdef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
	if (shared)
		features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;   /* shared memory is shmem (6.0+) */
#else
	if (shared)
		return -EOPNOTSUPP;
#endif
	int fd = uffd_open(features);
	if (fd < 0)
		return fd;
	/* every page present (the zero page where none was), so that the copy
	 * reading them is not held as a missing page itself */
	int e = coh_sys_madvise(p, len, MADV_POPULATE_READ);
	if (!e)
		e = uffd_register(fd, p, len, UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP);
	if (!e) {
		struct uffdio_writeprotect wp = { .range = { (uintptr_t)p, len }, .mode = UFFDIO_WRITEPROTECT_MODE_WP };
		e = coh_sys_ioctl(fd, UFFDIO_WRITEPROTECT, &wp);
	}
	if (e) {
		close(fd);   /* unregisters, and wakes anyone it held */
		return e;
	}
	return fd;
}

void cxl_release_writers(int fd, void *p, size_t len)
{
	if (fd < 0)
		return;
	/* the range is the device's mapping now: the held accesses retry there */
	struct uffdio_range r = { (uintptr_t)p, len };
	coh_sys_ioctl(fd, UFFDIO_WAKE, &r);
	close(fd);
}

/* ---- device -> host ---- */

struct filler {
	int fd, stop[2];
	const uint8_t *src;            /* the device chunks' second mapping */
	_Atomic uintptr_t dst;         /* where the new memory is: tmp, then the range */
	size_t len, ps;
	atomic_int err;
};

/* Fills the page at addr (inside [dst, dst+len)) from the source. */
static void fill_page(struct filler *f, uintptr_t addr)
{
	uintptr_t dst = atomic_load(&f->dst), pg = addr & ~(uintptr_t)(f->ps - 1);
	if (pg < dst || pg >= dst + f->len)
		return;
	for (;;) {
		struct uffdio_copy c = { .dst = pg, .src = (uintptr_t)(f->src + (pg - dst)), .len = f->ps };
		int e = coh_sys_ioctl(f->fd, UFFDIO_COPY, &c);
		if (e == -EAGAIN)
			continue;   /* the remap is being reported: try again */
		if (e == -EEXIST) {
			struct uffdio_range r = { pg, f->ps };
			coh_sys_ioctl(f->fd, UFFDIO_WAKE, &r);   /* filled by the main copy meanwhile */
		} else if (e) {
			atomic_store(&f->err, e);
		}
		return;
	}
}

static void *filler_main(void *arg)
{
	struct filler *f = arg;
	struct pollfd pf[2] = { { f->fd, POLLIN, 0 }, { f->stop[0], POLLIN, 0 } };
	for (;;) {
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			break;
		if (pf[1].revents)
			break;
		struct uffd_msg m[16];
		ssize_t got = read(f->fd, m, sizeof(m));
		if (got <= 0)
			continue;
		for (size_t i = 0; i < (size_t)got / sizeof(m[0]); i++) {
			if (m[i].event == UFFD_EVENT_REMAP && m[i].arg.remap.from == atomic_load(&f->dst))
				atomic_store(&f->dst, (uintptr_t)m[i].arg.remap.to);
			else if (m[i].event == UFFD_EVENT_PAGEFAULT)
				fill_page(f, (uintptr_t)m[i].arg.pagefault.address);
		}
	}
	return NULL;
}

/* Fills [dst, dst+len) of the registered memory from src, in pieces, past
 * pages a held access had filled first. */
static int fill_all(struct filler *f, uintptr_t dst)
{
	size_t piece = 2u << 20, off = 0;
	while (off < f->len) {
		size_t n = f->len - off < piece ? f->len - off : piece;
		struct uffdio_copy c = { .dst = dst + off, .src = (uintptr_t)(f->src + off), .len = n };
		int e = coh_sys_ioctl(f->fd, UFFDIO_COPY, &c);
		if (!e) {
			off += n;
			continue;
		}
		if (c.copy > 0)
			off += (size_t)c.copy;   /* part of it done */
		if (e == -EEXIST)
			off += f->ps;            /* that page was filled for an access */
		else if (e != -EAGAIN)
			return e;
	}
	return 0;
}

/* The pages of [to, to+len) that no one filled, copied from src. */
static void fill_rest(void *to, const void *src, size_t len, size_t ps)
{
	unsigned char vec[256];
	for (size_t off = 0; off < len; off += sizeof(vec) * ps) {
		size_t n = (len - off) / ps < sizeof(vec) ? (len - off) / ps : sizeof(vec);
		bool known = mincore((uint8_t *)to + off, n * ps, vec) == 0;
		for (size_t i = 0; i < n; i++)
			if (!known || !(vec[i] & 1))
				memcpy((uint8_t *)to + off + i * ps, (const uint8_t *)src + off + i * ps, ps);
	}
}

int cxl_move_to_host(void *tmp, void *to, const void *src, size_t len)
{
	struct filler f = { .fd = -1, .stop = { -1, -1 }, .src = src, .dst = (uintptr_t)tmp, .len = len,
			    .ps = (size_t)sysconf(_SC_PAGESIZE) };
	f.fd = uffd_open(UFFD_FEATURE_EVENT_REMAP);
	if (f.fd < 0)
		return f.fd;
	int e = uffd_register(f.fd, tmp, len, UFFDIO_REGISTER_MODE_MISSING);
	if (!e && pipe2(f.stop, O_CLOEXEC))
		e = -errno;
	/* the helper's stack is ours to unmap: glibc would keep a freed
	 * thread's stack mapped in its cache, a mapping per move left behind */
	pthread_t th;
	bool started = false;
	void *stack = NULL;
	size_t stack_len = 256u << 10;
	if (!e)
		e = coh_sys_mmap(NULL, stack_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0,
				 &stack);
	if (!e) {
		pthread_attr_t at;
		e = -pthread_attr_init(&at);
		if (!e) {
			e = -pthread_attr_setstack(&at, stack, stack_len);
			if (!e)
				e = -pthread_create(&th, &at, filler_main, &f);
			pthread_attr_destroy(&at);
		}
		started = e == 0;
	}
	void *got = NULL;
	if (!e)   /* returns once the helper has read the remap event */
		e = coh_sys_mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, to, &got);
	bool moved = !e;
	if (moved) {
		atomic_store(&f.dst, (uintptr_t)to);
		e = fill_all(&f, (uintptr_t)to);
		if (!e)
			e = atomic_load(&f.err);
		if (e) {
			/* no memory for a page, say: the pages not filled yet are
			 * copied without holding anyone, as a move without a
			 * userfaultfd would (an access racing with this can
			 * still see a zero page) */
			struct uffdio_range r = { (uintptr_t)to, len };
			coh_sys_ioctl(f.fd, UFFDIO_UNREGISTER, &r);
			fill_rest(to, src, len, f.ps);
			e = 0;
		}
	}
	if (started) {
		if (write(f.stop[1], "", 1) != 1) {
			/* the pipe cannot be full: one byte, once */
		}
		pthread_join(th, NULL);
	}
	if (stack)
		coh_sys_munmap_own(stack, stack_len);
	if (f.stop[0] >= 0) {
		close(f.stop[0]);
		close(f.stop[1]);
	}
	close(f.fd);   /* unregisters what is left, wakes anyone still held */
	return moved ? 0 : e;
}
