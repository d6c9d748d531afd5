/* SPDX-License-Identifier: MIT */
/*
 * Pin-query: for each extent, what a short-term (FOLL_PIN) and a long-term
 * (FOLL_LONGTERM) pin would do, predicted from the residency query, the
 * mapping and, per page, /proc/self/pagemap, without pinning or moving
 * anything.  The rules are the kernel's (mm/gup.c, see docs/semantics.md):
 *  - ordinary system pages pin in place, unless their frame is in a CMA area
 *    or ZONE_MOVABLE (then a long-term pin migrates them first, and fails
 *    when that fails);
 *  - a pin that needs write access (or, since 5.19, any pin of anonymous
 *    memory) first copies a page that is not the process's own: anonymous
 *    pages shared copy-on-write (after fork) and page-cache pages of a
 *    private file mapping;
 *  - device-coherent pages pin short-term in place; long-term pins migrate them;
 *  - device-private pages always fault back to system memory first;
 *  - device-dax pages pin in place and never move;
 *  - driver and PROT_NONE mappings refuse pins.
 * The writable mapping's short-term pin is taken to ask for write access too
 * (O_DIRECT reads into the buffer), as long-term pins always do.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "query.h"

#define PM_PRESENT (1ULL << 63)
#define PM_FILE (1ULL << 61)
#define PM_EXCLUSIVE (1ULL << 56)
#define PM_PFN_MASK ((1ULL << 55) - 1)

/* ---------- frames a long-term pin must migrate ---------- */

static int frame_add(struct coh_frame_map *m, uint64_t start, uint64_t end, int type)
{
	if (end <= start)
		return 0;
	struct coh_frame_range *r = realloc(m->r, (m->n + 1) * sizeof(*r));
	if (!r)
		return -ENOMEM;
	m->r = r;
	r[m->n++] = (struct coh_frame_range){ .start = start, .end = end, .type = type };
	return 0;
}

struct zone_span {
	int node;
	bool movable;
	uint64_t start, spanned, present;
};

/* Movable zones with pages, from /proc/zoneinfo; a span that overlaps
 * another zone's on its node (memory onlined movable between others) is
 * decided per memory block. */
static int zones_load(const coh_context *ctx, struct coh_frame_map *m)
{
	FILE *f = coh_fs_fopen(ctx, "/proc/zoneinfo");
	if (!f)
		return errno == ENOMEM ? -ENOMEM : 0;
	struct zone_span *z = NULL;
	size_t nz = 0;
	int e = 0;
	char line[512], name[32];
	while (fgets(line, sizeof(line), f)) {
		int node;
		unsigned long long v;
		if (sscanf(line, "Node %d, zone %31s", &node, name) == 2) {
			struct zone_span *nzp = realloc(z, (nz + 1) * sizeof(*z));
			if (!nzp) {
				e = -ENOMEM;
				break;
			}
			z = nzp;
			z[nz++] = (struct zone_span){ .node = node, .movable = !strcmp(name, "Movable") };
		} else if (nz && sscanf(line, " present %llu", &v) == 1) {
			z[nz - 1].present = v;
		} else if (nz && sscanf(line, " spanned %llu", &v) == 1) {
			z[nz - 1].spanned = v;
		} else if (nz && sscanf(line, " start_pfn: %llu", &v) == 1) {
			z[nz - 1].start = v;
		}
	}
	fclose(f);
	for (size_t i = 0; i < nz && !e; i++) {
		if (!z[i].movable || !z[i].present)
			continue;
		m->movable = true;
		uint64_t a = z[i].start, b = a + z[i].spanned;
		if ((e = frame_add(m, a, b, COH_FRAME_MOVABLE)))
			break;
		for (size_t j = 0; j < nz; j++)
			if (j != i && z[j].node == z[i].node && z[j].present && z[j].start < b &&
			    z[j].start + z[j].spanned > a)
				m->r[m->n - 1].by_block = true;
	}
	free(z);
	return e;
}

/* Does the machine have CMA memory?  CmaTotal (meminfo) or CMA pageblocks
 * in any zone (pagetypeinfo, root only). */
