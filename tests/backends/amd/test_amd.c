/* SPDX-License-Identifier: MIT */
/*
 * The amd backend end to end against the /dev/kfd emulator (tests/doubles/kfdemu,
 * LD_PRELOADed with KFDEMU_ROOT naming a topology tree): discovery through
 * the live path (/dev/kfd, version, XNACK, ACQUIRE_VM), allocation in VRAM,
 * migration both ways with the data intact, residency named after the GPU,
 * SVM attributes as KFD holds them, the driver's failures reaching the
 * caller with nothing changed, and fork (COPY keeps the parent's placement;
 * the child answers -ECHILD and can open a context of its own); on the
 * two-GPU xGMI tree, each page of a partly moved allocation named after its GPU.
 * Each Check test runs in its own process.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <linux/kfd_ioctl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"

static size_t ps;
static int (*k_loc)(const void *);
static void (*k_fail)(unsigned, int, int);
static int (*k_placement)(void);

static coh_context *ctx_amd(void)
{
	k_loc = (int (*)(const void *))dlsym(RTLD_DEFAULT, "kfdemu_page_location");
	k_fail = (void (*)(unsigned, int, int))dlsym(RTLD_DEFAULT, "kfdemu_fail");
	k_placement = (int (*)(void))dlsym(RTLD_DEFAULT, "kfdemu_placement_supported");
	ck_assert_msg(k_loc && k_fail && k_placement, "the kfd emulator is not preloaded");
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "amd,host", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static coh_target *gpu1(coh_context *ctx)
{
	coh_target *t = coh_target_find(ctx, "amd:gpu1");
	ck_assert_ptr_nonnull(t);
	return t;
}

static uint32_t gpu_id(coh_target *t)
{
	struct coh_device_info d = { .size = sizeof(d) };
	ck_assert_int_eq(coh_target_device(t, &d), 0);
	ck_assert(d.status & COH_DEVICE_HAS_GPU_ID);
	return d.gpu_id;
}

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 5 + seed);
}

static bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 5 + seed))
			return false;
	return true;
}

static bool all_at(const void *p, size_t len, int loc)
{
	for (size_t o = 0; o < len; o += ps)
		if (k_loc((const char *)p + o) != loc)
			return false;
	return true;
}

/* KFD's own view of one attribute, through an fd of our own (same KFD process). */
static uint32_t kfd_get(const void *p, size_t len, uint32_t type, uint32_t value)
{
	int fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	ck_assert_int_ge(fd, 0);
	struct {
		struct kfd_ioctl_svm_args h;
		struct kfd_ioctl_svm_attribute a;
	} args = { { (uintptr_t)p, len, KFD_IOCTL_SVM_OP_GET_ATTR, 1 }, { type, value } };
	ck_assert_int_eq(ioctl(fd, AMDKFD_IOC_SVM + (8ul << _IOC_SIZESHIFT), &args), 0);
	close(fd);
	return type == KFD_IOCTL_SVM_ATTR_ACCESS ? args.a.type : args.a.value;
}

START_TEST(live_discovery)
{
	coh_context *ctx = ctx_amd();
	coh_target *t = gpu1(ctx);
	char note[2048];
	ck_assert_int_eq(coh_backend_status(ctx, "amd", note, sizeof(note)), 1);
	/* RDNA (the RX 7900 tree) has no XNACK: the process mode is off */
	bool rdna = strstr(getenv("KFDEMU_ROOT"), "rx7900") != NULL;
	ck_assert_msg(strstr(note, rdna ? "KFD 1.11, XNACK off, 1 GPU(s) with SVM" : "KFD 1.11, XNACK on, 1 GPU(s) with SVM"),
		      "note: %s", note);
	ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_PRIVATE);
	uint64_t total = 0, free_b = 0;
	ck_assert_int_eq(coh_target_capacity(t, &total, &free_b), 0);
	ck_assert_uint_eq(total, (rdna ? 24ull : 64ull) << 30);
	ck_assert_uint_eq(free_b, total);   /* AVAILABLE_MEMORY */
	ck_assert_uint_eq(coh_target_caps(t) & COH_CAP_ALLOC, COH_CAP_ALLOC);
	coh_context_unref(ctx);
	/* asking for an XNACK mode: RDNA cannot turn it on (EPERM), gfx90a can turn it off */
	setenv("COH_AMD_XNACK", rdna ? "1" : "0", 1);
	ctx = ctx_amd();
	coh_backend_status(ctx, "amd", note, sizeof(note));
	ck_assert_msg(strstr(note, rdna ? "XNACK on refused: Operation not permitted" : "XNACK off, 1 GPU(s) with SVM"),
		      "note: %s", note);
	coh_context_unref(ctx);
	unsetenv("COH_AMD_XNACK");
}
END_TEST

