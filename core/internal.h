/* SPDX-License-Identifier: MIT */
/* Core-private declarations: context, targets, allocation map, lookup table,
 * fault injection.  The services backends use are in backend.h. */
#ifndef COH_CORE_INTERNAL_H
#define COH_CORE_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <dirent.h>

#include "backend.h"

#define COH_PAGE_SIZE_MIN 4096u

/* ---- lookup table (ptab.c): page -> allocation, read without a lock ---- */
struct pt_mid;
struct pt_chunk;
struct coh_ptab {
	_Atomic uint64_t seq;            /* odd while a writer stores */
	_Atomic(struct pt_mid *) *top;
	struct pt_chunk *chunks;         /* huge-page chunks the leaves come from */
};
struct coh_ptab_hit {
	uintptr_t start;
	size_t length;
	int tindex;                      /* index of the target in the context */
	unsigned flags;
	int fork_policy;
	int adopted;
	void *user_data;
};
struct coh_amap_val;
int coh_ptab_init(struct coh_ptab *t);
/* 0, or the first error unmapping its chunks (what failed stays mapped) */
int coh_ptab_destroy(struct coh_ptab *t);
/* Writers hold the allocation map's write lock. */
int coh_ptab_set(struct coh_ptab *t, uintptr_t start, const struct coh_amap_val *v, int tindex);
void coh_ptab_clear(struct coh_ptab *t, uintptr_t start, size_t length);
bool coh_ptab_get(const struct coh_ptab *t, uintptr_t addr, struct coh_ptab_hit *hit);

/* ---- allocation map (amap.c) ---- */
struct amap_leaf;
struct coh_amap {
	/* A mutex, not a rwlock: the fork prepare handler holds it across fork
	 * and both the parent and the child handlers unlock it.  glibc's rwlock
	 * cannot be unlocked in the child (it tells a writer's unlock by the
	 * thread id, which fork changes); its critical sections are short. */
	pthread_mutex_t lock;
	struct amap_leaf **leaves;
	uintptr_t *firsts;        /* first key of each leaf, for the top-level search */
	size_t nleaves, cap;
	size_t count;
	struct amap_leaf *spare;  /* one emptied leaf, kept for reuse */
	/* Records and leaves a fork child dropped (coh_amap_drop_excluded):
	 * freed by the next writer, not in the atfork handler. */
	struct coh_rec *dead_recs;
	struct amap_leaf *dead_leaves;
	struct coh_ptab ptab;     /* the same records, for lock-free lookups */
};
struct coh_rec {
	struct coh_alloc_rec pub;
	atomic_int refs;          /* map's reference + one per user in flight */
	struct coh_rec *next_dead;  /* on the map's dead list after a fork child dropped it */
	void *user_data;          /* the caller's (coh_alloc_props, coh_set_user_data) */
};
/* What a lookup reports, stored in the map beside the key. */
struct coh_amap_val {
	size_t length;
	coh_target *target;
	unsigned flags;
	int16_t fork_policy;
	uint8_t adopted;
	void *user_data;
};
int coh_amap_init(struct coh_amap *m);
static inline void coh_amap_lock(struct coh_amap *m)
{
	pthread_mutex_lock(&m->lock);
}
static inline void coh_amap_unlock(struct coh_amap *m)
{
	pthread_mutex_unlock(&m->lock);
}
/* 0, or the error of the lookup table's teardown */
int coh_amap_destroy(struct coh_amap *m, void (*drop)(struct coh_rec *, void *), void *arg);
/* Callers hold m->lock as stated. */
struct coh_rec *coh_amap_find(const struct coh_amap *m, uintptr_t addr);   /* read */
const struct coh_amap_val *coh_amap_find_val(const struct coh_amap *m, uintptr_t addr,
					     uintptr_t *start); /* read */
void coh_amap_set_policy(struct coh_amap *m, uintptr_t start, int policy);  /* write */
/* The user data of the record containing addr, in the record, the map and
 * the lookup table: 0 or -ENOENT.  (write) */
