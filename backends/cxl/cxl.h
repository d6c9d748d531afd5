/* SPDX-License-Identifier: MIT */
/*
 * cxl backend: device-dax devices discovered from sysfs
 * (/sys/bus/dax/devices/daxX.Y: size, align, target node, driver, parent).
 * Devices in devdax mode (driver device_dax) become DEVICE_DAX targets; those
 * bound to kmem are system RAM on a CPU-less node, which the host backend
 * serves, and are only logged here.
 *
 * Allocation: the whole device is mapped once (shared, aligned like the
 * device, MADV_DONTFORK by default) at the first allocation; an allocation is
 * a run of `align`-sized chunks of that window, found first-fit from a
 * next-fit hint, and its address is the window's address of its first chunk,
 * so allocating and freeing make no system call of their own on the device
 * for the default fork policy.
 *
 * Chunk ownership is machine-wide (shmap.c): every context of every process
 * that allocates on a device shares one small file per device (in /dev/shm,
 * else /run/lock, else /tmp; the cxl.mapdir tunable names another directory),
 * named after the device's major:minor and size.  It holds a header (magic,
 * version, device size, chunk, chunk count, device id) and one owner word per
 * chunk: 0 free, else the holder's pid and a tag (the low bits of the
 * process's start time and a serial of the context in its process).  An
 * allocation takes free words first fit under the file's flock and writes its
 * owner word there; free clears them.  A holder that is gone (kill(pid, 0)
 * answers ESRCH, a zombie, or a live pid with another start time: the pid was
 * reused) loses its chunks to the next allocation that finds no room, and to
 * a free-bytes count.  flock rather than a robust mutex in the file: the
 * kernel drops it when its holder dies, so nothing in the file needs
 * repairing, and a damaged file cannot hold a lock forever.  Each context
 * opens the file itself: flock excludes open file descriptions, so two
 * contexts of one process exclude each other like two processes do (a forked
 * child shares its parent's description, and so opens its own before it
 * allocates).  When the file cannot be opened or made, allocation answers
 * that error (-EACCES, -EROFS, ...) and changes nothing: two maps that do not
 * know each other hand out the same chunks.  cxl.mapdir=private keeps the
 * map in the context (one context per device on the machine, knowingly).
 *
 * Migration to host memory copies the chunks into fresh anonymous memory
 * (bound to the destination node) and moves that memory over the same
 * addresses with mremap: pointers stay valid.  The device chunks stay reserved
 * for the allocation, so migrating back is a copy into the device through a
 * second mapping followed by mapping the device again at the same addresses.
 * Until the final remap the data stays intact where it was.
 *
 * Fork: device-dax memory is shared by nature.  SHARE and KERNEL keep it
 * shared with a child; EXCLUDE leaves the child nothing (the window's
 * DONTFORK); COPY and ZERO are staged by the core (core/forkstage.c): a
 * private copy of the range, taken before fork, moved to the same address in
 * the child, or zeroes mapped there.  Chunks on host memory follow the
 * kernel's own controls.
 *
 * This header holds the backend's structs and what its files share; README.md
 * ("Files") says what each file holds.  The ops table is in cxl.c.
 */
#ifndef COH_BACKEND_CXL_H
#define COH_BACKEND_CXL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "backend.h"

extern const struct coh_backend_ops coh_cxl_backend;

/* A device's allocation unit when sysfs does not say (the kernel's default). */
#define CXL_DEFAULT_ALIGN (2u << 20)

/* The most chunks one device's map holds; larger devices get larger chunks.
 * The shared map file is then at most CXL_MAP_HDR + 8 MiB. */
#define CXL_MAX_CHUNKS (1u << 20)

/* The shared map file's header page; the owner words (uint64_t) follow it. */
#define CXL_MAP_HDR 4096u

/* Sharing between processes (coh_export, coh_import): the header page also
 * holds a table of CXL_SHARES shared runs, each with up to
 * CXL_SHARE_HOLDERS holders (the exporter and the importers, as owner
 * words).  A run in the table stays allocated while one of its holders is
 * alive and has not freed it: a holder's free removes it from the entry
 * (the run's owner words then name another holder), the reclaim of a dead
 * holder's chunks removes only that holder, and the chunks are freed with
 * the entry when the last holder frees them or is found gone.  An import
 * joins the entry named by the handle's first chunk, chunk count and
 * serial; an entry that is gone makes the handle stale (-ESTALE). */
