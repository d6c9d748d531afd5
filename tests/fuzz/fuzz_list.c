/* SPDX-License-Identifier: MIT */
/* Fuzz target: the kernel list parser ("0-3,8,10-11") behind every sysfs node
 * list the library reads (online, has_memory, has_cpu, cpulist, tier nodelists). */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	if (!s)
		return 0;
	/* the first byte picks the bitmap size, 1..256 bits, so the range check is reached */
	int max = size ? data[0] + 1 : 64;
	uint8_t bits[33];
	memset(bits, 0xa5, sizeof(bits));
	int r = coh_parse_list(size ? s + 1 : s, bits, max);
	FUZZ_ASSERT(r >= 0 || r == -EINVAL || r == -ERANGE);
	if (r >= 0) {
		int set = 0;
		for (int i = 0; i < max; i++)
			set += (bits[i / 8] >> (i % 8)) & 1;
		FUZZ_ASSERT(set == r);   /* the count is the number of distinct members */
		for (int i = max; i < (max + 7) / 8 * 8; i++)
			FUZZ_ASSERT(!((bits[i / 8] >> (i % 8)) & 1));
	}
	/* nothing written past the bitmap */
	for (int i = (max + 7) / 8; i < (int)sizeof(bits); i++)
		FUZZ_ASSERT(bits[i] == 0xa5);
	free(s);
	return 0;
}
