/* SPDX-License-Identifier: MIT */
/* cxl backend: CXL memory devices and regions from /sys/bus/cxl, and the words
 * that name them in notes and models. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cxl.h"

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

void cxl_bus_read(coh_context *ctx, struct cxl_bus *bus)
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
			r->committed = coh_fs_readf(ctx, buf, sizeof(buf), "/sys/bus/cxl/devices/%s/commit", nm) > 0
					       ? atoi(buf) != 0 : -1;
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

const struct cxl_region *cxl_region_named(const struct cxl_bus *bus, const char *name)
{
	for (int i = 0; i < bus->nreg; i++)
		if (!strcmp(bus->reg[i].name, name))
			return &bus->reg[i];
	return NULL;
}

const struct cxl_mem *cxl_mem_named(const struct cxl_bus *bus, const char *name)
{
	for (int i = 0; i < bus->nmem; i++)
		if (!strcmp(bus->mem[i].name, name))
			return &bus->mem[i];
	return NULL;
}

/* "region0 (ram, 16.0 GiB, mem0 0000:0d:00.0 <pci name>)" for a dax device's parent region. */
void cxl_region_words(coh_context *ctx, const struct cxl_bus *bus, const struct cxl_region *r, char *out,
		      size_t len)
{
	char mems[256] = "", first[16];
	const char *p = r->mems;
	while (*p) {
		size_t k = strcspn(p, ",");
		snprintf(first, sizeof(first), "%.*s", (int)(k < 15 ? k : 15), p);
		const struct cxl_mem *m = cxl_mem_named(bus, first);
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
void cxl_bus_notes(coh_context *ctx, const struct cxl_bus *bus)
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
		coh_backend_note(ctx, "%s: CXL region, %s%s%.1f GiB at %#llx, %d-way over %s%s", r->name, r->mode,
				 r->mode[0] ? ", " : "", (double)r->size / (1 << 30), (unsigned long long)r->hpa, r->ways,
				 r->mems[0] ? r->mems : "?",
				 r->committed == 1 ? ", committed"
				 : r->committed == 0 ? ", not committed (its decoders are not programmed yet)" : "");
	}
}
