/* SPDX-License-Identifier: MIT */
/*
 * libcoherent — one vendor-neutral API for coherent device memory.
 *
 * Conventions (all functions):
 *  - Functions returning int give 0 (or a non-negative count) on success and a
 *    negative errno value on failure; errno is never the channel.  Use
 *    coh_strerror() for a message.
 *  - Bad input (NULL, zero or overflowing length, unaligned address, unknown
 *    pointer, target of another context) is refused with -EINVAL, -EFAULT,
 *    -ENOENT or -EXDEV before anything is changed.
 *  - Handles are opaque.  Structures that cross the API can grow:
 *    - A struct that begins with a `size` member: the caller sets size to
 *      sizeof(the struct) as it was compiled.  A smaller size (from a program
 *      built against an older header) is accepted down to sizeof(size_t):
 *      input fields past it take their defaults, output fields past it are
 *      not written.  A larger size (a newer header) is accepted too: on
 *      output the library zeroes the bytes past its own struct, up to size;
 *      on input those bytes must be zero (-E2BIG otherwise, before anything
 *      is changed), so a new option is never silently ignored.
 *    - An array of extents is passed with `ext_size`, the caller's
 *      sizeof(element): elements are written at that stride, every field that
 *      lies wholly inside ext_size is filled and the bytes past the library's
 *      own struct are zeroed.  ext_size must cover `length` (COH_EXT_SIZE_MIN)
 *      and be a multiple of 8 (the alignment of the structs); -EINVAL otherwise.
 *    No public struct holds a fixed-size array; lists come from calls that
 *    take a buffer and a count (coh_target_initiators()).
 *
 * Thread safety: a coh_context and everything reachable from it may be used
 * from any number of threads at once, except that coh_context_unref() of the
 * last reference must not race other calls on that context.  Targets are
 * immutable after coh_context_create().  coh_lookup() takes no lock (a page
 * table read under a sequence counter); the allocation map is guarded by a
 * mutex held only for the map update or search itself (never across a system
 * call or a backend operation): coh_alloc(), coh_free(), coh_adopt(),
 * coh_release(), coh_set_user_data() and the record lookups of queries,
 * migrations and advice take it briefly, in turn.
 * A coh_migration handle may be waited on by one thread at a time.
 * The library never prints to stdout and never aborts; diagnostics go to the
 * log callback (default: stderr, level from COH_LOG, off unless set).
 */
#ifndef COHERENT_H
#define COHERENT_H

#include <errno.h>    /* results are compared with -EINVAL, -ENOENT, ... */
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "coherent_version.h"

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define COH_API __attribute__((visibility("default")))
#else
#define COH_API
#endif

/* ------------------------------------------------------------------ */
/* Version and errors                                                  */
/* ------------------------------------------------------------------ */

/* (major << 16) | (minor << 8) | patch of the library actually loaded. */
COH_API int coh_version(void);
COH_API const char *coh_version_string(void);
/* Message for a negative (or positive) errno value; never NULL. */
COH_API const char *coh_strerror(int err);

/* ------------------------------------------------------------------ */
/* Context                                                             */
/* ------------------------------------------------------------------ */

typedef struct coh_context coh_context;
typedef struct coh_target coh_target;
typedef struct coh_migration coh_migration;
typedef struct coh_pool coh_pool;   /* since 1.1: see Pools below */

enum coh_log_level {
	COH_LOG_NONE = 0,
	COH_LOG_ERR = 1,
	COH_LOG_WARN = 2,
	COH_LOG_INFO = 3,
	COH_LOG_DEBUG = 4,
};

typedef void (*coh_log_fn)(void *data, int level, const char *msg);

struct coh_context_options {
	size_t size;          /* sizeof(struct coh_context_options) */
	/* Backend filter, same syntax as COH_BACKENDS: "host,cxl" keeps those,
	 * "^nvidia" drops those.  NULL: COH_BACKENDS or all compiled in. */
	const char *backends;
	/* Root of /sys, /proc and /dev reads.  NULL: COH_FSROOT or "/".
	 * With any other root the context only describes (read-only). */
	const char *fsroot;
	int log_level;        /* -1: COH_LOG or COH_LOG_NONE */
	coh_log_fn log_fn;    /* NULL: stderr */
	void *log_data;
	/* Backend tunables, "key=value" separated by commas, e.g.
	 * "nvidia.streams=2,nvidia.prefer=0,amd.xnack=1,query.pfn=0".  A key set
	 * here wins over its environment variable (COH_NVIDIA_STREAMS, ...); an
	 * unknown key or a malformed list is -EINVAL at create.  NULL: the
	 * environment only.  See coh_context_create(3) for the keys. */
	const char *tunables;
};

/* opts may be NULL (all defaults). */
COH_API int coh_context_create(const struct coh_context_options *opts,
			       coh_context **out);
