/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "pinhelp.h"

int longpin_available(void)
{
	struct io_uring_params prm;
	memset(&prm, 0, sizeof(prm));
	int fd = (int)syscall(__NR_io_uring_setup, 1, &prm);
	if (fd < 0)
		return 0;
	close(fd);
	return 1;
}

int longpin_take(struct longpin *p, void *addr, size_t len)
{
	struct io_uring_params prm;
	memset(&prm, 0, sizeof(prm));
	p->ring = NULL;
	p->ring_fd = (int)syscall(__NR_io_uring_setup, 1, &prm);
	if (p->ring_fd < 0)
		return -ENOSYS;
	struct iovec iov = { .iov_base = addr, .iov_len = len };
	if (syscall(__NR_io_uring_register, p->ring_fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
		int e = -errno;
		close(p->ring_fd);
		p->ring_fd = -1;
		return e;
	}
	p->ring = malloc(sizeof(prm));
	if (p->ring)
		memcpy(p->ring, &prm, sizeof(prm));
	return 0;
}

long longpin_read(struct longpin *p, int fd, void *buf, size_t len, uint64_t off)
{
	const struct io_uring_params *prm = p->ring;
	if (p->ring_fd < 0 || !prm)
		return -EBADF;
	size_t sqlen = prm->sq_off.array + prm->sq_entries * sizeof(unsigned);
	size_t cqlen = prm->cq_off.cqes + prm->cq_entries * sizeof(struct io_uring_cqe);
	int single = !!(prm->features & IORING_FEAT_SINGLE_MMAP);
	if (single && cqlen > sqlen)
		sqlen = cqlen;
	size_t sqelen = prm->sq_entries * sizeof(struct io_uring_sqe);
	char *sq = mmap(NULL, sqlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, p->ring_fd,
			IORING_OFF_SQ_RING);
	char *cq = single ? sq : mmap(NULL, cqlen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
				      p->ring_fd, IORING_OFF_CQ_RING);
	struct io_uring_sqe *sqe = mmap(NULL, sqelen, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE,
					p->ring_fd, IORING_OFF_SQES);
	long r = -ENOMEM;
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqe == MAP_FAILED)
		goto out;
	unsigned *tail = (unsigned *)(sq + prm->sq_off.tail), mask = *(unsigned *)(sq + prm->sq_off.ring_mask);
	unsigned *array = (unsigned *)(sq + prm->sq_off.array), t = *tail;
	memset(&sqe[0], 0, sizeof(sqe[0]));
	sqe[0].opcode = IORING_OP_READ_FIXED;
	sqe[0].fd = fd;
	sqe[0].addr = (uintptr_t)buf;
	sqe[0].len = (unsigned)len;
	sqe[0].off = off;
	sqe[0].buf_index = 0;
	array[t & mask] = 0;
	__atomic_store_n(tail, t + 1, __ATOMIC_RELEASE);
	if (syscall(__NR_io_uring_enter, p->ring_fd, 1, 1, IORING_ENTER_GETEVENTS, NULL, 0) < 0) {
		r = -errno;
		goto out;
	}
	unsigned *head = (unsigned *)(cq + prm->cq_off.head);
	unsigned h = *head;
	if (h == __atomic_load_n((unsigned *)(cq + prm->cq_off.tail), __ATOMIC_ACQUIRE)) {
		r = -EIO;   /* io_uring_enter waited, yet no completion */
		goto out;
	}
	const struct io_uring_cqe *cqes = (const struct io_uring_cqe *)(cq + prm->cq_off.cqes);
	r = cqes[h & *(unsigned *)(cq + prm->cq_off.ring_mask)].res;
	__atomic_store_n(head, h + 1, __ATOMIC_RELEASE);
out:
	if (sqe != MAP_FAILED)
		munmap(sqe, sqelen);
	if (cq != MAP_FAILED && !single)
		munmap(cq, cqlen);
	if (sq != MAP_FAILED)
		munmap(sq, sqlen);
	return r;
}

void longpin_drop(struct longpin *p)
{
	if (p->ring_fd >= 0) {
		syscall(__NR_io_uring_register, p->ring_fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
		close(p->ring_fd);
	}
	free(p->ring);
	p->ring = NULL;
	p->ring_fd = -1;
}

/* mm/gup_test.h of Linux 6.1 (not an installed header): the ioctl layout. */
struct gup_test_arg {
	uint64_t get_delta_usec, put_delta_usec, addr, size;
	uint32_t nr_pages_per_call, gup_flags, test_flags, which_pages[8];
};
#define COH_PIN_LONGTERM_BENCHMARK _IOWR('g', 3, struct gup_test_arg)

int longpin_gup(void *addr, size_t len)
{
	int fd = open("/sys/kernel/debug/gup_test", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -ENOSYS;
	long ps = sysconf(_SC_PAGESIZE);
	struct gup_test_arg g = { .addr = (uintptr_t)addr, .size = len,
				  .nr_pages_per_call = (uint32_t)(len / (size_t)ps), .gup_flags = 0x01 /* FOLL_WRITE */ };
	int r = ioctl(fd, COH_PIN_LONGTERM_BENCHMARK, &g);
	int e = r < 0 ? -errno : 0;
	close(fd);
	return e;
}

int directio_open(char *path, size_t pathlen)
{
	snprintf(path, pathlen, "coh-directio-%d.tmp", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_DIRECT | O_CLOEXEC, 0600);
	if (fd >= 0)
		return fd;
	int e = errno == EINVAL ? -EOPNOTSUPP : -errno;
	unlink(path);
	/* a folder whose file system refuses O_DIRECT (tmpfs): a block device
	 * named by COH_TEST_DIRECTIO_DEV instead (the VM's ram disk) */
	const char *dev = getenv("COH_TEST_DIRECTIO_DEV");
	if (dev && *dev) {
		fd = open(dev, O_RDWR | O_DIRECT | O_CLOEXEC);
		if (fd >= 0) {
			snprintf(path, pathlen, "%s", dev);
			return fd;
		}
	}
	return e;
}

void directio_close(int fd, const char *path)
{
	close(fd);
	if (strncmp(path, "/dev/", 5))
		unlink(path);
}

long directio_from(int fd, const void *addr, size_t len)
{
	long r = pwrite(fd, addr, len, 0);
	return r < 0 ? -errno : r;
}

long directio_into(int fd, void *addr, size_t len)
{
	long r = pread(fd, addr, len, 0);
	return r < 0 ? -errno : r;
}

int pfns_of(const void *addr, size_t npages, uint64_t *pfn)
{
	long ps = sysconf(_SC_PAGESIZE);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	long r = pread(fd, pfn, npages * 8, (off_t)((uintptr_t)addr / (uintptr_t)ps) * 8);
	close(fd);
	if (r != (long)(npages * 8))
		return -EIO;
	int any = 0;
	for (size_t i = 0; i < npages; i++) {
		if ((pfn[i] >> 63) & 1)
			any |= (pfn[i] & ((1ull << 55) - 1)) != 0;
		pfn[i] = (pfn[i] >> 63) & 1 ? pfn[i] & ((1ull << 55) - 1) : 0;
	}
	return any ? 0 : -EPERM;
}
