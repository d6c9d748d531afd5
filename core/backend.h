/* SPDX-License-Identifier: MIT */
/*
 * The contract between the core and a backend, and the only core header a
 * backend includes (tests/check-boundary.sh fails otherwise).  A backend is
 * one static `struct coh_backend_ops` named coh_<name>_backend; the core
 * validates it at registration (coh_backend_validate) and answers -EOPNOTSUPP
 * for every optional op a backend leaves NULL.  A backend never calls another
 * backend, never writes another backend's targets, and reads the context and
 * the targets only through the services declared here (coh_context and
 * coh_target are opaque to it).
 *
 * Locks (the whole order is in core/internal.h): a backend's own locks come
 * after the fork registry lock and before the allocation map's, so a backend
 * may call coh_rec_foreach holding its lock, and a coh_rec_foreach callback
 * must not take it; coh_log may be called under any of them.  A lock a
 * backend shares with other processes (the cxl backend's flock of a device's
 * chunk map) is taken only under that backend's own lock and released before
 * it: registry -> backend locks -> cross-process lock -> allocation map -> log.
 */
#ifndef COH_CORE_BACKEND_H
#define COH_CORE_BACKEND_H

#include <dirent.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#include "coherent.h"

/* 2: query_refine merged into query_resolve; alloc, adopt and free carry the
 * record's priv; owned_mappings and describe_node added; fork staging moved
 * into the core (fork_plan, fork_copy, fork_buffer replace fork_view and the
 * backends' own staging), fork_policy returns 0 or -errno. */
/* 3: device_access and access_note. */
#define COH_BACKEND_ABI 6   /* 4: migrate_notify and migrate_batch (completion queue, batches); 5: share_export, share_import; 6: migrate_batch_start */

/* NUMA node ids are below this everywhere in the library (node bitmaps,
 * masks for mbind, ids read from sysfs). */
#define COH_NODE_LIMIT 1024

struct coh_alloc_rec;

/* One range of ops->migrate_batch (the arguments of ops->migrate). */
struct coh_batch_item {
	coh_target *dst;
	const struct coh_alloc_rec *rec;
	void *addr;
	size_t len;
	unsigned flags;
};

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
	/* How ops->device_access reaches memory, or why this target has no
	 * device access (a static string; NULL: the core says none). */
	const char *access_note;
	/* 1: a write that breaks the copy-on-write sharing of this target's
	 * device-coherent pages after fork gets its copy on the same device (a
	 * kernel whose dev_pagemap has cow_page, kernel/patches): the fork
	 * query then says the parent keeps them whoever writes first.  Read
	 * when the context is created. */
	int cow_keeps;
};

/* A mapping this backend's driver owns: /proc/PID/maps shows a path that
 * starts with prefix (a device file such as a driver's character device).
 * The residency query reports the whole mapping as kind (enum coh_mem_kind)
 * and pages it cannot read; fork-query calls it driver-managed. */
struct coh_owned_mapping {
	const char *prefix;
	int kind;
};

/* A setting a backend reads with coh_ctx_tunable(): key "<backend>.<name>"
 * in coh_context_options.tunables, env the COH_* environment variable read
 * when the options leave the key out. */
struct coh_tunable {
	const char *key;
	const char *env;
};

/* What a backend knows of the memory of a NUMA node it did not make targets
 * for (CXL memory onlined as system RAM, say).  An empty field says nothing. */
struct coh_node_desc {
	char vendor[64];
	char model[128];
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
	/* alloc and adopt may set *priv (NULL before the call): the core keeps it
	 * in the record (coh_alloc_rec.priv) and hands it back to free, or to
	 * release in rec->priv; the backend frees what it points to there.  A
	 * failed alloc or adopt leaves nothing to free. */
	int (*alloc)(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv);
	int (*free)(coh_target *t, void *ptr, size_t size, void *priv);
	int (*adopt)(coh_target *t, void *addr, size_t len, unsigned flags, void **priv);
	int (*release)(coh_target *t, const struct coh_alloc_rec *rec);
	int (*migrate)(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
		       unsigned flags);
	/* Asynchronous migration without migrate_start runs `migrate` on one of
	 * the core's pooled worker threads (core/cqueue.c). */
	int (*advise)(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice,
		      coh_target *t);
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
	 * with what the backend knows better (the target holding device pages,
	 * where the driver put pages the CPU does not map), split as it needs:
	 * writes at most max extents covering a prefix of *in, in address order,
	 * and returns their number (>= 1), or -errno to keep *in as it is.  A
	 * backend that only names targets writes out[0] = *in with its target. */
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

