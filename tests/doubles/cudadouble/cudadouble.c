/* SPDX-License-Identifier: MIT */
/*
 * cudadouble: a test double of the CUDA driver library (libcuda.so.1).
 *
 * It exports the entry points the nvidia backend resolves (COH_CU_NAMES in
 * backends/nvidia/cuda_abi.h) and models what the backend depends on: device
 * discovery, primary contexts, managed memory whose pages live either on the
 * CPU or on a "device", synchronous prefetch and fault-back, range and
 * pointer attributes, host registration, streams, events and fork.  A small
 * control API (cudadouble_*) lets tests inject failures and look inside.
 *
 * Managed memory.  Every allocation has three mappings:
 *   view   - the address handed out (the CUdeviceptr): a MAP_SHARED mapping
 *            of a memfd, like the real driver's MAP_SHARED /dev/nvidia-uvm
 *            mapping.  Pages that are not CPU-resident are PROT_NONE and
 *            have no page behind them, so /proc/self/pagemap reports them
 *            not present.
 *   alias  - a second, always read-write mapping of the same memfd, through
 *            which the double fills or drains a page while the view of it is
 *            still PROT_NONE (no other thread can see a half-copied page).
 *   shadow - private anonymous memory of the same size: "device memory".
 * A CPU touch of a non-resident page raises SIGSEGV; the double's handler
 * moves the page to the CPU (fault-back) and the access is re-executed.
 *
 * Everything is synchronous: the work of an "async" call is done when it
 * returns, so events are always complete.  All state sits behind one mutex.
 * README.md beside this file lists what is and is not modelled.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "../../../backends/nvidia/cuda_abi.h"

#define API __attribute__((visibility("default")))

/* Values the ABI header does not carry. */
#define CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED 713
#define CUDA_ERROR_INVALID_PTX 218
#define CUDA_ERROR_INVALID_HANDLE 400
#define CUDA_ERROR_NOT_FOUND 500
#define CU_MEM_ATTACH_HOST 0x2
#define CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY 3
#define CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE 5
#define CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID 6
#define CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE 7
#define CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID 8
#define CU_POINTER_ATTRIBUTE_CONTEXT 1
#define CU_POINTER_ATTRIBUTE_DEVICE_POINTER 3
#define CU_POINTER_ATTRIBUTE_HOST_POINTER 4
#define CU_POINTER_ATTRIBUTE_RANGE_START_ADDR 11
#define CU_POINTER_ATTRIBUTE_RANGE_SIZE 12
#define CU_MEMORYTYPE_HOST 1
#define CU_MEMORYTYPE_DEVICE 2
#define CU_MEM_LOCATION_TYPE_INVALID 0
#define CU_MEMHOSTREGISTER_PORTABLE 0x1
#define CU_MEMHOSTREGISTER_DEVICEMAP 0x2
#define CU_MEMHOSTREGISTER_READ_ONLY 0x8
#define CU_EVENT_BLOCKING_SYNC 0x1
#define CU_EVENT_INTERPROCESS 0x4
#define CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM 91
#define CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED 86
#define CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST 101
#define CU_STREAM_LEGACY ((CUstream)0x1)
#define CU_STREAM_PER_THREAD ((CUstream)0x2)
#define DRIVER_VERSION 13000

#define PG 4096UL
#define VIEW_ALIGN (2UL << 20)
#define MAXDEV 8
#define CTX_STACK 64
#define CTX_MAGIC 0xc0c7e4a1u
#define STREAM_MAGIC 0x57e4a111u
#define EVENT_MAGIC 0xe7e47111u
#define MODULE_MAGIC 0x30d0e1a5u
#define FUNC_MAGIC 0xf0c7a11bu

/* Page states and locations (a location is -2 none, -1 CPU, d >= 0 device). */
#define ST_UNPOP (-3)
#define ST_HOST (-1)
#define LOC_NONE CU_DEVICE_INVALID
#define LOC_CPU CU_DEVICE_CPU
#define ACC_CPU_BIT (1u << MAXDEV)

/* ---- exported entry points: the prototypes are the export list ---- */
API CUresult cuInit(unsigned flags);
API CUresult cuDriverGetVersion(int *version);
API CUresult cuDeviceGetCount(int *count);
API CUresult cuDeviceGet(CUdevice *dev, int ordinal);
API CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
API CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev);
API CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);
API CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev);
API CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev);
API CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
API CUresult cuCtxPushCurrent_v2(CUcontext ctx);
API CUresult cuCtxPopCurrent_v2(CUcontext *ctx);
API CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total);
API CUresult cuMemAllocManaged(CUdeviceptr *p, size_t bytes, unsigned flags);
API CUresult cuMemFree_v2(CUdeviceptr p);
API CUresult cuMemPrefetchAsync_v2(CUdeviceptr p, size_t bytes, CUmemLocation loc, unsigned flags, CUstream s);
API CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t bytes, CUdevice dst, CUstream s);
API CUresult cuMemAdvise_v2(CUdeviceptr p, size_t bytes, int advice, CUmemLocation loc);
API CUresult cuMemAdvise(CUdeviceptr p, size_t bytes, int advice, CUdevice dev);
API CUresult cuMemRangeGetAttribute(void *data, size_t size, int attrib, CUdeviceptr p, size_t bytes);
API CUresult cuPointerGetAttribute(void *data, int attrib, CUdeviceptr p);
API CUresult cuMemHostRegister_v2(void *p, size_t bytes, unsigned flags);
API CUresult cuMemHostUnregister(void *p);
API CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s);
API CUresult cuStreamCreate(CUstream *s, unsigned flags);
API CUresult cuStreamSynchronize(CUstream s);
API CUresult cuStreamDestroy_v2(CUstream s);
API CUresult cuEventCreate(CUevent *ev, unsigned flags);
API CUresult cuEventRecord(CUevent ev, CUstream s);
API CUresult cuEventQuery(CUevent ev);
API CUresult cuEventSynchronize(CUevent ev);
API CUresult cuEventDestroy_v2(CUevent ev);
API CUresult cuLaunchHostFunc(CUstream s, CUhostFn fn, void *user);
API CUresult cuMemPrefetchBatchAsync(CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *locs,
				     size_t *loc_idxs, size_t nlocs, unsigned long long flags, CUstream s);
API CUresult cuGetErrorName(CUresult r, const char **name);
API CUresult cuModuleLoadData(CUmodule *mod, const void *image);
API CUresult cuModuleGetFunction(CUfunction *fn, CUmodule mod, const char *name);
API CUresult cuModuleUnload(CUmodule mod);
API CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
			    unsigned shared_bytes, CUstream s, void **params, void **extra);

/* Control API for tests. */
API void cudadouble_fail(const char *entry, int nth, int result);
API long cudadouble_calls(const char *entry);
API int cudadouble_page_state(const void *addr);
API long cudadouble_faultbacks(void);
API long cudadouble_launches(void);
API long cudadouble_batches(void);   /* cuMemPrefetchBatchAsync calls that ran */
API long long cudadouble_copied_bytes(void);
API void cudadouble_reset(void);

/* Every export has exactly the type the backend's table expects. */
#define SAME_TYPE(fn, type) _Static_assert(__builtin_types_compatible_p(__typeof__(&fn), type), #fn " signature")
SAME_TYPE(cuInit, cu_init_fn);
SAME_TYPE(cuDriverGetVersion, cu_driver_version_fn);
SAME_TYPE(cuDeviceGetCount, cu_device_count_fn);
SAME_TYPE(cuDeviceGet, cu_device_get_fn);
SAME_TYPE(cuDeviceGetName, cu_device_name_fn);
SAME_TYPE(cuDeviceGetUuid_v2, cu_device_uuid_fn);
SAME_TYPE(cuDeviceTotalMem_v2, cu_device_total_mem_fn);
SAME_TYPE(cuDeviceGetAttribute, cu_device_attribute_fn);
SAME_TYPE(cuDevicePrimaryCtxRetain, cu_primary_retain_fn);
SAME_TYPE(cuDevicePrimaryCtxRelease_v2, cu_primary_release_fn);
SAME_TYPE(cuCtxPushCurrent_v2, cu_ctx_push_fn);
SAME_TYPE(cuCtxPopCurrent_v2, cu_ctx_pop_fn);
SAME_TYPE(cuMemGetInfo_v2, cu_mem_get_info_fn);
SAME_TYPE(cuMemAllocManaged, cu_alloc_managed_fn);
SAME_TYPE(cuMemFree_v2, cu_mem_free_fn);
SAME_TYPE(cuMemPrefetchAsync_v2, cu_prefetch_v2_fn);
SAME_TYPE(cuModuleLoadData, cu_module_load_data_fn);
SAME_TYPE(cuModuleGetFunction, cu_module_get_function_fn);
SAME_TYPE(cuModuleUnload, cu_module_unload_fn);
SAME_TYPE(cuLaunchKernel, cu_launch_kernel_fn);
SAME_TYPE(cuMemPrefetchAsync, cu_prefetch_fn);
SAME_TYPE(cuMemAdvise_v2, cu_advise_v2_fn);
SAME_TYPE(cuMemAdvise, cu_advise_fn);
SAME_TYPE(cuMemRangeGetAttribute, cu_range_attribute_fn);
SAME_TYPE(cuPointerGetAttribute, cu_pointer_attribute_fn);
SAME_TYPE(cuMemHostRegister_v2, cu_host_register_fn);
SAME_TYPE(cuMemHostUnregister, cu_host_unregister_fn);
SAME_TYPE(cuMemcpyAsync, cu_memcpy_async_fn);
SAME_TYPE(cuStreamCreate, cu_stream_create_fn);
SAME_TYPE(cuStreamSynchronize, cu_stream_fn);
SAME_TYPE(cuStreamDestroy_v2, cu_stream_fn);
SAME_TYPE(cuEventCreate, cu_event_create_fn);
SAME_TYPE(cuEventRecord, cu_event_record_fn);
SAME_TYPE(cuEventQuery, cu_event_fn);
SAME_TYPE(cuEventSynchronize, cu_event_fn);
SAME_TYPE(cuEventDestroy_v2, cu_event_fn);
SAME_TYPE(cuGetErrorName, cu_error_name_fn);
SAME_TYPE(cuLaunchHostFunc, cu_launch_host_func_fn);
SAME_TYPE(cuMemPrefetchBatchAsync, cu_prefetch_batch_fn);

