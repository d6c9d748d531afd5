/* SPDX-License-Identifier: MIT */
/*
 * Residency query engine.  Never faults, touches or moves a page:
 *  1. /proc/PID/maps says what backs each mapping (gaps are "unmapped");
 *  2. page states come from /proc/PID/pagemap: the PAGEMAP_SCAN ioctl
 *     (Linux 6.7+, returns runs), else a bulk pread of the u64 entries;
 *  3. nodes of present pages: one memory node, that node; as root, from each
 *     page's PFN and the memory blocks of the nodes (pfnnode.c), read with
 *     the pagemap entries; when /proc/PID/numa_maps puts a whole mapping on
 *     one node and no ZONE_DEVICE target exists, that node; otherwise
 *     move_pages(nodes=NULL) page by page in batches (-ENOENT on a present
 *     page marks ZONE_DEVICE memory, whose PFNs lie in no memory block);
 *  4. the owning backend may refine the extents of its allocations.
 * Same-kind, same-node neighbours are merged, so a mapping that sits in one
 * place is one extent.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "growth.h"
#include "internal.h"
#include "query.h"

#ifndef PAGEMAP_SCAN
struct page_region {
	uint64_t start, end, categories;
};
struct pm_scan_arg {
	uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
	uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#define PAGE_IS_FILE (1ULL << 2)
#define PAGE_IS_PRESENT (1ULL << 3)
#define PAGE_IS_SWAPPED (1ULL << 4)
#define PAGE_IS_PFNZERO (1ULL << 5)
#define PAGE_IS_HUGE (1ULL << 6)
#endif
#include <sys/ioctl.h>
/* valgrind does not know PAGEMAP_SCAN: it cannot see the kernel fill the
 * result vector.  Built with valgrind's header, the query tells memcheck. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define COH_SCAN_DEFINED(p, len) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (len)))
#endif
#endif
#ifndef COH_SCAN_DEFINED
#define COH_SCAN_DEFINED(p, len) ((void)0)
#endif

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN_MASK ((1ULL << 55) - 1)

/* Internal kind of the pread path: a present anonymous page that is not
 * exclusively mapped is either shared after fork or the shared zero page;
 * move_pages tells them apart (-EFAULT for the zero page). */
#define KIND_MAYBE_ZERO 100

/* ---------- output with merging ---------- */

static bool q_emit(struct coh_q *q, uintptr_t start, size_t len, int kind, int node)
{
	if (len == 0)
		return true;
	if (q->n > 0) {
		struct coh_extent *p = &q->ext[q->n - 1];
		if (p->kind == kind && p->node == node && p->start + p->length == start) {
			p->length += len;
			return true;
		}
	}
	if (q->n == q->max) {
		q->full = true;
		return false;
	}
	struct coh_extent *e = &q->ext[q->n++];
	e->start = start;
	e->length = len;
	e->kind = kind;
	e->node = node;
	e->target = NULL;
	return true;
}

/* ---------- /proc/PID/maps ---------- */

/* /proc/PID/NAME (pid 0: self) for reading, or NULL with errno set. */
static FILE *proc_fopen(const coh_context *ctx, pid_t pid, const char *name)
{
	char path[64];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, name);
	else
		snprintf(path, sizeof(path), "/proc/self/%s", name);
	return coh_fs_fopen(ctx, path);
}

int coh_maps_parse(FILE *f, uintptr_t start, uintptr_t end, struct coh_vma **out, size_t *count)
{
	struct coh_vma *v = NULL;
	size_t n = 0, cap = 0;
	char line[4352];
	int err = 0;
	bool in_range = false;   /* smaps: the last header line was one of ours */
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		unsigned dmaj = 0, dmin = 0;
		char perms[8];
		int off = 0;
		if (sscanf(line, "%lx-%lx %7s %*s %x:%x %*s%n", &a, &b, perms, &dmaj, &dmin, &off) < 5) {
			if (in_range && !strncmp(line, "VmFlags:", 8)) {
				v[n - 1].dontcopy = strstr(line, " dc") != NULL;
				v[n - 1].wipeonfork = strstr(line, " wf") != NULL;
				if (strstr(line, " sh"))
					v[n - 1].shared = true;
			}
			continue;
		}
		in_range = false;
		if (b <= start)
			continue;
		if (a >= end)
			break;
		if (n == cap) {
			size_t nc = cap ? cap * 2 : 16;
			struct coh_vma *nv = realloc(v, nc * sizeof(*nv));
			if (!nv) {
				err = -ENOMEM;
				break;
			}
			v = nv;
			cap = nc;
		}
		struct coh_vma *m = &v[n++];
		memset(m, 0, sizeof(*m));
		m->start = a;
		m->end = b;
		m->read = perms[0] == 'r';
		m->write = perms[1] == 'w';
		m->shared = perms[3] == 's';
		m->dev_major = dmaj;
		m->dev_minor = dmin;
		char *p = line + off;
		while (*p == ' ' || *p == '\t')
			p++;
		size_t l = strcspn(p, "\n");
		if (l >= sizeof(m->path))
			l = sizeof(m->path) - 1;
		memcpy(m->path, p, l);
		m->path[l] = '\0';
		m->backing = coh_vma_classify(m);
		in_range = true;
	}
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	*count = n;
	return 0;
}

static int maps_read(const coh_context *ctx, pid_t pid, const char *file, uintptr_t start, uintptr_t end,
		     struct coh_vma **out, size_t *count)
{
	FILE *f = proc_fopen(ctx, pid, file);
	if (!f)
		return errno ? -errno : -ENOMEM;
	int e = coh_maps_parse(f, start, end, out, count);
	fclose(f);
	return e;
}

