/* SPDX-License-Identifier: MIT */
/*
 * A runtime's message buffers from a pool: every memory node of the machine
 * in a fallback order (CPU-less nodes, CXL or HBM, first; then the nodes
 * with CPUs), two producer threads that allocate messages and one consumer
 * that frees them, then what the pool holds, where a message lives, and a
 * trim.  Runs on any machine: with one node the list is that node.
 */
#include <coherent.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

enum { PRODUCERS = 2, MSGS = 100000, RING = 1024 };

struct msg {
	unsigned producer, seq;
	char payload[];
};

static coh_pool *pool;
static struct msg *ring[RING];
static unsigned head, tail;   /* under lock */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int failed;

static void *producer(void *arg)
{
	unsigned id = (unsigned)(size_t)arg;
	for (unsigned i = 0; i < MSGS; i++) {
		struct msg *m;
		size_t len = sizeof(*m) + 16 + (i * 37) % 1000;   /* 24 B to ~1 KiB */
		int e = coh_pool_alloc(pool, len, 0, (void **)&m);
		if (e) {
			fprintf(stderr, "coh_pool_alloc: %s\n", coh_strerror(e));
			failed = 1;
			return NULL;
		}
		m->producer = id;
		m->seq = i;
		memset(m->payload, (int)i, len - sizeof(*m));
		pthread_mutex_lock(&lock);
		while (head - tail == RING)
			pthread_cond_wait(&cond, &lock);
		ring[head++ % RING] = m;
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
	}
	return NULL;
}

static void *consumer(void *arg)
{
	(void)arg;
	for (unsigned n = 0; n < PRODUCERS * MSGS; n++) {
		pthread_mutex_lock(&lock);
		while (head == tail)
			pthread_cond_wait(&cond, &lock);
		struct msg *m = ring[tail++ % RING];
		pthread_cond_broadcast(&cond);
		pthread_mutex_unlock(&lock);
		if ((unsigned char)m->payload[0] != (unsigned char)m->seq || coh_pool_free(pool, m)) {
			failed = 1;   /* freed by another thread than the one that allocated it */
			return NULL;
		}
	}
	return NULL;
}

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *order[64], *t;
	size_t n = 0;
	for (int cpuless = 1; cpuless >= 0; cpuless--)
		coh_target_foreach(ctx, t)
			if (n < 64 && (coh_target_caps(t) & COH_CAP_ALLOC) &&
			    (coh_target_kind(t) == (cpuless ? COH_KIND_CPULESS_NODE : COH_KIND_HOST_NODE)))
				order[n++] = t;
	if (!n) {
		fprintf(stderr, "no memory node to allocate on\n");
		return 1;
	}
	int e = coh_pool_create(ctx, &(struct coh_pool_props){ .size = sizeof(struct coh_pool_props),
							   .targets = order, .ntargets = n }, &pool);
	if (e) {
		fprintf(stderr, "coh_pool_create: %s\n", coh_strerror(e));
		return 1;
	}
	printf("pool over %zu target%s, first %s\n", n, n > 1 ? "s" : "", coh_target_name(order[0]));

	pthread_t th[PRODUCERS + 1];
	for (size_t i = 0; i < PRODUCERS; i++)
		pthread_create(&th[i], NULL, producer, (void *)i);
	pthread_create(&th[PRODUCERS], NULL, consumer, NULL);

	/* meanwhile: one long-lived buffer of the main thread, and where it lives */
	void *keep;
	if ((e = coh_pool_alloc(pool, 4096, 4096, &keep)) == 0) {
		memset(keep, 1, 4096);
		struct coh_alloc_info info = { .size = sizeof(info) };
		struct coh_extent ext[2];
		if (coh_lookup(ctx, keep, &info) == 0 && coh_query(ctx, keep, 4096, ext, 2, sizeof(ext[0])) > 0)
			printf("a 4 KiB block at %p: pool %s, block of %zu bytes in a chunk of %zu KiB on %s, now %s\n",
			       keep, info.pool == pool ? "named" : "NOT named", info.block_size, info.length >> 10,
			       coh_target_name(info.target), coh_mem_kind_name(ext[0].kind));
	}
	for (int i = 0; i <= PRODUCERS; i++)
		pthread_join(th[i], NULL);

	struct coh_pool_stats s = { .size = sizeof(s) };
	coh_pool_stats(pool, &s);
	printf("after %d messages: %llu blocks live, %llu KiB of backing in %llu chunks, %llu KiB cached\n",
	       PRODUCERS * MSGS, (unsigned long long)s.live_blocks, (unsigned long long)s.backing_bytes >> 10,
	       (unsigned long long)s.chunks, (unsigned long long)s.cached_bytes >> 10);
	if (!e)
		coh_pool_free(pool, keep);
	int trimmed = coh_pool_trim(pool);
	coh_pool_stats(pool, &s);
	printf("trim returned %d chunk%s: %llu KiB of backing left\n", trimmed, trimmed == 1 ? "" : "s",
	       (unsigned long long)s.backing_bytes >> 10);
	coh_pool_destroy(pool);
	coh_context_unref(ctx);
	return failed || e || s.live_blocks ? 1 : 0;
}