/* One counter / failure slot per entry, indexed by the ABI table's field. */
enum entry {
#define X_ENUM(field, type, name, req) E_##field,
	COH_CU_NAMES(X_ENUM)
#undef X_ENUM
	E_COUNT
};
static const char *const entry_names[E_COUNT] = {
#define X_NAME(field, type, name, req) name,
	COH_CU_NAMES(X_NAME)
#undef X_NAME
};

/* ---- state ---- */
struct page {
	signed char state;  /* ST_UNPOP, ST_HOST or a device (managed pages only) */
	signed char last;   /* last prefetch location */
	signed char pref;   /* preferred location */
	unsigned char rmostly;
	uint16_t accessed;  /* accessed-by: bit d for device d, ACC_CPU_BIT for the CPU */
};

struct alloc {
	struct alloc *next;
	uintptr_t base;     /* the view */
	size_t size;        /* rounded up to pages */
	size_t bytes;       /* as asked for */
	unsigned char *alias;
	unsigned char *shadow;
	size_t npages;
	int dev;            /* device of the allocating context */
	unsigned flags;
	struct page *pg;
};

struct reg {
	struct reg *next;
	uintptr_t lo, hi;
	int dev;
	unsigned flags;
};

struct CUctx_st {
	unsigned magic;
	int dev;
	int refs;
	bool active;
};

struct CUstream_st {
	struct CUstream_st *next;
	unsigned magic;
	int dev;
	unsigned flags;
};

/* A module of libcoherent's own PTX (the only code the double can run) and
 * its one kernel. */
struct CUfunc_st {
	unsigned magic;
};

struct CUmod_st {
	struct CUmod_st *next;
	unsigned magic;
	int dev;
	struct CUfunc_st fn;   /* "coh_access" */
};

struct CUevent_st {
	struct CUevent_st *next;
	unsigned magic;
	int dev;
	unsigned flags;
	bool recorded;
};

/* Side table for ordinary memory in pageable (HMM) mode, keyed by page number. */
struct hmm_ent {
	uintptr_t pfn;      /* 0: empty slot */
	struct page pg;
};

#define SPURIOUS_SLOTS 64

static struct {
	pthread_mutex_t mu;
	atomic_int owner;           /* tid holding mu, 0 if none */
	volatile sig_atomic_t forked;
	bool inited;
	int ndev;
	size_t mem;                 /* bytes per device */
	int pageable;
	struct CUctx_st ctx[MAXDEV];
	size_t resident[MAXDEV];    /* bytes of managed pages on each device */
	struct alloc *allocs;
	struct reg *regs;
	struct CUstream_st *streams;
	struct CUevent_st *events;
	struct CUmod_st *modules;
	long launches;              /* cuLaunchKernel calls that ran */
	long batches;               /* cuMemPrefetchBatchAsync calls that ran */
	struct hmm_ent *hmm;
	size_t hmm_cap, hmm_used;
	long calls[E_COUNT];
	int fail_nth[E_COUNT];
	CUresult fail_res[E_COUNT];
	long faultbacks;
	long long copied;
	unsigned long gen;          /* bumped on every residency change */
	struct {
		int tid;
		uintptr_t page;
		unsigned long gen;
	} spurious[SPURIOUS_SLOTS];
	struct sigaction old_segv;
	bool segv_installed;
} g = { .mu = PTHREAD_MUTEX_INITIALIZER };

static __thread CUcontext tl_stack[CTX_STACK];
static __thread int tl_depth;

static const unsigned char zero_page[PG] __attribute__((aligned(4096)));

/* ---- small helpers ---- */
static void lock(void)
{
	pthread_mutex_lock(&g.mu);
	atomic_store(&g.owner, (int)gettid());
}

static void unlock(void)
{
	atomic_store(&g.owner, 0);
	pthread_mutex_unlock(&g.mu);
}

static void die(const char *what)
{
	/* A syscall the model relies on failed (for instance mprotect hit
	 * vm.max_map_count): the state can no longer be trusted. */
	char buf[160];
	int n = snprintf(buf, sizeof buf, "cudadouble: %s failed: %s\n", what, strerror(errno));
	if (n > 0 && write(2, buf, (size_t)n) < 0) {
		/* nothing more to do */
	}
	abort();
}

static void must(int rc, const char *what)
{
	if (rc != 0)
		die(what);
}

static uintptr_t page_down(uintptr_t a)
{
	return a & ~(PG - 1);
}

static bool page_up(uintptr_t a, uintptr_t *out)
{
	if (a > UINTPTR_MAX - (PG - 1))
		return false;
	*out = (a + PG - 1) & ~(PG - 1);
	return true;
}

static int entry_index(const char *name)
{
	if (!name)
		return -1;
	for (int i = 0; i < E_COUNT; i++)
		if (strcmp(entry_names[i], name) == 0)
			return i;
	return -1;
}

/*
 * Common prologue of every entry point: takes the lock, counts the call and
 * decides the calls answered without doing anything (forked child, injected
 * failure, not initialised).  Returns true with *r set in those cases.  The
 * caller unlocks.
 */
static bool enter(enum entry e, bool need_init, CUresult *r)
{
	lock();
	g.calls[e]++;
	if (g.forked && e != E_driver_version && e != E_error_name) {
		*r = CUDA_ERROR_NOT_INITIALIZED;
		return true;
	}
	if (g.fail_nth[e] > 0 && --g.fail_nth[e] == 0) {
		*r = g.fail_res[e];
		return true;
	}
	if (need_init && !g.inited) {
		*r = CUDA_ERROR_NOT_INITIALIZED;
		return true;
	}
	return false;
}

