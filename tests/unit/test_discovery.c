/* SPDX-License-Identifier: MIT */
/*
 * Discovery through the fsroot reader: FIFOs in a tree, roots that are not
 * a recorded machine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"

#define GIB (1024ull * 1024 * 1024)

static const char *data_dir(void)
{
	const char *env = getenv("COH_TEST_DATA");
	return env && *env ? env : "../tests/data";
}

/* Every message the library logs, one per line. */
static char logbuf[16384];

static void log_collect(void *data, int level, const char *msg)
{
	(void)data;
	(void)level;
	size_t used = strlen(logbuf);
	snprintf(logbuf + used, sizeof(logbuf) - used, "%s\n", msg);
}

static int open_root(const char *root, coh_context **ctx)
{
	logbuf[0] = '\0';
	struct coh_context_options o = { .size = sizeof(o), .fsroot = root, .backends = "host",
					 .log_level = COH_LOG_WARN, .log_fn = log_collect };
	*ctx = NULL;
	return coh_context_create(&o, ctx);
}

static coh_target *node_t(coh_context *ctx, int node)
{
	coh_target *t = coh_target_by_node(ctx, node);
	ck_assert_msg(t != NULL, "no target for node %d", node);
	return t;
}

static void check_kind(coh_context *ctx, int node, int kind)
{
	int k = coh_target_kind(node_t(ctx, node));
	ck_assert_msg(k == kind, "node%d: %s, expected %s", node, coh_target_kind_name(k), coh_target_kind_name(kind));
}

static void check_logged(const char *what)
{
	ck_assert_msg(strstr(logbuf, what) != NULL, "no warning with '%s' in:\n%s", what, logbuf);
}

/* ---- the fsroot reader ---- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	(void)sb;
	(void)type;
	(void)ftw;
	return remove(path);
}

static void write_file(const char *dir, const char *rel, const char *text)
{
	char path[PATH_MAX], cmd[PATH_MAX + 32];
	snprintf(path, sizeof(path), "%s/%s", dir, rel);
	snprintf(cmd, sizeof(cmd), "mkdir -p \"$(dirname '%s')\"", path);
	ck_assert_int_eq(system(cmd), 0);
	FILE *f = fopen(path, "w");
	ck_assert_ptr_nonnull(f);
	fputs(text, f);
	fclose(f);
}

START_TEST(fifo_does_not_hang)
{
	/* FIFOs where node1's meminfo and distance and has_cpu would be: opening one
	 * without O_NONBLOCK blocks until a writer comes, which never happens. */
	char dir[] = "/tmp/coh-disc-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	write_file(dir, "sys/devices/system/node/online", "0-1\n");
	write_file(dir, "sys/devices/system/node/has_memory", "0-1\n");
	write_file(dir, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal: 1048576 kB\n");
	write_file(dir, "sys/devices/system/node/node0/cpulist", "0-1\n");
	write_file(dir, "sys/devices/system/node/node0/distance", "10 20\n");
	write_file(dir, "sys/devices/system/node/node1/cpulist", "\n");
	char path[PATH_MAX];
	static const char *const fifos[] = { "node1/meminfo", "node1/distance", "has_cpu" };
	for (size_t i = 0; i < sizeof(fifos) / sizeof(fifos[0]); i++) {
		snprintf(path, sizeof(path), "%s/sys/devices/system/node/%s", dir, fifos[i]);
		ck_assert_int_eq(mkfifo(path, 0600), 0);
	}
	alarm(20);   /* a hang fails the test rather than the whole run */
	coh_context *ctx;
	ck_assert_int_eq(open_root(dir, &ctx), 0);
	ck_assert_int_eq(coh_target_count(ctx), 2);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 1), node_t(ctx, 0)), -ENOENT);
	ck_assert_int_eq(coh_target_distance(node_t(ctx, 0), node_t(ctx, 1)), 20);
	check_kind(ctx, 0, COH_KIND_HOST_NODE);
	check_logged("node1/meminfo: not a regular file");
	coh_context_unref(ctx);
	alarm(0);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
END_TEST

static void check_refused(const char *root, int err)
{
	coh_context *ctx = (coh_context *)&logbuf;
	int e = open_root(root, &ctx);
	ck_assert_msg(e == err, "fsroot %s: %d (%s), expected %d", root, e, coh_strerror(e), err);
	ck_assert_ptr_null(ctx);
	check_logged(root);
	check_logged("/sys/devices/system/node");
}

START_TEST(wrong_fsroot)
{
	/* an empty folder */
	char dir[] = "/tmp/coh-disc-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	check_refused(dir, -ENOENT);
	check_logged(strerror(ENOENT));
	/* the folder above the recorded trees */
	check_refused(data_dir(), -ENOENT);
	/* sys/devices/system/node is a file */
	write_file(dir, "sys/devices/system/node", "");
	check_refused(dir, -ENOTDIR);
	nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
	/* a missing root names itself */
	coh_context *ctx;
	ck_assert_int_eq(open_root("/nonexistent/coh-disc-root", &ctx), -ENOENT);
	check_logged("/nonexistent/coh-disc-root");
}
END_TEST

static Suite *disc_suite(void)
{
	Suite *s = suite_create("discovery");
	TCase *tc = tcase_create("fsroot");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, fifo_does_not_hang);
	tcase_add_test(tc, wrong_fsroot);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return t_run(disc_suite());
}
