/* SPDX-License-Identifier: MIT */
/*
 * hmmtest backend: the Linux test_hmm driver's emulated devices as targets.
 * /dev/hmm_dmirror0 and 1 are DEVICE_PRIVATE memory, 2 and 3 DEVICE_COHERENT
 * (present only when the driver got its spm_addr parameters).  Memory is
 * ordinary private anonymous memory migrated into the device with
 * HMM_DMIRROR_MIGRATE_TO_DEV; the driver's per-page snapshot is the
 * authoritative residency.  Device handles stay open for the context's life:
 * closing any handle of a dmirror device evicts all of that device's pages.
 *
 * Fork COPY: the kernel's own fork would cost the parent its device pages
 * (device-private: any access by either process faults the shared page back
 * to system memory; device-coherent: the parent's first write after fork gets
 * a system copy).  So COPY ranges are staged by the core (core/forkstage.c):
 * the backend's copy hook copies the data out through the device (no CPU
 * fault), the core keeps the range from the child (MADV_DONTFORK) and moves
 * the copy to the same address in the child.  The parent's pages never move.
 * Writes other threads make between prepare and fork may not reach the child.
 */
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "hmm_uapi.h"
#include "backend.h"

#define HMM_NDEV 4
#define HMM_BATCH 256   /* pages per ioctl: the migrate ioctls copy data out to a buffer */
#define HMM_SNAP_BATCH 4096   /* pages per snapshot ioctl: one status byte each */

const struct coh_backend_ops coh_hmmtest_backend;

struct hmm_backend {
	int fd[HMM_NDEV];
	pid_t pid;            /* the process whose mm the handles mirror */
};

struct hmm_target {
	int minor;
	int fd;
};

static int dmirror(int fd, unsigned long req, uintptr_t addr, size_t npages, void *ptr, uint64_t *cpages)
{
	struct hmm_dmirror_cmd cmd = { .addr = addr, .ptr = (uintptr_t)ptr, .npages = npages };
	int e = coh_sys_ioctl(fd, req, &cmd);
	if (cpages)
		*cpages = cmd.cpages;
	return e < 0 ? e : 0;
}

/* Runs a data-moving ioctl over [addr, addr+len) in batches. */
static int dmirror_range(int fd, unsigned long req, uintptr_t addr, size_t len, size_t ps, uint64_t *moved)
{
	size_t np = len / ps;
	void *buf = malloc(HMM_BATCH * ps);
	if (!buf)
		return -ENOMEM;
	uint64_t total = 0;
	int e = 0;
	for (size_t done = 0; done < np && !e; done += HMM_BATCH) {
		size_t c = np - done < HMM_BATCH ? np - done : HMM_BATCH;
		uint64_t cp = 0;
		e = dmirror(fd, req, addr + done * ps, c, buf, &cp);
		total += cp;
	}
	free(buf);
	if (moved)
		*moved = total;
	return e;
}

/* Snapshot bytes of [addr, addr+len) as this device sees them. */
static int snapshot(int fd, uintptr_t addr, size_t len, size_t ps, unsigned char *out)
{
	size_t np = len / ps;
	for (size_t done = 0; done < np; done += HMM_SNAP_BATCH) {
		size_t c = np - done < HMM_SNAP_BATCH ? np - done : HMM_SNAP_BATCH;
		int e = dmirror(fd, HMM_DMIRROR_SNAPSHOT, addr + done * ps, c, out + done, NULL);
		if (e)
			return e;
	}
	return 0;
}

static bool is_private(int minor)
{
	return minor < 2;
}

static int own_fd(const coh_target *t)
{
	const struct hmm_backend *hb = coh_target_backend_priv(t);
	const struct hmm_target *ht = coh_target_priv(t);
	/* a forked child inherits handles that mirror its parent's mm */
	return hb->pid == getpid() ? ht->fd : -ECHILD;
}

/* ---------------- discovery ---------------- */