int coh_amap_set_user_data(struct coh_amap *m, uintptr_t addr, void *data);
/* Start of the first record beginning after addr; false when none. (read) */
bool coh_amap_next_start(const struct coh_amap *m, uintptr_t addr, uintptr_t *start);
int coh_amap_walk(const struct coh_amap *m, int (*fn)(struct coh_rec *r, void *arg), void *arg); /* read */
int coh_amap_insert(struct coh_amap *m, struct coh_rec *r);                 /* write; -EEXIST on overlap */
struct coh_rec *coh_amap_remove(struct coh_amap *m, uintptr_t start);       /* write */
/* Removes the record that starts at start when check(r) says 0; else check's
 * error, or -ENOENT.  One search instead of a find and a remove.  (write) */
int coh_amap_take(struct coh_amap *m, uintptr_t start, int (*check)(const struct coh_rec *r),
		  struct coh_rec **out);
bool coh_amap_overlaps(const struct coh_amap *m, uintptr_t start, size_t len); /* read */
/* In a fork child: drops the records of EXCLUDE ranges (the child has no
 * mapping there) from the map and the lookup table.  Async-signal-safe: no
 * malloc or free; what it unlinks is freed by the next insert or destroy.
 * Returns how many it dropped.  (write) */
size_t coh_amap_drop_excluded(struct coh_amap *m);

/* ---- asynchronous work (cqueue.c): worker pool, jobs, completion queues ---- */
struct coh_queue;
/* Lock: after the allocation map's and before the log's (see the order
 * above).  It guards the job lists, each job's state, and every queue's
 * completion list; no backend op, map call or log call runs under it. */
struct coh_workers {
	pthread_mutex_t lock;
	pthread_cond_t work;           /* workers wait here for jobs */
	struct coh_migration *head, *tail;   /* jobs waiting for a worker */
	struct coh_migration *inflight;      /* every job not yet complete (doubly linked) */
	struct coh_queue *queues;      /* the context's live queues */
	int nthreads, idle, max;       /* max: async.workers, fixed at the first start */
	bool stopping;
	pthread_t *threads;            /* max entries once started */
};

/* ---- context ---- */
struct coh_backend_slot {
	/* The backend's table copied at full size, fields past its own `size`
	 * zeroed: every optional op can be read without a size check. */
	const struct coh_backend_ops *ops;      /* = &table */
	const struct coh_backend_ops *orig;     /* the backend's own table */
	struct coh_backend_ops table;
	void *priv;
	char note[2048];          /* what discovery found, or why nothing: lines (coh_backend_note) */
};

struct coh_target {
	coh_context *ctx;
	struct coh_backend_slot *slot;
	int index;
	struct coh_target_desc d;
	int tier;                 /* memory_tierN or -1 */
	char pci_name[128];
};

/*
 * Lock order, outermost first; a thread holding one may take only those
 * below it:
 *   1. the fork registry lock (core/fork.c; the loader lock is taken alone)
 *   2. backend locks (each backend's own, taken by its fork prepare hook too;
 *      then any lock a backend shares with other processes, such as the cxl
 *      backend's flock of a device's chunk map, taken only under its own)
 *   3. the allocation map's lock (coh_amap_lock; callbacks of
 *      coh_rec_foreach and the fork staging hooks, ops->fork_plan at fork,
 *      fork_copy and fork_buffer, run under it)
 *   3b. the worker pool's lock (ctx->workers.lock, core/cqueue.c)
 *   4. the log lock (coh_log): nothing is taken under it, so a log callback
 *      must not call back into the library.
 * Records are reference counted; work on a record's memory happens after the
 * map lock is released.
 */
struct coh_context {
	atomic_int refs;
	pthread_mutex_t log_lock;
	atomic_int log_level;
	coh_log_fn log_fn;
	void *log_data;

	int rootfd;               /* fsroot */
	char fsroot[256];
	bool replay;              /* fsroot is not "/" */
	size_t page_size;
	int kernel_version;       /* major * 1000 + minor of the fsroot's kernel, 0 unknown */

