/* SPDX-License-Identifier: MIT */
/* Targets: what backends discovered, and the NUMA facts the core reads for any node. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "internal.h"

static int read_tier(const coh_context *ctx, int node)
{
	DIR *d = coh_fs_opendir(ctx, "/sys/devices/virtual/memory_tiering");
	struct dirent *de;
	int tier = -1;
	if (!d)
		return -1;
	while (tier < 0 && (de = readdir(d))) {
		int id;
		char buf[256];
		uint8_t bits[COH_NODE_LIMIT / 8];
		if (sscanf(de->d_name, "memory_tier%d", &id) != 1)
			continue;
		if (coh_fs_readf(ctx, buf, sizeof(buf), "/sys/devices/virtual/memory_tiering/%s/nodelist",
				 de->d_name) < 0)
			continue;
		if (coh_parse_list(buf, bits, COH_NODE_LIMIT) > 0 && node < COH_NODE_LIMIT && (bits[node / 8] & (1u << (node % 8))))
			tier = id;
	}
	closedir(d);
	return tier;
}

int coh_target_add(coh_context *ctx, const struct coh_target_desc *desc)
{
	if (!ctx || !desc || !desc->name[0] || desc->kind < COH_KIND_HOST_NODE ||
	    desc->kind > COH_KIND_VENDOR_MANAGED || ctx->nslots == 0)
		return -EINVAL;
	if (coh_target_find(ctx, desc->name))
		return -EEXIST;
	/* a capability is a promise that its op exists: the core would call it */
	const struct coh_backend_ops *o = ctx->slots[ctx->nslots - 1].ops;
	const struct {
		uint64_t cap;
		bool have;
		const char *op;
	} needs[] = {
		{ COH_CAP_ALLOC, o->alloc != NULL, "alloc" },
		{ COH_CAP_ADOPT, o->adopt != NULL, "adopt" },
		{ COH_CAP_MIGRATE, o->migrate != NULL, "migrate" },
		{ COH_CAP_MIGRATE_STICKY, o->migrate != NULL || o->migrate_start != NULL, "migrate or migrate_start" },
		{ COH_CAP_MIGRATE_ASYNC, o->migrate != NULL || o->migrate_start != NULL, "migrate or migrate_start" },
		{ COH_CAP_ADVISE, o->advise != NULL, "advise" },
		{ COH_CAP_DEVICE_ACCESS, o->device_access != NULL, "device_access" },
		{ COH_CAP_SHARE, o->share_export != NULL && o->share_import != NULL, "share_export and share_import" },
	};
	for (size_t i = 0; i < sizeof(needs) / sizeof(needs[0]); i++)
		if ((desc->caps & needs[i].cap) && !needs[i].have) {
			coh_err(ctx, "backend %s: target %.64s claims %s without the %s op: not added", o->name,
				desc->name, coh_cap_name(needs[i].cap), needs[i].op);
			return -EINVAL;
		}
	if (ctx->ntargets == ctx->tcap) {
		int cap = ctx->tcap ? ctx->tcap * 2 : 8;
		coh_target **nt = realloc(ctx->targets, (size_t)cap * sizeof(*nt));
		if (!nt)
			return -ENOMEM;
		ctx->targets = nt;
		ctx->tcap = cap;
	}
	coh_target *t = calloc(1, sizeof(*t));
	if (!t)
		return -ENOMEM;
	t->ctx = ctx;
	t->slot = &ctx->slots[ctx->nslots - 1];   /* the backend being discovered */
	t->index = ctx->ntargets;
	t->d = *desc;
	t->d.name[sizeof(t->d.name) - 1] = '\0';
	t->d.vendor[sizeof(t->d.vendor) - 1] = '\0';
	t->d.model[sizeof(t->d.model) - 1] = '\0';
	t->d.pci_address[sizeof(t->d.pci_address) - 1] = '\0';
	t->tier = t->d.numa_node >= 0 ? read_tier(ctx, t->d.numa_node) : -1;
	if (t->d.pci_address[0])
		coh_pci_name(ctx, t->d.pci_address, t->pci_name, sizeof(t->pci_name));
	ctx->targets[ctx->ntargets++] = t;
	coh_dbg(ctx, "target %s: kind %s, node %d, %llu bytes", t->d.name,
		coh_target_kind_name(t->d.kind), t->d.numa_node, (unsigned long long)t->d.total_bytes);
	return 0;
}

