/* SPDX-License-Identifier: MIT */
/* The benchmark suites, shared by coh-bench and `cohctl bench`. */
#ifndef COH_BENCH_H
#define COH_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "coherent.h"

struct bench_result {
	char suite[24];
	char name[96];
	double value;          /* what libcoherent achieved */
	char unit[16];         /* "ns", "Mpages/s" */
	double baseline;       /* the raw kernel path measured in the same run, 0 if none */
	char baseline_name[64];
	double ratio;          /* value / baseline (time) or value / baseline (rate) as named */
	char ratio_name[32];
	char goal[48];
	bool pass;             /* meets the goal */
};

struct bench_opts {
	bool quick;            /* smaller sizes for smoke runs */
	void (*progress)(const char *msg);
};

/* Each appends to out (at most max) and returns the number added, or -errno. */
int bench_alloc(const struct bench_opts *o, struct bench_result *out, int max);
int bench_lookup(const struct bench_opts *o, struct bench_result *out, int max);
int bench_query(const struct bench_opts *o, struct bench_result *out, int max);
int bench_fork(const struct bench_opts *o, struct bench_result *out, int max);
/* Device-dax: sub-allocator and copy-and-remap migration; nothing without a device. */
int bench_cxl(const struct bench_opts *o, struct bench_result *out, int max);
/* coh_pool on host:node0 against malloc, jemalloc and memkind (those found). */
int bench_pool(const struct bench_opts *o, struct bench_result *out, int max);
/* Managed memory on the first NVIDIA GPU; nothing without one. */
int bench_nvidia(const struct bench_opts *o, struct bench_result *out, int max);

/* The completion queue on a host target: per-request overhead against
 * coh_migrate, and 10 000 requests through the queue, a batch and a loop. */
int bench_queue(const struct bench_opts *o, struct bench_result *out, int max);

/* Runs the named suite ("alloc", "lookup", "query", "fork", "pool", "cxl", "nvidia", "queue") or all (NULL). */
int bench_run(const char *suite, const struct bench_opts *o, struct bench_result *out, int max);
void bench_print(const struct bench_result *r, int n, bool markdown);
/* The rows as an SVG bar chart, grouped by suite: per row libcoherent's
 * value against the peer's, scaled to the larger, with the ratio and the
 * goal met or not; titled, with the machine and the date.  0, or -1 when
 * writing to f failed. */
int bench_plot_svg(FILE *f, const char *title, const struct bench_result *r, int n);

/* A context of the host backend alone and its target host:node0 (NULL
 * when there is none): 0, or coh_context_create's error. */
int bench_host_ctx(coh_context **ctx, coh_target **node0);
double bench_now_ns(void);
int bench_cmp_double(const void *a, const void *b);
/* Fills r; with a baseline (bname non-NULL) the ratio is value / baseline,
 * named "time x" for times and "speed x" for rates. */
void bench_set(struct bench_result *r, const char *suite, const char *name, double value, const char *unit,
	       const char *bname, double baseline, const char *goal, bool pass);

#endif