	/* COH_CAP_DEVICE_ACCESS: the device of dev reads (COH_DEVICE_SUM: sums
	 * gets len / COH_SUM_BLOCK sums) and/or writes (COH_DEVICE_FILL) the
	 * page-aligned range, which lies in rec (of any target); 0 or -errno
	 * (-EFAULT: the device cannot reach rec's memory). */
	int (*device_access)(coh_target *dev, const struct coh_alloc_rec *rec, void *addr, size_t len,
			     unsigned ops, uint64_t pattern, uint64_t *sums);
	/* The mappings this backend's driver owns: an array ended by { NULL },
	 * or NULL.  The core never names a driver's device file itself. */
	const struct coh_owned_mapping *owned_mappings;
	/* After every backend discovered: what this backend knows of the memory
	 * of NUMA node `node` (which some backend made a target of).  Fill in
	 * fields of *d and return 0, or return non-zero to say nothing.  The
	 * core asks the backends in registry order (backends/CMakeLists.txt),
	 * and for each field the first backend that fills it wins; the result
	 * replaces that field of every target of the node. */
	int (*describe_node)(coh_context *ctx, void *backend_priv, int node, struct coh_node_desc *d);
	/* The tunables this backend reads: an array ended by { NULL }, or NULL.
	 * Every key starts with the backend's name and a dot.  The keys of every
	 * compiled-in backend are accepted by coh_context_create, whether the
	 * backend filter keeps the backend or not. */
	const struct coh_tunable *tunables;