	struct coh_backend_slot slots[16];
	int nslots;
	struct coh_target **targets;
	int ntargets, tcap;

	/* CMA areas, fixed at boot: read once, on the first pin-query that needs them */
	pthread_mutex_t cma_lock;
	bool cma_read, cma, cma_located;
	struct coh_frame_range *cma_ranges;
	size_t ncma;

	struct coh_amap amap;
	_Atomic(struct coh_rec *) spare_rec;  /* one freed record, reused by the next allocation */
	struct coh_context *fork_next;  /* fork registry list */
	/* Residency query: the PFN -> node table (pfnnode.c), and whether this
	 * process sees no PFNs in pagemap (no CAP_SYS_ADMIN) or has no table. */
	_Atomic(struct coh_pfn_map *) pfn_map;
	atomic_int pfn_unusable;
	/* query.scan: 0 not read yet, 1 PAGEMAP_SCAN where it helps, 2 never;
	 * thp_pages: pages of a PMD-mapped huge page, 0 not read yet. */
	atomic_int query_scan;
	atomic_size_t thp_pages;

	/* coh_context_options.tunables: a copy cut into key and value strings,
	 * in the order given (the last setting of a key wins). */
	char *tunables;
	const char **tunable_kv;   /* key, value, key, value ... */
	size_t ntunable;

	/* Asynchronous work: the worker pool, the jobs in flight and the
	 * completion queues (core/cqueue.c). */
	struct coh_workers workers;
};

struct coh_pfn_map;

/* registry (generated): every backend compiled in, in discovery order. */
extern const struct coh_backend_ops *const coh_builtin_backends[];
extern const unsigned coh_builtin_backend_count;

/* ---- log.c (coh_log: backend.h) ---- */
int coh_log_level_parse(const char *s);


/* ---- sys.c (the calls: backend.h) ---- */
/* Fault injection (tests only): every wrapper below, and every open, read and
 * readlink of the fsroot, is one injectable call.  When armed, the nth
 * injectable call of the kinds in the mask fails with the chosen errno before
 * reaching the kernel; a count-only mode tells how many calls an operation
 * makes.  The control functions are hidden symbols of the static archive, not
 * part of the shared library's interface.  Compiled out with
 * -DCOH_FAULT_INJECTION=OFF; when compiled in but unarmed it costs one relaxed
 * load and a predicted-false branch per call. */
enum coh_fault_call {
	COH_FC_MMAP, COH_FC_MUNMAP, COH_FC_MREMAP, COH_FC_MADVISE, COH_FC_MBIND, COH_FC_MOVE_PAGES,
	COH_FC_IOCTL, COH_FC_PREAD, COH_FC_OPEN, COH_FC_READ, COH_FC_READLINK,
	COH_FC_FD,      /* memfd_create, ftruncate, fcntl, fstat */
	COH_FC_SOCK,    /* sendmsg, recvmsg */
	COH_FC_NKINDS
};
#define COH_FC_ALL ((1u << COH_FC_NKINDS) - 1)
#ifdef COH_FAULT_INJECTION
extern atomic_int coh_fault_active;
int coh_fault_hit(enum coh_fault_call c);
#define COH_FAULT(c) \
	(__builtin_expect(atomic_load_explicit(&coh_fault_active, memory_order_relaxed) != 0, 0) ? coh_fault_hit(c) : 0)
#else
#define COH_FAULT(c) 0
#endif
/* Counts the injectable calls of the kinds in mask from now on; the nth of
 * them (1 = the next) fails with -err (err > 0), once.  nth 0: count only. */
void coh_fault_arm(long nth, int err, unsigned mask);
void coh_fault_disarm(void);
long coh_fault_calls(void);         /* counted since the last arm */
int coh_fault_fired(void);          /* the kind that failed, or -1 */
const char *coh_fault_call_name(int c);
/* sendmsg and recvmsg, retried on EINTR: the byte count or -errno (kind "sock"). */
struct msghdr;
ssize_t coh_sys_sendmsg(int sock, const struct msghdr *m, int flags);
ssize_t coh_sys_recvmsg(int sock, struct msghdr *m, int flags);
/* COH_FAULT="nth=N,errno=ENOMEM[,call=mmap]" arms at the first context (by hand, cohctl). */
void coh_fault_env(void);

