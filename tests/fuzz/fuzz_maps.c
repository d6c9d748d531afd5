/* SPDX-License-Identifier: MIT */
/* Fuzz target: the /proc/PID/maps and smaps parser of the query engine (smaps
 * adds VmFlags lines).  The first 16 bytes pick the range asked about. */
#include <string.h>

#include "fuzz.h"
#include "query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t lo = 0, hi = UINT64_MAX;
	if (size >= 16) {
		memcpy(&lo, data, 8);
		memcpy(&hi, data + 8, 8);
		data += 16;
		size -= 16;
		if (lo >= hi) {   /* an empty range still parses; keep half the cases open-ended */
			lo = 0;
			hi = UINT64_MAX;
		}
	}
	FILE *f = fmemopen(size ? (void *)data : (void *)"", size ? size : 1, "r");
	if (!f)
		return 0;
	struct coh_vma *v = NULL;
	size_t n = 0;
	int e = coh_maps_parse(f, (uintptr_t)lo, (uintptr_t)hi, &v, &n);
	fclose(f);
	FUZZ_ASSERT(e == 0 || e < 0);
	if (e == 0) {
		for (size_t i = 0; i < n; i++) {
			FUZZ_ASSERT(v[i].end > lo && v[i].start < hi);   /* only what meets the range */
			FUZZ_ASSERT(memchr(v[i].path, '\0', sizeof(v[i].path)) != NULL);
			FUZZ_ASSERT(v[i].backing >= COH_VMA_ANON && v[i].backing <= COH_VMA_DEVICE);
		}
		free(v);
	}
	return 0;
}
