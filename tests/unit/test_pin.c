/* SPDX-License-Identifier: MIT */
/*
 * Pin-query predictions against real pins on host memory: long-term pins
 * through io_uring fixed buffers (FOLL_LONGTERM), short-term through O_DIRECT
 * (FOLL_PIN).  For each kind of mapping the test asks coh_pin_query first, then
 * pins, and checks the outcome: "in place" pins succeed and (as root, where
 * pagemap shows frame numbers) leave every page frame where it was; "never"
 * pins fail.  The query itself must not move or populate anything.
 */
#include <fcntl.h>
#include <sched.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "internal.h"   /* the frame map and the rules, fed from a hand-written tree */
#include "pinhelp.h"
#include "query.h"

static size_t ps;
static coh_context *ctx;

static void setup(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	ctx = t_ctx();
}

static void teardown(void)
{
	coh_context_unref(ctx);
}

/* One verdict for the whole range, or fail. */
static struct coh_pin_extent one_verdict(void *p, size_t len)
{
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, len, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_msg(n == 1, "expected one pin extent, got %d", n);
	ck_assert_uint_eq(pe[0].length, len);
	return pe[0];
}

/* In place: no present page moved; after migrate: every present page did. */
static void frames_as_predicted(const uint64_t *before, const uint64_t *after, size_t np, int predicted,
				const char *pin)
{
	size_t moved = 0, present = 0;
	for (size_t i = 0; i < np; i++)
		if (before[i]) {
			present++;
			moved += before[i] != after[i];
		}
	if (predicted == COH_PIN_IN_PLACE)
		ck_assert_msg(moved == 0, "%zu of %zu pages moved under a %s pin predicted in place", moved, present,
			      pin);
	if (predicted == COH_PIN_AFTER_MIGRATE)
		ck_assert_msg(moved == present, "%zu of %zu pages moved under a %s pin predicted after-migrate",
			      moved, present, pin);
}

/* Long-term pin; compares frames before and after where they are visible. */
static void check_long(void *p, size_t len, int predicted)
{
	if (!longpin_available()) {
		fprintf(stderr, "test_pin: io_uring unavailable here: long-term pins not checked\n");
		return;
	}
	size_t np = len / ps;
	uint64_t *before = calloc(np, 8), *after = calloc(np, 8);
	int have_pfn = pfns_of(p, np, before) == 0;
	struct longpin lp;
	int e = longpin_take(&lp, p, len);
	if (predicted == COH_PIN_NEVER) {
		ck_assert_msg(e < 0, "long-term pin succeeded where pin-query said never");
	} else {
		ck_assert_msg(e == 0, "long-term pin failed (%s) where pin-query said %s", coh_strerror(e),
			      coh_pin_answer_name(predicted));
		ck_assert_int_eq(pfns_of(p, np, after) == 0 || !have_pfn, 1);
		if (have_pfn)
			frames_as_predicted(before, after, np, predicted, "long-term");
		longpin_drop(&lp);
	}
	free(before);
	free(after);
}

static void check_short(void *p, size_t len, int predicted, int writable)
{
	char path[64];
	int fd = directio_open(path, sizeof(path));
	if (fd < 0) {
		fprintf(stderr, "test_pin: O_DIRECT unavailable in this folder (%s): short pins not checked\n",
			coh_strerror(fd));
		return;
	}
	/* a block of known data for the read-into direction */
	void *blk;
	ck_assert_int_eq(posix_memalign(&blk, ps, len), 0);
	memset(blk, 0x3c, len);
	ck_assert_int_eq(directio_from(fd, blk, len), (long)len);
	size_t np = len / ps;
	uint64_t *before = calloc(np, 8), *after = calloc(np, 8);
	int have_pfn = pfns_of(p, np, before) == 0;
	long r = writable ? directio_into(fd, p, len) : directio_from(fd, p, len);
	if (have_pfn && r == (long)len && pfns_of(p, np, after) == 0)
		frames_as_predicted(before, after, np, predicted, "short-term");
	free(before);
	free(after);
	if (predicted == COH_PIN_NEVER)
		ck_assert_msg(r < 0, "short pin (O_DIRECT) succeeded where pin-query said never");
	else
		ck_assert_msg(r == (long)len, "short pin (O_DIRECT) failed (%ld) where pin-query said %s", r,
			      coh_pin_answer_name(predicted));
	if (writable && r == (long)len)
		ck_assert_int_eq(memcmp(p, blk, len), 0);
	free(blk);
	directio_close(fd, path);
}