void *coh_target_priv(const coh_target *t)
{
	return t ? t->d.priv : NULL;
}

void *coh_target_backend_priv(const coh_target *t)
{
	return t ? t->slot->priv : NULL;
}

int coh_target_count(const coh_context *ctx)
{
	return ctx ? ctx->ntargets : -EINVAL;
}

coh_target *coh_target_get(const coh_context *ctx, unsigned index)
{
	if (!ctx || index >= (unsigned)ctx->ntargets)
		return NULL;
	return ctx->targets[index];
}

coh_target *coh_target_next(const coh_context *ctx, const coh_target *prev)
{
	if (!ctx)
		return NULL;
	if (!prev)
		return coh_target_get(ctx, 0);
	if (prev->ctx != ctx)
		return NULL;
	return coh_target_get(ctx, (unsigned)prev->index + 1);
}

coh_target *coh_target_find(const coh_context *ctx, const char *name)
{
	if (!ctx || !name)
		return NULL;
	for (int i = 0; i < ctx->ntargets; i++)
		if (!strcmp(ctx->targets[i]->d.name, name))
			return ctx->targets[i];
	return NULL;
}

coh_target *coh_target_of_node(const coh_context *ctx, int node)
{
	if (!ctx || node < 0)
		return NULL;
	for (int i = 0; i < ctx->ntargets; i++)
		if (ctx->targets[i]->d.numa_node == node)
			return ctx->targets[i];
	return NULL;
}

coh_target *coh_target_by_node(const coh_context *ctx, int node)
{
	return coh_target_of_node(ctx, node);
}

coh_context *coh_target_context(const coh_target *t) { return t ? t->ctx : NULL; }
int coh_target_index(const coh_target *t) { return t ? t->index : -EINVAL; }
const char *coh_target_backend(const coh_target *t) { return t ? t->slot->ops->name : NULL; }
int coh_target_kind(const coh_target *t) { return t ? t->d.kind : -EINVAL; }
const char *coh_target_name(const coh_target *t) { return t ? t->d.name : NULL; }
const char *coh_target_vendor(const coh_target *t) { return t ? t->d.vendor : NULL; }
const char *coh_target_model(const coh_target *t) { return t ? t->d.model : NULL; }
uint64_t coh_target_caps(const coh_target *t) { return t ? t->d.caps : 0; }
int coh_target_memory_tier(const coh_target *t)
{
	if (!t)
		return -EINVAL;
	return t->tier >= 0 ? t->tier : -ENOENT;
}

const char *coh_target_pci_address(const coh_target *t)
{
	return t && t->d.pci_address[0] ? t->d.pci_address : NULL;
}

const char *coh_target_pci_name(const coh_target *t)
{
	return t && t->pci_name[0] ? t->pci_name : NULL;
}

int coh_target_numa_node(const coh_target *t)
{
	if (!t)
		return -EINVAL;
	return t->d.numa_node >= 0 ? t->d.numa_node : -ENOENT;
}

int coh_target_capacity(const coh_target *t, uint64_t *total, uint64_t *free_bytes)
{
	if (!t)
		return -EINVAL;
	int e = 0;
	if (total)
		*total = t->d.total_bytes;
	if (free_bytes) {
		e = t->slot->ops->free_bytes ? t->slot->ops->free_bytes((coh_target *)t, free_bytes) : -EOPNOTSUPP;
		if (e)
			*free_bytes = 0;
	}
	/* an unknown total outranks a free figure's error: the caller asked for both */
	return total && t->d.capacity_unknown ? -ENODATA : e;
}

const char *coh_target_kind_name(int kind)
{
	switch (kind) {
	case COH_KIND_HOST_NODE: return "host-node";
	case COH_KIND_CPULESS_NODE: return "cpuless-node";
	case COH_KIND_DEVICE_COHERENT: return "device-coherent";
	case COH_KIND_DEVICE_PRIVATE: return "device-private";
	case COH_KIND_DEVICE_DAX: return "device-dax";
	case COH_KIND_VENDOR_MANAGED: return "vendor-managed";
	default: return "unknown";
	}
}

