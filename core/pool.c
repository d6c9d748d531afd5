/* SPDX-License-Identifier: MIT */
/*
 * Pools (coh_pool_*): a small-object allocator over any target.  Why our own
 * layer and not jemalloc's extent hooks: core/pool-design.md.
 *
 * Backing.  Blocks of one size class are carved from a 2 MiB chunk, one
 * class per chunk, each chunk an ordinary coh_alloc() allocation aligned to
 * 2 MiB on the first of the pool's targets that gives one.  Requests above
 * the largest class (64 KiB) are coh_alloc()s of their own, also 2 MiB
 * aligned.  All bookkeeping lives outside the memory it describes (the
 * memory may be a device's: the allocator never touches it).
 *
 * Chunk table.  A process-wide two-level table, indexed by address >> 21,
 * names the chunk (or large allocation) that starts in each 2 MiB granule;
 * it is read without a lock (entries are published with release stores).
 * Chunk records are never freed before their pool is destroyed, so a reader
 * holding a stale entry reads a retired record whose bitmaps are all clear.
 *
 * Block state, per chunk: bit i of `used` is set while block i is the
 * caller's (set and cleared with atomic RMW, which is what refuses a double
 * free from any thread); bit i of `avail` is set while block i is free in the
 * chunk (the pool's lock).  A free block in a per-thread cache has neither:
 * blocks past `bump` were never handed out.
 *
 * Per-thread caches: one per thread and pool, a stack per size class.  A
 * thread finds its cache through four thread-local slots keyed by the pool's
 * id (ids are never reused, so a stale slot never matches).  Caches hang on
 * their pool and on their thread under one global lock (creation, thread
 * exit, destroy, fork), never taken on the fast path.
 *
 * Locks, outermost first: cache_lock, a pool's lock, then the core's (the
 * allocation map's, inside coh_alloc, coh_free and coh_migrate).  At fork the
 * prepare handler takes cache_lock and every pool's lock (it is installed
 * after the core's, so it runs before the core's handler takes the map);
 * in the child the caches of the threads that did not survive are emptied
 * into their chunks, and the pool is fitted to its fork policy: EXCLUDE
 * drops the chunks the child does not have, SHARE stops reusing the chunks
 * the parent still allocates from.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "growth.h"
#include "internal.h"

#define CHUNK_SHIFT 21
#define CHUNK ((size_t)1 << CHUNK_SHIFT)
#define NCLASS 44
#define MAX_SMALL ((size_t)64 << 10)
#define BIN_MAX 64
#define NSLOT 4
#define DEFAULT_MAX_CACHED ((size_t)4 << 20)
#define FLAGS_KNOWN COH_POOL_NO_TCACHE
#define ALLOC_FLAGS_KNOWN (COH_ALLOC_HUGE | COH_ALLOC_NOHUGE | COH_ALLOC_POPULATE)

/* ---- the chunk table: granule (address >> 21) -> chunk ---- */
#define TAB_BITS 13
#define TAB_N ((size_t)1 << TAB_BITS)
#define TAB_LIMIT ((uintptr_t)1 << (CHUNK_SHIFT + 2 * TAB_BITS))   /* 128 TiB */

struct chunk;
struct tab_leaf {
	_Atomic(struct chunk *) e[TAB_N];
};
static _Atomic(struct tab_leaf *) tab_top[TAB_N];
static pthread_mutex_t tab_grow_lock = PTHREAD_MUTEX_INITIALIZER;

static inline struct chunk *tab_get(uintptr_t a)
{
	if (a >= TAB_LIMIT)
		return NULL;
	struct tab_leaf *l = atomic_load_explicit(&tab_top[a >> (CHUNK_SHIFT + TAB_BITS)], memory_order_acquire);
	if (!l)
		return NULL;
	return atomic_load_explicit(&l->e[(a >> CHUNK_SHIFT) & (TAB_N - 1)], memory_order_acquire);
}

/* 0 or -ENOMEM.  Leaves live as long as the process (a reader may hold one). */
static int tab_set(uintptr_t a, struct chunk *c)
{
	if (a >= TAB_LIMIT)
		return -ENOMEM;
	_Atomic(struct tab_leaf *) *slot = &tab_top[a >> (CHUNK_SHIFT + TAB_BITS)];
	struct tab_leaf *l = atomic_load_explicit(slot, memory_order_acquire);
	if (!l) {
		pthread_mutex_lock(&tab_grow_lock);
		l = atomic_load_explicit(slot, memory_order_acquire);
		if (!l) {
			l = calloc(1, sizeof(*l));
			if (l)
				atomic_store_explicit(slot, l, memory_order_release);
		}
		pthread_mutex_unlock(&tab_grow_lock);
		if (!l)
			return -ENOMEM;
	}
	atomic_store_explicit(&l->e[(a >> CHUNK_SHIFT) & (TAB_N - 1)], c, memory_order_release);
	return 0;
}

/* ---- size classes: 16..128 by 16, then four per doubling up to 64 KiB ---- */
static size_t class_size[NCLASS];
static uint64_t class_magic[NCLASS];   /* off * magic >> 42 == off / size for off < 2^21 */
static unsigned class_cap[NCLASS];     /* per-thread cache depth */
static unsigned class_gshift[NCLASS];  /* log2 of the blocks in a used group: one refill */
static pthread_once_t class_once = PTHREAD_ONCE_INIT;