static int hmm_discover(coh_context *ctx, void **priv)
{
	struct hmm_backend *hb = calloc(1, sizeof(*hb));
	if (!hb)
		return -ENOMEM;
	*priv = hb;
	hb->pid = getpid();
	for (int i = 0; i < HMM_NDEV; i++)
		hb->fd[i] = -1;
	int added = 0;
	for (int i = 0; i < HMM_NDEV; i++) {
		char path[32];
		snprintf(path, sizeof(path), "/dev/hmm_dmirror%d", i);
		if (!coh_fs_exists(ctx, path))
			continue;
		int fd = -1;
		if (!coh_ctx_replay(ctx)) {
			fd = coh_fs_open(ctx, path, O_RDWR);
			if (fd < 0) {
				coh_warn(ctx, "hmmtest: %s: %s", path, strerror(-fd));
				continue;
			}
		}
		struct hmm_target *ht = calloc(1, sizeof(*ht));
		if (!ht) {
			if (fd >= 0)
				close(fd);
			return -ENOMEM;
		}
		ht->minor = i;
		ht->fd = fd;
		hb->fd[i] = fd;
		struct coh_target_desc d = { 0 };
		d.kind = is_private(i) ? COH_KIND_DEVICE_PRIVATE : COH_KIND_DEVICE_COHERENT;
		snprintf(d.name, sizeof(d.name), "hmmtest:dmirror%d", i);
		snprintf(d.vendor, sizeof(d.vendor), "Linux test_hmm");
		snprintf(d.model, sizeof(d.model), "emulated %s device memory",
			 is_private(i) ? "device-private" : "device-coherent");
		d.numa_node = -1;
		d.total_bytes = 256u << 20;   /* one chunk; the private emulation adds chunks on demand */
		d.caps = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC | COH_CAP_QUERY |
			 COH_CAP_PIN_QUERY | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
			 COH_CAP_FORK_KERNEL | COH_CAP_DEVICE_ACCESS;
		d.access_note = "the driver's mirror of the page table (HMM_DMIRROR_READ, _WRITE)";
		if (!is_private(i)) {
			/* kernel/patches (6.1, 6.12): the driver's CoW copies stay on the device */
			char v[8];
			d.cow_keeps = coh_fs_read(ctx, "/sys/module/test_hmm/parameters/cow_on_device", v, sizeof(v)) > 0 &&
				      v[0] == 'Y';
		}
		d.priv = ht;
		int e = coh_target_add(ctx, &d);
		if (e) {
			free(ht);
			if (fd >= 0)
				close(fd);
			hb->fd[i] = -1;
			return e;
		}
		added++;
	}
	return added;
}

static void hmm_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct hmm_backend *hb = priv;
	for (int i = 0; i < HMM_NDEV; i++)
		if (hb->fd[i] >= 0)
			close(hb->fd[i]);
	free(hb);
}

static void hmm_target_fini(coh_target *t, void *priv)
{
	(void)t;
	free(priv);
}

/* ---------------- memory ---------------- */

/* Every page of the range in this device (snapshot says "local"). */
static int all_local(int fd, int minor, uintptr_t addr, size_t len, size_t ps)
{
	size_t np = len / ps;
	unsigned char *s = malloc(np);
	if (!s)
		return -ENOMEM;
	int e = snapshot(fd, addr, len, ps, s);
	unsigned want = is_private(minor) ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL : HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL;
	for (size_t i = 0; i < np && !e; i++)
		if ((s[i] & 0xf0) != want)
			e = -EBUSY;   /* pinned or otherwise unmovable pages stayed where they were */
	free(s);
	return e;
}

static int to_device(coh_target *t, uintptr_t addr, size_t len)
{
	const struct hmm_backend *hb = coh_target_backend_priv(t);
	const struct hmm_target *ht = coh_target_priv(t);
	size_t ps = coh_ctx_page_size(coh_target_context(t));
	int fd = own_fd(t);
	if (fd < 0)
		return fd;
	/* pages on another emulated device come home first */
	for (int i = 0; i < HMM_NDEV; i++)
		if (hb->fd[i] >= 0 && i != ht->minor)
			dmirror_range(hb->fd[i], HMM_DMIRROR_MIGRATE_TO_SYS, addr, len, ps, NULL);
	int e = dmirror_range(fd, HMM_DMIRROR_MIGRATE_TO_DEV, addr, len, ps, NULL);
	if (e == -ENOENT)
		e = 0;   /* nothing left to collect (already here, or pinned): the snapshot decides */
	return e ? e : all_local(fd, ht->minor, addr, len, ps);
}

