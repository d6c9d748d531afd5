/* SPDX-License-Identifier: MIT */
/*
 * The contract between the core and a backend.  A backend is one static
 * `struct coh_backend_ops` named coh_<name>_backend; the core validates it at
 * registration (coh_backend_validate) and answers -EOPNOTSUPP for every
 * optional op a backend leaves NULL.  A backend never calls another backend.
 */
#ifndef COH_CORE_BACKEND_H
#define COH_CORE_BACKEND_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coherent.h"

#define COH_BACKEND_ABI 1

/* NUMA node ids are below this everywhere in the library (node bitmaps,
 * masks for mbind, ids read from sysfs). */
#define COH_NODE_LIMIT 1024

struct coh_alloc_rec;

/* The flags ops->alloc and ops->adopt receive: the caller's enum
 * coh_alloc_flag bits, plus the allocation's fork policy (enum
 * coh_fork_policy) in bits the public flags never use; read it with
 * coh_backend_fork_policy().  Once the allocation exists its record holds the
 * policy as rec->fork_policy and the caller's flags as rec->flags. */
#define COH_BACKEND_FORK_SHIFT 24
static inline unsigned coh_backend_flags(unsigned flags, int fork_policy)
{
	return flags | ((unsigned)fork_policy & 0xfu) << COH_BACKEND_FORK_SHIFT;
}
static inline int coh_backend_fork_policy(unsigned backend_flags)
{
	return (int)((backend_flags >> COH_BACKEND_FORK_SHIFT) & 0xfu);
}

/* What a backend fills in for each target it discovers. */
struct coh_target_desc {
	int kind;                 /* enum coh_target_kind */
	char name[64];            /* unique, "<backend>:<local name>" */
	char vendor[64];
	char model[128];
	char pci_address[16];     /* empty when none */
	int numa_node;            /* -1 when none */
	uint64_t total_bytes;
	uint64_t caps;            /* enum coh_cap */
	int zone_movable;         /* 1: all of it is ZONE_MOVABLE (long-term pins migrate it) */
	void *priv;               /* backend data, freed by ops->target_fini */
	int capacity_unknown;     /* 1: total_bytes could not be read (it is 0) */
	int persistent;           /* 1: persistent memory (an NVDIMM region onlined by kmem) */
	/* Device identity (coh_target_device); the PCI fields come from pci_address. */
	int memory_model;         /* enum coh_memory_model; 0: the core derives it from kind */
	unsigned device_status;   /* COH_DEVICE_HAS_UUID, COH_DEVICE_HAS_GPU_ID, COH_DEVICE_UNVERIFIED */
	uint32_t gpu_id;          /* with COH_DEVICE_HAS_GPU_ID */
	uint8_t uuid[16];         /* with COH_DEVICE_HAS_UUID */
};

struct coh_backend_ops {
	/* Header: checked by the core before any other field is read. */
	uint32_t abi;             /* COH_BACKEND_ABI */
	uint32_t size;            /* sizeof(struct coh_backend_ops) */
	const char *name;         /* equals the folder and the symbol prefix */

	/* Mandatory. */
	/* Append targets with coh_target_add(); 0 when none is present. */
	int (*discover)(coh_context *ctx, void **backend_priv);
	void (*fini)(coh_context *ctx, void *backend_priv);

	/* Optional: NULL means -EOPNOTSUPP (or nothing to do). */
	void (*target_fini)(coh_target *t, void *target_priv);
	int (*free_bytes)(coh_target *t, uint64_t *free_bytes);
	int (*alloc)(coh_target *t, size_t size, size_t align, unsigned flags, void **out);
	int (*free)(coh_target *t, void *ptr, size_t size);
	int (*adopt)(coh_target *t, void *addr, size_t len, unsigned flags);
	int (*release)(coh_target *t, const struct coh_alloc_rec *rec);
	int (*migrate)(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
		       unsigned flags);
	/* Asynchronous migration runs `migrate` on a core worker thread. */
	int (*advise)(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice,
		      coh_target *t);
	/* Refine extents the core's kernel query produced (vendor-managed ranges). */
	int (*query_refine)(const struct coh_alloc_rec *rec, struct coh_extent *ext, size_t n);
	/* Apply a fork policy to a range this backend owns: 0 done, -errno
	 * refused, 1 "apply the kernel's own controls" (madvise) for this range. */
	int (*fork_policy)(const struct coh_alloc_rec *rec, int policy);
	/* Fork hooks, called from the core's single pthread_atfork registry.
	 * child must be async-signal-safe. */
	void (*atfork_prepare)(coh_context *ctx, void *backend_priv);
	void (*atfork_parent)(coh_context *ctx, void *backend_priv);
	void (*atfork_child)(coh_context *ctx, void *backend_priv);