static void classes_init(void)
{
	for (unsigned i = 0; i < NCLASS; i++) {
		size_t s;
		if (i < 8) {
			s = 16 * (i + 1);
		} else {
			unsigned b = 7 + (i - 8) / 4, k = (i - 8) % 4;
			s = ((size_t)1 << b) + (k + 1) * ((size_t)1 << (b - 2));
		}
		class_size[i] = s;
		class_magic[i] = (((uint64_t)1 << 42) / s) + 1;
		size_t cap = (64u << 10) / s;
		class_cap[i] = cap > BIN_MAX ? BIN_MAX : cap < 4 ? 4 : (unsigned)cap;
		/* a refill: the power of two above half the cache, at most the cache */
		unsigned g = 0;
		while (((unsigned)1 << g) < class_cap[i] / 2 + 1)
			g++;
		class_gshift[i] = g;
	}
}

static inline unsigned size_class(size_t size)
{
	if (size <= 128)
		return size ? (unsigned)((size - 1) >> 4) : 0;
	size_t s = size - 1;
	unsigned b = 63u - (unsigned)__builtin_clzll(s);
	unsigned k = (unsigned)((s - ((size_t)1 << b)) >> (b - 2));
	return 8 + (b - 7) * 4 + k;
}

/* ---- chunks, caches, pools ---- */
struct coh_pool;

struct chunk {
	struct coh_pool *pool;      /* fixed for the record's life */
	_Atomic uintptr_t base;     /* 0 once retired */
	size_t length;              /* of the backing allocation */
	int cls;                    /* -1: a large allocation (one block: the whole of it) */
	int tindex;                 /* which of the pool's targets */
	uint32_t nblocks, bump, navail;
	uint32_t hint;              /* no avail bit below this word */
	bool frozen;                /* SHARE child: the parent still allocates here */
	bool listed;                /* on its class's avail list */
	struct chunk *next, *prev;  /* the pool's chunk list (or large list, or retired list) */
	struct chunk *anext;        /* its class's avail list */
	uint64_t *avail;            /* under the pool lock */
	_Atomic uint64_t *used;     /* atomic RMW; group g's word at USED(c, g) */
	void *used_mem;             /* what used was carved from */
	const void *bump_owner;     /* the cache the last bump blocks went to */
	_Atomic int large_live;     /* large: 1 while the caller holds it */
};

struct tthread;
struct tcache {
	struct coh_pool *pool;
	struct tthread *owner;      /* NULL: the thread is gone (fork child) */
	struct tcache *pnext, *pprev;   /* the pool's caches */
	struct tcache *tnext;       /* the thread's caches */
	_Atomic bool flush_req;     /* coh_pool_trim asks the owner to give its blocks back */
	struct {
		/* written by the owner only; atomic so that coh_pool_stats can read it */
		_Atomic unsigned n;
		void *b[BIN_MAX];
	} bin[NCLASS];
};

#define BIN_N(tc, k) atomic_load_explicit(&(tc)->bin[k].n, memory_order_relaxed)
#define BIN_SET(tc, k, v) atomic_store_explicit(&(tc)->bin[k].n, (v), memory_order_relaxed)

struct tthread {
	struct tcache *caches;
};

struct tslot {
	uint64_t id;
	struct tcache *tc;
};

struct coh_pool {
	coh_context *ctx;
	uint64_t id;
	pthread_mutex_t lock;
	coh_target **targets;
	uint64_t *limits;           /* 0: none */
	uint64_t *taken;            /* backing bytes per target */
	size_t ntargets;
	int fork_policy;
	unsigned flags, alloc_flags;
	size_t max_cached, empty_bytes;
	struct chunk *chunks, *large, *retired;
	struct chunk *avail[NCLASS];    /* chunks with blocks to give */
	struct tcache *caches;
	struct coh_pool *gnext;     /* the list of every pool (fork) */
	uint64_t backing, nchunks, nlarge, fallbacks;
};

static pthread_mutex_t cache_lock = PTHREAD_MUTEX_INITIALIZER;
static struct coh_pool *pools;          /* under cache_lock */
static _Atomic uint64_t next_id = 1;
static pthread_key_t thread_key;
static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static _Thread_local struct tslot tls_slot[NSLOT] __attribute__((tls_model("initial-exec")));
static _Thread_local struct tthread *tls_thread __attribute__((tls_model("initial-exec")));

static void thread_exit(void *arg);
static void fork_prepare(void);
static void fork_parent(void);
static void fork_child(void);

static void global_init(void)
{
	pthread_once(&class_once, classes_init);
	pthread_key_create(&thread_key, thread_exit);
	pthread_atfork(fork_prepare, fork_parent, fork_child);
}

/* ---- chunk bookkeeping (pool lock held) ---- */

static inline size_t words_of(uint32_t n)
{
	return ((size_t)n + 63) / 64;
}

/*
 * The used bits are kept per group: a class's group is as many blocks as one
 * cache refill takes (a power of two, at most 64), and each group's word sits
 * alone in its cache line.  Refills hand out whole groups where they can (see
 * central_take), so two threads that allocate and free their own blocks never
 * write the same line: with one word per 64 blocks, two caches refilled from
 * one word made two threads on one pool twice as slow as one.  The cost is a
 * cache line per group (1/16 of the bytes for 16 B blocks, 1/64 for 64 B), and
 * calloc leaves the lines of untouched groups unmapped.
 */