#define API_BODY(field, need_init, expr)            \
	do {                                        \
		CUresult r_;                        \
		if (!enter(E_##field, need_init, &r_)) \
			r_ = (expr);                \
		unlock();                           \
		return r_;                          \
	} while (0)

static bool valid_dev(CUdevice d)
{
	return d >= 0 && d < g.ndev;
}

static struct CUctx_st *current_ctx(void)
{
	if (tl_depth == 0)
		return NULL;
	struct CUctx_st *c = tl_stack[tl_depth - 1];
	return c->active ? c : NULL;
}

static struct alloc *find_alloc(uintptr_t a)
{
	for (struct alloc *m = g.allocs; m; m = m->next)
		if (a >= m->base && a - m->base < m->size)
			return m;
	return NULL;
}

static bool overlaps_managed(uintptr_t lo, uintptr_t hi)
{
	for (struct alloc *m = g.allocs; m; m = m->next)
		if (lo < m->base + m->size && m->base < hi)
			return true;
	return false;
}

/* Is [lo, hi) entirely mapped, with at least protection prot? */
static bool range_mapped(uintptr_t lo, uintptr_t hi, int prot)
{
	FILE *f = fopen("/proc/self/maps", "re");
	if (!f)
		return false;
	char *line = NULL;
	size_t cap = 0;
	uintptr_t cur = lo;
	bool ok = false;
	while (getline(&line, &cap, f) > 0) {
		unsigned long s, e;
		char perms[8];
		if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3)
			continue;
		if (e <= cur)
			continue;
		if (s > cur)
			break;
		if (((prot & PROT_READ) && perms[0] != 'r') || ((prot & PROT_WRITE) && perms[1] != 'w'))
			break;
		cur = e;
		if (cur >= hi) {
			ok = true;
			break;
		}
	}
	free(line);
	fclose(f);
	return ok;
}

/* ---- pageable-memory side table ---- */
static size_t hmm_slot(uintptr_t pfn, size_t cap)
{
	return (size_t)((pfn * 0x9E3779B97F4A7C15ull) >> 24) & (cap - 1);
}

static bool hmm_reserve(size_t more)
{
	if ((g.hmm_used + more) * 2 <= g.hmm_cap)
		return true;
	size_t cap = g.hmm_cap ? g.hmm_cap : 1024;
	while ((g.hmm_used + more) * 2 > cap) {
		if (cap > SIZE_MAX / 4 / sizeof(struct hmm_ent))
			return false;
		cap *= 2;
	}
	struct hmm_ent *t = calloc(cap, sizeof *t);
	if (!t)
		return false;
	for (size_t i = 0; i < g.hmm_cap; i++) {
		if (!g.hmm[i].pfn)
			continue;
		size_t s = hmm_slot(g.hmm[i].pfn, cap);
		while (t[s].pfn)
			s = (s + 1) & (cap - 1);
		t[s] = g.hmm[i];
	}
	free(g.hmm);
	g.hmm = t;
	g.hmm_cap = cap;
	return true;
}

static const struct page page_default = { ST_HOST, LOC_NONE, LOC_NONE, 0, 0 };

/* The record of the page at pfn; created (room reserved beforehand) when asked. */
static struct page *hmm_get(uintptr_t pfn, bool create)
{
	if (!g.hmm_cap)
		return NULL;
	size_t s = hmm_slot(pfn, g.hmm_cap);
	while (g.hmm[s].pfn) {
		if (g.hmm[s].pfn == pfn)
			return &g.hmm[s].pg;
		s = (s + 1) & (g.hmm_cap - 1);
	}
	if (!create)
		return NULL;
	g.hmm[s].pfn = pfn;
	g.hmm[s].pg = page_default;
	g.hmm_used++;
	return &g.hmm[s].pg;
}

/*
 * The pages a range call works on: inside one managed allocation (*a set,
 * page indices [*i0, *i1)), or in pageable mode ordinary mapped memory that
 * touches no managed allocation (*a NULL, page addresses [*lo, *hi)).
 */
static CUresult resolve_range(CUdeviceptr p, size_t bytes, struct alloc **a, uintptr_t *lo, uintptr_t *hi)
{
	if (bytes == 0 || p == 0 || p > UINTPTR_MAX - bytes)
		return CUDA_ERROR_INVALID_VALUE;
	uintptr_t l = page_down((uintptr_t)p), h;
	if (!page_up((uintptr_t)p + bytes, &h))
		return CUDA_ERROR_INVALID_VALUE;
	struct alloc *m = find_alloc(l);
	if (m && h - m->base <= m->size) {
		*a = m;
		*lo = (l - m->base) / PG;
		*hi = (h - m->base) / PG;
		return CUDA_SUCCESS;
	}
	if (!g.pageable || overlaps_managed(l, h) || !range_mapped(l, h, 0))
		return CUDA_ERROR_INVALID_VALUE;
	*a = NULL;
	*lo = l;
	*hi = h;
	return CUDA_SUCCESS;
}

static bool stream_live(CUstream s)
{
	for (struct CUstream_st *t = g.streams; t; t = t->next)
		if (t == s)
			return t->magic == STREAM_MAGIC;
	return false;
}

static bool stream_special(CUstream s)
{
	return s == NULL || s == CU_STREAM_LEGACY || s == CU_STREAM_PER_THREAD;
}

static bool stream_ok(CUstream s)
{
	return stream_special(s) || stream_live(s);
}

static bool event_live(CUevent e)
{
	for (struct CUevent_st *t = g.events; t; t = t->next)
		if (t == e)
			return t->magic == EVENT_MAGIC;
	return false;
}

/* ---- residency changes (lock held) ---- */
static void populate(unsigned char *v, size_t len)
{
	if (madvise(v, len, MADV_POPULATE_WRITE) == 0)
		return;
	for (size_t o = 0; o < len; o += PG)
		__atomic_fetch_or(v + o, 0, __ATOMIC_RELAXED);
}

static size_t run_end(const struct alloc *a, size_t i, size_t end)
{
	size_t j = i + 1;
	while (j < end && a->pg[j].state == a->pg[i].state)
		j++;
	return j;
}

static void move_to_device(struct alloc *a, size_t i0, size_t i1, int d)
{
	for (size_t i = i0; i < i1;) {
		size_t j = run_end(a, i, i1), off = i * PG, len = (j - i) * PG;
		int st = a->pg[i].state;
		if (st == ST_HOST) {
			/* Block CPU access first: a racing CPU access faults and waits
			 * on the lock, then fault-backs the page once it is on the device. */
			must(mprotect((void *)(a->base + off), len, PROT_NONE), "mprotect");
			memcpy(a->shadow + off, a->alias + off, len);
			must(madvise(a->alias + off, len, MADV_REMOVE), "madvise(MADV_REMOVE)");
		} else if (st == ST_UNPOP) {
			must(madvise(a->shadow + off, len, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
		} else if (st != d) {
			g.resident[st] -= len;
		}
		if (st != d)
			g.resident[d] += len;
		for (size_t k = i; k < j; k++)
			a->pg[k].state = (signed char)d;
		i = j;
	}
	g.gen++;
}

static void move_to_host(struct alloc *a, size_t i0, size_t i1)
{
	for (size_t i = i0; i < i1;) {
		size_t j = run_end(a, i, i1), off = i * PG, len = (j - i) * PG;
		int st = a->pg[i].state;
		if (st != ST_HOST) {
			if (st >= 0) {
				memcpy(a->alias + off, a->shadow + off, len);
				must(madvise(a->shadow + off, len, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
				g.resident[st] -= len;
			}
			must(mprotect((void *)(a->base + off), len, PROT_READ | PROT_WRITE), "mprotect");
			/* The real driver maps the pages for the CPU when it migrates them. */
			populate((unsigned char *)(a->base + off), len);
			for (size_t k = i; k < j; k++)
				a->pg[k].state = ST_HOST;
		}
		i = j;
	}
	g.gen++;
}

static void unmap_alloc(struct alloc *a)
{
	for (size_t i = 0; i < a->npages; i++)
		if (a->pg[i].state >= 0)
			g.resident[a->pg[i].state] -= PG;
	munmap((void *)a->base, a->size);
	munmap(a->alias, a->size);
	munmap(a->shadow, a->size);
	free(a->pg);
	free(a);
	g.gen++;
}

/* The last release of a primary context destroys it and everything in it. */
static void destroy_ctx(int dev)
{
	g.ctx[dev].active = false;
	for (struct alloc **pp = &g.allocs; *pp;) {
		struct alloc *a = *pp;
		if (a->dev == dev) {
			*pp = a->next;
			unmap_alloc(a);
		} else {
			pp = &a->next;
		}
	}
	for (struct reg **pp = &g.regs; *pp;) {
		struct reg *r = *pp;
		if (r->dev == dev) {
			*pp = r->next;
			free(r);
		} else {
			pp = &r->next;
		}
	}
	for (struct CUstream_st **pp = &g.streams; *pp;) {
		struct CUstream_st *s = *pp;
		if (s->dev == dev) {
			*pp = s->next;
			s->magic = 0;
			free(s);
		} else {
			pp = &s->next;
		}
	}
	for (struct CUevent_st **pp = &g.events; *pp;) {
		struct CUevent_st *e = *pp;
		if (e->dev == dev) {
			*pp = e->next;
			e->magic = 0;
			free(e);
		} else {
			pp = &e->next;
		}
	}
	for (struct CUmod_st **pp = &g.modules; *pp;) {
		struct CUmod_st *m = *pp;
		if (m->dev == dev) {
			*pp = m->next;
			m->magic = 0;
			m->fn.magic = 0;
			free(m);
		} else {
			pp = &m->next;
		}
	}
}

/* ---- CPU fault emulation ---- */
static void segv_default(void)
{
	struct sigaction d;
	memset(&d, 0, sizeof d);
	d.sa_handler = SIG_DFL;
	sigemptyset(&d.sa_mask);
	sigaction(SIGSEGV, &d, NULL);
}

static void segv_chain(int sig, siginfo_t *si, void *uc)
{
	const struct sigaction *o = &g.old_segv;
	if (o->sa_flags & SA_SIGINFO) {
		if (o->sa_sigaction) {
			o->sa_sigaction(sig, si, uc);
			return;
		}
	} else if (o->sa_handler != SIG_DFL && o->sa_handler != SIG_IGN) {
		o->sa_handler(sig);
		return;
	}
	/* Default action: return with SIG_DFL so the access faults again and kills. */
	segv_default();
}

static void segv_handler(int sig, siginfo_t *si, void *uc)
{
	int saved_errno = errno;
	uintptr_t addr = (uintptr_t)si->si_addr;

	if (si->si_code <= 0)
		goto chain; /* sent, not a fault */
	if (g.forked) {
		/* The child's copy of managed memory is disabled: die like the
		 * real driver's child does. */
		if (find_alloc(addr)) {
			segv_default();
			errno = saved_errno;
			return;
		}
		goto chain;
	}
	int me = (int)gettid();
	if (atomic_load(&g.owner) == me)
		goto chain; /* a fault inside the double itself: a real crash */
	lock();
	struct alloc *a = find_alloc(addr);
	if (!a) {
		unlock();
		goto chain;
	}
	size_t i = (addr - a->base) / PG, off = i * PG;
	uintptr_t pageaddr = a->base + off;
	int st = a->pg[i].state;
	unsigned slot = (unsigned)me % SPURIOUS_SLOTS;
	if (st == ST_HOST) {
		/* Already CPU-resident: another thread resolved it, unless this
		 * thread faulted on the same page before with nothing changed in
		 * between (the user took the access away himself). */
		if (g.spurious[slot].tid == me && g.spurious[slot].page == pageaddr &&
		    g.spurious[slot].gen == g.gen) {
			g.spurious[slot].tid = 0;
			unlock();
			goto chain;
		}
		g.spurious[slot].tid = me;
		g.spurious[slot].page = pageaddr;
		g.spurious[slot].gen = g.gen;
		unlock();
		errno = saved_errno;
		return;
	}
	if (st >= 0) {
		memcpy(a->alias + off, a->shadow + off, PG);
		if (madvise(a->shadow + off, PG, MADV_DONTNEED) != 0)
			die("madvise(MADV_DONTNEED)");
		g.resident[st] -= PG;
		g.faultbacks++;
	}
	if (mprotect((void *)pageaddr, PG, PROT_READ | PROT_WRITE) != 0)
		die("mprotect");
	a->pg[i].state = ST_HOST;
	g.gen++;
	if (g.spurious[slot].tid == me)
		g.spurious[slot].tid = 0;
	unlock();
	errno = saved_errno;
	return;
chain:
	errno = saved_errno;
	segv_chain(sig, si, uc);
}

static void install_segv(void)
{
	if (g.segv_installed)
		return;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = segv_handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, &g.old_segv) != 0)
		die("sigaction");
	g.segv_installed = true;
}

/* ---- fork ---- */
static void atfork_prepare(void)
{
	lock();
}

static void atfork_parent(void)
{
	unlock();
}

static void atfork_child(void)
{
	unlock();   /* the forking thread took it in prepare: unlocked, not made anew */
	/* Only a parent that initialised the driver leaves the child unusable
	 * (the real driver's state is per process; a child of a parent that
	 * never called cuInit may initialise it afresh). */
	if (!g.inited)
		return;
	/* A grandchild: the child's disabled copies came PROT_NONE through
	 * fork, and what the child mapped over them since (a library's private
	 * copy) is not the driver's: the real driver disables only its own
	 * mappings. */
	if (!g.forked)
		for (struct alloc *a = g.allocs; a; a = a->next)
			mprotect((void *)a->base, a->size, PROT_NONE); /* fails harmlessly under MADV_DONTFORK */
	g.forked = 1;
	while (g.regs) {
		struct reg *r = g.regs;
		g.regs = r->next;
		free(r);
	}
}

static void parse_fail_env(void)
{
	/* CUDADOUBLE_FAIL="entry:nth:result[,entry:nth:result...]" */
	const char *env = getenv("CUDADOUBLE_FAIL");
	if (!env || !*env)
		return;
	char *copy = strdup(env), *save = NULL;
	if (!copy)
		return;
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *c1 = strchr(tok, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (!c2) {
			fprintf(stderr, "cudadouble: CUDADOUBLE_FAIL: ignoring '%s'\n", tok);
			continue;
		}
		*c1 = *c2 = '\0';
		int e = entry_index(tok);
		if (e < 0) {
			fprintf(stderr, "cudadouble: CUDADOUBLE_FAIL: no entry '%s'\n", tok);
			continue;
		}
		g.fail_nth[e] = atoi(c1 + 1);
		g.fail_res[e] = atoi(c2 + 1);
	}
	free(copy);
}

__attribute__((constructor)) static void cudadouble_load(void)
{
	pthread_atfork(atfork_prepare, atfork_parent, atfork_child);
	parse_fail_env();
}

__attribute__((destructor)) static void cudadouble_unload(void)
{
	/* Do not leave a handler pointing into an unmapped library. */
	if (!g.segv_installed)
		return;
	struct sigaction cur;
	if (sigaction(SIGSEGV, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
	    cur.sa_sigaction == segv_handler)
		sigaction(SIGSEGV, &g.old_segv, NULL);
	g.segv_installed = false;
}

/* ---- initialisation and devices ---- */
static long env_long(const char *name, long def, long lo, long hi)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return def;
	char *end;
	errno = 0;
	long v = strtol(s, &end, 10);
	if (errno || *end) {
		fprintf(stderr, "cudadouble: %s='%s' is not a number, using %ld\n", name, s, def);
		return def;
	}
	return v < lo ? lo : v > hi ? hi : v;
}

static CUresult do_init(unsigned flags)
{
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (g.inited)
		return CUDA_SUCCESS;
	int n = (int)env_long("CUDADOUBLE_DEVICES", 1, 0, MAXDEV);
	if (n == 0)
		return CUDA_ERROR_NO_DEVICE;
	g.ndev = n;
	g.mem = (size_t)env_long("CUDADOUBLE_MEM_MB", 1024, 1, 1L << 20) << 20;
	g.pageable = env_long("CUDADOUBLE_PAGEABLE", 0, 0, 1) ? 1 : 0;
	for (int d = 0; d < MAXDEV; d++)
		g.ctx[d] = (struct CUctx_st){ CTX_MAGIC, d, 0, false };
	install_segv();
	g.inited = true;
	return CUDA_SUCCESS;
}

static CUresult do_device_attribute(int *value, int attrib, CUdevice dev)
{
	if (!value)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	int v;
	switch (attrib) {
	case CU_DEVICE_ATTRIBUTE_PCI_BUS_ID: v = 0x10 + dev; break;
	case CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING: v = 1; break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: v = 9; break;
	case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY: v = 1; break;
	case CU_DEVICE_ATTRIBUTE_HOST_NATIVE_ATOMIC_SUPPORTED: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS: v = g.pageable; break;
	case CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS: v = 1; break;
	case CU_DEVICE_ATTRIBUTE_CAN_USE_HOST_POINTER_FOR_REGISTERED_MEM: v = 1; break;
	case CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED: v = 1; break;
	case CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_DIRECT_MANAGED_MEM_ACCESS_FROM_HOST: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_NUMA_CONFIG: v = 0; break;
	case CU_DEVICE_ATTRIBUTE_NUMA_ID: v = -1; break;
	case CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID: v = 0; break;
	default: return CUDA_ERROR_INVALID_VALUE;
	}
	*value = v;
	return CUDA_SUCCESS;
}

static CUresult do_device_get(CUdevice *dev, int ordinal)
{
	if (!dev)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(ordinal))
		return CUDA_ERROR_INVALID_DEVICE;
	*dev = ordinal;
	return CUDA_SUCCESS;
}

static CUresult do_device_name(char *name, int len, CUdevice dev)
{
	if (!name || len <= 0)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	snprintf(name, (size_t)len, "libcoherent CUDA double %d", dev);
	return CUDA_SUCCESS;
}

static CUresult do_device_uuid(CUuuid *uuid, CUdevice dev)
{
	if (!uuid)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	static const unsigned char stem[15] = { 'c', 'u', 'd', 'a', 'd', 'o', 'u', 'b', 'l', 'e', 0x4c, 0x43, 0x4f, 0x48, 0x00 };
	memcpy(uuid->bytes, stem, sizeof stem);
	uuid->bytes[15] = (unsigned char)dev;
	return CUDA_SUCCESS;
}

static CUresult do_total_mem(size_t *bytes, CUdevice dev)
{
	if (!bytes)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	*bytes = g.mem;
	return CUDA_SUCCESS;
}

/* ---- contexts ---- */
static CUresult do_retain(CUcontext *ctx, CUdevice dev)
{
	if (!ctx)
		return CUDA_ERROR_INVALID_VALUE;
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	g.ctx[dev].refs++;
	g.ctx[dev].active = true;
	*ctx = &g.ctx[dev];
	return CUDA_SUCCESS;
}

static CUresult do_release(CUdevice dev)
{
	if (!valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	if (g.ctx[dev].refs == 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (--g.ctx[dev].refs == 0)
		destroy_ctx(dev);
	return CUDA_SUCCESS;
}

static CUresult do_push(CUcontext ctx)
{
	bool known = false;
	for (int d = 0; d < g.ndev; d++)
		known |= ctx == &g.ctx[d];
	if (!known || ctx->magic != CTX_MAGIC || !ctx->active)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (tl_depth == CTX_STACK)
		return CUDA_ERROR_OUT_OF_MEMORY;
	tl_stack[tl_depth++] = ctx;
	return CUDA_SUCCESS;
}

static CUresult do_pop(CUcontext *ctx)
{
	if (tl_depth == 0)
		return CUDA_ERROR_INVALID_CONTEXT;
	CUcontext c = tl_stack[--tl_depth];
	if (ctx)
		*ctx = c;
	return CUDA_SUCCESS;
}

/* ---- memory ---- */
static CUresult do_mem_info(size_t *free_bytes, size_t *total)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!free_bytes || !total)
		return CUDA_ERROR_INVALID_VALUE;
	*total = g.mem;
	*free_bytes = g.mem - g.resident[c->dev];
	return CUDA_SUCCESS;
}

static CUresult do_alloc_managed(CUdeviceptr *p, size_t bytes, unsigned flags)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!p || bytes == 0 || (flags != CU_MEM_ATTACH_GLOBAL && flags != CU_MEM_ATTACH_HOST))
		return CUDA_ERROR_INVALID_VALUE;
	uintptr_t size;
	if (!page_up(bytes, &size) || size > SIZE_MAX - VIEW_ALIGN)
		return CUDA_ERROR_OUT_OF_MEMORY;

	struct alloc *a = calloc(1, sizeof *a);
	struct page *pg = calloc(size / PG, sizeof *pg);
	int fd = memfd_create("cudadouble-managed", MFD_CLOEXEC);
	void *reserve = MAP_FAILED, *alias = MAP_FAILED, *shadow = MAP_FAILED;
	if (!a || !pg || fd < 0 || ftruncate(fd, (off_t)size) != 0)
		goto fail;
	reserve = mmap(NULL, size + VIEW_ALIGN, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	alias = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	shadow = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (reserve == MAP_FAILED || alias == MAP_FAILED || shadow == MAP_FAILED)
		goto fail;
	/* The view: 2 MiB aligned like the real driver's allocations. */
	uintptr_t r = (uintptr_t)reserve, base = (r + VIEW_ALIGN - 1) & ~(VIEW_ALIGN - 1);
	if (mmap((void *)base, size, PROT_NONE, MAP_SHARED | MAP_FIXED, fd, 0) == MAP_FAILED)
		goto fail;
	if (base > r)
		munmap(reserve, base - r);
	if (r + VIEW_ALIGN > base)
		munmap((void *)(base + size), r + VIEW_ALIGN - base);
	close(fd);

	a->base = base;
	a->size = size;
	a->bytes = bytes;
	a->alias = alias;
	a->shadow = shadow;
	a->npages = size / PG;
	a->dev = c->dev;
	a->flags = flags;
	a->pg = pg;
	for (size_t i = 0; i < a->npages; i++)
		pg[i] = (struct page){ ST_UNPOP, LOC_NONE, LOC_NONE, 0, 0 };
	a->next = g.allocs;
	g.allocs = a;
	*p = (CUdeviceptr)base;
	return CUDA_SUCCESS;
fail:
	if (reserve != MAP_FAILED)
		munmap(reserve, size + VIEW_ALIGN);
	if (alias != MAP_FAILED)
		munmap(alias, size);
	if (shadow != MAP_FAILED)
		munmap(shadow, size);
	if (fd >= 0)
		close(fd);
	free(pg);
	free(a);
	return CUDA_ERROR_OUT_OF_MEMORY;
}

static CUresult do_mem_free(CUdeviceptr p)
{
	for (struct alloc **pp = &g.allocs; *pp; pp = &(*pp)->next) {
		struct alloc *a = *pp;
		if (a->base == (uintptr_t)p) {
			*pp = a->next;
			unmap_alloc(a);
			return CUDA_SUCCESS;
		}
	}
	return CUDA_ERROR_INVALID_VALUE;
}

/* dst: LOC_CPU or a valid device (checked by the callers). */
static CUresult prefetch(CUdeviceptr p, size_t bytes, int dst, CUstream s)
{
	if (!stream_ok(s))
		return CUDA_ERROR_INVALID_VALUE;
	struct alloc *a;
	uintptr_t lo, hi;
	CUresult r = resolve_range(p, bytes, &a, &lo, &hi);
	if (r != CUDA_SUCCESS)
		return r;
	if (!a) {
		/* Pageable memory: record only, the data does not move. */
		if (!hmm_reserve((hi - lo) / PG))
			return CUDA_ERROR_OUT_OF_MEMORY;
		for (uintptr_t x = lo; x < hi; x += PG)
			hmm_get(x / PG, true)->last = (signed char)dst;
		return CUDA_SUCCESS;
	}
	if (dst >= 0) {
		size_t need = 0;
		for (size_t i = lo; i < hi; i++)
			if (a->pg[i].state != dst)
				need += PG;
		if (need > g.mem - g.resident[dst])
			return CUDA_ERROR_OUT_OF_MEMORY;
		move_to_device(a, lo, hi, dst);
	} else {
		move_to_host(a, lo, hi);
	}
	for (size_t i = lo; i < hi; i++)
		a->pg[i].last = (signed char)dst;
	return CUDA_SUCCESS;
}

/* A location argument as the double's own numbering: a device ordinal or LOC_CPU. */
static CUresult decode_loc(CUmemLocation loc, int *out)
{
	if (loc.type == CU_MEM_LOCATION_TYPE_DEVICE) {
		if (!valid_dev(loc.id))
			return CUDA_ERROR_INVALID_DEVICE;
		*out = loc.id;
		return CUDA_SUCCESS;
	}
	if (loc.type == CU_MEM_LOCATION_TYPE_HOST) {
		*out = LOC_CPU;
		return CUDA_SUCCESS;
	}
	return CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_prefetch_v2(CUdeviceptr p, size_t bytes, CUmemLocation loc, unsigned flags, CUstream s)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (flags != 0)
		return CUDA_ERROR_INVALID_VALUE;
	int dst;
	CUresult r = decode_loc(loc, &dst);
	return r != CUDA_SUCCESS ? r : prefetch(p, bytes, dst, s);
}

/* cuMemPrefetchBatchAsync: every argument checked before any prefetch, then
 * each range as cuMemPrefetchAsync_v2 does it. */
static CUresult do_prefetch_batch(CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *locs,
				  size_t *idxs, size_t nlocs, unsigned long long flags, CUstream s)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!dptrs || !sizes || !locs || !idxs || count == 0 || nlocs == 0 || nlocs > count || flags ||
	    s == NULL || s == CU_STREAM_LEGACY || !stream_ok(s) || idxs[0] != 0)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t k = 0; k < nlocs; k++) {
		int dst;
		if ((k && idxs[k] <= idxs[k - 1]) || idxs[k] >= count || decode_loc(locs[k], &dst) != CUDA_SUCCESS)
			return CUDA_ERROR_INVALID_VALUE;
	}
	for (size_t k = 0, i = 0; k < nlocs; k++) {
		int dst = 0;   /* checked above */
		decode_loc(locs[k], &dst);
		size_t end = k + 1 < nlocs ? idxs[k + 1] : count;
		for (; i < end; i++) {
			CUresult r = prefetch(dptrs[i], sizes[i], dst, s);
			if (r != CUDA_SUCCESS)
				return r;
		}
	}
	g.batches++;
	return CUDA_SUCCESS;
}