	/* Replace one extent of the kernel's residency (which lies inside rec)
	 * with what the backend knows better, split as it needs: writes at most
	 * max extents covering a prefix of *in, in address order, and returns
	 * their number (>= 1), or -errno to keep *in as it is.  Runs after
	 * query_refine. */
	int (*query_resolve)(const struct coh_alloc_rec *rec, const struct coh_extent *in,
			     struct coh_extent *out, size_t max);
	/* What a child forked now sees of rec, where the backend's fork hooks
	 * decide it rather than the mapping's VmFlags: 0 and the answers, or
	 * non-zero to let the core read the kernel's flags. */
	int (*fork_view)(const struct coh_alloc_rec *rec, int *child_view, int *parent_keeps,
			 const char **reason);
	/* Native asynchronous migration (e.g. a driver stream and event) instead
	 * of the core's worker thread: start returns a token; poll gives 0 when
	 * done, -EINPROGRESS (timeout_ms 0) or -ETIMEDOUT while running, else the
	 * error; done releases the token after completion. */
	int (*migrate_start)(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
			     unsigned flags, void **token);
	int (*migrate_poll)(void *token, int timeout_ms);
	void (*migrate_done)(void *token);
};

/* The core's record of one allocation or adopted range. */
struct coh_alloc_rec {
	uintptr_t start;
	size_t length;
	coh_target *target;
	unsigned flags;
	int fork_policy;
	int adopted;
	int shared;               /* MAP_SHARED backing (fork SHARE) */
	/* Where pages faulted in later go: the allocation's target, then the
	 * destination of the last complete migration; NULL for an adopted range
	 * whose placement libcoherent never changed. */
	coh_target *home;
	int placed;               /* libcoherent changed the range's memory policy */
};

/* For backends. */
/* Calls fn for each record owned by this backend, under the map's read lock
 * (fn must not call back into the allocation map).  Stops at fn's first
 * non-zero result and returns it. */
int coh_rec_foreach(coh_context *ctx, const struct coh_backend_ops *ops,
		    int (*fn)(const struct coh_alloc_rec *rec, void *arg), void *arg);
int coh_target_add(coh_context *ctx, const struct coh_target_desc *desc);
/* During discover: one line on what the backend found or why it has no
 * targets (no driver, no device); each call adds a line.  coh_backend_status()
 * reports them, and each is logged at COH_LOG_INFO. */
void coh_backend_note(coh_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* During discover: the memory of NUMA node `node` comes from a device this
 * backend knows (CXL memory onlined as system RAM): replaces the vendor and
 * model of the targets of that node, whichever backend made them.  Count. */
int coh_target_describe_node(coh_context *ctx, int node, const char *vendor, const char *model);
void *coh_target_priv(const coh_target *t);
/* A tunable's value: coh_context_options.tunables first, then its environment
 * variable; NULL when neither sets it.  Keys (the core's table, refused at
 * create when unknown): "nvidia.streams" (COH_NVIDIA_STREAMS),
 * "nvidia.chunk_mb" (COH_NVIDIA_CHUNK_MB), "nvidia.prefer"
 * (COH_NVIDIA_PREFER), "amd.xnack" (COH_AMD_XNACK), "cuda.library"
 * (COH_CUDA_LIBRARY), "query.pfn" (COH_QUERY_PFN). */
const char *coh_ctx_tunable(const coh_context *ctx, const char *key);
void *coh_target_backend_priv(const coh_target *t);
int coh_backend_validate(const struct coh_backend_ops *ops);
/* The record holding addr with a reference (drop it with coh_alloc_rec_put),
 * or NULL.  For backends that keep per-address state. */
/* dlopen and dlsym under the library's loader lock, which the fork prepare
 * handler takes: no child is forked while one of our threads is inside the
 * dynamic loader (it would inherit the loader's state half-changed).  Use
 * them for every library a backend loads. */
void *coh_dlopen(const char *path, int flags);
void *coh_dlsym(void *handle, const char *name);
const struct coh_alloc_rec *coh_alloc_rec_get(coh_context *ctx, const void *addr);
void coh_alloc_rec_put(const struct coh_alloc_rec *rec);

#endif
