/* SPDX-License-Identifier: MIT */
/* An event loop that waits with poll() on a completion queue's descriptor
 * beside a timerfd: 64 migrations in flight, reaped as they complete, while
 * a 10 ms timer keeps ticking. */
#include <coherent.h>
#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define N 64

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *dst = coh_target_get(ctx, 0);
	size_t chunk = 256 << 10;
	unsigned char *p;
	int e = dst ? coh_alloc(dst, N * chunk, NULL, (void **)&p) : -ENODEV;
	if (e) {
		fprintf(stderr, "alloc: %s\n", coh_strerror(e));
		coh_context_unref(ctx);
		return 1;
	}
	memset(p, 1, N * chunk);

	coh_queue *q;
	if ((e = coh_queue_create(ctx, NULL, &q))) {
		fprintf(stderr, "queue: %s\n", coh_strerror(e));
		return 1;
	}
	struct coh_migrate_req r[N];
	for (int i = 0; i < N; i++)
		r[i] = (struct coh_migrate_req){ .addr = p + (size_t)i * chunk, .len = chunk, .dst = dst,
						 .cookie = (uint64_t)i };
	e = coh_queue_migrate(q, r, N, sizeof(r[0]));
	if (e != N) {
		fprintf(stderr, "submit: %s\n", coh_strerror(e));
		return 1;
	}

	int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	struct itimerspec tick = { { 0, 10000000 }, { 0, 10000000 } };
	timerfd_settime(tfd, 0, &tick, NULL);
	struct pollfd fds[2] = { { .fd = coh_queue_fd(q), .events = POLLIN }, { .fd = tfd, .events = POLLIN } };
	int done = 0, failed = 0, ticks = 0;
	while (done < N && ticks < 1000) {
		if (poll(fds, 2, -1) < 0)
			break;
		if (fds[1].revents & POLLIN) {
			uint64_t n;
			if (read(tfd, &n, sizeof(n)) == sizeof(n))
				ticks += (int)n;
		}
		if (fds[0].revents & POLLIN) {
			struct coh_completion c[16];
			int n = coh_queue_reap(q, c, 16, sizeof(c[0]), 0);
			for (int i = 0; i < n; i++)
				failed += c[i].result != 0;
			done += n > 0 ? n : 0;
		}
	}
	printf("%d migrations of %zu KiB to %s completed (%d failed) over %d timer tick(s)\n", done, chunk >> 10,
	       coh_target_name(dst), failed, ticks);
	close(tfd);
	coh_queue_destroy(q);
	coh_free(ctx, p);
	coh_context_unref(ctx);
	return done == N && failed == 0 ? 0 : 1;
}
