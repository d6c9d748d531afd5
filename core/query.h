/* SPDX-License-Identifier: MIT */
/* Query engine internals shared by query.c and pinquery.c. */
#ifndef COH_CORE_QUERY_H
#define COH_CORE_QUERY_H

#include <stdio.h>

#include "internal.h"

/* One query call answers at most this many extents (it bounds the work
 * buffer); a caller asking for more continues from the last extent. */
#define COH_QUERY_MAX_EXTENTS 65536

enum coh_vma_backing {
	COH_VMA_ANON = 0,
	COH_VMA_SHMEM,     /* shared anonymous (and /dev/zero), SysV, memfd */
	COH_VMA_FILE,
	COH_VMA_DEVDAX,
	COH_VMA_OWNED,     /* a device file a backend owns (ops->owned_mappings) */
	COH_VMA_DEVICE,    /* other device mappings (VM_IO / PFNMAP) */
};

struct coh_vma {
	uintptr_t start, end;
	bool read, write, shared;
	bool dontcopy, wipeonfork;   /* VmFlags "dc", "wf" (read from smaps only) */
	int backing;       /* enum coh_vma_backing */
	unsigned dev_major, dev_minor;   /* of the mapped file, 0:0 when none */
	char path[256];
};

/* The file system of a file mapping, as far as long-term pins care: tmpfs and
 * hugetlbfs need no dirty tracking (Linux 6.5+ lets long-term write pins of
 * their shared mappings through), other file systems do. */
enum coh_vma_fs {
	COH_FS_UNKNOWN = 0,    /* neither map_files nor mountinfo told */
	COH_FS_NO_DIRTY_TRACKING,
	COH_FS_OTHER,
};
/* Asks statfs() of /proc/PID/map_files/START-END (root or CAP_SYS_ADMIN on
 * most kernels), else the mount of the mapping's device in
 * /proc/PID/mountinfo.  Never opens the file itself. */
int coh_vma_fs(const coh_context *ctx, pid_t pid, const struct coh_vma *m);

struct coh_q {
	coh_context *ctx;
	struct coh_extent *ext;
	size_t n, max;
	bool full;
	pid_t pid;
	int pmfd;
	bool swap_active;
	int vma_backing;
	int vma_node;      /* >= 0: every present page of the mapping is there */
	const struct coh_pfn_map *pfn;   /* node of each page from its PFN, or NULL */
	bool pfn_refreshed;              /* the table was re-read in this query */
	bool kpf_tried;                  /* /proc/kpageflags opened (kpf_fd), or failed (-1) */
	int kpf_fd;
};

/* The parsers of /proc/PID/maps (and smaps: VmFlags lines fill in the facts)
 * and numa_maps, on any stream (the fuzzers feed them memory).  maps: the
 * mappings meeting [start, end), in a fresh array; 0 or -errno.  numa_maps:
 * node_of[i] for v[i]: >= 0 its only node, -1 no pages, -2 several or unknown. */
int coh_maps_parse(FILE *f, uintptr_t start, uintptr_t end, struct coh_vma **out, size_t *count);
void coh_numa_maps_parse(FILE *f, const struct coh_vma *v, size_t n, int *node_of);
int coh_maps_read(const coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		  struct coh_vma **out, size_t *count);
/* A batch of queries of this process on the calling thread (coh_query_batch):
 * between begin and end, coh_query_engine takes the VMAs of [lo, hi) read
 * once at begin and one pagemap descriptor.  The maps are a snapshot: a
 * mapping made or removed by another thread during the batch is seen as it
 * was at begin (as a single query sees the maps as they were when read). */
struct coh_query_session {
	coh_context *ctx;
	int pmfd;
	bool have_maps;
	uintptr_t lo, hi;
	struct coh_vma *v;
	size_t nv;
};
void coh_query_session_begin(coh_context *ctx, struct coh_query_session *s, uintptr_t lo, uintptr_t hi);
void coh_query_session_end(struct coh_query_session *s);
/* The same from /proc/PID/smaps, with the VmFlags facts filled in. */
int coh_smaps_read(const coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		   struct coh_vma **out, size_t *count);
/* What the callers of coh_query_by_mapping() collect into: this header first. */
struct coh_piece_out {
	coh_context *ctx;
	size_t n, max;
};
typedef bool (*coh_piece_fn)(void *out, uintptr_t a, size_t len, const struct coh_extent *x,
			     const struct coh_vma *m);
/* The shared body of pin-query and fork-query: checks the arguments, queries
 * residency, reads the mappings (smaps with VmFlags when asked) and calls fn
 * for each piece cut at mapping boundaries.  Count collected, or -errno. */
int coh_query_by_mapping(coh_context *ctx, const void *addr, size_t len, const void *user_out, size_t max,
			 bool vmflags, coh_piece_fn fn, struct coh_piece_out *out);

/* Cuts extents at mapping boundaries and calls fn for each piece with the
 * mapping holding it (NULL in a hole), in address order, until fn says stop. */
void coh_split_by_vma(const struct coh_extent *ext, int n, const struct coh_vma *v, size_t nv,
		      bool (*fn)(void *arg, uintptr_t a, size_t len, const struct coh_extent *x,
				 const struct coh_vma *m),
		      void *arg);
