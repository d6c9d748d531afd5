/* SPDX-License-Identifier: MIT */
/*
 * The cxl backend's machine-wide chunk ownership map (backends/cxl/shmap.c),
 * on a regular file standing for a device-dax device and a temporary folder
 * standing for /dev/shm: two holders of one process take distinct chunks; an
 * unrelated process (this program run again through posix_spawn) takes
 * distinct chunks too and loses them once it is killed (reaped or a zombie);
 * a reused pid (another start time) loses them, a live one keeps them; a
 * foreign or damaged file is refused and left as it was; the cap on chunks
 * bounds the file; private maps make no file; and a replay makes no file.
 */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common.h"
#include "cxl.h"

extern char **environ;

#define NCH 64
#define CHUNK (2u << 20)

static char dir[64], dev[96];
static struct stat devst;
static coh_context *ctx;

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/coh-shmap-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(dir));
	snprintf(dev, sizeof(dev), "%s/dax9.9", dir);
	int fd = open(dev, O_RDWR | O_CREAT | O_EXCL, 0660);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(fstat(fd, &devst), 0);
	close(fd);
	ctx = t_ctx();
}

static void teardown(void)
{
	coh_context_unref(ctx);
	char cmd[128];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	ck_assert_int_eq(system(cmd), 0);
}

static void open_map(struct cxl_map *m, size_t nchunks)
{
	cxl_map_init(m);
	ck_assert_int_eq(cxl_map_open(ctx, m, dir, &devst, (uint64_t)nchunks * CHUNK, CHUNK, nchunks, true), 0);
}

/* Takes n chunks as cxl_alloc does (lock, find, reclaim when full, claim): the first, or -1. */
static long take(struct cxl_map *m, size_t n)
{
	ck_assert_int_eq(cxl_map_lock(m), 0);
	long c = cxl_map_find(m, n, 0);
	if (c < 0 && cxl_map_reclaim(ctx, m))
		c = cxl_map_find(m, n, 0);
	if (c >= 0)
		cxl_map_claim(m, (size_t)c, n);
	cxl_map_unlock(m);
	return c;
}

static size_t free_now(struct cxl_map *m)
{
	ck_assert_int_eq(cxl_map_lock(m), 0);
	size_t k = cxl_map_free_count(m);
	cxl_map_unlock(m);
	return k;
}

START_TEST(two_holders)
{
	struct cxl_map a, b;
	open_map(&a, NCH);
	open_map(&b, NCH);
	ck_assert_str_eq(a.path, b.path);
	ck_assert_uint_ne(a.me, b.me);   /* one process, two holders */
	ck_assert_int_eq((pid_t)(uint32_t)a.me, getpid());
	long ca = take(&a, 3), cb = take(&b, 5);
	ck_assert_int_eq(ca, 0);
	ck_assert_int_eq(cb, 3);
	ck_assert_uint_eq(free_now(&a), NCH - 8);
	/* a holder frees only its own chunks */
	ck_assert_int_eq(cxl_map_lock(&b), 0);
	ck_assert_uint_eq(cxl_map_release(&b, 0, 8), 3);
	cxl_map_unlock(&b);
	ck_assert_uint_eq(free_now(&a), NCH - 3);
	ck_assert_uint_eq(a.words[0], a.me);
	/* a live holder is never reclaimed */
	ck_assert_uint_eq(take(&b, NCH - 2), (size_t)-1);
	ck_assert_uint_eq(free_now(&a), NCH - 3);
	/* the whole map is visible to a third holder opened later, without creating */
	struct cxl_map c;
	cxl_map_init(&c);
	ck_assert_int_eq(cxl_map_open(ctx, &c, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, false), 0);
	ck_assert_uint_eq(free_now(&c), NCH - 3);
	cxl_map_close(&c);
	cxl_map_close(&b);
	cxl_map_close(&a);
}
END_TEST

/* The holder: this program run as "holder DIR DEV N": takes N chunks, says
 * the first on stdout, then waits to be killed. */
