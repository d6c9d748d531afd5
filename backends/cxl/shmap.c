/* SPDX-License-Identifier: MIT */
/* cxl backend: the machine-wide chunk ownership map of a device-dax device
 * (the design: cxl.h, "Chunk ownership"). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "cxl.h"

#define MAP_MAGIC "COHCXLM"
/* 2: the share table in the header page (cxl.h, "Sharing") */
#define MAP_VERSION 2u

/* The file's first page; the owner words follow it. */
struct map_hdr {
	char magic[8];        /* MAP_MAGIC, written last at initialisation */
	uint32_t version;     /* MAP_VERSION */
	uint32_t words_at;    /* CXL_MAP_HDR: offset of the owner words */
	uint64_t dev_size;    /* the device's size in bytes */
	uint64_t align;       /* the chunk */
	uint64_t nchunks;
	uint64_t dev_id;      /* st_rdev of the device (st_ino for a regular file) */
};

/* The share table: in the header page past the header, a serial counter
 * and CXL_SHARES entries.  An entry names a run of chunks that more than one
 * context (of any process) maps: the exporter and every importer are its
 * holders; the run's owner words hold one live holder of it. */
#define SHARE_SERIAL_AT 248u
#define SHARE_AT 256u
struct share_entry {
	uint64_t first;       /* the run's first chunk */
	uint64_t n;           /* its chunks; 0: the entry is free */
	uint64_t serial;      /* from the counter, never 0 */
	uint64_t holders[CXL_SHARE_HOLDERS];   /* owner words, 0: empty */
};
_Static_assert(SHARE_AT + CXL_SHARES * sizeof(struct share_entry) <= CXL_MAP_HDR, "share table past the header page");
static struct share_entry *shares(const struct cxl_map *m);
static bool share_prune(coh_context *ctx, struct cxl_map *m, struct share_entry *s);

/* Owner words: the pid in the low 32 bits; above it a tag: bit 31 says the
 * process's start time is known, bits 8..30 hold its low 23 bits (clock
 * ticks since boot), bits 0..7 a serial of the context in its process. */
#define TAG_START_KNOWN 0x80000000u
#define TAG_START(tag) (((tag) >> 8) & 0x7fffffu)

static atomic_uint map_serial;

/* The directory the maps of every process live in: the tunable, else the
 * first of /dev/shm, /run/lock, /tmp that is a directory (every process of
 * the machine makes the same choice); "private" for none. */
const char *cxl_map_dir(coh_context *ctx)
{
	const char *d = coh_ctx_tunable(ctx, "cxl.mapdir");
	if (d && *d)
		return d;
	static const char *const dirs[] = { "/dev/shm", "/run/lock", "/tmp" };
	struct stat st;
	for (size_t i = 0; i < sizeof(dirs) / sizeof(dirs[0]); i++)
		if (stat(dirs[i], &st) == 0 && S_ISDIR(st.st_mode))
			return dirs[i];
	return "/tmp";
}

bool cxl_map_private(const char *dir)
{
	return !strcmp(dir, "private");
}

/* Start time of pid in clock ticks since boot (field 22 of /proc/PID/stat)
 * and whether it is a zombie: 0, or -errno when it cannot be read. */
static int proc_start(coh_context *ctx, pid_t pid, uint64_t *start, bool *zombie)
{
	char buf[512];
	int n = coh_fs_readf(ctx, buf, sizeof(buf), "/proc/%d/stat", (int)pid);
	if (n < 0)
		return n;
	char *p = strrchr(buf, ')');   /* the command may hold spaces and parentheses */
	if (!p || p[1] != ' ')
		return -EINVAL;
	*zombie = p[2] == 'Z' || p[2] == 'X';
	p += 2;
	for (int field = 3; field < 22; field++) {
		p = strchr(p, ' ');
		if (!p)
			return -EINVAL;
		p++;
	}
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	if (errno || end == p)
		return -EINVAL;
	*start = v;
	return 0;
}

/* The owner word of a new holder in this process. */
static uint64_t owner_word(coh_context *ctx)
{
	pid_t pid = getpid();
	uint32_t tag = (atomic_fetch_add(&map_serial, 1) + 1) & 0xffu;
	uint64_t start;
	bool zombie;
	if (proc_start(ctx, pid, &start, &zombie) == 0)
		tag |= TAG_START_KNOWN | (uint32_t)(start & 0x7fffff) << 8;
	return (uint64_t)tag << 32 | (uint32_t)pid;
}

/* Whether the holder of word w may still be alive: false when its pid is
 * gone, a zombie, or now a later process (another start time). */