#define LINE 64
#define USTRIDE (LINE / sizeof(uint64_t))
#define USED(c, g) (&(c)->used[(size_t)(g) * USTRIDE])
#define GSHIFT(c) (class_gshift[(c)->cls])

static inline size_t groups_of(const struct chunk *c)
{
	return (((size_t)c->nblocks - 1) >> GSHIFT(c)) + 1;
}

static int used_new(struct chunk *c, size_t words)
{
	c->used_mem = calloc(words * USTRIDE + USTRIDE, sizeof(uint64_t));
	if (!c->used_mem)
		return -ENOMEM;
	uintptr_t a = ((uintptr_t)c->used_mem + LINE - 1) & ~(uintptr_t)(LINE - 1);
	c->used = (_Atomic uint64_t *)a;
	return 0;
}

static void list_add(struct chunk **head, struct chunk *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head)
		(*head)->prev = c;
	*head = c;
}

static void list_del(struct chunk **head, struct chunk *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		*head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	c->next = c->prev = NULL;
}

static void avail_add(struct coh_pool *p, struct chunk *c)
{
	if (c->listed || c->frozen)
		return;
	c->anext = p->avail[c->cls];
	p->avail[c->cls] = c;
	c->listed = true;
}

static void avail_del(struct coh_pool *p, struct chunk *c)
{
	for (struct chunk **pp = &p->avail[c->cls]; *pp; pp = &(*pp)->anext)
		if (*pp == c) {
			*pp = c->anext;
			break;
		}
	c->listed = false;
}

static bool chunk_empty(const struct chunk *c)
{
	return c->navail == c->bump;
}

/* The backing of a chunk or large allocation on the first target that gives
 * it, within its limit: 0 or the last target's error. */
static int backing_alloc(struct coh_pool *p, size_t len, size_t align, void **out, int *tindex)
{
	int e = -ENOMEM;
	for (size_t i = 0; i < p->ntargets; i++) {
		if (p->limits && p->limits[i] && p->taken[i] + len > p->limits[i]) {
			e = -ENOMEM;
			continue;
		}
		e = coh_alloc(p->targets[i], len, &COH_ALLOC_PROPS(.align = align, .flags = p->alloc_flags,
								   .fork_policy = p->fork_policy), out);
		if (e == 0) {
			p->taken[i] += len;
			p->backing += len;
			if (i)
				p->fallbacks++;
			*tindex = (int)i;
			return 0;
		}
	}
	return e;
}

/* A new chunk of class cls, or NULL with *err set. */
static struct chunk *chunk_new(struct coh_pool *p, int cls, int *err)
{
	uint32_t nb = (uint32_t)(CHUNK / class_size[cls]);
	size_t w = words_of(nb);
	struct chunk *c = calloc(1, sizeof(*c));
	*err = -ENOMEM;
	if (!c)
		return NULL;
	c->avail = calloc(w, sizeof(uint64_t));
	void *mem;
	size_t ng = (((size_t)nb - 1) >> class_gshift[cls]) + 1;
	if (!c->avail || used_new(c, ng) || (*err = backing_alloc(p, CHUNK, CHUNK, &mem, &c->tindex))) {
		free(c->avail);
		free(c->used_mem);
		free(c);
		return NULL;
	}
	c->pool = p;
	c->cls = cls;
	c->length = CHUNK;
	c->nblocks = nb;
	atomic_init(&c->base, (uintptr_t)mem);
	if ((*err = tab_set((uintptr_t)mem, c))) {
		p->taken[c->tindex] -= CHUNK;
		p->backing -= CHUNK;
		coh_free_backing(p->ctx, mem);
		free(c->avail);
		free(c->used_mem);
		free(c);
		return NULL;
	}
	list_add(&p->chunks, c);
	p->nchunks++;
	p->empty_bytes += CHUNK;   /* a new chunk is an empty one */
	return c;
}

/* Returns an empty chunk's backing: 0, or coh_free's error (kept then). */
static int chunk_release(struct coh_pool *p, struct chunk *c)
{
	uintptr_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
	tab_set(base, NULL);   /* the leaf exists: cannot fail */
	int e = coh_free_backing(p->ctx, (void *)base);
	if (e) {
		tab_set(base, c);
		return e;
	}
	if (c->listed)
		avail_del(p, c);
	atomic_store_explicit(&c->base, 0, memory_order_relaxed);
	p->taken[c->tindex] -= c->length;
	p->backing -= c->length;
	p->nchunks--;
	if (!c->frozen)
		p->empty_bytes -= c->length;
	list_del(&p->chunks, c);
	list_add(&p->retired, c);
	return 0;
}

/* Fresh blocks for a cache other than the one the last ones went to start at
 * a new group: the rest of the current one becomes available blocks. */
static void bump_align(struct chunk *c, const void *who)
{
	if (c->bump_owner == who)
		return;
	c->bump_owner = who;
	uint32_t g = 1u << GSHIFT(c);
	uint32_t end = (c->bump + g - 1) & ~(g - 1);
	if (end > c->nblocks)
		end = c->nblocks;
	for (uint32_t i = c->bump; i < end; i++)
		c->avail[i / 64] |= (uint64_t)1 << (i % 64);
	if (end > c->bump && c->bump / 64 < c->hint)
		c->hint = c->bump / 64;
	c->navail += end - c->bump;
	c->bump = end;
}

