/* SPDX-License-Identifier: MIT */
/*
 * nvidia backend: CUDA managed memory (UVM) and, where the driver offers
 * pageable memory access (HMM or ATS), ordinary memory adopted in place.
 *
 * The driver library is loaded at run time (libcuda.so.1, or the path in
 * COH_CUDA_LIBRARY) and every entry point is resolved by its versioned export
 * name (cuda_abi.h); nothing links against CUDA.  The library stays loaded for
 * the life of the process: CUDA cannot be unloaded safely, and unloading would
 * drop the driver library's own fork handlers.
 *
 * Each GPU is a target.  Its primary context and streams are made on first
 * use, and every driver call runs with the context pushed on the calling
 * thread and popped after, so an application's own current context is left
 * alone.
 *
 *  alloc     cuMemAllocManaged, preferred location = the GPU, prefetched there
 *  migrate   cuMemPrefetchAsync(_v2) on the GPU's streams (optionally split in
 *            chunks over several streams); async = the same plus events
 *  query     CPU-present pages (pagemap) are on the host; the rest is where
 *            the driver's last prefetch put it (range attributes, bisected when
 *            a run is not uniform), else "managed, location unknown"
 *  fork      CUDA disables managed mappings in a child (an access raises
 *            SIGSEGV) and the child cannot use CUDA at all.  The policies are
 *            kept by the core's fork staging (core/forkstage.c): the copy hook
 *            copies COPY ranges out through the GPU into a pinned shared
 *            staging buffer (the range stays where it is), and the child maps
 *            private memory at the same addresses and fills it from there
 *            (COPY), maps zeroes (ZERO) or unmaps (EXCLUDE).  KERNEL leaves
 *            the driver's behaviour.
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "cuda_abi.h"
#include "backend.h"

#define NV_MAX_STREAMS 16
#define NV_2M (2u << 20)
#define NV_TARGET_NAME "nvidia:gpu%d"   /* of the GPU's ordinal */

const struct coh_backend_ops coh_nvidia_backend;

struct cu_api {
#define X(field, type, name, req) type field;
	COH_CU_NAMES(X)
#undef X
};

struct nv_gpu {
	int ordinal;
	CUdevice dev;
	bool ready;               /* context and streams made */
	CUcontext cuctx;
	CUstream stream[NV_MAX_STREAMS];
	int nstreams;
	int pageable, host_pt, concurrent;
};

struct stage_hdr {
	atomic_int busy;          /* a child has not finished reading the staging buffer */
};

struct nv_backend {
	coh_context *ctx;
	void *lib;
	struct cu_api cu;
	int driver_version;
	pid_t pid;                /* the process that initialised CUDA */
	int nstreams;             /* COH_NVIDIA_STREAMS */
	size_t chunk;             /* COH_NVIDIA_CHUNK_MB, 0 = one call */
	bool prefer;              /* nvidia.prefer (COH_NVIDIA_PREFER), default 0: with 1 migrations set the preferred location (COH_CAP_MIGRATE_STICKY) */
	int host_node;            /* -2 not yet known, -1 several or none */
	pthread_mutex_t lock;     /* contexts, staging */
	/* Every driver call of the backend holds this for reading; the fork
	 * prepare hook takes it for writing, so no thread of ours is inside the
	 * driver while the address space is copied (a driver lock held by another
	 * thread at fork would stay held in the child), and no range it copies
	 * out is freed under it. */
	pthread_rwlock_t calls;
	/* fork staging (core/forkstage.c copies COPY ranges here) */
	void *staging;            /* MAP_SHARED, header page first */
	size_t staging_len;
	bool staging_pinned;
	bool staged_copy;         /* this fork's child reads the staging buffer */
	bool fork_locked;         /* prepare holds calls for writing */
};


static struct nv_backend *nb_of(const coh_target *t)
{
	return coh_target_backend_priv(t);
}

static struct nv_gpu *gpu_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static bool is_nvidia(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_nvidia_backend.name;
}

static bool in_child(const struct nv_backend *nb)
{
	return nb->pid != getpid();
}

static const char *cu_name(const struct nv_backend *nb, CUresult r)
{
	const char *s = NULL;
	if (nb->cu.error_name && nb->cu.error_name(r, &s) == CUDA_SUCCESS && s)
		return s;
	return "CUDA error";
}

static int cu_errno(CUresult r)
{
	switch (r) {
	case CUDA_SUCCESS: return 0;
	case CUDA_ERROR_INVALID_VALUE: return -EINVAL;
	case CUDA_ERROR_OUT_OF_MEMORY: return -ENOMEM;
	case CUDA_ERROR_NOT_INITIALIZED:
	case CUDA_ERROR_DEINITIALIZED:
	case CUDA_ERROR_NO_DEVICE:
	case CUDA_ERROR_INVALID_DEVICE: return -ENODEV;
	case CUDA_ERROR_NOT_READY: return -EINPROGRESS;
	case CUDA_ERROR_NOT_SUPPORTED: return -EOPNOTSUPP;
	case CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED: return -EEXIST;
	default: return -EIO;
	}
}

