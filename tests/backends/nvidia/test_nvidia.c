/* SPDX-License-Identifier: MIT */
/*
 * The nvidia backend end to end against the CUDA driver double
 * (tests/doubles/cudadouble, loaded through COH_CUDA_LIBRARY): discovery, managed
 * allocation, migration sync and async, per-page residency, pin- and
 * fork-queries, the fork policies with real forks, pageable memory (HMM) mode,
 * and the driver's failures reaching the caller with nothing changed.
 * Check runs each test in its own process, so each may set the double's
 * environment before its first context.
 */
#include <dirent.h>
#include <dlfcn.h>
#include <poll.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

typedef int CUresult;

static size_t ps;
static void *dbl;   /* the double, for its control calls */

static void (*d_fail)(const char *entry, int nth, int result);
static long (*d_calls)(const char *entry);
static int (*d_state)(const void *addr);
static long (*d_faultbacks)(void);

static coh_context *nv_ctx(void)
{
	const char *lib = getenv("COH_CUDA_LIBRARY");
	ck_assert_msg(lib && *lib, "COH_CUDA_LIBRARY must name the driver double");
	dbl = dlopen(lib, RTLD_NOW | RTLD_LOCAL);
	ck_assert_msg(dbl != NULL, "dlopen %s: %s", lib, dlerror());
	d_fail = (void (*)(const char *, int, int))dlsym(dbl, "cudadouble_fail");
	d_calls = (long (*)(const char *))dlsym(dbl, "cudadouble_calls");
	d_state = (int (*)(const void *))dlsym(dbl, "cudadouble_page_state");
	d_faultbacks = (long (*)(void))dlsym(dbl, "cudadouble_faultbacks");
	ck_assert(d_fail && d_calls && d_state && d_faultbacks);
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "nvidia,host", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static coh_target *gpu(coh_context *ctx, int i)
{
	char name[32];
	snprintf(name, sizeof(name), "nvidia:gpu%d", i);
	coh_target *t = coh_target_find(ctx, name);
	ck_assert_msg(t != NULL, "%s not discovered", name);
	return t;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 13 + seed);
}

static bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 13 + seed))
			return false;
	return true;
}

/* Every page of [p, p+len) in the double's state st. */
static bool all_state(const void *p, size_t len, int st)
{
	for (size_t o = 0; o < len; o += ps)
		if (d_state((const char *)p + o) != st)
			return false;
	return true;
}

/* The whole range one extent of kind on target t. */
static bool one_extent(coh_context *ctx, const void *p, size_t len, int kind, const coh_target *t)
{
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	return n == 1 && x[0].kind == kind && x[0].target == t && x[0].length == len;
}