static CUresult do_prefetch(CUdeviceptr p, size_t bytes, CUdevice dst, CUstream s)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (dst != CU_DEVICE_CPU && !valid_dev(dst))
		return CUDA_ERROR_INVALID_DEVICE;
	return prefetch(p, bytes, dst, s);
}

static void apply_advice(struct page *pg, int advice, int loc)
{
	/* loc is only meaningful for the accessed-by and preferred advice. */
	unsigned bit = loc == LOC_CPU ? ACC_CPU_BIT : loc >= 0 ? 1u << loc : 0;
	switch (advice) {
	case CU_MEM_ADVISE_SET_READ_MOSTLY: pg->rmostly = 1; break;
	case CU_MEM_ADVISE_UNSET_READ_MOSTLY: pg->rmostly = 0; break;
	case CU_MEM_ADVISE_SET_PREFERRED_LOCATION: pg->pref = (signed char)loc; break;
	case CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION: pg->pref = LOC_NONE; break;
	case CU_MEM_ADVISE_SET_ACCESSED_BY: pg->accessed = (uint16_t)(pg->accessed | bit); break;
	case CU_MEM_ADVISE_UNSET_ACCESSED_BY: pg->accessed = (uint16_t)(pg->accessed & ~bit); break;
	}
}

static bool advice_needs_location(int advice)
{
	return advice == CU_MEM_ADVISE_SET_PREFERRED_LOCATION || advice == CU_MEM_ADVISE_SET_ACCESSED_BY ||
	       advice == CU_MEM_ADVISE_UNSET_ACCESSED_BY;
}