/* Logs a failed driver call and gives its errno. */
static int cu_fail(struct nv_backend *nb, const char *what, CUresult r)
{
	if (r != CUDA_SUCCESS)
		coh_dbg(nb->ctx, "nvidia: %s: %s (%d)", what, cu_name(nb, r), r);
	return cu_errno(r);
}

/* ---------------- loading and discovery ---------------- */

static int tunable_int(const coh_context *ctx, const char *key, int dflt, int lo, int hi)
{
	const char *s = coh_ctx_tunable(ctx, key);
	if (!s || !*s)
		return dflt;
	char *end;
	long v = strtol(s, &end, 10);
	if (*end || v < lo || v > hi)
		return dflt;
	return (int)v;
}

static int load_driver(coh_context *ctx, struct nv_backend *nb)
{
	const char *path = coh_ctx_tunable(ctx, "nvidia.cuda_library");
	if (!path || !*path)
		path = "libcuda.so.1";
	nb->lib = coh_dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!nb->lib) {
		const char *why = dlerror();
		coh_backend_note(ctx, "no CUDA driver: cannot load %s (%s)", path, why ? why : "?");
		return -ENODEV;
	}
#define X(field, type, name, req)                                                        \
	nb->cu.field = (type)coh_dlsym(nb->lib, name);                                       \
	if (req && !nb->cu.field) {                                                      \
		coh_backend_note(ctx, "%s lacks %s: driver too old for libcoherent", path, name); \
		return -ENODEV;                                                          \
	}
	COH_CU_NAMES(X)
#undef X
	if (!nb->cu.prefetch_v2 && !nb->cu.prefetch) {
		coh_backend_note(ctx, "%s has no cuMemPrefetchAsync", path);
		return -ENODEV;
	}
	if (!nb->cu.advise_v2 && !nb->cu.advise) {
		coh_backend_note(ctx, "%s has no cuMemAdvise", path);
		return -ENODEV;
	}
	CUresult r = nb->cu.init(0);
	if (r != CUDA_SUCCESS) {
		coh_backend_note(ctx, "cuInit failed: %s (%d)", cu_name(nb, r), r);
		return -ENODEV;
	}
	nb->cu.driver_version(&nb->driver_version);
	return 0;
}

static int attr(struct nv_backend *nb, CUdevice d, int a)
{
	int v = 0;
	return nb->cu.device_attribute(&v, a, d) == CUDA_SUCCESS ? v : -1;
}

static int add_gpu(coh_context *ctx, struct nv_backend *nb, int ordinal)
{
	CUdevice d;
	CUresult r = nb->cu.device_get(&d, ordinal);
	if (r != CUDA_SUCCESS)
		return cu_fail(nb, "cuDeviceGet", r);
	if (attr(nb, d, CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY) != 1) {
		coh_info(ctx, "nvidia: GPU %d has no managed memory: skipped", ordinal);
		return 0;
	}
	struct nv_gpu *g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->ordinal = ordinal;
	g->dev = d;
	g->pageable = attr(nb, d, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS) == 1;
	g->host_pt = attr(nb, d, CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES) == 1;
	g->concurrent = attr(nb, d, CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS) == 1;

	struct coh_target_desc desc = { 0 };
	desc.kind = COH_KIND_VENDOR_MANAGED;
	snprintf(desc.name, sizeof(desc.name), NV_TARGET_NAME, ordinal);
	snprintf(desc.vendor, sizeof(desc.vendor), "NVIDIA");
	char name[96] = "";
	nb->cu.device_name(name, sizeof(name), d);
	CUuuid u;
	if (nb->cu.device_uuid && nb->cu.device_uuid(&u, d) == CUDA_SUCCESS) {
		memcpy(desc.uuid, u.bytes, sizeof(desc.uuid));
		desc.device_status |= COH_DEVICE_HAS_UUID;
	}
	desc.memory_model = COH_MODEL_MANAGED;
	const char *model = !g->pageable ? "managed memory" : g->host_pt ? "managed + ATS" : "managed + HMM";
	char full[256];
	snprintf(full, sizeof(full), "%s (%s%s, sm_%d%d)", name, model, g->concurrent ? "" : ", no concurrent access",
		 attr(nb, d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR) & 0xff,
		 attr(nb, d, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR) & 0xff);
	snprintf(desc.model, sizeof(desc.model), "%.*s", (int)sizeof(desc.model) - 1, full);
	int dom = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID), bus = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_BUS_ID),
	    dev = attr(nb, d, CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID);
	if (dom >= 0 && bus >= 0 && dev >= 0)
		snprintf(desc.pci_address, sizeof(desc.pci_address), "%04x:%02x:%02x.0", dom & 0xffff, bus & 0xff,
			 dev & 0x1f);
	desc.numa_node = -1;
	size_t total = 0;
	nb->cu.device_total_mem(&total, d);
	desc.total_bytes = total;
	/* adopt: the application's managed memory anywhere, ordinary memory with HMM/ATS */
	desc.caps = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_ADVISE | COH_CAP_QUERY |
		    COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
		    COH_CAP_FORK_KERNEL | (nb->prefer ? COH_CAP_MIGRATE_STICKY : 0);
	desc.priv = g;
	int e = coh_target_add(ctx, &desc);
	if (e) {
		free(g);
		return e;
	}
	return 1;
}

