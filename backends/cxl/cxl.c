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
 * so allocating and freeing make no system call for the default fork policy.
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
 */
#include <dirent.h>
#include <numaif.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

const struct coh_backend_ops coh_cxl_backend;

/* A device's allocation unit when sysfs does not say (the kernel's default). */
#define CXL_DEFAULT_ALIGN (2u << 20)

/* Chunk states (one byte per `align` bytes of the device). */
#define CH_FREE 0
#define CH_DEV 1      /* in use, the data on the device */
#define CH_HOST 2     /* in use, the data moved to host memory; the chunk stays reserved */

struct cxl_target {
	char dev[32];         /* "dax0.0" */
	uint64_t align;
	int target_node;
	/* allocation, guarded by lock */
	pthread_mutex_t lock;
	int fd;               /* opened at the first allocation */
	pid_t pid;            /* the process the window belongs to */
	uint8_t *base;        /* the device's window, NULL until the first allocation */
	size_t nchunks, hint, nused;
	uint8_t *state;       /* CH_* per chunk */
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
	char mems[64];        /* "mem0,mem1" */
};

struct cxl_bus {
	struct cxl_mem mem[32];
	int nmem;
	struct cxl_region reg[32];
	int nreg;
};

static const char *last_part(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

/* The memdev behind an endpoint decoder: decoder -> its endpoint port -> uport. */
static void decoder_mem(coh_context *ctx, const char *decoder, char *out, size_t len)
{
	char path[128], link[512];
	out[0] = '\0';
	snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.40s", decoder);
	if (coh_fs_readlink(ctx, path, link, sizeof(link)) <= 0)
		return;
	char *ep = strstr(link, "/endpoint");
	if (!ep)
		return;
	char *end = strchr(ep + 1, '/');
	if (end)
		*end = '\0';
	snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.40s/uport", ep + 1);
	if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0)
		snprintf(out, len, "%.15s", last_part(link));
}

static void cxl_bus_read(coh_context *ctx, struct cxl_bus *bus)
{
	DIR *d = coh_fs_opendir(ctx, "/sys/bus/cxl/devices");
	if (!d)
		return;
	char names[128][24];
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)) && n < 128)
		if (!strncmp(de->d_name, "mem", 3) || !strncmp(de->d_name, "region", 6))
			snprintf(names[n++], sizeof(names[0]), "%.23s", de->d_name);
	closedir(d);
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	char path[160], link[512], buf[64];
	for (int i = 0; i < n; i++) {
		const char *nm = names[i];
		if (!strncmp(nm, "mem", 3) && bus->nmem < 32) {
			struct cxl_mem *m = &bus->mem[bus->nmem++];
			snprintf(m->name, sizeof(m->name), "%.15s", nm);
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s", nm);
			if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0) {
				char *sl = strrchr(link, '/');
				if (sl) {
					*sl = '\0';
					snprintf(m->bdf, sizeof(m->bdf), "%.15s", last_part(link));
				}
			}
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s/ram/size", nm);
			coh_fs_read_u64(ctx, path, &m->ram);
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s/pmem/size", nm);
			coh_fs_read_u64(ctx, path, &m->pmem);
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s/serial", nm);
			coh_fs_read_u64(ctx, path, &m->serial);
			m->node = coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/cxl/devices/%s/numa_node", nm) > 0 ? atoi(buf)
														 : -1;
		} else if (!strncmp(nm, "region", 6) && bus->nreg < 32) {
			struct cxl_region *r = &bus->reg[bus->nreg++];
			snprintf(r->name, sizeof(r->name), "%.15s", nm);
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s/size", nm);
			coh_fs_read_u64(ctx, path, &r->size);
			snprintf(path, sizeof(path), "/sys/bus/cxl/devices/%.23s/resource", nm);
			coh_fs_read_u64(ctx, path, &r->hpa);
			if (coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/cxl/devices/%s/mode", nm) > 0)
				snprintf(r->mode, sizeof(r->mode), "%.7s", buf);
			r->ways = coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/cxl/devices/%s/interleave_ways", nm) > 0
					  ? atoi(buf) : 0;
			for (int k = 0; k < 16; k++) {
				char dec[48], mem[16];
				if (coh_fs_readf(ctx, dec, sizeof(dec), "/sys/bus/cxl/devices/%s/target%d", nm, k) <= 0)
					break;
				decoder_mem(ctx, dec, mem, sizeof(mem));
				size_t used = strlen(r->mems);
				if (mem[0] && used + strlen(mem) + 2 < sizeof(r->mems))
					snprintf(r->mems + used, sizeof(r->mems) - used, "%s%s", used ? "," : "", mem);
			}
		}
	}
}

