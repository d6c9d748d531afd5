/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

coh_context *t_ctx(void)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .fsroot = "/",
					 .log_level = -1 };
	coh_context *ctx = NULL;
	int e = coh_context_create(&o, &ctx);
	ck_assert_msg(e == 0, "coh_context_create: %s", coh_strerror(e));
	return ctx;
}

coh_target *t_node0(coh_context *ctx)
{
	coh_target *t = coh_target_find(ctx, "host:node0");
	for (coh_target *i = NULL; !t && (i = coh_target_next(ctx, i));)
		if (coh_target_kind(i) == COH_KIND_HOST_NODE && (coh_target_caps(i) & COH_CAP_ALLOC))
			t = i;
	ck_assert_msg(t != NULL, "no host node target with memory");
	return t;
}

int t_node0_id(coh_context *ctx)
{
	int n = coh_target_numa_node(t_node0(ctx));
	return n < 0 ? 0 : n;
}

enum t_read_fault t_read_fault_behaviour(void)
{
	static enum t_read_fault cached = T_READ_FAULT_UNKNOWN - 1;
	if (cached != T_READ_FAULT_UNKNOWN - 1)
		return cached;
	enum t_read_fault b = T_READ_FAULT_UNKNOWN;
	long ps = sysconf(_SC_PAGESIZE);
	volatile unsigned char *p = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (p != MAP_FAILED && fd >= 0) {
		(void)p[0];
		uint64_t e = 0;
		if (pread(fd, &e, sizeof(e), (off_t)((uintptr_t)p / (uintptr_t)ps * 8)) == sizeof(e) &&
		    (e >> 63) & 1)
			b = (e >> 56) & 1 ? T_READ_FAULT_POPULATES : T_READ_FAULT_NOTHING;
	}
	if (fd >= 0)
		close(fd);
	if (p != MAP_FAILED)
		munmap((void *)p, (size_t)ps);
	cached = b;
	return b;
}

const char *t_read_fault_name(enum t_read_fault b)
{
	switch (b) {
	case T_READ_FAULT_NOTHING: return "maps the shared zero page";
	case T_READ_FAULT_POPULATES: return "maps a fresh exclusive page";
	default: return "unknown (pagemap unreadable)";
	}
}

int t_run(Suite *s)
{
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

char *t_untar(const char *tarball)
{
	char tmpl[] = "/tmp/coh-replay-XXXXXX";
	char *dir = mkdtemp(tmpl);
	if (!dir)
		return NULL;
	char cmd[1024];
	snprintf(cmd, sizeof(cmd), "tar -C '%s' -xf '%s'", dir, tarball);
	if (system(cmd) != 0)
		return NULL;
	DIR *d = opendir(dir);
	if (!d)
		return NULL;
	struct dirent *de;
	char *out = NULL;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		size_t l = strlen(dir) + strlen(de->d_name) + 2;
		out = malloc(l);
		if (out)
			snprintf(out, l, "%s/%s", dir, de->d_name);
		break;
	}
	closedir(d);
	return out;
}

void t_put_file(const char *root, const char *rel, const char *text)
{
	char path[4096];
	int n = snprintf(path, sizeof(path), "%s/%s", root, rel);
	ck_assert(n > 0 && (size_t)n < sizeof(path));
	for (char *q = strchr(path + strlen(root) + 1, '/'); q; q = strchr(q + 1, '/')) {
		*q = '\0';
		mkdir(path, 0755);
		*q = '/';
	}
	FILE *f = fopen(path, "w");
	ck_assert_msg(f != NULL, "cannot write %s", path);
	fputs(text, f);
	fclose(f);
}

int t_thread_count(void)
{
	DIR *d = opendir("/proc/self/task");
	int n = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		n += e->d_name[0] != '.';
	if (d)
		closedir(d);
	return n;
}