int coh_maps_read(const coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		  struct coh_vma **out, size_t *count)
{
	return maps_read(ctx, pid, "maps", start, end, out, count);
}

int coh_smaps_read(const coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		   struct coh_vma **out, size_t *count)
{
	return maps_read(ctx, pid, "smaps", start, end, out, count);
}

void coh_split_by_vma(const struct coh_extent *ext, int n, const struct coh_vma *v, size_t nv,
		      bool (*fn)(void *arg, uintptr_t a, size_t len, const struct coh_extent *x,
				 const struct coh_vma *m),
		      void *arg)
{
	size_t vi = 0;
	for (int i = 0; i < n; i++) {
		uintptr_t a = ext[i].start, b = a + ext[i].length;
		while (a < b) {
			while (vi < nv && v[vi].end <= a)
				vi++;
			const struct coh_vma *m = vi < nv && v[vi].start <= a ? &v[vi] : NULL;
			uintptr_t pe = m ? (m->end < b ? m->end : b) : (vi < nv && v[vi].start < b ? v[vi].start : b);
			if (!fn(arg, a, pe - a, &ext[i], m))
				return;
			a = pe;
		}
	}
}

int coh_query_by_mapping(coh_context *ctx, const void *addr, size_t len, const void *user_out, size_t max,
			 bool vmflags, coh_piece_fn fn, struct coh_piece_out *out)
{
	uintptr_t start, end;
	int e = coh_query_args(ctx, addr, len, user_out, max, &start, &end);
	if (e)
		return e;
	out->ctx = ctx;
	out->n = 0;
	out->max = max > COH_QUERY_MAX_EXTENTS ? COH_QUERY_MAX_EXTENTS : max;
	struct coh_extent *ext = NULL;
	struct coh_vma *v = NULL;
	size_t nv = 0;
	int n = coh_query_own(ctx, start, end, out->max, &ext);
	if (n < 0)
		return n;
	e = vmflags ? coh_smaps_read(ctx, 0, start, end, &v, &nv) : coh_maps_read(ctx, 0, start, end, &v, &nv);
	if (e == 0) {
		coh_split_by_vma(ext, n, v, nv, fn, out);
		e = (int)out->n;
	}
	free(v);
	free(ext);
	return e;
}

int coh_range_anon_private(const coh_context *ctx, const void *addr, size_t len)
{
	struct coh_vma *v = NULL;
	size_t n = 0;
	uintptr_t a = (uintptr_t)addr, end = a + len;
	int e = coh_maps_read(ctx, 0, a, end, &v, &n);
	if (e)
		return e;
	uintptr_t cur = a;
	for (size_t i = 0; i < n && !e; i++) {
		if (v[i].start > cur)
			e = -EFAULT;            /* hole: nothing mapped there */
		else if (v[i].backing != COH_VMA_ANON)
			e = -EOPNOTSUPP;        /* file, shared or device memory */
		cur = v[i].end;
	}
	if (!e && cur < end)
		e = -EFAULT;
	free(v);
	return e;
}

int coh_owned_mapping_kind(const char *path)
{
	for (unsigned i = 0; i < coh_builtin_backend_count; i++) {
		const struct coh_backend_ops *ops = coh_builtin_backends[i];
		if (ops->size < offsetof(struct coh_backend_ops, owned_mappings) + sizeof(ops->owned_mappings) ||
		    !ops->owned_mappings)
			continue;
		for (const struct coh_owned_mapping *o = ops->owned_mappings; o->prefix; o++)
			if (!strncmp(path, o->prefix, strlen(o->prefix)))
				return o->kind;
	}
	return -1;
}

int coh_vma_classify(const struct coh_vma *m)
{
	const char *p = m->path;
	if (!strncmp(p, "/dev/dax", 8))
		return COH_VMA_DEVDAX;
	if (p[0] && coh_owned_mapping_kind(p) >= 0)
		return COH_VMA_OWNED;
	/* A private mapping of /dev/zero is anonymous memory (mmap_zero() makes
	 * it so; only its name stays); a shared one is shmem, "/dev/zero (deleted)". */
	if (!strncmp(p, "/dev/zero", 9))
		return m->shared ? COH_VMA_SHMEM : COH_VMA_ANON;
	if (!strncmp(p, "/SYSV", 5) || !strncmp(p, "/memfd:", 7))
		return COH_VMA_SHMEM;
	if (!strncmp(p, "/dev/shm/", 9))
		return COH_VMA_FILE;     /* a file like any other: its file system decides */
	if (!strncmp(p, "/dev/", 5))
		return COH_VMA_DEVICE;   /* VM_IO / PFN maps of a driver */
	if (p[0] == '/')
		return COH_VMA_FILE;
	if (m->shared)
		return COH_VMA_SHMEM;
	return COH_VMA_ANON;     /* "", [heap], [stack], [anon:...] */
}

/* ---------- the file system of a file mapping ---------- */

#define COH_TMPFS_MAGIC 0x01021994
#define COH_HUGETLBFS_MAGIC 0x958458f6

/* The mount of device maj:min in /proc/PID/mountinfo (decimal there, hex in maps). */
static int fs_by_mountinfo(const coh_context *ctx, pid_t pid, unsigned maj, unsigned min)
{
	FILE *f = proc_fopen(ctx, pid, "mountinfo");
	if (!f)
		return COH_FS_UNKNOWN;
	char line[4352];
	int fs = COH_FS_UNKNOWN;
	while (fs == COH_FS_UNKNOWN && fgets(line, sizeof(line), f)) {
		unsigned a, b;
		char type[64];
		const char *sep = strstr(line, " - ");
		if (sscanf(line, "%*u %*u %u:%u", &a, &b) != 2 || a != maj || b != min || !sep ||
		    sscanf(sep + 3, "%63s", type) != 1)
			continue;
		fs = !strcmp(type, "tmpfs") || !strcmp(type, "hugetlbfs") ? COH_FS_NO_DIRTY_TRACKING : COH_FS_OTHER;
	}
	fclose(f);
	return fs;
}