static const struct cxl_region *region_named(const struct cxl_bus *bus, const char *name)
{
	for (int i = 0; i < bus->nreg; i++)
		if (!strcmp(bus->reg[i].name, name))
			return &bus->reg[i];
	return NULL;
}

static const struct cxl_mem *mem_named(const struct cxl_bus *bus, const char *name)
{
	for (int i = 0; i < bus->nmem; i++)
		if (!strcmp(bus->mem[i].name, name))
			return &bus->mem[i];
	return NULL;
}

/* "region0 (ram, 16.0 GiB, mem0 0000:0d:00.0 <pci name>)" for a dax device's parent region. */
static void region_words(coh_context *ctx, const struct cxl_bus *bus, const struct cxl_region *r, char *out,
			 size_t len)
{
	char mems[256] = "", first[16];
	const char *p = r->mems;
	while (*p) {
		size_t k = strcspn(p, ",");
		snprintf(first, sizeof(first), "%.*s", (int)(k < 15 ? k : 15), p);
		const struct cxl_mem *m = mem_named(bus, first);
		char pci[128] = "";
		if (m && m->bdf[0])
			coh_pci_name(ctx, m->bdf, pci, sizeof(pci));
		size_t used = strlen(mems);
		if (used < sizeof(mems))
			snprintf(mems + used, sizeof(mems) - used, "%s%.15s%s%.15s%s%.64s", used ? ", " : "", first,
				 m ? " " : "", m ? m->bdf : "", pci[0] ? " " : "", pci);
		p += k + (p[k] == ',');
	}
	snprintf(out, len, "CXL %s (%s%s%.1f GiB: %s)", r->name, r->mode, r->mode[0] ? ", " : "",
		 (double)r->size / (1 << 30), mems[0] ? mems : "no memory device named");
}

/* Lines for the backend's note: every memdev and region. */
static void bus_notes(coh_context *ctx, const struct cxl_bus *bus)
{
	for (int i = 0; i < bus->nmem; i++) {
		const struct cxl_mem *m = &bus->mem[i];
		char pci[128] = "";
		if (m->bdf[0])
			coh_pci_name(ctx, m->bdf, pci, sizeof(pci));
		coh_backend_note(ctx, "%s: CXL memory device %s %s, ram %.1f GiB, pmem %.1f GiB, serial %#llx, near node %d",
				 m->name, m->bdf[0] ? m->bdf : "?", pci, (double)m->ram / (1 << 30),
				 (double)m->pmem / (1 << 30), (unsigned long long)m->serial, m->node);
	}
	for (int i = 0; i < bus->nreg; i++) {
		const struct cxl_region *r = &bus->reg[i];
		if (r->size == 0 || r->hpa == UINT64_MAX) {
			/* made but not configured (no size, no address window yet) */
			coh_backend_note(ctx, "%s: CXL region, not configured (no size or address yet)", r->name);
			continue;
		}
		coh_backend_note(ctx, "%s: CXL region, %s%s%.1f GiB at %#llx, %d-way over %s", r->name, r->mode,
				 r->mode[0] ? ", " : "", (double)r->size / (1 << 30), (unsigned long long)r->hpa, r->ways,
				 r->mems[0] ? r->mems : "?");
	}
}

static int dax_discover(coh_context *ctx, struct cxl_backend *cb, const struct cxl_bus *bus);

static int cxl_discover(coh_context *ctx, void **priv)
{
	struct cxl_backend *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	*priv = cb;
	struct cxl_bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	cxl_bus_read(ctx, bus);
	bus_notes(ctx, bus);
	int r = dax_discover(ctx, cb, bus);
	free(bus);
	return r;
}

/* Remembers what node's memory is, for describe_node (the host backend makes its target). */
static int kmem_node(struct cxl_backend *cb, int node, const char *words, const char *dev)
{
	struct cxl_node *nn = realloc(cb->nodes, (size_t)(cb->nnodes + 1) * sizeof(*nn));
	if (!nn)
		return -ENOMEM;
	cb->nodes = nn;
	struct cxl_node *n = &nn[cb->nnodes++];
	n->node = node;
	snprintf(n->model, sizeof(n->model), "%.200s, system RAM through %.31s", words, dev);
	return 0;
}

