/* SPDX-License-Identifier: MIT */
/* coh-bench [--quick] [--markdown] [SUITE]: runs the benchmark suites. */
#include <stdio.h>
#include <string.h>

#include "bench.h"
#include "coherent.h"

static void progress(const char *msg)
{
	fprintf(stderr, "coh-bench: %s\n", msg);
}

int main(int argc, char **argv)
{
	struct bench_opts o = { .progress = progress };
	bool md = false;
	const char *suite = NULL;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			o.quick = true;
		else if (!strcmp(argv[i], "--markdown"))
			md = true;
		else if (argv[i][0] != '-')
			suite = argv[i];
		else {
			fprintf(stderr, "usage: coh-bench [--quick] [--markdown] [alloc|lookup|query|fork|pool|cxl|nvidia|queue]\n");
			return 2;
		}
	}
	struct bench_result r[64];
	int n = bench_run(suite, &o, r, 64);
	if (n < 0) {
		fprintf(stderr, "coh-bench: %s\n", coh_strerror(n));
		return 1;
	}
	bench_print(r, n, md);
	return 0;
}
