/* SPDX-License-Identifier: MIT */
/*
 * Tests of the CUDA driver double (libcudadouble.so).  The double is loaded
 * the way the nvidia backend loads a driver: dlopen, then dlsym of every name
 * in COH_CU_NAMES.  The control API comes from the same handle.
 *
 * The program runs the main suite with two 64 MiB devices, then runs itself
 * again with CUDADOUBLE_PAGEABLE=1 for the pageable-memory (HMM) checks.
 * Exit 0: all passed; 1: something failed (printed on stderr).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../../../backends/nvidia/cuda_abi.h"

#ifndef CUDADOUBLE_PATH
#define CUDADOUBLE_PATH "libcudadouble.so"
#endif

#define PG 4096UL
#define MIB (1024UL * 1024UL)
#define DEV_MEM (64 * MIB)

/* Values the ABI header does not carry. */
#define HOST_NOT_REGISTERED 713
#define RANGE_ACCESSED_BY 3
#define RANGE_PREFERRED_TYPE 5
#define RANGE_PREFERRED_ID 6
#define RANGE_LAST_PREFETCH_TYPE 7
#define RANGE_LAST_PREFETCH_ID 8
#define POINTER_RANGE_START 11

static struct {
#define X_FIELD(field, type, name, req) type field;
	COH_CU_NAMES(X_FIELD)
#undef X_FIELD
} cu;

static void (*dbl_fail)(const char *, int, int);
static long (*dbl_calls)(const char *);
static int (*dbl_state)(const void *);
static long (*dbl_faultbacks)(void);
static long long (*dbl_copied)(void);
static long (*dbl_launches)(void);
static void (*dbl_reset)(void);

static void *lib;
static int failures;
static const char *suite = "main";

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "[%s] %s:%d: CHECK failed: %s\n", suite, __FILE__, __LINE__, \
				#cond);                                                            \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

#define CHECK_EQ(a, b)                                                                              \
	do {                                                                                        \
		long long a_ = (long long)(a), b_ = (long long)(b);                                 \
		if (a_ != b_) {                                                                     \
			fprintf(stderr, "[%s] %s:%d: %s is %lld, expected %s (%lld)\n", suite, __FILE__, \
				__LINE__, #a, a_, #b, b_);                                          \
			failures++;                                                                 \
		}                                                                                   \
	} while (0)

static CUmemLocation dev_loc(int id)
{
	return (CUmemLocation){ CU_MEM_LOCATION_TYPE_DEVICE, id };
}

static CUmemLocation host_loc(void)
{
	return (CUmemLocation){ CU_MEM_LOCATION_TYPE_HOST, 0 };
}

static CUdeviceptr dp(const void *p)
{
	return (CUdeviceptr)(uintptr_t)p;
}

static void load(void)
{
	const char *path = getenv("CUDADOUBLE_PATH");
	if (!path || !*path)
		path = CUDADOUBLE_PATH;
	lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!lib) {
		fprintf(stderr, "cannot load the double %s: %s\n", path, dlerror());
		exit(1);
	}
	int missing = 0;
#define X_SYM(field, type, name, req)                                  \
	cu.field = (type)dlsym(lib, name);                             \
	if (!cu.field) {                                               \
		fprintf(stderr, "the double does not export %s\n", name); \
		missing++;                                             \
	}
	COH_CU_NAMES(X_SYM)
#undef X_SYM
	dbl_fail = (void (*)(const char *, int, int))dlsym(lib, "cudadouble_fail");
	dbl_calls = (long (*)(const char *))dlsym(lib, "cudadouble_calls");
	dbl_state = (int (*)(const void *))dlsym(lib, "cudadouble_page_state");
	dbl_faultbacks = (long (*)(void))dlsym(lib, "cudadouble_faultbacks");
	dbl_copied = (long long (*)(void))dlsym(lib, "cudadouble_copied_bytes");
	dbl_reset = (void (*)(void))dlsym(lib, "cudadouble_reset");
	dbl_launches = (long (*)(void))dlsym(lib, "cudadouble_launches");
	if (!dbl_fail || !dbl_calls || !dbl_state || !dbl_faultbacks || !dbl_copied || !dbl_reset || !dbl_launches) {
		fprintf(stderr, "the double lacks its control API\n");
		missing++;
	}
	if (missing)
		exit(1);
}

/* 1 present, 0 not present, -1 unknown (pagemap unreadable). */
static int present(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	uint64_t e;
	ssize_t n = pread(fd, &e, sizeof e, (off_t)((uintptr_t)addr / PG * sizeof e));
	close(fd);
	if (n != (ssize_t)sizeof e)
		return -1;
	return (int)(e >> 63);
}

static int range_attr(int attrib, const void *p, size_t bytes)
{
	int v = 12345;
	CUresult r = cu.range_attribute(&v, sizeof v, attrib, dp(p), bytes);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "[%s] cuMemRangeGetAttribute(%d) returned %d\n", suite, attrib, r);
		failures++;
	}
	return v;
}

static size_t free_mem(void)
{
	size_t f = 0, t = 0;
	CUresult r = cu.mem_get_info(&f, &t);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "[%s] cuMemGetInfo_v2 returned %d\n", suite, r);
		failures++;
	}
	return f;
}

/* Every page of [p, p + n pages) has state st (per the double). */
static int states_are(const void *p, size_t npages, int st)
{
	for (size_t i = 0; i < npages; i++)
		if (dbl_state((const char *)p + i * PG) != st)
			return 0;
	return 1;
}

/* Every page of the range is (not) present per /proc/self/pagemap; 1 when unknown. */
static int presence_is(const void *p, size_t npages, int want)
{
	for (size_t i = 0; i < npages; i++) {
		int v = present((const char *)p + i * PG);
		if (v >= 0 && v != want)
			return 0;
	}
	return 1;
}

static unsigned char *alloc_managed(size_t bytes)
{
	CUdeviceptr p = 0;
	CUresult r = cu.alloc_managed(&p, bytes, CU_MEM_ATTACH_GLOBAL);
	if (r != CUDA_SUCCESS) {
		fprintf(stderr, "[%s] cuMemAllocManaged(%zu) returned %d\n", suite, bytes, r);
		exit(1);
	}
	return (unsigned char *)(uintptr_t)p;
}

static CUcontext ctx0;

/* ---------------------------------------------------------------- */