const char *coh_cap_name(uint64_t cap)
{
	switch (cap) {
	case COH_CAP_ALLOC: return "alloc";
	case COH_CAP_ADOPT: return "adopt";
	case COH_CAP_MIGRATE: return "migrate";
	case COH_CAP_MIGRATE_ASYNC: return "migrate-async";
	case COH_CAP_ADVISE: return "advise";
	case COH_CAP_QUERY: return "query";
	case COH_CAP_PIN_QUERY: return "pin-query";
	case COH_CAP_FORK_COPY: return "fork-copy";
	case COH_CAP_FORK_SHARE: return "fork-share";
	case COH_CAP_FORK_EXCLUDE: return "fork-exclude";
	case COH_CAP_FORK_ZERO: return "fork-zero";
	case COH_CAP_FORK_KERNEL: return "fork-kernel";
	case COH_CAP_HUGE_PAGES: return "huge-pages";
	case COH_CAP_MIGRATE_STICKY: return "migrate-sticky";
	case COH_CAP_DEVICE_ACCESS: return "device-access";
	case COH_CAP_SHARE: return "share";
	default: return NULL;
	}
}

/* Online nodes in order: the columns of nodeN/distance. */
static int node_order(const coh_context *ctx, int *nodes, int max)
{
	char buf[4096];
	uint8_t bits[COH_NODE_LIMIT / 8];
	int n = 0;
	if (coh_fs_read(ctx, "/sys/devices/system/node/online", buf, sizeof(buf)) >= 0 &&
	    coh_parse_list(buf, bits, COH_NODE_LIMIT) > 0) {
		for (int i = 0; i < COH_NODE_LIMIT && n < max; i++)
			if (bits[i / 8] & (1u << (i % 8)))
				nodes[n++] = i;
		return n;
	}
	/* Recorded trees sometimes lack "online": the nodeN folders tell. */
	DIR *d = coh_fs_opendir(ctx, "/sys/devices/system/node");
	struct dirent *de;
	if (!d)
		return -ENOENT;
	memset(bits, 0, sizeof(bits));
	while ((de = readdir(d))) {
		int id;
		char tail;
		if (sscanf(de->d_name, "node%d%c", &id, &tail) == 1 && id >= 0 && id < COH_NODE_LIMIT)
			bits[id / 8] |= (uint8_t)(1u << (id % 8));
	}
	closedir(d);
	for (int i = 0; i < COH_NODE_LIMIT && n < max; i++)
		if (bits[i / 8] & (1u << (i % 8)))
			nodes[n++] = i;
	return n;
}

/* Row `node` of the SLIT (nodeN/distance) into row[0..n), columns in node_order.
 * Each entry is 10..255 (ACPI: 10 local, 255 unreachable), the node's own
 * entry 10, one entry per online node: otherwise -EINVAL, logged when warn. */
static int distance_row(const coh_context *ctx, int node, const int *order, int n, int *row, bool warn)
{
	char buf[4096], path[64];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/distance", node);
	int r = coh_fs_read(ctx, path, buf, sizeof(buf));
	if (r < 0)
		return r;
	const char *why = NULL;
	int count = 0;
	for (char *tok, *sv, *p = buf; !why && (tok = strtok_r(p, " \t\n", &sv)); p = NULL) {
		uint64_t v;
		if (coh_parse_u64(tok, 10, &v) || v < 10 || v > 255)
			why = "an entry outside 10..255";
		else if (count == n)
			why = "more entries than online nodes";
		else if (order[count] == node && v != 10)
			why = "a distance to itself other than 10";
		else
			row[count++] = (int)v;
	}
	if (!why && count < n)
		why = "fewer entries than online nodes";
	if (why) {
		if (warn)
			coh_warn((coh_context *)ctx, "%s: %s, ignored", path, why);
		return -EINVAL;
	}
	return count;
}