static int holder(char **argv)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .log_level = -1 };
	if (coh_context_create(&o, &ctx))
		return 1;
	snprintf(dir, sizeof(dir), "%s", argv[2]);
	if (stat(argv[3], &devst))
		return 2;
	struct cxl_map m;
	cxl_map_init(&m);
	if (cxl_map_open(ctx, &m, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true))
		return 3;
	size_t n = (size_t)atoi(argv[4]);
	if (cxl_map_lock(&m))
		return 4;
	long c = cxl_map_find(&m, n, 0);
	if (c >= 0)
		cxl_map_claim(&m, (size_t)c, n);
	cxl_map_unlock(&m);
	printf("%ld\n", c);
	fflush(stdout);
	for (;;)
		pause();
}

/* Starts a holder of n chunks; its pid, and its first chunk in *first. */
static pid_t spawn_holder(size_t n, long *first)
{
	int p[2];
	ck_assert_int_eq(pipe(p), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], 1);
	posix_spawn_file_actions_addclose(&fa, p[0]);
	char self[256], ns[16];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	ck_assert_int_gt(l, 0);
	self[l] = '\0';
	snprintf(ns, sizeof(ns), "%zu", n);
	char *argv[] = { self, "holder", dir, dev, ns, NULL };
	pid_t pid;
	ck_assert_int_eq(posix_spawn(&pid, self, &fa, NULL, argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	char buf[32] = "";
	ssize_t got = read(p[0], buf, sizeof(buf) - 1);
	close(p[0]);
	ck_assert_msg(got > 0, "the holder said nothing");
	*first = atol(buf);
	return pid;
}

START_TEST(unrelated_process)
{
	struct cxl_map m;
	open_map(&m, NCH);
	long mine = take(&m, 4), theirs;
	pid_t pid = spawn_holder(10, &theirs);
	ck_assert_int_eq(mine, 0);
	ck_assert_int_eq(theirs, 4);   /* not the chunks this process holds */
	ck_assert_int_eq((pid_t)(uint32_t)m.words[4], pid);
	ck_assert_int_eq(take(&m, 2), 14);
	ck_assert_uint_eq(free_now(&m), NCH - 16);
	/* alive: the device is full for a run that needs its chunks */
	ck_assert_int_eq(take(&m, NCH - 6), -1);
	/* killed and reaped: its chunks are reclaimed by the next allocation that finds no room */
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	ck_assert_uint_eq(free_now(&m), NCH - 16);   /* counted as held until reclaimed */
	ck_assert_int_eq(take(&m, NCH - 16), 16);   /* fits without reclaiming: nothing reclaimed yet */
	ck_assert_uint_eq(free_now(&m), 0);
	ck_assert_int_eq(take(&m, 10), 4);          /* the dead holder's run */
	ck_assert_uint_eq(free_now(&m), 0);
	cxl_map_close(&m);
}
END_TEST

START_TEST(zombie_holder)
{
	struct cxl_map m;
	open_map(&m, NCH);
	long theirs;
	pid_t pid = spawn_holder(NCH, &theirs);
	ck_assert_int_eq(theirs, 0);
	ck_assert_int_eq(take(&m, 1), -1);
	ck_assert_int_eq(kill(pid, SIGKILL), 0);
	/* not reaped: a zombie has no mappings left */
	siginfo_t si;
	ck_assert_int_eq(waitid(P_PID, (id_t)pid, &si, WEXITED | WNOWAIT), 0);
	ck_assert_int_eq(take(&m, NCH), 0);
	ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
	cxl_map_close(&m);
}
END_TEST

START_TEST(pid_reuse)
{
	struct cxl_map m;
	open_map(&m, NCH);
	uint32_t tag = (uint32_t)(m.me >> 32);
	ck_assert_msg(tag & 0x80000000u, "this process's start time is unknown");
	uint64_t pid = (uint32_t)getpid();
	ck_assert_int_eq(cxl_map_lock(&m), 0);
	m.words[0] = (uint64_t)(tag ^ 0x1u) << 32 | pid;            /* another context of this process: kept */
	m.words[1] = (uint64_t)(tag ^ 0x7fff00u) << 32 | pid;       /* this pid, another start: reused */
	m.words[2] = (uint64_t)(tag & 0xffu) << 32 | pid;           /* start unknown: kept while the pid lives */
	pid_t dead = fork();
	if (dead == 0)
		_exit(0);
	ck_assert_int_eq(waitpid(dead, NULL, 0), dead);
	m.words[3] = (uint64_t)tag << 32 | (uint32_t)dead;         /* gone */
	ck_assert_uint_eq(cxl_map_reclaim(ctx, &m), 2);
	ck_assert_uint_ne(m.words[0], 0);
	ck_assert_uint_eq(m.words[1], 0);
	ck_assert_uint_ne(m.words[2], 0);
	ck_assert_uint_eq(m.words[3], 0);
	cxl_map_unlock(&m);
	cxl_map_close(&m);
}
END_TEST

static void file_bytes(const char *path, char *buf, size_t len, ssize_t *got)
{
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	*got = read(fd, buf, len);
	close(fd);
}

/* The share table: an exported run stays allocated while an importer holds
 * it, through the exporter's free and its death; a wrong serial or run is
 * stale; the last holder's leave frees the chunks. */
START_TEST(shared_runs)
{
	struct cxl_map a, b;
	open_map(&a, NCH);
	open_map(&b, NCH);
	long c = take(&a, 4);
	ck_assert_int_ge(c, 0);
	uint64_t serial = 0, again = 0;
	ck_assert_int_eq(cxl_map_lock(&a), 0);
	ck_assert_int_eq(cxl_map_share(ctx, &a, (size_t)c, 4, &serial), 0);
	ck_assert_int_eq(cxl_map_share(ctx, &a, (size_t)c, 4, &again), 0);
	ck_assert(serial != 0 && again == serial);
	ck_assert_int_eq(cxl_map_share(ctx, &a, (size_t)c + 4, 1, &again), -EINVAL);   /* not a's */
	ck_assert(cxl_map_shared(&a, (size_t)c, 4));
	cxl_map_unlock(&a);
	ck_assert_int_eq(cxl_map_lock(&b), 0);
	ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)c, 4, serial + 1), -ESTALE);
	ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)c, 3, serial), -ESTALE);
	ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)c, 4, serial), 0);
	cxl_map_unlock(&b);
	/* the exporter frees: the run is b's now */
	ck_assert_int_eq(cxl_map_lock(&a), 0);
	ck_assert_int_eq(cxl_map_leave(ctx, &a, (size_t)c, 4), 1);
	ck_assert_int_eq(cxl_map_leave(ctx, &a, (size_t)c, 4), -ENOENT);
	ck_assert(a.words[c] == b.me && a.words[c + 3] == b.me);
	cxl_map_unlock(&a);
	ck_assert_uint_eq(free_now(&a), NCH - 4);
	ck_assert_int_lt(take(&a, NCH - 3), 0);   /* the reclaim leaves the shared run alone */
	/* the last holder leaves: freed, and the handle is stale */
	ck_assert_int_eq(cxl_map_lock(&b), 0);
	ck_assert_int_eq(cxl_map_leave(ctx, &b, (size_t)c, 4), 0);
	ck_assert_uint_eq(cxl_map_release(&b, (size_t)c, 4), 0);
	ck_assert(!cxl_map_shared(&b, (size_t)c, 4));
	ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)c, 4, serial), -ESTALE);
	cxl_map_unlock(&b);
	ck_assert_uint_eq(free_now(&a), NCH);

	/* an exporter that dies: its run stays with the importer; with no
	 * holder left it is stale and the reclaim frees it */
	for (int joined = 1; joined >= 0; joined--) {
		int pv[2], go[2];
		ck_assert_int_eq(pipe(pv), 0);
		ck_assert_int_eq(pipe(go), 0);
		pid_t pid = fork();
		if (pid == 0) {
			struct cxl_map d;
			cxl_map_init(&d);
			long dc = -1;
			uint64_t ds = 0;
			if (cxl_map_open(ctx, &d, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, false) == 0 &&
			    cxl_map_lock(&d) == 0) {
				dc = cxl_map_find(&d, 2, 0);
				if (dc >= 0) {
					cxl_map_claim(&d, (size_t)dc, 2);
					if (cxl_map_share(ctx, &d, (size_t)dc, 2, &ds))
						dc = -1;
				}
				cxl_map_unlock(&d);
			}
			uint64_t msg[2] = { (uint64_t)dc, ds };
			char x;
			_exit(write(pv[1], msg, sizeof(msg)) == sizeof(msg) && read(go[0], &x, 1) == 1 ? 0 : 1);
		}
		uint64_t msg[2];
		ck_assert_int_eq(read(pv[0], msg, sizeof(msg)), sizeof(msg));
		ck_assert((int64_t)msg[0] >= 0);
		if (joined) {
			ck_assert_int_eq(cxl_map_lock(&b), 0);
			ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)msg[0], 2, msg[1]), 0);
			cxl_map_unlock(&b);
		}
		ck_assert_int_eq(write(go[1], "x", 1), 1);
		ck_assert_int_eq(waitpid(pid, NULL, 0), pid);
		close(pv[0]);
		close(pv[1]);
		close(go[0]);
		close(go[1]);
		ck_assert_uint_eq(free_now(&b), NCH - 2);
		if (joined) {
			ck_assert_int_lt(take(&b, NCH - 1), 0);   /* the reclaim keeps the importer's run */
			ck_assert_uint_eq(b.words[msg[0]], b.me);
			ck_assert_int_eq(cxl_map_lock(&b), 0);
			ck_assert_int_eq(cxl_map_leave(ctx, &b, (size_t)msg[0], 2), 0);
			cxl_map_release(&b, (size_t)msg[0], 2);
			cxl_map_unlock(&b);
			ck_assert_uint_eq(free_now(&b), NCH);
		} else {
			ck_assert_int_eq(cxl_map_lock(&b), 0);
			ck_assert_int_eq(cxl_map_join(ctx, &b, (size_t)msg[0], 2, msg[1]), -ESTALE);
			cxl_map_unlock(&b);
			long all = take(&b, NCH);   /* the reclaim frees a dead share */
			ck_assert_int_eq(all, 0);
		}
	}
	ck_assert_int_eq(cxl_map_close(&a), 0);
	ck_assert_int_eq(cxl_map_close(&b), 0);
}
END_TEST

