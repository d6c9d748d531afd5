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
#ifndef COH_NVIDIA_H
#define COH_NVIDIA_H

/* The nvidia backend's private header: its structs, small accessors and the
 * functions its files share (those named nv_*; what each file holds: README.md). */
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <unistd.h>

#include "cuda_abi.h"
#include "backend.h"

#define NV_MAX_STREAMS 16
#define NV_2M (2u << 20)
#define NV_TARGET_NAME "nvidia:gpu%d"   /* of the GPU's ordinal */

extern const struct coh_backend_ops coh_nvidia_backend;

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
	CUfunction access_fn;      /* device access: coh_access, loaded at first use (access.c) */
	int access_err;            /* its load failed: -errno, kept */
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

static inline struct nv_backend *nb_of(const coh_target *t)
{
	return coh_target_backend_priv(t);
}

static inline struct nv_gpu *gpu_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static inline bool is_nvidia(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_nvidia_backend.name;
}

static inline bool in_child(const struct nv_backend *nb)
{
	return nb->pid != getpid();
}

/* driver.c */
const char *nv_cu_name(const struct nv_backend *nb, CUresult r);
int nv_cu_fail(struct nv_backend *nb, const char *what, CUresult r);
int nv_load_driver(coh_context *ctx, struct nv_backend *nb);
int nv_ctx_in(struct nv_backend *nb, struct nv_gpu *g);
void nv_ctx_out(struct nv_backend *nb);
int nv_enter(struct nv_backend *nb, struct nv_gpu *g);
void nv_leave(struct nv_backend *nb);
CUresult nv_cu_prefetch(struct nv_backend *nb, uintptr_t p, size_t len, CUmemLocation loc, CUstream s);
CUresult nv_cu_advise(struct nv_backend *nb, uintptr_t p, size_t len, int advice, CUmemLocation loc);

/* discover.c */
int nv_discover(coh_context *ctx, void **priv);
void nv_target_fini(coh_target *t, void *priv);
void nv_fini(coh_context *ctx, void *priv);

/* mem.c */
int nv_free_bytes(coh_target *t, uint64_t *free_bytes);
int nv_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv);
int nv_free(coh_target *t, void *ptr, size_t size, void *priv);
bool nv_rec_managed(struct nv_backend *nb, const struct coh_alloc_rec *rec);
int nv_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv);
int nv_release(coh_target *t, const struct coh_alloc_rec *rec);

/* migrate.c */
int nv_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags);
int nv_migrate_start(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags,
		     void **token);
int nv_migrate_poll(void *token, int timeout_ms);
void nv_migrate_done(void *token);
int nv_migrate_notify(void *token, void (*fn)(void *arg), void *arg);
int nv_migrate_batch(const struct coh_batch_item *v, size_t n, int *results);
int nv_migrate_batch_start(const struct coh_batch_item *v, size_t n, void **tokens);
int nv_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t);

/* query.c */
int nv_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		     size_t max);
extern const struct coh_owned_mapping nv_owned[];

/* access.c */
bool nv_can_launch(const struct nv_backend *nb);
int nv_device_access(coh_target *dev, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned ops,
		     uint64_t pattern, uint64_t *sums);

/* fork.c */
void nv_staging_drop(struct nv_backend *nb);
int nv_fork_policy(const struct coh_alloc_rec *rec, int policy);
int nv_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan);
int nv_fork_copy(const struct coh_alloc_rec *rec, void *dst);
void *nv_fork_buffer(coh_context *ctx, void *priv, size_t need);
void nv_atfork_prepare(coh_context *ctx, void *priv);
void nv_atfork_parent(coh_context *ctx, void *priv);
void nv_atfork_child(coh_context *ctx, void *priv);

#endif