static bool owner_alive(coh_context *ctx, uint64_t w)
{
	pid_t pid = (pid_t)(uint32_t)w;
	uint32_t tag = (uint32_t)(w >> 32);
	if (pid <= 0)
		return false;   /* no process writes that: a damaged word */
	if (kill(pid, 0) == -1 && errno == ESRCH)
		return false;
	uint64_t start;
	bool zombie;
	if (proc_start(ctx, pid, &start, &zombie))
		return true;   /* /proc unreadable: kept (EPERM and the like mean alive) */
	if (zombie)
		return false;  /* exited: its mappings are gone */
	return !(tag & TAG_START_KNOWN) || TAG_START(tag) == (uint32_t)(start & 0x7fffff);
}

void cxl_map_init(struct cxl_map *m)
{
	memset(m, 0, sizeof(*m));
	m->fd = -1;
}

static size_t file_len(size_t nchunks)
{
	return CXL_MAP_HDR + nchunks * sizeof(uint64_t);
}

/* The map's file name for a device: its identity and size, so a map never
 * matches another device. */
static int map_path(char *buf, size_t len, const char *dir, const struct stat *dev, uint64_t size)
{
	int n;
	if (S_ISCHR(dev->st_mode))
		n = snprintf(buf, len, "%s/libcoherent-cxl-%u.%u-%llu.map", dir, major(dev->st_rdev), minor(dev->st_rdev),
			     (unsigned long long)size);
	else   /* a regular file standing for a device (tests) */
		n = snprintf(buf, len, "%s/libcoherent-cxl-i%llu.%llu-%llu.map", dir, (unsigned long long)dev->st_dev,
			     (unsigned long long)dev->st_ino, (unsigned long long)size);
	return n < 0 || (size_t)n >= len ? -ENAMETOOLONG : 0;
}

/* Opens the map file: the existing one first (so a sticky directory's
 * protected_regular does not refuse a file another user made), created with
 * O_EXCL when there is none; create false answers -ENOENT then. */
