/* SPDX-License-Identifier: MIT */
/*
 * Host backend: every NUMA node with memory is a target (CPU-less nodes as
 * such).  Allocation is mmap + mbind(MPOL_BIND); migration is one
 * mbind(MPOL_BIND, MPOL_MF_MOVE | MPOL_MF_STRICT) per range, which moves every
 * page in one call and binds later faults to the destination.  Discovery reads
 * only the fsroot, so recorded machines can be replayed.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define HOST_HUGE (2u << 20)

const struct coh_backend_ops coh_host_backend;

struct host_backend {
	bool numa;        /* the kernel takes NUMA syscalls */
	bool one_node;    /* a single memory node: binding to it changes nothing */
};

struct host_target {
	int node;
};

/* "Node 0 MemTotal:   16214564 kB" (or /proc/meminfo's "MemTotal: ... kB" for
 * node -1) in bytes: 0, -ENOENT without the file or the key, or -EINVAL,
 * logged, for a figure that is not a size (a sign, no digits, past 2^64). */
static int node_meminfo(const coh_context *ctx, int node, const char *key, uint64_t *bytes)
{
	char buf[4096], path[64];
	if (node < 0)
		snprintf(path, sizeof(path), "/proc/meminfo");
	else
		snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	int r = coh_fs_read(ctx, path, buf, sizeof(buf));
	if (r < 0)
		return r;
	size_t kl = strlen(key);
	char *p = buf;
	while ((p = strstr(p, key)) && p[kl] != ':')
		p += kl;
	if (!p)
		return -ENOENT;
	p += kl + 1;
	while (*p == ' ' || *p == '\t')
		p++;
	char *eol = strchr(p, '\n');
	if (eol)
		*eol = '\0';
	char *unit = strstr(p, " kB");
	if (unit && !unit[3])
		*unit = '\0';
	uint64_t kb;
	if (coh_parse_u64(p, 10, &kb) || kb > UINT64_MAX / 1024) {
		coh_warn((coh_context *)ctx, "%s: %s '%.40s' is not a size in kB, ignored", path, key, p);
		return -EINVAL;
	}
	*bytes = kb * 1024;
	return 0;
}

/* Nodes whose every present page is in ZONE_MOVABLE (kmem-onlined CXL, hotplugged memory). */
static void movable_nodes(const coh_context *ctx, uint8_t *movable)
{
	int fd = coh_fs_open(ctx, "/proc/zoneinfo", O_RDONLY);
	memset(movable, 0, COH_NODE_LIMIT / 8);
	if (fd < 0)
		return;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return;
	}
	uint64_t *pm = calloc(COH_NODE_LIMIT, sizeof(uint64_t)), *po = calloc(COH_NODE_LIMIT, sizeof(uint64_t));
	char line[512], zone[32] = "";
	int node = -1;
	while (pm && po && fgets(line, sizeof(line), f)) {
		int n;
		unsigned long long v;
		if (sscanf(line, "Node %d, zone %31s", &n, zone) == 2) {
			node = n >= 0 && n < COH_NODE_LIMIT ? n : -1;
		} else if (node >= 0 && sscanf(line, " present %llu", &v) == 1) {
			if (!strcmp(zone, "Movable"))
				pm[node] += v;
			else
				po[node] += v;
		}
	}
	for (int i = 0; pm && po && i < COH_NODE_LIMIT; i++)
		if (pm[i] && !po[i])
			movable[i / 8] |= (uint8_t)(1u << (i % 8));
	free(pm);
	free(po);
	fclose(f);
}

static bool thp_available(const coh_context *ctx)
{
	char buf[128];
	if (coh_fs_read(ctx, "/sys/kernel/mm/transparent_hugepage/enabled", buf, sizeof(buf)) < 0)
		return false;
	return strstr(buf, "[never]") == NULL;
}

static void cpu_vendor(const coh_context *ctx, char *out, size_t len)
{
	char buf[4096];
	snprintf(out, len, "unknown");
	if (coh_fs_read_head(ctx, "/proc/cpuinfo", buf, sizeof(buf)) < 0)
		return;
	char *p = strstr(buf, "vendor_id");
	if (!p)
		p = strstr(buf, "cpu\t");   /* POWER: "cpu : POWER9" */
	if (!p)
		return;
	p = strchr(p, ':');
	if (!p)
		return;
	p++;
	while (*p == ' ')
		p++;
	size_t l = strcspn(p, "\n,");
	snprintf(out, len, "%.*s", (int)l, p);
}

