/* SPDX-License-Identifier: MIT */
/* nvidia backend: migration (synchronous and asynchronous) and advice (the design: nvidia.h). */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>

#include "nvidia.h"

/* Driver location of a target: a GPU of this backend, or host memory. */
static int location(const coh_target *t, CUmemLocation *loc)
{
	if (is_nvidia(t)) {
		*loc = (CUmemLocation){ CU_MEM_LOCATION_TYPE_DEVICE, gpu_of(t)->ordinal };
		return 0;
	}
	if (t && coh_target_numa_node(t) >= 0) {
		/* the driver places host pages by the calling thread's policy */
		*loc = (CUmemLocation){ CU_MEM_LOCATION_TYPE_HOST, 0 };
		return 0;
	}
	return -EOPNOTSUPP;
}

/* The GPU whose context and streams serve a record. */
static struct nv_gpu *rec_gpu(const struct coh_alloc_rec *rec, coh_target *dst)
{
	if (is_nvidia(rec->target))
		return gpu_of(rec->target);
	return is_nvidia(dst) ? gpu_of(dst) : NULL;
}

/* The one event of a batch that several tokens wait on. */
struct nv_evshare {
	CUevent ev;
	atomic_int refs;
};

struct nv_token {
	struct nv_backend *nb;
	struct nv_gpu *g;
	CUevent ev[NV_MAX_STREAMS];
	int nev;
	struct nv_evshare *share;   /* a batch's: ev[0] is share->ev, not the token's own */
	/* migrate_notify: host functions still to run, plus one while notify runs */
	atomic_int pending;
	void (*fn)(void *arg);
	void *arg;
};

/* COH_CAP_MIGRATE_STICKY (pages populated later land at the destination),
 * only with nvidia.prefer=1 (COH_NVIDIA_PREFER=1): a migration then makes the
 * destination the preferred location, but only when it differs from the
 * record's home (the allocation's target, then the last destination): once
 * per change of place, not once per migration.  Off by default: the advice
 * over 1 GiB cost a third of the host->GPU rate on an H200 (33.7 against
 * 50.3 GB/s, docs/performance.md), and a runtime moving data back and forth
 * changes place on every migration.  Off, migrations are plain prefetches and
 * pages populated later go where the driver puts them. */
static CUresult prefer(struct nv_backend *nb, const struct coh_alloc_rec *rec, coh_target *dst, uintptr_t addr,
		       size_t len, CUmemLocation loc)
{
	if (!nb->prefer || rec->home == dst || !nv_rec_managed(nb, rec))
		return CUDA_SUCCESS;
	return nv_cu_advise(nb, addr, len, CU_MEM_ADVISE_SET_PREFERRED_LOCATION, loc);
}

/* Issues the prefetches of [addr, addr+len) to loc: chunks round-robin over
 * the GPU's streams when chunking is on.  Returns the number of streams used. */
static CUresult issue(struct nv_backend *nb, struct nv_gpu *g, uintptr_t addr, size_t len, CUmemLocation loc,
		      int *used)
{
	size_t chunk = nb->chunk && len > nb->chunk ? nb->chunk : len;
	int k = 0;
	CUresult r = CUDA_SUCCESS;
	for (size_t off = 0; off < len && r == CUDA_SUCCESS; off += chunk, k++) {
		size_t c = len - off < chunk ? len - off : chunk;
		r = nv_cu_prefetch(nb, addr + off, c, loc, g->stream[k % g->nstreams]);
	}
	*used = k < g->nstreams ? k : g->nstreams;
	return r;
}

/* Sets off the migration of [addr, addr+len) to dst: on success the driver
 * is entered (nv_leave() after), the work issued on *used streams of *gpu. */
static int launch(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, struct nv_gpu **gpu,
		  int *used)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = rec_gpu(rec, dst);
	CUmemLocation loc;
	int e = location(dst, &loc);
	if (e || !g)
		return e ? e : -EOPNOTSUPP;
	if ((e = nv_enter(nb, g)))
		return e;
	*used = 0;
	CUresult r = prefer(nb, rec, dst, (uintptr_t)addr, len, loc);
	if (r == CUDA_SUCCESS)
		r = issue(nb, g, (uintptr_t)addr, len, loc, used);
	if (r != CUDA_SUCCESS) {
		e = nv_cu_fail(nb, "cuMemPrefetchAsync", r);
		for (int i = 0; i < *used; i++)
			nb->cu.stream_sync(g->stream[i]);   /* what was issued finishes; the data stays valid */
		nv_leave(nb);
		return e;
	}
	*gpu = g;
	return 0;
}

