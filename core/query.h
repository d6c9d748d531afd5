/* SPDX-License-Identifier: MIT */
/* Query engine internals shared by query.c and pinquery.c. */
#ifndef COH_CORE_QUERY_H
#define COH_CORE_QUERY_H

#include "internal.h"

enum coh_vma_backing {
	COH_VMA_ANON = 0,
	COH_VMA_SHMEM,     /* shared anonymous, SysV, memfd, tmpfs */
	COH_VMA_FILE,
	COH_VMA_DEVDAX,
	COH_VMA_VENDOR,    /* /dev/nvidia-uvm */
	COH_VMA_DEVICE,    /* other device mappings (VM_IO / PFNMAP) */
};

struct coh_vma {
	uintptr_t start, end;
	bool read, write, shared;
	int backing;       /* enum coh_vma_backing */
	char path[256];
};

struct coh_q {
	coh_context *ctx;
	struct coh_extent *ext;
	size_t n, max;
	bool full;
	pid_t pid;
	int pmfd;
	bool swap_active;
	int vma_backing;
	int vma_node;      /* >= 0: every present page of the mapping is there */
};

int coh_maps_read(const coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		  struct coh_vma **out, size_t *count);
int coh_vma_classify(const struct coh_vma *m);
void coh_query_refine(coh_context *ctx, struct coh_extent *ext, int n);
int coh_query_engine(coh_context *ctx, pid_t pid, uintptr_t start, uintptr_t end,
		     struct coh_extent *ext, size_t max);

#endif