struct node_facts {
	bool cpuless;
	bool movable;
	bool capacity_known;
	uint64_t total;
	char pmem[48];            /* "ndbus0/region1" when an NVDIMM region backs the node */
};

static int host_add(coh_context *ctx, int node, const struct node_facts *f, uint64_t caps, const char *vendor)
{
	struct coh_target_desc d = { 0 };
	struct host_target *ht = calloc(1, sizeof(*ht));
	if (!ht)
		return -ENOMEM;
	ht->node = node;
	d.kind = f->cpuless ? COH_KIND_CPULESS_NODE : COH_KIND_HOST_NODE;
	snprintf(d.name, sizeof(d.name), "host:node%d", node < 0 ? 0 : node);
	snprintf(d.vendor, sizeof(d.vendor), "%s", f->cpuless ? "unknown" : vendor);
	if (f->pmem[0])
		snprintf(d.model, sizeof(d.model), "persistent memory (NVDIMM %s), NUMA node %d", f->pmem, node);
	else if (f->cpuless)
		snprintf(d.model, sizeof(d.model), "CPU-less memory node %d", node);
	else
		snprintf(d.model, sizeof(d.model), "system memory, NUMA node %d", node < 0 ? 0 : node);
	d.numa_node = node;
	d.total_bytes = f->capacity_known ? f->total : 0;
	d.capacity_unknown = !f->capacity_known;
	d.persistent = f->pmem[0] != '\0';
	d.caps = caps;
	d.access_note = "none: the CPU is the only initiator of host memory";
	d.zone_movable = f->movable;
	d.priv = ht;
	int e = coh_target_add(ctx, &d);
	if (e)
		free(ht);
	return e;
}

#define HOST_MAX_CPUS 16384

/* Does node n list a CPU?  has_cpu (when it parsed), then nodeN/cpulist, then
 * nodeN/cpumap (older kernels and POWER have only the map): a node is CPU-less
 * only when no source names a CPU.  An empty has_cpu is a valid empty list. */
static bool node_has_cpu(const coh_context *ctx, int n, const uint8_t *withcpu)
{
	if (withcpu && ((withcpu[n / 8] >> (n % 8)) & 1))
		return true;
	char buf[4096], path[64];
	uint8_t *cpus = calloc(1, HOST_MAX_CPUS / 8);
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpulist", n);
	if (cpus && coh_fs_read(ctx, path, buf, sizeof(buf)) >= 0) {
		int c = coh_parse_list(buf, cpus, HOST_MAX_CPUS);
		if (c < 0)
			coh_warn((coh_context *)ctx, "%s: '%.40s' is not a CPU list, ignored", path, buf);
		if (c > 0) {
			free(cpus);
			return true;
		}
	}
	free(cpus);
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/cpumap", n);
	if (coh_fs_read(ctx, path, buf, sizeof(buf)) < 0)
		return false;
	/* comma-separated 32-bit hex words: "00000000,0000000f" */
	bool any = false;
	for (const char *c = buf; *c; c++) {
		if (*c == ',')
			continue;
		if (!((*c >= '0' && *c <= '9') || (*c >= 'a' && *c <= 'f') || (*c >= 'A' && *c <= 'F'))) {
			coh_warn((coh_context *)ctx, "%s: '%.40s' is not a CPU mask, ignored", path, buf);
			return false;
		}
		any |= *c != '0';
	}
	return any;
}

/* kmem-onlined device-dax whose parent is an NVDIMM region (.../ndbusX/regionY/daxY.Z):
 * that node's memory is persistent.  Records "ndbusX/regionY" per node. */
static void pmem_nodes(const coh_context *ctx, char (*pmem)[48])
{
	DIR *d = coh_fs_opendir(ctx, "/sys/bus/dax/devices");
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[320], link[512], buf[32];
		if (strncmp(de->d_name, "dax", 3) || strlen(de->d_name) > 32)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%s/driver", de->d_name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0) {
			const char *drv = strrchr(link, '/');
			if (strcmp(drv ? drv + 1 : link, "kmem"))
				continue;   /* devdax mode: not system RAM */
		}
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%s/target_node", de->d_name);
		uint64_t node;
		if (coh_fs_read(ctx, path, buf, sizeof(buf)) < 0 || coh_parse_u64(buf, 10, &node) ||
		    node >= COH_NODE_LIMIT)
			continue;
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%s", de->d_name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) <= 0)
			continue;
		const char *bus = strstr(link, "/ndbus");
		if (!bus)
			continue;
		int bl = (int)strcspn(bus + 1, "/");
		const char *reg = bus + 1 + bl;
		int rl = *reg == '/' ? (int)strcspn(reg + 1, "/") : 0;
		snprintf(pmem[node], sizeof(pmem[node]), "%.*s/%.*s", bl < 20 ? bl : 20, bus + 1,
			 rl < 20 ? rl : 20, reg + 1);
	}
	closedir(d);
}