COH_API coh_context *coh_context_ref(coh_context *ctx);
/* Drops a reference; the last one frees every allocation still live. */
COH_API void coh_context_unref(coh_context *ctx);
COH_API int coh_context_set_log(coh_context *ctx, coh_log_fn fn, void *data);
COH_API int coh_context_set_log_level(coh_context *ctx, int level);
COH_API int coh_context_get_log_level(const coh_context *ctx);
/* Non-zero when the fsroot is not "/": memory-changing calls answer -EROFS. */
COH_API int coh_context_is_replay(const coh_context *ctx);
/* Names of the backends kept by the filter, comma separated, into buf.
 * Returns the length of the full string (like snprintf). */
COH_API int coh_context_backends(const coh_context *ctx, char *buf, size_t len);
/* One backend of the context: its number of targets (0 when it found none)
 * and, in buf, its own lines (separated by '\n') on what it found or why it
 * has nothing (no driver library, no device; the CXL devices, regions and dax
 * devices it saw); -ENOENT when the backend is not in the context. */
COH_API int coh_backend_status(const coh_context *ctx, const char *backend, char *buf, size_t len);

/* ------------------------------------------------------------------ */
/* Targets (discovery)                                                 */
/* ------------------------------------------------------------------ */

enum coh_target_kind {
	COH_KIND_HOST_NODE = 1,      /* NUMA node with CPUs */
	COH_KIND_CPULESS_NODE = 2,   /* memory-only node: CXL, HBM, GPU memory as a node */
	COH_KIND_DEVICE_COHERENT = 3,/* ZONE_DEVICE coherent memory of a device */
	COH_KIND_DEVICE_PRIVATE = 4, /* ZONE_DEVICE memory the CPU cannot address */
	COH_KIND_DEVICE_DAX = 5,     /* /dev/daxX.Y character device */
	COH_KIND_VENDOR_MANAGED = 6, /* driver-managed (CUDA managed memory) */
};

enum coh_cap {
	COH_CAP_ALLOC = 1u << 0,
	COH_CAP_ADOPT = 1u << 1,
	COH_CAP_MIGRATE = 1u << 2,
	COH_CAP_MIGRATE_ASYNC = 1u << 3,
	COH_CAP_ADVISE = 1u << 4,
	COH_CAP_QUERY = 1u << 5,
	COH_CAP_PIN_QUERY = 1u << 6,
	COH_CAP_FORK_COPY = 1u << 7,
	COH_CAP_FORK_SHARE = 1u << 8,
	COH_CAP_FORK_EXCLUDE = 1u << 9,
	COH_CAP_FORK_ZERO = 1u << 10,
	COH_CAP_FORK_KERNEL = 1u << 11,
	COH_CAP_HUGE_PAGES = 1u << 12,
	/* coh_migrate to this target also places pages of the range populated
	 * later there (a memory policy or the driver's preferred location);
	 * without it only the pages present at the migration move. */
	COH_CAP_MIGRATE_STICKY = 1u << 13,
	/* coh_device_access(): the target's own device can read and write
	 * memory (coh_device_info.access_note says how, or why it cannot). */
	COH_CAP_DEVICE_ACCESS = 1u << 14,
	/* Since 1.1: coh_export() and coh_import() (see Sharing between
	 * processes); coh_alloc() takes COH_ALLOC_SHAREABLE. */
	COH_CAP_SHARE = 1u << 15,
};

/* Number of targets, or -errno. */
COH_API int coh_target_count(const coh_context *ctx);
/* Target by index [0, count), or NULL. */
COH_API coh_target *coh_target_get(const coh_context *ctx, unsigned index);
/* Iteration: prev NULL gives the first; NULL after the last. */
COH_API coh_target *coh_target_next(const coh_context *ctx, const coh_target *prev);
#define coh_target_foreach(ctx, t) \
	for ((t) = coh_target_next((ctx), NULL); (t) != NULL; (t) = coh_target_next((ctx), (t)))
/* By name ("host:node0") or NULL. */
COH_API coh_target *coh_target_find(const coh_context *ctx, const char *name);
/* First target of a backend whose NUMA node is `node`, or NULL. */
COH_API coh_target *coh_target_by_node(const coh_context *ctx, int node);

COH_API coh_context *coh_target_context(const coh_target *t);
COH_API int coh_target_index(const coh_target *t);
COH_API const char *coh_target_backend(const coh_target *t);
COH_API int coh_target_kind(const coh_target *t);            /* enum coh_target_kind */
COH_API const char *coh_target_kind_name(int kind);
COH_API const char *coh_target_name(const coh_target *t);    /* "host:node0" */
COH_API const char *coh_target_vendor(const coh_target *t);
COH_API const char *coh_target_model(const coh_target *t);   /* human name */
/* "0000:3b:00.0" and the libpci device name, or NULL where there is none. */
COH_API const char *coh_target_pci_address(const coh_target *t);
COH_API const char *coh_target_pci_name(const coh_target *t);
/* NUMA node, or -ENOENT when the memory is not a node. */
COH_API int coh_target_numa_node(const coh_target *t);
/* Capacity and (re-read, current) free bytes; either pointer may be NULL.
 * -ENODATA (total 0) when the capacity could not be read. */
