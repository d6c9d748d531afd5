/* SPDX-License-Identifier: MIT */
/* Real pins for the tests: long-term through io_uring fixed buffers
 * (IORING_REGISTER_BUFFERS, FOLL_LONGTERM), short-term through O_DIRECT I/O
 * (FOLL_PIN on current kernels), and page frame numbers from pagemap. */
#ifndef COH_TESTS_PINHELP_H
#define COH_TESTS_PINHELP_H

#include <stddef.h>
#include <stdint.h>

struct longpin {
	int ring_fd;
	void *ring;    /* the ring's parameters, for longpin_read() */
};
/* 0 pinned, -errno refused; -ENOSYS when io_uring is unavailable here. */
int longpin_take(struct longpin *p, void *addr, size_t len);
void longpin_drop(struct longpin *p);
/* The pin holder at work: an IORING_OP_READ_FIXED of len bytes at file offset
 * off into buf, which lies in the pinned buffer.  Bytes read or -errno. */
long longpin_read(struct longpin *p, int fd, void *buf, size_t len, uint64_t off);
int longpin_available(void);

/* A long-term pin through the kernel's gup_test (debugfs, CONFIG_GUP_TEST):
 * pin_user_pages(FOLL_LONGTERM | FOLL_WRITE) and unpin.  0, -errno, or
 * -ENOSYS when gup_test is absent. */
int longpin_gup(void *addr, size_t len);

/* A file for O_DIRECT in the current folder (-EOPNOTSUPP if the fs refuses O_DIRECT). */
int directio_open(char *path, size_t pathlen);
/* Closes it, removing the file when directio_open created one. */
void directio_close(int fd, const char *path);
/* O_DIRECT write of [addr, addr+len) to the file (reads the memory): bytes or -errno. */
long directio_from(int fd, const void *addr, size_t len);
/* O_DIRECT read from the file into [addr, addr+len) (writes the memory): bytes or -errno. */
long directio_into(int fd, void *addr, size_t len);

/* PFN of each page (root only): 0 on success, -EPERM when PFNs are hidden. */
int pfns_of(const void *addr, size_t npages, uint64_t *pfn);

#endif