static int cxl_describe_node(coh_context *ctx, void *priv, int node, struct coh_node_desc *d)
{
	(void)ctx;
	const struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->nnodes; i++)
		if (cb->nodes[i].node == node) {
			snprintf(d->vendor, sizeof(d->vendor), "CXL");
			snprintf(d->model, sizeof(d->model), "%.*s", (int)sizeof(d->model) - 1, cb->nodes[i].model);
			return 0;
		}
	return -ENOENT;
}

static int dax_discover(coh_context *ctx, struct cxl_backend *cb, const struct cxl_bus *bus)
{
	DIR *d = coh_fs_opendir(ctx, "/sys/bus/dax/devices");
	if (!d)
		return 0;   /* no device-dax support or no device */
	struct dirent *de;
	int added = 0, err = 0;
	char (*names)[32] = NULL;
	int n = 0, cap = 0;
	while ((de = readdir(d)))
		if (!strncmp(de->d_name, "dax", 3)) {
			if (n == cap) {
				int nc = cap ? cap * 2 : 16;
				char(*nn)[32] = realloc(names, (size_t)nc * sizeof(*names));
				if (!nn) {
					free(names);
					closedir(d);
					return -ENOMEM;
				}
				names = nn;
				cap = nc;
			}
			snprintf(names[n++], sizeof(names[0]), "%.31s", de->d_name);
		}
	closedir(d);
	/* readdir order is arbitrary: sort by name for stable target order */
	if (n > 1)
		qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	for (int i = 0; i < n && !err; i++) {
		const char *name = names[i];
		char path[160], link[512], driver[64] = "";
		/* names are at most 31 characters (see above) */
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/driver", name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0)
			snprintf(driver, sizeof(driver), "%.63s", last_part(link));
		uint64_t size = 0, align = CXL_DEFAULT_ALIGN;
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/size", name);
		coh_fs_read_u64(ctx, path, &size);
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/align", name);
		coh_fs_read_u64(ctx, path, &align);
		char buf[32];
		int tnode = -1;
		if (coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/dax/devices/%.31s/target_node", name) > 0)
			tnode = atoi(buf);
		/* the parent (CXL region, nd region or hmem platform device) from the device's own link */
		char parent[128] = "";
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s", name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0) {
			char *last = strrchr(link, '/');
			if (last) {
				*last = '\0';
				char *up = strrchr(link, '/');
				/* CXL: .../regionR/dax_regionR/daxR.0; nd: .../regionN/daxN.M/daxN.K; hmem: .../hmem.N/daxN.M */
				if (up && !strncmp(up + 1, "dax", 3)) {
					*up = '\0';
					up = strrchr(link, '/');
				}
				snprintf(parent, sizeof(parent), "%.127s", up ? up + 1 : link);
			}
		}
		const struct cxl_region *reg = region_named(bus, parent);
		char words[512] = "";
		if (reg)
			region_words(ctx, bus, reg, words, sizeof(words));
		if (!strcmp(driver, "kmem")) {
			/* system RAM on a (CPU-less) node: the host backend serves it; say where it comes from */
			if (reg && tnode >= 0 && (err = kmem_node(cb, tnode, words, name)))
				break;
			coh_backend_note(ctx, "%s: system RAM (kmem) on node %d%s%.200s: served as host:node%d", name, tnode,
					 reg ? ", " : "", words, tnode);
			continue;
		}
		if (size == 0)
			continue;   /* an unconfigured seed device */
		coh_backend_note(ctx, "%s: device-dax, %.1f GiB%s%.200s: target cxl:%s", name, (double)size / (1 << 30),
				 reg ? ", " : parent[0] ? " under " : "", reg ? words : parent, name);
		struct cxl_target *ct = calloc(1, sizeof(*ct));
		if (!ct) {
			err = -ENOMEM;
			break;
		}
		snprintf(ct->dev, sizeof(ct->dev), "%.31s", name);
		ct->align = align ? align : CXL_DEFAULT_ALIGN;
		ct->target_node = tnode;
		ct->fd = -1;
		pthread_mutex_init(&ct->lock, NULL);
		ct->nchunks = (size_t)(size / ct->align);
		size_t nc = ct->nchunks ? ct->nchunks : 1;
		ct->state = calloc(nc, 1);
		ct->forks = calloc(nc, 1);
		ct->run = calloc(nc, sizeof(*ct->run));
		if (!ct->state || !ct->forks || !ct->run) {
			free(ct->state);
			free(ct->forks);
			free(ct->run);
			free(ct);
			err = -ENOMEM;
			break;
		}
		struct coh_target_desc desc = { 0 };
		desc.kind = COH_KIND_DEVICE_DAX;
		snprintf(desc.name, sizeof(desc.name), "cxl:%.31s", name);
		snprintf(desc.vendor, sizeof(desc.vendor), "%s", reg ? "CXL" : "Linux device-dax");
		char full[640];
		snprintf(full, sizeof(full), "device-dax %.31s%s%.500s, align %llu KiB, node %d", name,
			 reg ? " of " : parent[0] ? " under " : "", reg ? words : parent, (unsigned long long)(align >> 10),
			 tnode);
		snprintf(desc.model, sizeof(desc.model), "%.*s", (int)sizeof(desc.model) - 1, full);
		if (reg && reg->mems[0]) {
			char first[16];
			snprintf(first, sizeof(first), "%.*s", (int)strcspn(reg->mems, ","), reg->mems);
			const struct cxl_mem *m = mem_named(bus, first);
			if (m && m->bdf[0])
				snprintf(desc.pci_address, sizeof(desc.pci_address), "%.15s", m->bdf);
		}
		desc.numa_node = -1;   /* not a node one can bind to; its affinity is in the model */
		desc.total_bytes = size;
		desc.caps = COH_CAP_ALLOC | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_MIGRATE_STICKY | COH_CAP_QUERY |
			    COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_SHARE | COH_CAP_FORK_EXCLUDE |
			    COH_CAP_FORK_ZERO | COH_CAP_FORK_KERNEL;
		desc.priv = ct;
		err = coh_target_add(ctx, &desc);
		if (err) {
			free(ct->state);
			free(ct->forks);
			free(ct->run);
			free(ct);
			break;
		}
		if (cb->n == cb->cap) {
			int ncap = cb->cap ? cb->cap * 2 : 8;
			struct cxl_target **nt = realloc(cb->ts, (size_t)ncap * sizeof(*nt));
			if (!nt) {
				err = -ENOMEM;   /* the target is the context's now: it frees it */
				break;
			}
			cb->ts = nt;
			cb->cap = ncap;
		}
		cb->ts[cb->n++] = ct;
		added++;
	}
	free(names);
	return err ? err : added;
}