static int nv_discover(coh_context *ctx, void **priv)
{
	struct nv_backend *nb = calloc(1, sizeof(*nb));
	if (!nb)
		return -ENOMEM;
	*priv = nb;
	nb->ctx = ctx;
	nb->pid = getpid();
	nb->host_node = -2;
	nb->nstreams = tunable_int(ctx, "nvidia.streams", 1, 1, NV_MAX_STREAMS);
	nb->chunk = (size_t)tunable_int(ctx, "nvidia.chunk_mb", 0, 0, 1 << 20) << 20;
	nb->prefer = tunable_int(ctx, "nvidia.prefer", 0, 0, 1) == 1;
	pthread_mutex_init(&nb->lock, NULL);
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&nb->calls, &ra);
	pthread_rwlockattr_destroy(&ra);
	if (coh_ctx_replay(ctx)) {
		coh_backend_note(ctx, "recorded machine: the CUDA driver is not consulted");
		return 0;
	}
	if (load_driver(ctx, nb))
		return 0;   /* unavailable, and the note says why */
	int n = 0;
	CUresult r = nb->cu.device_count(&n);
	if (r != CUDA_SUCCESS || n <= 0) {
		coh_backend_note(ctx, "CUDA driver %d.%d sees no GPU", nb->driver_version / 1000,
				 nb->driver_version % 1000 / 10);
		return 0;
	}
	int added = 0;
	for (int i = 0; i < n; i++) {
		int e = add_gpu(ctx, nb, i);
		if (e < 0)
			return e;
		added += e;
	}
	coh_backend_note(ctx, "CUDA driver %d.%d, %d GPU(s) with managed memory", nb->driver_version / 1000,
			 nb->driver_version % 1000 / 10, added);
	return added;
}

static void nv_target_fini(coh_target *t, void *priv)
{
	struct nv_backend *nb = nb_of(t);
	struct nv_gpu *g = priv;
	if (g->ready && !in_child(nb)) {
		if (nb->cu.ctx_push(g->cuctx) == CUDA_SUCCESS) {
			for (int i = 0; i < g->nstreams; i++)
				nb->cu.stream_destroy(g->stream[i]);
			CUcontext c;
			nb->cu.ctx_pop(&c);
		}
		nb->cu.primary_release(g->dev);
	}
	free(g);
}

static void staging_drop(struct nv_backend *nb)
{
	if (!nb->staging)
		return;
	if (nb->staging_pinned && !in_child(nb))
		nb->cu.host_unregister(nb->staging);
	coh_sys_munmap(nb->staging, nb->staging_len);
	nb->staging = NULL;
	nb->staging_len = 0;
	nb->staging_pinned = false;
}

static void nv_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	staging_drop(nb);
	if (!in_child(nb))
		pthread_rwlock_destroy(&nb->calls);   /* a fork child's copy may be held (nv_atfork_child) */
	pthread_mutex_destroy(&nb->lock);
	free(nb);   /* the driver library stays loaded (see the top of this file) */
}

/* ---------------- contexts ---------------- */

static int gpu_ready(struct nv_backend *nb, struct nv_gpu *g)
{
	if (__atomic_load_n(&g->ready, __ATOMIC_ACQUIRE))
		return 0;
	pthread_mutex_lock(&nb->lock);
	int e = 0;
	if (!g->ready) {
		CUresult r = nb->cu.primary_retain(&g->cuctx, g->dev);
		if (r != CUDA_SUCCESS) {
			e = cu_fail(nb, "cuDevicePrimaryCtxRetain", r);
		} else if ((r = nb->cu.ctx_push(g->cuctx)) != CUDA_SUCCESS) {
			e = cu_fail(nb, "cuCtxPushCurrent", r);
			nb->cu.primary_release(g->dev);
		} else {
			int k = 0;
			for (; k < nb->nstreams; k++)
				if ((r = nb->cu.stream_create(&g->stream[k], CU_STREAM_NON_BLOCKING)) != CUDA_SUCCESS)
					break;
			if (k == 0) {
				e = cu_fail(nb, "cuStreamCreate", r);
			} else {
				g->nstreams = k;
			}
			CUcontext c;
			nb->cu.ctx_pop(&c);
			if (e)
				nb->cu.primary_release(g->dev);
			else
				__atomic_store_n(&g->ready, true, __ATOMIC_RELEASE);
		}
	}
	pthread_mutex_unlock(&nb->lock);
	return e;
}

/* The GPU's context made current on this thread (the caller holds calls). */
static int ctx_in(struct nv_backend *nb, struct nv_gpu *g)
{
	int e = gpu_ready(nb, g);
	if (e)
		return e;
	return cu_fail(nb, "cuCtxPushCurrent", nb->cu.ctx_push(g->cuctx));
}

static void ctx_out(struct nv_backend *nb)
{
	CUcontext c;
	nb->cu.ctx_pop(&c);
}