int coh_target_distance(const coh_target *a, const coh_target *b)
{
	if (!a || !b || a->ctx != b->ctx)
		return -EINVAL;
	if (a->d.numa_node < 0 || b->d.numa_node < 0)
		return -ENOENT;
	const coh_context *ctx = a->ctx;
	int nodes[COH_NODE_LIMIT], row[COH_NODE_LIMIT];
	int n = node_order(ctx, nodes, COH_NODE_LIMIT);
	if (n <= 0)
		return -ENOENT;
	int col = -1;
	for (int i = 0; i < n; i++)
		if (nodes[i] == b->d.numa_node)
			col = i;
	if (col < 0 || distance_row(ctx, a->d.numa_node, nodes, n, row, false) < 0)
		return -ENOENT;
	return row[col];
}

/* "nodeN" with N a node id below the limit: N, else -1. */
static int node_name_id(const char *name)
{
	uint64_t v;
	if (strncmp(name, "node", 4) || coh_parse_u64(name + 4, 10, &v) || name[4] == ' ' ||
	    v >= COH_NODE_LIMIT)
		return -1;
	return (int)v;
}

/* The HMAT figures of an access class into *out and, when nodes is not NULL,
 * the first max initiator nodes in ascending order into nodes. */
static int read_access(const coh_target *t, unsigned access_class, struct coh_access *out, int *nodes,
		       size_t max, bool warn)
{
	const coh_context *ctx = t->ctx;
	char dir[128], path[192], buf[64];
	snprintf(dir, sizeof(dir), "/sys/devices/system/node/node%d/access%u/initiators",
		 t->d.numa_node, access_class);
	if (!coh_fs_exists(ctx, dir))
		return -ENOENT;
	struct coh_access a;
	memset(&a, 0, sizeof(a));   /* padding too: the caller gets it */
	a.size = sizeof(a);
	static const char *const names[] = { "read_bandwidth", "write_bandwidth", "read_latency",
					     "write_latency" };
	uint32_t *vals[] = { &a.read_bandwidth, &a.write_bandwidth, &a.read_latency, &a.write_latency };
	int found = 0;
	for (int i = 0; i < 4; i++) {
		uint64_t v;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (coh_fs_read(ctx, path, buf, sizeof(buf)) < 0)
			continue;
		/* 0 is HMAT's "not provided"; above 32 bits is no real figure */
		if (coh_parse_u64(buf, 10, &v) || v > UINT32_MAX) {
			if (warn)
				coh_warn((coh_context *)ctx, "%s: '%.32s' is not a figure, ignored", path, buf);
			continue;
		}
		if (v) {
			*vals[i] = (uint32_t)v;
			found++;
		}
	}
	if (!found)
		return -ENOENT;   /* an initiator-only node (the folder exists, empty), or zeros only */
	DIR *d = coh_fs_opendir(ctx, dir);
	if (d) {
		/* readdir order is arbitrary: a bitmap gives ascending ids */
		uint8_t seen[COH_NODE_LIMIT / 8] = { 0 };
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strncmp(de->d_name, "node", 4))
				continue;
			int id = node_name_id(de->d_name);
			if (id < 0) {
				if (warn)
					coh_warn((coh_context *)ctx, "%s/%s: not a node id, ignored", dir, de->d_name);
				continue;
			}
			seen[id / 8] |= (uint8_t)(1u << (id % 8));
		}
		closedir(d);
		for (int id = 0; id < COH_NODE_LIMIT; id++)
			if (seen[id / 8] & (1u << (id % 8))) {
				if (nodes && (size_t)a.nr_initiators < max)
					nodes[a.nr_initiators] = id;
				a.nr_initiators++;
			}
	}
	*out = a;
	return 0;
}

int coh_target_access(const coh_target *t, unsigned access_class, struct coh_access *out)
{
	if (!t || !out || coh_struct_out_check(out) || access_class > 1)
		return -EINVAL;
	if (t->d.numa_node < 0)
		return -ENOENT;
	struct coh_access a;
	int e = read_access(t, access_class, &a, NULL, 0, false);
	if (!e)
		coh_struct_out(out, &a, sizeof(a));
	return e;
}

int coh_target_initiators(const coh_target *t, unsigned access_class, int *nodes, size_t max)
{
	if (!t || access_class > 1)
		return -EINVAL;
	if (!nodes && max)
		return -EFAULT;
	if (t->d.numa_node < 0)
		return -ENOENT;
	struct coh_access a;
	int e = read_access(t, access_class, &a, nodes, max, false);
	return e ? e : a.nr_initiators;
}