static bool cma_exists(const coh_context *ctx)
{
	char buf[8192];
	if (coh_fs_read(ctx, "/proc/meminfo", buf, sizeof(buf)) > 0) {
		const char *p = strstr(buf, "CmaTotal:");
		if (p && strtoull(p + 9, NULL, 10) > 0)
			return true;
	}
	FILE *f = coh_fs_fopen(ctx, "/proc/pagetypeinfo");
	if (!f)
		return false;
	/* "Number of blocks type  Unmovable Movable ... CMA Isolate", then a line per zone */
	char line[1024];
	int col = -1;
	bool found = false;
	while (!found && fgets(line, sizeof(line), f)) {
		if (!strncmp(line, "Number of blocks type", 21)) {
			col = 0;
			for (char *t = strtok(line + 21, " \t\n"); t; t = strtok(NULL, " \t\n"), col++)
				if (!strcmp(t, "CMA"))
					break;
			continue;
		}
		if (col < 0 || strncmp(line, "Node", 4))
			continue;
		char *p = strstr(line, "zone");
		int k = -1;   /* the zone's name first, then the counts */
		for (char *t = p ? strtok(p + 4, " \t\n") : NULL; t; t = strtok(NULL, " \t\n"), k++)
			if (k == col && strtoull(t, NULL, 10) > 0)
				found = true;
		if (!p)
			col = -1;
	}
	fclose(f);
	return found;
}

