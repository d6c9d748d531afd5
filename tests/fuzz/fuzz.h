/* SPDX-License-Identifier: MIT */
/* What every fuzz target shares: the libFuzzer entry points and an invariant
 * check that aborts (so libFuzzer, or the replay driver, reports it). */
#ifndef COH_FUZZ_H
#define COH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional (weak): the targets that need a set-up define it. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

/* The input as a C string (malloc'd; NULL when out of memory). */
static inline char *fuzz_cstr(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s) {
		for (size_t i = 0; i < size; i++)
			s[i] = (char)data[i];
		s[size] = '\0';
	}
	return s;
}

#define FUZZ_ASSERT(c)                                                                          \
	do {                                                                                    \
		if (!(c)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #c); \
			abort();                                                                \
		}                                                                               \
	} while (0)

#endif