START_TEST(unavailable_says_why)
{
	setenv("COH_CUDA_LIBRARY", "/nonexistent/libcuda.so.1", 1);
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "nvidia,host", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	char why[192];
	ck_assert_int_eq(coh_backend_status(ctx, "nvidia", why, sizeof(why)), 0);
	ck_assert_msg(strstr(why, "cannot load /nonexistent/libcuda.so.1"), "note: %s", why);
	ck_assert_ptr_null(coh_target_find(ctx, "nvidia:gpu0"));
	ck_assert_int_eq(coh_backend_status(ctx, "amd", why, sizeof(why)), -ENOENT);
	ck_assert_int_ge(coh_backend_status(ctx, "host", why, sizeof(why)), 1);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(discovery)
{
	setenv("CUDADOUBLE_DEVICES", "2", 1);
	coh_context *ctx = nv_ctx();
	char why[192];
	ck_assert_int_eq(coh_backend_status(ctx, "nvidia", why, sizeof(why)), 2);
	ck_assert_msg(strstr(why, "2 GPU(s)"), "note: %s", why);
	for (int i = 0; i < 2; i++) {
		coh_target *t = gpu(ctx, i);
		ck_assert_int_eq(coh_target_kind(t), COH_KIND_VENDOR_MANAGED);
		ck_assert_str_eq(coh_target_vendor(t), "NVIDIA");
		ck_assert_msg(strstr(coh_target_model(t), "managed memory"), "model %s", coh_target_model(t));
		char pci[16];
		snprintf(pci, sizeof(pci), "0000:%02x:00.0", 0x10 + i);
		ck_assert_str_eq(coh_target_pci_address(t), pci);
		/* identity as data: the driver's UUID and PCI address */
		struct coh_device_info d = { .size = sizeof(d) };
		ck_assert_int_eq(coh_target_device(t, &d), 0);
		ck_assert_uint_eq(d.status & (COH_DEVICE_HAS_UUID | COH_DEVICE_HAS_PCI | COH_DEVICE_UNVERIFIED),
				  COH_DEVICE_HAS_UUID | COH_DEVICE_HAS_PCI);
		ck_assert_uint_eq(d.pci_bus, 0x10 + i);
		ck_assert_int_eq(d.memory_model, COH_MODEL_MANAGED);
		static const uint8_t zero[16];
		ck_assert(memcmp(d.uuid, zero, sizeof(zero)) != 0);
		ck_assert_int_eq(coh_target_numa_node(t), -ENOENT);
		uint64_t total = 0, free_b = 0;
		ck_assert_int_eq(coh_target_capacity(t, &total, &free_b), 0);
		ck_assert_uint_eq(total, 1024ull << 20);
		ck_assert_uint_eq(free_b, total);
		uint64_t caps = coh_target_caps(t);
		uint64_t need = COH_CAP_ALLOC | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_ADVISE | COH_CAP_QUERY |
				COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
				COH_CAP_FORK_KERNEL;
		ck_assert_uint_eq(caps & need, need);
		ck_assert_uint_eq(caps & COH_CAP_FORK_SHARE, 0);   /* no child can use managed memory */
		ck_assert(caps & COH_CAP_ADOPT);   /* managed memory of the application, even without HMM */
	}
	coh_context_unref(ctx);
}
END_TEST

START_TEST(alloc_query_faultback)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	size_t len = 64 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	ck_assert(all_state(p, len, 0));   /* made on the GPU */
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, g));
	uint64_t total, free_b;
	ck_assert_int_eq(coh_target_capacity(g, &total, &free_b), 0);
	ck_assert_uint_eq(free_b, total - len);
	/* the CPU writes the first half: those pages come to the host */
	long fb = d_faultbacks();
	fill(p, len / 2, 1);
	ck_assert_int_eq(d_faultbacks() - fb, 32);
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	ck_assert(x[0].kind == COH_MEM_VENDOR_MANAGED && x[0].target == h && x[0].length == len / 2 && x[0].node == 0);
	ck_assert(x[1].kind == COH_MEM_VENDOR_MANAGED && x[1].target == g && x[1].length == len / 2 && x[1].node == -1);
	/* a query from the middle, and a cursor smaller than the answer */
	ck_assert_int_eq(coh_query(ctx, p + len / 4, len / 2, x, 1, sizeof(struct coh_extent)), 1);
	ck_assert(x[0].start == (uintptr_t)p + len / 4 && x[0].length == len / 4 && x[0].target == h);
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_lookup(ctx, p + 5, &info), 0);
	ck_assert(info.base == p && info.target == g);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	ck_assert_int_eq(coh_free(ctx, p), -ENOENT);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(migrate_and_back)
{
	setenv("CUDADOUBLE_DEVICES", "2", 1);
	coh_context *ctx = nv_ctx();
	coh_target *g0 = gpu(ctx, 0), *g1 = gpu(ctx, 1), *h = coh_target_by_node(ctx, 0);
	size_t len = 128 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g0, len, NULL, (void **)&p), 0);
	fill(p, len, 2);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g0, 0), 0);
	ck_assert(all_state(p, len, 0));
	ck_assert_int_eq(coh_migrate(ctx, p, len, g1, 0), 0);
	ck_assert(all_state(p, len, 1));
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, g1));
	ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
	ck_assert(all_state(p, len, -1));
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, h));
	long fb = d_faultbacks();
	ck_assert(same(p, len, 2));
	ck_assert_int_eq(d_faultbacks(), fb);   /* already on the host: no fault */
	/* a part only */
	ck_assert_int_eq(coh_migrate(ctx, p + 32 * ps, 32 * ps, g0, 0), 0);
	struct coh_extent x[8];
	ck_assert_int_eq(coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent)), 3);
	ck_assert(x[1].target == g0 && x[1].length == 32 * ps);
	/* asynchronous: the handle is the driver's event */
	coh_migration *m;
	ck_assert_int_eq(coh_migrate_async(ctx, p, len, g1, 0, &m), 0);
	ck_assert_int_eq(coh_migration_wait(m, -1), 0);
	ck_assert_int_eq(coh_migration_test(m), 0);
	coh_migration_free(m);
	ck_assert(all_state(p, len, 1));
	ck_assert_int_ge(d_calls("cuEventRecord"), 1);
	/* destinations it cannot reach */
	ck_assert_int_eq(coh_migrate(ctx, p + 1, ps, g0, 0), -EINVAL);
	ck_assert(same(p, len, 2));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* nvidia.prefer=1: the preferred location follows the destination, set only
 * when it changes (repeated migrations to the same place advise once); off by
 * default, and then the target does not claim COH_CAP_MIGRATE_STICKY. */
