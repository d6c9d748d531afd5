/* SPDX-License-Identifier: MIT */
/*
 * Fork staging: memory the kernel's own fork would get wrong (device pages a
 * child's copy-on-write fault moves for both processes, device-dax that is
 * shared by nature, driver mappings a child cannot read) is given to the child
 * by the library instead.  A backend says per record what the child gets
 * (ops->fork_plan) and copies the bytes out from wherever they live
 * (ops->fork_copy); everything else happens here, once:
 *
 * prepare (core/fork.c, registry lock, the backends' prepare hooks done, the
 * map's lock held): each staged record gets an entry in one array shared by
 * every context (grown here with realloc, which glibc allows before fork);
 * COPY data goes to a private anonymous copy the core maps, or to the
 * backend's own shared buffer (ops->fork_buffer); the range is marked
 * MADV_DONTFORK where the plan asks.  A record that cannot be staged (no room
 * in the array, no memory for its copy, the copy or madvise failed) forks as
 * if not staged, and that is logged.
 * parent: MADV_DOFORK again, the private copies unmapped (the child has its
 * own), failures logged once the locks are free.
 * child (async-signal-safe: system calls and a byte copy only): a private copy
 * is moved to the record's address with mremap, a buffer's data is copied
 * into fresh private memory mapped there, ZERO maps fresh memory, UNMAP
 * unmaps the range.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"

#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer's dynamic annotations (libtsan provides them). */
void AnnotateIgnoreReadsBegin(const char *file, int line);
void AnnotateIgnoreReadsEnd(const char *file, int line);
#endif

void coh_fork_snapshot(void *dst, const void *src, size_t len)
{
	/* A fork takes the memory as it is at that moment, other threads' writes
	 * in flight included: the kernel's copy-on-write is no different.  The
	 * race is the application's, so ThreadSanitizer is told to let it be. */
#if defined(__SANITIZE_THREAD__)
	AnnotateIgnoreReadsBegin(__FILE__, __LINE__);
#endif
	memcpy(dst, src, len);
#if defined(__SANITIZE_THREAD__)
	AnnotateIgnoreReadsEnd(__FILE__, __LINE__);
#endif
}

struct stage_ent {
	coh_context *ctx;
	const struct coh_rec *rec;              /* during prepare only (the map's lock is held) */
	const struct coh_backend_ops *ops;
	uintptr_t start;
	size_t len;
	void *copy;           /* COPY: the data (the core's mapping unless in_buffer) */
	unsigned char stage;  /* enum coh_stage */
	unsigned char dontfork, in_buffer;
	int dofork_err, unmap_err;   /* the parent's failures, logged after unlocking */
};

/* Guarded by the fork registry lock: only the fork handlers touch it. */
static struct stage_ent *ents;
static size_t nents, capents;

void coh_forkstage_plan(const struct coh_rec *r, int at_fork, struct coh_fork_plan *plan)
{
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	memset(plan, 0, sizeof(*plan));
	if (ops->fork_plan && ops->fork_plan(&r->pub, at_fork, plan))
		memset(plan, 0, sizeof(*plan));
	if (plan->stage < COH_STAGE_NONE || plan->stage > COH_STAGE_UNMAP ||
	    (plan->stage == COH_STAGE_COPY && !ops->fork_copy))
		plan->stage = COH_STAGE_NONE;
	if (plan->child_view != COH_CHILD_UNKNOWN || plan->stage == COH_STAGE_NONE)
		return;
	plan->parent_keeps = COH_KEEPS_YES;
	switch (plan->stage) {
	case COH_STAGE_COPY:
		plan->child_view = COH_CHILD_COPY;
		plan->reason = "copied aside before fork, the child gets the copy at the same address: the parent's "
			       "pages stay where they are";
		break;
	case COH_STAGE_ZERO:
		plan->child_view = COH_CHILD_ZERO;
		plan->reason = "zero-filled private memory mapped in the child";
		break;
	default:
		plan->child_view = COH_CHILD_ABSENT;
		plan->reason = "unmapped in the child: an access raises SIGSEGV";
		break;
	}
}

static int collect(struct coh_rec *r, void *arg)
{
	coh_context *ctx = arg;
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (!ops->fork_plan)
		return 0;
	struct coh_fork_plan plan;
	coh_forkstage_plan(r, 1, &plan);
	if (plan.stage == COH_STAGE_NONE)
		return 0;
	if (nents == capents) {
		size_t cap = capents ? capents * 2 : 16;
		struct stage_ent *n = realloc(ents, cap * sizeof(*n));
		if (!n) {
			coh_warn(ctx, "fork: %#lx+%zu: no memory to stage it: it forks as if not staged",
				 (unsigned long)r->pub.start, r->pub.length);
			return 0;
		}
		ents = n;
		capents = cap;
	}
	ents[nents++] = (struct stage_ent){ .ctx = ctx, .rec = r, .ops = ops, .start = r->pub.start,
					    .len = r->pub.length, .stage = (unsigned char)plan.stage,
					    .dontfork = plan.dontfork != 0 };
	return 0;
}

