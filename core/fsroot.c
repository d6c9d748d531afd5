/* SPDX-License-Identifier: MIT */
/*
 * Every /sys, /proc and /dev access of the library goes through here, relative
 * to the context's fsroot directory fd, so that recorded trees of real
 * machines can be replayed (COH_FSROOT).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* Opens path inside the fsroot.  Replays resolve symlinks and ".." inside the
 * root (openat2 RESOLVE_IN_ROOT), so a recorded tree never reads the live
 * machine; the live root "/" needs no such care. */
/* A replayed tree is only files: a FIFO (or socket) in it would block the
 * reader forever, so replays open without blocking and refuse those. */
static int replay_checked(int fd, int flags)
{
	struct stat st;
	if (fd < 0)
		return fd;
	if (fstat(fd, &st) == 0 && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
		close(fd);
		return -EINVAL;
	}
	if (!(flags & O_NONBLOCK))
		(void)fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	return fd;
}

int coh_fs_open(const coh_context *ctx, const char *path, int flags)
{
	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	if (ctx->replay) {
		/* O_PATH opens nothing to read (and openat2 refuses it with O_NONBLOCK) */
		int nb = flags & O_PATH ? 0 : O_NONBLOCK;
		struct open_how how = { .flags = (uint64_t)(flags | O_CLOEXEC | nb), .resolve = RESOLVE_IN_ROOT };
		long fd = syscall(SYS_openat2, ctx->rootfd, path, &how, sizeof(how));
		if (fd >= 0)
			return replay_checked((int)fd, flags);
		if (errno != ENOSYS)
			return -errno;
		fd = openat(ctx->rootfd, path, flags | O_CLOEXEC | nb);
		return replay_checked(fd < 0 ? -errno : (int)fd, flags);
	}
	int fd = openat(ctx->rootfd, path, flags | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

int coh_fs_read(const coh_context *ctx, const char *path, char *buf, size_t len)
{
	int fd = coh_fs_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return fd;
	if (len == 0) {
		close(fd);
		return -EINVAL;
	}
	size_t got = 0;
	while (got < len - 1) {
		ssize_t n = read(fd, buf + got, len - 1 - got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			int e = -errno;
			close(fd);
			return e;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	close(fd);
	buf[got] = '\0';
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		buf[--got] = '\0';
	return (int)got;
}

int coh_fs_readf(const coh_context *ctx, char *buf, size_t len, const char *fmt, ...)
{
	char path[512];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(path, sizeof(path), fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int)sizeof(path))
		return -ENAMETOOLONG;
	return coh_fs_read(ctx, path, buf, len);
}

int coh_fs_read_u64(const coh_context *ctx, const char *path, uint64_t *v)
{
	char buf[64], *end;
	int r = coh_fs_read(ctx, path, buf, sizeof(buf));
	if (r < 0)
		return r;
	errno = 0;
	unsigned long long x = strtoull(buf, &end, 0);
	if (errno || end == buf)
		return -EINVAL;
	*v = x;
	return 0;
}

int coh_fs_readlink(const coh_context *ctx, const char *path, char *buf, size_t len)
{
	while (*path == '/')
		path++;
	if (len == 0)
		return -EINVAL;
	ssize_t n = readlinkat(ctx->rootfd, path, buf, len - 1);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	return (int)n;
}

bool coh_fs_exists(const coh_context *ctx, const char *path)
{
	int fd = coh_fs_open(ctx, path, O_PATH);
	if (fd < 0)
		return false;
	close(fd);
	return true;
}

DIR *coh_fs_opendir(const coh_context *ctx, const char *path)
{
	int fd = coh_fs_open(ctx, path, O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	DIR *d = fdopendir(fd);
	if (!d)
		close(fd);
	return d;
}

int coh_parse_list(const char *s, uint8_t *bits, int max)
{
	int count = 0;
	memset(bits, 0, (size_t)(max + 7) / 8);
	while (*s) {
		char *end;
		while (*s == ',' || *s == ' ' || *s == '\n')
			s++;
		if (!*s)
			break;
		long a = strtol(s, &end, 10), b;
		if (end == s || a < 0)
			return -EINVAL;
		b = a;
		s = end;
		if (*s == '-') {
			s++;
			b = strtol(s, &end, 10);
			if (end == s || b < a)
				return -EINVAL;
			s = end;
		}
		if (b >= max)
			return -ERANGE;
		for (long i = a; i <= b; i++) {
			if (!(bits[i / 8] & (1u << (i % 8))))
				count++;
			bits[i / 8] |= (uint8_t)(1u << (i % 8));
		}
		if (*s && *s != ',' && *s != '\n' && *s != ' ')
			return -EINVAL;
	}
	return count;
}
