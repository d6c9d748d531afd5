/* SPDX-License-Identifier: MIT */
/*
 * Node of a physical page from its frame number: the kernel's memory blocks
 * (/sys/devices/system/memory/block_size_bytes, and the memoryM links in each
 * /sys/devices/system/node/nodeN) say which node holds each block of
 * block_size_bytes / page size frames.  Built once per context through the
 * fsroot reader; memory hotplug adds and removes blocks, so a frame found in
 * no block asks for a re-read (at most once a second: the caller falls back
 * to move_pages meanwhile, which is always right, only slower).
 * COH_QUERY_PFN=0 in the environment turns the table off.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "query.h"

#define COH_PFN_MAX_BLOCKS (1u << 24)   /* 2 PiB of 128 MiB blocks: more is nonsense */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Adds the blocks of one node folder to *m (grown as needed): 0 or -errno. */
static int add_node_blocks(const coh_context *ctx, int node, struct coh_pfn_map **m)
{
	char path[64];
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
	DIR *d = coh_fs_opendir(ctx, path);
	if (!d)
		return 0;
	struct dirent *de;
	int e = 0;
	while (!e && (de = readdir(d))) {
		char *end;
		if (strncmp(de->d_name, "memory", 6) || de->d_name[6] < '0' || de->d_name[6] > '9')
			continue;
		unsigned long b = strtoul(de->d_name + 6, &end, 10);
		if (*end || b >= COH_PFN_MAX_BLOCKS)
			continue;
		if (b >= (*m)->nblocks) {
			size_t nb = (*m)->nblocks ? (*m)->nblocks : 64;
			while (nb <= b)
				nb *= 2;
			struct coh_pfn_map *g = realloc(*m, sizeof(**m) + nb * sizeof(g->node[0]));
			if (!g) {
				e = -ENOMEM;
				break;
			}
			for (size_t i = g->nblocks; i < nb; i++)
				g->node[i] = -1;
			g->nblocks = nb;
			*m = g;
		}
		(*m)->node[b] = (int16_t)node;
	}
	closedir(d);
	return e;
}

int coh_pfn_map_build(const coh_context *ctx, struct coh_pfn_map **out)
{
	char buf[64];
	*out = NULL;
	int r = coh_fs_read(ctx, "/sys/devices/system/memory/block_size_bytes", buf, sizeof(buf));
	if (r < 0)
		return -ENOENT;
	char *end;
	unsigned long long bs = strtoull(buf, &end, 16);   /* hexadecimal, without 0x */
	size_t ps = ctx->page_size;
	if (!isxdigit((unsigned char)buf[0]) || *end || bs < ps || bs % ps || (bs & (bs - 1)))
		return -EINVAL;
	struct coh_pfn_map *m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->block_pages = bs / ps;
	DIR *d = coh_fs_opendir(ctx, "/sys/devices/system/node");
	if (!d) {
		free(m);
		return -ENOENT;
	}
	struct dirent *de;
	int e = 0;
	while (!e && (de = readdir(d))) {
		int id;
		char tail;
		if (sscanf(de->d_name, "node%d%c", &id, &tail) == 1 && id >= 0 && id < COH_NODE_LIMIT)
			e = add_node_blocks(ctx, id, &m);
	}
	closedir(d);
	if (!e && m->nblocks == 0)
		e = -ENOENT;   /* no memory blocks in this tree */
	if (e) {
		free(m);
		return e;
	}
	m->loaded_ns = now_ns();
	*out = m;
	return 0;
}

const struct coh_pfn_map *coh_pfn_map_get(coh_context *ctx, bool refresh)
{
	struct coh_pfn_map *cur = atomic_load(&ctx->pfn_map);
	if (atomic_load(&ctx->pfn_unusable))
		return NULL;
	if (cur && (!refresh || now_ns() - cur->loaded_ns < 1000000000u))
		return cur;
	struct coh_pfn_map *m;
	const char *env = cur ? NULL : coh_ctx_tunable(ctx, "query.pfn");
	if (env && !strcmp(env, "0")) {   /* asked for move_pages only (comparisons, a workaround) */
		atomic_store(&ctx->pfn_unusable, 1);
		return NULL;
	}
	int e = coh_pfn_map_build(ctx, &m);
	if (e) {
		if (!cur) {
			coh_dbg(ctx, "query: no PFN to node table (%s): nodes from move_pages", strerror(-e));
			atomic_store(&ctx->pfn_unusable, 1);
		}
		return cur;
	}
	m->older = cur;
	if (!atomic_compare_exchange_strong(&ctx->pfn_map, &cur, m)) {
		free(m);   /* another thread published one first */
		return cur;
	}
	return m;
}

void coh_pfn_map_free(coh_context *ctx)
{
	/* replaced tables stay until here: lock-free readers may still hold them */
	struct coh_pfn_map *m = atomic_load(&ctx->pfn_map);
	while (m) {
		struct coh_pfn_map *o = m->older;
		free(m);
		m = o;
	}
	atomic_store(&ctx->pfn_map, NULL);
}