COH_API int coh_target_capacity(const coh_target *t, uint64_t *total, uint64_t *free_bytes);
COH_API uint64_t coh_target_caps(const coh_target *t);       /* enum coh_cap bits */
COH_API const char *coh_cap_name(uint64_t cap);              /* one bit */
/* ACPI SLIT distance between the nodes of two targets (10..254, 255 unreachable),
 * or -ENOENT, also when the node's distance row is invalid. */
COH_API int coh_target_distance(const coh_target *a, const coh_target *b);
/* Memory tier id (memory_tierN) or -ENOENT. */
COH_API int coh_target_memory_tier(const coh_target *t);

struct coh_access {
	size_t size;              /* sizeof(struct coh_access) */
	uint32_t read_bandwidth;  /* MB/s, 0 = unknown */
	uint32_t write_bandwidth;
	uint32_t read_latency;    /* ns, 0 = unknown */
	uint32_t write_latency;
	int nr_initiators;        /* initiator nodes listed for this class */
};
/* HMAT access class 0 (any initiator) or 1 (CPU initiators): -ENOENT without HMAT
 * (or when every figure is 0, HMAT's "not provided"). */
COH_API int coh_target_access(const coh_target *t, unsigned access_class,
			      struct coh_access *out);
/* The initiator nodes of that access class in ascending order: returns how
 * many there are, all of them, and writes at most max into nodes (which may
 * be NULL when max is 0).  -ENOENT as for coh_target_access(). */
COH_API int coh_target_initiators(const coh_target *t, unsigned access_class, int *nodes,
				  size_t max);

/* A memory-side cache of the node (HMAT): memory_side_cache/indexL. */
struct coh_memory_cache {
	size_t size;              /* sizeof(struct coh_memory_cache) */
	unsigned level;           /* L: a higher level is nearer the CPUs */
	uint64_t cache_bytes;
	uint32_t line_size;       /* bytes, 0 = unknown */
	int indexing;             /* 0 direct-mapped, 1 indexed, 2 other, -1 unknown */
	int write_policy;         /* 0 write-back, 1 write-through, 2 other, -1 unknown */
};
/* The index-th memory-side cache (0 first, by level), -ENOENT past the last. */
COH_API int coh_target_memory_cache(const coh_target *t, unsigned index,
				    struct coh_memory_cache *out);
/* 1 when the target's memory is persistent (an NVDIMM region onlined as a node), else 0. */
COH_API int coh_target_persistent(const coh_target *t);

/* How the device's memory reaches the process. */
enum coh_memory_model {
	COH_MODEL_UNKNOWN = 0,
	COH_MODEL_NODE = 1,        /* a NUMA node: system RAM, CXL or HBM onlined as a node */
	COH_MODEL_HMM = 2,         /* ZONE_DEVICE memory migrated to by the kernel's HMM */
	COH_MODEL_SVM = 3,         /* a driver's shared virtual memory (AMD KFD SVM ranges) */
	COH_MODEL_MANAGED = 4,     /* driver-managed memory (CUDA managed memory) */
	COH_MODEL_DEVDAX = 5,      /* a device-DAX character device mapped into the process */
};
enum coh_device_status {
	COH_DEVICE_HAS_UUID = 1u << 0,    /* uuid[] is valid */
	COH_DEVICE_HAS_PCI = 1u << 1,     /* pci_* fields are valid */
	COH_DEVICE_HAS_GPU_ID = 1u << 2,  /* gpu_id is valid */
	/* The backend's code path for this device has never been run against real
	 * hardware, only against a recorded tree or a driver double. */
	COH_DEVICE_UNVERIFIED = 1u << 3,
};
struct coh_device_info {
	size_t size;              /* sizeof(struct coh_device_info) */
	int memory_model;         /* enum coh_memory_model */
	unsigned status;          /* enum coh_device_status bits */
	uint32_t gpu_id;          /* driver's GPU id (AMD KFD topology gpu_id), 0 = none */
	uint32_t pci_domain;
	uint8_t pci_bus, pci_dev, pci_fn;
	uint8_t uuid[16];         /* device UUID (CUDA device UUID) */
	/* How coh_device_access() reaches memory on this target's device, or
	 * why it cannot (a static string, never NULL). */
	const char *access_note;
};
/* The identity of the target's device as data: 0 and *out, -EINVAL for bad input. */
COH_API int coh_target_device(const coh_target *t, struct coh_device_info *out);

/* ------------------------------------------------------------------ */
/* Allocation                                                          */
/* ------------------------------------------------------------------ */

enum coh_fork_policy {
	COH_FORK_COPY = 0,    /* default: child gets a private copy, parent keeps residency */
	COH_FORK_SHARE = 1,   /* child shares the memory (writes visible both ways) */
	COH_FORK_EXCLUDE = 2, /* child has no mapping there */
	COH_FORK_ZERO = 3,    /* child sees zero-filled memory at the same address */
	COH_FORK_KERNEL = 4,  /* no intervention: the raw kernel/driver behaviour */
};