START_TEST(system_populated)
{
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 64 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE), (void **)&p), 0);
	struct coh_pin_extent v = one_verdict(p, 64 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	check_long(p, 64 * ps, v.long_term);
	check_short(p, 64 * ps, v.short_term, 1);
	/* residency unchanged by the pins */
	struct coh_extent e[2];
	ck_assert_int_eq(coh_query(ctx, p, 64 * ps, e, 2, sizeof(struct coh_extent)), 1);
	ck_assert_int_eq(e[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(not_populated)
{
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 16 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p), 0);
	struct coh_pin_extent v = one_verdict(p, 16 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_NOT_POPULATED);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	/* asking populated nothing */
	struct coh_extent e[2];
	ck_assert_int_eq(coh_query(ctx, p, 16 * ps, e, 2, sizeof(struct coh_extent)), 1);
	ck_assert_int_eq(e[0].kind, COH_MEM_NOT_POPULATED);
	check_long(p, 16 * ps, v.long_term);
	/* the pin faulted in ordinary system pages, as predicted */
	if (longpin_available()) {
		ck_assert_int_eq(coh_query(ctx, p, 16 * ps, e, 2, sizeof(struct coh_extent)), 1);
		ck_assert_int_eq(e[0].kind, COH_MEM_SYSTEM);
	}
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(huge_page)
{
	char *p;
	int e = coh_alloc(t_node0(ctx), 4 << 20, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE | COH_ALLOC_POPULATE), (void **)&p);
	if (e == -EOPNOTSUPP) {
		fprintf(stderr, "test_pin: no transparent huge pages here\n");
		return;
	}
	ck_assert_int_eq(e, 0);
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, 4 << 20, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_int_ge(n, 1);
	for (int i = 0; i < n; i++) {
		ck_assert(pe[i].kind == COH_MEM_SYSTEM_THP || pe[i].kind == COH_MEM_SYSTEM);
		ck_assert_int_eq(pe[i].long_term, COH_PIN_IN_PLACE);
	}
	check_long(p, 4 << 20, COH_PIN_IN_PLACE);
	check_short(p, 2 << 20, COH_PIN_IN_PLACE, 1);
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(prot_none)
{
	char *p = mmap(NULL, 8 * ps, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.short_term, COH_PIN_NEVER);
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 1);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(read_only)
{
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 9, 8 * ps);
	mprotect(p, 8 * ps, PROT_READ);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);   /* a read pin: O_DIRECT from memory */
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);       /* fixed buffers ask for write access */
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 0);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(shared_anonymous)
{
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	memset(p, 9, 8 * ps);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	check_long(p, 8 * ps, v.long_term);
	check_short(p, 8 * ps, v.short_term, 1);
	munmap(p, 8 * ps);
}
END_TEST

START_TEST(shared_file)
{
	char path[64];
	snprintf(path, sizeof(path), "coh-pinfile-%d.tmp", (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(8 * ps)), 0);
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, 8 * ps);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	ck_assert_int_ne(v.long_term, COH_PIN_UNKNOWN);   /* the kernel version is known here */
	check_long(p, 8 * ps, v.long_term);
	munmap(p, 8 * ps);
	close(fd);
	unlink(path);
}
END_TEST

START_TEST(unmapped)
{
	char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(p, 4 * ps);
	struct coh_pin_extent v = one_verdict(p, 4 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_UNMAPPED);
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);
	check_long(p, 4 * ps, v.long_term);
}
END_TEST