int coh_vma_fs(const coh_context *ctx, pid_t pid, const struct coh_vma *m)
{
	char path[96];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/map_files/%lx-%lx", (int)pid, (unsigned long)m->start,
			 (unsigned long)m->end);
	else
		snprintf(path, sizeof(path), "/proc/self/map_files/%lx-%lx", (unsigned long)m->start,
			 (unsigned long)m->end);
	int fd = coh_fs_open(ctx, path, O_PATH);
	if (fd >= 0) {
		struct statfs sf;
		int r = fstatfs(fd, &sf);
		close(fd);
		if (r == 0)
			return (unsigned long)sf.f_type == COH_TMPFS_MAGIC ||
					       (unsigned long)sf.f_type == COH_HUGETLBFS_MAGIC
				       ? COH_FS_NO_DIRTY_TRACKING
				       : COH_FS_OTHER;
	}
	/* kernel-internal mounts (anonymous hugetlb, memfd) are not in mountinfo */
	return fs_by_mountinfo(ctx, pid, m->dev_major, m->dev_minor);
}

/* ---------- /proc/PID/numa_maps: one node per mapping? ---------- */

void coh_numa_maps_parse(FILE *f, const struct coh_vma *v, size_t n, int *node_of)
{
	for (size_t i = 0; i < n; i++)
		node_of[i] = -2;
	char line[4352];
	size_t i = 0;
	while (i < n && fgets(line, sizeof(line), f)) {
		unsigned long a = strtoul(line, NULL, 16);
		while (i < n && v[i].start < a)
			i++;
		if (i == n)
			break;
		if (v[i].start != a)
			continue;
		int node = -1;
		for (char *p = strstr(line, " N"); p; p = strstr(p + 1, " N")) {
			char *q = p + 2, *e;
			long nd = strtol(q, &e, 10);
			if (e == q || *e != '=')
				continue;
			if (nd < 0 || nd >= COH_NODE_LIMIT) {
				node = -2;   /* not a node number: the mapping's nodes are unknown */
				break;
			}
			node = node == -1 ? (int)nd : -2;
		}
		node_of[i] = node;
		i++;
	}
}

static void numa_maps_nodes(const coh_context *ctx, pid_t pid, const struct coh_vma *v, size_t n,
			    int *node_of)
{
	FILE *f = proc_fopen(ctx, pid, "numa_maps");
	if (!f) {
		for (size_t i = 0; i < n; i++)
			node_of[i] = -2;   /* unknown */
		return;
	}
	coh_numa_maps_parse(f, v, n, node_of);
	fclose(f);
}

/* ---------- node resolution for present runs ---------- */

#define MP_BATCH 4096

static bool resolve_nodes(struct coh_q *q, uintptr_t a, size_t len, int kind)
{
	void *pages[MP_BATCH];
	int status[MP_BATCH];
	size_t ps = q->ctx->page_size;
	size_t npages = len / ps;
	for (size_t done = 0; done < npages;) {
		size_t c = npages - done < MP_BATCH ? npages - done : MP_BATCH;
		for (size_t i = 0; i < c; i++)
			pages[i] = (void *)(a + (done + i) * ps);
		long r = coh_sys_move_pages(q->pid, c, pages, NULL, status, 0);
		for (size_t i = 0; i < c; i++) {
			int k = kind, node = -1;
			if (r < 0)
				k = kind;                     /* no answer: keep the kind, node unknown */
			else if (status[i] >= 0)
				node = status[i];
			else if (status[i] == -ENOENT)
				k = q->vma_backing == COH_VMA_DEVDAX ? COH_MEM_DEVICE_DAX : COH_MEM_DEVICE_COHERENT;
			else if (status[i] == -EFAULT)
				k = COH_MEM_NOT_POPULATED;    /* the shared zero page */
			if (!q_emit(q, (uintptr_t)pages[i], ps, k, node))
				return false;
		}
		done += c;
	}
	return true;
}

/* Node hint of a run: ask move_pages. */
#define NODE_RESOLVE (-3)

/* A run whose node is known (>= 0), unknown for a kind without one (-1), or
 * to be resolved page by page (NODE_RESOLVE). */
static bool emit_run_node(struct coh_q *q, uintptr_t a, size_t len, int kind, int node)
{
	if (kind == KIND_MAYBE_ZERO)
		return resolve_nodes(q, a, len, COH_MEM_SYSTEM);
	if (node == NODE_RESOLVE)
		return resolve_nodes(q, a, len, kind);
	return q_emit(q, a, len, kind, node);
}

static bool emit_run(struct coh_q *q, uintptr_t a, size_t len, int kind)
{
	if (kind == KIND_MAYBE_ZERO)
		return resolve_nodes(q, a, len, COH_MEM_SYSTEM);
	bool present = kind == COH_MEM_SYSTEM || kind == COH_MEM_SYSTEM_THP || kind == COH_MEM_FILE;
	if (!present)
		return q_emit(q, a, len, kind, -1);
	if (q->vma_node >= 0)
		return q_emit(q, a, len, kind, q->vma_node);
	return resolve_nodes(q, a, len, kind);
}

static int swapped_kind(const struct coh_q *q)
{
	/* A swap entry with no swap device active can only be device-private
	 * (or a transient migration entry). */
	return q->swap_active ? COH_MEM_SWAPPED : COH_MEM_DEVICE_PRIVATE;
}