/* Takes whole free groups of c into out, looking at a few words from the
 * first with free blocks: how many blocks. */
static unsigned take_groups(struct chunk *c, uintptr_t base, size_t bs, void **out, unsigned room)
{
	unsigned gs = GSHIFT(c), g = 1u << gs, got = 0;
	uint64_t mask = g == 64 ? ~(uint64_t)0 : ((uint64_t)1 << g) - 1;
	size_t end = words_of(c->bump), w = c->hint;
	if (end > w + 8)
		end = w + 8;
	for (; w < end && got + g <= room; w++)
		for (unsigned sh = 0; sh < 64 && got + g <= room; sh += g) {
			if (((c->avail[w] >> sh) & mask) != mask || w * 64 + sh + g > c->bump)
				continue;
			c->avail[w] &= ~(mask << sh);
			c->navail -= g;
			for (unsigned k = 0; k < g; k++)
				out[got++] = (void *)(base + (w * 64 + sh + k) * bs);
		}
	return got;
}

/* Up to want free blocks of class cls into out, for the cache who (NULL:
 * none): how many; when none, *err says why (the targets' error).  A cache
 * gets whole groups (free ones, then fresh ones) before odd blocks. */
static unsigned central_take(struct coh_pool *p, unsigned cls, void **out, unsigned want, const void *who,
			     int *err)
{
	unsigned got = 0;
	size_t bs = class_size[cls];
	while (got < want) {
		struct chunk *c = p->avail[cls];
		if (!c) {
			c = chunk_new(p, (int)cls, err);
			if (!c)
				break;
			avail_add(p, c);
		}
		bool was_empty = chunk_empty(c);
		uintptr_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
		if (who && c->navail)
			got += take_groups(c, base, bs, out + got, want - got);
		if (who && got < want && c->bump < c->nblocks) {
			bump_align(c, who);
			while (got < want && c->bump < c->nblocks)
				out[got++] = (void *)(base + (size_t)c->bump++ * bs);
		}
		size_t w = c->hint;
		for (; c->navail && got < want && w < words_of(c->bump); w++) {
			while (c->avail[w] && got < want) {
				unsigned bit = (unsigned)__builtin_ctzll(c->avail[w]);
				c->avail[w] &= c->avail[w] - 1;
				c->navail--;
				out[got++] = (void *)(base + (w * 64 + bit) * bs);
			}
			if (got == want)
				break;
		}
		c->hint = (uint32_t)w;
		while (got < want && c->bump < c->nblocks)
			out[got++] = (void *)(base + (size_t)c->bump++ * bs);
		if (was_empty && !chunk_empty(c))
			p->empty_bytes -= c->length;
		if (!c->navail && c->bump == c->nblocks) {
			p->avail[cls] = c->anext;
			c->listed = false;
		}
	}
	return got;
}

/* A free block back into its chunk; may return the chunk to its target
 * (never when release is false: the fork child). */
static void central_put(struct coh_pool *p, void *blk, bool release)
{
	struct chunk *c = tab_get((uintptr_t)blk);
	if (!c)
		return;   /* cannot be: a cached block's chunk is in the table */
	uintptr_t off = (uintptr_t)blk - atomic_load_explicit(&c->base, memory_order_relaxed);
	size_t i = (size_t)((off * class_magic[c->cls]) >> 42);
	c->avail[i / 64] |= (uint64_t)1 << (i % 64);
	c->navail++;
	if (i / 64 < c->hint)
		c->hint = (uint32_t)(i / 64);
	if (c->frozen)
		return;
	avail_add(p, c);
	if (chunk_empty(c)) {
		p->empty_bytes += c->length;
		if (release && p->empty_bytes > p->max_cached)
			chunk_release(p, c);
	}
}

/* ---- per-thread caches ---- */

static void cache_flush(struct coh_pool *p, struct tcache *tc, bool release)
{
	for (unsigned k = 0; k < NCLASS; k++) {
		for (unsigned j = 0, n = BIN_N(tc, k); j < n; j++)
			central_put(p, tc->bin[k].b[j], release);
		BIN_SET(tc, k, 0);
	}
}

static void thread_exit(void *arg)
{
	struct tthread *th = arg;
	pthread_mutex_lock(&cache_lock);
	while (th->caches) {
		struct tcache *tc = th->caches;
		th->caches = tc->tnext;
		struct coh_pool *p = tc->pool;
		pthread_mutex_lock(&p->lock);
		cache_flush(p, tc, true);
		if (tc->pprev)
			tc->pprev->pnext = tc->pnext;
		else
			p->caches = tc->pnext;
		if (tc->pnext)
			tc->pnext->pprev = tc->pprev;
		pthread_mutex_unlock(&p->lock);
		free(tc);
	}
	pthread_mutex_unlock(&cache_lock);
	tls_thread = NULL;
	memset(tls_slot, 0, sizeof(tls_slot));
	free(th);
}