static int host_discover(coh_context *ctx, void **priv)
{
	struct host_backend *hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	*priv = hb;
	hb->numa = coh_ctx_replay(ctx) ? true : numa_available() >= 0;

	uint64_t caps = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_QUERY | COH_CAP_PIN_QUERY |
			COH_CAP_FORK_COPY | COH_CAP_FORK_SHARE | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
			COH_CAP_FORK_KERNEL | COH_CAP_SHARE;
	if (hb->numa)
		caps |= COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_MIGRATE_STICKY | COH_CAP_ADVISE;
	if (thp_available(ctx))
		caps |= COH_CAP_HUGE_PAGES;

	char vendor[64];
	cpu_vendor(ctx, vendor, sizeof(vendor));

	uint8_t present[COH_NODE_LIMIT / 8] = { 0 }, withcpu[COH_NODE_LIMIT / 8] = { 0 };
	uint8_t withmem[COH_NODE_LIMIT / 8] = { 0 }, movable[COH_NODE_LIMIT / 8];
	char buf[4096];
	bool have_mem_list = false, have_cpu_list = false;
	DIR *d = coh_fs_opendir(ctx, "/sys/devices/system/node");
	if (!d) {
		/* No NUMA in this kernel: the whole of memory is one target. */
		hb->numa = false;
		caps &= ~(uint64_t)(COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_MIGRATE_STICKY | COH_CAP_ADVISE);
		coh_info(ctx, "host: no NUMA nodes in sysfs, one target for all memory");
		struct node_facts f = { 0 };
		f.capacity_known = node_meminfo(ctx, -1, "MemTotal", &f.total) == 0;
		return host_add(ctx, -1, &f, caps, vendor);
	}
	struct dirent *de;
	while ((de = readdir(d))) {
		int id;
		char tail;
		if (sscanf(de->d_name, "node%d%c", &id, &tail) == 1 && id >= 0 && id < COH_NODE_LIMIT)
			present[id / 8] |= (uint8_t)(1u << (id % 8));
	}
	closedir(d);
	if (coh_fs_read(ctx, "/sys/devices/system/node/has_memory", buf, sizeof(buf)) >= 0 &&
	    coh_parse_list(buf, withmem, COH_NODE_LIMIT) >= 0)
		have_mem_list = true;
	if (coh_fs_read(ctx, "/sys/devices/system/node/has_cpu", buf, sizeof(buf)) >= 0 &&
	    coh_parse_list(buf, withcpu, COH_NODE_LIMIT) >= 0)
		have_cpu_list = true;
	movable_nodes(ctx, movable);

	char (*pmem)[48] = calloc(COH_NODE_LIMIT, sizeof(*pmem));
	if (!pmem)
		return -ENOMEM;
	pmem_nodes(ctx, pmem);

	int added = 0, err = 0;
	for (int n = 0; n < COH_NODE_LIMIT && !err; n++) {
		if (!(present[n / 8] & (1u << (n % 8))))
			continue;
		struct node_facts f = { .movable = (movable[n / 8] >> (n % 8)) & 1 };
		int mr = node_meminfo(ctx, n, "MemTotal", &f.total);
		f.capacity_known = mr == 0;
		/* Memory: listed in has_memory, or a MemTotal above 0; when neither
		 * source answers the node is kept, its capacity unknown. */
		bool mem;
		if (have_mem_list && ((withmem[n / 8] >> (n % 8)) & 1))
			mem = true;
		else if (mr == 0)
			mem = f.total > 0;
		else
			mem = !have_mem_list;
		if (!mem)
			continue;
		if (!f.capacity_known)
			coh_warn(ctx, "host: node%d: capacity unknown (no usable MemTotal in its meminfo)", n);
		f.cpuless = !node_has_cpu(ctx, n, have_cpu_list ? withcpu : NULL);
		snprintf(f.pmem, sizeof(f.pmem), "%s", pmem[n]);
		err = host_add(ctx, n, &f, caps, vendor);
		if (!err)
			added++;
	}
	free(pmem);
	if (err)
		return err;
	hb->one_node = added == 1;
	return added;
}

