/* SPDX-License-Identifier: MIT */
/* The host backend on the real kernel: discovery, allocation, data integrity,
 * migration, residency and pin queries, huge pages, adoption, advice, fork
 * policies with real forks, and several threads at once. */
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "internal.h"

static size_t ps;

static bool resident(const void *p)
{
	unsigned char v = 0;
	ck_assert_int_eq(mincore((void *)((uintptr_t)p & ~(ps - 1)), ps, &v), 0);
	return v & 1;
}

START_TEST(discovery)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	ck_assert_int_ge(coh_target_count(ctx), 1);
	ck_assert_str_eq(coh_target_backend(t), "host");
	ck_assert_int_eq(coh_target_numa_node(t), 0);
	ck_assert(coh_target_kind(t) == COH_KIND_HOST_NODE || coh_target_kind(t) == COH_KIND_CPULESS_NODE);
	uint64_t total = 0, free_b = 0;
	ck_assert_int_eq(coh_target_capacity(t, &total, &free_b), 0);
	ck_assert_uint_gt(total, 16u << 20);
	ck_assert_uint_le(free_b, total);
	uint64_t caps = coh_target_caps(t);
	uint64_t need = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_QUERY | COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY |
			COH_CAP_FORK_SHARE | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO | COH_CAP_FORK_KERNEL;
	ck_assert_uint_eq(caps & need, need);
	ck_assert_int_eq(coh_target_distance(t, t), 10);
	ck_assert_ptr_eq(coh_target_by_node(ctx, 0), t);
	ck_assert_ptr_eq(coh_target_get(ctx, (unsigned)coh_target_index(t)), t);
	ck_assert_ptr_eq(coh_target_context(t), ctx);
	int seen = 0;
	coh_target *it;
	coh_target_foreach(ctx, it) seen++;
	ck_assert_int_eq(seen, coh_target_count(ctx));
	coh_context_unref(ctx);
}
END_TEST