START_TEST(alloc_migrate_query)
{
	coh_context *ctx = ctx_amd();
	if (!k_placement()) {
		fprintf(stderr, "test_amd: the emulator has no userfaultfd here: placement not checked\n");
		coh_context_unref(ctx);
		return;
	}
	coh_target *t = gpu1(ctx), *h = coh_target_by_node(ctx, 0);
	uint32_t id = gpu_id(t);
	size_t len = 64 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(t, len, NULL, (void **)&p), 0);
	ck_assert(all_at(p, len, (int)id));   /* made in VRAM */
	struct coh_extent x[8];
	int n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 1);
	ck_assert_int_eq(x[0].kind, COH_MEM_DEVICE_PRIVATE);
	ck_assert_ptr_eq(x[0].target, t);
	ck_assert_uint_eq(kfd_get(p, len, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), id);
	ck_assert_uint_eq(kfd_get(p, len, KFD_IOCTL_SVM_ATTR_ACCESS, id), KFD_IOCTL_SVM_ATTR_ACCESS);
	uint64_t total = 0, free_b = 0;
	coh_target_capacity(t, &total, &free_b);
	ck_assert_uint_le(free_b, total - len);   /* VRAM is taken (KFD rounds to its own blocks) */
	fill(p, len, 1);   /* the CPU faults every page back */
	ck_assert(all_at(p, len, 0));
	ck_assert_int_eq(coh_migrate(ctx, p, len, t, 0), 0);
	ck_assert(all_at(p, len, (int)id));
	ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
	ck_assert(all_at(p, len, 0));
	ck_assert(same(p, len, 1));
	n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	ck_assert(n == 1 && x[0].kind == COH_MEM_SYSTEM && x[0].target == h);
	/* half back to the GPU, asynchronously */
	coh_migration *m;
	ck_assert_int_eq(coh_migrate_async(ctx, p, len / 2, t, 0, &m), 0);
	ck_assert_int_eq(coh_migration_wait(m, -1), 0);
	coh_migration_free(m);
	n = coh_query(ctx, p, len, x, 8, sizeof(struct coh_extent));
	ck_assert_int_eq(n, 2);
	ck_assert(x[0].kind == COH_MEM_DEVICE_PRIVATE && x[0].target == t && x[0].length == len / 2);
	/* advice lands in KFD's attributes */
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_PREFERRED_LOCATION, h), 0);
	ck_assert_uint_eq(kfd_get(p, len, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0), KFD_IOCTL_SVM_LOCATION_SYSMEM);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_READ_MOSTLY, NULL), 0);
	ck_assert_uint_eq(kfd_get(p, len, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) & KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY,
			  KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_UNSET_ACCESSED_BY, t), 0);
	ck_assert_uint_eq(kfd_get(p, len, KFD_IOCTL_SVM_ATTR_ACCESS, id), KFD_IOCTL_SVM_ATTR_NO_ACCESS);
	ck_assert_int_eq(coh_advise(ctx, p, len, COH_ADVISE_ACCESSED_BY, h), -EOPNOTSUPP);
	ck_assert(same(p, len, 1));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(failures_change_nothing)
{
	coh_context *ctx = ctx_amd();
	coh_target *t = gpu1(ctx);
	size_t len = 16 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(t, len, NULL, (void **)&p), 0);
	fill(p, len, 2);
	int before = k_loc(p);
	k_fail(0x20, 1, ENOMEM);   /* the next SVM ioctl */
	ck_assert_int_eq(coh_migrate(ctx, p, len, t, 0), -ENOMEM);
	ck_assert_int_eq(k_loc(p), before);
	ck_assert(same(p, len, 2));
	int count = coh_alloc_count(ctx);
	k_fail(0x20, 1, EINVAL);
	void *q;
	ck_assert_int_eq(coh_alloc(t, len, NULL, &q), -EINVAL);
	ck_assert_int_eq(coh_alloc_count(ctx), count);
	/* adopt: private anonymous memory only */
	void *file = mmap(NULL, ps, PROT_READ, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	ck_assert_int_eq(coh_adopt(t, file, ps, NULL), -EOPNOTSUPP);
	munmap(file, ps);
	unsigned char *own = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	fill(own, len, 3);
	ck_assert_int_eq(coh_adopt(t, own, len, NULL), 0);
	ck_assert_int_eq(coh_migrate(ctx, own, len, t, 0), 0);
	ck_assert(same(own, len, 3));
	ck_assert_int_eq(coh_release(ctx, own), 0);
	munmap(own, len);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* len bytes on t with a fork policy, filled with v and moved to t; *fe the
 * fork query's one extent for them, whose child view is a copy. */
static unsigned char *on_gpu_forked(coh_context *ctx, coh_target *t, size_t len, int policy, int v,
				    struct coh_fork_extent *fe)
{
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(t, len, &COH_ALLOC_PROPS(.fork_policy = policy), (void **)&p), 0);
	fill(p, len, v);
	ck_assert_int_eq(coh_migrate(ctx, p, len, t, 0), 0);
	struct coh_fork_extent x[2];
	ck_assert_int_eq(coh_fork_query(ctx, p, len, x, 2, sizeof(x[0])), 1);
	ck_assert_int_eq(x[0].child_view, COH_CHILD_COPY);
	*fe = x[0];
	return p;
}