START_TEST(mixed_range)
{
	/* populated | PROT_NONE | read-only, one call, three verdicts in address order */
	char *p = mmap(NULL, 12 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(p, 1, 12 * ps);
	mprotect(p + 4 * ps, 4 * ps, PROT_NONE);
	mprotect(p + 8 * ps, 4 * ps, PROT_READ);
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, 12 * ps, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 3);
	ck_assert_int_eq(pe[0].long_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[1].short_term, COH_PIN_NEVER);
	ck_assert_int_eq(pe[2].long_term, COH_PIN_NEVER);
	for (int i = 0; i < 3; i++) {
		ck_assert_uint_eq(pe[i].start, (uintptr_t)p + (size_t)i * 4 * ps);
		check_long((void *)pe[i].start, pe[i].length, pe[i].long_term);
	}
	/* cursor: one at a time */
	n = coh_pin_query(ctx, p, 12 * ps, pe, 1, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(pe[0].length, 4 * ps);
	munmap(p, 12 * ps);
}
END_TEST

START_TEST(merging)
{
	/* two mappings (MADV_DONTFORK splits one), same kind and answers: one extent */
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, 8 * ps);
	ck_assert_int_eq(madvise(p + 4 * ps, 4 * ps, MADV_DONTFORK), 0);
	struct coh_pin_extent v = one_verdict(p, 8 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	/* same answers, different kinds: two extents, as coh_pin_query(3) says */
	ck_assert_int_eq(madvise(p + 4 * ps, 4 * ps, MADV_DONTNEED), 0);
	struct coh_pin_extent pe[4];
	ck_assert_int_eq(coh_pin_query(ctx, p, 8 * ps, pe, 4, sizeof(struct coh_pin_extent)), 2);
	ck_assert_int_eq(pe[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(pe[1].kind, COH_MEM_NOT_POPULATED);
	ck_assert_int_eq(pe[0].long_term, pe[1].long_term);
	ck_assert_int_eq(pe[0].short_term, pe[1].short_term);
	ck_assert_uint_eq(pe[1].start, (uintptr_t)p + 4 * ps);
	munmap(p, 8 * ps);
}
END_TEST

/* A file of n pages of 0x5a in the current folder, mapped with flags; the fd stays open. */
static char *file_mapping(const char *dir, size_t n, int flags, int *fd_out, char *path, size_t pathlen)
{
	snprintf(path, pathlen, "%s/coh-pin-%d.tmp", dir, (int)getpid());
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	ck_assert_int_ge(fd, 0);
	char *blk = malloc(n * ps);
	memset(blk, 0x5a, n * ps);
	ck_assert_int_eq(write(fd, blk, n * ps), (long)(n * ps));
	free(blk);
	char *p = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, flags, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	*fd_out = fd;
	return p;
}

START_TEST(private_file_read_faulted)
{
	/* read faults map the page cache: a write pin must copy every page first */
	char path[128];
	int fd;
	size_t n = 256;
	char *p = file_mapping(".", n, MAP_PRIVATE, &fd, path, sizeof(path));
	unsigned sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += ((volatile unsigned char *)p)[i * ps];   /* file-backed: a read maps the file's page */
	ck_assert_uint_eq(sum, n * 0x5a);
	struct coh_pin_extent v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.short_term, COH_PIN_AFTER_MIGRATE);
	ck_assert_int_eq(v.long_term, COH_PIN_AFTER_MIGRATE);
	check_short(p, n * ps, v.short_term, 1);   /* O_DIRECT into the buffer: a write pin */
	/* now private anonymous copies: in place */
	v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	munmap(p, n * ps);
	/* again, for a long-term pin (io_uring before Linux 6.5 refuses any file mapping) */
	p = mmap(NULL, n * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	for (size_t i = 0; i < n; i++)
		sum += ((volatile unsigned char *)p)[i * ps];
	v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.long_term, COH_PIN_AFTER_MIGRATE);
	struct utsname u;
	int maj = 0, min = 0;
	if (uname(&u) == 0 && sscanf(u.release, "%d.%d", &maj, &min) == 2 && maj * 1000 + min < 6005)
		fprintf(stderr, "test_pin: io_uring of Linux %s refuses file mappings: long pin not checked\n",
			u.release);
	else
		check_long(p, n * ps, v.long_term);
	munmap(p, n * ps);
	close(fd);
	unlink(path);
}
END_TEST

/* The child of cow_shared_with_child: waits for a byte, touches nothing. */
static pid_t idle_child(int *wfd)
{
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		char c;
		close(pfd[1]);
		_exit(read(pfd[0], &c, 1) == 1 ? 0 : 1);
	}
	close(pfd[0]);
	*wfd = pfd[1];
	return pid;
}

static void end_child(pid_t pid, int wfd)
{
	int st;
	ck_assert_int_eq(write(wfd, "x", 1), 1);
	close(wfd);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

START_TEST(cow_shared_with_child)
{
	size_t n = 64;
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), n * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE), (void **)&p), 0);
	memset(p, 0x21, n * ps);
	int wfd;
	pid_t child = idle_child(&wfd);
	struct coh_pin_extent v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(v.short_term, COH_PIN_AFTER_MIGRATE);
	ck_assert_int_eq(v.long_term, COH_PIN_AFTER_MIGRATE);
	check_long(p, n * ps, v.long_term);
	/* the pin gave the parent its own pages: in place from now on */
	v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	end_child(child, wfd);
	/* a short pin of shared pages copies them too */
	child = idle_child(&wfd);
	v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.short_term, COH_PIN_AFTER_MIGRATE);
	check_short(p, n * ps, v.short_term, 1);
	end_child(child, wfd);
	/* half shared, half the parent's own: two extents */
	child = idle_child(&wfd);
	memset(p, 0x22, n / 2 * ps);   /* the parent's writes copy these */
	struct coh_pin_extent pe[4];
	ck_assert_int_eq(coh_pin_query(ctx, p, n * ps, pe, 4, sizeof(struct coh_pin_extent)), 2);
	ck_assert_int_eq(pe[0].long_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[1].long_term, COH_PIN_AFTER_MIGRATE);
	ck_assert_uint_eq(pe[1].start, (uintptr_t)p + n / 2 * ps);
	end_child(child, wfd);
	ck_assert_int_eq(coh_free(ctx, p), 0);
}
END_TEST