/* ---------- page states: PAGEMAP_SCAN ---------- */

static int scan_ioctl(struct coh_q *q, uintptr_t a, uintptr_t b)
{
	struct page_region reg[256];
	uintptr_t cur = a;
	while (cur < b) {
		struct pm_scan_arg arg = {
			.size = sizeof(arg),
			.start = cur,
			.end = b,
			.vec = (uintptr_t)reg,
			.vec_len = 256,
			.category_anyof_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
			.return_mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_HUGE | PAGE_IS_PFNZERO,
		};
		/* Asking "file or anon?" makes the kernel look up every page's folio
		 * (3x slower); a private anonymous mapping holds anon pages only. */
		if (q->vma_backing != COH_VMA_ANON)
			arg.return_mask |= PAGE_IS_FILE;
		int r = coh_sys_ioctl(q->pmfd, PAGEMAP_SCAN, &arg);
		if (r < 0)
			return r;
		COH_SCAN_DEFINED(&arg, sizeof(arg));
		COH_SCAN_DEFINED(reg, (size_t)r * sizeof(reg[0]));
		for (int i = 0; i < r; i++) {
			uint64_t c = reg[i].categories;
			int kind;
			if (!q_emit(q, cur, reg[i].start - cur, COH_MEM_NOT_POPULATED, -1))
				return 1;
			if (c & PAGE_IS_SWAPPED)
				kind = swapped_kind(q);
			else if (c & PAGE_IS_PFNZERO)
				kind = COH_MEM_NOT_POPULATED;
			else if ((c & PAGE_IS_FILE) || q->vma_backing == COH_VMA_SHMEM)
				kind = COH_MEM_FILE;
			else if (c & PAGE_IS_HUGE)
				kind = COH_MEM_SYSTEM_THP;
			else
				kind = COH_MEM_SYSTEM;
			if (!emit_run(q, reg[i].start, reg[i].end - reg[i].start, kind))
				return 1;
			cur = reg[i].end;
		}
		uintptr_t walked = arg.walk_end;
		if (walked < cur || walked > b || (r == 0 && walked <= arg.start))
			return -EIO;   /* no progress: do not loop */
		/* everything walked past the last region matched nothing: empty */
		if (!q_emit(q, cur, walked - cur, COH_MEM_NOT_POPULATED, -1))
			return 1;
		cur = walked;
	}
	return 0;
}

/* ---------- page states: bulk pread ---------- */

#define PM_CHUNK 8192

/* Node of a present page from its pagemap entry, through the PFN table. */
static int pfn_node(struct coh_q *q, uint64_t e)
{
	uint64_t pfn = e & PM_PFN_MASK;
	if (pfn == 0) {
		/* PFNs read as 0 without CAP_SYS_ADMIN: none will show, stop looking */
		atomic_store(&q->ctx->pfn_unusable, 1);
		q->pfn = NULL;
		return NODE_RESOLVE;
	}
	int n = coh_pfn_node(q->pfn, pfn);
	if (n < 0 && !q->pfn_refreshed) {
		/* memory hotplug, or ZONE_DEVICE memory (in no block: move_pages names it) */
		q->pfn_refreshed = true;
		q->pfn = coh_pfn_map_get(q->ctx, true);
		n = q->pfn ? coh_pfn_node(q->pfn, pfn) : -1;
	}
	return n >= 0 ? n : NODE_RESOLVE;
}

/* ---------- page states: pread ---------- */

#define KPF_THP (1ULL << 22)
#define KPF_ZERO_PAGE (1ULL << 24)

/* Pages in a PMD-mapped transparent huge page: hpage_pmd_size (4.13+), else
 * one page table of 8-byte entries (512 pages on x86-64 and 4 KiB arm64). */
static size_t thp_pages(coh_context *ctx)
{
	size_t n = atomic_load(&ctx->thp_pages);
	if (n)
		return n;
	size_t ps = ctx->page_size;
	n = ps / 8;
	char buf[32];
	if (coh_fs_read(ctx, "/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", buf, sizeof(buf)) > 0) {
		char *end;
		unsigned long long b = strtoull(buf, &end, 10);
		size_t np = b / ps;
		if (end != buf && (*end == '\0' || *end == '\n') && b >= 2 * ps && b % ps == 0 && !(np & (np - 1)))
			n = np;
	}
	atomic_store(&ctx->thp_pages, n);
	return n;
}

/* pagemap carries no huge-page flag, but as root it carries frame numbers:
 * the hp entries at e are one PMD-mapped transparent huge page when they are
 * present anonymous pages on consecutive frames from an aligned head, and
 * /proc/kpageflags calls the head a THP that is not the huge zero page.
 * Without frame numbers or kpageflags the pages stay plain system pages. */
static bool thp_at(struct coh_q *q, const uint64_t *e, size_t hp)
{
	uint64_t head = e[0] & PM_PFN_MASK;
	if ((e[0] & (PM_PRESENT | PM_FILE)) != PM_PRESENT || head == 0 || (head & (hp - 1)))
		return false;
	for (size_t k = 1; k < hp; k++)
		if ((e[k] & (PM_PRESENT | PM_FILE | PM_PFN_MASK)) != (PM_PRESENT | (head + k)))
			return false;
	if (!q->kpf_tried) {
		q->kpf_tried = true;
		q->kpf_fd = coh_fs_open(q->ctx, "/proc/kpageflags", O_RDONLY);
	}
	uint64_t f;
	if (q->kpf_fd < 0 || coh_sys_pread(q->kpf_fd, &f, sizeof(f), (off_t)(head * 8)) != (ssize_t)sizeof(f))
		return false;
	return (f & KPF_THP) && !(f & KPF_ZERO_PAGE);
}