static void test_gate(void)
{
	int n = -1, v = 0;
	const char *name = NULL;
	CHECK_EQ(cu.device_count(&n), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_EQ(cu.mem_get_info(&(size_t){ 0 }, &(size_t){ 0 }), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_EQ(cu.driver_version(&v), CUDA_SUCCESS);
	CHECK_EQ(v, 13000);
	CHECK_EQ(cu.error_name(CUDA_ERROR_NOT_INITIALIZED, &name), CUDA_SUCCESS);
	CHECK(name && strcmp(name, "CUDA_ERROR_NOT_INITIALIZED") == 0);
	CHECK_EQ(cu.init(1), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.device_count(&n), CUDA_ERROR_NOT_INITIALIZED);
	CHECK_EQ(cu.init(0), CUDA_SUCCESS);
	CHECK_EQ(cu.init(0), CUDA_SUCCESS);
	CHECK_EQ(cu.device_count(&n), CUDA_SUCCESS);
	CHECK_EQ(dbl_calls("cuInit"), 3);
	CHECK_EQ(dbl_calls("cuDeviceGetCount"), 3);
	CHECK_EQ(dbl_calls("noSuchEntry"), -1);
}

static void test_devices(void)
{
	int n = 0, d = -1;
	char name[64];
	CHECK_EQ(cu.device_count(&n), 0);
	CHECK_EQ(n, 2);
	CHECK_EQ(cu.device_get(&d, 2), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.device_get(&d, -1), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.device_get(&d, 1), 0);
	CHECK_EQ(d, 1);
	CHECK_EQ(cu.device_name(name, sizeof name, 1), 0);
	CHECK(strcmp(name, "libcoherent CUDA double 1") == 0);
	CHECK_EQ(cu.device_name(name, 5, 0), 0);
	CHECK(strcmp(name, "libc") == 0);
	CHECK_EQ(cu.device_name(name, sizeof name, 2), CUDA_ERROR_INVALID_DEVICE);

	CUuuid u0, u1, u0b;
	CHECK_EQ(cu.device_uuid(&u0, 0), 0);
	CHECK_EQ(cu.device_uuid(&u1, 1), 0);
	CHECK_EQ(cu.device_uuid(&u0b, 0), 0);
	CHECK(memcmp(&u0, &u1, sizeof u0) != 0);
	CHECK(memcmp(&u0, &u0b, sizeof u0) == 0);
	CHECK_EQ(cu.device_uuid(&u0, 5), CUDA_ERROR_INVALID_DEVICE);

	size_t total = 0;
	CHECK_EQ(cu.device_total_mem(&total, 1), 0);
	CHECK_EQ(total, DEV_MEM);
	CHECK_EQ(cu.device_total_mem(&total, 3), CUDA_ERROR_INVALID_DEVICE);

	static const struct {
		int attr, v0, v1;
	} want[] = {
		{ 33, 0x10, 0x11 }, { 34, 0, 0 }, { 50, 0, 0 },  { 41, 1, 1 },  { 75, 9, 9 },   { 76, 0, 0 },
		{ 83, 1, 1 },	    { 86, 0, 0 }, { 88, 0, 0 },  { 89, 1, 1 },  { 91, 1, 1 },   { 99, 1, 1 },
		{ 100, 0, 0 },	    { 101, 0, 0 }, { 130, 0, 0 }, { 131, -1, -1 }, { 134, 0, 0 },
	};
	for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
		int v0 = 77, v1 = 77;
		CHECK_EQ(cu.device_attribute(&v0, want[i].attr, 0), 0);
		CHECK_EQ(cu.device_attribute(&v1, want[i].attr, 1), 0);
		if (v0 != want[i].v0 || v1 != want[i].v1) {
			fprintf(stderr, "[%s] attribute %d: %d/%d, expected %d/%d\n", suite, want[i].attr, v0, v1,
				want[i].v0, want[i].v1);
			failures++;
		}
	}
	int v = 0;
	CHECK_EQ(cu.device_attribute(&v, 999, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.device_attribute(&v, 33, 2), CUDA_ERROR_INVALID_DEVICE);
	const char *nm = "x";
	CHECK_EQ(cu.error_name(12345, &nm), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.error_name(712, &nm), 0);
	CHECK(strcmp(nm, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED") == 0);
}

static void *no_ctx_thread(void *arg)
{
	size_t f, t;
	*(CUresult *)arg = cu.mem_get_info(&f, &t);
	return NULL;
}

static void test_contexts(void)
{
	size_t f = 0, t = 0;
	CUdeviceptr p = 0;
	CUstream s;
	CUevent e;
	CUcontext c = NULL, c2 = NULL, popped = NULL;
	char buf[64];

	CHECK_EQ(cu.mem_get_info(&f, &t), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.alloc_managed(&p, PG, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.stream_create(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.event_create(&e, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.prefetch_v2(dp(buf), 1, host_loc(), 0, NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.prefetch(dp(buf), 1, -1, NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.advise_v2(dp(buf), 1, 1, host_loc()), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.advise(dp(buf), 1, 1, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(buf + 8), 8, NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.host_register(buf, sizeof buf, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.stream_sync(NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.ctx_pop(&popped), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.ctx_push(NULL), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.ctx_push((CUcontext)(void *)buf), CUDA_ERROR_INVALID_CONTEXT);

	/* Retain is refcounted and stable; release past zero is refused. */
	CHECK_EQ(cu.primary_retain(&c, 0), 0);
	CHECK_EQ(cu.primary_retain(&c2, 0), 0);
	CHECK(c != NULL && c == c2);
	CHECK_EQ(cu.primary_retain(&c2, 2), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.ctx_push(c), 0);
	CHECK_EQ(cu.mem_get_info(&f, &t), 0);
	CHECK_EQ(t, DEV_MEM);
	CHECK_EQ(f, DEV_MEM);
	CHECK_EQ(cu.ctx_pop(&popped), 0);
	CHECK(popped == c);
	CHECK_EQ(cu.ctx_pop(&popped), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.primary_release(0), 0);
	CHECK_EQ(cu.primary_release(0), 0);
	CHECK_EQ(cu.primary_release(0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK_EQ(cu.primary_release(7), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.ctx_push(c), CUDA_ERROR_INVALID_CONTEXT); /* destroyed */

	/* The last release destroys the context and the memory made in it. */
	CUcontext c1 = NULL;
	CHECK_EQ(cu.primary_retain(&c1, 1), 0);
	CHECK_EQ(cu.ctx_push(c1), 0);
	unsigned char *m = alloc_managed(PG);
	m[0] = 1;
	CHECK_EQ(dbl_state(m), -1);
	CHECK_EQ(cu.ctx_pop(NULL), 0);
	CHECK_EQ(cu.primary_release(1), 0);
	CHECK_EQ(dbl_state(m), -4);
	CHECK_EQ(cu.mem_free(dp(m)), CUDA_ERROR_INVALID_VALUE);

	/* The context the rest of the suite works in (device 0). */
	CHECK_EQ(cu.primary_retain(&ctx0, 0), 0);
	CHECK_EQ(cu.ctx_push(ctx0), 0);
	CHECK_EQ(cu.mem_get_info(&f, &t), 0);

	/* The current context is per thread. */
	pthread_t th;
	CUresult tr = -1;
	CHECK_EQ(pthread_create(&th, NULL, no_ctx_thread, &tr), 0);
	pthread_join(th, NULL);
	CHECK_EQ(tr, CUDA_ERROR_INVALID_CONTEXT);
}

static void test_migrate(void)
{
	const size_t np = 16, bytes = np * PG;
	size_t free0 = free_mem();
	CHECK_EQ(free0, DEV_MEM);
	unsigned char *p = alloc_managed(bytes);
	CHECK_EQ((uintptr_t)p % (2 * MIB), 0);
	CHECK(states_are(p, np, -3));
	CHECK(presence_is(p, np, 0));
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), CU_DEVICE_INVALID);

	long fb0 = dbl_faultbacks();
	for (size_t i = 0; i < bytes; i++)
		p[i] = (unsigned char)(i * 7 + 3);
	CHECK_EQ(dbl_faultbacks(), fb0); /* first touches are not fault-backs */
	CHECK(states_are(p, np, -1));
	CHECK(presence_is(p, np, 1));

	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), 0);
	CHECK(states_are(p, np, 0));
	CHECK(presence_is(p, np, 0));
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), 0);
	CHECK_EQ(range_attr(RANGE_LAST_PREFETCH_TYPE, p, bytes), CU_MEM_LOCATION_TYPE_DEVICE);
	CHECK_EQ(range_attr(RANGE_LAST_PREFETCH_ID, p, bytes), 0);
	CHECK_EQ(free_mem(), free0 - bytes);

	/* A CPU read faults the page back with its data. */
	CHECK_EQ(*(volatile unsigned char *)(p + 5 * PG + 7), (unsigned char)((5 * PG + 7) * 7 + 3));
	CHECK_EQ(dbl_faultbacks(), fb0 + 1);
	CHECK_EQ(dbl_state(p + 5 * PG), -1);
	CHECK_EQ(dbl_state(p + 4 * PG), 0);
	CHECK_EQ(dbl_state(p + 6 * PG), 0);
	CHECK(presence_is(p + 5 * PG, 1, 1));
	CHECK(presence_is(p + 4 * PG, 1, 0));
	CHECK_EQ(free_mem(), free0 - bytes + PG);

	/* Back to the host (legacy form): data intact, pages mapped. */
	CHECK_EQ(cu.prefetch(dp(p), bytes, CU_DEVICE_CPU, NULL), 0);
	CHECK(states_are(p, np, -1));
	CHECK(presence_is(p, np, 1));
	CHECK_EQ(free_mem(), free0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), CU_DEVICE_CPU);
	CHECK_EQ(range_attr(RANGE_LAST_PREFETCH_TYPE, p, bytes), CU_MEM_LOCATION_TYPE_HOST);
	size_t bad = 0;
	for (size_t i = 0; i < bytes; i++)
		bad += p[i] != (unsigned char)(i * 7 + 3);
	CHECK_EQ(bad, 0);
	CHECK_EQ(dbl_faultbacks(), fb0 + 1);

	/* Device to device: relabelled, device 0's memory untouched. */
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(1), 0, NULL), 0);
	CHECK(states_are(p, np, 1));
	CHECK_EQ(free_mem(), free0);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), 0);
	CHECK(states_are(p, np, 0));
	CHECK_EQ(free_mem(), free0 - bytes);

	/* Unaligned ranges are rounded outwards to pages. */
	CHECK_EQ(cu.prefetch_v2(dp(p + 100), 5000, host_loc(), 0, NULL), 0);
	CHECK_EQ(dbl_state(p), -1);
	CHECK_EQ(dbl_state(p + PG), -1);
	CHECK_EQ(dbl_state(p + 2 * PG), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(range_attr(RANGE_LAST_PREFETCH_TYPE, p, bytes), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, 2 * PG), CU_DEVICE_CPU);
	CHECK_EQ(p[PG + 1], (unsigned char)((PG + 1) * 7 + 3));

	/* Refusals. */
	unsigned char *heap = malloc(2 * PG);
	int v;
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 1, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, (CUmemLocation){ 3, 0 }, 0, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(7), 0, NULL), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.prefetch(dp(p), bytes, 5, NULL), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.prefetch(dp(p), bytes, CU_DEVICE_INVALID, NULL), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes + PG, dev_loc(0), 0, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(p), 0, dev_loc(0), 0, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(heap), PG, dev_loc(0), 0, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, (CUstream)(void *)heap), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.range_attribute(&v, 4, 4, dp(heap), PG), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.range_attribute(&v, 8, 4, dp(p), PG), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.range_attribute(&v, 4, 99, dp(p), PG), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.range_attribute(NULL, 4, 4, dp(p), PG), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.range_attribute(&v, 6, RANGE_ACCESSED_BY, dp(p), PG), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(dbl_state(p + 2 * PG), 0); /* nothing moved by the refused calls */
	free(heap);

	CHECK_EQ(cu.mem_free(dp(p + PG)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
	CHECK_EQ(dbl_state(p), -4);
	CHECK_EQ(cu.mem_free(dp(p)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(free_mem(), free0);

	CUdeviceptr q;
	CHECK_EQ(cu.alloc_managed(&q, 0, CU_MEM_ATTACH_GLOBAL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.alloc_managed(&q, PG, 4), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.alloc_managed(NULL, PG, 1), CUDA_ERROR_INVALID_VALUE);
}

static void test_advise(void)
{
	const size_t np = 8, bytes = np * PG;
	unsigned char *p = alloc_managed(bytes);
	int acc[3];

	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(cu.advise_v2(dp(p), bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, host_loc()), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, p, bytes), CU_DEVICE_CPU);
	CHECK_EQ(range_attr(RANGE_PREFERRED_TYPE, p, bytes), CU_MEM_LOCATION_TYPE_HOST);
	CHECK(states_are(p, np, -3)); /* advice moves nothing */

	CHECK_EQ(cu.advise_v2(dp(p), 4 * PG, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, dev_loc(1)), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, p, 4 * PG), 1);
	CHECK_EQ(range_attr(RANGE_PREFERRED_TYPE, p, 4 * PG), CU_MEM_LOCATION_TYPE_DEVICE);
	CHECK_EQ(range_attr(RANGE_PREFERRED_ID, p, 4 * PG), 1);
	CHECK(states_are(p, np, -3));
	CHECK_EQ(cu.advise(dp(p), bytes, CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION, 0), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(range_attr(RANGE_PREFERRED_TYPE, p, bytes), 0);

	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, bytes), 0);
	CHECK_EQ(cu.advise(dp(p), bytes, CU_MEM_ADVISE_SET_READ_MOSTLY, 99), 0); /* device ignored */
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, bytes), 1);
	CHECK_EQ(cu.advise_v2(dp(p + 3 * PG), 1, CU_MEM_ADVISE_UNSET_READ_MOSTLY, (CUmemLocation){ 0, 0 }), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, bytes), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY, p, 3 * PG), 1);

	CHECK_EQ(cu.advise_v2(dp(p), bytes, CU_MEM_ADVISE_SET_ACCESSED_BY, dev_loc(1)), 0);
	CHECK_EQ(cu.advise(dp(p), bytes, CU_MEM_ADVISE_SET_ACCESSED_BY, CU_DEVICE_CPU), 0);
	CHECK_EQ(cu.range_attribute(acc, sizeof acc, RANGE_ACCESSED_BY, dp(p), bytes), 0);
	CHECK(acc[0] == 1 && acc[1] == CU_DEVICE_CPU && acc[2] == CU_DEVICE_INVALID);
	CHECK_EQ(cu.advise_v2(dp(p), PG, CU_MEM_ADVISE_UNSET_ACCESSED_BY, dev_loc(1)), 0);
	CHECK_EQ(cu.range_attribute(acc, sizeof acc, RANGE_ACCESSED_BY, dp(p), bytes), 0);
	CHECK(acc[0] == CU_DEVICE_CPU && acc[1] == CU_DEVICE_INVALID && acc[2] == CU_DEVICE_INVALID);

	CHECK_EQ(cu.advise_v2(dp(p), bytes, 0, host_loc()), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.advise_v2(dp(p), bytes, 7, host_loc()), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.advise_v2(dp(p), bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, dev_loc(9)),
		 CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.advise_v2(dp(p), bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, (CUmemLocation){ 0, 0 }),
		 CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.advise(dp(p), bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, 9), CUDA_ERROR_INVALID_DEVICE);
	CHECK_EQ(cu.advise(dp(p), bytes + 1, CU_MEM_ADVISE_SET_READ_MOSTLY, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

static void test_memcpy(void)
{
	const size_t np = 4, bytes = np * PG;
	unsigned char *p = alloc_managed(bytes);
	for (size_t i = 0; i < bytes; i++)
		p[i] = (unsigned char)(i ^ 0x5a);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), 0);
	long fb = dbl_faultbacks();
	long long copied = dbl_copied();
	size_t free0 = free_mem();

	unsigned char *buf = malloc(bytes), *src = malloc(PG);
	memset(buf, 0xff, bytes);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p), bytes, NULL), 0);
	size_t bad = 0;
	for (size_t i = 0; i < bytes; i++)
		bad += buf[i] != (unsigned char)(i ^ 0x5a);
	CHECK_EQ(bad, 0);
	CHECK(states_are(p, np, 0));
	CHECK(presence_is(p, np, 0));
	CHECK_EQ(dbl_faultbacks(), fb);
	CHECK_EQ(dbl_copied(), copied + (long long)bytes);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), 0);

	/* Across a page boundary, unaligned. */
	memset(buf, 0, 32);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p + PG - 10), 20, NULL), 0);
	bad = 0;
	for (size_t i = 0; i < 20; i++)
		bad += buf[i] != (unsigned char)((PG - 10 + i) ^ 0x5a);
	CHECK_EQ(bad, 0);

	/* Into device-resident memory: stays there, the CPU then sees it. */
	memset(src, 0xee, PG);
	CHECK_EQ(cu.memcpy_async(dp(p + 2 * PG + 50), dp(src), 100, NULL), 0);
	CHECK_EQ(dbl_state(p + 2 * PG), 0);
	CHECK_EQ(dbl_faultbacks(), fb);
	CHECK_EQ(p[2 * PG + 50], 0xee);
	CHECK_EQ(p[2 * PG + 149], 0xee);
	CHECK_EQ(p[2 * PG + 49], (unsigned char)((2 * PG + 49) ^ 0x5a));
	CHECK_EQ(p[2 * PG + 150], (unsigned char)((2 * PG + 150) ^ 0x5a));
	CHECK_EQ(dbl_faultbacks(), fb + 1);
	CHECK_EQ(dbl_state(p + 2 * PG), -1);

	/* Managed to managed, host-resident page to device-resident page. */
	CHECK_EQ(cu.memcpy_async(dp(p + 3 * PG), dp(p + 2 * PG), 200, NULL), 0);
	CHECK_EQ(dbl_state(p + 3 * PG), 0);
	CHECK_EQ(p[3 * PG + 60], 0xee);

	/* Unpopulated pages read as zeros and stay unpopulated; written ones are
	 * populated on the context's device. */
	unsigned char *q = alloc_managed(2 * PG);
	size_t free1 = free_mem();
	memset(buf, 0xff, bytes);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(q), 2 * PG, NULL), 0);
	CHECK_EQ(buf[0], 0);
	CHECK_EQ(buf[2 * PG - 1], 0);
	CHECK(states_are(q, 2, -3));
	CHECK_EQ(cu.memcpy_async(dp(q + 10), dp(src), 100, NULL), 0);
	CHECK_EQ(dbl_state(q), 0);
	CHECK_EQ(dbl_state(q + PG), -3);
	CHECK_EQ(free_mem(), free1 - PG);
	CHECK_EQ(q[9], 0);
	CHECK_EQ(q[10], 0xee);
	CHECK_EQ(q[110], 0);

	/* Refusals. */
	CUstream s;
	CHECK_EQ(cu.stream_create(&s, 0), 0);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p), 16, s), 0);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p), 16, (CUstream)(void *)buf), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.stream_destroy(s), 0);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p), 16, s), CUDA_ERROR_INVALID_VALUE);
	unsigned char *gone = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(gone != MAP_FAILED);
	munmap(gone, PG);
	CHECK_EQ(cu.memcpy_async(dp(gone), dp(p), 16, NULL), CUDA_ERROR_INVALID_VALUE);
	unsigned char *none = mmap(NULL, PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_EQ(cu.memcpy_async(dp(p), dp(none), 16, NULL), CUDA_ERROR_INVALID_VALUE);
	munmap(none, PG);
	CHECK_EQ(cu.memcpy_async(dp(buf), dp(p), 0, NULL), 0);

	free(buf);
	free(src);
	CHECK_EQ(cu.mem_free(dp(q)), 0);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
	CHECK_EQ(free_mem(), free0 + 4 * PG); /* free0 was measured with p's 4 pages on the device */
}