/* Enters the driver for one operation: nv_leave() restores. */
static int nv_enter(struct nv_backend *nb, struct nv_gpu *g)
{
	if (in_child(nb))
		return -ECHILD;   /* CUDA does not work in a forked child */
	pthread_rwlock_rdlock(&nb->calls);
	int e = ctx_in(nb, g);
	if (e)
		pthread_rwlock_unlock(&nb->calls);
	return e;
}

static void nv_leave(struct nv_backend *nb)
{
	ctx_out(nb);
	pthread_rwlock_unlock(&nb->calls);
}

static int nv_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct nv_backend *nb = nb_of(t);
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	size_t f = 0, total = 0;
	e = cu_fail(nb, "cuMemGetInfo", nb->cu.mem_get_info(&f, &total));
	nv_leave(nb);
	if (!e)
		*free_bytes = f;
	return e;
}

/* ---------------- locations ---------------- */

static int host_node(struct nv_backend *nb)
{
	int hn = __atomic_load_n(&nb->host_node, __ATOMIC_RELAXED);
	if (hn != -2)
		return hn;
	int node = -1, count = 0;
	coh_target *t;
	coh_target_foreach(nb->ctx, t)
	{
		int k = coh_target_kind(t);
		if ((k == COH_KIND_HOST_NODE || k == COH_KIND_CPULESS_NODE) && coh_target_numa_node(t) != node) {
			node = coh_target_numa_node(t);
			count++;
		}
	}
	if (count == 0) {
		/* no host backend in this context: the machine's own node list */
		char buf[64];
		if (coh_fs_read(nb->ctx, "/sys/devices/system/node/online", buf, sizeof(buf)) > 0 &&
		    !strcmp(buf, "0"))
			node = 0, count = 1;
	}
	hn = count == 1 ? node : -1;
	__atomic_store_n(&nb->host_node, hn, __ATOMIC_RELAXED);
	return hn;
}

/* Driver location of a target: a GPU of this backend, or host memory. */
static int location(const coh_target *t, CUmemLocation *loc)
{
	if (is_nvidia(t)) {
		*loc = (CUmemLocation){ CU_MEM_LOCATION_TYPE_DEVICE, gpu_of(t)->ordinal };
		return 0;
	}
	if (t && coh_target_numa_node(t) >= 0) {
		/* the driver places host pages by the calling thread's policy */
		*loc = (CUmemLocation){ CU_MEM_LOCATION_TYPE_HOST, 0 };
		return 0;
	}
	return -EOPNOTSUPP;
}

static CUresult prefetch(struct nv_backend *nb, uintptr_t p, size_t len, CUmemLocation loc, CUstream s)
{
	if (nb->cu.prefetch_v2)
		return nb->cu.prefetch_v2(p, len, loc, 0, s);
	return nb->cu.prefetch(p, len, loc.type == CU_MEM_LOCATION_TYPE_DEVICE ? loc.id : CU_DEVICE_CPU, s);
}

static CUresult advise(struct nv_backend *nb, uintptr_t p, size_t len, int advice, CUmemLocation loc)
{
	if (nb->cu.advise_v2)
		return nb->cu.advise_v2(p, len, advice, loc);
	return nb->cu.advise(p, len, advice, loc.type == CU_MEM_LOCATION_TYPE_DEVICE ? loc.id : CU_DEVICE_CPU);
}

/* The GPU whose context and streams serve a record. */
static struct nv_gpu *rec_gpu(const struct coh_alloc_rec *rec, coh_target *dst)
{
	if (is_nvidia(rec->target))
		return gpu_of(rec->target);
	return is_nvidia(dst) ? gpu_of(dst) : NULL;
}

/* ---------------- memory ---------------- */

static int nv_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	struct nv_backend *nb = nb_of(t);
	struct nv_gpu *g = gpu_of(t);
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	int e = nv_enter(nb, g);
	if (e)
		return e;
	CUdeviceptr p = 0, base = 0;
	CUresult r = nb->cu.alloc_managed(&p, size, CU_MEM_ATTACH_GLOBAL);
	if (r == CUDA_SUCCESS && (p & (align - 1))) {
		/* the driver aligns to 2 MiB or more; a larger alignment needs room */
		nb->cu.mem_free(p);
		r = nb->cu.alloc_managed(&base, size + align, CU_MEM_ATTACH_GLOBAL);
		p = r == CUDA_SUCCESS ? (base + align - 1) & ~(CUdeviceptr)(align - 1) : 0;
	}
	if (r != CUDA_SUCCESS) {
		e = cu_fail(nb, "cuMemAllocManaged", r);
		nv_leave(nb);
		return e;
	}
	CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, g->ordinal };
	r = advise(nb, p, size, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, loc);
	if (r == CUDA_SUCCESS)
		r = prefetch(nb, p, size, loc, g->stream[0]);   /* pages are made on the GPU */
	if (r == CUDA_SUCCESS)
		r = nb->cu.stream_sync(g->stream[0]);
	if (r != CUDA_SUCCESS) {
		e = cu_fail(nb, "placing a new managed allocation", r);
		nb->cu.mem_free(base ? base : p);
		nv_leave(nb);
		return e;
	}
	nv_leave(nb);
	*out = (void *)(uintptr_t)p;
	*priv = (void *)(uintptr_t)(base ? base : p);
	return 0;
}