/* nodeN/memory_side_cache/indexL, L ascending: the i-th that has a valid size. */
static int read_memory_cache(const coh_target *t, unsigned index, struct coh_memory_cache *out, bool warn)
{
	const coh_context *ctx = t->ctx;
	char dir[96], path[192], buf[64];
	snprintf(dir, sizeof(dir), "/sys/devices/system/node/node%d/memory_side_cache", t->d.numa_node);
	DIR *d = coh_fs_opendir(ctx, dir);
	if (!d)
		return -ENOENT;
	uint8_t levels[256 / 8] = { 0 };
	struct dirent *de;
	while ((de = readdir(d))) {
		uint64_t l;
		if (!strncmp(de->d_name, "index", 5) && de->d_name[5] != ' ' &&
		    !coh_parse_u64(de->d_name + 5, 10, &l) && l < 256)
			levels[l / 8] |= (uint8_t)(1u << (l % 8));
	}
	closedir(d);
	unsigned seen = 0;
	for (unsigned l = 0; l < 256; l++) {
		if (!(levels[l / 8] & (1u << (l % 8))))
			continue;
		struct coh_memory_cache c;
		memset(&c, 0, sizeof(c));   /* padding too: the caller gets it */
		c.size = sizeof(c);
		c.level = l;
		static const char *const names[] = { "size", "line_size", "indexing", "write_policy" };
		uint64_t v[4];
		bool ok[4];
		for (int i = 0; i < 4; i++) {
			snprintf(path, sizeof(path), "%s/index%u/%s", dir, l, names[i]);
			int r = coh_fs_read(ctx, path, buf, sizeof(buf));
			ok[i] = r >= 0 && !coh_parse_u64(buf, 10, &v[i]) &&
				(i == 0 ? v[i] > 0 : i == 1 ? v[i] <= UINT32_MAX : v[i] <= 2);
			if (!ok[i] && r >= 0 && warn)
				coh_warn((coh_context *)ctx, "%s: '%.32s' is not a valid %s, ignored", path, buf,
					 names[i]);
		}
		if (!ok[0])
			continue;   /* a cache of no known size is no cache to report */
		c.cache_bytes = v[0];
		c.line_size = ok[1] ? (uint32_t)v[1] : 0;
		c.indexing = ok[2] ? (int)v[2] : -1;
		c.write_policy = ok[3] ? (int)v[3] : -1;
		if (seen++ == index) {
			*out = c;
			return 0;
		}
	}
	return -ENOENT;
}

int coh_target_memory_cache(const coh_target *t, unsigned index, struct coh_memory_cache *out)
{
	if (!t || !out || coh_struct_out_check(out))
		return -EINVAL;
	if (t->d.numa_node < 0)
		return -ENOENT;
	struct coh_memory_cache c;
	int e = read_memory_cache(t, index, &c, false);
	if (!e)
		coh_struct_out(out, &c, sizeof(c));
	return e;
}

static int model_of_kind(int kind)
{
	switch (kind) {
	case COH_KIND_HOST_NODE:
	case COH_KIND_CPULESS_NODE: return COH_MODEL_NODE;
	case COH_KIND_DEVICE_COHERENT:
	case COH_KIND_DEVICE_PRIVATE: return COH_MODEL_HMM;
	case COH_KIND_DEVICE_DAX: return COH_MODEL_DEVDAX;
	case COH_KIND_VENDOR_MANAGED: return COH_MODEL_MANAGED;
	default: return COH_MODEL_UNKNOWN;
	}
}