START_TEST(alloc_rw_lookup)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	unsigned char *p;
	int before = coh_alloc_count(ctx);
	ck_assert_int_eq(coh_alloc(t, 1000000, &COH_ALLOC_PROPS(.align = 1 << 20), (void **)&p), 0);
	ck_assert_uint_eq((uintptr_t)p % (1 << 20), 0);
	ck_assert_int_eq(coh_alloc_count(ctx), before + 1);
	for (size_t i = 0; i < 1000000; i++)
		p[i] = (unsigned char)(i * 7 + 3);
	for (size_t i = 0; i < 1000000; i++)
		ck_assert_uint_eq(p[i], (unsigned char)(i * 7 + 3));
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, p + 12345, &info), 0);
	ck_assert_ptr_eq(info.base, p);
	ck_assert_uint_eq(info.length, (1000000 + ps - 1) / ps * ps);
	ck_assert_ptr_eq(info.target, t);
	ck_assert_int_eq(info.adopted, 0);
	ck_assert_int_eq(info.fork_policy, COH_FORK_COPY);
	ck_assert_int_eq(coh_lookup(ctx, p + info.length - 1, &info), 0);
	ck_assert_int_eq(coh_lookup(ctx, p + info.length, &info), -ENOENT);
	ck_assert_int_eq(coh_lookup(ctx, p - 1, &info), -ENOENT);
	ck_assert_int_eq(coh_free(ctx, p + 1), -ENOENT);   /* interior pointer */
	ck_assert_int_eq(coh_free(ctx, p), 0);
	ck_assert_int_eq(coh_lookup(ctx, p, &info), -ENOENT);
	ck_assert_int_eq(coh_free(ctx, p), -ENOENT);       /* double free */
	ck_assert_int_eq(coh_alloc_count(ctx), before);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(populate_flag)
{
	coh_context *ctx = t_ctx();
	char *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 64 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_POPULATE | COH_ALLOC_NOHUGE), (void **)&p), 0);
	for (int i = 0; i < 64; i++)
		ck_assert(resident(p + (size_t)i * ps));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 64 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p), 0);
	ck_assert(!resident(p));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(query_extents)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	char *p;
	ck_assert_int_eq(coh_alloc(t, 64 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p), 0);
	memset(p, 1, 10 * ps);
	memset(p + 20 * ps, 1, 10 * ps);
	struct coh_extent ext[16];
	int n = coh_query(ctx, p, 64 * ps, ext, 16, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 4);
	ck_assert_uint_eq(ext[0].start, (uintptr_t)p);
	ck_assert_uint_eq(ext[0].length, 10 * ps);
	ck_assert_int_eq(ext[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(ext[0].node, t_node0_id(ctx));
	ck_assert_ptr_eq(ext[0].target, t);
	ck_assert_int_eq(ext[1].kind, COH_MEM_NOT_POPULATED);
	ck_assert_uint_eq(ext[1].length, 10 * ps);
	ck_assert_ptr_null(ext[1].target);
	ck_assert_int_eq(ext[2].kind, COH_MEM_SYSTEM);
	ck_assert_uint_eq(ext[2].start, (uintptr_t)p + 20 * ps);
	ck_assert_int_eq(ext[3].kind, COH_MEM_NOT_POPULATED);
	ck_assert_uint_eq(ext[3].start + ext[3].length, (uintptr_t)p + 64 * ps);
	/* the query itself populated nothing */
	ck_assert(!resident(p + 15 * ps));
	ck_assert(!resident(p + 40 * ps));
	/* cursor: two at a time */
	n = coh_query(ctx, p, 64 * ps, ext, 2, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	uintptr_t next = ext[1].start + ext[1].length;
	ck_assert_uint_eq(next, (uintptr_t)p + 20 * ps);
	n = coh_query(ctx, (void *)next, (uintptr_t)p + 64 * ps - next, ext, 2, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(ext[0].kind, COH_MEM_SYSTEM);
	/* unaligned byte ranges cover their pages */
	n = coh_query(ctx, p + 5, 1, ext, 16, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_uint_eq(ext[0].start, (uintptr_t)p);
	ck_assert_uint_eq(ext[0].length, ps);
	/* another pid: ourselves by number */
	n = coh_query_pid(ctx, getpid(), p, 64 * ps, ext, 16, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(query_unmapped_and_child)
{
	coh_context *ctx = t_ctx();
	char *p = mmap(NULL, 8 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 1, 8 * ps);
	munmap(p + 4 * ps, 4 * ps);
	struct coh_extent ext[8];
	int n = coh_query(ctx, p, 8 * ps, ext, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(ext[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(ext[1].kind, COH_MEM_UNMAPPED);
	ck_assert_uint_eq(ext[1].length, 4 * ps);
	/* file-backed pages */
	int fd = open("/proc/self/exe", O_RDONLY);
	char *f = mmap(NULL, ps, PROT_READ, MAP_PRIVATE, fd, 0);
	ck_assert_ptr_ne(f, MAP_FAILED);
	volatile char c = f[0];
	(void)c;
	n = coh_query(ctx, f, ps, ext, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(ext[0].kind, COH_MEM_FILE);
	munmap(f, ps);
	close(fd);
	/* a child's range, read from outside: its populated page shows up */
	int pfd[2];
	ck_assert_int_eq(pipe(pfd), 0);
	pid_t pid = fork();
	if (pid == 0) {
		char *q = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		q[0] = 1;
		if (write(pfd[1], &q, sizeof(q)) != sizeof(q))
			_exit(1);
		pause();
		_exit(0);
	}
	char *q;
	ck_assert_int_eq(read(pfd[0], &q, sizeof(q)), sizeof(q));
	n = coh_query_pid(ctx, pid, q, 4 * ps, ext, 8, sizeof(struct coh_extent));
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(ext[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(ext[0].node, t_node0_id(ctx));
	ck_assert_int_eq(ext[1].kind, COH_MEM_NOT_POPULATED);
	munmap(p, 4 * ps);
	coh_context_unref(ctx);
}
END_TEST

static bool thp_mode_allows_madvise(void)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
	if (!f)
		return false;
	if (!fgets(buf, sizeof(buf), f))
		buf[0] = '\0';
	fclose(f);
	return strstr(buf, "[always]") || strstr(buf, "[madvise]");
}

START_TEST(huge_pages)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	if (!thp_mode_allows_madvise() || !(coh_target_caps(t) & COH_CAP_HUGE_PAGES)) {
		fprintf(stderr, "huge_pages: transparent huge pages disabled here, checking refusal only\n");
		void *p;
		int e = coh_alloc(t, 4 << 20, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE), &p);
		ck_assert(e == -EOPNOTSUPP || e == 0);
		if (!e)
			coh_free(ctx, p);
		coh_context_unref(ctx);
		return;
	}
	char *p;
	ck_assert_int_eq(coh_alloc(t, 8 << 20, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE | COH_ALLOC_POPULATE), (void **)&p), 0);
	ck_assert_uint_eq((uintptr_t)p % (2 << 20), 0);
	struct coh_extent ext[8];
	int n = coh_query(ctx, p, 8 << 20, ext, 8, sizeof(struct coh_extent));
	ck_assert_int_ge(n, 1);
	size_t thp = 0;
	for (int i = 0; i < n; i++)
		if (ext[i].kind == COH_MEM_SYSTEM_THP)
			thp += ext[i].length;
	/* THP can fail to allocate under fragmentation; at least one huge page is expected here.
	 * Kernels before 6.7 have no PAGEMAP_SCAN: huge pages show as "system" there. */
	struct utsname u;
	int maj = 0, min = 0;
	if (uname(&u) == 0)
		sscanf(u.release, "%d.%d", &maj, &min);
	if (maj * 1000 + min >= 6007)
		ck_assert_uint_ge(thp, 2u << 20);
	else
		fprintf(stderr, "huge_pages: kernel %s reports huge pages as system memory\n", u.release);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* NOHUGE keeps small pages */
	ck_assert_int_eq(coh_alloc(t, 4 << 20, &COH_ALLOC_PROPS(.align = 2 << 20, .flags = COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE), (void **)&p), 0);
	n = coh_query(ctx, p, 4 << 20, ext, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(ext[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(migrate_sync_async)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	unsigned *p;
	size_t len = 256 * ps;
	ck_assert_int_eq(coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p), 0);
	for (size_t i = 0; i < len / 4 / 2; i++)
		p[i] = (unsigned)i ^ 0xabcdef;
	ck_assert_int_eq(coh_migrate(ctx, p, len, t, 0), 0);
	for (size_t i = 0; i < len / 4 / 2; i++)
		ck_assert_uint_eq(p[i], (unsigned)i ^ 0xabcdef);
	struct coh_extent ext[4];
	int n = coh_query(ctx, p, len, ext, 4, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(ext[0].node, t_node0_id(ctx));
	ck_assert_int_eq(ext[1].kind, COH_MEM_NOT_POPULATED);   /* migrate populates nothing */
	/* part of the range */
	ck_assert_int_eq(coh_migrate(ctx, (char *)p + ps, 2 * ps, t, 0), 0);
	/* refused: unaligned, past the end, unknown, bad flags */
	ck_assert_int_eq(coh_migrate(ctx, (char *)p + 1, ps, t, 0), -EINVAL);
	ck_assert_int_eq(coh_migrate(ctx, p, len + ps, t, 0), -EINVAL);
	ck_assert_int_eq(coh_migrate(ctx, p, len, t, 0x80), -EINVAL);
	coh_migration *m;
	ck_assert_int_eq(coh_migrate_async(ctx, p, len, t, 0, &m), 0);
	int e = coh_migration_wait(m, 10000);
	ck_assert_int_eq(e, 0);
	ck_assert_int_eq(coh_migration_test(m), 0);
	coh_migration_free(m);
	/* free without waiting: the handle waits itself */
	ck_assert_int_eq(coh_migrate_async(ctx, p, len, t, 0, &m), 0);
	coh_migration_free(m);
	for (size_t i = 0; i < len / 4 / 2; i++)
		ck_assert_uint_eq(p[i], (unsigned)i ^ 0xabcdef);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(adopt_release)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	char *p = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	memset(p, 0x5a, 16 * ps);
	ck_assert_int_eq(coh_adopt(t, p, 16 * ps, NULL), 0);
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, p + 3 * ps, &info), 0);
	ck_assert_int_eq(info.adopted, 1);
	ck_assert_int_eq(coh_adopt(t, p, 16 * ps, NULL), -EEXIST);
	ck_assert_int_eq(coh_adopt(t, p + 8 * ps, 4 * ps, NULL), -EEXIST);
	ck_assert_int_eq(coh_free(ctx, p), -EINVAL);          /* adopted memory is not ours to free */
	ck_assert_int_eq(coh_migrate(ctx, p, 16 * ps, t, 0), 0);
	for (size_t i = 0; i < 16 * ps; i++)
		ck_assert_uint_eq((unsigned char)p[i], 0x5a);
	ck_assert_int_eq(coh_release(ctx, p + ps), -ENOENT);
	ck_assert_int_eq(coh_release(ctx, p), 0);
	ck_assert_int_eq(coh_release(ctx, p), -ENOENT);
	ck_assert_int_eq(coh_lookup(ctx, p, &info), -ENOENT);
	ck_assert_uint_eq((unsigned char)p[5], 0x5a);          /* still the caller's memory */
	/* not adoptable: holes, files, shared memory, allocations */
	munmap(p + 8 * ps, ps);
	ck_assert_int_eq(coh_adopt(t, p, 16 * ps, NULL), -EFAULT);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	int fd = open("/proc/self/exe", O_RDONLY);
	char *f = mmap(NULL, ps, PROT_READ, MAP_PRIVATE, fd, 0);
	ck_assert_int_eq(coh_adopt(t, f, ps, NULL), -EOPNOTSUPP);
	munmap(f, ps);
	close(fd);
	char *s = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_int_eq(coh_adopt(t, s, ps, NULL), -EOPNOTSUPP);
	munmap(s, ps);
	/* a private mapping of /dev/zero is anonymous memory: queried and adopted as such */
	int zfd = open("/dev/zero", O_RDWR);
	ck_assert_int_ge(zfd, 0);
	char *z = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE, zfd, 0);
	ck_assert_ptr_ne(z, MAP_FAILED);
	close(zfd);
	memset(z, 0x33, 2 * ps);   /* written pages only: untouched ones may read-fault differently */
	struct coh_extent x[4];
	ck_assert_int_ge(coh_query(ctx, z, 2 * ps, x, 4, sizeof(struct coh_extent)), 1);
	ck_assert_str_eq(coh_mem_kind_name(x[0].kind), "system");
	ck_assert_uint_eq(x[0].length, 2 * ps);
	ck_assert_int_eq(coh_adopt(t, z, 4 * ps, NULL), 0);
	ck_assert_int_eq(coh_release(ctx, z), 0);
	munmap(z, 4 * ps);
	void *a;
	ck_assert_int_eq(coh_alloc(t, 4 * ps, NULL, &a), 0);
	ck_assert_int_eq(coh_adopt(t, a, 4 * ps, NULL), -EEXIST);
	ck_assert_int_eq(coh_release(ctx, a), -EINVAL);       /* allocations are freed, not released */
	ck_assert_int_eq(coh_free(ctx, a), 0);
	munmap(p, 16 * ps);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(advice)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	void *p;
	ck_assert_int_eq(coh_alloc(t, 8 * ps, NULL, &p), 0);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, COH_ADVISE_PREFERRED_LOCATION, t), 0);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, COH_ADVISE_UNSET_PREFERRED_LOCATION, NULL), 0);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, COH_ADVISE_ACCESSED_BY, t), -EOPNOTSUPP);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, COH_ADVISE_READ_MOSTLY, NULL), -EOPNOTSUPP);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, COH_ADVISE_PREFERRED_LOCATION, NULL), -EINVAL);
	ck_assert_int_eq(coh_advise(ctx, p, 8 * ps, 99, t), -EINVAL);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(pin_query_host)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	char *p;
	ck_assert_int_eq(coh_alloc(t, 8 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p), 0);
	memset(p, 1, 4 * ps);
	struct coh_pin_extent pe[8];
	int n = coh_pin_query(ctx, p, 8 * ps, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 2);
	ck_assert_int_eq(pe[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(pe[0].short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[0].long_term, COH_PIN_IN_PLACE);
	ck_assert_ptr_nonnull(pe[0].reason);
	ck_assert_int_eq(pe[1].kind, COH_MEM_NOT_POPULATED);
	ck_assert_int_eq(pe[1].long_term, COH_PIN_IN_PLACE);
	/* PROT_NONE and read-only parts of the same allocation */
	ck_assert_int_eq(mprotect(p + 6 * ps, 2 * ps, PROT_NONE), 0);
	ck_assert_int_eq(mprotect(p + 2 * ps, 2 * ps, PROT_READ), 0);
	n = coh_pin_query(ctx, p, 8 * ps, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(pe[1].long_term, COH_PIN_NEVER);        /* read-only */
	ck_assert_int_eq(pe[1].short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[3].short_term, COH_PIN_NEVER);       /* PROT_NONE */
	ck_assert_uint_eq(pe[3].start, (uintptr_t)p + 6 * ps);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	n = coh_pin_query(ctx, p, 8 * ps, pe, 8, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(pe[0].kind, COH_MEM_UNMAPPED);
	ck_assert_int_eq(pe[0].long_term, COH_PIN_NEVER);
	coh_context_unref(ctx);
}
END_TEST

/* Forks, lets the child run fn, returns its wait status. */
static int in_child(int (*fn)(void *), void *arg)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(arg));
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	return st;
}

static int child_reads_pattern(void *arg)
{
	const unsigned char *p = arg;
	for (size_t i = 0; i < 4 * ps; i++)
		if (p[i] != (unsigned char)(i & 0xff))
			return 1;
	memset(arg, 0xee, ps);   /* private: invisible to the parent */
	return 0;
}
static int child_reads_zero(void *arg)
{
	const unsigned char *p = arg;
	for (size_t i = 0; i < 4 * ps; i++)
		if (p[i])
			return 1;
	return 0;
}
static int child_touches(void *arg)
{
	signal(SIGSEGV, SIG_DFL);   /* sanitizers catch it otherwise: the test wants the kernel's verdict */
	return *(volatile unsigned char *)arg;   /* SIGSEGV when the mapping is absent */
}
static int child_writes(void *arg)
{
	memset(arg, 0x77, ps);
	return 0;
}

static unsigned char *pattern_alloc(coh_context *ctx, int policy)
{
	unsigned char *p;
	int e = coh_alloc(t_node0(ctx), 4 * ps, &COH_ALLOC_PROPS(.fork_policy = policy), (void **)&p);
	ck_assert_msg(e == 0, "alloc with policy %s: %s", coh_fork_policy_name(policy), coh_strerror(e));
	for (size_t i = 0; i < 4 * ps; i++)
		p[i] = (unsigned char)(i & 0xff);
	ck_assert_int_eq(coh_fork_policy_get(ctx, p), policy);
	return p;
}

START_TEST(fork_policies)
{
	coh_context *ctx = t_ctx();
	struct coh_extent before[4], after[4];
	/* COPY: same contents in the child, parent unchanged, residency kept */
	unsigned char *p = pattern_alloc(ctx, COH_FORK_COPY);
	int nb = coh_query(ctx, p, 4 * ps, before, 4, sizeof(struct coh_extent));
	int st = in_child(child_reads_pattern, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(p[0], 0);
	ck_assert_uint_eq(p[1], 1);
	int na = coh_query(ctx, p, 4 * ps, after, 4, sizeof(struct coh_extent));
	ck_assert_int_eq(na, nb);
	ck_assert_int_eq(after[0].kind, before[0].kind);
	ck_assert_int_eq(after[0].node, before[0].node);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* KERNEL: the kernel's own CoW on host memory */
	p = pattern_alloc(ctx, COH_FORK_KERNEL);
	st = in_child(child_reads_pattern, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* SHARE: the child's writes reach the parent */
	p = pattern_alloc(ctx, COH_FORK_SHARE);
	st = in_child(child_writes, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(p[100], 0x77);
	ck_assert_uint_eq(p[ps + 1], 1);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_ZERO), -EOPNOTSUPP);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_COPY), -EOPNOTSUPP);
	/* shared memory can be excluded, and shared again */
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_EXCLUDE), 0);
	st = in_child(child_touches, p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_SHARE), 0);
	p[5] = 0;
	st = in_child(child_writes, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(p[5], 0x77);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* EXCLUDE: no mapping in the child */
	p = pattern_alloc(ctx, COH_FORK_EXCLUDE);
	st = in_child(child_touches, p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* ZERO: zero-filled at the same address */
	p = pattern_alloc(ctx, COH_FORK_ZERO);
	st = in_child(child_reads_zero, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_uint_eq(p[1], 1);
	/* changed later: ZERO -> EXCLUDE -> COPY */
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_EXCLUDE), 0);
	st = in_child(child_touches, p);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_COPY), 0);
	ck_assert_int_eq(coh_fork_policy_get(ctx, p), COH_FORK_COPY);
	st = in_child(child_reads_pattern, p);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* private memory cannot start sharing */
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_SHARE), -EOPNOTSUPP);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 2 * ps, COH_FORK_ZERO), -EINVAL);  /* part of it */
	ck_assert_int_eq(coh_fork_policy_get(ctx, p), COH_FORK_COPY);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* The same policies on transparent huge pages (2 MiB aligned, populated). */
