/* SPDX-License-Identifier: MIT */
/*
 * A raw device-dax device (/dev/daxX.Y) through libcoherent's queries, before
 * the cxl backend exists: residency, pin-query against a real long-term pin,
 * the fork query against a real fork, and adoption refused.  Skips (77) where
 * no device-dax device exists; the QEMU VM creates one from its pmem range.
 */
#include <dirent.h>
#include <stdbool.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coherent.h"
#include "pinhelp.h"
#include "tally.h"


int main(void)
{
	char name[256] = "";
	DIR *d = opendir("/dev");
	struct dirent *de;
	while (d && (de = readdir(d)))
		if (!strncmp(de->d_name, "dax", 3) && strchr(de->d_name, '.'))
			snprintf(name, sizeof(name), "%s", de->d_name);
	if (d)
		closedir(d);
	if (!name[0]) {
		printf("test_devdax: no /dev/daxX.Y device here (skip)\n");
		return 77;
	}
	char path[300];
	snprintf(path, sizeof(path), "/dev/%s", name);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0) {
		printf("test_devdax: %s: %s (skip)\n", path, strerror(errno));
		return 77;
	}
	size_t len = 2u << 20;   /* one device alignment unit */
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p == MAP_FAILED) {
		printf("FAIL: mmap %s: %s\n0 passed, 1 failed\n", path, strerror(errno));
		return 1;
	}
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 7);
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx)) {
		printf("FAIL: context\n");
		return 1;
	}
	struct coh_extent ext[4];
	int n = coh_query(ctx, p, len, ext, 4, sizeof(struct coh_extent));
	CHECK(n == 1 && ext[0].kind == COH_MEM_DEVICE_DAX, "query: %d extents, kind %s", n,
	      n > 0 ? coh_mem_kind_name(ext[0].kind) : "-");
	struct coh_pin_extent pe[4];
	n = coh_pin_query(ctx, p, len, pe, 4, sizeof(struct coh_pin_extent));
	CHECK(n == 1 && pe[0].short_term == COH_PIN_IN_PLACE && pe[0].long_term == COH_PIN_IN_PLACE,
	      "pin-query: %d extents, short %s, long %s", n, n > 0 ? coh_pin_answer_name(pe[0].short_term) : "-",
	      n > 0 ? coh_pin_answer_name(pe[0].long_term) : "-");
	/* FOLL_LONGTERM through the kernel's gup_test: the mm's own answer */
	uint64_t before[4], after[4];
	int pfn = pfns_of(p, 4, before) == 0;
	int e = longpin_gup(p, len);
	if (e == -ENOSYS) {
		printf("test_devdax: no gup_test here: long-term GUP pin not checked\n");
	} else {
		CHECK(e == 0, "long-term pin (gup_test) of device-dax memory: %s (pin-query said in place)",
		      coh_strerror(e));
		if (e == 0 && pfn) {
			pfns_of(p, 4, after);
			CHECK(!memcmp(before, after, sizeof(before)), "device-dax frames moved under a pin");
		}
	}
	/* io_uring fixed buffers add their own rule on 6.1: no file-backed memory (6.12 takes it) */
	if (longpin_available()) {
		struct longpin lp;
		e = longpin_take(&lp, p, len);
		if (e == 0)
			longpin_drop(&lp);
		printf("test_devdax: io_uring fixed-buffer registration: %s\n", e ? coh_strerror(e) : "accepted");
	}
	struct coh_fork_extent fe[4];
	n = coh_fork_query(ctx, p, len, fe, 4, sizeof(struct coh_fork_extent));
	CHECK(n == 1 && fe[0].child_view == COH_CHILD_SHARED, "fork query: %d, view %s", n,
	      n > 0 ? coh_child_view_name(fe[0].child_view) : "-");
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		p[0] = 0xab;
		_exit(0);
	}
	int st;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && p[0] == 0xab, "child's write to shared device-dax memory not seen");
	coh_target *t = coh_target_get(ctx, 0);
	CHECK(t && coh_adopt(t, p, len, NULL) == -EOPNOTSUPP, "adopting a device-dax mapping not refused");
	bool intact = true;
	for (size_t i = 1; i < len; i++)
		intact &= p[i] == (unsigned char)(i * 7);
	CHECK(intact, "device-dax data changed");
	coh_context_unref(ctx);
	munmap(p, len);
	close(fd);
	printf("test_devdax (%s): %d passed, %d failed\n", name, passed, failed);
	return failed ? 1 : 0;
}