#define CXL_SHARES 31u
#define CXL_SHARE_HOLDERS 12u

/* One device's chunk ownership as this context sees it (shmap.c).  Locks:
 * taken under the target's lock (backend locks come first), and nothing of
 * the library is taken under it but the log lock. */
struct cxl_map {
	int fd;               /* the map file, -1 when none or private */
	void *map;            /* the file mapped (header and words); NULL when private */
	uint64_t *words;      /* one per chunk: 0 free, else its holder's owner word */
	size_t nchunks;       /* 0: not open */
	pid_t pid;            /* the process that opened it */
	uint64_t me;          /* this context's owner word */
	char path[256];       /* the file, or "private" */
};

/* Chunk states (one byte per `align` bytes of the device). */
#define CH_FREE 0
#define CH_DEV 1      /* in use, the data on the device */
#define CH_HOST 2     /* in use, the data moved to host memory; the chunk stays reserved */

struct cxl_target {
	char dev[32];         /* "dax0.0" */
	uint64_t align;       /* the chunk: the device's alignment, or a power-of-two multiple of it */
	uint64_t size;        /* the device's size */
	int target_node;
	/* allocation, guarded by lock (then map's flock: the order is in map's comment) */
	pthread_mutex_t lock;
	int fd;               /* opened at the first allocation (or free-bytes count) */
	pid_t pid;            /* the process the window belongs to */
	uint8_t *base;        /* the device's window, NULL until the first allocation */
	size_t nchunks, hint, nused;
	struct cxl_map map;   /* who holds each chunk, machine-wide */
	uint8_t *state;       /* CH_* per chunk of this context's allocations */
	uint32_t *run;        /* at an allocation's first chunk: its length in chunks */
	uint8_t *forks;       /* at an allocation's first chunk: 1 when its window part is MADV_DOFORK */
};

/* A NUMA node whose memory is CXL memory onlined as system RAM (kmem). */
struct cxl_node {
	int node;
	char model[256];      /* cut to the target's model field when applied */
};

/* The backend's targets and the nodes it describes. */
struct cxl_backend {
	struct cxl_target **ts;   /* every target, for the fork hooks' locks */
	int n, cap;
	struct cxl_node *nodes;   /* for describe_node */
	int nnodes;
};

/* ---------------- CXL bus: memory devices and regions ---------------- */

struct cxl_mem {
	char name[16];        /* "mem0" */
	char bdf[16];         /* its PCI function */
	uint64_t ram, pmem, serial;
	int node;
};

struct cxl_region {
	char name[16];        /* "region0" */
	char mode[8];         /* "ram", "pmem" (6.3+; empty when the kernel does not say) */
	uint64_t size, hpa;
	int ways;
	int committed;        /* its decoders programmed (commit reads 1); 0 not yet, -1 unknown */
	char mems[64];        /* "mem0,mem1" */
};

struct cxl_bus {
	struct cxl_mem mem[32];
	int nmem;
	struct cxl_region reg[32];
	int nreg;
};

