/* SPDX-License-Identifier: MIT */
/* cxl backend: sharing device-dax memory between processes (the design:
 * cxl.h, "Sharing between processes").  An export puts the allocation's
 * run of chunks in the device map's share table; an import joins that entry
 * and maps the same chunks of the device at an address of its own, outside
 * the importer's window (an import is no allocation of the importer's
 * sub-allocator: it neither migrates nor counts in its runs). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cxl.h"

/* The record's priv for an import: its run of the device. */
struct cxl_import {
	size_t c, n;
};

/* The run [*c, *c + *n) of rec, an allocation or an import (ct->lock held). */
static int rec_run(const struct cxl_target *ct, const struct coh_alloc_rec *rec, size_t *c, size_t *n)
{
	const struct cxl_import *im = rec->priv;
	if (im) {
		*c = im->c;
		*n = im->n;
		return 0;
	}
	long f = cxl_first_chunk(ct, (void *)rec->start);
	if (f < 0)
		return -ENOENT;
	*c = (size_t)f;
	*n = ct->run[f];
	for (size_t i = *c; i < *c + *n; i++)
		if (ct->state[i] == CH_HOST)
			return -EBUSY;   /* the data lives on the host now: the device has a stale copy */
	return 0;
}

int cxl_share_export(const struct coh_alloc_rec *rec, struct coh_handle *h)
{
	coh_target *t = rec->target;
	struct cxl_target *ct = ct_of(t);
	pthread_mutex_lock(&ct->lock);
	size_t c = 0, n = 0;
	uint64_t serial = 0;
	int e = ct->base && ct->pid != getpid() ? -ECHILD : 0;
	if (!e)
		e = rec_run(ct, rec, &c, &n);
	struct stat st;
	if (!e && fstat(ct->fd, &st))
		e = -errno;
	if (!e && !(e = cxl_map_lock(&ct->map))) {
		e = cxl_map_share(coh_target_context(t), &ct->map, c, n, &serial);
		cxl_map_unlock(&ct->map);
	}
	int fd = e ? -1 : fcntl(ct->fd, F_DUPFD_CLOEXEC, 0);
	if (!e && fd < 0)
		e = -errno;   /* the entry stays: this holder frees it with the memory */
	pthread_mutex_unlock(&ct->lock);
	if (e)
		return e;
	h->kind = COH_HANDLE_DEVDAX;
	h->offset = (uint64_t)c * ct->align;
	h->length = (uint64_t)n * ct->align;
	h->object_size = ct->size;
	h->dev = S_ISCHR(st.st_mode) ? (uint64_t)st.st_rdev : (uint64_t)st.st_ino;
	h->chunk = ct->align;
	h->serial = serial;
	h->fd = fd;
	return 0;
}

/* The device's identity as a handle states it (a regular file stands for a
 * device in tests: its inode). */
static bool same_device(const struct stat *st, const struct coh_handle *h)
{
	return S_ISCHR(st->st_mode) ? (uint64_t)st->st_rdev == h->dev
				    : S_ISREG(st->st_mode) && (uint64_t)st->st_ino == h->dev;
}

int cxl_share_import(coh_target *t, const struct coh_handle *h, void **out, void **priv)
{
	if (h->kind != COH_HANDLE_DEVDAX)
		return -ENODEV;
	struct cxl_target *ct = ct_of(t);
	if (h->object_size != ct->size || h->chunk != ct->align)
		return -ENODEV;   /* another device, or one this context divides otherwise */
	struct stat hs;
	if (fstat(h->fd, &hs))
		return -errno;
	if (!same_device(&hs, h))
		return -EINVAL;   /* the descriptor is not the device the handle names */
	if (h->offset % ct->align || h->length % ct->align)
		return -EINVAL;
	size_t c = (size_t)(h->offset / ct->align), n = (size_t)(h->length / ct->align);
	coh_context *ctx = coh_target_context(t);
	struct cxl_import *im = malloc(sizeof(*im));
	if (!im)
		return -ENOMEM;
	im->c = c;
	im->n = n;
	pthread_mutex_lock(&ct->lock);
	struct stat st;
	int e = ct->base && ct->pid != getpid() ? -ECHILD : cxl_attach(t, ct, false);
	if (e == -ENOENT)
		e = -ESTALE;   /* no map file: nobody holds anything of this device */
	if (!e && fstat(ct->fd, &st))
		e = -errno;
	if (!e && !same_device(&st, h))
		e = -ENODEV;
	if (!e && !(e = cxl_map_lock(&ct->map))) {
		e = cxl_map_join(ctx, &ct->map, c, n, h->serial);
		cxl_map_unlock(&ct->map);
	}
	void *res = NULL, *p = NULL;
	size_t len = n * ct->align;
	if (!e)
		e = coh_sys_mmap_aligned(len, ct->align, PROT_NONE, MAP_PRIVATE | MAP_NORESERVE, &res);
	if (!e) {
		e = coh_sys_mmap(res, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, ct->fd, (off_t)h->offset, &p);
		if (e) {
			coh_sys_munmap_own(res, len);
			if (!cxl_map_lock(&ct->map)) {
				if (cxl_map_leave(ctx, &ct->map, c, n) == 0)
					cxl_map_release(&ct->map, c, n);
				cxl_map_unlock(&ct->map);
			}
		}
	}
	pthread_mutex_unlock(&ct->lock);
	if (e) {
		free(im);
		return e;
	}
	*out = p;
	*priv = im;
	return 0;
}

/* Leaves the share of [c, c+n): 1 when another holder keeps the run (its
 * words are left alone), 0 when none did (the caller releases them), or
 * the map lock's error (ct->lock held). */
int cxl_share_leave(coh_target *t, struct cxl_target *ct, size_t c, size_t n)
{
	int e = cxl_map_lock(&ct->map);
	if (e)
		return e;
	int r = cxl_map_leave(coh_target_context(t), &ct->map, c, n);
	if (r == 0 || (r < 0 && ct->map.words[c] == ct->map.me))
		cxl_map_release(&ct->map, c, n);
	cxl_map_unlock(&ct->map);
	return r > 0 ? 1 : 0;
}

int cxl_import_free(coh_target *t, void *ptr, void *priv)
{
	struct cxl_target *ct = ct_of(t);
	struct cxl_import *im = priv;
	int e = coh_sys_munmap(ptr, im->n * ct->align);
	if (e)
		return e;
	pthread_mutex_lock(&ct->lock);
	if (ct->map.nchunks && ct->map.pid == getpid())
		e = cxl_share_leave(t, ct, im->c, im->n);
	pthread_mutex_unlock(&ct->lock);
	free(im);
	return e < 0 ? e : 0;
}
