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
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Opens path inside the fsroot.  Replays resolve symlinks and ".." inside the
 * root (openat2 RESOLVE_IN_ROOT), so a recorded tree never reads the live
 * machine; the live root "/" needs no such care. */
static int fs_open_raw(const coh_context *ctx, const char *path, int flags)
{
	while (*path == '/')
		path++;
	if (!*path)
		path = ".";
	return coh_sys_openat(ctx->rootfd, path, flags | O_CLOEXEC, ctx->replay);
}

/* Every open of a file goes through O_NONBLOCK and fstat: a FIFO (or socket)
 * placed in a tree must not block the caller.  Reads accept regular files only
 * (sysfs and procfs files are regular); read-write opens are device nodes and
 * get their blocking mode back. */
int coh_fs_open(const coh_context *ctx, const char *path, int flags)
{
	if (flags & (O_PATH | O_DIRECTORY))
		return fs_open_raw(ctx, path, flags);
	int fd = fs_open_raw(ctx, path, flags | O_NONBLOCK);
	if (fd < 0)
		return fd;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	bool rdonly = (flags & O_ACCMODE) == O_RDONLY;
	if (rdonly ? !S_ISREG(st.st_mode) : (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode))) {
		close(fd);
		coh_warn((coh_context *)ctx, "%s: not a %s, not read", path,
			 rdonly ? "regular file" : "device");
		return -EINVAL;
	}
	if (!(flags & O_NONBLOCK) && !rdonly && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		int e = -errno;
		close(fd);
		return e;
	}
	return fd;
}

/* Reads the file into buf.  whole: a file longer than buf is an error (-EFBIG,
 * logged), not a value cut short; otherwise the head of the file is enough. */
static int fs_read(const coh_context *ctx, const char *path, char *buf, size_t len, bool whole)
{
	if (len == 0)
		return -EINVAL;
	int fd = coh_fs_open(ctx, path, O_RDONLY);
	if (fd < 0)
		return fd;
	size_t got = 0;
	bool more = false;
	for (;;) {
		char extra;
		bool full = got == len - 1;
		if (full && !whole)
			break;
		ssize_t n = full ? coh_sys_read(fd, &extra, 1) : coh_sys_read(fd, buf + got, len - 1 - got);
		if (n < 0) {
			if (n == -EINTR)
				continue;
			close(fd);
			return (int)n;
		}
		if (n == 0)
			break;
		if (full) {
			more = true;
			break;
		}
		got += (size_t)n;
	}
	close(fd);
	if (more) {
		coh_warn((coh_context *)ctx, "%s: longer than %zu bytes, ignored", path, len - 1);
		buf[0] = '\0';
		return -EFBIG;
	}
	buf[got] = '\0';
	while (got > 0 && (buf[got - 1] == '\n' || buf[got - 1] == ' '))
		buf[--got] = '\0';
	return (int)got;
}

int coh_fs_read(const coh_context *ctx, const char *path, char *buf, size_t len)
{
	return fs_read(ctx, path, buf, len, true);
}

int coh_fs_read_head(const coh_context *ctx, const char *path, char *buf, size_t len)
{
	return fs_read(ctx, path, buf, len, false);
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

int coh_parse_u64(const char *s, int base, uint64_t *v)
{
	char *end;
	while (*s == ' ' || *s == '\t')
		s++;
	if (*s < '0' || *s > '9')   /* strtoull would take a sign and negate */
		return -EINVAL;
	errno = 0;
	unsigned long long x = strtoull(s, &end, base);
	if (errno)
		return -ERANGE;
	while (*end == ' ' || *end == '\t' || *end == '\n')
		end++;
	if (*end)
		return -EINVAL;
	*v = x;
	return 0;
}

int coh_fs_read_u64(const coh_context *ctx, const char *path, uint64_t *v)
{
	char buf[64];
	int r = coh_fs_read(ctx, path, buf, sizeof(buf));
	if (r < 0)
		return r;
	r = coh_parse_u64(buf, 0, v);
	if (r)
		coh_warn((coh_context *)ctx, "%s: '%.32s' is not a number in range, ignored", path, buf);
	return r;
}

int coh_fs_readlink(const coh_context *ctx, const char *path, char *buf, size_t len)
{
	while (*path == '/')
		path++;
	if (len == 0)
		return -EINVAL;
	ssize_t n = coh_sys_readlinkat(ctx->rootfd, path, buf, len - 1);
	if (n < 0)
		return (int)n;
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

FILE *coh_fs_fopen(const coh_context *ctx, const char *path)
{
	int fd = coh_fs_open(ctx, path, O_RDONLY);
	if (fd < 0) {
		errno = -fd;
		return NULL;
	}
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	return f;
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
