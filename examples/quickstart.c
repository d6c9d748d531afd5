/* SPDX-License-Identifier: MIT */
/* The README's example: allocate on a target, use it, ask where it lives. */
#include <coherent.h>
#include <stdio.h>
#include <string.h>

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *t = coh_target_get(ctx, 0);       /* first target: host:node0 here */
	void *buf;
	int e = t ? coh_alloc(t, 64 << 20, NULL, &buf) : -ENODEV;
	if (e) {
		fprintf(stderr, "coh_alloc: %s\n", coh_strerror(e));
		return 1;
	}
	memset(buf, 1, 32 << 20);                       /* touch the first half */
	struct coh_extent ext[8];
	int n = coh_query(ctx, buf, 64 << 20, ext, 8, sizeof(struct coh_extent));  /* residency, nothing moves */
	for (int i = 0; i < n; i++)
		printf("%p +%zu MiB: %s on %s\n", (void *)ext[i].start, ext[i].length >> 20,
		       coh_mem_kind_name(ext[i].kind), ext[i].target ? coh_target_name(ext[i].target) : "-");
	coh_free(ctx, buf);
	coh_context_unref(ctx);
	return n == 2 ? 0 : 1;
}