enum coh_alloc_flag {
	COH_ALLOC_HUGE = 1u << 0,     /* ask for transparent huge pages */
	COH_ALLOC_NOHUGE = 1u << 1,   /* refuse transparent huge pages */
	COH_ALLOC_POPULATE = 1u << 2, /* fault every page in now */
	/* Since 1.1: memory another process can map (coh_export()), on a
	 * target with COH_CAP_SHARE.  Shared memory takes the fork policies
	 * SHARE, EXCLUDE and KERNEL only (-EOPNOTSUPP for COPY, the default,
	 * and ZERO). */
	COH_ALLOC_SHAREABLE = 1u << 3,
	/* Since 1.1: reported by coh_lookup() for memory mapped by
	 * coh_import(); coh_alloc() refuses it (-EINVAL). */
	COH_ALLOC_IMPORTED = 1u << 4,
};

/* Properties of an allocation or adopted range; NULL props = all defaults. */
struct coh_alloc_props {
	size_t size;          /* sizeof(struct coh_alloc_props) */
	size_t align;         /* 0 (page) or a power of two, rounded up to the page size */
	unsigned flags;       /* enum coh_alloc_flag; 0 for coh_adopt() */
	int fork_policy;      /* enum coh_fork_policy, default COH_FORK_COPY */
	void *user_data;      /* returned by coh_lookup(), default NULL */
};

#ifndef __cplusplus
/* Properties in place: coh_alloc(t, n, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_ZERO), &p).
 * Fields left out take their defaults (0, COH_FORK_COPY is 0). */
#define COH_ALLOC_PROPS(...) \
	((const struct coh_alloc_props){ .size = sizeof(struct coh_alloc_props), __VA_ARGS__ })
#endif

/* size > 0. */
COH_API int coh_alloc(coh_target *t, size_t size, const struct coh_alloc_props *props,
		      void **out);
/* ptr must be a start returned by coh_alloc (-ENOENT otherwise, -EINVAL for an
 * adopted range).  -EBUSY, with nothing freed, while another call holds the
 * allocation: a coh_migrate(), coh_advise(), coh_fork_policy_set() or a query
 * (coh_query(), coh_pin_query(), coh_fork_query()) over it running in another
 * thread, or a coh_migrate_async() whose handle has not been passed to
 * coh_migration_free() yet.  Free it again once that call has returned (or
 * the handle is freed); freeing memory another thread is still using is the
 * caller's race, which -EBUSY reports instead of unmapping under it. */
COH_API int coh_free(coh_context *ctx, void *ptr);
/* Register an existing anonymous range (page aligned) so the target's backend can
 * work on it in place.  The memory stays owned by the caller.  props->flags must be 0. */
COH_API int coh_adopt(coh_target *t, void *addr, size_t len, const struct coh_alloc_props *props);
/* -EBUSY as for coh_free(). */
COH_API int coh_release(coh_context *ctx, void *addr);

struct coh_alloc_info {
	size_t size;          /* sizeof(struct coh_alloc_info) */
	void *base;
	size_t length;
	coh_target *target;   /* where it was allocated or adopted */
	unsigned flags;       /* coh_alloc flags as given */
	int fork_policy;      /* enum coh_fork_policy */
	int adopted;          /* 1 for coh_adopt() ranges */
	void *user_data;      /* from coh_alloc_props or coh_set_user_data() */
	/* Since 1.1.  When addr lies in the backing of a coh_pool (a chunk or
	 * a large allocation of the pool): the pool, and the block holding
	 * addr with its size (NULL and 0 while that block is free).  base and
	 * length above are then the backing allocation's.  NULL, NULL, 0
	 * otherwise. */
	coh_pool *pool;
	void *block;
	size_t block_size;
};
/* Which allocation contains addr: 0 and *info, or -ENOENT.  O(1), lock-free. */
COH_API int coh_lookup(coh_context *ctx, const void *addr, struct coh_alloc_info *info);
/* Replaces the user data of the allocation or adopted range containing addr
 * (any address inside it): 0 or -ENOENT. */
COH_API int coh_set_user_data(coh_context *ctx, const void *addr, void *data);
/* Number of live allocations and adopted ranges. */
COH_API int coh_alloc_count(coh_context *ctx);

/* ------------------------------------------------------------------ */
/* Migration                                                           */
/* ------------------------------------------------------------------ */

/* Range [addr, addr+len) inside one allocation or adopted range, page aligned.
 * Returns 0 when every populated page is at dst.  On failure the data stays
 * readable and intact wherever it was.  Pages populated later land at dst too
 * where dst has COH_CAP_MIGRATE_STICKY. */
COH_API int coh_migrate(coh_context *ctx, void *addr, size_t len, coh_target *dst,
			unsigned flags);
COH_API int coh_migrate_async(coh_context *ctx, void *addr, size_t len, coh_target *dst,
			      unsigned flags, coh_migration **out);
/* 0 done, -EINPROGRESS still running, else the migration's error. */
COH_API int coh_migration_test(coh_migration *m);
/* timeout_ms < 0 waits forever; -ETIMEDOUT when it expires first. */
COH_API int coh_migration_wait(coh_migration *m, int timeout_ms);
/* Waits for completion, then frees the handle. */
COH_API void coh_migration_free(coh_migration *m);

/* ------------------------------------------------------------------ */
/* Completion queue and batches                                        */
/* ------------------------------------------------------------------ */