static int scan_pread(struct coh_q *q, uintptr_t a, uintptr_t b)
{
	uint64_t buf[PM_CHUNK];
	size_t ps = q->ctx->page_size;
	uintptr_t run_start = a;
	int run_kind = -1, run_node = -1;
	/* huge pages of anonymous memory; a chunk ends on a huge-page boundary */
	size_t hp = q->vma_backing == COH_VMA_ANON ? thp_pages(q->ctx) : 0;
	if (hp > PM_CHUNK || hp < 2 || b - a < hp * ps)
		hp = 0;
	for (uintptr_t cur = a; cur < b;) {
		size_t n = (b - cur) / ps;
		if (n > PM_CHUNK) {
			n = PM_CHUNK;
			size_t over = hp ? (cur / ps + n) & (hp - 1) : 0;
			if (over < n)
				n -= over;
		}
		ssize_t got = coh_sys_pread(q->pmfd, buf, n * 8, (off_t)(cur / ps) * 8);
		if (got < 0)
			return (int)got;
		if ((size_t)got < n * 8)
			return -EIO;
		size_t thp_end = 0;   /* entries [.., thp_end) of this chunk are a huge page */
		for (size_t i = 0; i < n; i++) {
			uint64_t e = buf[i];
			int kind, node = -1;
			if (hp && i >= thp_end && !((cur / ps + i) & (hp - 1)) && i + hp <= n && thp_at(q, buf + i, hp))
				thp_end = i + hp;
			if (i < thp_end)
				kind = COH_MEM_SYSTEM_THP;
			else if ((e & PM_PRESENT) && ((e & PM_FILE) || q->vma_backing == COH_VMA_SHMEM))
				kind = COH_MEM_FILE;
			else if (e & PM_PRESENT)
				kind = e & PM_EXCLUSIVE ? COH_MEM_SYSTEM : KIND_MAYBE_ZERO;
			else if (e & PM_SWAPPED)
				kind = swapped_kind(q);
			else
				kind = COH_MEM_NOT_POPULATED;
			if (kind == COH_MEM_FILE || kind == COH_MEM_SYSTEM || kind == COH_MEM_SYSTEM_THP)
				node = q->vma_node >= 0 ? q->vma_node : q->pfn ? pfn_node(q, e) : NODE_RESOLVE;
			uintptr_t pa = cur + i * ps;
			if (kind != run_kind || node != run_node) {
				if (run_kind >= 0 && !emit_run_node(q, run_start, pa - run_start, run_kind, run_node))
					return 1;
				run_start = pa;
				run_kind = kind;
				run_node = node;
			}
		}
		cur += n * ps;
	}
	if (run_kind >= 0 && !emit_run_node(q, run_start, b - run_start, run_kind, run_node))
		return 1;
	return 0;
}

/* ---------- driver ---------- */

static atomic_int scan_works = 1;   /* sticky: cleared when this kernel lacks PAGEMAP_SCAN */

/* query.scan=0 (COH_QUERY_SCAN=0): pagemap by pread only, as on kernels
 * before 6.7 (comparisons, tests of that path on any kernel). */
static bool scan_wanted(coh_context *ctx)
{
	int s = atomic_load(&ctx->query_scan);
	if (!s) {
		const char *v = coh_ctx_tunable(ctx, "query.scan");
		s = v && !strcmp(v, "0") ? 2 : 1;
		atomic_store(&ctx->query_scan, s);
	}
	return s == 1;
}

static bool swap_active(const coh_context *ctx)
{
	char buf[256];
	int r = coh_fs_read_head(ctx, "/proc/swaps", buf, sizeof(buf));
	return r > 0 && strchr(buf, '\n') != NULL;   /* a line past the header */
}

/* A batch of queries of this process (coh_query_batch) on this thread:
 * /proc/self/maps read once for the whole span and /proc/self/pagemap
 * opened once, so that each range costs its pages, not two file opens and
 * a maps read. */
static _Thread_local struct coh_query_session *session;

void coh_query_session_begin(coh_context *ctx, struct coh_query_session *s, uintptr_t lo, uintptr_t hi)
{
	*s = (struct coh_query_session){ .ctx = ctx, .pmfd = -1 };
	if (lo < hi && coh_maps_read(ctx, 0, lo, hi, &s->v, &s->nv) == 0) {
		s->lo = lo;
		s->hi = hi;
		s->have_maps = true;
	}
	s->pmfd = coh_fs_open(ctx, "/proc/self/pagemap", O_RDONLY);
	session = s;
}

void coh_query_session_end(struct coh_query_session *s)
{
	session = NULL;
	if (s->pmfd >= 0)
		close(s->pmfd);
	free(s->v);
	s->v = NULL;
	s->pmfd = -1;
}

/* The session's VMAs that meet [start, end), copied (the engine frees them). */
static int session_maps(const struct coh_query_session *s, uintptr_t start, uintptr_t end, struct coh_vma **out,
			size_t *count)
{
	size_t a = 0, b = s->nv;
	while (a < b) {   /* the first VMA ending after start */
		size_t m = (a + b) / 2;
		if (s->v[m].end <= start)
			a = m + 1;
		else
			b = m;
	}
	size_t k = a;
	while (k < s->nv && s->v[k].start < end)
		k++;
	*count = k - a;
	*out = NULL;
	if (k == a)
		return 0;
	*out = malloc((k - a) * sizeof(**out));
	if (!*out)
		return -ENOMEM;
	memcpy(*out, s->v + a, (k - a) * sizeof(**out));
	return 0;
}