START_TEST(foreign_file)
{
	struct cxl_map m;
	open_map(&m, NCH);
	char path[sizeof(m.path)];
	snprintf(path, sizeof(path), "%s", m.path);
	cxl_map_close(&m);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, CXL_MAP_HDR + NCH * 8);
	ck_assert_int_eq(st.st_mode & 0777, devst.st_mode & 0666);   /* the device's bits */
	/* the same name with another layout (a damaged header): refused, unchanged */
	int fd = open(path, O_RDWR);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pwrite(fd, "X", 1, 20), 1);
	close(fd);
	char before[CXL_MAP_HDR], after[CXL_MAP_HDR];
	ssize_t n0, n1;
	file_bytes(path, before, sizeof(before), &n0);
	cxl_map_init(&m);
	ck_assert_int_eq(cxl_map_open(ctx, &m, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true), -EUCLEAN);
	ck_assert_int_eq(m.fd, -1);
	file_bytes(path, after, sizeof(after), &n1);
	ck_assert_int_eq(n0, n1);
	ck_assert(!memcmp(before, after, (size_t)n0));
	/* a device of another size is another file */
	open_map(&m, NCH / 2);
	ck_assert_str_ne(m.path, path);
	cxl_map_close(&m);
	/* a file whose maker died before its header: made again */
	ck_assert_int_eq(truncate(path, 100), 0);
	fd = open(path, O_RDWR);
	ck_assert_int_eq(pwrite(fd, "\0", 1, 20), 1);
	close(fd);
	ck_assert_int_eq(truncate(path, 0), 0);
	ck_assert_int_eq(truncate(path, 100), 0);
	open_map(&m, NCH);
	ck_assert_uint_eq(free_now(&m), NCH);
	cxl_map_close(&m);
	/* a symbolic link is not followed */
	ck_assert_int_eq(unlink(path), 0);
	ck_assert_int_eq(symlink(dev, path), 0);
	ck_assert_int_eq(cxl_map_open(ctx, &m, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true), -ELOOP);
}
END_TEST