static void cxl_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	free(cb->ts);
	free(cb->nodes);
	free(cb);
}

static struct cxl_target *ct_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static bool is_cxl(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_cxl_backend.name;
}

/* Opens the device and maps its window (first allocation); the caller holds ct->lock. */
static int window(coh_target *t, struct cxl_target *ct)
{
	if (ct->base)
		return ct->pid == getpid() ? 0 : -ECHILD;   /* the window belongs to the process that made it */
	char path[48];
	snprintf(path, sizeof(path), "/dev/%s", ct->dev);
	int fd = coh_fs_open(coh_target_context(t), path, O_RDWR);
	if (fd < 0)
		return fd;
	size_t a = ct->align, len = ct->nchunks * a;
	/* an aligned virtual range first: device-dax faults need VA aligned like the offset */
	void *res, *p;
	int e = coh_sys_mmap_aligned(len, a, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (e) {
		close(fd);
		return e;
	}
	e = coh_sys_mmap(res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0, &p);
	if (!e)
		e = coh_sys_madvise(p, len, MADV_DONTFORK);   /* only allocations that share go to a child */
	if (e) {
		coh_sys_munmap(res, len);
		close(fd);
		return e;
	}
	ct->fd = fd;
	ct->pid = getpid();
	ct->base = p;
	return 0;
}

/* First fit of n free chunks from the hint, wrapping once; -1 when none. */
static long find_run(struct cxl_target *ct, size_t n)
{
	for (int pass = 0; pass < 2; pass++) {
		size_t from = pass ? 0 : ct->hint, to = pass ? ct->hint : ct->nchunks;
		size_t run = 0;
		for (size_t i = from; i < to; i++) {
			run = ct->state[i] == CH_FREE ? run + 1 : 0;
			if (run == n)
				return (long)(i + 1 - n);
		}
	}
	return -1;
}

static bool policy_forks(int policy)
{
	return policy == COH_FORK_SHARE || policy == COH_FORK_KERNEL;
}

static int cxl_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	struct cxl_target *ct = ct_of(t);
	size_t a = ct->align, n = (size + a - 1) / a;
	if (align > a)
		return -EINVAL;   /* the device's own alignment is the only one it offers */
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ct->lock);
	int e = window(t, ct);
	long first = e ? -1 : find_run(ct, n);
	if (!e && first < 0)
		e = -ENOMEM;
	if (e)
		goto out;
	uint8_t *p = ct->base + (size_t)first * a;
	int policy = coh_backend_fork_policy(flags);
	if (policy_forks(policy) && (e = coh_sys_madvise(p, n * a, MADV_DOFORK)))
		goto out;
	memset(ct->state + first, CH_DEV, n);
	ct->run[first] = (uint32_t)n;
	ct->forks[first] = policy_forks(policy);
	ct->nused += n;
	ct->hint = (size_t)first + n < ct->nchunks ? (size_t)first + n : 0;
	*out = p;