int coh_query_engine(coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		     struct coh_extent *ext, size_t max)
{
	struct coh_vma *v = NULL;
	size_t nv = 0;
	const struct coh_query_session *qs = session && session->ctx == ctx && pid == 0 ? session : NULL;
	int e = qs && qs->have_maps && start >= qs->lo && end <= qs->hi ? session_maps(qs, start, end, &v, &nv)
								       : coh_maps_read(ctx, pid, start, end, &v, &nv);
	if (e)
		return e;
	int *node_of = nv ? malloc(nv * sizeof(int)) : NULL;
	if (nv && !node_of) {
		free(v);
		return -ENOMEM;
	}
	for (size_t i = 0; i < nv; i++)
		node_of[i] = -2;   /* unknown: resolved page by page unless numa_maps tells */
	bool zone_device = false;
	for (int i = 0; i < ctx->ntargets; i++)
		if (ctx->targets[i]->d.kind == COH_KIND_DEVICE_COHERENT ||
		    ctx->targets[i]->d.kind == COH_KIND_DEVICE_PRIVATE)
			zone_device = true;
	/* One memory node and no device memory: every present page is there, no
	 * need to ask numa_maps (whose read walks every page of each mapping). */
	int only_node = -1;
	if (!zone_device && ctx->ntargets == 1 && ctx->targets[0]->d.numa_node >= 0)
		only_node = ctx->targets[0]->d.numa_node;
	/* Several nodes: as root each page's node follows from its PFN (pagemap)
	 * and the memory blocks of the nodes, at pagemap speed.  numa_maps is
	 * then not read: it walks every page as pagemap does, so it would only
	 * add a walk in front of PAGEMAP_SCAN (1.6x -> 2.6x batched move_pages
	 * over 3 nodes on 6.12, docs/performance.md). */
	const struct coh_pfn_map *pfn = NULL;
	if (only_node < 0 && !atomic_load(&ctx->pfn_unusable))
		pfn = coh_pfn_map_get(ctx, false);
	bool scan = scan_wanted(ctx);
	if (nv && !zone_device && only_node < 0 && !pfn)
		numa_maps_nodes(ctx, pid, v, nv, node_of);

	struct coh_q q = { .ctx = ctx, .ext = ext, .max = max, .pid = pid, .pmfd = -1, .pfn = pfn };
	q.swap_active = swap_active(ctx);
	char path[64];
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/pagemap", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/pagemap");
	bool own_pmfd = !(qs && qs->pmfd >= 0);
	q.pmfd = own_pmfd ? coh_fs_open(ctx, path, O_RDONLY) : qs->pmfd;
	if (q.pmfd < 0) {
		e = q.pmfd;
		goto out;
	}

	uintptr_t cur = start;
	for (size_t i = 0; i <= nv && !q.full; i++) {
		/* /proc/PID/maps is read in pieces: while other threads map and unmap,
		 * two lines may overlap.  Tile the range from the cursor on. */
		if (i < nv && v[i].end <= cur)
			continue;
		uintptr_t vs = i < nv ? (v[i].start > cur ? v[i].start : cur) : end;
		if (vs > cur && !q_emit(&q, cur, vs - cur, COH_MEM_UNMAPPED, -1))
			break;
		if (i == nv)
			break;
		uintptr_t ve = v[i].end < end ? v[i].end : end;
		q.vma_backing = v[i].backing;
		q.vma_node = only_node >= 0 ? only_node : node_of[i] == -1 ? -2 : node_of[i];
		cur = ve;
		if (v[i].backing == COH_VMA_OWNED) {
			q_emit(&q, vs, ve - vs, coh_owned_mapping_kind(v[i].path), -1);
			continue;
		}
		if (v[i].backing == COH_VMA_DEVICE) {
			q_emit(&q, vs, ve - vs, COH_MEM_UNKNOWN, -1);
			continue;
		}
		if (v[i].backing == COH_VMA_DEVDAX) {
			q_emit(&q, vs, ve - vs, COH_MEM_DEVICE_DAX, -1);
			continue;
		}
		int r = 1;
		/* PAGEMAP_SCAN reports no PFN: a mapping on several nodes is read by pread */
		bool by_pfn = q.pfn && q.vma_node < 0;
		if (scan && atomic_load(&scan_works) && !by_pfn) {
			r = scan_ioctl(&q, vs, ve);
			if (r == -ENOTTY || r == -EINVAL) {
				atomic_store(&scan_works, 0);
				r = 1;
				/* drop what this mapping emitted and redo it with pread */
				while (q.n > 0 && q.ext[q.n - 1].start >= vs)
					q.n--;
				if (q.n > 0 && q.ext[q.n - 1].start + q.ext[q.n - 1].length > vs)
					q.ext[q.n - 1].length = vs - q.ext[q.n - 1].start;
				q.full = false;
			} else if (r < 0) {
				e = r;
				goto out;
			} else {
				continue;
			}
		}
		r = scan_pread(&q, vs, ve);
		if (r < 0) {
			e = r;
			goto out;
		}
	}
	if (q.n == 0 && !q.full)
		q_emit(&q, start, end - start, COH_MEM_UNMAPPED, -1);
	/* Name the target of each node. */
	for (size_t i = 0; i < q.n; i++) {
		struct coh_extent *x = &ext[i];
		x->target = x->node >= 0 ? coh_target_of_node(ctx, x->node) : NULL;
	}
	e = (int)q.n;
out:
	if (q.pmfd >= 0 && own_pmfd)
		close(q.pmfd);
	if (q.kpf_tried && q.kpf_fd >= 0)
		close(q.kpf_fd);
	free(node_of);
	free(v);
	return e;
}

