/* SPDX-License-Identifier: MIT */
/* cxl backend: device-dax discovery (one target per devdax device, the kmem
 * nodes it describes for the host backend) and the teardown. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cxl.h"

static int dax_discover(coh_context *ctx, struct cxl_backend *cb, const struct cxl_bus *bus);

int cxl_discover(coh_context *ctx, void **priv)
{
	struct cxl_backend *cb = calloc(1, sizeof(*cb));
	if (!cb)
		return -ENOMEM;
	*priv = cb;
	struct cxl_bus *bus = calloc(1, sizeof(*bus));
	if (!bus)
		return -ENOMEM;
	cxl_bus_read(ctx, bus);
	cxl_bus_notes(ctx, bus);
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

int cxl_describe_node(coh_context *ctx, void *priv, int node, struct coh_node_desc *d)
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

/* Where this process's allocations share chunk ownership (a live machine
 * only: nothing is opened or made here). */
static void map_note(coh_context *ctx)
{
	const char *dir = cxl_map_dir(ctx);
	if (cxl_map_private(dir))
		coh_backend_note(ctx, "chunk maps: private to each context (cxl.mapdir=private): two contexts or "
				 "processes on one device-dax device hand out the same chunks");
	else if (access(dir, W_OK | X_OK))
		coh_backend_note(ctx, "chunk maps: %.200s is not writable (%s): allocating on a device-dax device "
				 "answers that error unless its map exists there (set cxl.mapdir)", dir, strerror(errno));
	else
		coh_backend_note(ctx, "chunk maps: shared by every process through %.200s/libcoherent-cxl-*.map", dir);
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
		const struct cxl_region *reg = cxl_region_named(bus, parent);
		char words[512] = "";
		if (reg)
			cxl_region_words(ctx, bus, reg, words, sizeof(words));
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
		/* the kernel accepts only power-of-two alignments of at least a page
		 * (PAGE_SIZE, PMD_SIZE, PUD_SIZE); anything else is a tree we cannot map */
		uint64_t pg = coh_ctx_page_size(ctx);
		if (align == 0)
			align = CXL_DEFAULT_ALIGN;
		if ((align & (align - 1)) || align < pg || size < align) {
			coh_backend_note(ctx, "%s: align %llu does not fit a %llu-byte device (power of two, at least a page, "
					 "at most the size): skipped", name, (unsigned long long)align,
					 (unsigned long long)size);
			continue;
		}
		coh_backend_note(ctx, "%s: device-dax, %.1f GiB%s%.200s: target cxl:%s", name, (double)size / (1 << 30),
				 reg ? ", " : parent[0] ? " under " : "", reg ? words : parent, name);
		struct cxl_target *ct = calloc(1, sizeof(*ct));
		if (!ct) {
			err = -ENOMEM;
			break;
		}
		snprintf(ct->dev, sizeof(ct->dev), "%.31s", name);
		/* the chunk: the device's alignment, doubled while the map would pass
		 * CXL_MAX_CHUNKS entries (a terabyte at 4 KiB is 256 Mi chunks) */
		uint64_t chunk = align;
		while (size / chunk > CXL_MAX_CHUNKS)
			chunk <<= 1;
		ct->align = chunk;
		ct->size = size;
		ct->target_node = tnode;
		ct->fd = -1;
		cxl_map_init(&ct->map);
		pthread_mutex_init(&ct->lock, NULL);
		ct->nchunks = (size_t)(size / ct->align);
		size_t nc = ct->nchunks;
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
			const struct cxl_mem *m = cxl_mem_named(bus, first);
			if (m && m->bdf[0])
				snprintf(desc.pci_address, sizeof(desc.pci_address), "%.15s", m->bdf);
		}
		desc.numa_node = -1;   /* not a node one can bind to; its affinity is in the model */
		desc.total_bytes = size;
		desc.access_note = "none: the CPU is the initiator (loads and stores over CXL.mem)";
		desc.caps = COH_CAP_ALLOC | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_MIGRATE_STICKY | COH_CAP_QUERY |
			    COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_SHARE | COH_CAP_FORK_EXCLUDE |
			    COH_CAP_FORK_ZERO | COH_CAP_FORK_KERNEL | COH_CAP_SHARE;
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
	if (added && !coh_ctx_replay(ctx))
		map_note(ctx);
	return err ? err : added;
}

void cxl_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct cxl_backend *cb = priv;
	free(cb->ts);
	free(cb->nodes);
	free(cb);
}

void cxl_target_fini(coh_target *t, void *priv)
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
	/* a context's chunks were freed with its allocations */
	void *map = ct->map.map;
	int e = cxl_map_close(&ct->map);
	if (e)
		coh_warn(coh_target_context(t), "cxl: %s: chunk map %p left mapped: %s", coh_target_name(t), map,
			 strerror(-e));
	pthread_mutex_destroy(&ct->lock);
	free(ct->state);
	free(ct->forks);
	free(ct->run);
	free(ct);
}