static int cma_read(const coh_context *ctx, struct coh_frame_map *m)
{
	m->cma = cma_exists(ctx);
	DIR *d = coh_fs_opendir(ctx, "/sys/kernel/debug/cma");
	if (!d)
		return 0;
	struct dirent *de;
	int e = 0;
	while (!e && (de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[320];   /* room for any d_name */
		uint64_t base, count;
		snprintf(path, sizeof(path), "/sys/kernel/debug/cma/%s/base_pfn", de->d_name);
		if (coh_fs_read_u64(ctx, path, &base))
			continue;
		snprintf(path, sizeof(path), "/sys/kernel/debug/cma/%s/count", de->d_name);
		if (coh_fs_read_u64(ctx, path, &count) || count == 0)
			continue;
		e = frame_add(m, base, base + count, COH_FRAME_CMA);
		m->cma = m->cma_located = true;
	}
	closedir(d);
	return e;
}

/* The CMA areas into m, read once per context. */
static int cma_load(coh_context *ctx, struct coh_frame_map *m)
{
	int e = 0;
	pthread_mutex_lock(&ctx->cma_lock);
	if (!ctx->cma_read) {
		struct coh_frame_map c = { 0 };
		e = cma_read(ctx, &c);
		if (!e) {
			ctx->cma_ranges = c.r;
			ctx->ncma = c.n;
			ctx->cma = c.cma;
			ctx->cma_located = c.cma_located;
			ctx->cma_read = true;
		} else {
			free(c.r);
		}
	}
	for (size_t i = 0; !e && i < ctx->ncma; i++)
		e = frame_add(m, ctx->cma_ranges[i].start, ctx->cma_ranges[i].end, COH_FRAME_CMA);
	m->cma = ctx->cma;
	m->cma_located = ctx->cma_located;
	pthread_mutex_unlock(&ctx->cma_lock);
	return e;
}

/* A populated Movable zone shows in /proc/buddyinfo (a few lines, cheap,
 * where /proc/zoneinfo takes milliseconds to generate). */
static bool movable_zone_exists(const coh_context *ctx)
{
	char buf[4096];
	int n = coh_fs_read(ctx, "/proc/buddyinfo", buf, sizeof(buf));
	return n <= 0 || strstr(buf, "Movable") != NULL;   /* unreadable: ask zoneinfo */
}

int coh_frame_map_load(coh_context *ctx, struct coh_frame_map *m)
{
	memset(m, 0, sizeof(*m));
	m->last_block_type = -1;
	int e = cma_load(ctx, m);
	if (!e && movable_zone_exists(ctx)) {
		char buf[64];   /* block_size_bytes: hexadecimal without "0x" */
		if (coh_fs_read(ctx, "/sys/devices/system/memory/block_size_bytes", buf, sizeof(buf)) > 0)
			m->block_pages = strtoull(buf, NULL, 16) / ctx->page_size;
		e = zones_load(ctx, m);
	}
	if (e)
		coh_frame_map_free(m);
	return e;
}

void coh_frame_map_free(struct coh_frame_map *m)
{
	free(m->r);
	m->r = NULL;
	m->n = 0;
}

/* The zone a memory block was onlined to: valid_zones names it alone. */
static int block_type(const coh_context *ctx, struct coh_frame_map *m, uint64_t pfn)
{
	if (!m->block_pages)
		return COH_FRAME_UNKNOWN;
	uint64_t block = pfn / m->block_pages;
	if (m->last_block_type >= 0 && m->last_block == block)
		return m->last_block_type;
	char buf[128];
	int t = COH_FRAME_UNKNOWN;
	if (coh_fs_readf(ctx, buf, sizeof(buf), "/sys/devices/system/memory/memory%llu/valid_zones",
			 (unsigned long long)block) > 0)
		t = !strncmp(buf, "Movable", 7) ? COH_FRAME_MOVABLE : COH_FRAME_PLAIN;
	m->last_block = block;
	m->last_block_type = t;
	return t;
}

int coh_frame_type(const coh_context *ctx, struct coh_frame_map *m, uint64_t pfn)
{
	int movable = COH_FRAME_PLAIN;
	for (size_t i = 0; i < m->n; i++) {
		const struct coh_frame_range *r = &m->r[i];
		if (pfn < r->start || pfn >= r->end)
			continue;
		if (r->type == COH_FRAME_CMA)
			return COH_FRAME_CMA;
		movable = r->by_block ? block_type(ctx, m, pfn) : COH_FRAME_MOVABLE;
	}
	if (movable == COH_FRAME_PLAIN && m->cma && !m->cma_located)
		return COH_FRAME_UNKNOWN;
	return movable;
}

/* ---------- the rules ---------- */

#define V(s, l, why) ((struct coh_pin_verdict){ (s), (l), (why) })

/* Ordinary pages (system, huge, page cache, not yet populated): the facts of the page decide. */
static struct coh_pin_verdict judge_ordinary(const coh_context *ctx, const struct coh_vma *vma, int kind,
					     const coh_target *t, unsigned facts, int fs)
{
	int frame = (int)(facts >> COH_PAGE_FRAME_SHIFT);
	if (facts & COH_PAGE_COW_SHARED) {
		/* Linux 5.19 (gup_must_unshare) unshares anonymous pages for read pins too. */
		int s = ctx->kernel_version >= 5019 ? COH_PIN_AFTER_MIGRATE
			: ctx->kernel_version ? COH_PIN_IN_PLACE : COH_PIN_UNKNOWN;
		if (vma->write)
			s = COH_PIN_AFTER_MIGRATE;
		return V(s, vma->write ? COH_PIN_AFTER_MIGRATE : COH_PIN_NEVER,
			 "anonymous page shared copy-on-write (after fork, with a live child): "
			 "a pin first gives this process its own copy");
	}
	if (!vma->write)
		return V(COH_PIN_IN_PLACE, COH_PIN_NEVER,
			 "read-only mapping: read pins work, long-term pins ask for write access");
	if (kind == COH_MEM_FILE && !vma->shared)
		return V(COH_PIN_AFTER_MIGRATE, COH_PIN_AFTER_MIGRATE,
			 "page-cache page of a private mapping: a write pin first replaces it with a "
			 "private anonymous copy");
	if (vma->backing == COH_VMA_FILE && vma->shared && fs != COH_FS_NO_DIRTY_TRACKING) {
		/* Linux 6.5 (mm/gup.c writable_file_mapping_allowed) refuses long-term
		 * write pins of shared file mappings that need dirty tracking: all but
		 * tmpfs and hugetlbfs. */
		if (ctx->kernel_version >= 6005 && fs == COH_FS_OTHER)
			return V(COH_PIN_IN_PLACE, COH_PIN_NEVER,
				 "shared file mapping: Linux 6.5+ refuses long-term write pins of it");
		if (ctx->kernel_version >= 6005)
			return V(COH_PIN_IN_PLACE, COH_PIN_UNKNOWN,
				 "shared file mapping: Linux 6.5+ refuses long-term write pins unless the file "
				 "is on tmpfs or hugetlbfs, and its file system cannot be read here "
				 "(/proc/self/map_files needs CAP_SYS_ADMIN, the device is not in mountinfo)");
		if (ctx->kernel_version == 0)
			return V(COH_PIN_IN_PLACE, COH_PIN_UNKNOWN,
				 "shared file mapping: refused by Linux 6.5+, kernel version unknown");
	}
	if (t && t->d.zone_movable)
		return V(COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
			 "ZONE_MOVABLE memory: a long-term pin migrates it to a pinnable zone");
	if (frame == COH_FRAME_CMA)
		return V(COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
			 "frame in a CMA area: a long-term pin migrates it out first, and fails "
			 "(ENOMEM, EBUSY on some kernels) when the migration does or no other page can be had");
	if (frame == COH_FRAME_MOVABLE)
		return V(COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
			 "frame in ZONE_MOVABLE: a long-term pin migrates it to a pinnable zone first, and "
			 "fails (ENOMEM, EBUSY on some kernels) when the migration does or no other page can be had");
	if (frame == COH_FRAME_UNKNOWN)
		return V(COH_PIN_IN_PLACE, COH_PIN_UNKNOWN,
			 "this machine has CMA or ZONE_MOVABLE memory, which long-term pins migrate, and the "
			 "page's frame cannot be placed (frame numbers in pagemap need CAP_SYS_ADMIN, "
			 "CMA areas debugfs)");
	if (kind == COH_MEM_NOT_POPULATED)
		return V(COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "not populated: the pin faults in a new system page");
	if (kind == COH_MEM_SYSTEM_THP)
		return V(COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "transparent huge page: pinnable in place");
	if (kind == COH_MEM_FILE)
		return V(COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "page-cache or shared memory page");
	return V(COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "ordinary system memory");
}

struct coh_pin_verdict coh_pin_judge(const coh_context *ctx, const struct coh_vma *vma, int kind, int node,
				     const coh_target *t, unsigned facts, int fs)
{
	if (!vma || kind == COH_MEM_UNMAPPED)
		return V(COH_PIN_NEVER, COH_PIN_NEVER, "no mapping: a pin fails with EFAULT");
	if (kind == COH_MEM_VENDOR_MANAGED) {
		/* Measured on an H200 (driver 580, Linux 6.18): O_DIRECT into managed
		 * memory works (GUP faults GPU-resident pages to the host through
		 * the driver, then pins them); io_uring's long-term pin and
		 * cuMemHostRegister refuse it. */
		if (node >= 0)
			return V(COH_PIN_IN_PLACE, COH_PIN_NEVER,
				 "driver-managed memory on the host: short pins work in place, "
				 "long-term pins and host registration are refused");
		return V(COH_PIN_AFTER_MIGRATE, COH_PIN_NEVER,
			 "driver-managed memory off the host: a short pin faults it to the host first; "
			 "long-term pins and host registration are refused");
	}
	if (!vma->read && !vma->write)
		return V(COH_PIN_NEVER, COH_PIN_NEVER, "PROT_NONE mapping: GUP refuses it");
	switch (kind) {
	case COH_MEM_DEVICE_PRIVATE:
		return V(COH_PIN_AFTER_MIGRATE, COH_PIN_AFTER_MIGRATE,
			 "device-private: any pin faults the page back to system memory");
	case COH_MEM_DEVICE_COHERENT:
		return V(COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
			 "device-coherent: short pins stay, long-term pins migrate it to system memory");
	case COH_MEM_DEVICE_DAX:
		return V(COH_PIN_IN_PLACE, vma->write ? COH_PIN_IN_PLACE : COH_PIN_NEVER,
			 "device-dax: pinnable, never moves (io_uring fixed buffers refuse file-backed "
			 "memory on Linux 6.1; 6.12 leaves the check to GUP and takes it)");
	case COH_MEM_SWAPPED:
		return V(COH_PIN_AFTER_MIGRATE, COH_PIN_AFTER_MIGRATE, "swapped out: a pin swaps it in to system memory");
	case COH_MEM_UNKNOWN:
		if (vma->backing == COH_VMA_DEVICE)
			return V(COH_PIN_NEVER, COH_PIN_NEVER, "driver mapping (VM_IO/VM_PFNMAP): GUP refuses it");
		return V(COH_PIN_UNKNOWN, COH_PIN_UNKNOWN, "residency unknown");
	default:
		return judge_ordinary(ctx, vma, kind, t, facts, fs);
	}
}

/* ---------- the walk ---------- */

struct pin_out {
	struct coh_piece_out h;
	struct coh_pin_extent *out;
	int pmfd;                      /* /proc/self/pagemap, -1 not yet opened, -2 unreadable */
	int frames_state;              /* 0 not loaded, 1 loaded, -1 failed */
	struct coh_frame_map frames;
	const struct coh_vma *fs_vma;  /* the last mapping whose file system was asked */
	int fs;
};

static bool emit(struct pin_out *o, uintptr_t a, size_t len, const struct coh_extent *x, struct coh_pin_verdict v)
{
	if (o->h.n > 0) {
		struct coh_pin_extent *p = &o->out[o->h.n - 1];
		if (p->start + p->length == a && p->kind == x->kind && p->node == x->node &&
		    p->short_term == v.short_term && p->long_term == v.long_term && p->reason == v.reason) {
			p->length += len;
			return true;
		}
	}
	if (o->h.n == o->h.max)
		return false;
	o->out[o->h.n++] = (struct coh_pin_extent){ .start = a, .length = len, .kind = x->kind, .node = x->node,
						  .short_term = v.short_term, .long_term = v.long_term,
						  .reason = v.reason };
	return true;
}

/* Whether the frames of present pages matter: the machine has memory a long-term pin migrates. */
static bool frames_matter(struct pin_out *o)
{
	if (o->frames_state == 0) {
		o->frames_state = coh_frame_map_load(o->h.ctx, &o->frames) ? -1 : 1;
		if (o->frames_state < 0)
			coh_warn(o->h.ctx, "pin-query: out of memory reading the zones and CMA areas");
	}
	return o->frames_state > 0 && (o->frames.cma || o->frames.movable);
}

/* One pagemap entry's facts. */
static unsigned page_facts(struct pin_out *o, uint64_t e, bool anon_private, bool frames)
{
	if (!(e & PM_PRESENT))
		return 0;
	unsigned f = 0;
	if (anon_private && !(e & PM_FILE) && !(e & PM_EXCLUSIVE))
		f |= COH_PAGE_COW_SHARED;
	if (frames) {
		uint64_t pfn = e & PM_PFN_MASK;
		int t = pfn ? coh_frame_type(o->h.ctx, &o->frames, pfn) : COH_FRAME_UNKNOWN;
		f |= (unsigned)t << COH_PAGE_FRAME_SHIFT;
	}
	return f;
}

#define PM_BATCH 4096

/* Runs of equal facts within one piece, emitted when the facts change. */
struct facts_run {
	struct pin_out *o;
	const struct coh_extent *x;
	const struct coh_vma *m;
	uintptr_t start;
	unsigned facts;
	bool open;
};

static bool run_flush(struct facts_run *r, uintptr_t end)
{
	struct pin_out *o = r->o;
	return !r->open || emit(o, r->start, end - r->start, r->x,
				coh_pin_judge(o->h.ctx, r->m, r->x->kind, r->x->node, r->x->target, r->facts, o->fs));
}

/* The pages from a on have facts f. */
static bool run_add(struct facts_run *r, uintptr_t a, unsigned f)
{
	if (r->open && f == r->facts)
		return true;
	if (!run_flush(r, a))
		return false;
	r->start = a;
	r->facts = f;
	r->open = true;
	return true;
}

/* Present ordinary pages: cut the piece where the page facts change.  A
 * PMD-mapped huge page is one folio, mapped (and shared) as a whole and in
 * one pageblock: its first entry speaks for all of it. */
static bool facts_walk(struct pin_out *o, uintptr_t a, size_t len, const struct coh_extent *x,
		       const struct coh_vma *m, bool anon_private, bool frames)
{
	if (o->pmfd == -1) {
		o->pmfd = coh_fs_open(o->h.ctx, "/proc/self/pagemap", O_RDONLY);
		if (o->pmfd < 0)
			o->pmfd = -2;
	}
	size_t ps = o->h.ctx->page_size;
	size_t step = x->kind == COH_MEM_SYSTEM_THP ? ps * (ps / 8) : ps;   /* a PMD maps ps/8 pages */
	/* unreadable: no facts beyond the kind, frames unknown where they matter */
	unsigned blind = frames ? (unsigned)COH_FRAME_UNKNOWN << COH_PAGE_FRAME_SHIFT : 0;
	struct facts_run r = { .o = o, .x = x, .m = m };
	uint64_t buf[PM_BATCH];
	uintptr_t end = a + len;
	for (uintptr_t cur = a; cur < end;) {
		if (step > ps) {
			ssize_t got = o->pmfd >= 0 ? coh_sys_pread(o->pmfd, buf, 8, (off_t)(cur / ps) * 8) : -1;
			if (!run_add(&r, cur, got == 8 ? page_facts(o, buf[0], anon_private, frames) : blind))
				return false;
			cur = (cur | (step - 1)) + 1;
			continue;
		}
		size_t n = (end - cur) / ps < PM_BATCH ? (end - cur) / ps : PM_BATCH;
		ssize_t got = o->pmfd >= 0 ? coh_sys_pread(o->pmfd, buf, n * 8, (off_t)(cur / ps) * 8) : -1;
		if (got == (ssize_t)(n * 8) && !frames) {
			/* without frames the facts are three bits of the entry:
			 * judge once per run of equal bits, not once per page */
			const uint64_t bits = PM_PRESENT | PM_FILE | PM_EXCLUSIVE;
			for (size_t i = 0, j; i < n; i = j) {
				for (j = i + 1; j < n && !((buf[j] ^ buf[i]) & bits); j++)
					;
				if (!run_add(&r, cur + i * ps, page_facts(o, buf[i], anon_private, false)))
					return false;
			}
		} else {
			for (size_t i = 0; i < n; i++)
				if (!run_add(&r, cur + i * ps,
					     got == (ssize_t)(n * 8) ? page_facts(o, buf[i], anon_private, frames) : blind))
					return false;
		}
		cur += n * ps;
	}
	return run_flush(&r, end);
}

static bool pin_piece(void *arg, uintptr_t a, size_t len, const struct coh_extent *x, const struct coh_vma *m)
{
	struct pin_out *o = arg;
	const coh_context *ctx = o->h.ctx;
	if (m && m != o->fs_vma) {
		o->fs_vma = m;
		o->fs = COH_FS_UNKNOWN;
		/* only shared writable file mappings on Linux 6.5+ (or an unknown kernel) ask */
		if (m->backing == COH_VMA_FILE && m->shared && m->write &&
		    (ctx->kernel_version >= 6005 || ctx->kernel_version == 0))
			o->fs = coh_vma_fs(ctx, 0, m);
	}
	bool ordinary = x->kind == COH_MEM_SYSTEM || x->kind == COH_MEM_SYSTEM_THP || x->kind == COH_MEM_FILE;
	if (m && ordinary && (m->read || m->write)) {
		bool anon_private = !m->shared && x->kind != COH_MEM_FILE;
		bool frames = frames_matter(o);
		if (anon_private || frames)
			return facts_walk(o, a, len, x, m, anon_private, frames);
	}
	return emit(o, a, len, x, coh_pin_judge(ctx, m, x->kind, x->node, x->target, 0, o->fs));
}

static int pin_fill(void *buf, size_t max, void *arg)
{
	const struct coh_range_call *c = arg;
	struct pin_out o = { .out = buf, .pmfd = -1 };
	int n = coh_query_by_mapping(c->ctx, c->addr, c->len, buf, max, false, pin_piece, &o.h);
	if (o.pmfd >= 0)
		close(o.pmfd);
	if (o.frames_state > 0)
		coh_frame_map_free(&o.frames);
	return n;
}

int coh_pin_query(coh_context *ctx, const void *addr, size_t len, struct coh_pin_extent *out, size_t max,
		  size_t ext_size)
{
	struct coh_range_call c = { ctx, addr, len };
	return coh_ext_fill(out, max, ext_size, sizeof(*out), pin_fill, &c);
}

const char *coh_pin_answer_name(int answer)
{
	switch (answer) {
	case COH_PIN_UNKNOWN: return "unknown";
	case COH_PIN_IN_PLACE: return "in-place";
	case COH_PIN_AFTER_MIGRATE: return "after-migrate";
	case COH_PIN_NEVER: return "never";
	default: return NULL;
	}
}