START_TEST(fork_policies_thp)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	if (!(coh_target_caps(t) & COH_CAP_HUGE_PAGES)) {
		fprintf(stderr, "fork_policies_thp: no transparent huge pages here\n");
		coh_context_unref(ctx);
		return;
	}
	static const int pols[] = { COH_FORK_COPY, COH_FORK_EXCLUDE, COH_FORK_ZERO, COH_FORK_SHARE };
	for (size_t k = 0; k < 4; k++) {
		unsigned char *p;
		size_t len = 4u << 20;
		ck_assert_int_eq(coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE, .fork_policy = pols[k]), (void **)&p), 0);
		for (size_t i = 0; i < 4 * ps; i++)
			p[i] = (unsigned char)(i & 0xff);
		memset(p + 4 * ps, 1, len - 4 * ps);
		int st;
		switch (pols[k]) {
		case COH_FORK_COPY:
			st = in_child(child_reads_pattern, p);
			ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			ck_assert_uint_eq(p[1], 1);
			break;
		case COH_FORK_EXCLUDE:
			st = in_child(child_touches, p);
			ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
			break;
		case COH_FORK_ZERO:
			st = in_child(child_reads_zero, p);
			ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			break;
		default:
			st = in_child(child_writes, p);
			ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
			ck_assert_uint_eq(p[3], 0x77);
		}
		ck_assert_int_eq(coh_free(ctx, p), 0);
	}
	coh_context_unref(ctx);
}
END_TEST