/* loc: LOC_CPU or a valid device where the advice needs one, else ignored. */
static CUresult advise(CUdeviceptr p, size_t bytes, int advice, int loc)
{
	struct alloc *a;
	uintptr_t lo, hi;
	CUresult r = resolve_range(p, bytes, &a, &lo, &hi);
	if (r != CUDA_SUCCESS)
		return r;
	if (a) {
		for (size_t i = lo; i < hi; i++)
			apply_advice(&a->pg[i], advice, loc);
		return CUDA_SUCCESS;
	}
	if (!hmm_reserve((hi - lo) / PG))
		return CUDA_ERROR_OUT_OF_MEMORY;
	for (uintptr_t x = lo; x < hi; x += PG)
		apply_advice(hmm_get(x / PG, true), advice, loc);
	return CUDA_SUCCESS;
}

static CUresult do_advise_v2(CUdeviceptr p, size_t bytes, int advice, CUmemLocation loc)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (advice < CU_MEM_ADVISE_SET_READ_MOSTLY || advice > CU_MEM_ADVISE_UNSET_ACCESSED_BY)
		return CUDA_ERROR_INVALID_VALUE;
	int where = LOC_NONE;
	if (advice_needs_location(advice)) {
		CUresult r = decode_loc(loc, &where);
		if (r != CUDA_SUCCESS)
			return r;
	}
	return advise(p, bytes, advice, where);
}

static CUresult do_advise(CUdeviceptr p, size_t bytes, int advice, CUdevice dev)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (advice < CU_MEM_ADVISE_SET_READ_MOSTLY || advice > CU_MEM_ADVISE_UNSET_ACCESSED_BY)
		return CUDA_ERROR_INVALID_VALUE;
	if (advice_needs_location(advice) && dev != CU_DEVICE_CPU && !valid_dev(dev))
		return CUDA_ERROR_INVALID_DEVICE;
	return advise(p, bytes, advice, advice_needs_location(advice) ? dev : LOC_NONE);
}

static int loc_type(int loc)
{
	return loc == LOC_NONE ? CU_MEM_LOCATION_TYPE_INVALID
	       : loc == LOC_CPU ? CU_MEM_LOCATION_TYPE_HOST
				: CU_MEM_LOCATION_TYPE_DEVICE;
}