/* The calling thread's cache of p, made on first use; NULL without one. */
static struct tcache *cache_slow(struct coh_pool *p)
{
	struct tslot *s = &tls_slot[p->id % NSLOT];
	pthread_mutex_lock(&cache_lock);
	struct tcache *tc = NULL;
	if (tls_thread)
		for (tc = tls_thread->caches; tc && tc->pool != p; tc = tc->tnext)
			;
	if (!tc) {
		if (!tls_thread) {
			struct tthread *th = calloc(1, sizeof(*th));
			if (!th || pthread_setspecific(thread_key, th)) {
				free(th);
				pthread_mutex_unlock(&cache_lock);
				return NULL;
			}
			tls_thread = th;
		}
		tc = malloc(sizeof(*tc));
		if (!tc) {
			pthread_mutex_unlock(&cache_lock);
			return NULL;
		}
		tc->pool = p;
		tc->owner = tls_thread;
		atomic_init(&tc->flush_req, false);
		for (unsigned k = 0; k < NCLASS; k++)
			BIN_SET(tc, k, 0);
		tc->tnext = tls_thread->caches;
		tls_thread->caches = tc;
		pthread_mutex_lock(&p->lock);
		tc->pprev = NULL;
		tc->pnext = p->caches;
		if (p->caches)
			p->caches->pprev = tc;
		p->caches = tc;
		pthread_mutex_unlock(&p->lock);
	}
	s->id = p->id;
	s->tc = tc;
	pthread_mutex_unlock(&cache_lock);
	return tc;
}

/* What another thread's coh_pool_trim asked for: the owner's blocks back to
 * their chunks (one relaxed load on the fast path when nobody asked). */
static void cache_flush_requested(struct coh_pool *p, struct tcache *tc)
{
	atomic_store_explicit(&tc->flush_req, false, memory_order_relaxed);
	pthread_mutex_lock(&p->lock);
	cache_flush(p, tc, true);
	pthread_mutex_unlock(&p->lock);
}

static inline struct tcache *cache_of(struct coh_pool *p)
{
	struct tslot *s = &tls_slot[p->id % NSLOT];
	if (__builtin_expect(s->id == p->id, 1)) {
		struct tcache *tc = s->tc;
		if (__builtin_expect(tc && atomic_load_explicit(&tc->flush_req, memory_order_relaxed), 0))
			cache_flush_requested(p, tc);
		return tc;
	}
	if (p->flags & COH_POOL_NO_TCACHE)
		return NULL;
	return cache_slow(p);
}

/* ---- the public calls ---- */

static int props_get(coh_context *ctx, const struct coh_pool_props *user, struct coh_pool_props *pr)
{
	*pr = (struct coh_pool_props){ .size = sizeof(*pr), .fork_policy = COH_FORK_COPY };
	int e = coh_struct_in(pr, sizeof(*pr), user);
	if (e)
		return e;
	if (!pr->targets || !pr->ntargets)
		return -EINVAL;
	if (pr->ntargets > 64)
		return -E2BIG;
	if (pr->flags & ~FLAGS_KNOWN || pr->alloc_flags & ~ALLOC_FLAGS_KNOWN)
		return -EINVAL;
	if ((pr->alloc_flags & COH_ALLOC_HUGE) && (pr->alloc_flags & COH_ALLOC_NOHUGE))
		return -EINVAL;
	if (pr->fork_policy < COH_FORK_COPY || pr->fork_policy > COH_FORK_KERNEL)
		return -EINVAL;
	if (ctx->replay)
		return -EROFS;
	for (size_t i = 0; i < pr->ntargets; i++) {
		coh_target *t = pr->targets[i];
		if (!t)
			return -EINVAL;
		if (t->ctx != ctx)
			return -EXDEV;
		if (!(t->d.caps & COH_CAP_ALLOC) || !(t->d.caps & (COH_CAP_FORK_COPY << pr->fork_policy)))
			return -EOPNOTSUPP;
		if ((pr->alloc_flags & COH_ALLOC_HUGE) && !(t->d.caps & COH_CAP_HUGE_PAGES))
			return -EOPNOTSUPP;
	}
	return 0;
}

int coh_pool_create(coh_context *ctx, const struct coh_pool_props *props, coh_pool **out)
{
	if (!ctx || !props)
		return -EINVAL;
	if (!out)
		return -EFAULT;
	struct coh_pool_props pr;
	int e = props_get(ctx, props, &pr);
	if (e)
		return e;
	pthread_once(&global_once, global_init);
	struct coh_pool *p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->targets = calloc(pr.ntargets, sizeof(*p->targets));
	p->limits = calloc(pr.ntargets, sizeof(*p->limits));
	p->taken = calloc(pr.ntargets, sizeof(*p->taken));
	if (!p->targets || !p->limits || !p->taken || pthread_mutex_init(&p->lock, NULL)) {
		free(p->targets);
		free(p->limits);
		free(p->taken);
		free(p);
		return -ENOMEM;
	}
	memcpy(p->targets, pr.targets, pr.ntargets * sizeof(*p->targets));
	if (pr.target_limits)
		memcpy(p->limits, pr.target_limits, pr.ntargets * sizeof(*p->limits));
	p->ntargets = pr.ntargets;
	p->fork_policy = pr.fork_policy;
	p->flags = pr.flags;
	p->alloc_flags = pr.alloc_flags;
	p->max_cached = pr.max_cached ? pr.max_cached : DEFAULT_MAX_CACHED;
	p->id = atomic_fetch_add(&next_id, 1);
	p->ctx = coh_context_ref(ctx);
	pthread_mutex_lock(&cache_lock);
	p->gnext = pools;
	pools = p;
	pthread_mutex_unlock(&cache_lock);
	*out = p;
	return 0;
}