START_TEST(fork_query_views)
{
	coh_context *ctx = t_ctx();
	/* memory libcoherent does not manage: the kernel's VMA flags answer */
	char *m = mmap(NULL, 16 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(m, 1, 16 * ps);
	ck_assert_int_eq(madvise(m + 4 * ps, 4 * ps, MADV_DONTFORK), 0);
	ck_assert_int_eq(madvise(m + 8 * ps, 4 * ps, MADV_WIPEONFORK), 0);
	struct coh_fork_extent fe[8];
	int n = coh_fork_query(ctx, m, 16 * ps, fe, 8, sizeof(struct coh_fork_extent));
	ck_assert_int_eq(n, 4);
	ck_assert_int_eq(fe[0].policy, -1);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_COPY);
	ck_assert_int_eq(fe[0].parent_keeps, 1);
	ck_assert_int_eq(fe[1].child_view, COH_CHILD_ABSENT);
	ck_assert_uint_eq(fe[1].start, (uintptr_t)m + 4 * ps);
	ck_assert_int_eq(fe[2].child_view, COH_CHILD_ZERO);
	ck_assert_int_eq(fe[3].child_view, COH_CHILD_COPY);
	ck_assert_ptr_nonnull(fe[3].reason);
	/* the answers hold in a real child */
	int st = in_child(child_reads_zero, m + 8 * ps);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	st = in_child(child_touches, m + 4 * ps);
	ck_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);
	munmap(m, 16 * ps);
	/* an allocation reports its policy; a policy change shows at once */
	unsigned char *p = pattern_alloc(ctx, COH_FORK_ZERO);
	n = coh_fork_query(ctx, p, 4 * ps, fe, 8, sizeof(struct coh_fork_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(fe[0].policy, COH_FORK_ZERO);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_ZERO);
	ck_assert_int_eq(coh_fork_policy_set(ctx, p, 4 * ps, COH_FORK_EXCLUDE), 0);
	n = coh_fork_query(ctx, p, 4 * ps, fe, 8, sizeof(struct coh_fork_extent));
	ck_assert_int_eq(fe[0].policy, COH_FORK_EXCLUDE);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_ABSENT);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* unmapped */
	n = coh_fork_query(ctx, p, 4 * ps, fe, 8, sizeof(struct coh_fork_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_ABSENT);
	ck_assert_int_eq(fe[0].parent_keeps, -1);
	coh_context_unref(ctx);
}
END_TEST