static int hmm_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	void *p;
	int e = coh_sys_mmap_aligned(size, align, PROT_READ | PROT_WRITE, MAP_PRIVATE, &p);
	if (e)
		return e;
	uintptr_t a = (uintptr_t)p;
	/* device pages are allocated now: holes migrate as zero-filled pages */
	coh_sys_madvise((void *)a, size, MADV_NOHUGEPAGE);
	e = to_device(t, a, size);
	if (e) {
		coh_sys_munmap((void *)a, size);
		return e == -EBUSY ? -ENOMEM : e;
	}
	*out = (void *)a;
	return 0;
}

static int hmm_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)priv;
	(void)t;
	return coh_sys_munmap(ptr, size);   /* the driver's page_free returns the device pages */
}

static int hmm_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)priv;
	(void)flags;
	return coh_range_anon_private(coh_target_context(t), addr, len);
}

static int hmm_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	(void)t;
	(void)rec;
	return 0;   /* the pages stay where they are; the caller keeps the memory */
}

static int hmm_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	coh_target *owner = rec->target;
	const struct hmm_backend *hb = coh_target_backend_priv(owner);
	size_t ps = coh_ctx_page_size(coh_target_context(owner));
	if (hb->pid != getpid())
		return -ECHILD;
	if (coh_target_backend(dst) == coh_hmmtest_backend.name)
		return to_device(dst, (uintptr_t)addr, len);
	int node = coh_target_numa_node(dst);
	if (node < 0 || node >= COH_NODE_LIMIT)
		return -EOPNOTSUPP;
	/* to a NUMA node: out of every emulated device, then a kernel move */
	for (int i = 0; i < HMM_NDEV; i++)
		if (hb->fd[i] >= 0) {
			int e = dmirror_range(hb->fd[i], HMM_DMIRROR_MIGRATE_TO_SYS, (uintptr_t)addr, len, ps, NULL);
			if (e)
				return e;
		}
	int e = coh_sys_mbind_node(addr, len, node, MPOL_BIND, MPOL_MF_MOVE | MPOL_MF_STRICT);
	return e == -EIO ? -EBUSY : e;
}

/* The hmmtest device rec's pages last went to: its home, else its own target. */
static coh_target *last_device(const struct coh_alloc_rec *rec)
{
	coh_target *home = rec->home;
	return home && coh_target_backend(home) == coh_hmmtest_backend.name ? home : rec->target;
}

static coh_target *device_target(coh_context *ctx, int minor)
{
	char name[32];
	snprintf(name, sizeof(name), "hmmtest:dmirror%d", minor);
	return coh_target_find(ctx, name);
}

#define HMM_NOBODY 0xff   /* no device says it holds the page */

/* Which device holds each of the c pages at addr (a minor, or HMM_NOBODY):
 * a snapshot says "local" only on the device that owns the page (another
 * device sees someone else's private page as nothing, a coherent one as
 * "remote"), so each device of the extent's kind is asked in turn, the one
 * the pages last went to first, until every page has its owner: one ioctl
 * per device per batch. */
static int owners(const struct hmm_backend *hb, int first, bool private_kind, uintptr_t addr, size_t c,
		  unsigned char *snap, unsigned char *who)
{
	unsigned local = private_kind ? HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL : HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL;
	size_t left = c;
	memset(who, HMM_NOBODY, c);
	for (int k = 0; k < HMM_NDEV && left; k++) {
		int d = (first + k) % HMM_NDEV;
		if (hb->fd[d] < 0 || is_private(d) != private_kind)
			continue;   /* absent, or memory of the other kind */
		int e = dmirror(hb->fd[d], HMM_DMIRROR_SNAPSHOT, addr, c, snap, NULL);
		if (e)
			return e;
		for (size_t i = 0; i < c; i++)
			if (who[i] == HMM_NOBODY && (snap[i] & 0xf0) == local) {
				who[i] = (unsigned char)d;
				left--;
			}
	}
	return 0;
}