static long advises(void)
{
	return d_calls("cuMemAdvise_v2") + d_calls("cuMemAdvise");
}

START_TEST(migrate_prefers_once)
{
	setenv("CUDADOUBLE_DEVICES", "1", 1);
	size_t len = 64 * ps;
	unsigned char *p;

	/* by default: plain prefetches, and the target does not claim the cap */
	coh_context *ctx = nv_ctx();
	coh_target *g0 = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	ck_assert(!(coh_target_caps(g0) & COH_CAP_MIGRATE_STICKY));
	ck_assert_int_eq(coh_alloc(g0, len, NULL, (void **)&p), 0);
	long a0 = advises();
	ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g0, 0), 0);
	ck_assert_int_eq(advises(), a0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);

	/* nvidia.prefer=1: the cap, and one advice per change of place */
	struct coh_context_options o = { .size = sizeof(o), .backends = "nvidia,host", .log_level = -1,
					 .tunables = "nvidia.prefer=1" };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	g0 = gpu(ctx, 0);
	h = coh_target_by_node(ctx, 0);
	ck_assert(coh_target_caps(g0) & COH_CAP_MIGRATE_STICKY);
	ck_assert_int_eq(coh_alloc(g0, len, NULL, (void **)&p), 0);
	fill(p, len, 4);
	a0 = advises();
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(coh_migrate(ctx, p, len, g0, 0), 0);   /* its home: no advice */
	ck_assert_int_eq(advises(), a0);
	for (int i = 0; i < 4; i++)
		ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
	ck_assert_int_eq(advises(), a0 + 1);                          /* once, at the change */
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(coh_migrate(ctx, p, len, g0, 0), 0);
	ck_assert_int_eq(advises(), a0 + 2);
	ck_assert(same(p, len, 4));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(driver_failures_change_nothing)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	size_t len = 16 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	fill(p, len, 3);
	ck_assert(all_state(p, len, -1));
	/* out of memory on the prefetch */
	d_fail("cuMemPrefetchAsync_v2", 1, 2);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), -ENOMEM);
	ck_assert(all_state(p, len, -1));
	ck_assert(same(p, len, 3));
	/* the stream sync reports a failure */
	d_fail("cuStreamSynchronize", 1, 999);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), -EIO);
	ck_assert(same(p, len, 3));
	/* asynchronous failures reach the handle */
	d_fail("cuEventRecord", 1, 1);
	coh_migration *m = NULL;
	ck_assert_int_eq(coh_migrate_async(ctx, p, len, h, 0, &m), -EINVAL);
	ck_assert_ptr_null(m);
	/* allocation failures leave no record and no memory */
	int before = coh_alloc_count(ctx);
	d_fail("cuMemAllocManaged", 1, 2);
	void *q;
	ck_assert_int_eq(coh_alloc(g, len, NULL, &q), -ENOMEM);
	long frees = d_calls("cuMemFree_v2");
	d_fail("cuMemPrefetchAsync_v2", 1, 2);
	ck_assert_int_eq(coh_alloc(g, len, NULL, &q), -ENOMEM);
	ck_assert_int_eq(d_calls("cuMemFree_v2"), frees + 1);   /* the half-made allocation went back */
	ck_assert_int_eq(coh_alloc_count(ctx), before);
	/* advice errors */
	d_fail("cuMemAdvise_v2", 1, 1);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_READ_MOSTLY, NULL), -EINVAL);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_PREFERRED_LOCATION, h), 0);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_ACCESSED_BY, g), 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(large_alignment)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	void *p;
	size_t al = 16u << 20;
	ck_assert_int_eq(coh_alloc(g, 3 * ps, &COH_ALLOC_PROPS(.align = al), &p), 0);
	ck_assert_uint_eq((uintptr_t)p % al, 0);
	long frees = d_calls("cuMemFree_v2");
	ck_assert_int_eq(coh_free(ctx, p), 0);
	ck_assert_int_eq(d_calls("cuMemFree_v2"), frees + 1);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(pin_and_fork_queries)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	size_t len = 8 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	fill(p, len / 2, 4);   /* half on the host, half on the GPU */
	struct coh_pin_extent pe[4];
	int n = coh_pin_query(ctx, p, len, pe, 4, sizeof(struct coh_pin_extent));
	ck_assert_int_eq(n, 2);
	/* as measured on an H200: short pins work (GPU pages are faulted to the
	 * host first), long-term pins are refused */
	ck_assert_int_eq(pe[0].short_term, COH_PIN_IN_PLACE);
	ck_assert_int_eq(pe[1].short_term, COH_PIN_AFTER_MIGRATE);
	for (int i = 0; i < n; i++) {
		ck_assert_int_eq(pe[i].kind, COH_MEM_VENDOR_MANAGED);
		ck_assert_int_eq(pe[i].long_term, COH_PIN_NEVER);
		ck_assert_msg(strstr(pe[i].reason, "driver-managed"), "reason %s", pe[i].reason);
	}
	ck_assert_uint_eq(pe[0].length, len / 2);
	static const int view[] = { [COH_FORK_COPY] = COH_CHILD_COPY, [COH_FORK_EXCLUDE] = COH_CHILD_ABSENT,
				    [COH_FORK_ZERO] = COH_CHILD_ZERO, [COH_FORK_KERNEL] = COH_CHILD_UNREADABLE };
	for (int pol = COH_FORK_COPY; pol <= COH_FORK_KERNEL; pol++) {
		if (pol == COH_FORK_SHARE) {
			ck_assert_int_eq(coh_fork_policy_set(ctx, p, len, pol), -EOPNOTSUPP);
			continue;
		}
		ck_assert_int_eq(coh_fork_policy_set(ctx, p, len, pol), 0);
		struct coh_fork_extent fe[4];
		ck_assert_int_eq(coh_fork_query(ctx, p, len, fe, 4, sizeof(struct coh_fork_extent)), 1);
		ck_assert_int_eq(fe[0].policy, pol);
		ck_assert_int_eq(fe[0].child_view, view[pol]);
		ck_assert_int_eq(fe[0].parent_keeps, 1);
	}
	void *q;
	ck_assert_int_eq(coh_alloc(g, len, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_SHARE), &q), -EOPNOTSUPP);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* Forks with one GPU-resident allocation under policy; the child runs fn. */