static int open_file(const char *path, bool create, const struct stat *dev)
{
	for (int tries = 0; tries < 4; tries++) {
		int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
		if (fd >= 0 || errno != ENOENT || !create)
			return fd >= 0 ? fd : -errno;
		fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
		if (fd >= 0) {
			/* whoever may use the device may use its map: the device's
			 * permission bits and, where we may, its group */
			if (fchown(fd, (uid_t)-1, dev->st_gid)) {
				/* not in the device's group: the bits alone */
			}
			if (fchmod(fd, dev->st_mode & 0666)) {
				/* ours, 0600: only this user shares it */
			}
			return fd;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return -EAGAIN;
}

/* Under the file's lock: a new (empty, or never finished) file gets its
 * header; an existing one must describe the same device. */
static int check_file(int fd, const struct map_hdr *want)
{
	struct stat st;
	if (fstat(fd, &st))
		return -errno;
	if (!S_ISREG(st.st_mode))
		return -EINVAL;
	off_t len = (off_t)file_len(want->nchunks);
	struct map_hdr h;
	memset(&h, 0, sizeof(h));
	if (st.st_size > 0) {
		ssize_t got = pread(fd, &h, sizeof(h), 0);
		if (got < 0)
			return -errno;
		if (got != (ssize_t)sizeof(h))
			return -EUCLEAN;
	}
	static const struct map_hdr none;
	if (!memcmp(&h, &none, sizeof(h))) {
		/* new, or its maker died before the magic: zeroed owner words and a header */
		if (ftruncate(fd, 0) || ftruncate(fd, len))
			return -errno;
		struct map_hdr w = *want;
		memset(w.magic, 0, sizeof(w.magic));
		if (pwrite(fd, &w, sizeof(w), 0) != (ssize_t)sizeof(w) ||
		    pwrite(fd, want->magic, sizeof(want->magic), 0) != (ssize_t)sizeof(want->magic))
			return errno ? -errno : -EIO;
		return 0;
	}
	if (memcmp(&h, want, sizeof(h)) || st.st_size != len)
		return -EUCLEAN;   /* another layout, device or version: never guessed at */
	return 0;
}

static int flock_retry(int fd, int op)
{
	while (flock(fd, op))
		if (errno != EINTR)
			return -errno;
	return 0;
}

int cxl_map_open(coh_context *ctx, struct cxl_map *m, const char *dir, const struct stat *dev, uint64_t size,
		 uint64_t align, size_t nchunks, bool create)
{
	if (nchunks == 0 || nchunks > CXL_MAX_CHUNKS)
		return -EINVAL;
	if (cxl_map_private(dir)) {
		uint64_t *w = calloc(nchunks, sizeof(*w));
		if (!w)
			return -ENOMEM;
		m->words = w;
		m->nchunks = nchunks;
		m->fd = -1;
		m->pid = getpid();
		m->me = owner_word(ctx);
		snprintf(m->path, sizeof(m->path), "private");
		return 0;
	}
	char path[sizeof(m->path)];
	int e = map_path(path, sizeof(path), dir, dev, size);
	if (e)
		return e;
	struct map_hdr want;
	memset(&want, 0, sizeof(want));
	memcpy(want.magic, MAP_MAGIC, sizeof(want.magic));
	want.version = MAP_VERSION;
	want.words_at = CXL_MAP_HDR;
	want.dev_size = size;
	want.align = align;
	want.nchunks = nchunks;
	want.dev_id = S_ISCHR(dev->st_mode) ? (uint64_t)dev->st_rdev : (uint64_t)dev->st_ino;
	int fd = open_file(path, create, dev);
	if (fd < 0)
		return fd;
	e = flock_retry(fd, LOCK_EX);
	if (!e) {
		e = check_file(fd, &want);
		flock_retry(fd, LOCK_UN);
	}
	void *p = NULL;
	size_t len = file_len(nchunks);
	if (!e)
		e = coh_sys_mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0, &p);
	if (e) {
		/* a file made here stays: another process may have opened it since */
		close(fd);
		return e;
	}
	m->fd = fd;
	m->map = p;
	m->words = (uint64_t *)((uint8_t *)p + CXL_MAP_HDR);
	m->nchunks = nchunks;
	m->pid = getpid();
	m->me = owner_word(ctx);
	snprintf(m->path, sizeof(m->path), "%s", path);
	return 0;
}

/* 0, or munmap's error (the file's mapping is left in place then). */
int cxl_map_close(struct cxl_map *m)
{
	/* in a forked child these are its own copies (the mapping is not
	 * DONTFORK, the private words are heap), the parent's stay */
	int e = 0;
	if (m->map)
		e = coh_sys_munmap(m->map, file_len(m->nchunks));
	else
		free(m->words);
	if (m->fd >= 0)
		close(m->fd);
	cxl_map_init(m);
	return e;
}

int cxl_map_lock(struct cxl_map *m)
{
	return m->fd < 0 ? 0 : flock_retry(m->fd, LOCK_EX);
}

void cxl_map_unlock(struct cxl_map *m)
{
	if (m->fd >= 0)
		flock_retry(m->fd, LOCK_UN);
}

/* First fit of n free words from hint, wrapping once; -1 when none. */
long cxl_map_find(const struct cxl_map *m, size_t n, size_t hint)
{
	for (int pass = 0; pass < 2; pass++) {
		size_t from = pass ? 0 : hint, to = pass ? hint : m->nchunks;
		size_t run = 0;
		for (size_t i = from; i < to; i++) {
			run = m->words[i] == 0 ? run + 1 : 0;
			if (run == n)
				return (long)(i + 1 - n);
		}
	}
	return -1;
}

void cxl_map_claim(struct cxl_map *m, size_t c, size_t n)
{
	for (size_t i = c; i < c + n; i++)
		m->words[i] = m->me;
}

/* Clears the words of [c, c+n) this holder owns; how many were another's. */
size_t cxl_map_release(struct cxl_map *m, size_t c, size_t n)
{
	size_t foreign = 0;
	for (size_t i = c; i < c + n; i++) {
		if (m->words[i] == m->me)
			m->words[i] = 0;
		else
			foreign++;
	}
	return foreign;
}

/* Frees the chunks of holders that are gone (lock held); how many. */
size_t cxl_map_reclaim(coh_context *ctx, struct cxl_map *m)
{
	if (m->fd < 0)
		return 0;   /* private: every holder is this process */
	/* shared runs first: a dead holder only leaves the share, the run
	 * staying with the live ones (its words pointed at one of them) */
	for (size_t i = 0; i < CXL_SHARES; i++)
		if (shares(m)[i].n)
			share_prune(ctx, m, &shares(m)[i]);
	/* each holder checked once per call: runs make the same word repeat */
	enum { SEEN = 32 };
	uint64_t seen[SEEN];
	bool dead[SEEN];
	int nseen = 0, next = 0;
	size_t freed = 0;
	for (size_t i = 0; i < m->nchunks; i++) {
		uint64_t w = m->words[i];
		if (w == 0 || w == m->me)
			continue;
		int k = 0;
		while (k < nseen && seen[k] != w)
			k++;
		if (k == nseen) {
			k = nseen < SEEN ? nseen++ : next++ % SEEN;
			seen[k] = w;
			dead[k] = !owner_alive(ctx, w);
		}
		if (dead[k]) {
			m->words[i] = 0;
			freed++;
		}
	}
	return freed;
}

size_t cxl_map_free_count(const struct cxl_map *m)
{
	size_t k = 0;
	for (size_t i = 0; i < m->nchunks; i++)
		k += m->words[i] == 0;
	return k;
}

/* ---------------- sharing: the share table (lock held) ---------------- */

static struct share_entry *shares(const struct cxl_map *m)
{
	return (struct share_entry *)((uint8_t *)m->map + SHARE_AT);
}

/* The entry of run [c, c+n), or NULL. */
static struct share_entry *share_find(const struct cxl_map *m, size_t c, size_t n)
{
	struct share_entry *s = shares(m);
	for (size_t i = 0; i < CXL_SHARES; i++)
		if (s[i].n == n && s[i].first == c)
			return &s[i];
	return NULL;
}

/* Drops the holders of s that are gone; whether one is left.  The run's
 * words are pointed at a live holder when theirs is gone; with none left
 * the entry is freed (the words stay, for the reclaim to free if their
 * holder is gone). */
static bool share_prune(coh_context *ctx, struct cxl_map *m, struct share_entry *s)
{
	uint64_t live = 0;
	for (size_t k = 0; k < CXL_SHARE_HOLDERS; k++) {
		uint64_t w = s->holders[k];
		if (!w)
			continue;
		if (w != m->me && !owner_alive(ctx, w))
			s->holders[k] = 0;
		else if (!live)
			live = w;
	}
	if (!live) {
		memset(s, 0, sizeof(*s));
		return false;
	}
	uint64_t owner = m->words[s->first];
	if (owner != live && (owner == 0 || (owner != m->me && !owner_alive(ctx, owner))))
		for (size_t i = (size_t)s->first; i < (size_t)(s->first + s->n); i++)
			m->words[i] = live;
	return true;
}

static int share_add(struct share_entry *s, uint64_t me)
{
	for (size_t k = 0; k < CXL_SHARE_HOLDERS; k++)
		if (s->holders[k] == me)
			return 0;
	for (size_t k = 0; k < CXL_SHARE_HOLDERS; k++)
		if (!s->holders[k]) {
			s->holders[k] = me;
			return 0;
		}
	return -ENOSPC;
}

int cxl_map_share(coh_context *ctx, struct cxl_map *m, size_t c, size_t n, uint64_t *serial)
{
	if (!m->map)
		return -EOPNOTSUPP;   /* a private map: no other process knows these chunks */
	if (c + n > m->nchunks || !n)
		return -EINVAL;
	struct share_entry *s = share_find(m, c, n);
	if (s && share_prune(ctx, m, s)) {
		int e = share_add(s, m->me);
		if (!e)
			*serial = s->serial;
		return e;
	}
	for (size_t i = c; i < c + n; i++)
		if (m->words[i] != m->me)
			return -EINVAL;   /* not this holder's run */
	struct share_entry *t = shares(m);
	for (size_t i = 0; i < CXL_SHARES; i++)
		if (!t[i].n || !share_prune(ctx, m, &t[i])) {
			uint64_t *next = (uint64_t *)((uint8_t *)m->map + SHARE_SERIAL_AT);
			*next += 1;
			memset(&t[i], 0, sizeof(t[i]));
			t[i].first = c;
			t[i].n = n;
			t[i].serial = *next;
			t[i].holders[0] = m->me;
			*serial = t[i].serial;
			return 0;
		}
	return -ENOSPC;
}

int cxl_map_join(coh_context *ctx, struct cxl_map *m, size_t c, size_t n, uint64_t serial)
{
	if (!m->map)
		return -ESTALE;
	struct share_entry *s = c + n <= m->nchunks ? share_find(m, c, n) : NULL;
	if (!s || s->serial != serial || !share_prune(ctx, m, s))
		return -ESTALE;   /* every holder freed it or is gone: the chunks may be another's */
	return share_add(s, m->me);
}

int cxl_map_leave(coh_context *ctx, struct cxl_map *m, size_t c, size_t n)
{
	if (!m->map)
		return -ENOENT;
	struct share_entry *s = share_find(m, c, n);
	size_t k = 0;
	while (s && k < CXL_SHARE_HOLDERS && s->holders[k] != m->me)
		k++;
	if (!s || k == CXL_SHARE_HOLDERS)
		return -ENOENT;   /* not shared by this holder: an ordinary release */
	s->holders[k] = 0;
	if (share_prune(ctx, m, s)) {
		/* others map the run: it stays theirs */
		if (m->words[c] == m->me) {
			for (size_t i = 0; i < CXL_SHARE_HOLDERS; i++)
				if (s->holders[i]) {
					for (size_t j = c; j < c + n; j++)
						m->words[j] = s->holders[i];
					break;
				}
		}
		return 1;
	}
	return 0;   /* the last holder: the caller releases the words */
}

bool cxl_map_shared(const struct cxl_map *m, size_t c, size_t n)
{
	return m->map && share_find(m, c, n) != NULL;
}