static void test_register(void)
{
	unsigned char *m = alloc_managed(2 * PG);
	CHECK_EQ(cu.host_register(m, PG, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.host_register(m + 100, 10, 0), CUDA_ERROR_INVALID_VALUE);

	unsigned char *buf = aligned_alloc(PG, 3 * PG);
	unsigned mt = 99, man = 99;
	CHECK_EQ(cu.host_register(buf, 3 * PG, 0), 0);
	CHECK_EQ(cu.host_register(buf, 3 * PG, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
	CHECK_EQ(cu.host_register(buf + PG, 10, 0), CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED);
	CHECK_EQ(cu.pointer_attribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, dp(buf + 5)), 0);
	CHECK_EQ(mt, 1); /* CU_MEMORYTYPE_HOST */
	CHECK_EQ(cu.pointer_attribute(&man, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(buf + 5)), 0);
	CHECK_EQ(man, 0);
	CHECK_EQ(cu.host_unregister(buf + 1), HOST_NOT_REGISTERED);
	CHECK_EQ(cu.host_unregister(buf), 0);
	CHECK_EQ(cu.host_unregister(buf), HOST_NOT_REGISTERED);
	CHECK_EQ(cu.pointer_attribute(&mt, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, dp(buf + 5)), CUDA_ERROR_INVALID_VALUE);
	free(buf);

	/* A registration populates (pins) the pages. */
	unsigned char *fresh = mmap(NULL, 2 * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(presence_is(fresh, 2, 0));
	CHECK_EQ(cu.host_register(fresh, 2 * PG, 0), 0);
	CHECK(presence_is(fresh, 2, 1));
	CHECK_EQ(cu.host_unregister(fresh), 0);
	munmap(fresh, 2 * PG);

	/* Read-only memory needs the READ_ONLY flag; unmapped memory is refused. */
	unsigned char *ro = mmap(NULL, 2 * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_EQ(cu.host_register(ro, 2 * PG, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.host_register(ro, 2 * PG, 0x8), 0);
	CHECK_EQ(cu.host_unregister(ro), 0);
	munmap(ro, 2 * PG);
	CHECK_EQ(cu.host_register(ro, 2 * PG, 0), CUDA_ERROR_INVALID_VALUE);
	char local[64];
	CHECK_EQ(cu.host_register(local, sizeof local, 0x10), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.host_register(NULL, PG, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.host_register(local, 0, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.mem_free(dp(m)), 0);
}

/* Modules: only libcoherent's device-access PTX loads; its kernel runs with
 * the GPU's view of memory. */
static void launch_access(CUfunction f, void *base, unsigned long long nblocks, unsigned ops,
			  unsigned long long pattern, void *sums, CUresult want)
{
	void *params[] = { &base, &nblocks, &ops, &pattern, &sums };
	CHECK_EQ(cu.launch_kernel(f, 1, 1, 1, 128, 1, 1, 0, NULL, params, NULL), want);
}

static void test_modules(void)
{
	static const char ptx[] = ".version 7.0\n.target sm_75\n.visible .entry coh_access(\n)\n{\n}\n";
	CUmodule mod, bad;
	CUfunction f;
	CHECK_EQ(cu.module_load_data(&bad, ".version 7.0\n.entry other(\n"), 218);
	CHECK_EQ(cu.module_load_data(&mod, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.module_load_data(&mod, ptx), 0);
	CHECK_EQ(cu.module_get_function(&f, mod, "other"), 500);
	CHECK_EQ(cu.module_get_function(&f, mod, "coh_access"), 0);
	unsigned char *m = alloc_managed(4 * PG);
	memset(m, 0, 4 * PG);
	CHECK(states_are(m, 4, -1));
	unsigned long long *sums = (unsigned long long *)alloc_managed(PG);
	long l0 = dbl_launches();
	launch_access(f, m, 4, 3, 5, sums, 0);
	CHECK_EQ(dbl_launches(), l0 + 1);
	CHECK(states_are(m, 4, 0));                 /* the GPU's touch faulted them over */
	CHECK(states_are(sums, 1, 0));
	CHECK_EQ(sums[0], 0);                        /* zeros summed before the fill */
	CHECK_EQ(((unsigned long long *)m)[1], 5 ^ (8ULL * 0x9E3779B97F4A7C15ULL));
	CHECK(states_are(m, 1, -1));                 /* the CPU read faulted page 0 back */
	/* memory the GPU cannot reach: ordinary memory without pageable access */
	unsigned char *plain = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	launch_access(f, plain, 1, 2, 1, NULL, 700);
	CHECK_EQ(plain[0], 0);
	/* registered host memory is reached in place */
	CHECK_EQ(cu.host_register(plain, PG, 0), 0);
	launch_access(f, plain, 1, 2, 1, NULL, 0);
	CHECK_EQ(((unsigned long long *)plain)[0], 1);
	CHECK_EQ(cu.host_unregister(plain), 0);
	munmap(plain, PG);
	CHECK_EQ(cu.launch_kernel(f, 1, 1, 1, 2048, 1, 1, 0, NULL, NULL, NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.module_unload(mod), 0);
	CHECK_EQ(cu.module_unload(mod), 400);
	launch_access(f, m, 1, 2, 1, NULL, 400);     /* the function went with its module */
	CHECK_EQ(cu.mem_free(dp(sums)), 0);
	CHECK_EQ(cu.mem_free(dp(m)), 0);
}

static void test_pointer(void)
{
	unsigned char *p = alloc_managed(3 * PG);
	unsigned u = 99;
	int ord = 99;
	CUdeviceptr start = 0;
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(p)), 0);
	CHECK_EQ(u, 1);
	u = 99;
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(p + PG + 5)), 0);
	CHECK_EQ(u, 1);
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, dp(p + 5)), 0);
	CHECK_EQ(u, 2); /* CU_MEMORYTYPE_DEVICE, as the real driver says of managed memory */
	CHECK_EQ(cu.pointer_attribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, dp(p)), 0);
	CHECK_EQ(ord, 0);
	CHECK_EQ(cu.pointer_attribute(&start, POINTER_RANGE_START, dp(p + PG)), 0);
	CHECK(start == dp(p));
	CHECK_EQ(cu.pointer_attribute(&u, 99, dp(p)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.pointer_attribute(NULL, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(p)), CUDA_ERROR_INVALID_VALUE);
	CHECK(states_are(p, 3, -3)); /* queries move nothing */

	unsigned char *heap = malloc(64);
	int local;
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(heap)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_MEMORY_TYPE, dp(heap)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(&local)), CUDA_ERROR_INVALID_VALUE);
	free(heap);
	CHECK_EQ(cu.mem_free(dp(p)), 0);

	/* Allocated in device 1's context. */
	CUcontext c1;
	CHECK_EQ(cu.primary_retain(&c1, 1), 0);
	CHECK_EQ(cu.ctx_push(c1), 0);
	unsigned char *q = alloc_managed(PG);
	CHECK_EQ(cu.ctx_pop(NULL), 0);
	CHECK_EQ(cu.pointer_attribute(&ord, CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL, dp(q)), 0);
	CHECK_EQ(ord, 1);
	CHECK_EQ(cu.mem_free(dp(q)), 0);
	CHECK_EQ(cu.primary_release(1), 0);
}

static void test_streams(void)
{
	CUstream s0, s1, bad;
	CUevent e, e2;
	CHECK_EQ(cu.stream_create(&s0, 0), 0);
	CHECK_EQ(cu.stream_create(&s1, CU_STREAM_NON_BLOCKING), 0);
	CHECK(s0 != NULL && s1 != NULL && s0 != s1);
	CHECK_EQ(cu.stream_create(&bad, 2), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.stream_create(NULL, 0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.stream_sync(s0), 0);
	CHECK_EQ(cu.stream_sync(NULL), 0);
	CHECK_EQ(cu.event_create(&e, 0), 0);
	CHECK_EQ(cu.event_create(&e2, 4), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_create(&e2, 4 | CU_EVENT_DISABLE_TIMING), 0);
	CHECK_EQ(cu.event_query(e), 0); /* never recorded: complete */
	CHECK_EQ(cu.event_record(e, s0), 0);
	CHECK_EQ(cu.event_record(e, NULL), 0);
	CHECK_EQ(cu.event_query(e), 0);
	CHECK_EQ(cu.event_sync(e), 0);
	CHECK_EQ(cu.event_destroy(e), 0);
	CHECK_EQ(cu.event_query(e), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_sync(e), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_record(e, s0), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_destroy(e), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_record(e2, (CUstream)(void *)&e), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.event_destroy(e2), 0);

	unsigned char *p = alloc_managed(PG);
	CHECK_EQ(cu.prefetch_v2(dp(p), PG, dev_loc(0), 0, s1), 0);
	CHECK_EQ(cu.stream_destroy(s1), 0);
	CHECK_EQ(cu.stream_sync(s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.stream_destroy(s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.prefetch_v2(dp(p), PG, host_loc(), 0, s1), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(dbl_state(p), 0);
	CHECK_EQ(cu.stream_destroy(s0), 0);
	CHECK_EQ(cu.stream_destroy(NULL), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

static void test_inject(void)
{
	const size_t np = 4, bytes = np * PG;
	unsigned char *p = alloc_managed(bytes);
	memset(p, 0x11, bytes);
	size_t free0 = free_mem();
	long calls = dbl_calls("cuMemPrefetchAsync_v2");

	dbl_fail("cuMemPrefetchAsync_v2", 1, CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK(states_are(p, np, -1));
	CHECK(presence_is(p, np, 1));
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(free_mem(), free0);
	CHECK_EQ(dbl_calls("cuMemPrefetchAsync_v2"), calls + 1);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), 0); /* one-shot */
	CHECK(states_are(p, np, 0));

	/* The nth next call; several entries at once; 0 disarms. */
	size_t f, t;
	dbl_fail("cuMemGetInfo_v2", 2, CUDA_ERROR_UNKNOWN);
	dbl_fail("cuStreamCreate", 1, CUDA_ERROR_INVALID_CONTEXT);
	dbl_fail("cuEventCreate", 1, CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_EQ(cu.mem_get_info(&f, &t), 0);
	CHECK_EQ(cu.mem_get_info(&f, &t), CUDA_ERROR_UNKNOWN);
	CHECK_EQ(cu.mem_get_info(&f, &t), 0);
	CUstream s = NULL;
	CHECK_EQ(cu.stream_create(&s, 0), CUDA_ERROR_INVALID_CONTEXT);
	CHECK(s == NULL);
	dbl_fail("cuEventCreate", 0, 0);
	CUevent e;
	CHECK_EQ(cu.event_create(&e, 0), 0);
	CHECK_EQ(cu.event_destroy(e), 0);

	/* Injection wins over everything, even an initialised cuInit. */
	dbl_fail("cuInit", 1, CUDA_ERROR_NO_DEVICE);
	CHECK_EQ(cu.init(0), CUDA_ERROR_NO_DEVICE);
	CHECK_EQ(cu.init(0), 0);

	/* A failed free leaves the allocation alone. */
	dbl_fail("cuMemFree_v2", 1, CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(cu.mem_free(dp(p)), CUDA_ERROR_INVALID_VALUE);
	CHECK_EQ(dbl_state(p), 0);
	CHECK_EQ(p[PG + 3], 0x11);

	dbl_fail("cuMemAllocManaged", 1, CUDA_ERROR_OUT_OF_MEMORY);
	dbl_reset();
	CHECK_EQ(dbl_calls("cuMemAllocManaged"), 0);
	CHECK_EQ(dbl_faultbacks(), 0);
	CHECK_EQ(dbl_copied(), 0);
	unsigned char *q = alloc_managed(PG); /* the reset disarmed it */
	CHECK_EQ(dbl_calls("cuMemAllocManaged"), 1);
	CHECK_EQ(cu.mem_free(dp(q)), 0);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

static void test_oom(void)
{
	size_t free0 = free_mem();
	const size_t bytes = 80 * MIB; /* more than the device holds */
	unsigned char *p = alloc_managed(bytes);
	p[0] = 1; /* one page on the host */

	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_EQ(dbl_state(p), -1);
	CHECK_EQ(dbl_state(p + PG), -3);
	CHECK_EQ(dbl_state(p + bytes - PG), -3);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, p, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(free_mem(), free0);

	CHECK_EQ(cu.prefetch_v2(dp(p), 32 * MIB, dev_loc(0), 0, NULL), 0);
	CHECK_EQ(free_mem(), free0 - 32 * MIB);
	size_t room = free_mem();
	CHECK_EQ(cu.prefetch_v2(dp(p + 32 * MIB), room + PG, dev_loc(0), 0, NULL), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_EQ(dbl_state(p + 32 * MIB), -3);
	CHECK_EQ(free_mem(), room);
	CHECK_EQ(cu.prefetch_v2(dp(p + 32 * MIB), room, dev_loc(0), 0, NULL), 0);
	CHECK_EQ(free_mem(), 0);
	/* A full device refuses a copy that would populate a page on it. */
	unsigned char one = 7;
	CHECK_EQ(cu.memcpy_async(dp(p + bytes - PG), dp(&one), 1, NULL), CUDA_ERROR_OUT_OF_MEMORY);
	CHECK_EQ(dbl_state(p + bytes - PG), -3);
	/* The CPU can still fault pages back; that frees device memory. */
	CHECK_EQ(p[PG], 0);
	CHECK_EQ(free_mem(), PG);
	/* Moving to the other device frees this one. */
	CHECK_EQ(cu.prefetch(dp(p), 32 * MIB, 1, NULL), 0);
	CHECK_EQ(free_mem(), 32 * MIB); /* 32 MiB less the page already faulted back */
	CHECK_EQ(cu.mem_free(dp(p)), 0);
	CHECK_EQ(free_mem(), free0);
}

static int child_status(pid_t pid)
{
	int st = 0;
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
	}
	return st;
}

static void no_core(void)
{
	struct rlimit rl = { 0, 0 };
	setrlimit(RLIMIT_CORE, &rl);
}

static void test_fork(void)
{
	unsigned char *p = alloc_managed(2 * PG);
	memset(p, 0xab, PG);
	memset(p + PG, 0xcd, PG);
	CHECK_EQ(cu.prefetch_v2(dp(p), PG, dev_loc(0), 0, NULL), 0);
	CHECK_EQ(dbl_state(p), 0);
	CHECK_EQ(dbl_state(p + PG), -1);
	fflush(NULL);

	/* Every call in the child fails as not initialised, cuInit included. */
	pid_t pid = fork();
	if (pid == 0) {
		int n;
		if (cu.device_count(&n) != CUDA_ERROR_NOT_INITIALIZED)
			_exit(100);
		_exit(cu.init(0));
	}
	int st = child_status(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == CUDA_ERROR_NOT_INITIALIZED);

	/* Reading device-resident managed memory kills the child. */
	pid = fork();
	if (pid == 0) {
		no_core();
		_exit(*(volatile unsigned char *)p == 0xab ? 10 : 11);
	}
	st = child_status(pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);

	/* So does host-resident managed memory: the child's copy is disabled. */
	pid = fork();
	if (pid == 0) {
		no_core();
		_exit(*(volatile unsigned char *)(p + PG) == 0xcd ? 10 : 11);
	}
	st = child_status(pid);
	CHECK(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV);

	/* Ordinary memory stays readable in the child. */
	unsigned char *heap = malloc(16);
	heap[3] = 42;
	pid = fork();
	if (pid == 0)
		_exit(heap[3] == 42 ? 0 : 1);
	st = child_status(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	free(heap);

	/* The parent is unaffected. */
	long fb = dbl_faultbacks();
	CHECK_EQ(p[10], 0xab);
	CHECK_EQ(p[PG + 10], 0xcd);
	CHECK_EQ(dbl_faultbacks(), fb + 1);
	CHECK_EQ(cu.init(0), 0);
	int n = 0;
	CHECK_EQ(cu.device_count(&n), 0);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

struct reader {
	const unsigned char *p;
	size_t bytes;
	size_t bad;
};

static void *read_all(void *arg)
{
	struct reader *r = arg;
	for (size_t i = 0; i < r->bytes; i += 64)
		r->bad += r->p[i] != (unsigned char)(i / PG + 1);
	return NULL;
}

static void test_threads(void)
{
	const size_t np = 64, bytes = np * PG;
	unsigned char *p = alloc_managed(bytes);
	for (size_t i = 0; i < np; i++)
		memset(p + i * PG, (int)(i + 1), PG);
	CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(0), 0, NULL), 0);
	long fb = dbl_faultbacks();
	pthread_t th[4];
	struct reader r[4];
	for (int i = 0; i < 4; i++) {
		r[i] = (struct reader){ p, bytes, 0 };
		CHECK_EQ(pthread_create(&th[i], NULL, read_all, &r[i]), 0);
	}
	for (int i = 0; i < 4; i++) {
		pthread_join(th[i], NULL);
		CHECK_EQ(r[i].bad, 0);
	}
	CHECK(states_are(p, np, -1));
	CHECK_EQ(dbl_faultbacks(), fb + (long)np); /* each page came back exactly once */
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

struct writer {
	unsigned char *p;
	size_t np;
	int id;
	int *stop;
	unsigned long done;
};

static void *write_loop(void *arg)
{
	struct writer *w = arg;
	/* Each writer owns one 8-byte counter per page; racing migrations must
	 * not lose an increment.  A pass is complete before stop is looked at,
	 * so every counter ends equal to done. */
	while (!__atomic_load_n(w->stop, __ATOMIC_ACQUIRE)) {
		for (size_t i = 0; i < w->np; i++)
			(*(volatile uint64_t *)(w->p + i * PG + (size_t)w->id * 8))++;
		w->done++;
	}
	return NULL;
}

static void test_migrate_while_writing(void)
{
	const size_t np = 16, bytes = np * PG;
	unsigned char *p = alloc_managed(bytes);
	memset(p, 0, bytes);
	int stop = 0;
	pthread_t th[3];
	struct writer w[3];
	for (int i = 0; i < 3; i++) {
		w[i] = (struct writer){ p, np, i, &stop, 0 };
		CHECK_EQ(pthread_create(&th[i], NULL, write_loop, &w[i]), 0);
	}
	for (int round = 0; round < 200; round++) {
		CHECK_EQ(cu.prefetch_v2(dp(p), bytes, dev_loc(round % 2), 0, NULL), 0);
		if (round % 3 == 0)
			CHECK_EQ(cu.prefetch_v2(dp(p + PG), 4 * PG, host_loc(), 0, NULL), 0);
	}
	__atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 3; i++)
		pthread_join(th[i], NULL);
	size_t bad = 0;
	for (int i = 0; i < 3; i++)
		for (size_t k = 0; k < np; k++)
			bad += *(uint64_t *)(p + k * PG + (size_t)i * 8) != w[i].done;
	CHECK_EQ(bad, 0);
	CHECK_EQ(cu.mem_free(dp(p)), 0);
}

/* ---- pageable (HMM) mode, run in a fresh process ---- */
static void test_pageable(void)
{
	int v = -1;
	CUcontext c;
	/* A child forked before the parent's cuInit may initialise the driver. */
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0)
		_exit(cu.init(0));
	int st = child_status(pid);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	CHECK_EQ(cu.init(0), 0);
	CHECK_EQ(cu.device_attribute(&v, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS, 0), 0);
	CHECK_EQ(v, 1);
	CHECK_EQ(cu.primary_retain(&c, 0), 0);
	CHECK_EQ(cu.ctx_push(c), 0);
	size_t free0 = free_mem();

	const size_t np = 8, bytes = np * PG;
	unsigned char *buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(buf != MAP_FAILED);
	memset(buf, 0x3c, bytes);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, buf, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(cu.prefetch_v2(dp(buf), bytes, dev_loc(0), 0, NULL), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, buf, bytes), 0);
	CHECK_EQ(range_attr(RANGE_LAST_PREFETCH_TYPE, buf, bytes), CU_MEM_LOCATION_TYPE_DEVICE);
	/* Recorded only: the data does not move. */
	CHECK(presence_is(buf, np, 1));
	CHECK_EQ(dbl_state(buf), -4);
	CHECK_EQ(buf[bytes - 1], 0x3c);
	CHECK_EQ(free_mem(), free0);

	CHECK_EQ(cu.prefetch(dp(buf + 100), 10, CU_DEVICE_CPU, NULL), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, buf, PG), CU_DEVICE_CPU);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, buf, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(cu.advise_v2(dp(buf), bytes, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, dev_loc(1)), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, buf, bytes), 1);
	CHECK_EQ(range_attr(RANGE_PREFERRED_TYPE, buf, bytes), CU_MEM_LOCATION_TYPE_DEVICE);

	/* Many pages: the side table grows. */
	const size_t big = 4096 * PG;
	unsigned char *large = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK_EQ(cu.prefetch_v2(dp(large), big, dev_loc(1), 0, NULL), 0);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, large, big), 1);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, buf, bytes), CU_DEVICE_INVALID);
	CHECK_EQ(range_attr(CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION, buf, bytes), 1);
	munmap(large, big);

	/* Unmapped memory is still refused; so are pointer attributes. */
	unsigned char *gone = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(gone, PG);
	CHECK_EQ(cu.prefetch_v2(dp(gone), PG, dev_loc(0), 0, NULL), CUDA_ERROR_INVALID_VALUE);
	unsigned u;
	CHECK_EQ(cu.pointer_attribute(&u, CU_POINTER_ATTRIBUTE_IS_MANAGED, dp(buf)), CUDA_ERROR_INVALID_VALUE);

	/* Managed memory behaves as before, beside pageable memory. */
	unsigned char *m = alloc_managed(PG);
	m[0] = 5;
	CHECK_EQ(cu.prefetch_v2(dp(m), PG, dev_loc(0), 0, NULL), 0);
	CHECK_EQ(dbl_state(m), 0);
	CHECK_EQ(free_mem(), free0 - PG);
	CHECK_EQ(m[0], 5);
	CHECK_EQ(cu.mem_free(dp(m)), 0);
	CHECK_EQ(cu.host_register(buf, bytes, 0), 0);
	CHECK_EQ(cu.host_unregister(buf), 0);
	munmap(buf, bytes);
}

static int run_pageable_child(const char *argv0)
{
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		setenv("CUDADOUBLE_PAGEABLE", "1", 1);
		execl("/proc/self/exe", argv0, "pageable", (char *)NULL);
		_exit(127);
	}
	int st = child_status(pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}

int main(int argc, char **argv)
{
	setenv("CUDADOUBLE_DEVICES", "2", 1);
	setenv("CUDADOUBLE_MEM_MB", "64", 1);
	unsetenv("CUDADOUBLE_FAIL");
	if (argc > 1 && strcmp(argv[1], "pageable") == 0) {
		suite = "pageable";
		load();
		test_pageable();
		if (failures)
			fprintf(stderr, "[pageable] %d check(s) failed\n", failures);
		return failures ? 1 : 0;
	}
	unsetenv("CUDADOUBLE_PAGEABLE");
	load();
	test_gate();
	test_devices();
	test_contexts();
	test_migrate();
	test_advise();
	test_memcpy();
	test_register();
	test_modules();
	test_pointer();
	test_streams();
	test_inject();
	test_oom();
	test_fork();
	test_threads();
	test_migrate_while_writing();
	CHECK_EQ(cu.ctx_pop(NULL), 0);
	CHECK_EQ(cu.primary_release(0), 0);
	dlclose(lib);

	int pr = run_pageable_child(argv[0]);
	if (pr != 0) {
		fprintf(stderr, "[main] the pageable suite failed (exit %d)\n", pr);
		failures++;
	}
	if (failures) {
		fprintf(stderr, "test_cudadouble: %d failure(s)\n", failures);
		return 1;
	}
	printf("test_cudadouble: all checks passed\n");
	return 0;
}