static CUresult do_range_attribute(void *data, size_t size, int attrib, CUdeviceptr p, size_t bytes)
{
	if (!data)
		return CUDA_ERROR_INVALID_VALUE;
	if (attrib == CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY) {
		if (size == 0 || size % 4)
			return CUDA_ERROR_INVALID_VALUE;
	} else if (attrib >= CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY &&
		   attrib <= CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID) {
		if (size != 4)
			return CUDA_ERROR_INVALID_VALUE;
	} else {
		return CUDA_ERROR_INVALID_VALUE;
	}
	struct alloc *a;
	uintptr_t lo, hi;
	CUresult r = resolve_range(p, bytes, &a, &lo, &hi);
	if (r != CUDA_SUCCESS)
		return r;

	/* Fold the pages: all read-mostly?  common preferred / last location? */
	bool all_rm = true;
	int pref = LOC_NONE, last = LOC_NONE;
	unsigned acc = ~0u;
	size_t n = a ? hi - lo : (hi - lo) / PG;
	for (size_t k = 0; k < n; k++) {
		const struct page *pg = a ? &a->pg[lo + k] : hmm_get(lo / PG + k, false);
		if (!pg)
			pg = &page_default;
		all_rm &= pg->rmostly != 0;
		acc &= pg->accessed;
		if (k == 0) {
			pref = pg->pref;
			last = pg->last;
		} else {
			if (pref != pg->pref)
				pref = LOC_NONE;
			if (last != pg->last)
				last = LOC_NONE;
		}
	}
	int *out = data;
	switch (attrib) {
	case CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY: *out = all_rm; break;
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION: *out = pref; break;
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION: *out = last; break;
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_TYPE: *out = loc_type(pref); break;
	case CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION_ID: *out = pref >= 0 ? pref : 0; break;
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_TYPE: *out = loc_type(last); break;
	case CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION_ID: *out = last >= 0 ? last : 0; break;
	case CU_MEM_RANGE_ATTRIBUTE_ACCESSED_BY: {
		size_t slots = size / 4, k = 0;
		for (int d = 0; d < g.ndev && k < slots; d++)
			if (acc & (1u << d))
				out[k++] = d;
		if ((acc & ACC_CPU_BIT) && k < slots)
			out[k++] = CU_DEVICE_CPU;
		while (k < slots)
			out[k++] = CU_DEVICE_INVALID;
		break;
	}
	}
	return CUDA_SUCCESS;
}

static struct reg *find_reg(uintptr_t a)
{
	for (struct reg *r = g.regs; r; r = r->next)
		if (a >= r->lo && a < r->hi)
			return r;
	return NULL;
}

static CUresult do_pointer_attribute(void *data, int attrib, CUdeviceptr p)
{
	if (!data)
		return CUDA_ERROR_INVALID_VALUE;
	struct alloc *a = find_alloc((uintptr_t)p);
	struct reg *r = a ? NULL : find_reg((uintptr_t)p);
	if (!a && !r)
		return CUDA_ERROR_INVALID_VALUE;
	int dev = a ? a->dev : r->dev;
	switch (attrib) {
	case CU_POINTER_ATTRIBUTE_CONTEXT: *(CUcontext *)data = &g.ctx[dev]; break;
	case CU_POINTER_ATTRIBUTE_MEMORY_TYPE:
		*(unsigned *)data = a ? CU_MEMORYTYPE_DEVICE : CU_MEMORYTYPE_HOST;
		break;
	case CU_POINTER_ATTRIBUTE_DEVICE_POINTER: *(CUdeviceptr *)data = p; break;
	case CU_POINTER_ATTRIBUTE_HOST_POINTER: *(void **)data = (void *)(uintptr_t)p; break;
	case CU_POINTER_ATTRIBUTE_IS_MANAGED: *(unsigned *)data = a ? 1 : 0; break;
	case CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL: *(int *)data = dev; break;
	case CU_POINTER_ATTRIBUTE_RANGE_START_ADDR: *(CUdeviceptr *)data = a ? a->base : r->lo; break;
	case CU_POINTER_ATTRIBUTE_RANGE_SIZE: *(size_t *)data = a ? a->bytes : r->hi - r->lo; break;
	default: return CUDA_ERROR_INVALID_VALUE;
	}
	return CUDA_SUCCESS;
}

static CUresult do_host_register(void *p, size_t bytes, unsigned flags)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	uintptr_t lo = (uintptr_t)p;
	if (!p || bytes == 0 || lo > UINTPTR_MAX - bytes ||
	    (flags & ~(unsigned)(CU_MEMHOSTREGISTER_PORTABLE | CU_MEMHOSTREGISTER_DEVICEMAP |
				 CU_MEMHOSTREGISTER_READ_ONLY)))
		return CUDA_ERROR_INVALID_VALUE;
	uintptr_t hi = lo + bytes;
	if (overlaps_managed(lo, hi))
		return CUDA_ERROR_INVALID_VALUE;
	for (struct reg *r = g.regs; r; r = r->next)
		if (lo < r->hi && r->lo < hi)
			return CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED;
	bool ro = flags & CU_MEMHOSTREGISTER_READ_ONLY;
	if (!range_mapped(lo, hi, ro ? PROT_READ : PROT_READ | PROT_WRITE))
		return CUDA_ERROR_INVALID_VALUE;
	struct reg *r = malloc(sizeof *r);
	if (!r)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*r = (struct reg){ g.regs, lo, hi, c->dev, flags };
	g.regs = r;
	/* A real registration pins, and so populates, every page. */
	for (uintptr_t x = lo; x < hi; x = page_down(x) + PG) {
		if (ro)
			(void)*(volatile const unsigned char *)x;
		else
			__atomic_fetch_or((unsigned char *)x, 0, __ATOMIC_RELAXED);
	}
	return CUDA_SUCCESS;
}

static CUresult do_host_unregister(void *p)
{
	for (struct reg **pp = &g.regs; *pp; pp = &(*pp)->next) {
		struct reg *r = *pp;
		if (r->lo == (uintptr_t)p) {
			*pp = r->next;
			free(r);
			return CUDA_SUCCESS;
		}
	}
	return CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED;
}

/* Check one side of a copy.  Managed parts are always accessible to the copy
 * engine; ordinary parts must be mapped with prot.  Counts the destination's
 * unpopulated pages (they are populated on the device). */
static bool copy_side_ok(uintptr_t lo, uintptr_t hi, int prot, size_t *unpop)
{
	uintptr_t x = lo;
	while (x < hi) {
		struct alloc *a = find_alloc(x);
		if (a) {
			uintptr_t end = a->base + a->size < hi ? a->base + a->size : hi;
			if (unpop)
				for (size_t i = (x - a->base) / PG; i < (end - 1 - a->base) / PG + 1; i++)
					*unpop += a->pg[i].state == ST_UNPOP;
			x = end;
			continue;
		}
		uintptr_t end = hi;
		for (struct alloc *m = g.allocs; m; m = m->next)
			if (m->base > x && m->base < end)
				end = m->base;
		if (!range_mapped(x, end, prot))
			return false;
		x = end;
	}
	return true;
}

static const unsigned char *copy_src(uintptr_t x)
{
	struct alloc *a = find_alloc(x);
	if (!a)
		return (const unsigned char *)x;
	size_t off = x - a->base;
	int st = a->pg[off / PG].state;
	if (st == ST_HOST)
		return a->alias + off;
	if (st == ST_UNPOP)
		return zero_page + off % PG;
	return a->shadow + off;
}

static unsigned char *copy_dst(uintptr_t x, int dev)
{
	struct alloc *a = find_alloc(x);
	if (!a)
		return (unsigned char *)x;
	size_t off = x - a->base;
	struct page *pg = &a->pg[off / PG];
	if (pg->state == ST_UNPOP) {
		/* Written by the copy engine: populated in device memory. */
		must(madvise(a->shadow + off - off % PG, PG, MADV_DONTNEED), "madvise(MADV_DONTNEED)");
		pg->state = (signed char)dev;
		g.resident[dev] += PG;
		g.gen++;
	}
	if (pg->state == ST_HOST)
		return a->alias + off;
	return a->shadow + off;
}

static CUresult do_memcpy(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!stream_ok(s))
		return CUDA_ERROR_INVALID_VALUE;
	if (bytes == 0)
		return CUDA_SUCCESS;
	if (!dst || !src || dst > UINTPTR_MAX - bytes || src > UINTPTR_MAX - bytes)
		return CUDA_ERROR_INVALID_VALUE;
	size_t unpop = 0;
	if (!copy_side_ok(src, src + bytes, PROT_READ, NULL) ||
	    !copy_side_ok(dst, dst + bytes, PROT_WRITE, &unpop))
		return CUDA_ERROR_INVALID_VALUE;
	if (unpop * PG > g.mem - g.resident[c->dev])
		return CUDA_ERROR_OUT_OF_MEMORY;
	for (size_t done = 0; done < bytes;) {
		uintptr_t s1 = src + done, d1 = dst + done;
		size_t n = bytes - done;
		if (PG - s1 % PG < n)
			n = PG - s1 % PG;
		if (PG - d1 % PG < n)
			n = PG - d1 % PG;
		memmove(copy_dst(d1, c->dev), copy_src(s1), n);
		done += n;
	}
	g.copied += (long long)bytes;
	return CUDA_SUCCESS;
}