START_TEST(fork_copy_keeps_placement)
{
	coh_context *ctx = ctx_amd();
	coh_target *t = gpu1(ctx);
	uint32_t id = gpu_id(t);
	size_t len = 32 * ps;
	struct coh_fork_extent fe;
	unsigned char *p = on_gpu_forked(ctx, t, len, COH_FORK_COPY, 4, &fe);
	ck_assert_int_eq(fe.parent_keeps, 1);
	pid_t pid = fork();
	if (pid == 0) {
		if (!same(p, len, 4))
			_exit(2);
		memset(p, 0, len);   /* private */
		if (coh_migrate(ctx, p, len, t, 0) != -ECHILD)
			_exit(3);
		/* a context of its own opens /dev/kfd anew */
		coh_context *c2;
		struct coh_context_options o = { .size = sizeof(o), .backends = "amd", .log_level = -1 };
		if (coh_context_create(&o, &c2))
			_exit(4);
		void *q;
		coh_target *t2 = coh_target_find(c2, "amd:gpu1");
		int e = t2 ? coh_alloc(t2, ps, NULL, &q) : -ENODEV;
		if (e)
			_exit(5);
		coh_free(c2, q);
		coh_context_unref(c2);
		_exit(0);
	}
	int st;
	ck_assert_int_eq(waitpid(pid, &st, 0), pid);
	ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0, "child status %#x", st);
	if (k_placement())
		ck_assert(all_at(p, len, (int)id));   /* the parent's pages went back to the GPU */
	ck_assert(same(p, len, 4));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* KERNEL on coherent VRAM: the fork query's answer follows the XNACK mode
 * (backends/amd/fork.c, read in kfd_svm.c): off, KFD remaps the range with
 * write access right after fork and the parent loses every shared page;
 * on, the parent keeps them only if the child writes first.  A range whose
 * prefetch location is system memory gets the core's answer. */
START_TEST(fork_query_kernel_coherent)
{
	coh_context_unref(ctx_amd());   /* checks that the emulator is preloaded */
	for (int xnack = 0; xnack <= 1; xnack++) {
		coh_context *ctx;
		struct coh_context_options o = { .size = sizeof(o), .backends = "amd,host", .log_level = -1,
						 .tunables = xnack ? "amd.xnack=1" : "amd.xnack=0" };
		ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
		coh_target *g = gpu1(ctx), *h = coh_target_by_node(ctx, 0);
		ck_assert_ptr_nonnull(h);
		ck_assert_int_eq(coh_target_kind(g), COH_KIND_DEVICE_COHERENT);
		size_t len = 8 * ps;
		struct coh_fork_extent fe[2];
		unsigned char *p = on_gpu_forked(ctx, g, len, COH_FORK_KERNEL, 6, &fe[0]);
		ck_assert_int_eq(fe[0].parent_keeps, xnack ? COH_KEEPS_FIRST_WRITER : COH_KEEPS_NO);
		ck_assert_ptr_nonnull(strstr(fe[0].reason, xnack ? "XNACK on" : "XNACK off"));
		ck_assert_int_eq(coh_migrate(ctx, p, len, h, 0), 0);
		ck_assert_int_eq(coh_fork_query(ctx, p, len, fe, 2, sizeof(struct coh_fork_extent)), 1);
		ck_assert_ptr_null(strstr(fe[0].reason, "XNACK"));
		ck_assert_int_eq(coh_free(ctx, p), 0);
		coh_context_unref(ctx);
	}
}
END_TEST

/* The two GPUs of the xGMI tree: parts of an allocation moved to the other
 * GPU and to system memory split KFD's SVM range, and the query names every
 * device page after the GPU that holds it (the emulator's own placement is
 * the authority), one extent per run, with cursors of any size. */