int coh_vma_classify(const struct coh_vma *m);
/* The residency kind a compiled-in backend declares for a mapping of path
 * (ops->owned_mappings), or -1 when no backend owns it. */
int coh_owned_mapping_kind(const char *path);
/* Checks a query's arguments and widens [addr, addr+len) to whole pages. */
int coh_query_args(const coh_context *ctx, const void *addr, size_t len, const void *out, size_t max,
		   uintptr_t *start, uintptr_t *end);
/* Residency of the caller's [start, end) into a fresh buffer of at most max
 * (capped) extents, refined by the owning backends: count, or -errno. */
int coh_query_own(coh_context *ctx, uintptr_t start, uintptr_t end, size_t max, struct coh_extent **out);
/* Backends refine (and may split) the extents of their records: new count. */
int coh_query_refine(coh_context *ctx, struct coh_extent *ext, int n, size_t max);
/* ---- pfnnode.c: the node of a page frame, from the memory blocks ---- */
struct coh_pfn_map {
	uint64_t block_pages;        /* frames per memory block */
	uint64_t loaded_ns;          /* CLOCK_MONOTONIC of the read */
	struct coh_pfn_map *older;   /* the table this one replaced */
	size_t nblocks;
	int16_t node[];              /* node of block i, -1 none */
};
/* The node holding frame pfn, or -1 when no known block holds it. */
static inline int coh_pfn_node(const struct coh_pfn_map *m, uint64_t pfn)
{
	uint64_t b = pfn / m->block_pages;
	return b < m->nblocks ? m->node[b] : -1;
}
/* Reads the table from the fsroot: 0, -ENOENT (no memory blocks), -EINVAL or -ENOMEM. */
int coh_pfn_map_build(const coh_context *ctx, struct coh_pfn_map **out);
/* The context's table, built on first use; refresh asks for a re-read when the
 * last one is older than a second.  NULL when there is none. */
const struct coh_pfn_map *coh_pfn_map_get(coh_context *ctx, bool refresh);
void coh_pfn_map_free(coh_context *ctx);

int coh_query_engine(coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		     struct coh_extent *ext, size_t max);

/* ---- frames a long-term pin must migrate first (pinquery.c) ---- */

enum coh_frame_type {
	COH_FRAME_PLAIN = 0,   /* pinnable where it is */
	COH_FRAME_CMA,         /* in a CMA area */
	COH_FRAME_MOVABLE,     /* in ZONE_MOVABLE */
	COH_FRAME_UNKNOWN,     /* such memory exists but this frame cannot be placed */
};
struct coh_frame_range {
	uint64_t start, end;   /* page frame numbers, end exclusive */
	int type;              /* COH_FRAME_CMA or COH_FRAME_MOVABLE */
	bool by_block;         /* the span overlaps another zone's: the memory block decides */
};
struct coh_frame_map {
	struct coh_frame_range *r;
	size_t n;
	bool cma, movable;       /* the machine has such memory (meminfo, pagetypeinfo, zoneinfo) */
	bool cma_located;        /* and the CMA areas were found (debugfs cma/NAME/base_pfn, count) */
	uint64_t block_pages;    /* memory block size in pages, 0 unknown */
	uint64_t last_block;     /* one-entry cache of valid_zones lookups */
	int last_block_type;     /* -1: empty */
};
/* The Movable zones (/proc/buddyinfo, then /proc/zoneinfo when it names one,
 * on each call: memory hotplug changes them) and the CMA areas (/proc/meminfo,
 * /proc/pagetypeinfo, debugfs cma: once per context, they are fixed at boot)
 * of the fsroot.  0 or -ENOMEM; what cannot be read is left out. */
int coh_frame_map_load(coh_context *ctx, struct coh_frame_map *m);
int coh_frame_type(const coh_context *ctx, struct coh_frame_map *m, uint64_t pfn);
void coh_frame_map_free(struct coh_frame_map *m);

/* Facts of a run of pages the pin rules need beyond the residency kind. */
#define COH_PAGE_COW_SHARED 1u   /* anonymous, mapped more than once: any pin copies it */
#define COH_PAGE_FRAME_SHIFT 4   /* enum coh_frame_type << this */
struct coh_pin_verdict {
	int short_term, long_term;
	const char *reason;
};
/* The pin rules for one run of pages: kind and node of the residency query,
 * the mapping (NULL in a hole), the COH_PAGE_* facts and, for shared file
 * mappings, the enum coh_vma_fs of the mapping. */
struct coh_pin_verdict coh_pin_judge(const coh_context *ctx, const struct coh_vma *vma, int kind, int node,
				     const coh_target *t, unsigned facts, int fs);

/* An extent call's output: fill writes at most max full-size elements
 * (full bytes each) into buf and returns their number or -errno; this runs it
 * for the caller's array at stride ext_size (core/growth.h).  fill checks
 * the arguments (it is called with the caller's array when that is NULL). */
struct coh_range_call {       /* the arguments of a range call, for its fill */
	coh_context *ctx;
	const void *addr;
	size_t len;
};
int coh_ext_fill(void *user, size_t max, size_t ext_size, size_t full,
		 int (*fill)(void *buf, size_t max, void *arg), void *arg);

#endif