static bool any_resolver(const coh_context *ctx)
{
	for (int i = 0; i < ctx->nslots; i++)
		if (ctx->slots[i].ops->query_resolve)
			return true;
	return false;
}

/* The record at c with a reference, or NULL and the start of the next one
 * (0 when none). */
static struct coh_rec *rec_at(coh_context *ctx, uintptr_t c, uintptr_t *next)
{
	coh_amap_lock(&ctx->amap);
	struct coh_rec *r = coh_amap_find(&ctx->amap, c);
	if (r)
		atomic_fetch_add(&r->refs, 1);
	else if (!coh_amap_next_start(&ctx->amap, c, next))
		*next = 0;
	coh_amap_unlock(&ctx->amap);
	return r;
}

/* Whether a record of a backend that resolves residency meets the extents
 * (which tile [ext[0].start, end of the last) in address order): one map
 * search per record, not per extent, as a range over several nodes is
 * thousands of extents, most of them in one record or in none. */
static bool resolver_owns_any(coh_context *ctx, const struct coh_extent *ext, int n)
{
	uintptr_t c = ext[0].start, end = ext[n - 1].start + ext[n - 1].length;
	while (c < end) {
		uintptr_t next = 0;
		struct coh_rec *r = rec_at(ctx, c, &next);
		if (!r) {
			if (next <= c || next >= end)
				return false;
			c = next;
			continue;
		}
		bool has = r->pub.target->slot->ops->query_resolve != NULL;
		c = r->pub.start + r->pub.length;
		coh_rec_put(r);
		if (has)
			return true;
	}
	return false;
}

/* Backends that resolve residency themselves replace the pieces of extents
 * inside their records; the result is merged again like the engine's. */
static int resolve_pass(coh_context *ctx, struct coh_extent *ext, int n, size_t max)
{
	struct coh_extent *out = malloc(max * sizeof(*out));
	if (!out)
		return n;   /* keep the kernel's view */
	size_t m = 0;
	bool cut = false;
	for (int i = 0; i < n && !cut; i++) {
		uintptr_t c = ext[i].start, end = ext[i].start + ext[i].length;
		while (c < end && !cut) {
			if (m == max) {
				cut = true;
				break;
			}
			struct coh_extent piece = ext[i];
			uintptr_t next = 0;
			struct coh_rec *r = rec_at(ctx, c, &next);
			uintptr_t pe = end;
			if (r && r->pub.start + r->pub.length < end)
				pe = r->pub.start + r->pub.length;
			else if (!r && next > c && next < end)
				pe = next;
			piece.start = c;
			piece.length = pe - c;
			const struct coh_backend_ops *ops = r ? r->pub.target->slot->ops : NULL;
			int k = ops && ops->query_resolve ? ops->query_resolve(&r->pub, &piece, out + m, max - m) : 0;
			if (k > 0) {
				uintptr_t covered = out[m + k - 1].start + out[m + k - 1].length;
				m += (size_t)k;
				if (covered < pe)
					cut = true;   /* out of room: the caller's cursor goes on from here */
			} else {
				out[m++] = piece;
			}
			coh_rec_put(r);
			c = pe;
		}
	}
	/* merge neighbours the cuts separated */
	size_t w = 0;
	for (size_t i = 0; i < m; i++) {
		if (w > 0) {
			struct coh_extent *p = &out[w - 1];
			if (p->start + p->length == out[i].start && p->kind == out[i].kind && p->node == out[i].node &&
			    p->target == out[i].target) {
				p->length += out[i].length;
				continue;
			}
		}
		out[w++] = out[i];
	}
	memcpy(ext, out, w * sizeof(*out));
	free(out);
	return (int)w;
}

int coh_query_refine(coh_context *ctx, struct coh_extent *ext, int n, size_t max)
{
	if (n <= 0 || !any_resolver(ctx) || !resolver_owns_any(ctx, ext, n))
		return n;
	return resolve_pass(ctx, ext, n, max);
}

int coh_query_args(const coh_context *ctx, const void *addr, size_t len, const void *out, size_t max,
		   uintptr_t *start, uintptr_t *end)
{
	int e;
	if (!ctx)
		return -EINVAL;
	if (!out)
		return -EFAULT;
	if (max == 0 || max > INT32_MAX)
		return -EINVAL;
	if ((e = coh_check_range(addr, len)))
		return e;
	if (ctx->replay)
		return -EROFS;   /* a recorded machine has no live process to inspect */
	size_t ps = ctx->page_size;
	*start = (uintptr_t)addr & ~(ps - 1);
	*end = (((uintptr_t)addr + len - 1) | (ps - 1)) + 1;
	return *end == 0 ? -EOVERFLOW : 0;
}

int coh_query_own(coh_context *ctx, uintptr_t start, uintptr_t end, size_t max, struct coh_extent **out)
{
	if (max > COH_QUERY_MAX_EXTENTS)
		max = COH_QUERY_MAX_EXTENTS;   /* bounds the work buffer; the caller's cursor covers the rest */
	struct coh_extent *ext = calloc(max, sizeof(*ext));
	if (!ext)
		return -ENOMEM;
	int n = coh_query_engine(ctx, 0, start, end, ext, max);
	if (n < 0) {
		free(ext);
		return n;
	}
	n = coh_query_refine(ctx, ext, n, max);
	*out = ext;
	return n;
}