int coh_target_device(const coh_target *t, struct coh_device_info *out)
{
	if (!t || !out || coh_struct_out_check(out))
		return -EINVAL;
	const struct coh_target_desc *d = &t->d;
	struct coh_device_info i;
	memset(&i, 0, sizeof(i));   /* padding too: the caller gets it */
	i.size = sizeof(i);
	i.memory_model = d->memory_model ? d->memory_model : model_of_kind(d->kind);
	i.status = d->device_status & (COH_DEVICE_HAS_UUID | COH_DEVICE_HAS_GPU_ID | COH_DEVICE_UNVERIFIED);
	i.gpu_id = d->device_status & COH_DEVICE_HAS_GPU_ID ? d->gpu_id : 0;
	if (d->device_status & COH_DEVICE_HAS_UUID)
		memcpy(i.uuid, d->uuid, sizeof(i.uuid));
	unsigned dom, bus, dev, fn;
	char end;
	if (sscanf(d->pci_address, "%x:%x:%x.%x%c", &dom, &bus, &dev, &fn, &end) == 4 && bus < 256 &&
	    dev < 32 && fn < 8) {
		i.status |= COH_DEVICE_HAS_PCI;
		i.pci_domain = dom;
		i.pci_bus = (uint8_t)bus;
		i.pci_dev = (uint8_t)dev;
		i.pci_fn = (uint8_t)fn;
	}
	i.access_note = d->access_note ? d->access_note
		      : d->caps & COH_CAP_DEVICE_ACCESS ? "the backend's device access"
							 : "no device access: the backend has none";
	coh_struct_out(out, &i, sizeof(i));
	return 0;
}

int coh_target_persistent(const coh_target *t)
{
	return t ? t->d.persistent != 0 : -EINVAL;
}

/* After discovery: every figure the accessors read for a node, read once with
 * warnings, so that a bad file is logged once rather than on every call. */
void coh_targets_validate(coh_context *ctx)
{
	int nodes[COH_NODE_LIMIT], row[COH_NODE_LIMIT];
	int n = node_order(ctx, nodes, COH_NODE_LIMIT);
	for (int i = 0; i < ctx->ntargets; i++) {
		const coh_target *t = ctx->targets[i];
		bool again = false;
		for (int j = 0; j < i; j++)
			again |= ctx->targets[j]->d.numa_node == t->d.numa_node;
		if (t->d.numa_node < 0 || again)
			continue;
		if (n > 0)
			distance_row(ctx, t->d.numa_node, nodes, n, row, true);
		struct coh_access a;
		for (unsigned cls = 0; cls < 2; cls++)
			read_access(t, cls, &a, NULL, 0, true);
		struct coh_memory_cache c;
		for (unsigned k = 0; read_memory_cache(t, k, &c, true) == 0; k++)
			;
	}
}

static void describe_node(coh_context *ctx, int node)
{
	struct coh_node_desc got = { "", "" };
	for (int i = 0; i < ctx->nslots; i++) {
		const struct coh_backend_slot *slot = &ctx->slots[i];
		struct coh_node_desc d = { "", "" };
		if (!slot->ops->describe_node || slot->ops->describe_node(ctx, slot->priv, node, &d) != 0)
			continue;
		/* per field, the first backend that fills it wins */
		if (!got.vendor[0])
			snprintf(got.vendor, sizeof(got.vendor), "%.*s", (int)sizeof(got.vendor) - 1, d.vendor);
		if (!got.model[0])
			snprintf(got.model, sizeof(got.model), "%.*s", (int)sizeof(got.model) - 1, d.model);
	}
	for (int i = 0; i < ctx->ntargets; i++) {
		coh_target *t = ctx->targets[i];
		if (t->d.numa_node != node)
			continue;
		if (got.vendor[0])
			snprintf(t->d.vendor, sizeof(t->d.vendor), "%s", got.vendor);
		if (got.model[0])
			snprintf(t->d.model, sizeof(t->d.model), "%s", got.model);
	}
}

void coh_targets_describe_nodes(coh_context *ctx)
{
	bool any = false;
	for (int i = 0; i < ctx->nslots && !any; i++)
		any = ctx->slots[i].ops->describe_node != NULL;
	if (!any)
		return;
	uint8_t done[COH_NODE_LIMIT / 8] = { 0 };
	for (int i = 0; i < ctx->ntargets; i++) {
		int node = ctx->targets[i]->d.numa_node;
		if (node < 0 || node >= COH_NODE_LIMIT || (done[node / 8] & (1u << (node % 8))))
			continue;
		done[node / 8] |= (uint8_t)(1u << (node % 8));
		describe_node(ctx, node);
	}
}