/* The COPY entries from `first` on of the backend in slot s get their part of
 * the backend's own buffer, when it offers one. */
static void use_buffer(coh_context *ctx, const struct coh_backend_slot *s, size_t first)
{
	size_t need = 0;
	for (size_t k = first; k < nents; k++)
		if (ents[k].ops == s->ops && ents[k].stage == COH_STAGE_COPY)
			need += ents[k].len;
	char *buf = need ? s->ops->fork_buffer(ctx, s->priv, need) : NULL;
	for (size_t k = first; buf && k < nents; k++)
		if (ents[k].ops == s->ops && ents[k].stage == COH_STAGE_COPY) {
			ents[k].copy = buf;
			ents[k].in_buffer = 1;
			buf += ents[k].len;
		}
}

/* 0 when staged; else nothing of it is left staged. */
static int stage_one(struct stage_ent *s)
{
	int e = 0;
	if (s->stage == COH_STAGE_COPY) {
		if (!s->in_buffer && (e = coh_sys_mmap(NULL, s->len, PROT_READ | PROT_WRITE,
						       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, &s->copy)))
			return e;
		e = s->ops->fork_copy(&s->rec->pub, s->copy);
	}
	if (!e && s->dontfork)
		e = coh_sys_madvise((void *)s->start, s->len, MADV_DONTFORK);
	if (e && s->stage == COH_STAGE_COPY && !s->in_buffer)
		coh_sys_munmap(s->copy, s->len);
	return e;
}

void coh_forkstage_prepare(coh_context *ctx)
{
	size_t first = nents, kept = nents;
	bool plans = false;
	for (int i = 0; i < ctx->nslots; i++)
		plans |= ctx->slots[i].ops->fork_plan != NULL;
	if (!plans)
		return;   /* a fork costs what a raw fork costs */
	coh_amap_walk(&ctx->amap, collect, ctx);
	for (int i = 0; i < ctx->nslots; i++)
		if (ctx->slots[i].ops->fork_buffer)
			use_buffer(ctx, &ctx->slots[i], first);
	for (size_t k = first; k < nents; k++) {
		int e = stage_one(&ents[k]);
		if (e) {
			coh_warn(ctx, "%s: fork: %#lx+%zu could not be staged (%s): it forks as if not staged",
				 ents[k].ops->name, (unsigned long)ents[k].start, ents[k].len, strerror(-e));
			continue;
		}
		ents[k].rec = NULL;   /* not to be used past the map's lock */
		ents[kept++] = ents[k];
	}
	nents = kept;
}

void coh_forkstage_parent(void)
{
	for (size_t k = 0; k < nents; k++) {
		struct stage_ent *s = &ents[k];
		if (s->dontfork)
			s->dofork_err = coh_sys_madvise((void *)s->start, s->len, MADV_DOFORK);
		if (s->stage == COH_STAGE_COPY && !s->in_buffer)
			s->unmap_err = coh_sys_munmap(s->copy, s->len);   /* the child has its own */
	}
}

void coh_forkstage_parent_report(void)
{
	/* a fork handler has no caller to tell: what stays wrong is logged */
	for (size_t k = 0; k < nents; k++) {
		struct stage_ent *s = &ents[k];
		if (s->dofork_err)
			coh_warn(s->ctx, "%s: fork: %#lx+%zu left out of child processes until the next fork: %s",
				 s->ops->name, (unsigned long)s->start, s->len, strerror(-s->dofork_err));
		if (s->unmap_err)
			coh_warn(s->ctx, "%s: fork: staging copy %p+%zu left mapped: %s", s->ops->name, s->copy, s->len,
				 strerror(-s->unmap_err));
	}
	nents = 0;
}

void coh_forkstage_child(void)
{
	for (size_t k = 0; k < nents; k++) {
		struct stage_ent *s = &ents[k];
		void *p;
		switch (s->stage) {
		case COH_STAGE_COPY:
			if (!s->in_buffer)
				coh_sys_mremap(s->copy, s->len, s->len, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)s->start, &p);
			else if (coh_sys_mmap((void *)s->start, s->len, PROT_READ | PROT_WRITE,
					      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_POPULATE, -1, 0, &p) == 0)
				memcpy(p, s->copy, s->len);
			break;
		case COH_STAGE_ZERO:
			coh_sys_mmap((void *)s->start, s->len, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0, &p);
			break;
		case COH_STAGE_UNMAP:
			coh_sys_munmap((void *)s->start, s->len);
			break;
		default:
			break;
		}
	}
	nents = 0;
}

void coh_forkstage_release(void)
{
	free(ents);
	ents = NULL;
	nents = capents = 0;
}