static int nv_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	struct nv_backend *nb = nb_of(t);
	if (in_child(nb))
		return coh_sys_munmap(ptr, size);   /* the child's own copy (or the driver's dead mapping) */
	CUdeviceptr p = priv ? (uintptr_t)priv : (uintptr_t)ptr;   /* the driver's base */
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	e = cu_fail(nb, "cuMemFree", nb->cu.mem_free(p));
	nv_leave(nb);
	return e;
}

/* Is addr CUDA managed memory?  (The caller is inside the driver.) */
static bool managed_at(struct nv_backend *nb, uintptr_t addr)
{
	unsigned int v = 0;
	return nb->cu.pointer_attribute(&v, CU_POINTER_ATTRIBUTE_IS_MANAGED, addr) == CUDA_SUCCESS && v == 1;
}

/* Managed memory: allocated here, or the application's own that it adopted.
 * A record's priv is the driver's base address of managed memory (the
 * over-allocation's base for a large alignment, else the start), NULL for
 * ordinary memory adopted in place. */
static bool rec_managed(struct nv_backend *nb, const struct coh_alloc_rec *rec)
{
	(void)nb;
	return rec->priv != NULL;
}

/* Adopt: the application's own managed memory (cudaMallocManaged, recognised
 * by the pointer attribute IS_MANAGED; MEMORY_TYPE says "device" for it), on
 * any GPU; ordinary private memory only where the GPU has pageable memory
 * access (HMM/ATS) and works on it in place. */
static int nv_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)flags;
	struct nv_backend *nb = nb_of(t);
	int e = nv_enter(nb, gpu_of(t));
	if (e)
		return e;
	bool managed = managed_at(nb, (uintptr_t)addr) && managed_at(nb, (uintptr_t)addr + len - 1);
	nv_leave(nb);
	if (managed) {
		*priv = addr;   /* managed: see rec_managed */
		return 0;
	}
	if (!gpu_of(t)->pageable) {
		coh_warn(nb->ctx, "nvidia: %s has no pageable memory access (no HMM/ATS): only managed memory can be "
			 "adopted", coh_target_name(t));
		return -EOPNOTSUPP;
	}
	return coh_range_anon_private(coh_target_context(t), addr, len);
}

static int nv_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	(void)t;
	(void)rec;
	return 0;   /* the memory stays where it is, with the caller; priv points to nothing of ours */
}

struct nv_token {
	struct nv_backend *nb;
	struct nv_gpu *g;
	CUevent ev[NV_MAX_STREAMS];
	int nev;
};

/* COH_CAP_MIGRATE_STICKY (pages populated later land at the destination),
 * only with nvidia.prefer=1 (COH_NVIDIA_PREFER=1): a migration then makes the
 * destination the preferred location, but only when it differs from the
 * record's home (the allocation's target, then the last destination): once
 * per change of place, not once per migration.  Off by default: the advice
 * over 1 GiB cost a third of the host->GPU rate on an H200 (33.7 against
 * 50.3 GB/s, docs/performance.md), and a runtime moving data back and forth
 * changes place on every migration.  Off, migrations are plain prefetches and
 * pages populated later go where the driver puts them. */
static CUresult prefer(struct nv_backend *nb, const struct coh_alloc_rec *rec, coh_target *dst, uintptr_t addr,
		       size_t len, CUmemLocation loc)
{
	if (!nb->prefer || rec->home == dst || !rec_managed(nb, rec))
		return CUDA_SUCCESS;
	return advise(nb, addr, len, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, loc);
}

/* Issues the prefetches of [addr, addr+len) to loc: chunks round-robin over
 * the GPU's streams when chunking is on.  Returns the number of streams used. */
static CUresult issue(struct nv_backend *nb, struct nv_gpu *g, uintptr_t addr, size_t len, CUmemLocation loc,
		      int *used)
{
	size_t chunk = nb->chunk && len > nb->chunk ? nb->chunk : len;
	int k = 0;
	CUresult r = CUDA_SUCCESS;
	for (size_t off = 0; off < len && r == CUDA_SUCCESS; off += chunk, k++) {
		size_t c = len - off < chunk ? len - off : chunk;
		r = prefetch(nb, addr + off, c, loc, g->stream[k % g->nstreams]);
	}
	*used = k < g->nstreams ? k : g->nstreams;
	return r;
}

/* Sets off the migration of [addr, addr+len) to dst: on success the driver
 * is entered (nv_leave() after), the work issued on *used streams of *gpu. */
static int launch(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, struct nv_gpu **gpu,
		  int *used)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = rec_gpu(rec, dst);
	CUmemLocation loc;
	int e = location(dst, &loc);
	if (e || !g)
		return e ? e : -EOPNOTSUPP;
	if ((e = nv_enter(nb, g)))
		return e;
	*used = 0;
	CUresult r = prefer(nb, rec, dst, (uintptr_t)addr, len, loc);
	if (r == CUDA_SUCCESS)
		r = issue(nb, g, (uintptr_t)addr, len, loc, used);
	if (r != CUDA_SUCCESS) {
		e = cu_fail(nb, "cuMemPrefetchAsync", r);
		for (int i = 0; i < *used; i++)
			nb->cu.stream_sync(g->stream[i]);   /* what was issued finishes; the data stays valid */
		nv_leave(nb);
		return e;
	}
	*gpu = g;
	return 0;
}

