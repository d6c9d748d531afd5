/* SPDX-License-Identifier: MIT */
/*
 * cxl backend, first part: device-dax devices discovered from sysfs
 * (/sys/bus/dax/devices/daxX.Y: size, align, target node, driver, parent).
 * Devices in devdax mode (driver device_dax) become DEVICE_DAX targets; those
 * bound to kmem are system RAM on a CPU-less node, which the host backend
 * already serves, and are only logged here.
 *
 * What works today: discovery (replayable through the fsroot), and the core's
 * residency and pin queries on mappings of the device.  Not yet: allocation
 * from the device (a sub-allocator), migration by copy and remap, the fork
 * policies, CXL memdevs and regions: issue 6.  The capability bits say so.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const struct coh_backend_ops coh_cxl_backend;

struct cxl_piece;

struct cxl_target {
	char dev[32];         /* "dax0.0" */
	uint64_t align;
	int target_node;
	/* allocation: one bit a device chunk (align bytes), guarded by lock */
	pthread_mutex_t lock;
	int fd;               /* opened at the first allocation */
	pid_t pid;            /* the process the chunk map belongs to */
	uint8_t *used;
	size_t nchunks;
	struct cxl_piece *pieces;
	size_t npieces, cappieces;
};

/* The backend's targets, for the fork hooks. */
struct cxl_backend {
	struct cxl_target *ts[64];
	int n;
};

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int cxl_discover(coh_context *ctx, void **priv)
{
	struct cxl_backend *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	*priv = cb;
	DIR *d = coh_fs_opendir(ctx, "/sys/bus/dax/devices");
	if (!d)
		return 0;   /* no device-dax support or no device */
	struct dirent *de;
	int added = 0, err = 0;
	char names[64][32];
	int n = 0;
	while ((de = readdir(d)) && n < 64)
		if (!strncmp(de->d_name, "dax", 3))
			snprintf(names[n++], sizeof(names[0]), "%.31s", de->d_name);
	closedir(d);
	/* readdir order is arbitrary: sort by name for stable target order */
	qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
	for (int i = 0; i < n && !err; i++) {
		const char *name = names[i];
		char path[160], link[512], driver[64] = "";
		/* names are at most 31 characters (see above) */
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/driver", name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0)
			snprintf(driver, sizeof(driver), "%.63s", basename_of(link));
		uint64_t size = 0, align = 2u << 20, node = (uint64_t)-1;
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/size", name);
		coh_fs_read_u64(ctx, path, &size);
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s/align", name);
		coh_fs_read_u64(ctx, path, &align);
		char buf[32];
		int tnode = -1;
		if (coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/dax/devices/%.31s/target_node", name) > 0)
			tnode = atoi(buf);
		(void)node;
		if (!strcmp(driver, "kmem")) {
			coh_info(ctx, "cxl: %s is system RAM (kmem) on node %d: the host backend serves it", name, tnode);
			continue;
		}
		if (size == 0)
			continue;   /* an unconfigured seed device */
		/* the parent (nd region or hmem platform device) from the device's own link */
		char parent[128] = "";
		snprintf(path, sizeof(path), "/sys/bus/dax/devices/%.31s", name);
		if (coh_fs_readlink(ctx, path, link, sizeof(link)) > 0) {
			char *last = strrchr(link, '/');
			if (last) {
				*last = '\0';
				char *up = strrchr(link, '/');
				/* nd layout: .../regionN/daxN.M/daxN.K; hmem: .../hmem.N/daxN.M */
				if (up && !strncmp(up + 1, "dax", 3)) {
					*up = '\0';
					up = strrchr(link, '/');
				}
				snprintf(parent, sizeof(parent), "%.127s", up ? up + 1 : link);
			}
		}
		struct cxl_target *ct = calloc(1, sizeof(*ct));
		if (!ct)
			return -ENOMEM;
		snprintf(ct->dev, sizeof(ct->dev), "%.31s", name);
		ct->align = align ? align : 2u << 20;
		ct->target_node = tnode;
		ct->fd = -1;
		pthread_mutex_init(&ct->lock, NULL);
		ct->nchunks = (size_t)(size / ct->align);
		ct->used = calloc(ct->nchunks ? ct->nchunks : 1, 1);
		if (!ct->used) {
			free(ct);
			return -ENOMEM;
		}
		struct coh_target_desc desc = { 0 };
		desc.kind = COH_KIND_DEVICE_DAX;
		snprintf(desc.name, sizeof(desc.name), "cxl:%.31s", name);
		snprintf(desc.vendor, sizeof(desc.vendor), "Linux device-dax");
		snprintf(desc.model, sizeof(desc.model), "device-dax %.31s%s%.40s, align %llu KiB, node %d", name,
			 parent[0] ? " under " : "", parent, (unsigned long long)(align >> 10), tnode);
		desc.numa_node = -1;   /* not a node one can bind to; its affinity is in the model */
		desc.total_bytes = size;
		desc.caps = COH_CAP_ALLOC | COH_CAP_QUERY | COH_CAP_PIN_QUERY | COH_CAP_FORK_SHARE |
			    COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_KERNEL;
		desc.priv = ct;
		err = coh_target_add(ctx, &desc);
		if (err) {
			free(ct->used);
			free(ct);
		} else if (cb->n < 64) {
			cb->ts[cb->n++] = ct;
		}
		else
			added++;
	}
	return err ? err : added;
}

static void cxl_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	free(priv);
}

/* No other thread may hold a chunk map's lock while the address space is
 * copied: held across fork, released in the parent, re-made in the child
 * (whose allocations then answer -ECHILD: the device map is the parent's). */
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
		pthread_mutex_init(&cb->ts[i]->lock, NULL);
}