typedef struct coh_queue coh_queue;

/* One migration of a vector: the arguments of coh_migrate(), and a cookie
 * of the caller's that its completion carries back.  Passed with req_size,
 * the caller's sizeof(struct coh_migrate_req): at least
 * COH_MIGRATE_REQ_SIZE_MIN and a multiple of 8; bytes past the library's
 * struct must be zero (-E2BIG otherwise). */
struct coh_migrate_req {
	void *addr;
	size_t len;
	coh_target *dst;
	uint64_t cookie;
	unsigned flags;
	unsigned reserved;    /* 0 */
};
#define COH_MIGRATE_REQ_SIZE_MIN (sizeof(struct coh_migrate_req))

/* What a reaped request did.  Passed with comp_size, the caller's
 * sizeof(struct coh_completion): at least COH_COMPLETION_SIZE_MIN (cookie
 * and result) and a multiple of 8; the growth rule of extents applies. */
struct coh_completion {
	uint64_t cookie;      /* the request's */
	int result;           /* 0, or what coh_migrate() would have returned; -ECHILD: see coh_queue_create(3) */
	unsigned reserved;
	void *addr;
	size_t len;
	coh_target *dst;
};
#define COH_COMPLETION_SIZE_MIN (sizeof(uint64_t) + sizeof(int) + sizeof(unsigned))

struct coh_queue_props {
	size_t size;          /* sizeof(struct coh_queue_props) */
	unsigned flags;       /* 0 */
};

/* A completion queue of ctx: props NULL for the defaults.  The queue holds
 * a reference on ctx until coh_queue_destroy(). */
COH_API int coh_queue_create(coh_context *ctx, const struct coh_queue_props *props, coh_queue **out);
/* Waits for the queue's requests in flight, drops the completions nobody
 * reaped, closes the fd and frees the queue: 0, or -EINVAL for NULL or a
 * queue that is not live (destroyed already). */
COH_API int coh_queue_destroy(coh_queue *q);
/* An eventfd, readable while completions wait to be reaped (poll it; do not
 * read it).  Owned by the queue. */
COH_API int coh_queue_fd(const coh_queue *q);
/* Submits n requests (req_size apart): n, or -errno with nothing submitted
 * (every request is checked first, as coh_migrate() checks it).  Each
 * request completes once, with its own result, reaped by coh_queue_reap(). */
COH_API int coh_queue_migrate(coh_queue *q, const struct coh_migrate_req *reqs, size_t n, size_t req_size);
/* Up to max completions (comp_size apart), oldest first: their number;
 * 0 when none came within timeout_ms (0: do not wait, < 0: no limit) or
 * when nothing is in flight; -errno for bad input. */
COH_API int coh_queue_reap(coh_queue *q, struct coh_completion *out, size_t max, size_t comp_size,
			   int timeout_ms);

/* Migrates n ranges in one call (one map lock round-trip, one driver batch
 * where the backend has one), synchronously.  Every request is checked
 * first: on a bad one nothing moves, results[i] gets each request's check
 * (0 or -errno) and the first error is returned.  Otherwise results[i] is
 * what migrating v[i] gave, and the return is how many gave 0. */
COH_API int coh_migrate_batch(coh_context *ctx, const struct coh_migrate_req *v, size_t n, size_t req_size,
			      int *results);

/* One range of coh_query_batch(); every element of a vector has the same
 * size (sizeof(struct coh_query_range), at least COH_QUERY_RANGE_SIZE_MIN,
 * a multiple of 8; bytes past the library's struct must be zero). */
struct coh_query_range {
	size_t size;
	const void *addr;
	size_t len;
	struct coh_extent *ext;   /* max extents, ext_size apart */
	size_t max;
	int result;           /* out: extents written (coh_query()'s return) or -errno */
	unsigned reserved;    /* 0 */
};
#define COH_QUERY_RANGE_SIZE_MIN (sizeof(struct coh_query_range))
/* coh_query() of each range into its own extent array: the number of ranges
 * answered without error, or -errno for bad input with nothing written. */
COH_API int coh_query_batch(coh_context *ctx, struct coh_query_range *v, size_t n, size_t ext_size);

/* ------------------------------------------------------------------ */
/* Device access                                                       */
/* ------------------------------------------------------------------ */

/* What coh_device_access() has the device do; both: each word is read
 * (summed) before it is written. */
enum coh_device_op {
	COH_DEVICE_SUM = 1u << 0,    /* read every 64-bit word; sums[i] = coh_block_sum() of block i */
	COH_DEVICE_FILL = 1u << 1,   /* write coh_pattern_word(pattern, offset) to every word */
};
/* The checksum block: one sum per 4 KiB of the range, whatever the page size. */
#define COH_SUM_BLOCK 4096u

/* The word a fill writes at byte offset `offset` (a multiple of 8) from the
 * start of the range. */
static inline uint64_t coh_pattern_word(uint64_t pattern, uint64_t offset)
{
	return pattern ^ (offset * 0x9E3779B97F4A7C15ull);
}
/* The sum of one COH_SUM_BLOCK block: word i weighted by 2i+1, modulo 2^64
 * (a device sums the words in any order and gets the same). */
