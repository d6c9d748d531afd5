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
};

/* What the core's fork staging does with one record (ops->fork_plan). */
enum coh_stage {
	COH_STAGE_NONE = 0,   /* nothing: the range forks by its VMA flags (or its driver) */
	COH_STAGE_COPY,       /* the child gets a private copy at the same address (ops->fork_copy) */
	COH_STAGE_ZERO,       /* the child gets zero-filled private memory there */
	COH_STAGE_UNMAP,      /* the child has nothing mapped there */
};

struct coh_fork_plan {
	int stage;            /* enum coh_stage */
	/* 1: the core sets MADV_DONTFORK on the range before fork (so the
	 * kernel's own copy does not touch it) and MADV_DOFORK after, in the
	 * parent; 0: the range is DONTFORK already, or its driver's */
	int dontfork;
	/* The fork query's answer: COH_CHILD_UNKNOWN (0) for the core's own,
	 * which for a staged range is the stage's (COPY: copy, ZERO: zero,
	 * UNMAP: absent, the parent keeping its pages) and else the VMA flags'.
	 * A staged range that could not be staged at fork (out of memory, the
	 * copy failed) forks as if not staged. */
	int child_view;
	int parent_keeps;     /* with child_view */
	const char *reason;   /* a static string; NULL for the core's own */
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
	/* Apply a fork policy to a range this backend owns: 0 or -errno (then
	 * nothing changed).  A range whose fork behaviour is its VMA's calls
	 * coh_fork_madvise(); NULL: the core does that for every range. */
	int (*fork_policy)(const struct coh_alloc_rec *rec, int policy);
	/* Fork hooks, called from the core's single pthread_atfork registry:
	 * prepare before the core stages (core/forkstage.c), child after it
	 * placed the staged copies.  child must be async-signal-safe. */
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
	/* Fork staging (core/forkstage.c).  fork_plan says how a fork made now
	 * treats rec where the backend rather than the mapping's VMA flags
	 * decides it: it fills *plan (zeroed by the core: nothing staged, the
	 * VMA flags answer the fork query) and returns 0, or -errno, which the
	 * core takes as the zeroed plan.  at_fork is 1 in the fork prepare
	 * handler (after atfork_prepare took the backend's locks; the map's lock
	 * is held: the hook must not call into the allocation map), 0 when
	 * coh_fork_query asks.  Optional: NULL stages nothing. */
	int (*fork_plan)(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan);
	/* COH_STAGE_COPY: copies rec's rec->length bytes, from wherever they
	 * live, to dst; 0 or -errno (the range then forks as if not staged).
	 * Runs in the fork prepare handler, under the same locks as fork_plan;
	 * a restore (memory sent back where it was) belongs here too, as the
	 * parent's memory must be as before when it returns. */
	int (*fork_copy)(const struct coh_alloc_rec *rec, void *dst);
	/* Optional: memory for this fork's COPY data of this backend, `need`
	 * bytes, that the child reads after fork (MAP_SHARED: the child copies
	 * out of it, the core never unmaps it), for a backend that keeps a
	 * staging buffer of its own (pinned for its copy engine).  NULL: the
	 * core maps a private copy per range, which the child moves into place.
	 * Called once per fork with the prepare handler's locks held. */
	void *(*fork_buffer)(coh_context *ctx, void *backend_priv, size_t need);
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
/* The kernel's fork controls (MADV_DOFORK, DONTFORK, WIPEONFORK,
 * KEEPONFORK) for policy on rec's range, for a fork_policy op whose range
 * forks the VMA's way: 0 or -errno (-EOPNOTSUPP where the mapping cannot
 * have that policy). */
int coh_fork_madvise(const struct coh_alloc_rec *rec, int policy);
/* A fork_copy hook's copy of memory the CPU reads in place, which other
 * threads may be writing while it runs. */
void coh_fork_snapshot(void *dst, const void *src, size_t len);
/* During discover: one line on what the backend found or why it has no
 * targets (no driver, no device); each call adds a line.  coh_backend_status()
 * reports them, and each is logged at COH_LOG_INFO. */
void coh_backend_note(coh_context *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* During discover: the memory of NUMA node `node` comes from a device this
 * backend knows (CXL memory onlined as system RAM): replaces the vendor and
 * model of the targets of that node, whichever backend made them.  Count. */
int coh_target_describe_node(coh_context *ctx, int node, const char *vendor, const char *model);
void *coh_target_priv(const coh_target *t);
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