out:
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* The allocation's first chunk, or -1 (ct->lock held). */
static long first_chunk(const struct cxl_target *ct, const void *ptr)
{
	if (!ct->base || (uint8_t *)ptr < ct->base)
		return -1;
	size_t off = (size_t)((uint8_t *)ptr - ct->base);
	if (off % ct->align || off / ct->align >= ct->nchunks)
		return -1;
	long c = (long)(off / ct->align);
	return ct->state[c] != CH_FREE && ct->run[c] ? c : -1;
}

/* Maps the device back over chunks [c, c+n) of the window (their data is
 * already in the device), DONTFORK like the rest of the window unless forks. */
static int remap_device(struct cxl_target *ct, size_t c, size_t n, bool forks)
{
	void *p;
	size_t a = ct->align;
	int e = coh_sys_mmap(ct->base + c * a, n * a, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd,
			     (off_t)(c * a), &p);
	if (!e && !forks)
		e = coh_sys_madvise(p, n * a, MADV_DONTFORK);
	return e;
}

static int cxl_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)priv;
	struct cxl_target *ct = ct_of(t);
	if (ct->base && ct->pid != getpid())
		return coh_sys_munmap(ptr, (size + ct->align - 1) / ct->align * ct->align);   /* a child's view */
	pthread_mutex_lock(&ct->lock);
	long c = first_chunk(ct, ptr);
	int e = c < 0 ? -ENOENT : 0;
	if (!e) {
		size_t n = ct->run[c];
		bool host = false;
		for (size_t i = (size_t)c; i < (size_t)c + n; i++)
			host |= ct->state[i] == CH_HOST;
		/* the window gets the device back where host memory replaced it */
		if (host)
			e = remap_device(ct, (size_t)c, n, false);
		else if (ct->forks[c])
			e = coh_sys_madvise(ptr, n * ct->align, MADV_DONTFORK);
		memset(ct->state + c, CH_FREE, n);
		ct->run[c] = 0;
		ct->forks[c] = 0;
		ct->nused -= n;
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* ---------------- migration: copy and remap ---------------- */

/* The kernel's fork controls for host memory that replaced chunks of an
 * allocation with this policy (set from scratch: the policy may change). */
static int host_fork_controls(void *p, size_t len, int policy, bool shared)
{
	int e = coh_sys_madvise(p, len, MADV_DOFORK);
	if (!e && !shared)
		e = coh_sys_madvise(p, len, MADV_KEEPONFORK);
	if (!e && policy == COH_FORK_EXCLUDE)
		e = coh_sys_madvise(p, len, MADV_DONTFORK);
	if (!e && policy == COH_FORK_ZERO && !shared)
		e = coh_sys_madvise(p, len, MADV_WIPEONFORK);
	return e;   /* COPY: copy-on-write; SHARE, KERNEL: as mapped */
}

static int to_host(const struct coh_alloc_rec *rec, struct cxl_target *ct, size_t c, size_t n, int node)
{
	size_t a = ct->align, len = n * a;
	uint8_t *src = ct->base + c * a;
	void *tmp;
	/* memory allocated to be shared stays shared on the host; aligned like
	 * the device, so huge pages can back it and move whole */
	int e = coh_sys_mmap_aligned(len, a, PROT_READ | PROT_WRITE, rec->shared ? MAP_SHARED : MAP_PRIVATE, &tmp);
	if (e)
		return e;
	if (!rec->shared)
		coh_sys_madvise(tmp, len, MADV_HUGEPAGE);   /* a hint: fewer faults to populate and to free */
	e = coh_sys_mbind_node(tmp, len, node, MPOL_BIND, 0);
	if (e == -ENOSYS || e == -EPERM)
		e = 0;   /* a kernel without NUMA: there is one node anyway */
	if (!e) {
		coh_sys_madvise(tmp, len, MADV_POPULATE_WRITE);   /* faults in bulk; an old kernel faults in memcpy */
		memcpy(tmp, src, len);
		e = host_fork_controls(tmp, len, rec->fork_policy, rec->shared);
	}
	void *got;
	if (!e)
		e = coh_sys_mremap(tmp, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, src, &got);
	if (e) {
		coh_sys_munmap(tmp, len);   /* the data is still where it was */
		return e;
	}
	memset(ct->state + c, CH_HOST, n);
	return 0;
}

static int to_device(const struct coh_alloc_rec *rec, struct cxl_target *ct, size_t c, size_t n)
{
	size_t a = ct->align, len = n * a;
	/* copy into the device's chunks through a second, aligned mapping */
	void *res, *dev;
	int e = coh_sys_mmap_aligned(len, a, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (e)
		return e;
	e = coh_sys_mmap(res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd, (off_t)(c * a), &dev);
	if (!e)
		memcpy(dev, ct->base + c * a, len);
	coh_sys_munmap(res, len);
	if (e)
		return e;
	/* then the device replaces the host memory at the same addresses */
	e = remap_device(ct, c, n, policy_forks(rec->fork_policy));
	if (e)
		return e;
	memset(ct->state + c, CH_DEV, n);
	return 0;
}

static int cxl_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	coh_target *t = rec->target;
	struct cxl_target *ct = ct_of(t);
	int node = coh_target_numa_node(dst);
	if (dst != t && (is_cxl(dst) || node < 0 || node >= COH_NODE_LIMIT))
		return -EOPNOTSUPP;   /* another device, or no node to put host pages on */
	pthread_mutex_lock(&ct->lock);
	int e = ct->base && ct->pid != getpid() ? -ECHILD : 0;
	long c0 = e ? -1 : first_chunk(ct, (void *)rec->start);
	size_t a = ct->align;
	uintptr_t off = (uintptr_t)addr - rec->start, end = off + len;
	if (!e && c0 < 0)
		e = -ENOENT;
	/* whole chunks only: the device maps and splits at its alignment */
	if (!e && (off % a || (end % a && end != rec->length)))
		e = -EINVAL;
	if (!e) {
		size_t c = (size_t)c0 + off / a, n = (end - off + a - 1) / a;
		/* chunk runs that are not at the destination yet */
		for (size_t i = c; i < c + n && !e;) {
			if (dst == t && ct->state[i] == CH_DEV) {
				i++;
				continue;
			}
			size_t j = i + 1;
			while (j < c + n && ct->state[j] == ct->state[i])
				j++;
			if (dst == t)
				e = to_device(rec, ct, i, j - i);
			else
				e = to_host(rec, ct, i, j - i, node);   /* host to another node is a copy too */
			i = j;
		}
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* ---------------- fork ---------------- */

/* How many chunks of rec are on the device (ct->lock held). */
static size_t chunks_on_device(struct cxl_target *ct, const struct coh_alloc_rec *rec)
{
	long c = first_chunk(ct, (void *)rec->start);
	size_t k = 0;
	for (size_t i = 0; c >= 0 && i < ct->run[c]; i++)
		k += ct->state[(size_t)c + i] == CH_DEV;
	return k;
}

/* Device chunks: the window's DOFORK/DONTFORK (and the core's fork staging
 * for COPY and ZERO); chunks moved to the host: the kernel's own controls. */
static int cxl_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	struct cxl_target *ct = ct_of(rec->target);
	pthread_mutex_lock(&ct->lock);
	long c = first_chunk(ct, (void *)rec->start);
	int e = c < 0 ? -ENOENT : 0;
	size_t a = ct->align, n = c < 0 ? 0 : ct->run[c];
	for (size_t i = 0; i < n && !e;) {
		size_t j = i + 1;
		while (j < n && ct->state[(size_t)c + j] == ct->state[(size_t)c + i])
			j++;
		void *p = ct->base + ((size_t)c + i) * a;
		if (ct->state[(size_t)c + i] == CH_HOST)
			e = host_fork_controls(p, (j - i) * a, policy, rec->shared);
		else
			e = coh_sys_madvise(p, (j - i) * a, policy_forks(policy) ? MADV_DOFORK : MADV_DONTFORK);
		i = j;
	}
	if (!e)
		ct->forks[c] = policy_forks(policy);
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* COPY and ZERO of a range with chunks on the device are staged by the core:
 * the window is DONTFORK already, so the child gets the copy or zeroes in the
 * hole; a range all on the host forks by the kernel's controls.  At fork the
 * prepare hook holds the chunk maps' locks. */
static int cxl_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	if (rec->fork_policy != COH_FORK_COPY && rec->fork_policy != COH_FORK_ZERO)
		return 0;
	struct cxl_target *ct = ct_of(rec->target);
	if (!at_fork)
		pthread_mutex_lock(&ct->lock);
	bool host = chunks_on_device(ct, rec) == 0;
	if (!at_fork)
		pthread_mutex_unlock(&ct->lock);
	if (host)
		return 0;   /* the kernel's copy-on-write or wipe-on-fork */
	plan->stage = rec->fork_policy == COH_FORK_COPY ? COH_STAGE_COPY : COH_STAGE_ZERO;
	if (rec->fork_policy == COH_FORK_COPY)
		plan->reason = "device-dax is shared: copied into private memory before fork, moved to the same address "
			       "in the child";
	return 0;
}

/* Device chunks are read in place; chunks on the host too. */
static int cxl_fork_copy(const struct coh_alloc_rec *rec, void *copy)
{
	coh_fork_snapshot(copy, (void *)rec->start, rec->length);
	return 0;
}

/* The chunk maps' locks are held across fork (released in the parent and in
 * the child, whose allocations then answer -ECHILD: the window is the
 * parent's). */
static void cxl_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_lock(&cb->ts[i]->lock);
}

static void cxl_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_unlock(&cb->ts[i]->lock);
}

