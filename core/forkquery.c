/* SPDX-License-Identifier: MIT */
/*
 * Fork query: what a child forked now would see, per extent.  The kernel's own
 * VMA flags decide for memory whose fork behaviour is the VMA's (VmFlags in
 * /proc/self/smaps: "dc" = VM_DONTCOPY, "wf" = VM_WIPEONFORK, "sh" = shared);
 * the residency query tells whether the parent's pages survive: device pages
 * under the kernel's copy-on-write do not (the first write after fork moves
 * them to system memory, see the seed and docs/semantics.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "query.h"

struct vflags {
	uintptr_t start, end;
	bool dontcopy, wipe, shared, vendor;
};

static int read_vmflags(const coh_context *ctx, uintptr_t start, uintptr_t end, struct vflags **out,
			size_t *count)
{
	int fd = coh_fs_open(ctx, "/proc/self/smaps", O_RDONLY);
	if (fd < 0)
		return fd;
	FILE *f = fdopen(fd, "r");
	if (!f) {
		close(fd);
		return -ENOMEM;
	}
	struct vflags *v = NULL, *cur = NULL;
	size_t n = 0, cap = 0;
	char line[4352];
	int err = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b;
		char perms[8];
		int off = 0;
		if (sscanf(line, "%lx-%lx %7s %*s %*s %*s%n", &a, &b, perms, &off) >= 3 && strchr(line, '-') &&
		    line[0] != 'V') {
			cur = NULL;
			if (b <= start)
				continue;
			if (a >= end)
				break;
			if (n == cap) {
				size_t nc = cap ? cap * 2 : 16;
				struct vflags *nv = realloc(v, nc * sizeof(*nv));
				if (!nv) {
					err = -ENOMEM;
					break;
				}
				v = nv;
				cap = nc;
			}
			cur = &v[n++];
			memset(cur, 0, sizeof(*cur));
			cur->start = a;
			cur->end = b;
			cur->shared = perms[3] == 's';
			cur->vendor = strstr(line + off, "/dev/nvidia-uvm") != NULL;
		} else if (cur && !strncmp(line, "VmFlags:", 8)) {
			cur->dontcopy = strstr(line, " dc") != NULL;
			cur->wipe = strstr(line, " wf") != NULL;
			if (strstr(line, " sh"))
				cur->shared = true;
		}
	}
	fclose(f);
	if (err) {
		free(v);
		return err;
	}
	*out = v;
	*count = n;
	return 0;
}

int coh_fork_query(coh_context *ctx, const void *addr, size_t len, struct coh_fork_extent *out, size_t max)
{
	uintptr_t start, end;
	int e = coh_query_args(ctx, addr, len, out, max, &start, &end);
	if (e)
		return e;
	if (max > 65536)
		max = 65536;
	struct coh_extent *ext = NULL;
	struct vflags *v = NULL;
	size_t nv = 0, no = 0;
	int n = coh_query_own(ctx, start, end, max, &ext);
	if (n < 0)
		return n;
	if ((e = read_vmflags(ctx, start, end, &v, &nv)))
		goto out;
	size_t vi = 0;
	for (int i = 0; i < n; i++) {
		uintptr_t a = ext[i].start, b = a + ext[i].length;
		while (a < b) {
			while (vi < nv && v[vi].end <= a)
				vi++;
			const struct vflags *m = vi < nv && v[vi].start <= a ? &v[vi] : NULL;
			uintptr_t pe = m ? (m->end < b ? m->end : b) : (vi < nv && v[vi].start < b ? v[vi].start : b);
			struct coh_fork_extent x = { .start = a, .length = pe - a, .policy = -1, .parent_keeps = 1 };
			struct coh_rec *r;
			if (coh_rec_get(ctx, (void *)a, 1, &r) == 0) {
				x.policy = r->pub.fork_policy;
				coh_rec_put(r);
			}
			int kind = ext[i].kind;
			if (!m || kind == COH_MEM_UNMAPPED) {
				x.child_view = COH_CHILD_ABSENT;
				x.parent_keeps = -1;
				x.reason = "no mapping";
			} else if (m->dontcopy) {
				x.child_view = COH_CHILD_ABSENT;
				x.reason = "VM_DONTCOPY: the child has no mapping, an access raises SIGSEGV";
			} else if (m->wipe) {
				x.child_view = COH_CHILD_ZERO;
				x.reason = "VM_WIPEONFORK: the child gets zero-filled memory";
			} else if (m->vendor || kind == COH_MEM_VENDOR_MANAGED) {
				x.child_view = COH_CHILD_UNREADABLE;
				x.parent_keeps = -1;
				x.reason = "driver-managed mapping: the driver decides what the child sees";
			} else if (m->shared) {
				x.child_view = COH_CHILD_SHARED;
				x.reason = "shared mapping: parent and child see the same memory";
			} else if (kind == COH_MEM_DEVICE_COHERENT || kind == COH_MEM_DEVICE_PRIVATE) {
				x.child_view = COH_CHILD_COPY;
				x.parent_keeps = 0;
				x.reason = "kernel copy-on-write of device pages: the first write after fork "
					   "leaves the parent with a system-memory copy";
			} else {
				x.child_view = COH_CHILD_COPY;
				x.reason = "private mapping: copy-on-write, the parent keeps its pages";
			}
			if (no > 0) {
				struct coh_fork_extent *p = &out[no - 1];
				if (p->start + p->length == x.start && p->policy == x.policy &&
				    p->child_view == x.child_view && p->parent_keeps == x.parent_keeps &&
				    p->reason == x.reason) {
					p->length += x.length;
					a = pe;
					continue;
				}
			}
			if (no == max)
				goto done;
			out[no++] = x;
			a = pe;
		}
	}
done:
	e = (int)no;
out:
	free(v);
	free(ext);
	return e;
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