START_TEST(tmpfs_elsewhere)
{
	/* a tmpfs mounted away from /dev/shm, in a mount namespace of this test's own */
	if (unshare(CLONE_NEWNS) || mount("none", "/", NULL, MS_REC | MS_PRIVATE, NULL)) {
		fprintf(stderr, "test_pin: no mount namespace here (%s): tmpfs_elsewhere skipped\n", strerror(errno));
		return;
	}
	char dir[] = "/tmp/coh-pin-tmpfs-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	ck_assert_int_eq(mount("coh-pin", dir, "tmpfs", 0, "size=4m"), 0);
	char path[128];
	int fd;
	char *p = file_mapping(dir, 16, MAP_SHARED, &fd, path, sizeof(path));
	memset(p, 1, 16 * ps);
	struct coh_pin_extent v = one_verdict(p, 16 * ps);
	ck_assert_int_eq(v.kind, COH_MEM_FILE);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);   /* no dirty tracking on tmpfs */
	check_long(p, 16 * ps, v.long_term);
	check_short(p, 16 * ps, v.short_term, 0);
	/* without CAP_SYS_ADMIN map_files is closed: mountinfo names the tmpfs;
	 * hugetlbfs of MAP_HUGETLB is a kernel-internal mount: unknown, not never */
	char *h = mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* a changed uid makes the process undumpable: its /proc files root's */
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534) ||
		    prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
			_exit(2);
		struct coh_pin_extent x[2];
		if (coh_pin_query(ctx, p, 16 * ps, x, 2, sizeof(struct coh_pin_extent)) != 1 || x[0].long_term != COH_PIN_IN_PLACE)
			_exit(3);
		if (h != MAP_FAILED && ctx->kernel_version >= 6005 &&
		    (coh_pin_query(ctx, h, ps, x, 2, sizeof(struct coh_pin_extent)) != 1 || x[0].long_term != COH_PIN_UNKNOWN))
			_exit(4);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unprivileged pin-query: exit %d", WEXITSTATUS(st));
	if (h != MAP_FAILED)
		munmap(h, 2 << 20);
	munmap(p, 16 * ps);
	close(fd);
	unlink(path);
	umount(dir);
	rmdir(dir);
}
END_TEST