	/* ---- ABI 4: the completion queue and batches (core/cqueue.c, core/batch.c) ---- */
	/* Optional, with migrate_start: have fn(arg) called once the migration
	 * of token has finished (successfully or not), from any thread (a
	 * driver's callback thread), holding none of the backend's locks; fn
	 * takes only the core's worker-pool lock and never calls back into the
	 * backend, and the core then reads the result with migrate_poll and
	 * releases the token with migrate_done.  fn may run before
	 * migrate_notify returns, but only once migrate_notify no longer touches
	 * the token.  0: fn will be called exactly once; -errno: it will not be
	 * (the core then waits with migrate_poll on a pooled worker).  NULL:
	 * the same as -EOPNOTSUPP. */
	int (*migrate_notify)(void *token, void (*fn)(void *arg), void *arg);
	/* Optional: migrate n ranges, all of records this backend owns, at
	 * once (one driver batch), synchronously: fills results[i] with 0 or
	 * -errno for v[i] and returns 0, or returns -errno having moved
	 * nothing, and the core then calls migrate for each.  NULL: the core
	 * calls migrate for each. */
	int (*migrate_batch)(const struct coh_batch_item *v, size_t n, int *results);
	/* ---- ABI 5: sharing between processes (core/share.c) ---- */
	/* Sharing between processes (coh_export, coh_import; since 1.1), for
	 * targets with COH_CAP_SHARE.  share_export: the whole of rec as a
	 * handle: fills kind, length, offset, object_size and the kind's own
	 * fields of *h (the core fills magic, version, size and node) and sets
	 * h->fd to a new close-on-exec descriptor the caller closes; 0 or
	 * -errno.  share_import: maps what *h names (checked by the core for
	 * magic, version, size and a valid fd) at an address of the backend's
	 * choosing: 0, *out and *priv (as alloc: free unmaps it and frees
	 * priv); -ENODEV when *h is not for target t (the core asks the next
	 * target), else -errno with nothing mapped (a forged or stale handle). */
	int (*share_export)(const struct coh_alloc_rec *rec, struct coh_handle *h);
	int (*share_import)(coh_target *t, const struct coh_handle *h, void **out, void **priv);
	/* ---- ABI 6: queued requests as one driver batch (core/cqueue.c) ---- */
	/* Optional, with migrate_start: start the n (>= 2) migrations of v, all
	 * of records this backend owns, as one asynchronous driver batch, and
	 * fill tokens[i] for each: a token as migrate_start's (migrate_poll,
	 * migrate_notify and migrate_done serve it, one by one).  Returns 0, or
	 * -errno having left no token (what it issued finished; the data is
	 * valid where it is), and the core then starts each with migrate_start.
	 * NULL: the core calls migrate_start for each. */
	int (*migrate_batch_start)(const struct coh_batch_item *v, size_t n, void **tokens);
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
	coh_target *_Atomic home;   /* atomic: the query hooks read it while a migration lands */
	int placed;               /* libcoherent changed the range's memory policy */
	/* The owning backend's data, set by its alloc or adopt (NULL when it set
	 * none).  Atomic: an adopted record is in the map, and so visible to the
	 * query hooks, before adopt returns (they see NULL until then). */
	void *_Atomic priv;
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
void *coh_target_priv(const coh_target *t);
/* A tunable's value: coh_context_options.tunables first, then its environment
 * variable; NULL when neither sets it or the key is declared by no backend
 * (ops->tunables) and not by the core ("query.pfn"). */
const char *coh_ctx_tunable(const coh_context *ctx, const char *key);
void *coh_target_backend_priv(const coh_target *t);
int coh_backend_validate(const struct coh_backend_ops *ops);
/* dlopen and dlsym under the library's loader lock, which the fork prepare
 * handler takes: no child is forked while one of our threads is inside the
 * dynamic loader (it would inherit the loader's state half-changed).  Use
 * them for every library a backend loads. */
void *coh_dlopen(const char *path, int flags);
void *coh_dlsym(void *handle, const char *name);

/* ---- the context, read through accessors ---- */
/* The base page size of the process (of the recorded machine in replay). */
size_t coh_ctx_page_size(const coh_context *ctx);
/* The context reads a recorded machine (fsroot not "/"): no driver is opened,
 * no memory is touched, and a target describes what the live machine would
 * offer. */
bool coh_ctx_replay(const coh_context *ctx);
/* The first target on NUMA node `node`, or NULL. */
coh_target *coh_target_of_node(const coh_context *ctx, int node);

/* ---- log.c ---- */
void coh_log(coh_context *ctx, int level, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
#define coh_err(ctx, ...) coh_log((ctx), COH_LOG_ERR, __VA_ARGS__)
#define coh_warn(ctx, ...) coh_log((ctx), COH_LOG_WARN, __VA_ARGS__)
#define coh_info(ctx, ...) coh_log((ctx), COH_LOG_INFO, __VA_ARGS__)
#define coh_dbg(ctx, ...) coh_log((ctx), COH_LOG_DEBUG, __VA_ARGS__)

/* ---- fsroot.c: every /sys, /proc, /dev access, relative to the fsroot ---- */
/* Files: O_NONBLOCK, then fstat; read-only opens accept regular files only
 * (-EINVAL, logged), read-write ones refuse FIFOs and sockets. */
int coh_fs_open(const coh_context *ctx, const char *path, int flags);
/* Reads a small file into buf (NUL-terminated, trailing newline stripped): length or -errno.
 * A file that does not fit is -EFBIG (logged), never a value cut short. */
int coh_fs_read(const coh_context *ctx, const char *path, char *buf, size_t len);
/* The same for the first len - 1 bytes of a longer file (/proc/cpuinfo). */
int coh_fs_read_head(const coh_context *ctx, const char *path, char *buf, size_t len);
int coh_fs_readf(const coh_context *ctx, char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
/* One unsigned number (base 0: "0x" hex allowed): -EINVAL/-ERANGE, logged, for
 * anything else, a sign included. */
int coh_fs_read_u64(const coh_context *ctx, const char *path, uint64_t *v);
/* Digits only around blanks, no sign: 0, -EINVAL or -ERANGE. */
int coh_parse_u64(const char *s, int base, uint64_t *v);
bool coh_fs_exists(const coh_context *ctx, const char *path);
/* The text of a symbolic link (not followed): length or -errno. */
int coh_fs_readlink(const coh_context *ctx, const char *path, char *buf, size_t len);
DIR *coh_fs_opendir(const coh_context *ctx, const char *path);
/* The file for reading through stdio, or NULL with errno set. */
FILE *coh_fs_fopen(const coh_context *ctx, const char *path);
/* Parses a kernel list like "0-3,8,10-11" into a bitmap of max bits; count or -EINVAL. */
int coh_parse_list(const char *s, uint8_t *bits, int max);
/* The name libpci gives the device at a PCI address ("0000:0d:00.0"), else
 * "[vendor:device]" from its sysfs ids: 0, or -ENOENT with buf empty. */
int coh_pci_name(const coh_context *ctx, const char *address, char *buf, size_t len);

/* ---- sys.c: the thin syscall layer, each returns -errno ---- */
/* Each call can be made to fail by the tests' fault injection (core/internal.h). */
/* openat; in_root: symlinks and ".." stay inside dirfd (openat2 RESOLVE_IN_ROOT,
 * plain openat where the kernel lacks openat2).  No O_CREAT. */
int coh_sys_openat(int dirfd, const char *path, int flags, bool in_root);
ssize_t coh_sys_read(int fd, void *buf, size_t len);   /* no retry: EINTR comes back */
ssize_t coh_sys_readlinkat(int dirfd, const char *path, char *buf, size_t len);
int coh_sys_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off, void **out);
int coh_sys_munmap(void *addr, size_t len);
/* memfd_create (the descriptor), ftruncate, fcntl (its result) and fstat:
 * one fault-injection kind, "fd". */
struct stat;
int coh_sys_memfd_create(const char *name, unsigned flags);
int coh_sys_ftruncate(int fd, off_t len);
int coh_sys_fcntl(int fd, int cmd, int arg);
int coh_sys_fstat(int fd, struct stat *st);
/* Gives back a whole mapping the caller made itself, as a temporary view
 * or a stack: no VMA is split, so it cannot fail for want of map count,
 * and it is not a fault-injection point (cleanup that has no caller to
 * tell). */
void coh_sys_munmap_own(void *addr, size_t len);
/* Anonymous mapping (flags without MAP_ANONYMOUS) whose start is a multiple of
 * align (a power of two); the over-reservation is trimmed. */
int coh_sys_mmap_aligned(size_t len, size_t align, int prot, int flags, void **out);
int coh_sys_mremap(void *old, size_t old_len, size_t new_len, int flags, void *new_addr, void **out);
int coh_sys_madvise(void *addr, size_t len, int advice);
int coh_sys_mbind(void *addr, size_t len, int mode, const unsigned long *nodemask,
		  unsigned long maxnode, unsigned flags);
/* mbind(mode: MPOL_BIND, MPOL_PREFERRED) of [addr, addr+len) to one node
 * (0 .. COH_NODE_LIMIT-1). */
int coh_sys_mbind_node(void *addr, size_t len, int node, int mode, unsigned flags);
long coh_sys_move_pages(pid_t pid, unsigned long count, void **pages, const int *nodes,
			int *status, int flags);
int coh_sys_ioctl(int fd, unsigned long req, void *arg);
ssize_t coh_sys_pread(int fd, void *buf, size_t len, off_t off);

/* ---- the caller's address space (query.c) ---- */
/* 0 when [addr, addr+len) is all private anonymous memory; -EFAULT for a
 * hole, -EOPNOTSUPP for file, shared or device mappings. */
int coh_range_anon_private(const coh_context *ctx, const void *addr, size_t len);
/* Presence of each page of the caller's [start, start + npages pages) from
 * /proc/self/pagemap: present[i] = 1 when a page is mapped there.  0 or -errno. */
int coh_pagemap_present(const coh_context *ctx, uintptr_t start, size_t npages, uint8_t *present);
/* Whether every page of the caller's [addr, addr+len) is device memory
 * (device-private or device-coherent) in the kernel's page view: 0 yes,
 * -EBUSY when some page is elsewhere (system memory, not populated), -errno
 * when the view cannot be read.  No backend hook runs, so a backend may call
 * it from its own ops (a migration checking where the driver put the pages). */
int coh_range_on_device(coh_context *ctx, const void *addr, size_t len);
/* The kernel's page view of the caller's [addr, addr+len), widened to whole
 * pages (the query engine; no backend hook runs): at most max extents in
 * address order from the range's first page, their number (>= 1), or
 * -errno.  A caller goes on from the end of the last extent. */
int coh_kernel_view(coh_context *ctx, const void *addr, size_t len, struct coh_extent *x, size_t max);
/* For a query_resolve op that splits an extent: appends [start, start+length)
 * with kind, node and target t to out (*n extents there so far, room for
 * max), or lengthens the last one when the new run continues it with the
 * same kind, node and target.  false, nothing written, when out is full. */
bool coh_ext_append(struct coh_extent *out, size_t *n, size_t max, uintptr_t start, size_t length, int kind,
		    int node, coh_target *t);


#endif