static inline uint64_t coh_block_sum(const void *block)
{
	const uint64_t *w = (const uint64_t *)block;
	uint64_t s = 0;
	for (uint64_t i = 0; i < COH_SUM_BLOCK / 8; i++)
		s += w[i] * (2 * i + 1);
	return s;
}
/* The device of target dev reads and/or writes [addr, addr+len) itself (a
 * kernel, a DMA engine, a driver's mirror: coh_device_info.access_note says
 * which), so that what the device saw can be compared with what the CPU
 * sees.  The range is page aligned and inside one allocation or adopted
 * range, of any target the device can reach.  With COH_DEVICE_SUM, sums
 * holds at least len / COH_SUM_BLOCK entries.  Returns 0 when the device
 * did all of it; -EOPNOTSUPP without COH_CAP_DEVICE_ACCESS; -EFAULT when
 * the device cannot reach that memory; -EINVAL, -ENOENT, -EXDEV, -EROFS as
 * for coh_migrate().  Residency after the access is the device's own
 * affair (a GPU fault may move pages); coh_query() says where they are. */
COH_API int coh_device_access(coh_context *ctx, coh_target *dev, void *addr, size_t len, unsigned ops,
			      uint64_t pattern, uint64_t *sums, size_t nsums);

/* ------------------------------------------------------------------ */
/* Advice                                                              */
/* ------------------------------------------------------------------ */

enum coh_advice {
	COH_ADVISE_PREFERRED_LOCATION = 1,
	COH_ADVISE_UNSET_PREFERRED_LOCATION = 2,
	COH_ADVISE_ACCESSED_BY = 3,
	COH_ADVISE_UNSET_ACCESSED_BY = 4,
	COH_ADVISE_READ_MOSTLY = 5,
	COH_ADVISE_UNSET_READ_MOSTLY = 6,
};
/* t names the location for PREFERRED_LOCATION, ACCESSED_BY and
 * UNSET_ACCESSED_BY, and may be NULL for the others.  -EOPNOTSUPP where the
 * backend cannot honour it (see coh_advise(3)). */
COH_API int coh_advise(coh_context *ctx, void *addr, size_t len, int advice, coh_target *t);

/* ------------------------------------------------------------------ */
/* Residency query                                                     */
/* ------------------------------------------------------------------ */

enum coh_mem_kind {
	COH_MEM_UNKNOWN = 0,
	COH_MEM_NOT_POPULATED = 1,  /* no page behind it yet */
	COH_MEM_SYSTEM = 2,         /* ordinary anonymous system page */
	COH_MEM_SYSTEM_THP = 3,     /* part of a transparent huge page */
	COH_MEM_FILE = 4,           /* page-cache or shared-memory page */
	COH_MEM_SWAPPED = 5,        /* in swap */
	COH_MEM_DEVICE_COHERENT = 6,
	COH_MEM_DEVICE_PRIVATE = 7,
	COH_MEM_DEVICE_DAX = 8,
	COH_MEM_VENDOR_MANAGED = 9,
	COH_MEM_UNMAPPED = 10,      /* no mapping at this address */
};
COH_API const char *coh_mem_kind_name(int kind);

/* The smallest ext_size the extent calls accept: start and length. */
#define COH_EXT_SIZE_MIN (sizeof(uintptr_t) + sizeof(size_t))

struct coh_extent {
	uintptr_t start;
	size_t length;
	int kind;             /* enum coh_mem_kind */
	int node;             /* NUMA node, -1 when none or unknown */
	coh_target *target;   /* target holding it, NULL when none is known */
};
/* Residency of [addr, addr+len) of this process, as extents in address order.
 * Never moves or faults anything.  Returns the number of extents written
 * (at most max); when they end before addr+len, call again from there.
 * ext_size: sizeof(struct coh_extent) (see the growth rule above). */
COH_API int coh_query(coh_context *ctx, const void *addr, size_t len,
		      struct coh_extent *ext, size_t max, size_t ext_size);
/* Same for another process (pid 0 = self), where ptrace-read is permitted. */
COH_API int coh_query_pid(coh_context *ctx, pid_t pid, const void *addr, size_t len,
			  struct coh_extent *ext, size_t max, size_t ext_size);

/* ------------------------------------------------------------------ */
/* Pin-query and fork policy                                           */
/* ------------------------------------------------------------------ */

enum coh_pin_answer {
	COH_PIN_UNKNOWN = 0,
	COH_PIN_IN_PLACE = 1,        /* can be pinned where it is */
	COH_PIN_AFTER_MIGRATE = 2,   /* kernel first moves it to ordinary system memory */
	COH_PIN_NEVER = 3,           /* a pin fails */
};
COH_API const char *coh_pin_answer_name(int answer);

struct coh_pin_extent {
	uintptr_t start;
	size_t length;
	int kind;             /* enum coh_mem_kind */
	int node;
	int short_term;       /* enum coh_pin_answer for FOLL_PIN */
	int long_term;        /* enum coh_pin_answer for FOLL_LONGTERM */
	const char *reason;   /* static string */
};
/* Pin-query: what a short-term and a long-term pin would do, per extent.
 * Same cursor rules as coh_query(). */