START_TEST(hugetlb_shared)
{
	/* MAP_HUGETLB: "/anon_hugepage (deleted)" on the kernel's own hugetlbfs mount */
	size_t hs = 2 << 20;
	char *p = mmap(NULL, hs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	FILE *nr = NULL;
	long saved = -1;
	if (p == MAP_FAILED && getuid() == 0 && (nr = fopen("/proc/sys/vm/nr_hugepages", "r+"))) {
		/* as root: reserve two huge pages for the test, given back below */
		if (fscanf(nr, "%ld", &saved) == 1 && saved == 0) {
			rewind(nr);
			fprintf(nr, "2\n");
			fflush(nr);
			p = mmap(NULL, hs, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
		}
	}
	if (p == MAP_FAILED) {
		fprintf(stderr, "test_pin: no 2 MiB huge pages to map here: hugetlb_shared skipped\n");
	} else {
		memset(p, 3, hs);
		struct coh_pin_extent v = one_verdict(p, hs);
		ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
		ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);   /* hugetlbfs: no dirty tracking */
		check_long(p, hs, v.long_term);
		munmap(p, hs);
	}
	if (nr && saved == 0) {
		rewind(nr);
		fprintf(nr, "0\n");
	}
	if (nr)
		fclose(nr);
}
END_TEST

/* ---- CMA and ZONE_MOVABLE frames, from a hand-written /proc and /sys ---- */

static coh_context *tree_ctx(const char *root)
{
	/* a replay root must look like a machine: it has a node directory */
	t_put_file(root, "sys/devices/system/node/node0/cpulist", "0\n");
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .fsroot = root, .log_level = -1 };
	coh_context *c = NULL;
	ck_assert_int_eq(coh_context_create(&o, &c), 0);
	return c;
}

/* Node 0: Normal 4096-8191, Movable 8192-12287 (movablecore=), CMA 5120-6143;
 * node 1: Normal 16384-24575 with one 256-page block onlined Movable at 20480. */
static const char zoneinfo[] =
	"Node 0, zone   Normal\n  pages free     100\n        spanned  4096\n        present  4096\n"
	"  start_pfn:           4096\n"
	"Node 0, zone  Movable\n  pages free     100\n        spanned  4096\n        present  4096\n"
	"  start_pfn:           8192\n"
	"Node 1, zone   Normal\n        spanned  8192\n        present  7936\n  start_pfn:           16384\n"
	"Node 1, zone  Movable\n        spanned  256\n        present  256\n  start_pfn:           20480\n";