/* ---- streams and events ---- */
static CUresult do_stream_create(CUstream *s, unsigned flags)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!s || (flags & ~(unsigned)CU_STREAM_NON_BLOCKING))
		return CUDA_ERROR_INVALID_VALUE;
	struct CUstream_st *t = malloc(sizeof *t);
	if (!t)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*t = (struct CUstream_st){ g.streams, STREAM_MAGIC, c->dev, flags };
	g.streams = t;
	*s = t;
	return CUDA_SUCCESS;
}

static CUresult do_stream_sync(CUstream s)
{
	if (stream_special(s))
		return current_ctx() ? CUDA_SUCCESS : CUDA_ERROR_INVALID_CONTEXT;
	return stream_live(s) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_stream_destroy(CUstream s)
{
	for (struct CUstream_st **pp = &g.streams; *pp; pp = &(*pp)->next) {
		if (*pp == s) {
			*pp = s->next;
			s->magic = 0;
			free(s);
			return CUDA_SUCCESS;
		}
	}
	return CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_event_create(CUevent *ev, unsigned flags)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!ev || (flags & ~(unsigned)(CU_EVENT_BLOCKING_SYNC | CU_EVENT_DISABLE_TIMING | CU_EVENT_INTERPROCESS)) ||
	    ((flags & CU_EVENT_INTERPROCESS) && !(flags & CU_EVENT_DISABLE_TIMING)))
		return CUDA_ERROR_INVALID_VALUE;
	struct CUevent_st *e = malloc(sizeof *e);
	if (!e)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*e = (struct CUevent_st){ g.events, EVENT_MAGIC, c->dev, flags, false };
	g.events = e;
	*ev = e;
	return CUDA_SUCCESS;
}

static CUresult do_event_record(CUevent ev, CUstream s)
{
	if (!event_live(ev) || !stream_ok(s))
		return CUDA_ERROR_INVALID_VALUE;
	ev->recorded = true;
	return CUDA_SUCCESS;
}

static CUresult do_event_check(CUevent ev)
{
	/* All work is synchronous: a live event is always complete. */
	return event_live(ev) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_launch_host(CUstream s, CUhostFn fn)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	return fn && stream_ok(s) ? CUDA_SUCCESS : CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_event_destroy(CUevent ev)
{
	for (struct CUevent_st **pp = &g.events; *pp; pp = &(*pp)->next) {
		if (*pp == ev) {
			*pp = ev->next;
			ev->magic = 0;
			free(ev);
			return CUDA_SUCCESS;
		}
	}
	return CUDA_ERROR_INVALID_VALUE;
}

/* ---- modules and kernels ---- */

static bool module_live(CUmodule m)
{
	for (struct CUmod_st *x = g.modules; x; x = x->next)
		if (x == m && x->magic == MODULE_MAGIC)
			return true;
	return false;
}

static CUresult do_module_load(CUmodule *mod, const void *image)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!mod || !image)
		return CUDA_ERROR_INVALID_VALUE;
	/* The double runs libcoherent's device-access kernel only, recognised
	 * by its entry; any other image is PTX it cannot compile. */
	const char *text = image;
	if (!strstr(text, ".version ") || !strstr(text, ".entry coh_access("))
		return CUDA_ERROR_INVALID_PTX;
	struct CUmod_st *m = calloc(1, sizeof *m);
	if (!m)
		return CUDA_ERROR_OUT_OF_MEMORY;
	*m = (struct CUmod_st){ g.modules, MODULE_MAGIC, c->dev, { FUNC_MAGIC } };
	g.modules = m;
	*mod = m;
	return CUDA_SUCCESS;
}

static CUresult do_module_get_function(CUfunction *fn, CUmodule mod, const char *name)
{
	if (!current_ctx())
		return CUDA_ERROR_INVALID_CONTEXT;
	if (!fn || !name)
		return CUDA_ERROR_INVALID_VALUE;
	if (!module_live(mod))
		return CUDA_ERROR_INVALID_HANDLE;
	if (strcmp(name, "coh_access") != 0)
		return CUDA_ERROR_NOT_FOUND;
	*fn = &mod->fn;
	return CUDA_SUCCESS;
}

static CUresult do_module_unload(CUmodule mod)
{
	for (struct CUmod_st **pp = &g.modules; *pp; pp = &(*pp)->next)
		if (*pp == mod && mod->magic == MODULE_MAGIC) {
			*pp = mod->next;
			mod->magic = 0;
			free(mod);
			return CUDA_SUCCESS;
		}
	return CUDA_ERROR_INVALID_HANDLE;
}

/* Can the GPU reach [lo, hi) (page aligned)?  Managed memory always; other
 * memory when registered, or mapped with prot in pageable (HMM) mode.
 * Counts the managed pages not yet on dev. */
static bool gpu_reach(uintptr_t lo, uintptr_t hi, int prot, int dev, size_t *move)
{
	for (uintptr_t x = lo; x < hi; x += PG) {
		struct alloc *a = find_alloc(x);
		if (a) {
			*move += a->pg[(x - a->base) / PG].state != dev;
			continue;
		}
		struct reg *r = find_reg(x);
		if (r && (!(prot & PROT_WRITE) || !(r->flags & CU_MEMHOSTREGISTER_READ_ONLY)))
			continue;
		if (!g.pageable || !range_mapped(x, x + PG, prot))
			return false;
	}
	return true;
}

/* A GPU access of one page: a managed page faults over to dev (GPU
 * first-touch populates it there); the device's view of the byte at x. */
static unsigned char *gpu_touch(uintptr_t x, int dev)
{
	struct alloc *a = find_alloc(x);
	if (!a)
		return (unsigned char *)x;
	size_t i = (x - a->base) / PG;
	if (a->pg[i].state != dev)
		move_to_device(a, i, i + 1, dev);
	return a->shadow + (x - a->base);
}

/* coh_access (backends/nvidia/kernels/access.cu), run on the CPU with the
 * GPU's view of memory. */
static CUresult run_access(int dev, uintptr_t base, uint64_t nblocks, unsigned ops, uint64_t pattern, uintptr_t sums)
{
	if (nblocks == 0)
		return CUDA_SUCCESS;
	uintptr_t shi = 0;
	if (!base || base % 8 || nblocks > (UINTPTR_MAX - base) / PG)
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if ((ops & 1) && (!sums || sums % 8 || nblocks > (UINTPTR_MAX - sums) / 8 - PG || !page_up(sums + nblocks * 8, &shi)))
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	size_t move = 0;
	if (!gpu_reach(page_down(base), base + nblocks * PG, (ops & 2) ? PROT_READ | PROT_WRITE : PROT_READ, dev, &move))
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if ((ops & 1) && !gpu_reach(page_down(sums), shi, PROT_READ | PROT_WRITE, dev, &move))
		return CUDA_ERROR_ILLEGAL_ADDRESS;
	if (move * PG > g.mem - g.resident[dev])
		return CUDA_ERROR_OUT_OF_MEMORY;   /* real UVM would evict; the double does not */
	for (uint64_t b = 0; b < nblocks; b++) {
		uint64_t sum = 0;
		uint64_t *w = (uint64_t *)gpu_touch(base + b * PG, dev);
		for (uint64_t i = 0; i < PG / 8; i++) {
			if (ops & 1)
				sum += w[i] * (2 * i + 1);
			if (ops & 2)
				w[i] = pattern ^ ((b * PG + i * 8) * 0x9E3779B97F4A7C15ull);
		}
		if (ops & 1)
			memcpy(gpu_touch(sums + b * 8, dev), &sum, 8);
	}
	g.launches++;
	return CUDA_SUCCESS;
}

static CUresult do_launch(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
			  unsigned shared_bytes, CUstream s, void **params, void **extra)
{
	struct CUctx_st *c = current_ctx();
	if (!c)
		return CUDA_ERROR_INVALID_CONTEXT;
	bool live = false;
	for (struct CUmod_st *m = g.modules; m; m = m->next)
		live |= &m->fn == fn && fn->magic == FUNC_MAGIC;
	if (!live)
		return CUDA_ERROR_INVALID_HANDLE;
	if (!stream_ok(s) || !params || extra || !gx || !gy || !gz || !bx || !by || !bz ||
	    (uint64_t)bx * by * bz > 1024 || shared_bytes > 48 * 1024)
		return CUDA_ERROR_INVALID_VALUE;
	uintptr_t base = (uintptr_t)*(void **)params[0], sums = (uintptr_t)*(void **)params[4];
	uint64_t nblocks = *(uint64_t *)params[1], pattern = *(uint64_t *)params[3];
	unsigned ops = *(unsigned *)params[2];
	return run_access(c->dev, base, nblocks, ops, pattern, sums);
}
static CUresult do_error_name(CUresult r, const char **name)
{
	static const struct {
		CUresult r;
		const char *name;
	} names[] = {
		{ 0, "CUDA_SUCCESS" },
		{ 1, "CUDA_ERROR_INVALID_VALUE" },
		{ 2, "CUDA_ERROR_OUT_OF_MEMORY" },
		{ 3, "CUDA_ERROR_NOT_INITIALIZED" },
		{ 4, "CUDA_ERROR_DEINITIALIZED" },
		{ 100, "CUDA_ERROR_NO_DEVICE" },
		{ 101, "CUDA_ERROR_INVALID_DEVICE" },
		{ 201, "CUDA_ERROR_INVALID_CONTEXT" },
		{ 218, "CUDA_ERROR_INVALID_PTX" },
		{ 400, "CUDA_ERROR_INVALID_HANDLE" },
		{ 500, "CUDA_ERROR_NOT_FOUND" },
		{ 600, "CUDA_ERROR_NOT_READY" },
		{ 700, "CUDA_ERROR_ILLEGAL_ADDRESS" },
		{ 709, "CUDA_ERROR_CONTEXT_IS_DESTROYED" },
		{ 712, "CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED" },
		{ 713, "CUDA_ERROR_HOST_MEMORY_NOT_REGISTERED" },
		{ 801, "CUDA_ERROR_NOT_SUPPORTED" },
		{ 999, "CUDA_ERROR_UNKNOWN" },
	};
	if (!name)
		return CUDA_ERROR_INVALID_VALUE;
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		if (names[i].r == r) {
			*name = names[i].name;
			return CUDA_SUCCESS;
		}
	}
	*name = NULL;
	return CUDA_ERROR_INVALID_VALUE;
}