START_TEST(partial_labels)
{
	coh_context *ctx = ctx_amd();
	coh_target *g1 = gpu1(ctx), *g2 = coh_target_find(ctx, "amd:gpu2"), *h = coh_target_by_node(ctx, 0);
	ck_assert_ptr_nonnull(g2);
	ck_assert_ptr_nonnull(h);
	size_t len = 8 * ps;
	unsigned char *p;
	ck_assert_int_eq(coh_alloc(g1, len, NULL, (void **)&p), 0);
	fill(p, len, 3);
	ck_assert_int_eq(coh_migrate(ctx, p + 2 * ps, 2 * ps, g2, 0), 0);
	ck_assert_int_eq(coh_migrate(ctx, p + 5 * ps, ps, h, 0), 0);
	ck_assert_int_eq(coh_migrate(ctx, p + 6 * ps, ps, g2, 0), 0);
	/* pages 0-1 gpu1, 2-3 gpu2, 4 gpu1, 5 system, 6 gpu2, 7 gpu1 */
	const struct {
		int first, count;
		coh_target *t;
	} want[] = { { 0, 2, g1 }, { 2, 2, g2 }, { 4, 1, g1 }, { 5, 1, h }, { 6, 1, g2 }, { 7, 1, g1 } };
	for (int i = 0; i < 8; i++) {
		int loc = k_loc(p + i * ps);
		ck_assert_int_eq(loc, i == 5 ? 0 : (int)gpu_id(i == 2 || i == 3 || i == 6 ? g2 : g1));
	}
	const size_t maxes[] = { 8, 3, 1 };
	for (int m = 0; m < 3; m++) {
		struct coh_extent x[8];
		uintptr_t a = (uintptr_t)p, end = a + len;
		int k = 0;
		while (a < end) {
			int n = coh_query(ctx, (void *)a, end - a, x, maxes[m], sizeof(x[0]));
			ck_assert_int_ge(n, 1);
			for (int i = 0; i < n; i++, k++) {
				ck_assert_int_lt(k, 6);
				ck_assert_msg(x[i].start == (uintptr_t)p + want[k].first * ps && x[i].length == want[k].count * ps &&
						      x[i].target == want[k].t,
					      "max %zu, run %d: +%zu pages %zu on %s", maxes[m], k,
					      (size_t)(x[i].start - (uintptr_t)p) / ps, x[i].length / ps,
					      x[i].target ? coh_target_name(x[i].target) : "-");
				ck_assert_int_eq(x[i].kind, want[k].t == h ? COH_MEM_SYSTEM : COH_MEM_DEVICE_COHERENT);
				a += x[i].length;
			}
		}
		ck_assert_int_eq(k, 6);
	}
	ck_assert(same(p, len, 3));
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

/* KFDEMU_NO_SVM=1: a kernel without CONFIG_HSA_AMD_SVM (SET_XNACK_MODE and
 * SVM answer EPERM, the capability bit is clear). */
START_TEST(kernel_without_svm)
{
	coh_context *ctx = ctx_amd();
	coh_target *t = gpu1(ctx);
	char note[2048];
	coh_backend_status(ctx, "amd", note, sizeof(note));
	ck_assert_msg(strstr(note, "without SVM: the kernel lacks CONFIG_HSA_AMD_SVM"), "note: %s", note);
	ck_assert_uint_eq(coh_target_caps(t), COH_CAP_QUERY | COH_CAP_PIN_QUERY);
	ck_assert_msg(strstr(coh_target_model(t), "SVM no"), "model: %s", coh_target_model(t));
	void *p;
	ck_assert_int_eq(coh_alloc(t, 4096, NULL, &p), -EOPNOTSUPP);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	if (!getenv("KFDEMU_ROOT") || !dlsym(RTLD_DEFAULT, "kfdemu_active")) {
		fprintf(stderr, "test_amd: run with the kfd emulator preloaded (tests/doubles/kfdemu): skipped\n");
		return 77;
	}
	Suite *s = suite_create("amd");
	TCase *tc = tcase_create("kfdemu");
	tcase_set_timeout(tc, 120);
	if (getenv("KFDEMU_NO_SVM")) {
		tcase_add_test(tc, kernel_without_svm);
		suite_add_tcase(s, tc);
		return t_run(s);
	}
	if (strstr(getenv("KFDEMU_ROOT"), "xgmi")) {
		tcase_add_test(tc, partial_labels);   /* two device-coherent GPUs in one hive */
		tcase_add_test(tc, fork_query_kernel_coherent);
		suite_add_tcase(s, tc);
		return t_run(s);
	}
	tcase_add_test(tc, live_discovery);
	tcase_add_test(tc, alloc_migrate_query);
	tcase_add_test(tc, failures_change_nothing);
	tcase_add_test(tc, fork_copy_keeps_placement);
	suite_add_tcase(s, tc);
	return t_run(s);
}