static void host_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	free(priv);
}

static void host_target_fini(coh_target *t, void *priv)
{
	(void)t;
	free(priv);
}

static int host_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	const struct host_target *ht = coh_target_priv(t);
	return node_meminfo(coh_target_context(t), ht->node, "MemFree", free_bytes);
}

static bool numa_on(const coh_target *t)
{
	const struct host_backend *hb = coh_target_backend_priv(t);
	return hb->numa;
}

/* A shareable allocation or an import: the memfd behind it (the record's
 * priv), kept open so that it can be exported again. */
struct host_share {
	int fd;
};

/* A sealed memfd of size bytes (it can neither shrink nor grow, so no
 * importer's mapping runs past its end), mapped shared at an address aligned
 * to align: 0, *out and *priv, or -errno with nothing left. */
static int memfd_map(size_t size, size_t align, void **out, void **priv)
{
	struct host_share *hs = malloc(sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	hs->fd = coh_sys_memfd_create("libcoherent", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	int e = hs->fd < 0 ? hs->fd : coh_sys_ftruncate(hs->fd, (off_t)size);
	if (!e)
		e = coh_sys_fcntl(hs->fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
	void *res = NULL, *p = NULL;
	if (!e)
		e = coh_sys_mmap_aligned(size, align, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (!e) {
		e = coh_sys_mmap(res, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, hs->fd, 0, &p);
		if (e)
			coh_sys_munmap_own(res, size);
	}
	if (e) {
		if (hs->fd >= 0)
			close(hs->fd);
		free(hs);
		return e;
	}
	*out = p;
	*priv = hs;
	return 0;
}

static void share_drop(void *priv)
{
	struct host_share *hs = priv;
	if (!hs)
		return;
	close(hs->fd);
	free(hs);
}

static int host_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	const struct host_target *ht = coh_target_priv(t);
	coh_context *ctx = coh_target_context(t);
	bool shared = coh_backend_fork_policy(flags) == COH_FORK_SHARE;
	if ((flags & COH_ALLOC_HUGE) && align < HOST_HUGE && size >= HOST_HUGE)
		align = HOST_HUGE;
	void *p;
	int e;
	if (flags & COH_ALLOC_SHAREABLE)
		e = memfd_map(size, align, &p, priv);
	else
		e = coh_sys_mmap_aligned(size, align, PROT_READ | PROT_WRITE,
					 (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_NORESERVE, &p);
	if (e)
		return e;

	if (flags & COH_ALLOC_HUGE)
		e = coh_sys_madvise(p, size, MADV_HUGEPAGE);
	else if (flags & COH_ALLOC_NOHUGE)
		e = coh_sys_madvise(p, size, MADV_NOHUGEPAGE);
	const struct host_backend *hb = coh_target_backend_priv(t);
	if (!e && hb->numa && !hb->one_node)
		e = coh_sys_mbind_node(p, size, ht->node, MPOL_BIND, 0);
	if (!e && (flags & COH_ALLOC_POPULATE)) {
		e = coh_sys_madvise(p, size, MADV_POPULATE_WRITE);
		if (e == -EINVAL) {   /* kernels before 5.14 */
			for (size_t off = 0; off < size; off += coh_ctx_page_size(ctx))
				((volatile char *)p)[off] = 0;
			e = 0;
		}
	}
	if (e) {
		coh_sys_munmap(p, size);
		share_drop(*priv);
		*priv = NULL;
		return e;
	}
	*out = p;
	return 0;
}

static int host_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)t;
	int e = coh_sys_munmap(ptr, size);
	if (!e)
		share_drop(priv);   /* the memory lives on while an importer maps it */
	return e;
}

static int host_share_export(const struct coh_alloc_rec *rec, struct coh_handle *h)
{
	const struct host_share *hs = rec->priv;
	if (!hs)
		return -EINVAL;   /* private memory: only COH_ALLOC_SHAREABLE memory has a memfd */
	struct stat st;
	int e = coh_sys_fstat(hs->fd, &st);
	if (e)
		return e;
	int fd = coh_sys_fcntl(hs->fd, F_DUPFD_CLOEXEC, 0);
	if (fd < 0)
		return fd;
	h->kind = COH_HANDLE_MEMFD;
	h->length = rec->length;
	h->offset = 0;
	h->object_size = (uint64_t)st.st_size;
	h->fd = fd;
	return 0;
}

/* A memfd handle: the whole file, which must be sealed against shrinking
 * (else the exporter could truncate it under the importer: SIGBUS) and be
 * exactly as large as the handle says. */
static int host_share_import(coh_target *t, const struct coh_handle *h, void **out, void **priv)
{
	if (h->kind != COH_HANDLE_MEMFD)
		return -ENODEV;
	size_t ps = coh_ctx_page_size(coh_target_context(t));
	if (h->offset || h->length != h->object_size || h->length % ps || h->dev || h->chunk || h->serial)
		return -EINVAL;
	struct stat st;
	int e = coh_sys_fstat(h->fd, &st);
	if (e)
		return e;
	if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != h->object_size)
		return -EINVAL;   /* not the memfd it claims to be, or another size */
	int seals = coh_sys_fcntl(h->fd, F_GET_SEALS, 0);
	if (seals < 0)
		return seals;   /* -EINVAL: not a memfd, it has no seals */
	if (!(seals & F_SEAL_SHRINK))
		return -EINVAL;
	struct host_share *hs = malloc(sizeof(*hs));
	if (!hs)
		return -ENOMEM;
	hs->fd = coh_sys_fcntl(h->fd, F_DUPFD_CLOEXEC, 0);
	if (hs->fd < 0) {
		e = hs->fd;
		free(hs);
		return e;
	}
	void *p;
	e = coh_sys_mmap(NULL, (size_t)h->length, PROT_READ | PROT_WRITE, MAP_SHARED, hs->fd, 0, &p);
	if (e) {
		share_drop(hs);
		return e;
	}
	*out = p;
	*priv = hs;
	return 0;
}

/* Adopt anonymous private memory only: the kernel can move it and change its policy. */
static int host_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)priv;
	(void)flags;
	return coh_range_anon_private(coh_target_context(t), addr, len);
}

