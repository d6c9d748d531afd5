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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

const struct coh_backend_ops coh_cxl_backend;

struct cxl_target {
	char dev[32];         /* "dax0.0" */
	uint64_t align;
	int target_node;
};

static const char *basename_of(const char *p)
{
	const char *s = strrchr(p, '/');
	return s ? s + 1 : p;
}

static int cxl_discover(coh_context *ctx, void **priv)
{
	*priv = NULL;
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
		ct->align = align;
		ct->target_node = tnode;
		struct coh_target_desc desc = { 0 };
		desc.kind = COH_KIND_DEVICE_DAX;
		snprintf(desc.name, sizeof(desc.name), "cxl:%.31s", name);
		snprintf(desc.vendor, sizeof(desc.vendor), "Linux device-dax");
		snprintf(desc.model, sizeof(desc.model), "device-dax %.31s%s%.40s, align %llu KiB, node %d", name,
			 parent[0] ? " under " : "", parent, (unsigned long long)(align >> 10), tnode);
		desc.numa_node = -1;   /* not a node one can bind to; its affinity is in the model */
		desc.total_bytes = size;
		desc.caps = COH_CAP_QUERY | COH_CAP_PIN_QUERY;
		desc.priv = ct;
		err = coh_target_add(ctx, &desc);
		if (err)
			free(ct);
		else
			added++;
	}
	return err ? err : added;
}

static void cxl_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	(void)priv;
}

static void cxl_target_fini(coh_target *t, void *priv)
{
	(void)t;
	free(priv);
}

const struct coh_backend_ops coh_cxl_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "cxl",
	.discover = cxl_discover,
	.fini = cxl_fini,
	.target_fini = cxl_target_fini,
};