static int fork_with(int policy, int (*fn)(coh_context *, unsigned char *, size_t))
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	size_t len = 256 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g, len, &COH_ALLOC_PROPS(.fork_policy = policy), (void **)&p), 0);
	fill(p, len, 5);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), 0);
	long fb = d_faultbacks();
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0)
		_exit(fn(ctx, p, len));
	int st = 0;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	/* the parent: still on the GPU, nothing faulted back, data intact */
	ck_assert(all_state(p, len, 0));
	ck_assert_int_eq(d_faultbacks(), fb);
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, g));
	ck_assert(same(p, len, 5));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
	return st;
}

static int child_copy(coh_context *ctx, unsigned char *p, size_t len)
{
	if (!same(p, len, 5))
		return 2;
	p[0] ^= 0xff;   /* private: the parent must not see this */
	if (coh_migrate(ctx, p, len, coh_target_find(ctx, "nvidia:gpu0"), 0) != -ECHILD)
		return 3;
	return coh_free(ctx, p) == 0 ? 0 : 4;   /* the child's copy is its own to free */
}

static int child_zero(coh_context *ctx, unsigned char *p, size_t len)
{
	(void)ctx;
	for (size_t i = 0; i < len; i++)
		if (p[i])
			return 2;
	return 0;
}

static int child_touch(coh_context *ctx, unsigned char *p, size_t len)
{
	(void)ctx;
	volatile unsigned char v = p[len / 2];   /* SIGSEGV expected */
	(void)v;
	return 0;
}