int coh_range_on_device(coh_context *ctx, const void *addr, size_t len)
{
	/* the kernel's view, piece by piece from the cursor */
	struct coh_extent x[256];
	uintptr_t cur = (uintptr_t)addr, end = cur + len;
	int e = 0;
	do {
		int n = coh_kernel_view(ctx, (void *)cur, end - cur, x, 256);
		if (n < 0)
			return n;
		for (int i = 0; i < n && !e; i++)
			if (x[i].kind != COH_MEM_DEVICE_PRIVATE && x[i].kind != COH_MEM_DEVICE_COHERENT)
				e = -EBUSY;
		cur = x[n - 1].start + x[n - 1].length;
	} while (!e && cur < end);
	return e;
}

int coh_kernel_view(coh_context *ctx, const void *addr, size_t len, struct coh_extent *x, size_t max)
{
	int e = coh_check_range(addr, len);
	if (e)
		return e;
	if (!x || max == 0)
		return -EINVAL;
	size_t ps = ctx->page_size;
	uintptr_t start = (uintptr_t)addr & ~(ps - 1), end = (((uintptr_t)addr + len - 1) | (ps - 1)) + 1;
	if (end == 0)
		return -EOVERFLOW;
	if (max > COH_QUERY_MAX_EXTENTS)
		max = COH_QUERY_MAX_EXTENTS;
	int n = coh_query_engine(ctx, 0, start, end, x, max);
	return n == 0 ? -EIO : n;
}

bool coh_ext_append(struct coh_extent *out, size_t *n, size_t max, uintptr_t start, size_t length, int kind,
		    int node, coh_target *t)
{
	if (*n > 0) {
		struct coh_extent *p = &out[*n - 1];
		if (p->start + p->length == start && p->kind == kind && p->node == node && p->target == t) {
			p->length += length;
			return true;
		}
	}
	if (*n == max)
		return false;
	out[(*n)++] = (struct coh_extent){ .start = start, .length = length, .kind = kind, .node = node, .target = t };
	return true;
}

int coh_ext_fill(void *user, size_t max, size_t ext_size, size_t full,
		 int (*fill)(void *buf, size_t max, void *arg), void *arg)
{
	int e = coh_ext_size_check(ext_size);
	if (e)
		return e;
	if (max > INT32_MAX)
		return -EINVAL;   /* before the work buffer caps it */
	if (ext_size >= full || !user || max == 0) {
		/* in the caller's array (fill checks it), spread out afterwards */
		int n = fill(user, max, arg);
		if (n > 0)
			coh_ext_spread(user, ext_size, full, (size_t)n);
		return n;
	}
	/* an older, smaller element: full ones in a work buffer, copied out */
	size_t m = max > COH_QUERY_MAX_EXTENTS ? COH_QUERY_MAX_EXTENTS : max;
	void *w = calloc(m, full);
	if (!w)
		return -ENOMEM;
	int n = fill(w, m, arg);
	if (n > 0)
		coh_ext_copy(user, ext_size, w, full, (size_t)n);
	free(w);
	return n;
}

struct query_call {
	coh_context *ctx;
	pid_t pid;
	uintptr_t start, end;
};

static int query_fill(void *buf, size_t max, void *arg)
{
	const struct query_call *q = arg;
	int n = coh_query_engine(q->ctx, q->pid, q->start, q->end, buf, max);
	if (n > 0 && q->pid == 0)
		n = coh_query_refine(q->ctx, buf, n, max);
	return n;
}

int coh_query_pid(coh_context *ctx, pid_t pid, const void *addr, size_t len, struct coh_extent *ext,
		  size_t max, size_t ext_size)
{
	struct query_call q = { .ctx = ctx, .pid = pid };
	if (pid < 0)
		return -EINVAL;
	int e = coh_query_args(ctx, addr, len, ext, max, &q.start, &q.end);
	if (e)
		return e;
	if (pid == getpid())
		q.pid = 0;
	return coh_ext_fill(ext, max, ext_size, sizeof(*ext), query_fill, &q);
}

int coh_query(coh_context *ctx, const void *addr, size_t len, struct coh_extent *ext, size_t max,
	      size_t ext_size)
{
	return coh_query_pid(ctx, 0, addr, len, ext, max, ext_size);
}

const char *coh_mem_kind_name(int kind)
{
	switch (kind) {
	case COH_MEM_UNKNOWN: return "unknown";
	case COH_MEM_NOT_POPULATED: return "not-populated";
	case COH_MEM_SYSTEM: return "system";
	case COH_MEM_SYSTEM_THP: return "system-thp";
	case COH_MEM_FILE: return "file";
	case COH_MEM_SWAPPED: return "swapped";
	case COH_MEM_DEVICE_COHERENT: return "device-coherent";
	case COH_MEM_DEVICE_PRIVATE: return "device-private";
	case COH_MEM_DEVICE_DAX: return "device-dax";
	case COH_MEM_VENDOR_MANAGED: return "vendor-managed";
	case COH_MEM_UNMAPPED: return "unmapped";
	default: return NULL;
	}
}

int coh_pagemap_present(const coh_context *ctx, uintptr_t start, size_t npages, uint8_t *present)
{
	int fd = coh_fs_open(ctx, "/proc/self/pagemap", O_RDONLY);
	if (fd < 0)
		return fd;
	uint64_t buf[4096];
	size_t ps = ctx->page_size;
	int e = 0;
	for (size_t done = 0; done < npages && !e;) {
		size_t c = npages - done < 4096 ? npages - done : 4096;
		ssize_t got = coh_sys_pread(fd, buf, c * 8, (off_t)((start / ps + done) * 8));
		if (got < 0) {
			e = (int)got;
			break;
		}
		if (got == 0) {
			e = -EIO;
			break;
		}
		size_t k = (size_t)got / 8;
		for (size_t i = 0; i < k; i++)
			present[done + i] = (buf[i] & PM_PRESENT) != 0;
		done += k;
	}
	close(fd);
	return e;
}