static void cxl_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	for (int i = 0; i < cb->n; i++)
		pthread_mutex_unlock(&cb->ts[i]->lock);   /* taken by the forking thread, the child's own */
}

/* Device-dax pages are the record's device. */
static int cxl_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
			     size_t max)
{
	(void)max;
	if (in->kind != COH_MEM_DEVICE_DAX)
		return -ENOENT;   /* moved to host memory: the kernel's view holds */
	out[0] = *in;
	out[0].target = rec->target;
	return 1;
}

static int cxl_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct cxl_target *ct = ct_of(t);
	pthread_mutex_lock(&ct->lock);
	*free_bytes = (uint64_t)(ct->nchunks - ct->nused) * ct->align;
	pthread_mutex_unlock(&ct->lock);
	return 0;
}

static void cxl_target_fini(coh_target *t, void *priv)
{
	struct cxl_target *ct = priv;
	if (ct->base && ct->pid == getpid()) {
		int e = coh_sys_munmap(ct->base, ct->nchunks * ct->align);
		if (e)
			coh_warn(coh_target_context(t), "cxl: %s: device window %p left mapped: %s", coh_target_name(t),
				 (void *)ct->base, strerror(-e));
	}
	if (ct->fd >= 0)
		close(ct->fd);
	pthread_mutex_destroy(&ct->lock);
	free(ct->state);
	free(ct->forks);
	free(ct->run);
	free(ct);
}

const struct coh_backend_ops coh_cxl_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "cxl",
	.discover = cxl_discover,
	.fini = cxl_fini,
	.target_fini = cxl_target_fini,
	.free_bytes = cxl_free_bytes,
	.alloc = cxl_alloc,
	.free = cxl_free,
	.migrate = cxl_migrate,
	.query_resolve = cxl_query_resolve,
	.describe_node = cxl_describe_node,
	.fork_policy = cxl_fork_policy,
	.fork_plan = cxl_fork_plan,
	.fork_copy = cxl_fork_copy,
	.atfork_prepare = cxl_atfork_prepare,
	.atfork_parent = cxl_atfork_parent,
	.atfork_child = cxl_atfork_child,
};