static int host_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	if (!numa_on(t) || !rec->placed)
		return 0;   /* the caller's own policy was never touched */
	/* Back to the process's default policy; the pages stay where they are. */
	return coh_sys_mbind((void *)rec->start, rec->length, MPOL_DEFAULT, NULL, 0, 0);
}

static int host_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
			unsigned flags)
{
	(void)rec;
	(void)flags;
	if (coh_target_backend(dst) != coh_host_backend.name)
		return -EOPNOTSUPP;   /* host memory moves between host nodes only */
	if (!numa_on(dst))
		return -EOPNOTSUPP;
	const struct host_target *ht = coh_target_priv(dst);
	int e = coh_sys_mbind_node(addr, len, ht->node, MPOL_BIND, MPOL_MF_MOVE | MPOL_MF_STRICT);
	/* EIO: some pages could not move (pinned, shared with another process);
	 * they stay intact where they were. */
	return e == -EIO ? -EBUSY : e;
}

static int host_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t)
{
	if (!numa_on(rec->target))
		return -EOPNOTSUPP;
	switch (advice) {
	case COH_ADVISE_PREFERRED_LOCATION:
		if (coh_target_backend(t) != coh_host_backend.name)
			return -EOPNOTSUPP;
		return coh_sys_mbind_node(addr, len, ((const struct host_target *)coh_target_priv(t))->node,
			       MPOL_PREFERRED, 0);
	case COH_ADVISE_UNSET_PREFERRED_LOCATION:
		/* Back to where later faults went before: the home node, if any. */
		if (!rec->home)
			return coh_sys_mbind(addr, len, MPOL_DEFAULT, NULL, 0, 0);
		if (coh_target_backend(rec->home) != coh_host_backend.name)
			return -EOPNOTSUPP;
		return coh_sys_mbind_node(addr, len, ((const struct host_target *)coh_target_priv(rec->home))->node,
			       MPOL_BIND, 0);
	default:
		/* Every CPU reaches every node, and Linux does not replicate pages. */
		return -EOPNOTSUPP;
	}
}

const struct coh_backend_ops coh_host_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "host",
	.discover = host_discover,
	.fini = host_fini,
	.target_fini = host_target_fini,
	.free_bytes = host_free_bytes,
	.alloc = host_alloc,
	.free = host_free,
	.adopt = host_adopt,
	.release = host_release,
	.migrate = host_migrate,
	.advise = host_advise,
	.share_export = host_share_export,
	.share_import = host_share_import,
};