COH_API int coh_pin_query(coh_context *ctx, const void *addr, size_t len,
			  struct coh_pin_extent *ext, size_t max, size_t ext_size);

enum coh_child_view {
	COH_CHILD_UNKNOWN = 0,
	COH_CHILD_COPY = 1,       /* a private copy with the same contents */
	COH_CHILD_SHARED = 2,     /* the same memory: writes visible both ways */
	COH_CHILD_ABSENT = 3,     /* no mapping there: an access raises SIGSEGV */
	COH_CHILD_ZERO = 4,       /* zero-filled private memory at the same address */
	COH_CHILD_UNREADABLE = 5, /* mapped, but the child cannot read it (driver semantics) */
};
COH_API const char *coh_child_view_name(int view);

/* Whether the parent's pages stay where they are across fork. */
enum coh_parent_keeps {
	COH_KEEPS_UNKNOWN = -1,
	COH_KEEPS_NO = 0,             /* the parent ends up with a system-memory copy */
	COH_KEEPS_YES = 1,            /* the parent keeps its pages */
	COH_KEEPS_FIRST_WRITER = 2,   /* kept if the child writes first; the parent's own first
					 write may leave it a system-memory copy */
};

struct coh_fork_extent {
	uintptr_t start;
	size_t length;
	int policy;           /* enum coh_fork_policy, -1 for memory libcoherent does not manage */
	int child_view;       /* enum coh_child_view */
	int parent_keeps;     /* enum coh_parent_keeps */
	const char *reason;   /* static string */
};
/* What a child forked now would see for [addr, addr+len), and whether the
 * parent keeps its residency, per extent; read from the kernel's own VMA flags
 * (/proc/self/smaps) and the residency query.  Same cursor rules as coh_query(). */
COH_API int coh_fork_query(coh_context *ctx, const void *addr, size_t len,
			   struct coh_fork_extent *ext, size_t max, size_t ext_size);

/* Fork policy of an allocation or adopted range (whole allocations only). */
COH_API int coh_fork_policy_set(coh_context *ctx, void *addr, size_t len, int policy);
COH_API int coh_fork_policy_get(coh_context *ctx, const void *addr);
COH_API const char *coh_fork_policy_name(int policy);

/* ------------------------------------------------------------------ */
/* Pools (since 1.1)                                                   */
/* ------------------------------------------------------------------ */

/* A small-object allocator over one or more targets: blocks of size classes
 * (16 B to 64 KiB) carved from 2 MiB chunks the pool takes from its targets
 * with coh_alloc(), served from per-thread caches; larger requests are
 * passed straight to coh_alloc().  Chunks and large allocations are ordinary
 * allocations of the context: coh_lookup() names the pool and the block,
 * coh_query(), coh_pin_query() and coh_fork_query() answer for any block,
 * and every chunk carries the pool's one fork policy.  See coh_pool_create(3). */

enum coh_pool_flag {
	/* No per-thread caches: every call takes the pool's lock (debugging,
	 * or pools used by many short-lived threads). */
	COH_POOL_NO_TCACHE = 1u << 0,
};

struct coh_pool_props {
	size_t size;                    /* sizeof(struct coh_pool_props) */
	/* Targets in fallback order: a chunk comes from the first that can
	 * give one (within its limit).  All of the context given to
	 * coh_pool_create(); at least one. */
	coh_target *const *targets;
	size_t ntargets;
	/* NULL, or ntargets byte limits: how much backing the pool takes from
	 * each target (0: no limit). */
	const uint64_t *target_limits;
	int fork_policy;                /* enum coh_fork_policy of every chunk, default COH_FORK_COPY */
	unsigned flags;                 /* enum coh_pool_flag */
	unsigned alloc_flags;           /* enum coh_alloc_flag of the backing allocations */
	/* Bytes of empty chunks the pool keeps for reuse before it returns
	 * them to their target: 0 takes the default (4 MiB); below the chunk
	 * size keeps none.  coh_pool_trim() returns them all. */
	size_t max_cached;
};

struct coh_pool_stats {
	size_t size;                    /* sizeof(struct coh_pool_stats) */
	uint64_t backing_bytes;         /* taken from the targets: chunks and large allocations */
	uint64_t chunks;                /* chunks held, including empty ones */
	uint64_t large;                 /* large allocations live */
	uint64_t live_blocks;           /* blocks allocated (small and large) */
	uint64_t live_bytes;            /* their block sizes */
	uint64_t cached_bytes;          /* free blocks held by per-thread caches */
	uint64_t fallbacks;             /* backing allocations served past the first target */
};

/* 0 and *out, or -errno (-EINVAL, -EXDEV for a target of another context,
 * -EOPNOTSUPP for a policy or flag a target cannot give). */
COH_API int coh_pool_create(coh_context *ctx, const struct coh_pool_props *props, coh_pool **out);
/* Frees every block and returns all backing to the targets: 0, or the first
 * error of returning a chunk (what failed stays an allocation of the context). */