static int large_alloc(struct coh_pool *p, size_t size, size_t align, void **out)
{
	struct chunk *c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	size_t a = align > CHUNK ? align : CHUNK;
	void *mem;
	pthread_mutex_lock(&p->lock);
	int e = backing_alloc(p, size, a, &mem, &c->tindex);
	if (!e) {
		struct coh_alloc_info info = { .size = offsetof(struct coh_alloc_info, pool) };
		coh_lookup(p->ctx, mem, &info);   /* the length the target gave: a page multiple */
		c->pool = p;
		c->cls = -1;
		c->length = info.length;
		p->taken[c->tindex] += info.length - size;
		p->backing += info.length - size;
		c->nblocks = 1;
		atomic_init(&c->base, (uintptr_t)mem);
		atomic_init(&c->large_live, 1);
		e = tab_set((uintptr_t)mem, c);
		if (e) {
			p->taken[c->tindex] -= c->length;
			p->backing -= c->length;
			coh_free_backing(p->ctx, mem);
		} else {
			list_add(&p->large, c);
			p->nlarge++;
		}
	}
	pthread_mutex_unlock(&p->lock);
	if (e) {
		free(c);
		return e;
	}
	*out = mem;
	return 0;
}

static int large_free(struct coh_pool *p, struct chunk *c, void *ptr)
{
	pthread_mutex_lock(&p->lock);
	int e = 0;
	uintptr_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
	if (base != (uintptr_t)ptr || !atomic_load_explicit(&c->large_live, memory_order_relaxed)) {
		/* inside it, or freed already */
		e = base && (uintptr_t)ptr - base < c->length ? -EINVAL : -ENOENT;
	} else {
		tab_set((uintptr_t)ptr, NULL);
		e = coh_free_backing(p->ctx, ptr);
		if (e) {
			tab_set((uintptr_t)ptr, c);
		} else {
			atomic_store_explicit(&c->large_live, 0, memory_order_relaxed);
			atomic_store_explicit(&c->base, 0, memory_order_relaxed);
			p->taken[c->tindex] -= c->length;
			p->backing -= c->length;
			p->nlarge--;
			list_del(&p->large, c);
			list_add(&p->retired, c);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return e;
}

static inline void mark_used(void *blk)
{
	struct chunk *c = tab_get((uintptr_t)blk);
	if (__builtin_expect(!c, 0))
		return;   /* cannot be: the block came from a chunk in the table */
	uintptr_t off = (uintptr_t)blk - atomic_load_explicit(&c->base, memory_order_relaxed);
	size_t i = (size_t)((off * class_magic[c->cls]) >> 42);
	atomic_fetch_or_explicit(USED(c, i >> GSHIFT(c)), (uint64_t)1 << (i & ((1u << GSHIFT(c)) - 1)),
				 memory_order_relaxed);
}

int coh_pool_alloc(coh_pool *p, size_t size, size_t align, void **out)
{
	if (!p)
		return -EINVAL;
	if (!out)
		return -EFAULT;
	if (size == 0 || (align & (align - 1)))
		return -EINVAL;
	if (size > (SIZE_MAX >> 1) || align > (SIZE_MAX >> 2))
		return -EOVERFLOW;
	size_t need = size < align ? align : size;
	if (need > MAX_SMALL)
		return large_alloc(p, size, align, out);
	unsigned cls = size_class(need);
	while (align > 16 && class_size[cls] % align)
		cls++;   /* a power-of-two class always fits: at most three steps */
	struct tcache *tc = cache_of(p);
	if (__builtin_expect(tc != NULL, 1)) {
		unsigned n = BIN_N(tc, cls);
		if (__builtin_expect(n != 0, 1)) {
			void *b = tc->bin[cls].b[n - 1];
			BIN_SET(tc, cls, n - 1);
			mark_used(b);
			*out = b;
			return 0;
		}
		int err = -ENOMEM;
		pthread_mutex_lock(&p->lock);
		unsigned got = central_take(p, cls, tc->bin[cls].b, 1u << class_gshift[cls], tc, &err);
		pthread_mutex_unlock(&p->lock);
		if (!got)
			return err;
		BIN_SET(tc, cls, got - 1);
		void *b = tc->bin[cls].b[got - 1];
		mark_used(b);
		*out = b;
		return 0;
	}
	void *b;
	int err = -ENOMEM;
	pthread_mutex_lock(&p->lock);
	unsigned got = central_take(p, cls, &b, 1, NULL, &err);
	pthread_mutex_unlock(&p->lock);
	if (!got)
		return err;
	mark_used(b);
	*out = b;
	return 0;
}

int coh_pool_free(coh_pool *p, void *ptr)
{
	if (!p)
		return -EINVAL;
	if (!ptr)
		return -EFAULT;
	struct chunk *c = tab_get((uintptr_t)ptr);
	if (!c || c->pool != p)
		return -ENOENT;
	if (c->cls < 0)
		return large_free(p, c, ptr);
	uintptr_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
	uintptr_t off = (uintptr_t)ptr - base;
	if (!base || off >= CHUNK)
		return -ENOENT;   /* retired meanwhile */
	size_t i = (size_t)((off * class_magic[c->cls]) >> 42);
	if (i * class_size[c->cls] != off)
		return -EINVAL;   /* inside a block */
	if (i >= c->nblocks)
		return -ENOENT;   /* the tail past the last block */
	uint64_t bit = (uint64_t)1 << (i & ((1u << GSHIFT(c)) - 1));
	if (!(atomic_fetch_and_explicit(USED(c, i >> GSHIFT(c)), ~bit, memory_order_relaxed) & bit))
		return -ENOENT;   /* not allocated: a double free */
	unsigned cls = (unsigned)c->cls;
	struct tcache *tc = c->frozen ? NULL : cache_of(p);
	if (__builtin_expect(tc != NULL, 1)) {
		unsigned n = BIN_N(tc, cls);
		if (__builtin_expect(n < class_cap[cls], 1)) {
			tc->bin[cls].b[n] = ptr;
			BIN_SET(tc, cls, n + 1);
			return 0;
		}
		/* full: the older half goes back to the chunks */
		unsigned half = class_cap[cls] / 2;
		pthread_mutex_lock(&p->lock);
		for (unsigned j = 0; j < half; j++)
			central_put(p, tc->bin[cls].b[j], true);
		pthread_mutex_unlock(&p->lock);
		memmove(tc->bin[cls].b, tc->bin[cls].b + half, (n - half) * sizeof(void *));
		tc->bin[cls].b[n - half] = ptr;
		BIN_SET(tc, cls, n - half + 1);
		return 0;
	}
	pthread_mutex_lock(&p->lock);
	central_put(p, ptr, true);
	pthread_mutex_unlock(&p->lock);
	return 0;
}

int coh_pool_trim(coh_pool *p)
{
	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&cache_lock);   /* the orphaned caches of a fork child */
	pthread_mutex_lock(&p->lock);
	for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
		if (!tc->owner || (tls_thread && tc->owner == tls_thread))
			cache_flush(p, tc, false);
		else
			atomic_store_explicit(&tc->flush_req, true, memory_order_relaxed);
	int n = 0, err = 0;
	struct chunk *next;
	for (struct chunk *c = p->chunks; c; c = next) {
		next = c->next;
		if (!chunk_empty(c))
			continue;
		int e = chunk_release(p, c);
		if (e)
			err = err ? err : e;
		else
			n++;
	}
	pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&cache_lock);
	return n ? n : err;
}

