/* SPDX-License-Identifier: MIT */
/*
 * watch-target PAGES SECONDS: a process for `cohctl query --watch` to look
 * at.  Maps PAGES anonymous pages, writes to the first half of them, prints
 * "ADDRESS LENGTH" on one line, then lives SECONDS seconds and exits.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: watch-target PAGES SECONDS\n");
		return 2;
	}
	long pages = atol(argv[1]), seconds = atol(argv[2]), page = sysconf(_SC_PAGESIZE);
	if (pages < 1 || seconds < 0) {
		fprintf(stderr, "watch-target: bad arguments\n");
		return 2;
	}
	size_t len = (size_t)pages * (size_t)page;
	unsigned char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED) {
		perror("watch-target: mmap");
		return 1;
	}
	/* ordinary pages, so the halves stay what they are while cohctl looks */
	madvise(p, len, MADV_NOHUGEPAGE);
	for (long i = 0; i < pages / 2; i++)
		p[(size_t)i * (size_t)page] = 1;
	printf("%p %zu\n", (void *)p, len);
	fflush(stdout);
	sleep((unsigned)seconds);
	return 0;
}