START_TEST(absent_and_bounds)
{
	struct cxl_map m;
	cxl_map_init(&m);
	/* nothing made without create; nothing made for bad sizes */
	ck_assert_int_eq(cxl_map_open(ctx, &m, dir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, false), -ENOENT);
	ck_assert_int_eq(cxl_map_open(ctx, &m, dir, &devst, 0, CHUNK, 0, true), -EINVAL);
	ck_assert_int_eq(cxl_map_open(ctx, &m, dir, &devst, (uint64_t)(CXL_MAX_CHUNKS + 1) * CHUNK, CHUNK,
				      CXL_MAX_CHUNKS + 1, true), -EINVAL);
	char nodir[128];
	snprintf(nodir, sizeof(nodir), "%s/none", dir);
	ck_assert_int_eq(cxl_map_open(ctx, &m, nodir, &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true), -ENOENT);
	/* the largest map: 8 bytes per chunk after the header page */
	open_map(&m, CXL_MAX_CHUNKS);
	struct stat st;
	ck_assert_int_eq(stat(m.path, &st), 0);
	ck_assert_int_eq(st.st_size, CXL_MAP_HDR + (off_t)CXL_MAX_CHUNKS * 8);
	ck_assert_int_eq(take(&m, 1), 0);
	ck_assert_int_eq(cxl_map_lock(&m), 0);
	ck_assert_int_eq(cxl_map_find(&m, 1, CXL_MAX_CHUNKS - 1), CXL_MAX_CHUNKS - 1);
	cxl_map_unlock(&m);
	cxl_map_close(&m);
}
END_TEST