static uint64_t popcount_used(struct chunk *c)
{
	uint64_t s = 0;
	for (size_t i = 0, n = groups_of(c); i < n; i++)
		s += (uint64_t)__builtin_popcountll(atomic_load_explicit(USED(c, i), memory_order_relaxed));
	return s;
}

int coh_pool_stats(coh_pool *p, struct coh_pool_stats *out)
{
	if (!p || !out || coh_struct_out_check(out))
		return -EINVAL;
	struct coh_pool_stats st = { .size = sizeof(st) };
	pthread_mutex_lock(&p->lock);
	st.backing_bytes = p->backing;
	st.chunks = p->nchunks;
	st.large = p->nlarge;
	st.fallbacks = p->fallbacks;
	for (struct chunk *c = p->chunks; c; c = c->next) {
		uint64_t n = popcount_used(c);
		st.live_blocks += n;
		st.live_bytes += n * class_size[c->cls];
	}
	for (struct chunk *c = p->large; c; c = c->next) {
		st.live_blocks++;
		st.live_bytes += c->length;
	}
	for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
		for (unsigned k = 0; k < NCLASS; k++)
			st.cached_bytes += (uint64_t)BIN_N(tc, k) * class_size[k];
	pthread_mutex_unlock(&p->lock);
	coh_struct_out(out, &st, sizeof(st));
	return 0;
}

int coh_pool_migrate(coh_pool *p, coh_target *dst, unsigned flags)
{
	if (!p || !dst)
		return -EINVAL;
	if (dst->ctx != p->ctx)
		return -EXDEV;
	int err = 0;
	pthread_mutex_lock(&p->lock);   /* no chunk is returned meanwhile */
	struct chunk *lists[2] = { p->chunks, p->large };
	for (int l = 0; l < 2; l++)
		for (struct chunk *c = lists[l]; c; c = c->next) {
			void *base = (void *)atomic_load_explicit(&c->base, memory_order_relaxed);
			int e = coh_migrate(p->ctx, base, c->length, dst, flags);
			if (e && !err)
				err = e;
		}
	pthread_mutex_unlock(&p->lock);
	return err;
}

static void chunk_destroy(struct chunk *c)
{
	free(c->avail);
	free(c->used_mem);
	free(c);
}