static int nv_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g;
	int used, e = launch(dst, rec, addr, len, &g, &used);
	if (e)
		return e;
	for (int i = 0; i < used; i++) {
		CUresult s = nb->cu.stream_sync(g->stream[i]);
		if (!e)
			e = cu_fail(nb, "cuStreamSynchronize", s);
	}
	nv_leave(nb);
	return e;
}

static int nv_migrate_start(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
			    unsigned flags, void **token)
{
	(void)flags;
	struct nv_token *tk = calloc(1, sizeof(*tk));
	if (!tk)
		return -ENOMEM;
	struct nv_backend *nb = nb_of(rec->target);
	int used, e = launch(dst, rec, addr, len, &tk->g, &used);
	if (e) {
		free(tk);
		return e;
	}
	tk->nb = nb;
	/* one event per stream used: the handle is done when all have fired */
	CUresult r = CUDA_SUCCESS;
	for (int i = 0; i < used && r == CUDA_SUCCESS; i++) {
		r = nb->cu.event_create(&tk->ev[i], CU_EVENT_DISABLE_TIMING);
		if (r == CUDA_SUCCESS) {
			tk->nev++;
			r = nb->cu.event_record(tk->ev[i], tk->g->stream[i]);
		}
	}
	if (r != CUDA_SUCCESS) {
		e = cu_fail(nb, "cuEventRecord", r);
		for (int i = 0; i < used; i++)
			nb->cu.stream_sync(tk->g->stream[i]);
		for (int i = 0; i < tk->nev; i++)
			nb->cu.event_destroy(tk->ev[i]);
		free(tk);
		tk = NULL;
	}
	nv_leave(nb);
	*token = tk;
	return e;
}

static int nv_migrate_poll(void *token, int timeout_ms)
{
	struct nv_token *tk = token;
	struct nv_backend *nb = tk->nb;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int e = nv_enter(nb, tk->g);
		if (e)
			return e;
		bool busy = false;
		for (int i = 0; i < tk->nev && !e; i++) {
			CUresult r = timeout_ms < 0 ? nb->cu.event_sync(tk->ev[i]) : nb->cu.event_query(tk->ev[i]);
			if (r == CUDA_ERROR_NOT_READY)
				busy = true;
			else if (r != CUDA_SUCCESS)
				e = cu_fail(nb, "migration event", r);
		}
		nv_leave(nb);
		if (e || !busy)
			return e;
		if (timeout_ms == 0)
			return -EINPROGRESS;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ 0, 50000 }, NULL);
	}
}

static void nv_migrate_done(void *token)
{
	struct nv_token *tk = token;
	if (nv_enter(tk->nb, tk->g) == 0) {
		for (int i = 0; i < tk->nev; i++)
			tk->nb->cu.event_destroy(tk->ev[i]);
		nv_leave(tk->nb);
	}
	free(tk);
}

static int nv_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = rec_gpu(rec, t);
	if (!g)
		return -EOPNOTSUPP;
	CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, g->ordinal };
	int cu_advice;
	switch (advice) {
	case COH_ADVISE_PREFERRED_LOCATION: cu_advice = CU_MEM_ADVISE_SET_PREFERRED_LOCATION; break;
	case COH_ADVISE_UNSET_PREFERRED_LOCATION: cu_advice = CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION; break;
	case COH_ADVISE_ACCESSED_BY: cu_advice = CU_MEM_ADVISE_SET_ACCESSED_BY; break;
	case COH_ADVISE_UNSET_ACCESSED_BY: cu_advice = CU_MEM_ADVISE_UNSET_ACCESSED_BY; break;
	case COH_ADVISE_READ_MOSTLY: cu_advice = CU_MEM_ADVISE_SET_READ_MOSTLY; break;
	case COH_ADVISE_UNSET_READ_MOSTLY: cu_advice = CU_MEM_ADVISE_UNSET_READ_MOSTLY; break;
	default: return -EINVAL;
	}
	if (t) {
		int e = location(t, &loc);
		if (e)
			return e;
	}
	int e = nv_enter(nb, g);
	if (e)
		return e;
	e = cu_fail(nb, "cuMemAdvise", advise(nb, (uintptr_t)addr, len, cu_advice, loc));
	nv_leave(nb);
	return e;
}

/* ---------------- residency ---------------- */

struct resolve_out {
	struct coh_extent *out;
	size_t n, max;
	bool full;
};

static bool emit(struct resolve_out *o, uintptr_t a, size_t len, int kind, int node, coh_target *t)
{
	if (o->n > 0) {
		struct coh_extent *p = &o->out[o->n - 1];
		if (p->start + p->length == a && p->kind == kind && p->node == node && p->target == t) {
			p->length += len;
			return true;
		}
	}
	if (o->n == o->max) {
		o->full = true;
		return false;
	}
	o->out[o->n++] = (struct coh_extent){ .start = a, .length = len, .kind = kind, .node = node, .target = t };
	return true;
}