int nv_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g;
	int used, e = launch(dst, rec, addr, len, &g, &used);
	if (e)
		return e;
	for (int i = 0; i < used; i++) {
		CUresult s = nb->cu.stream_sync(g->stream[i]);
		if (!e)
			e = nv_cu_fail(nb, "cuStreamSynchronize", s);
	}
	nv_leave(nb);
	return e;
}

int nv_migrate_start(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len,
		     unsigned flags, void **token)
{
	(void)flags;
	struct nv_token *tk = calloc(1, sizeof(*tk));
	if (!tk)
		return -ENOMEM;
	struct nv_backend *nb = nb_of(rec->target);
	int used, e = launch(dst, rec, addr, len, &tk->g, &used);
	if (e) {
		free(tk);
		return e;
	}
	tk->nb = nb;
	/* one event per stream used: the handle is done when all have fired */
	CUresult r = CUDA_SUCCESS;
	for (int i = 0; i < used && r == CUDA_SUCCESS; i++) {
		r = nb->cu.event_create(&tk->ev[i], CU_EVENT_DISABLE_TIMING);
		if (r == CUDA_SUCCESS) {
			tk->nev++;
			r = nb->cu.event_record(tk->ev[i], tk->g->stream[i]);
		}
	}
	if (r != CUDA_SUCCESS) {
		e = nv_cu_fail(nb, "cuEventRecord", r);
		for (int i = 0; i < used; i++)
			nb->cu.stream_sync(tk->g->stream[i]);
		for (int i = 0; i < tk->nev; i++)
			nb->cu.event_destroy(tk->ev[i]);
		free(tk);
		tk = NULL;
	}
	nv_leave(nb);
	*token = tk;
	return e;
}

int nv_migrate_poll(void *token, int timeout_ms)
{
	struct nv_token *tk = token;
	struct nv_backend *nb = tk->nb;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		int e = nv_enter(nb, tk->g);
		if (e)
			return e;
		bool busy = false;
		for (int i = 0; i < tk->nev && !e; i++) {
			CUresult r = timeout_ms < 0 ? nb->cu.event_sync(tk->ev[i]) : nb->cu.event_query(tk->ev[i]);
			if (r == CUDA_ERROR_NOT_READY)
				busy = true;
			else if (r != CUDA_SUCCESS)
				e = nv_cu_fail(nb, "migration event", r);
		}
		nv_leave(nb);
		if (e || !busy)
			return e;
		if (timeout_ms == 0)
			return -EINPROGRESS;
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		long ms = (now.tv_sec - t0.tv_sec) * 1000 + (now.tv_nsec - t0.tv_nsec) / 1000000;
		if (ms >= timeout_ms)
			return -ETIMEDOUT;
		nanosleep(&(struct timespec){ 0, 50000 }, NULL);
	}
}

void nv_migrate_done(void *token)
{
	struct nv_token *tk = token;
	struct nv_evshare *sh = tk->share;
	if (sh && atomic_fetch_sub(&sh->refs, 1) != 1) {
		free(tk);   /* other tokens of the batch still wait on the event */
		return;
	}
	if (nv_enter(tk->nb, tk->g) == 0) {
		for (int i = 0; i < tk->nev; i++)
			tk->nb->cu.event_destroy(tk->ev[i]);
		nv_leave(tk->nb);
	}
	free(sh);
	free(tk);
}

/* A host function queued behind a migration's work on one stream; runs on
 * the driver's thread, so it makes no driver call. */
static void host_done(void *user)
{
	struct nv_token *tk = user;
	if (atomic_fetch_sub(&tk->pending, 1) == 1)
		tk->fn(tk->arg);
}

/* cuLaunchHostFunc behind the work of each stream the migration used: the
 * last one to run calls fn.  Holds one count itself while it launches, so fn
 * never runs while this still reads the token. */
int nv_migrate_notify(void *token, void (*fn)(void *arg), void *arg)
{
	struct nv_token *tk = token;
	struct nv_backend *nb = tk->nb;
	if (!nb->cu.launch_host_func)
		return -EOPNOTSUPP;   /* a driver before CUDA 10: the core waits on a worker */
	int e = nv_enter(nb, tk->g);
	if (e)
		return e;
	tk->fn = fn;
	tk->arg = arg;
	atomic_store(&tk->pending, tk->nev + 1);
	int launched = 0;
	CUresult r = CUDA_SUCCESS;
	for (; launched < tk->nev; launched++)
		if ((r = nb->cu.launch_host_func(tk->g->stream[launched], host_done, tk)) != CUDA_SUCCESS)
			break;
	if (launched == 0) {
		nv_leave(nb);
		e = nv_cu_fail(nb, "cuLaunchHostFunc", r);
		return e ? e : -EIO;
	}
	/* some launched: the rest of the streams finish here, fn still runs once */
	for (int i = launched; i < tk->nev; i++)
		nb->cu.stream_sync(tk->g->stream[i]);
	nv_leave(nb);
	int drop = tk->nev - launched + 1;
	if (atomic_fetch_sub(&tk->pending, drop) == drop)
		fn(arg);
	return 0;
}