START_TEST(private_map)
{
	struct cxl_map a, b;
	cxl_map_init(&a);
	cxl_map_init(&b);
	ck_assert_int_eq(cxl_map_open(ctx, &a, "private", &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true), 0);
	ck_assert_int_eq(cxl_map_open(ctx, &b, "private", &devst, (uint64_t)NCH * CHUNK, CHUNK, NCH, true), 0);
	ck_assert_int_eq(take(&a, 2), 0);
	ck_assert_int_eq(take(&b, 2), 0);   /* what private means: each its own */
	cxl_map_close(&a);
	cxl_map_close(&b);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls '%s' | grep -v dax9.9)\"", dir);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

/* A replay with device-dax targets opens and makes nothing in the map folder. */
START_TEST(replay_makes_nothing)
{
	char root[512];
	snprintf(root, sizeof(root), "%s/cxl-expander-devdax", getenv("COH_TEST_DATA"));
	char tun[128];
	snprintf(tun, sizeof(tun), "cxl.mapdir=%s", dir);
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .fsroot = root, .log_level = -1,
					 .tunables = tun };
	coh_context *rc;
	ck_assert_int_eq(coh_context_create(&o, &rc), 0);
	int nt = 0;
	coh_target *t;
	coh_target_foreach(rc, t) {
		uint64_t total, nfree;
		void *p;
		ck_assert_int_eq(coh_target_capacity(t, &total, &nfree), 0);
		ck_assert_uint_eq(nfree, total);
		ck_assert_int_eq(coh_alloc(t, CHUNK, NULL, &p), -EROFS);
		nt++;
	}
	ck_assert_int_gt(nt, 0);
	coh_context_unref(rc);
	char cmd[700];
	snprintf(cmd, sizeof(cmd), "test -z \"$(ls '%s' | grep -v dax9.9)\"", dir);
	ck_assert_int_eq(system(cmd), 0);
	snprintf(cmd, sizeof(cmd), "test -z \"$(find '%s' -name 'libcoherent-cxl-*')\"", root);
	ck_assert_int_eq(system(cmd), 0);
}
END_TEST

int main(int argc, char **argv)
{
	if (argc == 5 && !strcmp(argv[1], "holder"))
		return holder(argv);
	Suite *s = suite_create("cxl_shmap");
	TCase *tc = tcase_create("map");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, two_holders);
	tcase_add_test(tc, unrelated_process);
	tcase_add_test(tc, zombie_holder);
	tcase_add_test(tc, pid_reuse);
	tcase_add_test(tc, shared_runs);
	tcase_add_test(tc, foreign_file);
	tcase_add_test(tc, absent_and_bounds);
	tcase_add_test(tc, private_map);
	tcase_add_test(tc, replay_makes_nothing);
	suite_add_tcase(s, tc);
	return t_run(s);
}