int coh_pool_destroy(coh_pool *p)
{
	if (!p)
		return -EINVAL;
	pthread_mutex_lock(&cache_lock);
	for (struct coh_pool **pp = &pools; *pp; pp = &(*pp)->gnext)
		if (*pp == p) {
			*pp = p->gnext;
			break;
		}
	while (p->caches) {
		struct tcache *tc = p->caches;
		p->caches = tc->pnext;
		if (tc->owner)
			for (struct tcache **tp = &tc->owner->caches; *tp; tp = &(*tp)->tnext)
				if (*tp == tc) {
					*tp = tc->tnext;
					break;
				}
		free(tc);
	}
	pthread_mutex_unlock(&cache_lock);
	int err = 0;
	struct chunk *lists[3] = { p->chunks, p->large, p->retired };
	for (int l = 0; l < 3; l++)
		while (lists[l]) {
			struct chunk *c = lists[l];
			lists[l] = c->next;
			uintptr_t base = atomic_load_explicit(&c->base, memory_order_relaxed);
			if (base) {
				tab_set(base, NULL);
				int e = coh_free_backing(p->ctx, (void *)base);
				if (e && e != -ENOENT && !err)
					err = e;
			}
			chunk_destroy(c);
		}
	pthread_mutex_destroy(&p->lock);
	coh_context_unref(p->ctx);
	free(p->targets);
	free(p->limits);
	free(p->taken);
	free(p);
	return err;
}

bool coh_pool_owns(uintptr_t start)
{
	struct chunk *c = tab_get(start);
	return c && atomic_load_explicit(&c->base, memory_order_relaxed) == start;
}

/* coh_lookup's pool fields for addr inside the allocation starting at start. */
void coh_pool_describe(uintptr_t start, uintptr_t addr, struct coh_alloc_info *o)
{
	struct chunk *c = tab_get(start);
	if (!c || atomic_load_explicit(&c->base, memory_order_relaxed) != start)
		return;
	o->pool = c->pool;
	if (c->cls < 0) {
		if (atomic_load_explicit(&c->large_live, memory_order_relaxed)) {
			o->block = (void *)start;
			o->block_size = c->length;
		}
		return;
	}
	uintptr_t off = addr - start;
	size_t i = (size_t)((off * class_magic[c->cls]) >> 42);
	if (i >= c->nblocks)
		return;
	if (atomic_load_explicit(USED(c, i >> GSHIFT(c)), memory_order_relaxed) &
	    ((uint64_t)1 << (i & ((1u << GSHIFT(c)) - 1)))) {
		o->block = (void *)(start + i * class_size[c->cls]);
		o->block_size = class_size[c->cls];
	}
}

/* ---- fork ---- */

static void fork_prepare(void)
{
	pthread_mutex_lock(&cache_lock);
	for (struct coh_pool *p = pools; p; p = p->gnext)
		pthread_mutex_lock(&p->lock);
}

static void fork_parent(void)
{
	for (struct coh_pool *p = pools; p; p = p->gnext)
		pthread_mutex_unlock(&p->lock);
	pthread_mutex_unlock(&cache_lock);
}

/* EXCLUDE child: the chunks are not mapped here, and the core dropped
 * their records.  Forget them (their records stay for destroy), and empty
 * every cache. */
static void child_drop_all(struct coh_pool *p)
{
	for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
		for (unsigned k = 0; k < NCLASS; k++)
			BIN_SET(tc, k, 0);
	struct chunk **lists[2] = { &p->chunks, &p->large };
	for (int l = 0; l < 2; l++)
		while (*lists[l]) {
			struct chunk *c = *lists[l];
			list_del(lists[l], c);
			tab_set(atomic_load_explicit(&c->base, memory_order_relaxed), NULL);
			atomic_store_explicit(&c->base, 0, memory_order_relaxed);
			atomic_store_explicit(&c->large_live, 0, memory_order_relaxed);
			c->listed = false;
			list_add(&p->retired, c);
		}
	memset(p->avail, 0, sizeof(p->avail));
	memset(p->taken, 0, p->ntargets * sizeof(*p->taken));
	p->backing = p->nchunks = p->nlarge = 0;
	p->empty_bytes = 0;
}

/* SHARE child: the parent goes on allocating from the chunks it shares with
 * this child, so the child never hands out a block of them again (its
 * blocks can still be used and freed); new blocks come from new chunks. */
static void child_freeze(struct coh_pool *p)
{
	for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
		for (unsigned k = 0; k < NCLASS; k++)
			BIN_SET(tc, k, 0);
	for (struct chunk *c = p->chunks; c; c = c->next) {
		c->frozen = true;
		c->listed = false;
	}
	memset(p->avail, 0, sizeof(p->avail));
	p->empty_bytes = 0;   /* frozen chunks are never counted */
}

static void fork_child(void)
{
	for (struct coh_pool *p = pools; p; p = p->gnext) {
		if (p->fork_policy == COH_FORK_EXCLUDE) {
			child_drop_all(p);
		} else if (p->fork_policy == COH_FORK_SHARE) {
			child_freeze(p);
		} else {
			/* the caches of the threads the child does not have go back
			 * to their chunks (no chunk is returned here: no system call) */
			for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
				if (tc->owner != tls_thread)
					cache_flush(p, tc, false);
		}
		for (struct tcache *tc = p->caches; tc; tc = tc->pnext)
			if (tc->owner != tls_thread && tc->owner) {
				/* unlink from the gone thread; freed with the pool */
				for (struct tcache **tp = &tc->owner->caches; *tp; tp = &(*tp)->tnext)
					if (*tp == tc) {
						*tp = tc->tnext;
						break;
					}
				tc->owner = NULL;
			}
		pthread_mutex_unlock(&p->lock);
	}
	pthread_mutex_unlock(&cache_lock);
}