/* ---- core helpers ---- */
int coh_check_range(const void *addr, size_t len);   /* NULL / zero / overflow */
/* Finds the record containing [addr, addr+len) and takes a reference. */
int coh_rec_get(coh_context *ctx, const void *addr, size_t len, struct coh_rec **out);
void coh_rec_put(struct coh_rec *r);
/* After discovery: reads each node's distances, HMAT figures and memory-side
 * caches once, logging every value it has to drop. */
void coh_targets_validate(coh_context *ctx);
/* After discovery: asks the backends' describe_node of each node that has
 * targets (backend.h says in which order) and writes what they say into
 * those targets. */
void coh_targets_describe_nodes(coh_context *ctx);

/* pool.c: coh_lookup's pool, block and block_size for addr inside the
 * allocation that starts at start (left as they are when it is no pool's). */
void coh_pool_describe(uintptr_t start, uintptr_t addr, struct coh_alloc_info *o);
/* The allocation that starts at start is a pool's chunk or large block:
 * coh_free and coh_fork_policy_set refuse it (-EINVAL), the pool frees it
 * with coh_free_backing (alloc.c). */
bool coh_pool_owns(uintptr_t start);
int coh_free_backing(coh_context *ctx, void *ptr);

/* share.c: an imported mapping of target t (from its share_import op)
 * becomes an allocation of t's context (flags SHAREABLE | IMPORTED, fork
 * policy SHARE): 0, or -errno with nothing added (the caller unmaps). */
int coh_rec_add_import(coh_target *t, void *p, size_t len, void *priv);

/* fork.c */
void coh_fork_register(coh_context *ctx);
void coh_fork_unregister(coh_context *ctx);
int coh_fork_apply(coh_context *ctx, struct coh_rec *r, int policy);

/* forkstage.c: fork staging, called by the fork handlers with the registry
 * lock held.  prepare: under ctx's map lock, after the backends' prepare
 * hooks; parent: DOFORK again and the copies unmapped with every lock still
 * held, then the failures logged once the map and log locks are free;
 * child (async-signal-safe): the staged copies, zeroes or holes put in place. */
void coh_forkstage_prepare(coh_context *ctx);
void coh_forkstage_parent(void);
void coh_forkstage_parent_report(void);
void coh_forkstage_child(void);
/* The plan of rec's backend (ops->fork_plan; zeroed when none). */
void coh_forkstage_plan(const struct coh_rec *r, int at_fork, struct coh_fork_plan *plan);
/* Frees the staging array once no context is registered. */
void coh_forkstage_release(void);

/* migrate.c: the migration engine the synchronous, asynchronous, queued
 * and batched calls share. */
int coh_migrate_check(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags);
/* coh_migrate_check, then the record (a reference taken) under the map's
 * lock, which the caller holds (coh_amap_lock). */
int coh_migrate_prepare_locked(coh_context *ctx, void *addr, size_t len, coh_target *dst, unsigned flags,
			       struct coh_rec **rec);
int coh_migrate_run(struct coh_rec *r, void *addr, size_t len, coh_target *dst, unsigned flags);
void coh_migrate_landed(struct coh_rec *r, coh_target *dst);

/* cqueue.c */
void coh_workers_init(coh_context *ctx);
/* At the context's end: stops and joins the workers (no job is in flight:
 * every job holds a reference on the context or on a queue that does). */
void coh_workers_fini(coh_context *ctx);
/* Fork hooks, called with the registry lock held, after the map's lock:
 * prepare takes the pool's lock, parent releases it, child (the child has
 * no worker) completes every job in flight with -ECHILD, gives each queue
 * an eventfd of its own and releases the lock. */
void coh_workers_atfork_prepare(coh_context *ctx);
void coh_workers_atfork_parent(coh_context *ctx);
void coh_workers_atfork_child(coh_context *ctx);

#endif
