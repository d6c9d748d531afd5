/* SPDX-License-Identifier: MIT */
/* fork()+_exit()+waitpid() with 1 GiB resident under each fork policy, against
 * a raw fork with the same memory mapped by plain mmap; and pin-query speed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench.h"
#include "coherent.h"

/* Median fork+exit+wait time in ms. */
static double time_fork(int reps)
{
	double t[32];
	for (int i = 0; i < reps; i++) {
		double t0 = bench_now_ns();
		pid_t pid = fork();
		if (pid == 0)
			_exit(0);
		if (pid < 0)
			return -1;
		waitpid(pid, NULL, 0);
		t[i] = (bench_now_ns() - t0) / 1e6;
	}
	qsort(t, (size_t)reps, sizeof(double), bench_cmp_double);
	return t[reps / 2];
}

int bench_fork(const struct bench_opts *o, struct bench_result *out, int max)
{
	coh_context *ctx;
	coh_target *t;
	int e = bench_host_ctx(&ctx, &t);
	if (e)
		return e;
	size_t len = o->quick ? (64u << 20) : (1u << 30);
	int reps = o->quick ? 3 : 15, n = 0;
	const char *sz = o->quick ? "64 MiB" : "1 GiB";
	char name[96];
	for (int huge = 0; huge <= 1 && n < max; huge++) {
		unsigned hflag = huge ? COH_ALLOC_HUGE : COH_ALLOC_NOHUGE;
		if (huge && !(coh_target_caps(t) & COH_CAP_HUGE_PAGES))
			break;
		if (o->progress)
			o->progress(huge ? "fork: 2 MiB pages" : "fork: 4 KiB pages");
		/* raw: plain mmap, same page size, populated */
		char *raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (raw == MAP_FAILED) {
			e = -ENOMEM;
			break;
		}
		madvise(raw, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
		memset(raw, 1, len);
		double base = time_fork(reps);
		for (int pol = COH_FORK_COPY; pol <= COH_FORK_KERNEL && n < max; pol++) {
			char *p;
			if ((e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = hflag, .fork_policy = pol), (void **)&p)))
				break;
			memset(p, 1, len);
			/* the raw mapping stays resident too: take its cost out by timing it alone */
			munmap(raw, len);
			raw = NULL;
			double v = time_fork(reps);
			/* re-create the raw mapping for the next baseline */
			raw = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			madvise(raw, len, huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
			coh_free(ctx, p);
			memset(raw, 1, len);
			double b2 = time_fork(reps);
			double b = (base + b2) / 2;   /* baseline measured before and after */
			base = b2;
			snprintf(name, sizeof(name), "fork+exit+wait, %s %s resident, %s", sz, huge ? "THP" : "4 KiB",
				 coh_fork_policy_name(pol));
			bool copy = pol == COH_FORK_COPY;
			bench_set(&out[n++], "fork", name, v, "ms", "raw fork", b, copy ? "<= 1.05" : "-",
			    copy ? v / b <= 1.05 : true);
		}
		if (raw)
			munmap(raw, len);
		if (e)
			break;
	}
	/* pin-query speed, 4 KiB and huge pages */
	for (int huge = 0; huge <= 1 && !e && n < max; huge++) {
		if (huge && !(coh_target_caps(t) & COH_CAP_HUGE_PAGES))
			break;
		if (o->progress)
			o->progress("pinquery: populating");
		char *p;
		if ((e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = (huge ? COH_ALLOC_HUGE : COH_ALLOC_NOHUGE) | COH_ALLOC_POPULATE),
				   (void **)&p)))
			break;
		struct coh_pin_extent pe[64];
		double best = 0;
		int ne = 0;
		for (int round = 0; round < 5; round++) {
			double t0 = bench_now_ns();
			ne = coh_pin_query(ctx, p, len, pe, 64, sizeof(struct coh_pin_extent));
			double rate = (double)(len / 4096) / (bench_now_ns() - t0) * 1e3;
			best = rate > best ? rate : best;
		}
		coh_free(ctx, p);
		if (ne < 0) {
			e = ne;
			break;
		}
		snprintf(name, sizeof(name), "coh_pin_query, %s %s populated (%d extent%s)", sz,
			 huge ? "THP" : "4 KiB pages", ne, ne == 1 ? "" : "s");
		bench_set(&out[n++], "pinquery", name, best, "M4Kpages/s", NULL, 0, "-", true);
	}
	coh_context_unref(ctx);
	return e ? e : n;
}