/* A fork child has no mapping where the parent's EXCLUDE ranges are: the
 * library must not remember them there.  The child maps its own memory into
 * the hole; lookups, frees and the context's unref must leave it alone. */
static int child_reuses_excluded_hole(void *arg)
{
	void **a = arg;
	coh_context *ctx = a[0];
	unsigned char *p = a[1];
	struct coh_alloc_info info = { .size = sizeof(info) };
	if (coh_lookup(ctx, p, &info) != -ENOENT)
		return 10;   /* a record of memory the child does not have */
	void **many = a[2];
	for (int i = 0; i < 300; i++) {
		/* even ones COPY (kept), odd ones EXCLUDE (dropped), over several map leaves */
		int e = coh_lookup(ctx, many[i], &info);
		if (i % 2 ? e != -ENOENT : (e || info.base != many[i]))
			return 11;
	}
	if (coh_alloc_count(ctx) != 150)
		return 16;
	void *mine = mmap(p, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (mine != p)
		return 12;   /* the kernel left the child nothing there, so this must work */
	memset(mine, 0x3c, 4 * ps);
	if (coh_free(ctx, p) != -ENOENT)
		return 13;
	void *q;
	if (coh_alloc(t_node0(ctx), ps, NULL, &q) || coh_free(ctx, q))
		return 14;   /* the map is usable after the drop */
	coh_context_unref(ctx);   /* must not unmap the child's own memory */
	for (size_t i = 0; i < 4 * ps; i++)
		if (p[i] != 0x3c)
			return 15;
	return 0;
}

START_TEST(fork_child_forgets_excluded)
{
	coh_context *ctx = t_ctx();
	unsigned char *p = pattern_alloc(ctx, COH_FORK_EXCLUDE);
	void *many[300];
	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(coh_alloc(t_node0(ctx), ps, &COH_ALLOC_PROPS(.fork_policy = i % 2 ? COH_FORK_EXCLUDE : COH_FORK_COPY),
					   &many[i]), 0);
	void *arg[3] = { ctx, p, many };
	int st = in_child(child_reuses_excluded_hole, arg);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	for (int i = 0; i < 300; i++)
		ck_assert_int_eq(coh_free(ctx, many[i]), 0);
	/* the parent keeps its record and its data */
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, p + 5, &info), 0);
	ck_assert_ptr_eq(info.base, p);
	ck_assert_int_eq(p[5], 5);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* vfork and posix_spawn run no fork handlers and apply no policy: a vfork
 * child shares the parent's memory, EXCLUDE ranges included. */