START_TEST(frame_map_from_tree)
{
	char root[] = "/tmp/coh-pin-tree-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(root));
	t_put_file(root, "proc/zoneinfo", zoneinfo);
	t_put_file(root, "proc/buddyinfo", "Node 0, zone   Normal   1   2\nNode 0, zone  Movable   3   4\n");
	t_put_file(root, "proc/meminfo", "MemTotal: 100 kB\nCmaTotal:           4096 kB\n");
	t_put_file(root, "sys/kernel/debug/cma/reserved/base_pfn", "5120\n");
	t_put_file(root, "sys/kernel/debug/cma/reserved/count", "1024\n");
	t_put_file(root, "sys/devices/system/memory/block_size_bytes", "100000\n");   /* hex: 1 MiB */
	t_put_file(root, "sys/devices/system/memory/memory80/valid_zones", "Movable\n");
	t_put_file(root, "sys/devices/system/memory/memory81/valid_zones", "Normal\n");
	coh_context *c = tree_ctx(root);
	struct coh_frame_map m;
	ck_assert_int_eq(coh_frame_map_load(c, &m), 0);
	ck_assert(m.cma && m.cma_located && m.movable);
	ck_assert_int_eq(coh_frame_type(c, &m, 4096), COH_FRAME_PLAIN);
	ck_assert_int_eq(coh_frame_type(c, &m, 5120), COH_FRAME_CMA);
	ck_assert_int_eq(coh_frame_type(c, &m, 6143), COH_FRAME_CMA);
	ck_assert_int_eq(coh_frame_type(c, &m, 6144), COH_FRAME_PLAIN);
	ck_assert_int_eq(coh_frame_type(c, &m, 8192), COH_FRAME_MOVABLE);
	ck_assert_int_eq(coh_frame_type(c, &m, 12287), COH_FRAME_MOVABLE);
	ck_assert_int_eq(coh_frame_type(c, &m, 12288), COH_FRAME_PLAIN);
	ck_assert_int_eq(coh_frame_type(c, &m, 20480 + 5), COH_FRAME_MOVABLE);   /* memory80 */
	ck_assert_int_eq(coh_frame_type(c, &m, 16384), COH_FRAME_PLAIN);
	coh_frame_map_free(&m);
	coh_context_unref(c);
	/* CMA pageblocks (pagetypeinfo) that CmaTotal does not show, no debugfs: unknown, never plain */
	char root2[] = "/tmp/coh-pin-tree-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(root2));
	t_put_file(root2, "proc/zoneinfo", "Node 0, zone   Normal\n        spanned  4096\n        present  4096\n"
					 "  start_pfn:           4096\n");
	t_put_file(root2, "proc/meminfo", "MemTotal: 100 kB\nCmaTotal:              0 kB\n");
	t_put_file(root2, "proc/pagetypeinfo",
		 "Page block order: 9\nPages per block:  512\n\n"
		 "Number of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n"
		 "Node 0, zone   Normal          100          900           10            0            8            0 \n");
	c = tree_ctx(root2);
	ck_assert_int_eq(coh_frame_map_load(c, &m), 0);
	ck_assert(m.cma && !m.cma_located && !m.movable);
	ck_assert_int_eq(coh_frame_type(c, &m, 4096), COH_FRAME_UNKNOWN);
	coh_frame_map_free(&m);
	coh_context_unref(c);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf %s %s", root, root2);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

START_TEST(rules_for_frames)
{
	struct coh_vma rw = { .read = true, .write = true, .backing = COH_VMA_ANON };
	unsigned cma = COH_FRAME_CMA << COH_PAGE_FRAME_SHIFT, mov = COH_FRAME_MOVABLE << COH_PAGE_FRAME_SHIFT;
	unsigned unk = COH_FRAME_UNKNOWN << COH_PAGE_FRAME_SHIFT;
	struct coh_pin_verdict v = coh_pin_judge(ctx, &rw, COH_MEM_SYSTEM, 0, NULL, 0, 0);
	ck_assert(v.short_term == COH_PIN_IN_PLACE && v.long_term == COH_PIN_IN_PLACE);
	v = coh_pin_judge(ctx, &rw, COH_MEM_SYSTEM, 0, NULL, cma, 0);
	ck_assert(v.short_term == COH_PIN_IN_PLACE && v.long_term == COH_PIN_AFTER_MIGRATE);
	ck_assert_ptr_nonnull(strstr(v.reason, "ENOMEM"));   /* says what can make it fail */
	v = coh_pin_judge(ctx, &rw, COH_MEM_SYSTEM_THP, 0, NULL, mov, 0);
	ck_assert(v.short_term == COH_PIN_IN_PLACE && v.long_term == COH_PIN_AFTER_MIGRATE);
	v = coh_pin_judge(ctx, &rw, COH_MEM_SYSTEM, 0, NULL, unk, 0);
	ck_assert(v.short_term == COH_PIN_IN_PLACE && v.long_term == COH_PIN_UNKNOWN);
	/* a shared file mapping whose file system nobody could tell, on 6.5+: unknown, not never */
	struct coh_vma sf = { .read = true, .write = true, .shared = true, .backing = COH_VMA_FILE };
	int saved = ctx->kernel_version;
	ctx->kernel_version = 6005;
	v = coh_pin_judge(ctx, &sf, COH_MEM_FILE, 0, NULL, 0, COH_FS_UNKNOWN);
	ck_assert_int_eq(v.long_term, COH_PIN_UNKNOWN);
	v = coh_pin_judge(ctx, &sf, COH_MEM_FILE, 0, NULL, 0, COH_FS_OTHER);
	ck_assert_int_eq(v.long_term, COH_PIN_NEVER);
	v = coh_pin_judge(ctx, &sf, COH_MEM_FILE, 0, NULL, 0, COH_FS_NO_DIRTY_TRACKING);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	ctx->kernel_version = 6001;
	v = coh_pin_judge(ctx, &sf, COH_MEM_FILE, 0, NULL, 0, COH_FS_OTHER);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
	ctx->kernel_version = saved;
}
END_TEST

/* ---- real CMA and ZONE_MOVABLE frames (the VM: cma=, movablecore=) ---- */

/* The node holding frame pfn: its memory block's link under /sys/devices/system/node. */
static int node_of_pfn(uint64_t pfn)
{
	char buf[64], path[128];
	FILE *f = fopen("/sys/devices/system/memory/block_size_bytes", "r");
	if (!f)
		return -1;
	char *got = fgets(buf, sizeof(buf), f);
	fclose(f);
	uint64_t bs = got ? strtoull(buf, NULL, 16) : 0;
	if (!bs)
		return -1;
	for (int n = 0; n < 64; n++) {
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/memory%llu", n,
			 (unsigned long long)(pfn * ps / bs));
		if (access(path, F_OK) == 0)
			return n;
	}
	return -1;
}

