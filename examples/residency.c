/* SPDX-License-Identifier: MIT */
/* Residency and pin-query of an allocation in three states, and a migration
 * to every target that takes one. */
#include <coherent.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

static void show(coh_context *ctx, void *p, size_t len)
{
	struct coh_pin_extent pe[16];
	int n = coh_pin_query(ctx, p, len, pe, 16, sizeof(struct coh_pin_extent));
	for (int i = 0; i < n; i++)
		printf("  %#lx %6zu KiB  %-14s node %-2d  short pin: %-13s long pin: %-13s (%s)\n",
		       (unsigned long)pe[i].start, pe[i].length >> 10, coh_mem_kind_name(pe[i].kind), pe[i].node,
		       coh_pin_answer_name(pe[i].short_term), coh_pin_answer_name(pe[i].long_term), pe[i].reason);
}

int main(void)
{
	coh_context *ctx;
	int e = coh_context_create(NULL, &ctx);
	if (e)
		return 1;
	coh_target *home = coh_target_get(ctx, 0);
	if (!home) {
		fprintf(stderr, "no targets\n");
		return 1;
	}
	size_t len = 8 << 20;
	char *p;
	if ((e = coh_alloc(home, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p))) {
		fprintf(stderr, "coh_alloc: %s\n", coh_strerror(e));
		return 1;
	}
	printf("fresh allocation on %s:\n", coh_target_name(home));
	show(ctx, p, len);
	memset(p, 7, len / 2);
	printf("first half written:\n");
	show(ctx, p, len);
	coh_target *t;
	coh_target_foreach(ctx, t) {
		if (!(coh_target_caps(t) & COH_CAP_MIGRATE))
			continue;
		e = coh_migrate(ctx, p, len, t, 0);
		printf("migrate to %s: %s\n", coh_target_name(t), coh_strerror(e));
		show(ctx, p, len);
		for (size_t i = 0; i < len / 2; i++)
			if (p[i] != 7) {
				fprintf(stderr, "data changed at %zu\n", i);
				return 1;
			}
	}
	coh_free(ctx, p);
	coh_context_unref(ctx);
	return 0;
}
