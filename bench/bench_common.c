/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "bench.h"

double bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

int bench_run(const char *suite, const struct bench_opts *o, struct bench_result *out, int max)
{
	static const struct {
		const char *name;
		int (*fn)(const struct bench_opts *, struct bench_result *, int);
	} suites[] = { { "alloc", bench_alloc }, { "lookup", bench_lookup }, { "query", bench_query },
			{ "fork", bench_fork } };
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
		for (int i = 0; i < n; i++)
			printf("| %s | %s | %.3g %s | %s: %.3g %s | %s %.3f | %s | %s |\n", r[i].suite, r[i].name,
			       r[i].value, r[i].unit, r[i].baseline_name[0] ? r[i].baseline_name : "-",
			       r[i].baseline, r[i].unit, r[i].ratio_name, r[i].ratio, r[i].goal,
			       r[i].pass ? "yes" : "no");
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