/* Free memory of a node in bytes (its meminfo), 0 when unreadable. */
static uint64_t node_free(int node)
{
	char path[96], line[256];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	FILE *f = fopen(path, "r");
	uint64_t kb = 0;
	while (f && fgets(line, sizeof(line), f)) {
		char *p = strstr(line, "MemFree:");
		if (p)
			kb = strtoull(p + 8, NULL, 10);
	}
	if (f)
		fclose(f);
	return kb * 1024;
}

struct chunk {
	char *p;
	size_t len;
};

/* Fills node with written chunks until some page of one lies in a frame of the
 * type (at most until 48 MiB are left free): that chunk's index, or -1. */
static int fill_until(struct coh_frame_map *m, int node, int type, struct chunk *ch, int maxch, int *nch,
		      size_t *first)
{
	size_t clen = 16 << 20, np = clen / ps;
	uint64_t *pfn = calloc(np, 8);
	for (*nch = 0; *nch < maxch && node_free(node) > (48u << 20);) {
		char *p = mmap(NULL, clen, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		ck_assert_ptr_ne(p, MAP_FAILED);
		ck_assert_int_eq(coh_sys_mbind_node(p, clen, node, MPOL_BIND, 0), 0);
		madvise(p, clen, MADV_NOHUGEPAGE);
		memset(p, 0x6b, clen);
		ch[(*nch)++] = (struct chunk){ p, clen };
		if (pfns_of(p, np, pfn))
			break;
		for (size_t i = 0; i < np; i++)
			if (coh_frame_type(ctx, m, pfn[i]) == type) {
				*first = i;
				free(pfn);
				return *nch - 1;
			}
	}
	free(pfn);
	return -1;
}

/* Pages [first, first+n) of the chunk whose frames are all of the type; n at most max. */
static size_t run_of_type(struct coh_frame_map *m, const struct chunk *c, size_t first, int type, size_t max)
{
	uint64_t pfn[64];
	size_t n = 0;
	if (max > 64)
		max = 64;
	if (first + max > c->len / ps)
		max = c->len / ps - first;
	ck_assert_int_eq(pfns_of(c->p + first * ps, max, pfn), 0);
	while (n < max && coh_frame_type(ctx, m, pfn[n]) == type)
		n++;
	return n;
}

/* The pages sit in frames of the type: pin-query says after-migrate for long pins
 * (in place for short ones); a short pin leaves them, a long pin moves every one
 * out of such frames. */
static void frames_pin_check(struct coh_frame_map *m, char *p, size_t n, int type, const char *what)
{
	struct coh_pin_extent v = one_verdict(p, n * ps);
	ck_assert_msg(v.long_term == COH_PIN_AFTER_MIGRATE, "%s: long-term predicted %s (%s)", what,
		      coh_pin_answer_name(v.long_term), v.reason);
	ck_assert_int_eq(v.short_term, COH_PIN_IN_PLACE);
	check_short(p, n * ps, v.short_term, 1);
	check_long(p, n * ps, v.long_term);   /* every frame changed */
	uint64_t pfn[64];
	ck_assert_int_eq(pfns_of(p, n, pfn), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(coh_frame_type(ctx, m, pfn[i]) != type, "%s: page %zu still there after a long pin",
			      what, i);
	fprintf(stderr, "test_pin: %zu pages in %s frames: predicted after-migrate (%s); a long pin moved every one\n",
		n, what, v.reason);
	v = one_verdict(p, n * ps);
	ck_assert_int_eq(v.long_term, COH_PIN_IN_PLACE);
}

static void frames_case(int type, const char *what)
{
	struct coh_frame_map m;
	ck_assert_int_eq(coh_frame_map_load(ctx, &m), 0);
	uint64_t probe = 0;
	for (size_t i = 0; i < m.n; i++)
		if (m.r[i].type == type && !m.r[i].by_block)
			probe = m.r[i].start;
	uint64_t one;
	int node = probe ? node_of_pfn(probe) : -1;
	if (!probe || pfns_of(&one, 1, &one) == -EPERM || node < 0 || !longpin_available()) {
		fprintf(stderr, "test_pin: no %s memory here (or frames hidden, no io_uring): %s frames not checked\n",
			what, what);
		coh_frame_map_free(&m);
		return;
	}
	struct chunk ch[160];
	int nch = 0;
	size_t first = 0;
	int hit = fill_until(&m, node, type, ch, 160, &nch, &first);
	ck_assert_msg(hit >= 0, "node %d filled (%d chunks of 16 MiB) without a page in %s frames", node, nch, what);
	size_t n = run_of_type(&m, &ch[hit], first, type, 16);
	/* give the rest back: the long pin needs somewhere to migrate to */
	for (int i = 0; i < nch; i++)
		if (i != hit)
			munmap(ch[i].p, ch[i].len);
	fprintf(stderr, "test_pin: node %d: a page in %s frames after %d MiB\n", node, what, nch * 16);
	frames_pin_check(&m, ch[hit].p + first * ps, n, type, what);
	munmap(ch[hit].p, ch[hit].len);
	coh_frame_map_free(&m);
}

START_TEST(cma_frames)
{
	frames_case(COH_FRAME_CMA, "CMA");
}
END_TEST

START_TEST(movable_frames)
{
	frames_case(COH_FRAME_MOVABLE, "ZONE_MOVABLE");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("pin");
	TCase *tc = tcase_create("pin");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, system_populated);
	tcase_add_test(tc, not_populated);
	tcase_add_test(tc, huge_page);
	tcase_add_test(tc, prot_none);
	tcase_add_test(tc, read_only);
	tcase_add_test(tc, shared_anonymous);
	tcase_add_test(tc, shared_file);
	tcase_add_test(tc, unmapped);
	tcase_add_test(tc, mixed_range);
	tcase_add_test(tc, merging);
	tcase_add_test(tc, private_file_read_faulted);
	tcase_add_test(tc, cow_shared_with_child);
	tcase_add_test(tc, tmpfs_elsewhere);
	tcase_add_test(tc, hugetlb_shared);
	tcase_add_test(tc, frame_map_from_tree);
	tcase_add_test(tc, rules_for_frames);
	suite_add_tcase(s, tc);
	/* these fill a node until pages land in CMA or ZONE_MOVABLE: slow under TCG */
	TCase *fr = tcase_create("frames");
	tcase_add_checked_fixture(fr, setup, teardown);
	tcase_set_timeout(fr, 400);
	tcase_add_test(fr, cma_frames);
	tcase_add_test(fr, movable_frames);
	suite_add_tcase(s, fr);
	return t_run(s);
}