COH_API int coh_pool_destroy(coh_pool *pool);
/* size > 0; align 0 or a power of two (0: 16 bytes, or the size class's
 * natural alignment).  0 and *out, or -errno. */
COH_API int coh_pool_alloc(coh_pool *pool, size_t size, size_t align, void **out);
/* ptr must be a block start of this pool: -ENOENT for a pointer of no block
 * of this pool (another pool, plain memory, a block freed already),
 * -EINVAL for an address inside a block; nothing is changed then. */
COH_API int coh_pool_free(coh_pool *pool, void *ptr);
/* Returns the calling thread's cached blocks and every empty chunk to the
 * targets, and asks every other thread's cache to give its blocks back at
 * that thread's next call on the pool; the number of chunks returned, or
 * -errno. */
COH_API int coh_pool_trim(coh_pool *pool);
COH_API int coh_pool_stats(coh_pool *pool, struct coh_pool_stats *out);
/* coh_migrate() of every chunk and large allocation of the pool to dst;
 * blocks keep their addresses.  0, or the first error (the rest is still
 * tried).  New chunks still come from the pool's targets. */
COH_API int coh_pool_migrate(coh_pool *pool, coh_target *dst, unsigned flags);

/* ------------------------------------------------------------------ */
/* Sharing between processes (since 1.1)                               */
/* ------------------------------------------------------------------ */

/* An allocation exported by one process and imported by another, unrelated
 * one, at an address of the importer's own.  A handle is a small versioned
 * record plus a file descriptor (a memfd, or the device-dax device), sent
 * over a Unix socket with SCM_RIGHTS.  See coh_export(3), coh_import(3). */

enum coh_handle_kind {
	COH_HANDLE_MEMFD = 1,     /* host memory: the whole memfd is the allocation */
	COH_HANDLE_DEVDAX = 2,    /* chunks of a device-dax device, at offset */
};

#define COH_HANDLE_MAGIC 0x48484f43u   /* "COHH" in memory on a little-endian machine */
#define COH_HANDLE_VERSION 1u

/* Fixed-width fields: these bytes (but fd) cross the socket as they are.
 * fd is this process's own descriptor of the memory, -1 when none; the
 * holder of a handle closes it with coh_handle_close(). */
struct coh_handle {
	uint32_t magic;           /* COH_HANDLE_MAGIC */
	uint16_t version;         /* COH_HANDLE_VERSION */
	uint16_t size;            /* sizeof(struct coh_handle) */
	uint32_t kind;            /* enum coh_handle_kind */
	int32_t fd;
	uint64_t length;          /* bytes shared, whole pages */
	uint64_t offset;          /* where they begin in fd's object (0 for a memfd) */
	uint64_t object_size;     /* the memfd's size, or the device's */
	uint64_t dev;             /* devdax: the device's st_rdev (major:minor); 0 */
	uint64_t chunk;           /* devdax: the chunk size of its map; 0 */
	uint64_t serial;          /* devdax: the share's serial in the device's map; 0 */
	int32_t node;             /* the exporter's target node, -1 when none */
	uint32_t reserved;        /* 0 */
};

/* The allocation starting at addr as a handle: 0 and *h with h->fd a new
 * descriptor (close-on-exec), or -errno: -ENOENT (no allocation starts
 * there), -EINVAL (memory of a pool, or host memory not allocated with
 * COH_ALLOC_SHAREABLE), -EOPNOTSUPP (a target without COH_CAP_SHARE),
 * -EBUSY (device-dax memory that now lives on the host). */
COH_API int coh_export(coh_context *ctx, const void *addr, struct coh_handle *h);
/* Sends *h and its fd on a connected AF_UNIX socket (SCM_RIGHTS): 0 or
 * -errno; h->fd stays open here. */
COH_API int coh_handle_send(int sock, const struct coh_handle *h);
/* Receives one handle: 0 and *h with h->fd the received descriptor
 * (close-on-exec), or -errno (-ECONNRESET at the end of the stream,
 * -EPROTO for a message that is not one handle with one descriptor); on
 * failure no descriptor is left open. */
COH_API int coh_handle_recv(int sock, struct coh_handle *h);
/* Closes h->fd (when >= 0) and sets it to -1: 0 or -errno. */
COH_API int coh_handle_close(struct coh_handle *h);
/* Maps what h names: 0 and *addr, an allocation of this context (flags
 * COH_ALLOC_SHAREABLE | COH_ALLOC_IMPORTED, fork policy SHARE) that
 * coh_lookup(), coh_query(), coh_pin_query() answer for and coh_free()
 * (or coh_release()) unmaps.  h->fd stays the caller's.  A handle that is
 * forged or stale is refused, nothing mapped: -EINVAL (magic, size,
 * reserved, length, offset or object size that do not match the fd),
 * -EPROTONOSUPPORT (version), -EBADF (fd), -ENODEV (no target of this
 * context serves it), -ESTALE (the device's share is gone). */
COH_API int coh_import(coh_context *ctx, const struct coh_handle *h, void **addr);

#ifdef __cplusplus
}
#endif
#endif /* COHERENT_H */