START_TEST(fork_copy)
{
	int st = fork_with(COH_FORK_COPY, child_copy);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

START_TEST(fork_zero)
{
	int st = fork_with(COH_FORK_ZERO, child_zero);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
}
END_TEST

START_TEST(fork_exclude)
{
	int st = fork_with(COH_FORK_EXCLUDE, child_touch);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child status %#x", st);
}
END_TEST

START_TEST(fork_kernel_is_the_driver)
{
	/* what CUDA itself does: the child cannot read managed memory */
	int st = fork_with(COH_FORK_KERNEL, child_touch);
	ck_assert_msg(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV, "child status %#x", st);
}
END_TEST

START_TEST(fork_copy_twice_reuses_staging)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	size_t len = 64 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	for (int round = 0; round < 3; round++) {
		fill(p, len, (unsigned)(10 + round));
		ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), 0);
		long regs = d_calls("cuMemHostRegister_v2");
		pid_t pid = fork();
		if (pid == 0)
			_exit(same(p, len, (unsigned)(10 + round)) ? 0 : 2);
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "round %d: child status %#x", round, st);
		if (round > 0)   /* the pinned staging buffer is made once */
			ck_assert_int_eq(d_calls("cuMemHostRegister_v2"), regs);
	}
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(pageable_memory_adopt)
{
	setenv("CUDADOUBLE_PAGEABLE", "1", 1);
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	ck_assert(coh_target_caps(g) & COH_CAP_ADOPT);
	ck_assert_msg(strstr(coh_target_model(g), "HMM"), "model %s", coh_target_model(g));
	size_t len = 16 * ps;
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert(p != MAP_FAILED);
	fill(p, len, 6);
	ck_assert_int_eq(coh_adopt(g, p, len, NULL), 0);
	ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), 0);
	ck_assert(same(p, len, 6));
	/* the kernel's view holds for ordinary memory (the double moves no data) */
	struct coh_extent x[4];
	ck_assert_int_eq(coh_query(ctx, p, len, x, 4, sizeof(struct coh_extent)), 1);
	ck_assert_int_eq(x[0].kind, COH_MEM_SYSTEM);
	ck_assert_int_eq(coh_release(ctx, p), 0);
	munmap(p, len);
	coh_context_unref(ctx);
}
END_TEST

/* The device-access kernel: GPU first touch and GPU faults move managed
 * pages to the GPU, a CPU read brings them back; memory the GPU cannot reach
 * is refused before any launch (a bad launch would poison the CUDA context). */