/* Device pages of this backend get the target of the device that holds each
 * (the driver's snapshot), one extent per run. */
static int hmm_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
			     size_t max)
{
	if (in->kind != COH_MEM_DEVICE_PRIVATE && in->kind != COH_MEM_DEVICE_COHERENT)
		return -ENOENT;   /* system memory: the kernel's view holds */
	const struct hmm_backend *hb = coh_target_backend_priv(rec->target);
	if (hb->pid != getpid())
		return -ECHILD;   /* a forked child's handles mirror its parent */
	coh_context *ctx = coh_target_context(rec->target);
	size_t ps = coh_ctx_page_size(ctx), np = in->length / ps;
	size_t batch = np < HMM_SNAP_BATCH ? np : HMM_SNAP_BATCH;
	if (np == 0)
		return -ENOENT;
	const struct hmm_target *first = coh_target_priv(last_device(rec));
	unsigned char *snap = malloc(2 * batch), *who = snap + batch;
	if (!snap)
		return -ENOMEM;
	coh_target *tg[HMM_NDEV] = { NULL };
	size_t n = 0;
	int e = 0;
	bool room = true;
	for (size_t done = 0; done < np && room && !e; done += batch) {
		size_t c = np - done < batch ? np - done : batch;
		uintptr_t a = in->start + done * ps;
		e = owners(hb, first->minor, in->kind == COH_MEM_DEVICE_PRIVATE, a, c, snap, who);
		for (size_t i = 0; i < c && room && !e;) {
			size_t j = i + 1;
			while (j < c && who[j] == who[i])
				j++;
			coh_target *t = in->target;   /* no device owns them (moved since the kernel's view) */
			if (who[i] != HMM_NOBODY) {
				if (!tg[who[i]])
					tg[who[i]] = device_target(ctx, who[i]);
				t = tg[who[i]];
			}
			room = coh_ext_append(out, &n, max, a + i * ps, (j - i) * ps, in->kind, in->node, t);
			i = j;
		}
	}
	free(snap);
	return e ? e : (int)n;
}

/* ---------------- fork ---------------- */

/* COPY ranges are staged by the core, the others fork the kernel's way; a
 * fork child's handles mirror its parent, so it stages nothing. */
static int hmm_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	(void)at_fork;
	const struct hmm_backend *hb = coh_target_backend_priv(rec->target);
	if (rec->fork_policy != COH_FORK_COPY || hb->pid != getpid())
		return 0;
	plan->stage = COH_STAGE_COPY;
	plan->dontfork = 1;
	plan->reason = "copied aside before fork (kept from the child), the child gets the copy at the same address: "
		       "the parent's device pages stay";
	return 0;
}

/* Runs of this device's own private pages in [a, a+len), moved out to
 * system memory (back = false) or in again (back = true, the same runs). */
static int own_private_runs(int fd, uintptr_t a, size_t len, size_t ps, unsigned char *snap, bool back)
{
	size_t np = len / ps;
	int e = 0;
	for (size_t i = 0; i < np && !e;) {
		if ((snap[i] & 0xf0) != HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < np && (snap[j] & 0xf0) == HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL)
			j++;
		e = dmirror_range(fd, back ? HMM_DMIRROR_MIGRATE_TO_DEV : HMM_DMIRROR_MIGRATE_TO_SYS, a + i * ps,
				  (j - i) * ps, ps, NULL);
		i = j;
	}
	return e;
}

/* The CPU cannot read device-private memory without faulting it back, and
 * the driver's READ of device-private pages is not safe in 6.1 (it maps the
 * device page).  So the device's own private runs go out to system memory,
 * the CPU copies the range, and the same runs go back in.  Pages already in
 * system memory are read in place and stay there: a long-term pin (an RDMA
 * registration) keeps them there, and migrating the whole range back in
 * would fail on them (-ENOENT) and leave the range unstaged. */