static coh_target *gpu_target(coh_context *ctx, int ordinal)
{
	char name[32];
	snprintf(name, sizeof(name), NV_TARGET_NAME, ordinal);
	return coh_target_find(ctx, name);
}

/* Pages not mapped on the CPU: where the driver's last prefetch put them;
 * a run the driver cannot answer for as one is halved until it can. */
static bool absent_run(struct nv_backend *nb, struct resolve_out *o, uintptr_t a, size_t len, size_t ps, int depth)
{
	int loc = CU_DEVICE_INVALID;
	CUresult r = nb->cu.range_attribute(&loc, sizeof(loc), CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION, a, len);
	if (r != CUDA_SUCCESS)
		loc = CU_DEVICE_INVALID;
	if (loc == CU_DEVICE_INVALID && len > ps && depth < 24) {
		size_t half = (len / ps / 2) * ps;
		return absent_run(nb, o, a, half, ps, depth + 1) &&
		       absent_run(nb, o, a + half, len - half, ps, depth + 1);
	}
	coh_target *t = loc >= 0 ? gpu_target(nb->ctx, loc) : NULL;
	/* not on the CPU and the driver names no GPU: managed, place unknown */
	return emit(o, a, len, COH_MEM_VENDOR_MANAGED, -1, t);
}

static int nv_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
			    size_t max)
{
	struct nv_backend *nb = nb_of(rec->target);
	coh_context *ctx = nb->ctx;
	if (!rec_managed(nb, rec)) {
		/* pageable memory: the kernel's view holds; device-private pages are on the GPU */
		out[0] = *in;
		if (in->kind == COH_MEM_DEVICE_PRIVATE || in->kind == COH_MEM_DEVICE_COHERENT)
			out[0].target = is_nvidia(rec->home) ? rec->home : rec->target;
		return 1;
	}
	if (in->kind == COH_MEM_UNMAPPED)
		return -ENOENT;   /* freed under us: keep the kernel's answer */
	struct nv_gpu *g = gpu_of(rec->target);
	int e = nv_enter(nb, g);
	if (e)
		return e;
	size_t ps = coh_ctx_page_size(ctx), np = in->length / ps;
	uint8_t *present = malloc(np ? np : 1);
	if (!present) {
		nv_leave(nb);
		return -ENOMEM;
	}
	e = coh_pagemap_present(ctx, in->start, np, present);
	struct resolve_out o = { .out = out, .max = max };
	int hn = in->node >= 0 ? in->node : host_node(nb);
	coh_target *ht = hn >= 0 ? coh_target_of_node(ctx, hn) : NULL;
	for (size_t i = 0; i < np && !e && !o.full;) {
		size_t j = i + 1;
		while (j < np && present[j] == present[i])
			j++;
		uintptr_t a = in->start + i * ps;
		if (present[i])
			emit(&o, a, (j - i) * ps, COH_MEM_VENDOR_MANAGED, hn, ht);
		else
			absent_run(nb, &o, a, (j - i) * ps, ps, 0);
		i = j;
	}
	free(present);
	nv_leave(nb);
	if (e)
		return e;
	return o.n ? (int)o.n : -ENOSPC;
}

/* ---------------- fork ---------------- */

static int nv_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	if (!rec_managed(nb_of(rec->target), rec))
		return coh_fork_madvise(rec, policy);   /* ordinary private memory: the kernel's controls */
	/* managed memory: the core's fork staging acts on the policy at fork time */
	return policy == COH_FORK_SHARE ? -EOPNOTSUPP : 0;
}

/* Managed memory: CUDA disables the mapping in a child, so COPY, ZERO and
 * EXCLUDE are staged by the core (the child's mapping is the driver's: no
 * DONTFORK, the core maps over it); KERNEL leaves the driver's way. */
static int nv_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	struct nv_backend *nb = nb_of(rec->target);
	if (!rec_managed(nb, rec) || (at_fork && !nb->fork_locked))
		return 0;   /* not ours to stage, or no CUDA in this process */
	plan->parent_keeps = 1;
	switch (rec->fork_policy) {
	case COH_FORK_COPY:
		plan->stage = COH_STAGE_COPY;
		plan->child_view = COH_CHILD_COPY;
		plan->reason = "copied out through the GPU before fork: the child gets a private copy at the same address";
		return 0;
	case COH_FORK_EXCLUDE:
		plan->stage = COH_STAGE_UNMAP;
		plan->child_view = COH_CHILD_ABSENT;
		plan->reason = "unmapped in the child: an access raises SIGSEGV";
		return 0;
	case COH_FORK_ZERO:
		plan->stage = COH_STAGE_ZERO;
		plan->child_view = COH_CHILD_ZERO;
		plan->reason = "zero-filled private memory in the child";
		return 0;
	default:
		plan->child_view = COH_CHILD_UNREADABLE;
		plan->reason = "CUDA disables managed mappings in a forked child: an access raises SIGSEGV";
		return 0;
	}
}

/* Through the GPU's copy engine, to the staging buffer (or the core's copy
 * where that could not be had); the prepare hook holds the driver calls. */