/* ---------------- allocation from the device ---------------- */

struct cxl_piece {
	uintptr_t addr;
	size_t first, n;      /* chunks of the device */
};

static struct cxl_target *ct_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static int dev_open(coh_target *t, struct cxl_target *ct)
{
	if (ct->fd >= 0)
		return ct->pid == getpid() ? 0 : -ECHILD;   /* the chunk map belongs to the opener */
	char path[48];
	snprintf(path, sizeof(path), "/dev/%s", ct->dev);
	int fd = coh_fs_open(coh_target_context(t), path, O_RDWR);
	if (fd < 0)
		return fd;
	ct->fd = fd;
	ct->pid = getpid();
	return 0;
}

static int cxl_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out)
{
	struct cxl_target *ct = ct_of(t);
	(void)flags;
	pthread_mutex_lock(&ct->lock);
	int e = dev_open(t, ct);
	if (e)
		goto out;
	size_t a = ct->align, len = (size + a - 1) / a * a, n = len / a;
	if (align > a) {
		e = -EINVAL;   /* the device's own alignment is the only one it offers */
		goto out;
	}
	/* first fit over the chunk map */
	size_t run = 0, first = 0;
	for (size_t i = 0; i < ct->nchunks && run < n; i++) {
		if (ct->used[i]) {
			run = 0;
		} else {
			if (!run)
				first = i;
			run++;
		}
	}
	if (run < n) {
		e = -ENOMEM;
		goto out;
	}
	if (ct->npieces == ct->cappieces) {
		size_t cap = ct->cappieces ? ct->cappieces * 2 : 16;
		struct cxl_piece *np = realloc(ct->pieces, cap * sizeof(*np));
		if (!np) {
			e = -ENOMEM;
			goto out;
		}
		ct->pieces = np;
		ct->cappieces = cap;
	}
	/* an aligned virtual range first: device-dax faults need VA aligned like the offset */
	void *res;
	if ((e = coh_sys_mmap(NULL, len + a, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0, &res)))
		goto out;
	uintptr_t va = ((uintptr_t)res + a - 1) & ~(uintptr_t)(a - 1);
	void *p;
	e = coh_sys_mmap((void *)va, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd, (off_t)(first * a), &p);
	if (va > (uintptr_t)res)
		coh_sys_munmap(res, va - (uintptr_t)res);
	if ((uintptr_t)res + len + a > va + len)
		coh_sys_munmap((void *)(va + len), (uintptr_t)res + len + a - (va + len));
	if (e) {
		coh_sys_munmap((void *)va, len);
		goto out;
	}
	for (size_t i = first; i < first + n; i++)
		ct->used[i] = 1;
	ct->pieces[ct->npieces++] = (struct cxl_piece){ va, first, n };
	*out = p;
out:
	pthread_mutex_unlock(&ct->lock);
	return e;
}

static int cxl_free(coh_target *t, void *ptr, size_t size)
{
	struct cxl_target *ct = ct_of(t);
	(void)size;
	if (ct->fd >= 0 && ct->pid != getpid())
		return coh_sys_munmap(ptr, (size + ct->align - 1) / ct->align * ct->align);
	pthread_mutex_lock(&ct->lock);
	int e = -ENOENT;
	for (size_t i = 0; i < ct->npieces; i++) {
		struct cxl_piece *pc = &ct->pieces[i];
		if (pc->addr != (uintptr_t)ptr)
			continue;
		e = coh_sys_munmap(ptr, pc->n * ct->align);
		for (size_t c = pc->first; c < pc->first + pc->n; c++)
			ct->used[c] = 0;   /* free runs coalesce by construction: the map is per chunk */
		ct->pieces[i] = ct->pieces[--ct->npieces];
		break;
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}

/* Device-dax memory is shared by nature: SHARE and KERNEL keep it shared with
 * a child, EXCLUDE drops it; a private copy (COPY) or zeroes (ZERO) are not
 * offered yet. */
static int cxl_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	void *a = (void *)rec->start;
	/* the whole mapping: device-dax refuses to split a mapping off its alignment */
	size_t al = ct_of(rec->target)->align, len = (rec->length + al - 1) / al * al;
	switch (policy) {
	case COH_FORK_SHARE:
	case COH_FORK_KERNEL:
		return coh_sys_madvise(a, len, MADV_DOFORK);
	case COH_FORK_EXCLUDE:
		return coh_sys_madvise(a, len, MADV_DONTFORK);
	default:
		return -EOPNOTSUPP;
	}
}

static int cxl_query_refine(const struct coh_alloc_rec *rec, struct coh_extent *ext, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ext[i].kind == COH_MEM_DEVICE_DAX)
			ext[i].target = rec->target;
	return 0;
}

static void cxl_target_fini(coh_target *t, void *priv)
{
	(void)t;
	struct cxl_target *ct = priv;
	if (ct->fd >= 0)
		close(ct->fd);
	pthread_mutex_destroy(&ct->lock);
	free(ct->used);
	free(ct->pieces);
	free(ct);
}

const struct coh_backend_ops coh_cxl_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "cxl",
	.discover = cxl_discover,
	.fini = cxl_fini,
	.target_fini = cxl_target_fini,
	.alloc = cxl_alloc,
	.free = cxl_free,
	.query_refine = cxl_query_refine,
	.fork_policy = cxl_fork_policy,
	.atfork_prepare = cxl_atfork_prepare,
	.atfork_parent = cxl_atfork_parent,
	.atfork_child = cxl_atfork_child,
};
