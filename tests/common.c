/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>

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
	ck_assert_msg(t != NULL, "no host:node0 target");
	return t;
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
