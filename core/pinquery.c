/* SPDX-License-Identifier: MIT */
/*
 * Pin-query: for each extent, what a short-term (FOLL_PIN) and a long-term
 * (FOLL_LONGTERM) pin would do, predicted from the residency query and the
 * mapping's protection, without pinning or moving anything.  The rules are
 * the kernel's (mm/gup.c, see docs/semantics.md):
 *  - ordinary system pages pin in place, unless their memory is ZONE_MOVABLE
 *    (then a long-term pin migrates them first);
 *  - device-coherent pages pin short-term in place; long-term pins migrate them;
 *  - device-private pages always fault back to system memory first;
 *  - device-dax pages pin in place and never move;
 *  - driver and PROT_NONE mappings refuse pins.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "query.h"

struct verdict {
	int s, l;
	const char *why;
};

static struct verdict judge(const coh_context *ctx, const struct coh_vma *vma, int kind, int node, coh_target *t)
{
	bool movable = t && t->d.zone_movable;
	if (!vma || kind == COH_MEM_UNMAPPED)
		return (struct verdict){ COH_PIN_NEVER, COH_PIN_NEVER, "no mapping: a pin fails with EFAULT" };
	if (kind == COH_MEM_VENDOR_MANAGED) {
		/* Measured on an H200 (driver 580, Linux 6.18): O_DIRECT into managed
		 * memory works (GUP faults GPU-resident pages to the host through
		 * the driver, then pins them); io_uring's long-term pin and
		 * cuMemHostRegister refuse it. */
		if (node >= 0)
			return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_NEVER,
						 "driver-managed memory on the host: short pins work in place, "
						 "long-term pins and host registration are refused" };
		return (struct verdict){ COH_PIN_AFTER_MIGRATE, COH_PIN_NEVER,
					 "driver-managed memory off the host: a short pin faults it to the host first; "
					 "long-term pins and host registration are refused" };
	}
	if (!vma->read && !vma->write)
		return (struct verdict){ COH_PIN_NEVER, COH_PIN_NEVER, "PROT_NONE mapping: GUP refuses it" };
	switch (kind) {
	case COH_MEM_DEVICE_PRIVATE:
		return (struct verdict){ COH_PIN_AFTER_MIGRATE, COH_PIN_AFTER_MIGRATE,
					 "device-private: any pin faults the page back to system memory" };
	case COH_MEM_DEVICE_COHERENT:
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
					 "device-coherent: short pins stay, long-term pins migrate it to system memory" };
	case COH_MEM_DEVICE_DAX:
		return (struct verdict){ COH_PIN_IN_PLACE, vma->write ? COH_PIN_IN_PLACE : COH_PIN_NEVER,
					 "device-dax: pinnable, never moves (io_uring fixed buffers refuse file-backed "
					 "memory on Linux 6.1)" };
	case COH_MEM_SWAPPED:
		return (struct verdict){ COH_PIN_AFTER_MIGRATE, COH_PIN_AFTER_MIGRATE,
					 "swapped out: a pin swaps it in to system memory" };
	case COH_MEM_UNKNOWN:
		if (vma->backing == COH_VMA_DEVICE)
			return (struct verdict){ COH_PIN_NEVER, COH_PIN_NEVER,
						 "driver mapping (VM_IO/VM_PFNMAP): GUP refuses it" };
		return (struct verdict){ COH_PIN_UNKNOWN, COH_PIN_UNKNOWN, "residency unknown" };
	default:
		break;
	}
	/* system, THP, file-backed or not yet populated */
	if (!vma->write)
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_NEVER,
					 "read-only mapping: read pins work, long-term pins ask for write access" };
	if (vma->backing == COH_VMA_FILE && vma->shared) {
		/* Linux 6.5 (mm/gup.c writable_file_mapping_allowed) refuses long-term
		 * write pins of shared file mappings that need dirty tracking. */
		if (ctx->kernel_version >= 6005)
			return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_NEVER,
						 "shared file mapping: Linux 6.5+ refuses long-term write pins of it" };
		if (ctx->kernel_version == 0)
			return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_UNKNOWN,
						 "shared file mapping: refused by Linux 6.5+, kernel version unknown" };
	}
	if (movable)
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_AFTER_MIGRATE,
					 "ZONE_MOVABLE memory: a long-term pin migrates it to a pinnable zone" };
	if (kind == COH_MEM_NOT_POPULATED)
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_IN_PLACE,
					 "not populated: the pin faults in a new system page" };
	if (kind == COH_MEM_SYSTEM_THP)
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "transparent huge page: pinnable in place" };
	if (kind == COH_MEM_FILE)
		return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "page-cache or shared memory page" };
	return (struct verdict){ COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, "ordinary system memory" };
}

struct pin_out {
	struct coh_piece_out h;
	struct coh_pin_extent *out;
};

static bool pin_piece(void *arg, uintptr_t a, size_t len, const struct coh_extent *x, const struct coh_vma *m)
{
	struct pin_out *o = arg;
	struct verdict v = judge(o->h.ctx, m, x->kind, x->node, x->target);
	if (o->h.n > 0) {
		struct coh_pin_extent *p = &o->out[o->h.n - 1];
		if (p->start + p->length == a && p->kind == x->kind && p->node == x->node && p->short_term == v.s &&
		    p->long_term == v.l && p->reason == v.why) {
			p->length += len;
			return true;
		}
	}
	if (o->h.n == o->h.max)
		return false;
	o->out[o->h.n++] = (struct coh_pin_extent){ .start = a, .length = len, .kind = x->kind, .node = x->node,
						  .short_term = v.s, .long_term = v.l, .reason = v.why };
	return true;
}

int coh_pin_query(coh_context *ctx, const void *addr, size_t len, struct coh_pin_extent *out, size_t max)
{
	struct pin_out o = { .out = out };
	return coh_query_by_mapping(ctx, addr, len, out, max, false, pin_piece, &o.h);
}

const char *coh_pin_answer_name(int answer)
{
	switch (answer) {
	case COH_PIN_UNKNOWN: return "unknown";
	case COH_PIN_IN_PLACE: return "in-place";
	case COH_PIN_AFTER_MIGRATE: return "after-migrate";
	case COH_PIN_NEVER: return "never";
	default: return NULL;
	}
}