static int nv_fork_copy(const struct coh_alloc_rec *rec, void *dst)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = gpu_of(rec->target);
	int e = ctx_in(nb, g);
	if (e)
		return e;
	CUresult r = nb->cu.memcpy_async((uintptr_t)dst, rec->start, rec->length, g->stream[0]);
	if (r == CUDA_SUCCESS)
		r = nb->cu.stream_sync(g->stream[0]);
	ctx_out(nb);
	if (r == CUDA_SUCCESS)
		return 0;
	coh_warn(nb->ctx, "nvidia: fork copy of %#lx+%zu failed: %s", (unsigned long)rec->start, rec->length,
		 cu_name(nb, r));
	return -EIO;
}

/* A shared staging buffer of at least need bytes after its header page, pinned
 * for copy-engine speed; a buffer a child may still be reading is retired. */
static int staging_ready(struct nv_backend *nb, size_t need)
{
	size_t ps = coh_ctx_page_size(nb->ctx);
	if (nb->staging) {
		struct stage_hdr *h = nb->staging;
		if (atomic_load(&h->busy) == 0 && nb->staging_len >= need + ps)
			return 0;
		staging_drop(nb);
	}
	size_t len = (need + ps + NV_2M - 1) & ~(size_t)(NV_2M - 1);
	void *p;
	int e = coh_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0, &p);
	if (e)
		return e;
	nb->staging = p;
	nb->staging_len = len;
	CUresult r = nb->cu.host_register(p, len, 0);
	nb->staging_pinned = r == CUDA_SUCCESS;
	if (!nb->staging_pinned)
		coh_warn(nb->ctx, "nvidia: fork staging buffer not pinned (%s): fork COPY runs slower",
			 cu_name(nb, r));
	return 0;
}

/* This fork's COPY data: the staging buffer, which the child reads. */
static void *nv_fork_buffer(coh_context *ctx, void *priv, size_t need)
{
	struct nv_backend *nb = priv;
	if (staging_ready(nb, need)) {
		coh_warn(ctx, "nvidia: no memory for the fork staging buffer: COPY ranges are copied to unpinned memory");
		return NULL;
	}
	nb->staged_copy = true;
	atomic_store(&((struct stage_hdr *)nb->staging)->busy, 1);
	return (char *)nb->staging + coh_ctx_page_size(ctx);
}

static void nv_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	nb->staged_copy = false;
	nb->fork_locked = false;
	if (!nb->lib || in_child(nb))
		return;
	pthread_rwlock_wrlock(&nb->calls);   /* held until the parent or child hook */
	nb->fork_locked = true;
}

static void nv_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	/* the child reads the staging buffer; the next fork checks it is done */
	if (nb->fork_locked) {
		nb->fork_locked = false;
		pthread_rwlock_unlock(&nb->calls);
	}
}

/* Async-signal-safe: munmap.  The core has copied the staged data out. */
static void nv_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct nv_backend *nb = priv;
	/* nb->calls stays as the prepare hook left it: every driver call answers
	 * -ECHILD here before taking it, and re-initialising a held lock is
	 * undefined (glibc's rwlock cannot be unlocked by the child either) */
	nb->fork_locked = false;
	if (nb->staging) {
		if (nb->staged_copy)
			atomic_store(&((struct stage_hdr *)nb->staging)->busy, 0);
		coh_sys_munmap(nb->staging, nb->staging_len);   /* the parent keeps its own view */
		nb->staging = NULL;
		nb->staging_len = 0;
		nb->staging_pinned = false;
	}
}

/* Mappings of the UVM driver's device file are managed memory the CPU may not see. */
static const struct coh_tunable nv_tunables[] = {
	{ "nvidia.streams", "COH_NVIDIA_STREAMS" },
	{ "nvidia.chunk_mb", "COH_NVIDIA_CHUNK_MB" },
	{ "nvidia.prefer", "COH_NVIDIA_PREFER" },
	{ "nvidia.cuda_library", "COH_CUDA_LIBRARY" },
	{ NULL, NULL },
};

static const struct coh_owned_mapping nv_owned[] = {
	{ "/dev/nvidia-uvm", COH_MEM_VENDOR_MANAGED },
	{ NULL, 0 },
};

const struct coh_backend_ops coh_nvidia_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "nvidia",
	.discover = nv_discover,
	.fini = nv_fini,
	.target_fini = nv_target_fini,
	.free_bytes = nv_free_bytes,
	.alloc = nv_alloc,
	.free = nv_free,
	.adopt = nv_adopt,
	.release = nv_release,
	.migrate = nv_migrate,
	.advise = nv_advise,
	.fork_policy = nv_fork_policy,
	.atfork_prepare = nv_atfork_prepare,
	.atfork_parent = nv_atfork_parent,
	.atfork_child = nv_atfork_child,
	.query_resolve = nv_query_resolve,
	.fork_plan = nv_fork_plan,
	.fork_copy = nv_fork_copy,
	.fork_buffer = nv_fork_buffer,
	.migrate_start = nv_migrate_start,
	.migrate_poll = nv_migrate_poll,
	.migrate_done = nv_migrate_done,
	.owned_mappings = nv_owned,
	.tunables = nv_tunables,
};
