/* SPDX-License-Identifier: MIT */
/*
 * The growth rule of include/coherent.h, in one place: every struct that
 * begins with a `size` member and every array of extents goes through these.
 *
 * Sized structs: the caller's size may be smaller than the library's struct
 * (an older program: input fields past it keep their defaults, output fields
 * past it are not written) or larger (a newer program: the output bytes past
 * the library's struct are zeroed; the input bytes past it must be zero, or
 * the call is -E2BIG, as the kernel's extensible structs answer).  Below
 * sizeof(size_t) is -EINVAL.  The library works on its own full struct and
 * copies in or out once.
 *
 * Extent arrays: elements at the caller's stride ext_size, at least
 * COH_EXT_SIZE_MIN and a multiple of 8 (every public extent struct is laid
 * out in 8-byte units, so a cut at a multiple of 8 never splits a field).
 */
#ifndef COH_CORE_GROWTH_H
#define COH_CORE_GROWTH_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "coherent.h"

static inline size_t coh_struct_size(const void *user)
{
	size_t n;
	memcpy(&n, user, sizeof(n));
	return n;
}

/* The caller's output struct can be written: 0 or -EINVAL.  Check it before
 * the call changes anything. */
static inline int coh_struct_out_check(const void *user)
{
	return coh_struct_size(user) < sizeof(size_t) ? -EINVAL : 0;
}

/* Copies the library's full struct src (full bytes) out to the caller's
 * struct, whose size was checked: the caller's size member is left as it is. */
static inline void coh_struct_out(void *user, const void *src, size_t full)
{
	size_t n = coh_struct_size(user);
	if (n == full) {
		memcpy((char *)user + sizeof(size_t), (const char *)src + sizeof(size_t), full - sizeof(size_t));
		return;
	}
	memcpy((char *)user + sizeof(size_t), (const char *)src + sizeof(size_t),
	       (n < full ? n : full) - sizeof(size_t));
	if (n > full)
		memset((char *)user + full, 0, n - full);
}

/* Reads the caller's input struct into dst, which holds the defaults (full
 * bytes): 0, -EINVAL (size below sizeof(size_t)) or -E2BIG (a non-zero byte
 * past the library's struct).  dst's size member is set to full. */
static inline int coh_struct_in(void *dst, size_t full, const void *user)
{
	size_t n = coh_struct_size(user);
	if (n < sizeof(size_t))
		return -EINVAL;
	for (size_t i = full; i < n; i++)
		if (((const unsigned char *)user)[i])
			return -E2BIG;
	memcpy((char *)dst + sizeof(size_t), (const char *)user + sizeof(size_t),
	       (n < full ? n : full) - sizeof(size_t));
	memcpy(dst, &full, sizeof(full));
	return 0;
}

/* ext_size of an extent call: 0 or -EINVAL. */
static inline int coh_ext_size_check(size_t ext_size)
{
	return ext_size < COH_EXT_SIZE_MIN || ext_size % 8 ? -EINVAL : 0;
}

/* Rewrites n full-size elements (full bytes each) that lie at the start of
 * buf at the caller's stride ext_size, in place.  For ext_size < full the
 * buffer holds n full elements (the caller's array is copied from a work
 * buffer: see coh_ext_copy); for ext_size > full the caller's array itself,
 * which has room for n * ext_size bytes. */
static inline void coh_ext_spread(void *buf, size_t ext_size, size_t full, size_t n)
{
	char *b = buf;
	if (ext_size == full)
		return;
	/* growing: last element first, so that no element is overwritten before it moved */
	for (size_t i = n; i-- > 0;) {
		memmove(b + i * ext_size, b + i * full, full);
		memset(b + i * ext_size + full, 0, ext_size - full);
	}
}

/* Copies n full-size elements of src to the caller's array dst at stride
 * ext_size (ext_size < full: the fields wholly inside ext_size). */
static inline void coh_ext_copy(void *dst, size_t ext_size, const void *src, size_t full, size_t n)
{
	size_t c = ext_size < full ? ext_size : full;
	for (size_t i = 0; i < n; i++) {
		memcpy((char *)dst + i * ext_size, (const char *)src + i * full, c);
		if (ext_size > full)
			memset((char *)dst + i * ext_size + full, 0, ext_size - full);
	}
}

/* ---- vectors of input elements (coh_queue_migrate, coh_migrate_batch,
 * coh_query_batch) ---- */
/* n elements at the caller's stride `stride` (at least min, a multiple of
 * 8): 0, -EINVAL, -EOVERFLOW (n * stride wraps), or -E2BIG when a byte past
 * the library's `full` bytes of an element is not zero. */
static inline int coh_vec_in_check(const void *v, size_t n, size_t stride, size_t min, size_t full)
{
	if (stride < min || stride % 8)
		return -EINVAL;
	if (n > SIZE_MAX / stride)
		return -EOVERFLOW;
	for (size_t i = 0; stride > full && i < n; i++)
		for (size_t b = full; b < stride; b++)
			if (((const unsigned char *)v)[i * stride + b])
				return -E2BIG;
	return 0;
}

/* Element i of such a vector: the library's full bytes of it (the check
 * above guarantees stride >= full where min == full). */
static inline const void *coh_vec_at(const void *v, size_t i, size_t stride)
{
	return (const char *)v + i * stride;
}

#endif
