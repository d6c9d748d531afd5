/* SPDX-License-Identifier: MIT */
/* Fuzz target: the /proc/PID/numa_maps parser.  The mappings it is matched
 * against are the input's own line starts (so lines match, and some do not:
 * every third is left out). */
#include <string.h>

#include "fuzz.h"
#include "query.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = fuzz_cstr(data, size);
	if (!s)
		return 0;
	struct coh_vma v[64];
	size_t nv = 0;
	int line = 0;
	for (char *p = s; *p && nv < 64; line++) {
		unsigned long a = strtoul(p, NULL, 16);
		if (line % 3 != 2 && (nv == 0 || a > v[nv - 1].start)) {
			memset(&v[nv], 0, sizeof(v[nv]));
			v[nv].start = a;
			v[nv].end = a + 4096;
			nv++;
		}
		char *nl = strchr(p, '\n');
		if (!nl)
			break;
		p = nl + 1;
	}
	int node_of[64];
	FILE *f = fmemopen(size ? (void *)data : (void *)"", size ? size : 1, "r");
	if (f) {
		coh_numa_maps_parse(f, v, nv, node_of);
		fclose(f);
		for (size_t i = 0; i < nv; i++)
			FUZZ_ASSERT(node_of[i] >= -2);
	}
	free(s);
	return 0;
}
