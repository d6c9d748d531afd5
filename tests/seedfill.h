/* SPDX-License-Identifier: MIT */
/* A pattern one byte per 512 that tells which writer (seed) filled memory:
 * for the tests that share memory between processes. */
#ifndef COH_TESTS_SEEDFILL_H
#define COH_TESTS_SEEDFILL_H

#include <stdbool.h>
#include <stddef.h>

static inline void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += 512)
		p[i] = (unsigned char)(i / 512 * 7 + seed);
}

static inline bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i += 512)
		if (p[i] != (unsigned char)(i / 512 * 7 + seed))
			return false;
	return true;
}

#endif