START_TEST(vfork_and_spawn_untouched)
{
	coh_context *ctx = t_ctx();
	unsigned char *p = pattern_alloc(ctx, COH_FORK_EXCLUDE);
	pid_t pid;
	int st;
#ifndef __SANITIZE_THREAD__
	volatile int seen = -1;
	pid = vfork();
	if (pid == 0) {
		seen = p[1];   /* same address space: the EXCLUDE range is there */
		_exit(0);
	}
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	ck_assert_int_eq(seen, 1);
#else
	fprintf(stderr, "vfork part skipped: ThreadSanitizer turns vfork() into fork()\n");
#endif
	extern char **environ;
	char *argv[] = { "true", NULL };
	ck_assert_int_eq(posix_spawnp(&pid, "true", NULL, NULL, argv, environ), 0);
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	/* the map lock is free afterwards: the library still works */
	void *q;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), ps, NULL, &q), 0);
	ck_assert_int_eq(coh_free(ctx, q), 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* ---- threads ---- */

struct worker {
	coh_context *ctx;
	coh_target *t;
	int iters;
	int errors;
	char first[96];   /* the first error seen */
};

#define WORKER_ERR(w, ...)                                                      \
	do {                                                                    \
		if (!(w)->errors++)                                             \
			snprintf((w)->first, sizeof((w)->first), __VA_ARGS__);  \
	} while (0)

static void *worker_fn(void *arg)
{
	struct worker *w = arg;
	struct coh_alloc_info info = { .size = sizeof(info) };
	void *mine[8] = { 0 };
	for (int i = 0; i < w->iters; i++) {
		int k = i % 8;
		int e;
		if (mine[k]) {
			if ((e = coh_lookup(w->ctx, (char *)mine[k] + 17, &info)) || info.base != mine[k])
				WORKER_ERR(w, "lookup: %d", e);
			if ((e = coh_free(w->ctx, mine[k])))
				WORKER_ERR(w, "free: %d", e);
			mine[k] = NULL;
		} else {
			if ((e = coh_alloc(w->t, ps * (1 + (size_t)k), NULL, &mine[k])))
				WORKER_ERR(w, "alloc: %d", e);
			else
				memset(mine[k], k, ps);
		}
		if (i % 64 == 0 && mine[k]) {
			struct coh_extent x[4];
			if ((e = coh_query(w->ctx, mine[k], ps, x, 4, sizeof(struct coh_extent))) != 1)
				WORKER_ERR(w, "query: %d (%s node %d)", e, coh_mem_kind_name(x[0].kind), x[0].node);
		}
	}
	for (int k = 0; k < 8; k++)
		if (mine[k] && coh_free(w->ctx, mine[k]))
			WORKER_ERR(w, "final free");
	return NULL;
}

static int child_uses_library(void *arg)
{
	coh_context *ctx = arg;
	void *p;
	struct coh_alloc_info info = { .size = sizeof(info) };
	if (!T_FORK_CHILD_MAY_MALLOC)   /* the map's lock alone (tests/common.h) */
		return coh_lookup(ctx, (void *)0x1000, &info) == -ENOENT && coh_alloc_count(ctx) >= 0 ? 0 : 4;
	if (coh_alloc(t_node0(ctx), ps, NULL, &p))
		return 1;
	if (coh_lookup(ctx, p, &info))
		return 2;
	return coh_free(ctx, p) ? 3 : 0;
}

START_TEST(threads_and_fork)
{
	coh_context *ctx = t_ctx();
	enum { NT = 4 };
	pthread_t th[NT];
	struct worker w[NT];
	for (int i = 0; i < NT; i++) {
		w[i] = (struct worker){ .ctx = ctx, .t = t_node0(ctx), .iters = 3000 };
		ck_assert_int_eq(pthread_create(&th[i], NULL, worker_fn, &w[i]), 0);
	}
	/* fork repeatedly while the workers hold and release the map's lock */
	for (int f = 0; f < 20; f++) {
		int st = in_child(child_uses_library, ctx);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %d", st);
	}
	for (int i = 0; i < NT; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(w[i].errors == 0, "worker %d: %d errors, first: %s", i, w[i].errors, w[i].first);
	}
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	coh_context_unref(ctx);
}
END_TEST

/* Lock-free lookups racing a writer that swaps two layouts over the same
 * pages: every answer is one of the two layouts, never a torn mix. */
struct racer {
	coh_context *ctx;
	char *p;
	atomic_int stop;
	long hits, torn;
};

static void *lookup_racer(void *arg)
{
	struct racer *r = arg;
	struct coh_alloc_info info = { .size = sizeof(info) };
	while (!atomic_load(&r->stop)) {
		if (coh_lookup(r->ctx, r->p + 2 * ps + 5, &info) == 0) {
			r->hits++;
			bool a = info.base == r->p && info.length == 4 * ps;
			bool b = info.base == r->p + ps && info.length == 2 * ps;
			if (!a && !b)
				r->torn++;
		}
	}
	return NULL;
}

START_TEST(lookup_consistent_under_writes)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	char *p = mmap(NULL, 4 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(p, MAP_FAILED);
	struct racer r = { .ctx = ctx, .p = p };
	atomic_init(&r.stop, 0);
	pthread_t th;
	ck_assert_int_eq(pthread_create(&th, NULL, lookup_racer, &r), 0);
	for (int i = 0; i < 2000; i++) {
		char *base = i % 2 ? p + ps : p;
		size_t len = i % 2 ? 2 * ps : 4 * ps;
		ck_assert_int_eq(coh_adopt(t, base, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_KERNEL)), 0);
		ck_assert_int_eq(coh_release(ctx, base), 0);
	}
	atomic_store(&r.stop, 1);
	pthread_join(th, NULL);
	ck_assert_msg(r.torn == 0, "%ld of %ld lookups saw a torn entry", r.torn, r.hits);
	munmap(p, 4 * ps);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(busy_while_in_use)
{
	coh_context *ctx = t_ctx();
	void *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 4 * ps, NULL, &p), 0);
	struct coh_rec *r;   /* what a migration in flight holds */
	ck_assert_int_eq(coh_rec_get(ctx, p, ps, &r), 0);
	ck_assert_int_eq(coh_free(ctx, p), -EBUSY);
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, p, &info), 0);   /* still there */
	coh_rec_put(r);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(unref_frees_live)
{
	coh_context *ctx = t_ctx();
	void *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 16 * ps, NULL, &p), 0);
	coh_context_unref(ctx);   /* the last reference unmaps what is left */
	unsigned char v;
	ck_assert_int_eq(mincore(p, ps, &v), -1);
}
END_TEST

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	Suite *s = suite_create("host");
	TCase *tc = tcase_create("host");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, discovery);
	tcase_add_test(tc, alloc_rw_lookup);
	tcase_add_test(tc, populate_flag);
	tcase_add_test(tc, query_extents);
	tcase_add_test(tc, query_unmapped_and_child);
	tcase_add_test(tc, huge_pages);
	tcase_add_test(tc, migrate_sync_async);
	tcase_add_test(tc, adopt_release);
	tcase_add_test(tc, advice);
	tcase_add_test(tc, pin_query_host);
	tcase_add_test(tc, fork_policies);
	tcase_add_test(tc, fork_policies_thp);
	tcase_add_test(tc, fork_query_views);
	tcase_add_test(tc, fork_child_forgets_excluded);
	tcase_add_test(tc, vfork_and_spawn_untouched);
	tcase_add_test(tc, threads_and_fork);
	tcase_add_test(tc, lookup_consistent_under_writes);
	tcase_add_test(tc, busy_while_in_use);
	tcase_add_test(tc, unref_frees_live);
	suite_add_tcase(s, tc);
	return t_run(s);
}
