/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"

int bench_host_ctx(coh_context **ctx, coh_target **node0)
{
	struct coh_context_options opt = { .size = sizeof(opt), .backends = "host", .log_level = -1 };
	int e = coh_context_create(&opt, ctx);
	if (e)
		return e;
	*node0 = coh_target_find(*ctx, "host:node0");
	return 0;
}

double bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int bench_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

void bench_set(struct bench_result *r, const char *suite, const char *name, double value, const char *unit,
	       const char *bname, double baseline, const char *goal, bool pass)
{
	memset(r, 0, sizeof(*r));
	snprintf(r->suite, sizeof(r->suite), "%s", suite);
	snprintf(r->name, sizeof(r->name), "%s", name);
	r->value = value;
	snprintf(r->unit, sizeof(r->unit), "%s", unit);
	if (bname) {
		snprintf(r->baseline_name, sizeof(r->baseline_name), "%s", bname);
		r->baseline = baseline;
		r->ratio = baseline > 0 ? value / baseline : 0;
		snprintf(r->ratio_name, sizeof(r->ratio_name), "%s", !strcmp(unit, "ns") || !strcmp(unit, "ms")
										? "time x" : "speed x");
	}
	snprintf(r->goal, sizeof(r->goal), "%s", goal);
	r->pass = pass;
}

int bench_run(const char *suite, const struct bench_opts *o, struct bench_result *out, int max)
{
	static const struct {
		const char *name;
		int (*fn)(const struct bench_opts *, struct bench_result *, int);
	} suites[] = { { "alloc", bench_alloc }, { "lookup", bench_lookup }, { "query", bench_query },
			{ "fork", bench_fork }, { "pool", bench_pool }, { "cxl", bench_cxl },
			{ "queue", bench_queue },
#ifdef COH_BENCH_NVIDIA
			{ "nvidia", bench_nvidia },
#endif
	};
	int n = 0, ran = 0;
	for (size_t i = 0; i < sizeof(suites) / sizeof(suites[0]); i++) {
		if (suite && strcmp(suite, suites[i].name))
			continue;
		ran++;
		int r = suites[i].fn(o, out + n, max - n);
		if (r < 0)
			return r;
		n += r;
	}
	return ran ? n : -ENOENT;
}

void bench_print(const struct bench_result *r, int n, bool markdown)
{
	if (markdown) {
		printf("| suite | measurement | libcoherent | raw path (same run) | ratio | goal | met |\n");
		printf("|---|---|---|---|---|---|---|\n");
		for (int i = 0; i < n; i++) {
			char base[96] = "-", ratio[48] = "-";
			if (r[i].baseline_name[0]) {
				snprintf(base, sizeof(base), "%s: %.3g %s", r[i].baseline_name, r[i].baseline, r[i].unit);
				snprintf(ratio, sizeof(ratio), "%s %.3f", r[i].ratio_name, r[i].ratio);
			}
			printf("| %s | %s | %.3g %s | %s | %s | %s | %s |\n", r[i].suite, r[i].name, r[i].value,
			       r[i].unit, base, ratio, r[i].goal, r[i].pass ? "yes" : "no");
		}
		return;
	}
	printf("%-7s %-44s %14s %26s %22s %-20s %s\n", "suite", "measurement", "libcoherent", "raw path",
	       "ratio", "goal", "met");
	for (int i = 0; i < n; i++) {
		char v[32], b[40], ra[40];
		snprintf(v, sizeof(v), "%.3g %s", r[i].value, r[i].unit);
		if (r[i].baseline_name[0])
			snprintf(b, sizeof(b), "%.3g %s", r[i].baseline, r[i].unit);
		else
			snprintf(b, sizeof(b), "-");
		snprintf(ra, sizeof(ra), "%s %.3f", r[i].ratio_name, r[i].ratio);
		printf("%-7s %-44s %14s %26s %22s %-20s %s\n", r[i].suite, r[i].name, v, b,
		       r[i].ratio_name[0] ? ra : "-", r[i].goal, r[i].pass ? "yes" : "no");
	}
}