START_TEST(device_access_kernel)
{
	setenv("CUDADOUBLE_DEVICES", "2", 1);
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	ck_assert(coh_target_caps(g) & COH_CAP_DEVICE_ACCESS);
	struct coh_device_info di = { .size = sizeof(di) };
	ck_assert_int_eq(coh_target_device(g, &di), 0);
	ck_assert_msg(strstr(di.access_note, "cuLaunchKernel"), "note %s", di.access_note);
	long (*launches)(void) = (long (*)(void))dlsym(dbl, "cudadouble_launches");
	ck_assert(launches);
	size_t len = 8 * ps;
	uint64_t *p, sums[64];
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
	ck_assert(all_state(p, len, -1));
	long l0 = launches(), f0 = d_faultbacks();
	ck_assert_int_eq(coh_device_access(ctx, g, p, len, COH_DEVICE_FILL, 7, NULL, 0), 0);
	ck_assert_int_eq(launches(), l0 + 1);
	ck_assert_msg(all_state(p, len, 0), "the GPU's writes fault the pages over to it");
	/* off the CPU, and the driver's last prefetch named the CPU: "managed,
	 * place unknown" (the driver has no per-page location query) */
	struct coh_extent x[4];
	ck_assert_int_eq(coh_query(ctx, p, len, x, 4, sizeof(struct coh_extent)), 1);
	ck_assert_int_eq(x[0].kind, COH_MEM_VENDOR_MANAGED);
	for (size_t i = 0; i < len / 8; i++)
		ck_assert_uint_eq(p[i], coh_pattern_word(7, i * 8));
	ck_assert_int_ge(d_faultbacks(), f0 + 1);
	ck_assert(all_state(p, len, -1));
	ck_assert_int_eq(coh_device_access(ctx, g, p, len, COH_DEVICE_SUM, 0, sums, len / COH_SUM_BLOCK), 0);
	for (size_t b = 0; b < len / COH_SUM_BLOCK; b++)
		ck_assert_uint_eq(sums[b], coh_block_sum((char *)p + b * COH_SUM_BLOCK));
	/* a second GPU reads managed memory too */
	ck_assert_int_eq(coh_device_access(ctx, gpu(ctx, 1), p, len, COH_DEVICE_SUM, 0, sums, len / COH_SUM_BLOCK), 0);
	ck_assert(all_state(p, len, 1));
	/* host memory: no pageable access here */
	void *q;
	ck_assert_int_eq(coh_alloc(h, len, NULL, &q), 0);
	memset(q, 5, len);
	long l1 = launches();
	ck_assert_int_eq(coh_device_access(ctx, g, q, len, COH_DEVICE_FILL, 1, NULL, 0), -EFAULT);
	ck_assert_int_eq(launches(), l1);
	ck_assert_int_eq(((unsigned char *)q)[len - 1], 5);
	coh_free(ctx, q);
	coh_free(ctx, p);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(device_access_refused_ptx)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	d_fail("cuModuleLoadData", 1, 218);
	uint64_t *p;
	size_t len = 2 * ps;
	ck_assert_int_eq(coh_alloc(g, len, NULL, (void **)&p), 0);
	p[0] = 42;
	ck_assert_int_eq(coh_device_access(ctx, g, p, len, COH_DEVICE_FILL, 1, NULL, 0), -EIO);
	ck_assert_int_eq(coh_device_access(ctx, g, p, len, COH_DEVICE_FILL, 1, NULL, 0), -EIO);
	ck_assert_int_eq(d_calls("cuModuleLoadData"), 1);
	ck_assert_uint_eq(p[0], 42);
	coh_free(ctx, p);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(device_access_pageable)
{
	setenv("CUDADOUBLE_PAGEABLE", "1", 1);
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	uint64_t *q;
	size_t len = 4 * ps;
	ck_assert_int_eq(coh_alloc(h, len, NULL, (void **)&q), 0);
	ck_assert_int_eq(coh_device_access(ctx, g, q, len, COH_DEVICE_FILL, 9, NULL, 0), 0);
	for (size_t i = 0; i < len / 8; i++)
		ck_assert_uint_eq(q[i], coh_pattern_word(9, i * 8));
	coh_free(ctx, q);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(no_pageable_no_adopt)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	size_t len = 4 * ps;
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_int_eq(coh_adopt(g, p, len, NULL), -EOPNOTSUPP);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	munmap(p, len);
	coh_context_unref(ctx);
}
END_TEST

/* The application's own cudaMallocManaged memory, handed to libcoherent. */
START_TEST(adopt_application_managed)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0), *h = coh_target_by_node(ctx, 0);
	CUresult (*dev_get)(int *, int) = (CUresult(*)(int *, int))dlsym(dbl, "cuDeviceGet");
	CUresult (*retain)(void **, int) = (CUresult(*)(void **, int))dlsym(dbl, "cuDevicePrimaryCtxRetain");
	CUresult (*push)(void *) = (CUresult(*)(void *))dlsym(dbl, "cuCtxPushCurrent_v2");
	CUresult (*alloc)(uint64_t *, size_t, unsigned) = (CUresult(*)(uint64_t *, size_t, unsigned))dlsym(
		dbl, "cuMemAllocManaged");
	CUresult (*mfree)(uint64_t) = (CUresult(*)(uint64_t))dlsym(dbl, "cuMemFree_v2");
	ck_assert(dev_get && retain && push && alloc && mfree);
	int dev;
	void *cu;
	ck_assert_int_eq(dev_get(&dev, 0), 0);
	ck_assert_int_eq(retain(&cu, dev), 0);
	ck_assert_int_eq(push(cu), 0);
	size_t len = 32 * ps;
	uint64_t dp = 0;
	ck_assert_int_eq(alloc(&dp, len, 1), 0);
	unsigned char *p = (unsigned char *)(uintptr_t)dp;
	fill(p, len, 7);   /* on the host now */
	ck_assert_int_eq(coh_adopt(g, p, len, NULL), 0);
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, h));
	ck_assert_int_eq(coh_migrate(ctx, p, len, g, 0), 0);
	ck_assert(all_state(p, len, 0));
	ck_assert(one_extent(ctx, p, len, COH_MEM_VENDOR_MANAGED, g));
	struct coh_fork_extent fe[2];
	ck_assert_int_eq(coh_fork_query(ctx, p, len, fe, 2, sizeof(struct coh_fork_extent)), 1);
	ck_assert_int_eq(fe[0].child_view, COH_CHILD_COPY);
	pid_t pid = fork();
	if (pid == 0)
		_exit(same(p, len, 7) ? 0 : 2);
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	ck_assert(all_state(p, len, 0));   /* the parent's pages stayed on the GPU */
	ck_assert_int_eq(coh_free(ctx, p), -EINVAL);   /* adopted: released, not freed */
	ck_assert_int_eq(coh_release(ctx, p), 0);
	ck_assert(same(p, len, 7));
	ck_assert_int_eq(mfree(dp), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(unref_frees_everything)
{
	coh_context *ctx = nv_ctx();
	coh_target *g = gpu(ctx, 0);
	long frees = d_calls("cuMemFree_v2");
	for (int i = 0; i < 5; i++) {
		void *p;
		ck_assert_int_eq(coh_alloc(g, 4 * ps, NULL, &p), 0);
	}
	coh_context_unref(ctx);
	ck_assert_int_eq(d_calls("cuMemFree_v2"), frees + 5);
}
END_TEST

/* ---- the completion queue and batches on the native path ---- */
/* Reaps n completions through poll() on the queue's fd: how many gave 0. */
static int reap_all(coh_queue *q, int n, int *last_err)
{
	int ok = 0;
	while (n > 0) {
		struct pollfd pf = { .fd = coh_queue_fd(q), .events = POLLIN };
		ck_assert_int_eq(poll(&pf, 1, 10000), 1);
		struct coh_completion c[16];
		int k = coh_queue_reap(q, c, 16, sizeof(c[0]), 0);
		ck_assert_int_ge(k, 1);
		for (int i = 0; i < k; i++) {
			ok += c[i].result == 0;
			if (c[i].result)
				*last_err = c[i].result;
		}
		n -= k;
	}
	return ok;
}

START_TEST(queue_and_batch_native)
{
	setenv("CUDADOUBLE_DEVICES", "2", 1);
	coh_context *ctx = nv_ctx();
	long (*d_batches)(void) = (long (*)(void))dlsym(dbl, "cudadouble_batches");
	ck_assert_ptr_nonnull(d_batches);
	coh_target *g0 = gpu(ctx, 0), *g1 = gpu(ctx, 1), *h = coh_target_by_node(ctx, 0);
	size_t len = 64 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g0, len, NULL, (void **)&p), 0);
	fill(p, len, 5);
	coh_queue *q;
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &q), 0);
	int threads = t_thread_count();
	long hostfn = d_calls("cuLaunchHostFunc"), qbatches = d_batches();
	/* 16 ranges of 4 pages: even ones to gpu1, odd ones to the host */
	struct coh_migrate_req r[16];
	for (int i = 0; i < 16; i++)
		r[i] = (struct coh_migrate_req){ .addr = p + (size_t)i * 4 * ps, .len = 4 * ps, .dst = i % 2 ? h : g1,
						 .cookie = (uint64_t)i };
	ck_assert_int_eq(coh_queue_migrate(q, r, 16, sizeof(r[0])), 16);
	int err = 0;
	ck_assert_int_eq(reap_all(q, 16, &err), 16);
	ck_assert_int_ge(d_calls("cuLaunchHostFunc") - hostfn, 16);   /* the driver signalled each */
	ck_assert_int_eq(d_batches() - qbatches, 1);                        /* in one driver batch */
	ck_assert_int_eq(t_thread_count(), threads);                        /* no helper thread */
	for (int i = 0; i < 16; i++)
		ck_assert(all_state(p + (size_t)i * 4 * ps, 4 * ps, i % 2 ? -1 : 1));
	ck_assert(same(p, len, 5));
	/* the batch's event cannot be recorded: each request starts on its own */
	for (int i = 0; i < 16; i++)
		r[i].dst = i % 2 ? g1 : h;
	d_fail("cuEventRecord", 1, 999);
	long prefetched = d_calls("cuMemPrefetchAsync_v2");
	ck_assert_int_eq(coh_queue_migrate(q, r, 16, sizeof(r[0])), 16);
	ck_assert_int_eq(reap_all(q, 16, &err), 16);
	ck_assert_int_eq(err, 0);
	ck_assert_int_eq(d_batches() - qbatches, 2);
	ck_assert_int_ge(d_calls("cuMemPrefetchAsync_v2") - prefetched, 16);   /* then one by one */
	for (int i = 0; i < 16; i++)
		ck_assert(all_state(p + (size_t)i * 4 * ps, 4 * ps, i % 2 ? 1 : -1));
	ck_assert(same(p, len, 5));
	/* no cuLaunchHostFunc (an older driver answers not supported): a worker waits */
	d_fail("cuLaunchHostFunc", 1, 801)   /* CUDA_ERROR_NOT_SUPPORTED */;
	ck_assert_int_eq(coh_queue_migrate(q, r, 1, sizeof(r[0])), 1);
	ck_assert_int_eq(reap_all(q, 1, &err), 1);
	/* a driver failure at the start reaches the completion */
	d_fail("cuMemPrefetchAsync_v2", 1, 1)   /* CUDA_ERROR_INVALID_VALUE */;
	ck_assert_int_eq(coh_queue_migrate(q, r, 1, sizeof(r[0])), 1);
	ck_assert_int_eq(reap_all(q, 1, &err), 0);
	ck_assert_int_eq(err, -EINVAL);
	ck_assert(same(p, len, 5));
	ck_assert_int_eq(coh_queue_destroy(q), 0);

	/* one driver batch for the whole vector */
	long batches = d_batches(), prefetches = d_calls("cuMemPrefetchAsync_v2");
	int res[16];
	for (int i = 0; i < 16; i++)
		r[i].dst = g1;
	ck_assert_int_eq(coh_migrate_batch(ctx, r, 16, sizeof(r[0]), res), 16);
	ck_assert_int_eq(d_batches() - batches, 1);
	ck_assert_int_eq(d_calls("cuMemPrefetchAsync_v2"), prefetches);
	ck_assert(all_state(p, len, 1));
	/* mixed destinations: still one batch, one location entry per run */
	for (int i = 0; i < 16; i++)
		r[i].dst = i < 8 ? h : g0;
	ck_assert_int_eq(coh_migrate_batch(ctx, r, 16, sizeof(r[0]), res), 16);
	ck_assert_int_eq(d_batches() - batches, 2);
	ck_assert(all_state(p, len / 2, -1));
	ck_assert(all_state(p + len / 2, len / 2, 0));
	/* the batch entry point refuses: one prefetch per range instead */
	d_fail("cuMemPrefetchBatchAsync", 1, 801);
	for (int i = 0; i < 16; i++)
		r[i].dst = g1;
	ck_assert_int_eq(coh_migrate_batch(ctx, r, 16, sizeof(r[0]), res), 16);
	ck_assert_int_eq(d_batches() - batches, 2);
	ck_assert_int_eq(d_calls("cuMemPrefetchAsync_v2") - prefetches, 16);
	ck_assert(all_state(p, len, 1));
	ck_assert(same(p, len, 5));
	/* a failed synchronisation reaches every result */
	d_fail("cuStreamSynchronize", 1, 999);
	ck_assert_int_eq(coh_migrate_batch(ctx, r, 2, sizeof(r[0]), res), 0);
	ck_assert_int_eq(res[0], -EIO);
	ck_assert_int_eq(res[1], -EIO);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (!getenv("COH_CUDA_LIBRARY")) {
		fprintf(stderr, "test_nvidia: COH_CUDA_LIBRARY does not name the driver double: skipped\n");
		return 77;
	}
	Suite *s = suite_create("nvidia");
	TCase *tc = tcase_create("double");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, unavailable_says_why);
	tcase_add_test(tc, discovery);
	tcase_add_test(tc, alloc_query_faultback);
	tcase_add_test(tc, migrate_and_back);
	tcase_add_test(tc, migrate_prefers_once);
	tcase_add_test(tc, driver_failures_change_nothing);
	tcase_add_test(tc, large_alignment);
	tcase_add_test(tc, pin_and_fork_queries);
	tcase_add_test(tc, fork_copy);
	tcase_add_test(tc, fork_zero);
	tcase_add_test(tc, fork_exclude);
	tcase_add_test(tc, fork_kernel_is_the_driver);
	tcase_add_test(tc, fork_copy_twice_reuses_staging);
	tcase_add_test(tc, pageable_memory_adopt);
	tcase_add_test(tc, no_pageable_no_adopt);
	tcase_add_test(tc, device_access_kernel);
	tcase_add_test(tc, device_access_refused_ptx);
	tcase_add_test(tc, device_access_pageable);
	tcase_add_test(tc, adopt_application_managed);
	tcase_add_test(tc, unref_frees_everything);
	tcase_add_test(tc, queue_and_batch_native);
	suite_add_tcase(s, tc);
	return t_run(s);
}