static CUresult do_driver_version(int *version)
{
	if (!version)
		return CUDA_ERROR_INVALID_VALUE;
	*version = DRIVER_VERSION;
	return CUDA_SUCCESS;
}

static CUresult do_device_count(int *count)
{
	if (!count)
		return CUDA_ERROR_INVALID_VALUE;
	*count = g.ndev;
	return CUDA_SUCCESS;
}

/* ---- the exports ---- */
CUresult cuInit(unsigned flags) { API_BODY(init, false, do_init(flags)); }
CUresult cuDriverGetVersion(int *version) { API_BODY(driver_version, false, do_driver_version(version)); }
CUresult cuDeviceGetCount(int *count) { API_BODY(device_count, true, do_device_count(count)); }
CUresult cuDeviceGet(CUdevice *dev, int ordinal) { API_BODY(device_get, true, do_device_get(dev, ordinal)); }
CUresult cuDeviceGetName(char *name, int len, CUdevice dev)
{
	API_BODY(device_name, true, do_device_name(name, len, dev));
}
CUresult cuDeviceGetUuid_v2(CUuuid *uuid, CUdevice dev) { API_BODY(device_uuid, true, do_device_uuid(uuid, dev)); }
CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev)
{
	API_BODY(device_total_mem, true, do_total_mem(bytes, dev));
}
CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev)
{
	API_BODY(device_attribute, true, do_device_attribute(value, attrib, dev));
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev)
{
	API_BODY(primary_retain, true, do_retain(ctx, dev));
}
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev) { API_BODY(primary_release, true, do_release(dev)); }
CUresult cuCtxPushCurrent_v2(CUcontext ctx) { API_BODY(ctx_push, true, do_push(ctx)); }
CUresult cuCtxPopCurrent_v2(CUcontext *ctx) { API_BODY(ctx_pop, true, do_pop(ctx)); }
CUresult cuMemGetInfo_v2(size_t *free_bytes, size_t *total)
{
	API_BODY(mem_get_info, true, do_mem_info(free_bytes, total));
}
CUresult cuMemAllocManaged(CUdeviceptr *p, size_t bytes, unsigned flags)
{
	API_BODY(alloc_managed, true, do_alloc_managed(p, bytes, flags));
}
CUresult cuMemFree_v2(CUdeviceptr p) { API_BODY(mem_free, true, do_mem_free(p)); }
CUresult cuMemPrefetchAsync_v2(CUdeviceptr p, size_t bytes, CUmemLocation loc, unsigned flags, CUstream s)
{
	API_BODY(prefetch_v2, true, do_prefetch_v2(p, bytes, loc, flags, s));
}
CUresult cuMemPrefetchAsync(CUdeviceptr p, size_t bytes, CUdevice dst, CUstream s)
{
	API_BODY(prefetch, true, do_prefetch(p, bytes, dst, s));
}
CUresult cuMemAdvise_v2(CUdeviceptr p, size_t bytes, int advice, CUmemLocation loc)
{
	API_BODY(advise_v2, true, do_advise_v2(p, bytes, advice, loc));
}
CUresult cuMemAdvise(CUdeviceptr p, size_t bytes, int advice, CUdevice dev)
{
	API_BODY(advise, true, do_advise(p, bytes, advice, dev));
}
CUresult cuMemRangeGetAttribute(void *data, size_t size, int attrib, CUdeviceptr p, size_t bytes)
{
	API_BODY(range_attribute, true, do_range_attribute(data, size, attrib, p, bytes));
}
CUresult cuPointerGetAttribute(void *data, int attrib, CUdeviceptr p)
{
	API_BODY(pointer_attribute, true, do_pointer_attribute(data, attrib, p));
}
CUresult cuMemHostRegister_v2(void *p, size_t bytes, unsigned flags)
{
	API_BODY(host_register, true, do_host_register(p, bytes, flags));
}
CUresult cuMemHostUnregister(void *p) { API_BODY(host_unregister, true, do_host_unregister(p)); }
CUresult cuMemcpyAsync(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s)
{
	API_BODY(memcpy_async, true, do_memcpy(dst, src, bytes, s));
}
CUresult cuStreamCreate(CUstream *s, unsigned flags) { API_BODY(stream_create, true, do_stream_create(s, flags)); }
CUresult cuStreamSynchronize(CUstream s) { API_BODY(stream_sync, true, do_stream_sync(s)); }
CUresult cuStreamDestroy_v2(CUstream s) { API_BODY(stream_destroy, true, do_stream_destroy(s)); }
CUresult cuEventCreate(CUevent *ev, unsigned flags) { API_BODY(event_create, true, do_event_create(ev, flags)); }
CUresult cuEventRecord(CUevent ev, CUstream s) { API_BODY(event_record, true, do_event_record(ev, s)); }
CUresult cuEventQuery(CUevent ev) { API_BODY(event_query, true, do_event_check(ev)); }
CUresult cuEventSynchronize(CUevent ev) { API_BODY(event_sync, true, do_event_check(ev)); }
CUresult cuEventDestroy_v2(CUevent ev) { API_BODY(event_destroy, true, do_event_destroy(ev)); }
CUresult cuGetErrorName(CUresult r, const char **name) { API_BODY(error_name, false, do_error_name(r, name)); }
CUresult cuModuleLoadData(CUmodule *mod, const void *image) { API_BODY(module_load_data, true, do_module_load(mod, image)); }
CUresult cuModuleGetFunction(CUfunction *fn, CUmodule mod, const char *name)
{
	API_BODY(module_get_function, true, do_module_get_function(fn, mod, name));
}
CUresult cuModuleUnload(CUmodule mod) { API_BODY(module_unload, true, do_module_unload(mod)); }
CUresult cuLaunchKernel(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by, unsigned bz,
			unsigned shared_bytes, CUstream s, void **params, void **extra)
{
	API_BODY(launch_kernel, true, do_launch(fn, gx, gy, gz, bx, by, bz, shared_bytes, s, params, extra));
}

/* All work is done when it is queued, so the host function runs at once, on
 * the calling thread but outside the double's lock, as the driver runs it
 * on a thread of its own that holds none of the caller's locks. */
CUresult cuLaunchHostFunc(CUstream s, CUhostFn fn, void *user)
{
	CUresult r;
	if (!enter(E_launch_host_func, true, &r))
		r = do_launch_host(s, fn);
	unlock();
	if (r == CUDA_SUCCESS)
		fn(user);
	return r;
}
CUresult cuMemPrefetchBatchAsync(CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *locs,
				 size_t *loc_idxs, size_t nlocs, unsigned long long flags, CUstream s)
{
	API_BODY(prefetch_batch, true, do_prefetch_batch(dptrs, sizes, count, locs, loc_idxs, nlocs, flags, s));
}

/* ---- control API ---- */
void cudadouble_fail(const char *entry, int nth, int result)
{
	int e = entry_index(entry);
	if (e < 0) {
		fprintf(stderr, "cudadouble_fail: no entry point '%s'\n", entry ? entry : "(null)");
		return;
	}
	lock();
	g.fail_nth[e] = nth > 0 ? nth : 0;
	g.fail_res[e] = result;
	unlock();
}

long cudadouble_calls(const char *entry)
{
	int e = entry_index(entry);
	if (e < 0)
		return -1;
	lock();
	long n = g.calls[e];
	unlock();
	return n;
}

int cudadouble_page_state(const void *addr)
{
	lock();
	struct alloc *a = find_alloc((uintptr_t)addr);
	int st = a ? a->pg[((uintptr_t)addr - a->base) / PG].state : -4;
	unlock();
	return st;
}

long cudadouble_faultbacks(void)
{
	lock();
	long n = g.faultbacks;
	unlock();
	return n;
}

long cudadouble_batches(void)
{
	lock();
	long n = g.batches;
	unlock();
	return n;
}

long cudadouble_launches(void)
{
	lock();
	long n = g.launches;
	unlock();
	return n;
}

long long cudadouble_copied_bytes(void)
{
	lock();
	long long n = g.copied;
	unlock();
	return n;
}

void cudadouble_reset(void)
{
	lock();
	memset(g.calls, 0, sizeof g.calls);
	memset(g.fail_nth, 0, sizeof g.fail_nth);
	memset(g.fail_res, 0, sizeof g.fail_res);
	g.faultbacks = 0;
	g.launches = 0;
	g.batches = 0;
	g.copied = 0;
	unlock();
}