static inline const char *last_part(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static inline struct cxl_target *ct_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static inline bool is_cxl(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_cxl_backend.name;
}

/* bus.c: CXL memory devices and regions */
void cxl_bus_read(coh_context *ctx, struct cxl_bus *bus);
const struct cxl_region *cxl_region_named(const struct cxl_bus *bus, const char *name);
const struct cxl_mem *cxl_mem_named(const struct cxl_bus *bus, const char *name);
void cxl_region_words(coh_context *ctx, const struct cxl_bus *bus, const struct cxl_region *r, char *out,
		      size_t len);
void cxl_bus_notes(coh_context *ctx, const struct cxl_bus *bus);

/* discover.c */
int cxl_discover(coh_context *ctx, void **priv);
int cxl_describe_node(coh_context *ctx, void *priv, int node, struct coh_node_desc *d);
void cxl_fini(coh_context *ctx, void *priv);
void cxl_target_fini(coh_target *t, void *priv);

/* window.c: the device window and its chunk map */
int cxl_attach(coh_target *t, struct cxl_target *ct, bool create);
int cxl_window(coh_target *t, struct cxl_target *ct);
bool cxl_policy_forks(int policy);
long cxl_first_chunk(const struct cxl_target *ct, const void *ptr);
int cxl_remap_device(struct cxl_target *ct, size_t c, size_t n, bool forks);
/* hold.c: the CPU's accesses held while a range moves.  cxl_hold_writers
 * write-protects host memory before its copy to the device: a userfaultfd
 * to hand to cxl_release_writers once the device is mapped there, or
 * -errno (nothing held).  cxl_move_to_host puts tmp (new host memory) at
 * `to` and fills it from src, a second view of the device chunks, holding
 * accesses to pages not filled yet: 0, or -errno with tmp still at its place
 * and nothing changed (-ENOSYS, -EPERM, -EOPNOTSUPP, -EINVAL: no usable
 * userfaultfd). */
int cxl_hold_writers(void *p, size_t len, bool shared);
void cxl_release_writers(int fd, void *p, size_t len);
int cxl_move_to_host(void *tmp, void *to, const void *src, size_t len);

/* shmap.c: the machine-wide chunk ownership map */
const char *cxl_map_dir(coh_context *ctx);
bool cxl_map_private(const char *dir);
void cxl_map_init(struct cxl_map *m);
int cxl_map_open(coh_context *ctx, struct cxl_map *m, const char *dir, const struct stat *dev, uint64_t size,
		 uint64_t align, size_t nchunks, bool create);
int cxl_map_close(struct cxl_map *m);
int cxl_map_lock(struct cxl_map *m);
void cxl_map_unlock(struct cxl_map *m);
long cxl_map_find(const struct cxl_map *m, size_t n, size_t hint);
void cxl_map_claim(struct cxl_map *m, size_t c, size_t n);
size_t cxl_map_release(struct cxl_map *m, size_t c, size_t n);
size_t cxl_map_reclaim(coh_context *ctx, struct cxl_map *m);
size_t cxl_map_free_count(const struct cxl_map *m);
/* Sharing (lock held).  share: this holder's run [c, c+n) enters the share
 * table (or it is there already) with this holder listed: 0 and *serial,
 * -ENOSPC (table or entry full), -EOPNOTSUPP (private map).  join: lists
 * this holder in the entry of [c, c+n) with that serial: 0, -ESTALE,
 * -ENOSPC.  leave: removes this holder from the run's entry: 1 when others
 * still hold it (leave the words alone), 0 when it was the last (release
 * them), -ENOENT when this holder does not share the run.  shared: the run
 * is in the table (its holder may read it without the lock). */
int cxl_map_share(coh_context *ctx, struct cxl_map *m, size_t c, size_t n, uint64_t *serial);
int cxl_map_join(coh_context *ctx, struct cxl_map *m, size_t c, size_t n, uint64_t serial);
int cxl_map_leave(coh_context *ctx, struct cxl_map *m, size_t c, size_t n);
bool cxl_map_shared(const struct cxl_map *m, size_t c, size_t n);

/* mem.c */
int cxl_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv);
int cxl_free(coh_target *t, void *ptr, size_t size, void *priv);
int cxl_free_bytes(coh_target *t, uint64_t *free_bytes);

/* share.c: coh_export and coh_import of device chunks; cxl_share_leave
 * (ct->lock held) takes this holder out of the run's share, releasing the
 * words when it was the last: 1 when another holder keeps the run, else 0
 * or the map lock's error; cxl_import_free unmaps an import and leaves. */
int cxl_share_export(const struct coh_alloc_rec *rec, struct coh_handle *h);
int cxl_share_import(coh_target *t, const struct coh_handle *h, void **out, void **priv);
int cxl_share_leave(coh_target *t, struct cxl_target *ct, size_t c, size_t n);
int cxl_import_free(coh_target *t, void *ptr, void *priv);

/* migrate.c */
int cxl_host_fork_controls(void *p, size_t len, int policy, bool shared);
int cxl_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags);

/* query.c */
int cxl_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		      size_t max);

/* fork.c */
int cxl_fork_policy(const struct coh_alloc_rec *rec, int policy);
int cxl_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan);
int cxl_fork_copy(const struct coh_alloc_rec *rec, void *copy);
void cxl_atfork_prepare(coh_context *ctx, void *priv);
void cxl_atfork_parent(coh_context *ctx, void *priv);
void cxl_atfork_child(coh_context *ctx, void *priv);

#endif