/* Issues the prefetches of a batch on one stream: one cuMemPrefetchBatchAsync
 * where the driver has it (CUDA 13) and takes it, else one prefetch per
 * range.  issued[i] says whether v[i] was issued. */
static CUresult batch_issue(struct nv_backend *nb, struct nv_gpu *g, const struct coh_batch_item *v, size_t n,
			    const CUmemLocation *loc, bool *issued)
{
	CUstream s = g->stream[0];
	if (nb->cu.prefetch_batch) {
		CUdeviceptr *p = calloc(n, sizeof(*p));
		size_t *sz = calloc(n, sizeof(*sz)), *idx = calloc(n, sizeof(*idx));
		CUmemLocation *locs = calloc(n, sizeof(*locs));
		CUresult r = CUDA_ERROR_OUT_OF_MEMORY;
		if (p && sz && idx && locs) {
			size_t nl = 0;
			for (size_t i = 0; i < n; i++) {
				p[i] = (CUdeviceptr)(uintptr_t)v[i].addr;
				sz[i] = v[i].len;
				if (nl == 0 || locs[nl - 1].type != loc[i].type || locs[nl - 1].id != loc[i].id) {
					locs[nl] = loc[i];
					idx[nl++] = i;
				}
			}
			r = nb->cu.prefetch_batch(p, sz, n, locs, idx, nl, 0, s);
		}
		free(p);
		free(sz);
		free(idx);
		free(locs);
		if (r == CUDA_SUCCESS) {
			for (size_t i = 0; i < n; i++)
				issued[i] = true;
			return r;
		}
		nv_cu_fail(nb, "cuMemPrefetchBatchAsync (one prefetch per range instead)", r);
	}
	CUresult r = CUDA_SUCCESS;
	for (size_t i = 0; i < n && r == CUDA_SUCCESS; i++)
		if ((r = nv_cu_prefetch(nb, (uintptr_t)v[i].addr, v[i].len, loc[i], s)) == CUDA_SUCCESS)
			issued[i] = true;
	return r;
}

/* A batch being issued: the GPU whose streams serve every range, each
 * range's destination, and whether its prefetch was issued. */
struct nv_batch {
	struct nv_backend *nb;
	struct nv_gpu *g;
	CUmemLocation *loc;
	bool *issued;
};

static void batch_close(struct nv_batch *b)
{
	free(b->loc);
	free(b->issued);
}

/* 0, or -EOPNOTSUPP for a batch the core must split (ranges of two GPUs, a
 * destination the driver cannot name), or -ENOMEM; batch_close() either way. */
static int batch_open(const struct coh_batch_item *v, size_t n, struct nv_batch *b)
{
	*b = (struct nv_batch){ .nb = nb_of(v[0].rec->target), .g = rec_gpu(v[0].rec, v[0].dst) };
	if (!b->g)
		return -EOPNOTSUPP;
	b->loc = calloc(n, sizeof(*b->loc));
	b->issued = calloc(n, sizeof(*b->issued));
	if (!b->loc || !b->issued)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++)
		if (rec_gpu(v[i].rec, v[i].dst) != b->g || location(v[i].dst, &b->loc[i]))
			return -EOPNOTSUPP;
	return 0;
}

/* The advice (nvidia.prefer=1) and the prefetches of a batch, the driver
 * entered: 0 or the first failure's errno. */
static int batch_advise_issue(struct nv_batch *b, const struct coh_batch_item *v, size_t n)
{
	CUresult r = CUDA_SUCCESS;
	for (size_t i = 0; i < n && r == CUDA_SUCCESS; i++)
		r = prefer(b->nb, v[i].rec, v[i].dst, (uintptr_t)v[i].addr, v[i].len, b->loc[i]);
	int e = nv_cu_fail(b->nb, "cuMemAdvise", r);
	return e ? e : nv_cu_fail(b->nb, "cuMemPrefetchAsync", batch_issue(b->nb, b->g, v, n, b->loc, b->issued));
}

