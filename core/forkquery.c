/* SPDX-License-Identifier: MIT */
/*
 * Fork query: what a child forked now would see, per extent.  The kernel's own
 * VMA flags decide for memory whose fork behaviour is the VMA's (VmFlags in
 * /proc/self/smaps: "dc" = VM_DONTCOPY, "wf" = VM_WIPEONFORK, "sh" = shared);
 * the residency query tells whether the parent's pages survive: device-private
 * pages under the kernel's copy-on-write do not (the first CPU access, the
 * child's included, moves them for both), device-coherent ones do if the
 * child writes first, not if the parent does (measured in the VM's 6.1
 * kernel by the conformance suite, which checks these answers).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "query.h"

struct fork_out {
	struct coh_piece_out h;
	struct coh_fork_extent *out;
};

static bool fork_piece(void *arg, uintptr_t a, size_t len, const struct coh_extent *ext, const struct coh_vma *m)
{
	struct fork_out *o = arg;
	struct coh_fork_extent x = { .start = a, .length = len, .policy = -1, .parent_keeps = 1 };
	struct coh_rec *r;
	bool decided = false;
	if (coh_rec_get(o->h.ctx, (void *)a, 1, &r) == 0) {
		x.policy = r->pub.fork_policy;
		/* the fork staging or the backend, not the VMA flags, decide these ranges */
		struct coh_fork_plan plan;
		coh_forkstage_plan(r, 0, &plan);
		if ((decided = plan.child_view != COH_CHILD_UNKNOWN)) {
			x.child_view = plan.child_view;
			x.parent_keeps = plan.parent_keeps;
			x.reason = plan.reason;
		}
		coh_rec_put(r);
	}
	int kind = ext->kind;
	if (decided) {
		/* answered by the backend */
	} else if (!m || kind == COH_MEM_UNMAPPED) {
		x.child_view = COH_CHILD_ABSENT;
		x.parent_keeps = -1;
		x.reason = "no mapping";
	} else if (m->dontcopy) {
		x.child_view = COH_CHILD_ABSENT;
		x.reason = "VM_DONTCOPY: the child has no mapping, an access raises SIGSEGV";
	} else if (m->wipeonfork) {
		x.child_view = COH_CHILD_ZERO;
		x.reason = "VM_WIPEONFORK: the child gets zero-filled memory";
	} else if (m->backing == COH_VMA_OWNED || kind == COH_MEM_VENDOR_MANAGED) {
		x.child_view = COH_CHILD_UNREADABLE;
		x.parent_keeps = -1;
		x.reason = "driver-managed mapping: the driver decides what the child sees";
	} else if (m->shared) {
		x.child_view = COH_CHILD_SHARED;
		x.reason = "shared mapping: parent and child see the same memory";
	} else if (kind == COH_MEM_DEVICE_COHERENT && ext->target && ext->target->d.cow_keeps) {
		/* the device supplies the copy of the write that breaks copy-on-write */
		x.child_view = COH_CHILD_COPY;
		x.parent_keeps = COH_KEEPS_YES;
		x.reason = "kernel copy-on-write of device-coherent pages, copied on the device (the kernel's "
			   "dev_pagemap cow_page): the parent keeps them whoever writes first";
	} else if (kind == COH_MEM_DEVICE_COHERENT) {
		/* the write that breaks copy-on-write gets the system-memory copy */
		x.child_view = COH_CHILD_COPY;
		x.parent_keeps = COH_KEEPS_FIRST_WRITER;
		x.reason = "kernel copy-on-write of device-coherent pages: the parent keeps them if the child writes "
			   "first; the parent's own first write leaves it a system-memory copy";
	} else if (kind == COH_MEM_DEVICE_PRIVATE) {
		/* the CPU cannot map them: the fault that gives the child its copy
		 * migrates the shared page for both processes */
		x.child_view = COH_CHILD_COPY;
		x.parent_keeps = COH_KEEPS_NO;
		x.reason = "kernel copy-on-write of device-private pages: the first CPU access after fork, the "
			   "child's included, moves them to system memory for both";
	} else {
		x.child_view = COH_CHILD_COPY;
		x.reason = "private mapping: copy-on-write, the parent keeps its pages";
	}
	if (o->h.n > 0) {
		struct coh_fork_extent *p = &o->out[o->h.n - 1];
		if (p->start + p->length == x.start && p->policy == x.policy && p->child_view == x.child_view &&
		    p->parent_keeps == x.parent_keeps && p->reason == x.reason) {
			p->length += x.length;
			return true;
		}
	}
	if (o->h.n == o->h.max)
		return false;
	o->out[o->h.n++] = x;
	return true;
}

static int fork_fill(void *buf, size_t max, void *arg)
{
	const struct coh_range_call *c = arg;
	/* smaps: the kernel's VmFlags decide what the child gets */
	struct fork_out o = { .out = buf };
	return coh_query_by_mapping(c->ctx, c->addr, c->len, buf, max, true, fork_piece, &o.h);
}

int coh_fork_query(coh_context *ctx, const void *addr, size_t len, struct coh_fork_extent *out, size_t max,
		   size_t ext_size)
{
	struct coh_range_call c = { ctx, addr, len };
	return coh_ext_fill(out, max, ext_size, sizeof(*out), fork_fill, &c);
}

const char *coh_child_view_name(int view)
{
	switch (view) {
	case COH_CHILD_UNKNOWN: return "unknown";
	case COH_CHILD_COPY: return "copy";
	case COH_CHILD_SHARED: return "shared";
	case COH_CHILD_ABSENT: return "absent";
	case COH_CHILD_ZERO: return "zero";
	case COH_CHILD_UNREADABLE: return "unreadable";
	default: return NULL;
	}
}