static int hmm_fork_copy(const struct coh_alloc_rec *rec, void *copy)
{
	coh_target *dev = last_device(rec);
	const struct hmm_target *ht = coh_target_priv(dev);
	if (!is_private(ht->minor)) {
		/* the CPU reads device-coherent memory in place */
		coh_fork_snapshot(copy, (void *)rec->start, rec->length);
		return 0;
	}
	size_t ps = coh_ctx_page_size(coh_target_context(dev)), np = rec->length / ps;
	unsigned char *snap = malloc(np);
	if (!snap)
		return -ENOMEM;
	int e = snapshot(ht->fd, rec->start, rec->length, ps, snap);
	if (!e)
		e = own_private_runs(ht->fd, rec->start, rec->length, ps, snap, false);
	if (!e) {
		coh_fork_snapshot(copy, (void *)rec->start, rec->length);
		e = own_private_runs(ht->fd, rec->start, rec->length, ps, snap, true);
	}
	free(snap);
	return e;
}

/* The device reads and writes through its mirror of the process's page
 * table: HMM_DMIRROR_READ and _WRITE fault the range into the device's view
 * (hmm_range_fault; another device's private pages come back to system
 * memory) and copy through a bounce buffer.  The device's own private pages
 * go out to system memory for the access and back in after it: the 6.1
 * driver keeps the device page itself in its mirror when hmm_range_fault
 * reports one of its own private pages (dmirror_do_fault) and then kmaps it,
 * which oopses the kernel (found by the conformance suite's dev-fork cases,
 * once a fork had cleared the mirror's entries). */
static int hmm_device_access(coh_target *dev, const struct coh_alloc_rec *rec, void *addr, size_t len,
			     unsigned ops, uint64_t pattern, uint64_t *sums)
{
	(void)rec;
	int fd = own_fd(dev);
	if (fd < 0)
		return fd;
	const struct hmm_target *ht = coh_target_priv(dev);
	size_t ps = coh_ctx_page_size(coh_target_context(dev)), np = len / ps;
	uintptr_t a = (uintptr_t)addr;
	unsigned char *snap = NULL;
	if (is_private(ht->minor)) {
		snap = malloc(np);
		if (!snap)
			return -ENOMEM;
		int e = snapshot(fd, a, len, ps, snap);
		if (!e)
			e = own_private_runs(fd, a, len, ps, snap, false);
		if (e) {
			free(snap);
			return e;
		}
	}
	uint64_t *buf = malloc(HMM_BATCH * ps);
	int e = buf ? 0 : -ENOMEM;
	for (size_t done = 0; done < np && !e; done += HMM_BATCH) {
		size_t c = np - done < HMM_BATCH ? np - done : HMM_BATCH, bytes = c * ps;
		uint64_t cp = 0;
		if (ops & COH_DEVICE_SUM) {
			e = dmirror(fd, HMM_DMIRROR_READ, a + done * ps, c, buf, &cp);
			if (!e && cp != c)
				e = -EFAULT;
			for (size_t b = 0; !e && b < bytes / COH_SUM_BLOCK; b++)
				sums[(done * ps) / COH_SUM_BLOCK + b] = coh_block_sum((char *)buf + b * COH_SUM_BLOCK);
		}
		if (!e && (ops & COH_DEVICE_FILL)) {
			for (size_t w = 0; w < bytes / 8; w++)
				buf[w] = coh_pattern_word(pattern, done * ps + w * 8);
			e = dmirror(fd, HMM_DMIRROR_WRITE, a + done * ps, c, buf, &cp);
			if (!e && cp != c)
				e = -EFAULT;
		}
	}
	free(buf);
	if (snap) {
		int e2 = own_private_runs(fd, a, len, ps, snap, true);
		if (!e)
			e = e2;
		free(snap);
	}
	return e;
}

const struct coh_backend_ops coh_hmmtest_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "hmmtest",
	.discover = hmm_discover,
	.fini = hmm_fini,
	.target_fini = hmm_target_fini,
	.alloc = hmm_alloc,
	.free = hmm_free,
	.adopt = hmm_adopt,
	.release = hmm_release,
	.migrate = hmm_migrate,
	.query_resolve = hmm_query_resolve,
	.fork_plan = hmm_fork_plan,
	.fork_copy = hmm_fork_copy,
	.device_access = hmm_device_access,
};