/* A batch whose ranges one GPU's streams serve: the prefetches on its first
 * stream, one synchronisation.  Anything else goes back to the core. */
int nv_migrate_batch(const struct coh_batch_item *v, size_t n, int *results)
{
	struct nv_batch b;
	int e = batch_open(v, n, &b);
	if (!e)
		e = nv_enter(b.nb, b.g);
	if (e) {
		batch_close(&b);
		return e;
	}
	int fail = batch_advise_issue(&b, v, n);
	int sync = nv_cu_fail(b.nb, "cuStreamSynchronize", b.nb->cu.stream_sync(b.g->stream[0]));
	nv_leave(b.nb);
	for (size_t i = 0; i < n; i++)
		results[i] = !b.issued[i] ? (fail ? fail : -EIO) : sync;
	batch_close(&b);
	return 0;
}

/*
 * Queued requests as one driver batch: the prefetches as nv_migrate_batch
 * issues them (one cuMemPrefetchBatchAsync on the GPU's first stream), then
 * one event behind them that every request's token waits on, so each request
 * still completes on its own (a host function each, see nv_migrate_notify).
 */
int nv_migrate_batch_start(const struct coh_batch_item *v, size_t n, void **tokens)
{
	struct nv_batch b;
	struct nv_evshare *sh = calloc(1, sizeof(*sh));
	int e = batch_open(v, n, &b);
	if (!e && !sh)
		e = -ENOMEM;
	for (size_t i = 0; i < n && !e; i++)
		if (!(tokens[i] = calloc(1, sizeof(struct nv_token))))
			e = -ENOMEM;
	if (!e)
		e = nv_enter(b.nb, b.g);
	if (!e) {
		CUresult r = CUDA_SUCCESS;
		e = batch_advise_issue(&b, v, n);
		if (!e && (r = b.nb->cu.event_create(&sh->ev, CU_EVENT_DISABLE_TIMING)) == CUDA_SUCCESS &&
		    (r = b.nb->cu.event_record(sh->ev, b.g->stream[0])) != CUDA_SUCCESS)
			b.nb->cu.event_destroy(sh->ev);
		if (!e)
			e = nv_cu_fail(b.nb, "cuEventRecord", r);
		if (e)
			b.nb->cu.stream_sync(b.g->stream[0]);   /* what was issued finishes: the data stays valid */
		nv_leave(b.nb);
	}
	if (!e) {
		atomic_init(&sh->refs, (int)n);
		for (size_t i = 0; i < n; i++) {
			struct nv_token *tk = tokens[i];
			*tk = (struct nv_token){ .nb = b.nb, .g = b.g, .nev = 1, .share = sh };
			tk->ev[0] = sh->ev;
		}
		sh = NULL;
	} else {
		for (size_t i = 0; i < n; i++) {
			free(tokens[i]);
			tokens[i] = NULL;
		}
	}
	free(sh);
	batch_close(&b);
	return e;
}

int nv_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t)
{
	struct nv_backend *nb = nb_of(rec->target);
	struct nv_gpu *g = rec_gpu(rec, t);
	if (!g)
		return -EOPNOTSUPP;
	CUmemLocation loc = { CU_MEM_LOCATION_TYPE_DEVICE, g->ordinal };
	int cu_advice;
	switch (advice) {
	case COH_ADVISE_PREFERRED_LOCATION: cu_advice = CU_MEM_ADVISE_SET_PREFERRED_LOCATION; break;
	case COH_ADVISE_UNSET_PREFERRED_LOCATION: cu_advice = CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION; break;
	case COH_ADVISE_ACCESSED_BY: cu_advice = CU_MEM_ADVISE_SET_ACCESSED_BY; break;
	case COH_ADVISE_UNSET_ACCESSED_BY: cu_advice = CU_MEM_ADVISE_UNSET_ACCESSED_BY; break;
	case COH_ADVISE_READ_MOSTLY: cu_advice = CU_MEM_ADVISE_SET_READ_MOSTLY; break;
	case COH_ADVISE_UNSET_READ_MOSTLY: cu_advice = CU_MEM_ADVISE_UNSET_READ_MOSTLY; break;
	default: return -EINVAL;
	}
	if (t) {
		int e = location(t, &loc);
		if (e)
			return e;
	}
	int e = nv_enter(nb, g);
	if (e)
		return e;
	e = nv_cu_fail(nb, "cuMemAdvise", nv_cu_advise(nb, (uintptr_t)addr, len, cu_advice, loc));
	nv_leave(nb);
	return e;
}
