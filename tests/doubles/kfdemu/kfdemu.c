/* SPDX-License-Identifier: MIT */
/*
 * kfdemu: a /dev/kfd emulator loaded with LD_PRELOAD, in the spirit of Mesa's
 * drm-shim.  With KFDEMU_ROOT naming a KFD topology tree (tests/data/kfd-*),
 * a process on a machine without an AMD GPU sees:
 *
 *   - the tree's /sys/class/kfd, /sys/devices/virtual/kfd and the tree's
 *     /sys/bus/pci/devices/<bdf> in place of the live ones;
 *   - /dev/kfd and /dev/dri/renderD<minor>, backed by memfds;
 *   - the KFD ioctls a user-space SVM runtime needs (GET_VERSION, ACQUIRE_VM,
 *     SET_XNACK_MODE, AVAILABLE_MEMORY, SVM) with the 6.1 (KFD 1.11) argument
 *     structures of <linux/kfd_ioctl.h>;
 *   - "VRAM" placement of the application's own anonymous memory: a page
 *     migrated to a GPU with device-private VRAM is copied to a shadow store
 *     and dropped from the page tables; a userfaultfd brings it back on the
 *     next CPU access (user or kernel mode), as the kernel's
 *     svm_migrate_to_ram would, and /proc/self/pagemap read through pread
 *     shows such pages as the kernel shows device-private entries.
 *
 * Everything the emulator does for itself goes through raw system calls or
 * its own mmap-backed allocator, never through the functions it intercepts
 * and never through malloc while its lock is held (an application thread
 * that faults on an emulated VRAM page inside malloc would otherwise wait on
 * the fault handler, which would wait on malloc).
 *
 * See README.md for what is modelled and where it departs from the kernel.
 */
#undef _FORTIFY_SOURCE
#undef _FILE_OFFSET_BITS
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#include <linux/io_uring.h>
#include <linux/kfd_ioctl.h>
#include <linux/userfaultfd.h>

#define EXPORT __attribute__((visibility("default")))

/* ---------- exported interface (no header: tests reach it with dlsym) ---------- */

EXPORT int kfdemu_active(void);
EXPORT int kfdemu_placement_supported(void);
EXPORT int kfdemu_page_location(const void *addr);
EXPORT long kfdemu_faultbacks(void);
EXPORT void kfdemu_fail(unsigned nr, int nth, int err);
EXPORT long kfdemu_calls(unsigned nr);
EXPORT int kfdemu_last_svm_nattr(void);

/* libc's generic system call entry: libcoherent asks move_pages through it. */
EXPORT long syscall(long nr, ...);

/* glibc's fortified entry points (declared by <bits/fcntl2.h> only under
 * _FORTIFY_SOURCE, which this file turns off). */
EXPORT int __open_2(const char *path, int flags);
EXPORT int __open64_2(const char *path, int flags);
EXPORT int __openat_2(int dirfd, const char *path, int flags);
EXPORT int __openat64_2(int dirfd, const char *path, int flags);

/* glibc's pre-2.33 stat entry points, still exported and still what some
 * sanitizer runtimes call from their own stat interceptors. */
EXPORT int __xstat(int ver, const char *path, struct stat *st);
EXPORT int __xstat64(int ver, const char *path, struct stat64 *st);
EXPORT int __lxstat(int ver, const char *path, struct stat *st);
EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st);
EXPORT int __fxstat(int ver, int fd, struct stat *st);
EXPORT int __fxstat64(int ver, int fd, struct stat64 *st);
EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags);
EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags);

/* ---------- constants ---------- */

#define PG 4096UL
#define MAXGPU 16
#define MAXNODE 64
#define FDMAX 65536
#define NR_END AMDKFD_COMMAND_END

#define KIND_KFD 1
#define KIND_RENDER 2
#define KIND_PAGEMAP 3

#define LOC_UNDEF KFD_IOCTL_SVM_LOCATION_UNDEFINED
#define CAP_SVM 0x08000000u          /* HSA_CAP_SVMAPI_SUPPORTED */
#define IOLINK_XGMI 11               /* HSA_IOLINK_TYPE_XGMI */
#define KFD_CHR_MAJOR 236            /* the kernel's is dynamic; any value will do */
#define DRM_CHR_MAJOR 226

#define ACC_NONE 0
#define ACC_ACCESS 1
#define ACC_INPLACE 2

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)
#define PM_EXCLUSIVE (1ULL << 56)
/* SWP_DEVICE_WRITE = MAX_SWAPFILES + SWP_HWPOISON_NUM + SWP_MIGRATION_NUM:
 * 23 + 1 + 3 on a 6.1 x86-64 kernel with DEVICE_PRIVATE, MEMORY_FAILURE,
 * MIGRATION and PTE_MARKER */
#define SWP_DEVICE_WRITE_61 27

#define PAGEMAP_SCAN_TYPE 'f'
#define PAGEMAP_SCAN_NR 16

#ifndef MADV_DONTNEED_LOCKED
#define MADV_DONTNEED_LOCKED 24
#endif
#ifndef MREMAP_DONTUNMAP
#define MREMAP_DONTUNMAP 4
#endif

static const char TAG_MAGIC[8] = { 'K', 'F', 'D', 'E', 'M', 'U', '0', '1' };

/* ---------- real functions ---------- */

static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_openat64)(int, const char *, int, ...);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_faccessat)(int, const char *, int, int);
static int (*real_access)(const char *, int);
static int (*real_fstatat)(int, const char *, struct stat *, int);
static int (*real_fstatat64)(int, const char *, struct stat64 *, int);
static int (*real_stat)(const char *, struct stat *);
static int (*real_stat64)(const char *, struct stat64 *);
static int (*real_lstat)(const char *, struct stat *);
static int (*real_lstat64)(const char *, struct stat64 *);
static int (*real_fstat)(int, struct stat *);
static int (*real_fstat64)(int, struct stat64 *);
static int (*real_statx)(int, const char *, int, unsigned int, struct statx *);
static int (*real___xstat)(int, const char *, struct stat *);
static int (*real___xstat64)(int, const char *, struct stat64 *);
static int (*real___lxstat)(int, const char *, struct stat *);
static int (*real___lxstat64)(int, const char *, struct stat64 *);
static int (*real___fxstat)(int, int, struct stat *);
static int (*real___fxstat64)(int, int, struct stat64 *);
static int (*real___fxstatat)(int, int, const char *, struct stat *, int);
static int (*real___fxstatat64)(int, int, const char *, struct stat64 *, int);
static ssize_t (*real_readlinkat)(int, const char *, char *, size_t);
static ssize_t (*real_readlink)(const char *, char *, size_t);
static DIR *(*real_opendir)(const char *);
static ssize_t (*real_getxattr)(const char *, const char *, void *, size_t);
static ssize_t (*real_lgetxattr)(const char *, const char *, void *, size_t);
static ssize_t (*real_listxattr)(const char *, char *, size_t);
static ssize_t (*real_llistxattr)(const char *, char *, size_t);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_close)(int);
static ssize_t (*real_pread)(int, void *, size_t, off_t);
static ssize_t (*real_pread64)(int, void *, size_t, off64_t);
static int (*real_munmap)(void *, size_t);
static int (*real_madvise)(void *, size_t, int);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);

#define RESOLVE(name) real_##name = dlsym(RTLD_NEXT, #name)

/* ---------- raw system calls (never intercepted) ----------
 *
 * The library exports syscall() itself (for move_pages, below), so its own
 * raw calls go to the next definition, libc's, through this pointer. */

static long (*_Atomic real_syscall)(long, ...);

static long (*get_syscall(void))(long, ...)
{
	long (*f)(long, ...) = atomic_load_explicit(&real_syscall, memory_order_relaxed);
	if (!f) {
		f = (long (*)(long, ...))dlsym(RTLD_NEXT, "syscall");
		atomic_store_explicit(&real_syscall, f, memory_order_relaxed);
	}
	return f;
}

#define rsys(...) (get_syscall()(__VA_ARGS__))

static int r_openat(int dfd, const char *path, int flags, int mode)
{
	return (int)rsys(SYS_openat, dfd, path, flags, mode);
}

static void r_close(int fd)
{
	int e = errno;
	rsys(SYS_close, fd);
	errno = e;
}

static ssize_t r_read(int fd, void *buf, size_t n)
{
	return rsys(SYS_read, fd, buf, n);
}

static ssize_t r_pread(int fd, void *buf, size_t n, uint64_t off)
{
	return rsys(SYS_pread64, fd, buf, n, (off_t)off);
}

static ssize_t r_pwrite(int fd, const void *buf, size_t n, uint64_t off)
{
	return rsys(SYS_pwrite64, fd, buf, n, (off_t)off);
}

static int r_fstatat(int dfd, const char *path, struct stat *st, int flags)
{
	return (int)rsys(SYS_newfstatat, dfd, path, st, flags);
}

static int r_fstat(int fd, struct stat *st)
{
	return r_fstatat(fd, "", st, AT_EMPTY_PATH);
}

static int r_ioctl(int fd, unsigned long req, void *arg)
{
	return (int)rsys(SYS_ioctl, fd, req, arg);
}

static int r_madvise(uint64_t a, uint64_t len, int advice)
{
	return (int)rsys(SYS_madvise, a, len, advice);
}

static void *r_mmap(size_t n)
{
	long r = rsys(SYS_mmap, 0, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return (r == -1) ? NULL : (void *)r;
}

static void r_munmap(void *p, size_t n)
{
	rsys(SYS_munmap, p, n);
}

static int seterr(int e)
{
	errno = e;
	return -1;
}

/* ---------- the emulator's own allocator (never malloc) ----------
 *
 * Memory comes from one large PROT_NONE reservation made on first use, so
 * that the emulator's own pages never land in a hole of the application's
 * address space (where an SVM call expects EFAULT) nor where an application
 * mapping just was.  Called with mu held (or by the handler while the
 * forking thread holds it).  Freed spans are zapped and reused; if the
 * reservation cannot be made or runs out, plain mmap is used. */

#define ARENA_TRY_GIB 256
#define ARENA_SPANS 4096

static char *arena;
static size_t arena_size, arena_top;
static struct {
	size_t off, len;
} arena_free[ARENA_SPANS];
static int arena_nfree;

static void arena_reserve(void)
{
	for (size_t gib = ARENA_TRY_GIB; gib >= 1 && !arena; gib /= 4) {
		long r = rsys(SYS_mmap, 0, gib << 30, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (r != -1) {
			arena = (char *)r;
			arena_size = gib << 30;
		}
	}
	if (!arena)
		arena_size = 1;   /* do not try again */
}

static char *arena_get(size_t total)
{
	if (!arena && !arena_size)
		arena_reserve();
	if (!arena)
		return NULL;
	char *p = NULL;
	for (int i = 0; i < arena_nfree && !p; i++)
		if (arena_free[i].len >= total) {
			p = arena + arena_free[i].off;
			arena_free[i].off += total;
			arena_free[i].len -= total;
			if (!arena_free[i].len)
				arena_free[i] = arena_free[--arena_nfree];
		}
	if (!p) {
		if (arena_size - arena_top < total)
			return NULL;
		p = arena + arena_top;
		arena_top += total;
	}
	if (rsys(SYS_mprotect, p, total, PROT_READ | PROT_WRITE)) {
		return NULL;   /* the span is lost; plain mmap takes over */
	}
	return p;
}

static bool arena_put(char *p, size_t total)
{
	if (!arena || p < arena || p >= arena + arena_size)
		return false;
	/* zero the pages for the next user and make them inaccessible */
	rsys(SYS_madvise, p, total, MADV_DONTNEED);
	rsys(SYS_mprotect, p, total, PROT_NONE);
	size_t off = (size_t)(p - arena);
	for (int i = 0; i < arena_nfree; i++) {
		if (arena_free[i].off + arena_free[i].len == off) {
			arena_free[i].len += total;
			return true;
		}
		if (off + total == arena_free[i].off) {
			arena_free[i].off = off;
			arena_free[i].len += total;
			return true;
		}
	}
	if (arena_nfree < ARENA_SPANS) {
		arena_free[arena_nfree].off = off;
		arena_free[arena_nfree].len = total;
		arena_nfree++;
	}
	return true;   /* a span the table cannot hold stays unused */
}

static void *ialloc(size_t n)
{
	size_t total = (n + 16 + PG - 1) & ~(PG - 1);
	char *p = arena_get(total);
	if (!p)
		p = r_mmap(total);
	if (!p)
		return NULL;
	memcpy(p, &total, sizeof(total));
	return p + 16;
}

static void ifree(void *q)
{
	if (!q)
		return;
	char *p = (char *)q - 16;
	size_t total;
	memcpy(&total, p, sizeof(total));
	if (!arena_put(p, total))
		r_munmap(p, total);
}

/* ---------- debug log ---------- */

static int dbg;

__attribute__((format(printf, 1, 2))) static void logf_(const char *fmt, ...)
{
	if (!dbg)
		return;
	char b[512];
	int n = snprintf(b, sizeof(b), "kfdemu[%d]: ", (int)getpid());
	va_list ap;
	va_start(ap, fmt);
	int m = vsnprintf(b + n, sizeof(b) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (m < 0)
		return;
	size_t len = strlen(b);
	b[len++] = '\n';
	int e = errno;
	rsys(SYS_write, 2, b, len);
	errno = e;
}

/* ---------- topology ---------- */

struct gpu {
	uint32_t gpu_id, node, minor, gfx, hive;
	uint64_t cap, vram, used;   /* bytes */
	bool svm, coherent;
};

static struct {
	int active;
	char root[PATH_MAX];
	size_t rootlen;
	int no_svm, noretry, no_uffd;
	uint64_t rootdev, rootino;
	struct gpu gpu[MAXGPU];
	int ngpu;
	int minors[MAXGPU * 2];
	int nminors;
	char bdf[MAXGPU * 2][32];
	int nbdf;
} E;

#define TOPO "/sys/devices/virtual/kfd/kfd/topology"

static ssize_t slurp(const char *path, char *buf, size_t n)
{
	int fd = r_openat(AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	size_t got = 0;
	while (got + 1 < n) {
		ssize_t k = r_read(fd, buf + got, n - 1 - got);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		got += (size_t)k;
	}
	r_close(fd);
	buf[got] = '\0';
	return (ssize_t)got;
}

struct kdirent {
	uint64_t d_ino;
	int64_t d_off;
	unsigned short d_reclen;
	unsigned char d_type;
	char d_name[];
};

/* Calls cb for every entry of dir but "." and "..". */
static int list_dir(const char *dir, void (*cb)(const char *name, void *ctx), void *ctx)
{
	int fd = r_openat(AT_FDCWD, dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	_Alignas(8) char buf[4096];
	for (;;) {
		long n = rsys(SYS_getdents64, fd, buf, sizeof(buf));
		if (n <= 0)
			break;
		for (long off = 0; off < n;) {
			struct kdirent *d = (struct kdirent *)(buf + off);
			if (strcmp(d->d_name, ".") && strcmp(d->d_name, ".."))
				cb(d->d_name, ctx);
			off += d->d_reclen;
		}
	}
	r_close(fd);
	return 0;
}

static bool prop_get(const char *text, const char *key, uint64_t *v)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l;) {
		if (!strncmp(l, key, kl) && l[kl] == ' ') {
			*v = strtoull(l + kl + 1, NULL, 0);
			return true;
		}
		l = strchr(l, '\n');
		if (l)
			l++;
	}
	return false;
}

static bool all_digits(const char *s)
{
	if (!*s)
		return false;
	for (; *s; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

struct numlist {
	int v[MAXNODE];
	int n;
};

static void collect_num(const char *name, void *ctx)
{
	struct numlist *l = ctx;
	if (all_digits(name) && l->n < MAXNODE)
		l->v[l->n++] = atoi(name);
}

static int cmp_int(const void *a, const void *b)
{
	int x = *(const int *)a, y = *(const int *)b;
	return (x > y) - (x < y);
}

static void collect_minor(const char *name, void *ctx)
{
	(void)ctx;
	if (!strncmp(name, "renderD", 7) && all_digits(name + 7) &&
	    E.nminors < (int)(sizeof(E.minors) / sizeof(E.minors[0])))
		E.minors[E.nminors++] = atoi(name + 7);
}

static void collect_bdf(const char *name, void *ctx)
{
	(void)ctx;
	if (strlen(name) < sizeof(E.bdf[0]) && E.nbdf < (int)(sizeof(E.bdf) / sizeof(E.bdf[0])))
		strcpy(E.bdf[E.nbdf++], name);
}

struct nodeinfo {
	int id;
	uint64_t simd;
	int nlinks;
	int ltype[16], lto[16];
};

static int load_topology(void)
{
	char path[PATH_MAX + 128], buf[8192];
	struct numlist nodes = { .n = 0 };
	snprintf(path, sizeof(path), "%s" TOPO "/nodes", E.root);
	if (list_dir(path, collect_num, &nodes) < 0 || nodes.n == 0)
		return -1;
	qsort(nodes.v, (size_t)nodes.n, sizeof(int), cmp_int);
	static struct nodeinfo ni[MAXNODE];
	int gpunode[MAXGPU];
	for (int i = 0; i < nodes.n; i++) {
		int n = nodes.v[i];
		uint64_t v = 0;
		ni[i].id = n;
		ni[i].nlinks = 0;
		snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/properties", E.root, n);
		if (slurp(path, buf, sizeof(buf)) < 0)
			return -1;
		ni[i].simd = prop_get(buf, "simd_count", &v) ? v : 0;
		char props[8192];
		memcpy(props, buf, sizeof(props));
		snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/gpu_id", E.root, n);
		uint64_t gpu_id = 0;
		if (slurp(path, buf, sizeof(buf)) > 0)
			gpu_id = strtoull(buf, NULL, 0);
		/* io links */
		struct numlist links = { .n = 0 };
		snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/io_links", E.root, n);
		list_dir(path, collect_num, &links);
		for (int l = 0; l < links.n && ni[i].nlinks < 16; l++) {
			snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/io_links/%d/properties", E.root, n, links.v[l]);
			if (slurp(path, buf, sizeof(buf)) < 0)
				continue;
			uint64_t t = 0, to = 0;
			prop_get(buf, "type", &t);
			prop_get(buf, "node_to", &to);
			ni[i].ltype[ni[i].nlinks] = (int)t;
			ni[i].lto[ni[i].nlinks] = (int)to;
			ni[i].nlinks++;
		}
		if (!gpu_id || E.ngpu == MAXGPU)
			continue;
		struct gpu *g = &E.gpu[E.ngpu];
		memset(g, 0, sizeof(*g));
		g->gpu_id = (uint32_t)gpu_id;
		g->node = (uint32_t)n;
		if (prop_get(props, "drm_render_minor", &v))
			g->minor = (uint32_t)v;
		if (prop_get(props, "gfx_target_version", &v))
			g->gfx = (uint32_t)v;
		if (prop_get(props, "hive_id", &v))
			g->hive = (uint32_t)v;
		if (prop_get(props, "capability", &v))
			g->cap = v;
		g->svm = (g->cap & CAP_SVM) != 0;
		/* VRAM: the FB_PUBLIC/FB_PRIVATE banks */
		struct numlist banks = { .n = 0 };
		snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/mem_banks", E.root, n);
		list_dir(path, collect_num, &banks);
		for (int b = 0; b < banks.n; b++) {
			snprintf(path, sizeof(path), "%s" TOPO "/nodes/%d/mem_banks/%d/properties", E.root, n, banks.v[b]);
			if (slurp(path, buf, sizeof(buf)) < 0)
				continue;
			uint64_t ht = 0, sz = 0;
			prop_get(buf, "heap_type", &ht);
			prop_get(buf, "size_in_bytes", &sz);
			if (ht == 1 || ht == 2)
				g->vram += sz;
		}
		gpunode[E.ngpu] = i;
		E.ngpu++;
	}
	/* "connected to the CPU": an xGMI link to a node without SIMDs */
	for (int gi = 0; gi < E.ngpu; gi++) {
		struct nodeinfo *me = &ni[gpunode[gi]];
		for (int l = 0; l < me->nlinks; l++) {
			if (me->ltype[l] != IOLINK_XGMI)
				continue;
			for (int j = 0; j < nodes.n; j++)
				if (ni[j].id == me->lto[l] && ni[j].simd == 0)
					E.gpu[gi].coherent = true;
		}
	}
	snprintf(path, sizeof(path), "%s/dev/dri", E.root);
	list_dir(path, collect_minor, NULL);
	snprintf(path, sizeof(path), "%s/sys/bus/pci/devices", E.root);
	list_dir(path, collect_bdf, NULL);
	return 0;
}

static int gpu_index(uint32_t gpu_id)
{
	for (int i = 0; i < E.ngpu; i++)
		if (E.gpu[i].gpu_id == gpu_id)
			return i;
	return -1;
}

static int gpu_of_minor(int minor)
{
	for (int i = 0; i < E.ngpu; i++)
		if ((int)E.gpu[i].minor == minor)
			return i;
	return -1;
}

static bool env_on(const char *name)
{
	const char *v = getenv(name);
	return v && *v && strcmp(v, "0");
}

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static atomic_int active_flag;   /* E.active, readable before and during init */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
/* Taken for writing (before mu) by an SVM SET, which reads /proc/self/maps
 * and then registers and zaps what it saw; for reading by the munmap,
 * mremap and madvise interceptors around the real call.  So no intercepted
 * unmap lands between the two, and the emulator's own new memory can never
 * sit where a range it is about to register used to be. */
static pthread_rwlock_t mm_lock = PTHREAD_RWLOCK_INITIALIZER;

static void init(void)
{
	RESOLVE(open);
	RESOLVE(open64);
	RESOLVE(openat);
	RESOLVE(openat64);
	RESOLVE(fopen);
	RESOLVE(fopen64);
	RESOLVE(faccessat);
	RESOLVE(access);
	RESOLVE(fstatat);
	RESOLVE(fstatat64);
	RESOLVE(stat);
	RESOLVE(stat64);
	RESOLVE(lstat);
	RESOLVE(lstat64);
	RESOLVE(fstat);
	RESOLVE(fstat64);
	RESOLVE(statx);
	RESOLVE(__xstat);
	RESOLVE(__xstat64);
	RESOLVE(__lxstat);
	RESOLVE(__lxstat64);
	RESOLVE(__fxstat);
	RESOLVE(__fxstat64);
	RESOLVE(__fxstatat);
	RESOLVE(__fxstatat64);
	RESOLVE(readlinkat);
	RESOLVE(readlink);
	RESOLVE(opendir);
	RESOLVE(getxattr);
	RESOLVE(lgetxattr);
	RESOLVE(listxattr);
	RESOLVE(llistxattr);
	RESOLVE(ioctl);
	RESOLVE(close);
	RESOLVE(pread);
	RESOLVE(pread64);
	RESOLVE(munmap);
	RESOLVE(madvise);
	RESOLVE(mremap);

	dbg = env_on("KFDEMU_DEBUG");
	const char *root = getenv("KFDEMU_ROOT");
	if (!root || !*root)
		return;
	if (root[0] != '/') {
		char cwd[PATH_MAX];
		long n = rsys(SYS_getcwd, cwd, sizeof(cwd));
		if (n <= 0 || snprintf(E.root, sizeof(E.root), "%s/%s", cwd, root) >= (int)sizeof(E.root))
			return;
	} else if (snprintf(E.root, sizeof(E.root), "%s", root) >= (int)sizeof(E.root)) {
		return;
	}
	E.rootlen = strlen(E.root);
	while (E.rootlen > 1 && E.root[E.rootlen - 1] == '/')
		E.root[--E.rootlen] = '\0';
	if (sysconf(_SC_PAGESIZE) != (long)PG || load_topology() < 0) {
		static const char msg[] = "kfdemu: KFDEMU_ROOT is not a KFD topology tree (or pages are not 4 KiB); emulation off\n";
		rsys(SYS_write, 2, msg, sizeof(msg) - 1);
		return;
	}
	struct stat st;
	if (r_fstatat(AT_FDCWD, "/", &st, 0) == 0) {
		E.rootdev = st.st_dev;
		E.rootino = st.st_ino;
	}
	E.no_svm = env_on("KFDEMU_NO_SVM");
	E.noretry = env_on("KFDEMU_NORETRY");
	E.no_uffd = env_on("KFDEMU_NO_UFFD");
	E.active = 1;
	atomic_store(&active_flag, 1);
	logf_("active: root %s, %d GPU(s)", E.root, E.ngpu);
}

static void ensure_init(void)
{
	pthread_once(&init_once, init);
}

/* ---------- per-fd bookkeeping ---------- */

static _Atomic unsigned char fdkind[FDMAX];

static void fd_mark(int fd, int kind)
{
	if (fd >= 0 && fd < FDMAX)
		atomic_store_explicit(&fdkind[fd], (unsigned char)kind, memory_order_relaxed);
}

static int fd_kind(int fd)
{
	if (fd < 0 || fd >= FDMAX)
		return 0;
	return atomic_load_explicit(&fdkind[fd], memory_order_relaxed);
}

/* Files the emulator created (kfd and render memfds), named by a tag in the
 * memfd's first 16 bytes, so that dup()ed fds and fd reuse are handled. */
struct frec {
	uint64_t id;
	int kind;
	int pid;        /* the opener (kfd) */
	int gpu;        /* render: the GPU index */
	int bound_pid;  /* render: the KFD process that ACQUIRE_VM'd it */
};

static struct frec *files;
static size_t nfiles, capfiles;
static uint64_t file_seq;

/* Application pagemap fds. */
struct pmrec {
	int fd, pid;
	uint64_t dev, ino;
};

static struct pmrec *pms;
static size_t npms, cappms;

static bool grow(void **v, size_t *cap, size_t need, size_t elem)
{
	if (need <= *cap)
		return true;
	size_t nc = *cap ? *cap * 2 : 16;
	while (nc < need)
		nc *= 2;
	void *n = ialloc(nc * elem);
	if (!n)
		return false;
	if (*v) {
		memcpy(n, *v, *cap * elem);
		ifree(*v);
	}
	*v = n;
	*cap = nc;
	return true;
}

static struct frec *frec_find(uint64_t id)
{
	for (size_t i = 0; i < nfiles; i++)
		if (files[i].id == id)
			return &files[i];
	return NULL;
}

/* ---------- the KFD process ---------- */

struct attrs {
	uint32_t pref, pfetch, flags, gran;
	uint8_t acc[MAXGPU];
};

struct rng {
	uint64_t s, e;      /* bytes, [s, e) */
	struct attrs a;
	int upd, tgt;       /* scratch for SET */
};

static struct {
	int pid;            /* 0: no KFD process in this process */
	int xnack;
	uint64_t acquired[MAXGPU];   /* render file id bound by ACQUIRE_VM */
} P;

static struct rng *rv;
static size_t rn, rcap;

static long calls[NR_END];
static int fail_n[NR_END], fail_err[NR_END];
static atomic_int last_nattr = -1;
static atomic_long faultbacks;
static atomic_int have_state;   /* any SVM range or VRAM page: the mm hooks have work */
static atomic_int registered;   /* some range was registered with the userfaultfd */

static bool xnack_default(void)
{
	for (int i = 0; i < E.ngpu; i++)
		if (E.gpu[i].gfx >= 100000)
			return false;
	return !E.noretry;
}

static bool xnack_can_enable(void)
{
	for (int i = 0; i < E.ngpu; i++) {
		uint32_t gfx = E.gpu[i].gfx;
		if (gfx >= 100000)
			return false;   /* GFX10+ never retries faults */
		bool per_process = gfx == 90010 || (gfx >= 90400 && gfx < 100000);  /* GC 9.4.2+ */
		if (E.noretry && !per_process)
			return false;
	}
	return true;
}

static void proc_create_locked(int pid)
{
	memset(&P, 0, sizeof(P));
	P.pid = pid;
	P.xnack = xnack_default();
	rn = 0;
	logf_("KFD process created, xnack %d", P.xnack);
}

/* ---------- VRAM pages: hash of page number -> location and shadow ---------- */

struct vpage {
	uint64_t pfn;
	void *shadow;       /* device-private: the page's data, NULL = zeroes */
	uint32_t gpu;       /* GPU index + 1; 0 = empty slot */
	uint32_t pad;
};

static struct vpage *ht;
static size_t ht_cap, ht_n;

static size_t ht_slot(uint64_t pfn)
{
	return (size_t)((pfn * 0x9E3779B97F4A7C15ULL) >> 20) & (ht_cap - 1);
}

static struct vpage *ht_get(uint64_t pfn)
{
	if (!ht_n)
		return NULL;
	for (size_t i = ht_slot(pfn);; i = (i + 1) & (ht_cap - 1)) {
		if (!ht[i].gpu)
			return NULL;
		if (ht[i].pfn == pfn)
			return &ht[i];
	}
}

static bool ht_put(uint64_t pfn, uint32_t gpu, void *shadow)
{
	if ((ht_n + 1) * 2 > ht_cap) {
		size_t nc = ht_cap ? ht_cap * 2 : 1024;
		struct vpage *n = ialloc(nc * sizeof(*n));
		if (!n)
			return false;
		struct vpage *old = ht;
		size_t oc = ht_cap;
		ht = n;
		ht_cap = nc;
		ht_n = 0;
		for (size_t i = 0; i < oc; i++)
			if (old[i].gpu) {
				size_t j = ht_slot(old[i].pfn);
				while (ht[j].gpu)
					j = (j + 1) & (ht_cap - 1);
				ht[j] = old[i];
				ht_n++;
			}
		ifree(old);
	}
	size_t i = ht_slot(pfn);
	while (ht[i].gpu && ht[i].pfn != pfn)
		i = (i + 1) & (ht_cap - 1);
	if (!ht[i].gpu)
		ht_n++;
	ht[i].pfn = pfn;
	ht[i].gpu = gpu;
	ht[i].shadow = shadow;
	return true;
}

static void ht_del(struct vpage *e)
{
	size_t i = (size_t)(e - ht);
	ht[i].gpu = 0;
	ht_n--;
	/* backward-shift deletion keeps linear probing exact */
	for (size_t j = (i + 1) & (ht_cap - 1); ht[j].gpu; j = (j + 1) & (ht_cap - 1)) {
		size_t h = ht_slot(ht[j].pfn);
		bool move = (i <= j) ? (h <= i || h > j) : (h <= i && h > j);
		if (move) {
			ht[i] = ht[j];
			ht[j].gpu = 0;
			i = j;
		}
	}
}

/* Page numbers of the VRAM pages in [p0, p1) (an ialloc'd array, or NULL when none). */
static uint64_t *ht_collect(uint64_t p0, uint64_t p1, size_t *n)
{
	*n = 0;
	if (!ht_n || p1 <= p0)
		return NULL;
	size_t max = ht_n;
	uint64_t *out = ialloc(max * sizeof(uint64_t));
	if (!out)
		return NULL;
	if (p1 - p0 <= ht_cap) {
		for (uint64_t p = p0; p < p1 && *n < max; p++)
			if (ht_get(p))
				out[(*n)++] = p;
	} else {
		for (size_t i = 0; i < ht_cap && *n < max; i++)
			if (ht[i].gpu && ht[i].pfn >= p0 && ht[i].pfn < p1)
				out[(*n)++] = ht[i].pfn;
	}
	return out;
}

static uint64_t ht_count(uint64_t p0, uint64_t p1, uint32_t gpu)
{
	uint64_t c = 0;
	if (!ht_n || p1 <= p0)
		return 0;
	if (p1 - p0 <= ht_cap) {
		for (uint64_t p = p0; p < p1; p++) {
			struct vpage *e = ht_get(p);
			if (e && e->gpu == gpu)
				c++;
		}
	} else {
		for (size_t i = 0; i < ht_cap; i++)
			if (ht[i].gpu == gpu && ht[i].pfn >= p0 && ht[i].pfn < p1)
				c++;
	}
	return c;
}

/* Shadow pages: a free list over 2 MiB chunks. */
struct chunk {
	size_t hdr[2];   /* ialloc's header */
	struct chunk *next;
};
static struct chunk *chunks;
static void *shadow_free_list;
#define CHUNK_BYTES (2UL << 20)

static void *shadow_alloc(void)
{
	if (!shadow_free_list) {
		char *c = ialloc(CHUNK_BYTES - 16);   /* a whole, page-aligned 2 MiB span */
		if (!c)
			return NULL;
		c -= 16;
		/* page 0 of a chunk links the chunks (for the fork child's cleanup) */
		((struct chunk *)c)->next = chunks;
		chunks = (struct chunk *)c;
		for (size_t off = PG; off < CHUNK_BYTES; off += PG) {
			*(void **)(c + off) = shadow_free_list;
			shadow_free_list = c + off;
		}
	}
	void *p = shadow_free_list;
	shadow_free_list = *(void **)p;
	return p;
}

static void shadow_free(void *p)
{
	if (!p)
		return;
	*(void **)p = shadow_free_list;
	shadow_free_list = p;
}

static void vram_forget(struct vpage *e)
{
	E.gpu[e->gpu - 1].used -= PG;
	shadow_free(e->shadow);
	ht_del(e);
}

static void update_have_state(void)
{
	atomic_store(&have_state, (rn || ht_n) ? 1 : 0);
}

/* ---------- userfaultfd ---------- */

static int uffd = -1;
static int uffd_state;      /* 0 unknown, 1 usable, -1 not */
static bool uffd_thread;
static int memfd_self = -1, memfd_pid;        /* /proc/self/mem */
static int pmfd_self = -1, pmfd_pid;          /* /proc/self/pagemap */

static int open_uffd(void)
{
	int fd = (int)rsys(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
#ifdef USERFAULTFD_IOC_NEW
	if (fd < 0) {
		int dev = r_openat(AT_FDCWD, "/dev/userfaultfd", O_RDWR | O_CLOEXEC, 0);
		if (dev >= 0) {
			fd = r_ioctl(dev, USERFAULTFD_IOC_NEW, (void *)(uintptr_t)(O_CLOEXEC | O_NONBLOCK));
			r_close(dev);
		}
	}
#endif
	return fd;
}

static bool start_handler_locked(void);

static bool ensure_uffd_locked(void)
{
	if (uffd_state)
		return uffd_state > 0;
	uffd_state = -1;
	if (E.no_uffd)
		return false;
	int e = errno;
	int fd = open_uffd();
	if (fd < 0) {
		logf_("userfaultfd unavailable (%s): no placement", strerror(errno));
		errno = e;
		return false;
	}
	struct uffdio_api api = { .api = UFFD_API, .features = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMAP };
	if (r_ioctl(fd, UFFDIO_API, &api)) {
		r_close(fd);
		fd = open_uffd();
		memset(&api, 0, sizeof(api));
		api.api = UFFD_API;
		if (fd < 0 || r_ioctl(fd, UFFDIO_API, &api)) {
			if (fd >= 0)
				r_close(fd);
			errno = e;
			return false;
		}
	}
	errno = e;
	if (!(api.ioctls & (1ULL << _UFFDIO_REGISTER))) {
		r_close(fd);
		return false;
	}
	uffd = fd;
	uffd_state = 1;
	logf_("userfaultfd %d, features 0x%llx", fd, (unsigned long long)api.features);
	/* the handler (and its stack) exists before any range is registered */
	if (!start_handler_locked()) {
		r_close(fd);
		uffd = -1;
		uffd_state = -1;
		return false;
	}
	return true;
}

static int self_fd(int *fd, int *pid, const char *path, int flags)
{
	int me = getpid();
	if (*fd >= 0 && *pid == me)
		return *fd;
	if (*fd >= 0)
		r_close(*fd);
	*fd = r_openat(AT_FDCWD, path, flags | O_CLOEXEC, 0);
	*pid = me;
	return *fd;
}

/* Reads a page of the application through /proc/self/mem (works on
 * PROT_NONE and read-only pages, and reports EIO instead of faulting). */
static bool mem_read(void *dst, uint64_t addr)
{
	int fd = self_fd(&memfd_self, &memfd_pid, "/proc/self/mem", O_RDWR);
	if (fd < 0) {
		memcpy(dst, (const void *)(uintptr_t)addr, PG);
		return true;
	}
	return r_pread(fd, dst, PG, addr) == (ssize_t)PG;
}

static bool mem_write(uint64_t addr, const void *src)
{
	static const char zero[PG];
	int fd = self_fd(&memfd_self, &memfd_pid, "/proc/self/mem", O_RDWR);
	if (fd < 0)
		return false;
	return r_pwrite(fd, src ? src : zero, PG, addr) == (ssize_t)PG;
}

static void uffd_wake(uint64_t addr)
{
	struct uffdio_range r = { .start = addr & ~(PG - 1), .len = PG };
	r_ioctl(uffd, UFFDIO_WAKE, &r);
}

static void uffd_drain_locked(void);

/* Moves one emulated VRAM page back to system memory.  drain: on EAGAIN
 * (a pending mm event) read the events and retry; else return -EAGAIN. */
static int page_to_sys(uint64_t pfn, bool drain)
{
	for (int tries = 0;; tries++) {
		struct vpage *e = ht_get(pfn);
		if (!e)
			return 0;
		if (E.gpu[e->gpu - 1].coherent) {
			vram_forget(e);
			return 0;
		}
		uint64_t addr = pfn * PG;
		int r;
		if (e->shadow) {
			struct uffdio_copy c = { .dst = addr, .src = (uintptr_t)e->shadow, .len = PG, .mode = 0 };
			r = r_ioctl(uffd, UFFDIO_COPY, &c);
		} else {
			struct uffdio_zeropage z = { .range = { .start = addr, .len = PG }, .mode = 0 };
			r = r_ioctl(uffd, UFFDIO_ZEROPAGE, &z);
		}
		if (r == 0) {
			vram_forget(e);
			return 0;
		}
		int err = errno;
		if (err == EAGAIN) {
			if (!drain)
				return -EAGAIN;
			uffd_drain_locked();
			if (tries > 100)
				sched_yield();
			continue;
		}
		/* Present already (EEXIST: the registered page was populated
		 * behind our back): write the data over it.  No registered VMA
		 * there any more (ENOENT): the memory is gone, so is the page. */
		if (err == EEXIST)
			mem_write(addr, e->shadow);
		e = ht_get(pfn);
		if (e)
			vram_forget(e);
		if (err == EEXIST)
			uffd_wake(addr);
		return 0;
	}
}

static struct rng *range_find(uint64_t a)
{
	size_t lo = 0, hi = rn;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (rv[mid].e <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return (lo < rn && rv[lo].s <= a) ? &rv[lo] : NULL;
}

/* CPU fault on a registered page: a VRAM page comes back with its
 * granularity block (as svm_migrate_to_ram splits by granularity), any
 * other missing page gets the zero page. */
static int serve_fault(uint64_t addr)
{
	uint64_t pfn = addr / PG;
	struct vpage *e = ht_get(pfn);
	if (e && !E.gpu[e->gpu - 1].coherent) {
		uint64_t bs = pfn, be = pfn + 1;
		struct rng *r = range_find(addr);
		if (r) {
			uint64_t gran = r->a.gran > 62 ? 62 : r->a.gran;
			uint64_t npg = 1ULL << gran;
			bs = pfn & ~(npg - 1);
			be = bs + npg;
			if (be < bs)
				be = UINT64_MAX;
			if (bs < r->s / PG)
				bs = r->s / PG;
			if (be > r->e / PG)
				be = r->e / PG;
		}
		/* the rest of the block first: copying the faulting page wakes the thread */
		size_t n;
		uint64_t *list = ht_collect(bs, be, &n);
		for (size_t i = 0; i < n; i++) {
			e = ht_get(list[i]);
			if (list[i] == pfn || !e || E.gpu[e->gpu - 1].coherent)
				continue;
			if (page_to_sys(list[i], false))
				break;   /* the rest comes back on its own fault */
			atomic_fetch_add(&faultbacks, 1);
		}
		ifree(list);
		atomic_fetch_add(&faultbacks, 1);
		int rc = page_to_sys(pfn, false);
		if (rc) {
			atomic_fetch_sub(&faultbacks, 1);
			return rc;
		}
		logf_("CPU fault at %#llx: block [%#llx, %#llx) back", (unsigned long long)addr,
		      (unsigned long long)(bs * PG), (unsigned long long)(be * PG));
		return 0;
	}
	struct uffdio_zeropage z = { .range = { .start = addr & ~(PG - 1), .len = PG }, .mode = 0 };
	if (r_ioctl(uffd, UFFDIO_ZEROPAGE, &z) == 0)
		return 0;
	if (errno == EAGAIN)
		return -EAGAIN;
	uffd_wake(addr);
	return 0;
}

static void drop_state_locked(uint64_t a, uint64_t b, bool ranges);
static void remap_state_locked(uint64_t from, uint64_t to, uint64_t len);

/* Events the interceptors already accounted for.  munmap/mremap return only
 * once their userfaultfd event has been read, but it may be handled later,
 * after another thread mapped the same addresses again and set SVM state
 * there: such a late event must not drop the new state.  An interceptor
 * announces the events its call may raise and withdraws the announcement
 * after the call; the handler skips an event that matches one. */
#define EXPECT_MAX 64
static struct expect {
	uint64_t id;        /* 0: free slot */
	uint64_t a, b;      /* UNMAP: [a, b); REMAP: from = a */
	int event;
} expects[EXPECT_MAX];
static uint64_t expect_seq;

static uint64_t expect_add_locked(uint64_t id, int event, uint64_t a, uint64_t b)
{
	if (!id)
		id = ++expect_seq;
	for (int i = 0; i < EXPECT_MAX; i++)
		if (!expects[i].id) {
			expects[i] = (struct expect){ .id = id, .a = a, .b = b, .event = event };
			break;
		}
	return id;
}

static void expect_drop_locked(uint64_t id)
{
	for (int i = 0; i < EXPECT_MAX; i++)
		if (expects[i].id == id)
			expects[i].id = 0;
}

static bool expected_locked(int event, uint64_t a, uint64_t b)
{
	for (int i = 0; i < EXPECT_MAX; i++)
		if (expects[i].id && expects[i].event == event && expects[i].a == a &&
		    (event == UFFD_EVENT_REMAP || expects[i].b == b)) {
			expects[i].id = 0;
			return true;
		}
	return false;
}

/* Reads and handles every queued userfaultfd message.  Called with mu held:
 * the handler thread, and any thread whose UFFDIO_COPY met a pending event. */
static void uffd_drain_locked(void)
{
	struct uffd_msg msgs[32];
	uint64_t pend[64];
	int np = 0, spins = 0;
	if (uffd < 0)
		return;
	for (;;) {
		ssize_t n = r_read(uffd, msgs, sizeof(msgs));
		if (n > 0) {
			for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
				struct uffd_msg *m = &msgs[i];
				switch (m->event) {
				case UFFD_EVENT_PAGEFAULT: {
					uint64_t a = m->arg.pagefault.address;
					if (serve_fault(a) == -EAGAIN) {
						if (np < 64)
							pend[np++] = a;
						else
							uffd_wake(a);   /* the thread faults again */
					}
					break;
				}
				case UFFD_EVENT_UNMAP:
					if (expected_locked(UFFD_EVENT_UNMAP, m->arg.remove.start, m->arg.remove.end))
						break;
					logf_("unmap event [%#llx, %#llx)", (unsigned long long)m->arg.remove.start,
					      (unsigned long long)m->arg.remove.end);
					drop_state_locked(m->arg.remove.start, m->arg.remove.end, true);
					break;
				case UFFD_EVENT_REMAP:
					if (expected_locked(UFFD_EVENT_REMAP, m->arg.remap.from, 0))
						break;
					logf_("remap event %#llx -> %#llx (+%#llx)", (unsigned long long)m->arg.remap.from,
					      (unsigned long long)m->arg.remap.to, (unsigned long long)m->arg.remap.len);
					remap_state_locked(m->arg.remap.from, m->arg.remap.to, m->arg.remap.len);
					break;
				default:
					break;
				}
			}
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (np == 0)
			break;
		int k = 0;
		for (int i = 0; i < np; i++)
			if (serve_fault(pend[i]) == -EAGAIN)
				pend[k++] = pend[i];
		np = k;
		if (np && ++spins > 2000) {
			for (int i = 0; i < np; i++)
				uffd_wake(pend[i]);
			break;
		}
		if (np)
			sched_yield();
	}
	update_have_state();
}

/* While a thread forks, it holds mu from our prepare handler to our parent
 * handler, and glibc's own fork code in between may touch an emulated VRAM
 * page (a malloc arena or a FILE in memory the application gave to SVM):
 * the fault handler must not wait for mu then.  The forking thread changes
 * no state and every other thread is kept out by mu, so the handler works
 * without it; the parent handler waits for it to finish before letting the
 * others in.  (The child may thus copy state the handler is changing; the
 * handler copies a page in before forgetting it, so no data is lost.) */
static atomic_int forking, handler_unlocked;

static bool handler_enter(void)
{
	for (;;) {
		if (pthread_mutex_trylock(&mu) == 0)
			return true;
		atomic_store(&handler_unlocked, 1);
		if (atomic_load(&forking))
			return false;
		atomic_store(&handler_unlocked, 0);
		struct timespec ts = { 0, 50000 };
		rsys(SYS_nanosleep, &ts, NULL);
	}
}

static void *handler_main(void *arg)
{
	int fd = (int)(intptr_t)arg;
	for (;;) {
		struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
		long r = rsys(SYS_ppoll, &p, 1, NULL, NULL, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 || (p.revents & (POLLERR | POLLNVAL)))
			break;
		bool locked = handler_enter();
		bool mine = fd == uffd;
		if (mine)
			uffd_drain_locked();
		if (locked)
			pthread_mutex_unlock(&mu);
		else
			atomic_store(&handler_unlocked, 0);
		if (!mine)
			break;
	}
	return NULL;
}

static bool start_handler_locked(void)
{
	if (uffd_thread)
		return true;
	pthread_attr_t at;
	pthread_t t;
	sigset_t all, old;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&at, 256 << 10);
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int e = pthread_create(&t, &at, handler_main, (void *)(intptr_t)uffd);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	pthread_attr_destroy(&at);
	if (e) {
		logf_("cannot start the fault handler: %s", strerror(e));
		return false;
	}
	uffd_thread = true;
	return true;
}

/* ---------- /proc/self/maps ---------- */

struct vma {
	uint64_t s, e;
	bool anon, dev;
};

static bool path_is_device(const char *p)
{
	if (!strncmp(p, "/dev/", 5))
		return strncmp(p, "/dev/zero", 9) && strncmp(p, "/dev/shm/", 9);
	return !strncmp(p, "/memfd:kfdemu-", 14) || !strncmp(p, "[vvar", 5);
}

/* VMAs overlapping [s, e), in address order (ialloc'd). */
static int maps_load(uint64_t s, uint64_t e, struct vma **out, size_t *nout)
{
	*out = NULL;
	*nout = 0;
	int fd = r_openat(AT_FDCWD, "/proc/self/maps", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	size_t cap = 64 << 10, len = 0;
	char *buf = ialloc(cap);
	if (!buf) {
		r_close(fd);
		return -ENOMEM;
	}
	for (;;) {
		if (len + 4096 > cap) {
			char *nb = ialloc(cap * 2);
			if (!nb) {
				ifree(buf);
				r_close(fd);
				return -ENOMEM;
			}
			memcpy(nb, buf, len);
			ifree(buf);
			buf = nb;
			cap *= 2;
		}
		ssize_t k = r_read(fd, buf + len, cap - len - 1);
		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	r_close(fd);
	buf[len] = '\0';
	size_t vcap = 0;
	struct vma *v = NULL;
	for (char *l = buf; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		char *p;
		uint64_t a = strtoull(l, &p, 16);
		uint64_t b = (*p == '-') ? strtoull(p + 1, &p, 16) : 0;
		if (b > s && a < e) {
			char perms[5] = "----";
			while (*p == ' ')
				p++;
			memcpy(perms, p, 4);
			/* skip perms, offset, dev, inode */
			for (int f = 0; f < 4 && *p; f++) {
				while (*p && *p != ' ')
					p++;
				while (*p == ' ')
					p++;
			}
			const char *path = p;
			if (!grow((void **)&v, &vcap, *nout + 1, sizeof(*v))) {
				ifree(buf);
				ifree(v);
				return -ENOMEM;
			}
			struct vma *m = &v[(*nout)++];
			m->s = a;
			m->e = b;
			m->dev = path_is_device(path);
			m->anon = perms[3] == 'p' &&
				  (!*path || !strcmp(path, "[heap]") || !strncmp(path, "[stack", 6) || !strncmp(path, "[anon:", 6));
		}
		l = nl ? nl + 1 : NULL;
	}
	ifree(buf);
	*out = v;
	return 0;
}

/* The kernel's svm_range_is_valid: every byte in a VMA, none VM_IO/PFNMAP/MIXEDMAP. */
static int vma_cover(const struct vma *v, size_t n, uint64_t s, uint64_t e)
{
	uint64_t c = s;
	for (size_t i = 0; i < n && c < e; i++) {
		if (v[i].e <= c)
			continue;
		if (v[i].s > c || v[i].dev)
			return -EFAULT;
		c = v[i].e;
	}
	return c >= e ? 0 : -EFAULT;
}

/* ---------- placement ---------- */

struct pend {
	uint64_t pfn;
	void *shadow;
};

/* Device-private placement of the anonymous private span [a, b) on GPU gi. */
static void place_private(int gi, uint64_t a, uint64_t b)
{
	struct gpu *g = &E.gpu[gi];
	uint32_t tag = (uint32_t)gi + 1;
	if (!ensure_uffd_locked())
		return;
	struct uffdio_register reg = { .range = { .start = a, .len = b - a }, .mode = UFFDIO_REGISTER_MODE_MISSING };
	if (r_ioctl(uffd, UFFDIO_REGISTER, &reg)) {
		logf_("UFFDIO_REGISTER %#llx+%#llx: %s", (unsigned long long)a, (unsigned long long)(b - a), strerror(errno));
		return;
	}
	atomic_store(&registered, 1);
	int pmfd = self_fd(&pmfd_self, &pmfd_pid, "/proc/self/pagemap", O_RDONLY);
	enum { CH = 512 };
	uint64_t pm[CH];
	struct pend pd[CH];
	for (uint64_t c = a; c < b; c += CH * PG) {
		size_t np = (size_t)((b - c) / PG < CH ? (b - c) / PG : CH);
		size_t npd = 0;
		if (pmfd < 0 || r_pread(pmfd, pm, np * 8, (c / PG) * 8) != (ssize_t)(np * 8))
			for (size_t i = 0; i < np; i++)
				pm[i] = PM_PRESENT;   /* unknown: read every page */
		for (size_t i = 0; i < np; i++) {
			uint64_t pfn = c / PG + i;
			struct vpage *e = ht_get(pfn);
			if (e && e->gpu == tag)
				continue;
			if (e && !E.gpu[e->gpu - 1].coherent) {
				/* VRAM to VRAM: the shadow moves with it */
				E.gpu[e->gpu - 1].used -= PG;
				e->gpu = tag;
				g->used += PG;
				continue;
			}
			if (e)
				vram_forget(e);   /* coherent VRAM: the data is in the page */
			void *sh = NULL;
			if (pm[i] & (PM_PRESENT | PM_SWAPPED)) {
				sh = shadow_alloc();
				if (!sh)
					break;
				if (!mem_read(sh, pfn * PG)) {
					shadow_free(sh);
					continue;   /* unreadable: stays in system memory */
				}
				static const char zero[PG];
				if (!memcmp(sh, zero, PG)) {
					shadow_free(sh);
					sh = NULL;
				}
			}
			pd[npd].pfn = pfn;
			pd[npd].shadow = sh;
			npd++;
		}
		/* drop the pages from the page tables, in runs */
		for (size_t i = 0; i < npd;) {
			size_t j = i + 1;
			while (j < npd && pd[j].pfn == pd[j - 1].pfn + 1)
				j++;
			if (r_madvise(pd[i].pfn * PG, (j - i) * PG, MADV_DONTNEED)) {
				for (size_t k = i; k < j; k++)
					shadow_free(pd[k].shadow);
			} else {
				for (size_t k = i; k < j; k++) {
					if (ht_put(pd[k].pfn, tag, pd[k].shadow)) {
						g->used += PG;
					} else {
						/* no room to remember it: put the data back (the
						 * range is registered: no plain write may fault here) */
						if (pd[k].shadow) {
							struct uffdio_copy cp = { .dst = pd[k].pfn * PG,
										  .src = (uintptr_t)pd[k].shadow,
										  .len = PG, .mode = 0 };
							r_ioctl(uffd, UFFDIO_COPY, &cp);
						}
						shadow_free(pd[k].shadow);
					}
				}
			}
			i = j;
		}
	}
}

/* Coherent (connected-to-CPU) VRAM: the CPU maps it directly, so placement
 * is bookkeeping only; pages come back from device-private VRAM first. */
static void place_coherent(int gi, uint64_t a, uint64_t b)
{
	uint32_t tag = (uint32_t)gi + 1;
	for (uint64_t pfn = a / PG; pfn < b / PG; pfn++) {
		struct vpage *e = ht_get(pfn);
		if (e && e->gpu == tag)
			continue;
		if (e && !E.gpu[e->gpu - 1].coherent)
			page_to_sys(pfn, true);
		e = ht_get(pfn);
		if (e) {
			E.gpu[e->gpu - 1].used -= PG;
			e->gpu = tag;
			E.gpu[gi].used += PG;
		} else if (ht_put(pfn, tag, NULL)) {
			E.gpu[gi].used += PG;
		}
	}
}

static void all_to_sys(uint64_t a, uint64_t b)
{
	size_t n;
	uint64_t *list = ht_collect(a / PG, b / PG, &n);
	for (size_t i = 0; i < n; i++)
		page_to_sys(list[i], true);
	ifree(list);
}

/* Drops emulator state for [a, b): VRAM pages (data discarded) and, when
 * ranges, the SVM ranges (munmap: the kernel unmaps SVM ranges there). */
static void drop_state_locked(uint64_t a, uint64_t b, bool ranges)
{
	size_t n;
	uint64_t *list = ht_collect(a / PG, (b + PG - 1) / PG, &n);
	for (size_t i = 0; i < n; i++) {
		struct vpage *e = ht_get(list[i]);
		if (e)
			vram_forget(e);
	}
	ifree(list);
	if (ranges && rn) {
		size_t k = 0;
		struct rng tail = { 0 };
		bool have_tail = false;
		for (size_t i = 0; i < rn; i++) {
			struct rng r = rv[i];
			if (r.e <= a || r.s >= b) {
				rv[k++] = r;
				continue;
			}
			if (r.s < a) {
				struct rng h = r;
				h.e = a;
				rv[k++] = h;
			}
			if (r.e > b) {
				tail = r;
				tail.s = b;
				have_tail = true;
			}
		}
		rn = k;
		if (have_tail) {
			/* at most one range straddles b; keep the order */
			if (grow((void **)&rv, &rcap, rn + 1, sizeof(*rv))) {
				size_t pos = rn;
				while (pos > 0 && rv[pos - 1].s > tail.s) {
					rv[pos] = rv[pos - 1];
					pos--;
				}
				rv[pos] = tail;
				rn++;
			}
		}
	}
	update_have_state();
}

/* mremap moved [from, from+len) to [to, ...): VRAM pages move with it (the
 * kernel moves device-private entries with the page tables); SVM ranges at
 * the old address go away, as the kernel unmaps them. */
static void remap_state_locked(uint64_t from, uint64_t to, uint64_t len)
{
	size_t n;
	uint64_t *list = ht_collect(from / PG, (from + len) / PG, &n);
	for (size_t i = 0; i < n; i++) {
		struct vpage *e = ht_get(list[i]);
		if (!e)
			continue;
		struct vpage c = *e;
		ht_del(e);
		if (!ht_put(c.pfn - from / PG + to / PG, c.gpu, c.shadow)) {
			E.gpu[c.gpu - 1].used -= PG;   /* cannot follow it: the data is lost */
			shadow_free(c.shadow);
		}
	}
	ifree(list);
	drop_state_locked(from, from + len, true);
}

/* ---------- SVM ---------- */

static struct attrs default_attrs(void)
{
	struct attrs a;
	memset(&a, 0, sizeof(a));
	a.pref = LOC_UNDEF;
	a.pfetch = LOC_UNDEF;
	a.flags = KFD_IOCTL_SVM_FLAG_HOST_ACCESS | KFD_IOCTL_SVM_FLAG_COHERENT;
	a.gran = 9;
	for (int i = 0; i < E.ngpu; i++)
		a.acc[i] = (P.xnack && E.gpu[i].svm) ? ACC_ACCESS : ACC_NONE;
	return a;
}

/* A GPU named by SET: of the tree, SVM capable, ACQUIRE_VM'd in this process. */
static bool set_gpu_ok(uint32_t id)
{
	int gi = gpu_index(id);
	return gi >= 0 && E.gpu[gi].svm && P.acquired[gi];
}

static int check_set_attrs(uint32_t nattr, const struct kfd_ioctl_svm_attribute *at)
{
	for (uint32_t i = 0; i < nattr; i++) {
		uint32_t v = at[i].value;
		switch (at[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
			if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && v != LOC_UNDEF && !set_gpu_ok(v))
				return -EINVAL;
			break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
			if (v != KFD_IOCTL_SVM_LOCATION_SYSMEM && !set_gpu_ok(v))
				return -EINVAL;
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
		case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
		case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
			if (!set_gpu_ok(v))
				return -EINVAL;
			break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			break;
		default:
			return -EINVAL;
		}
	}
	return 0;
}

static void apply_attrs(struct attrs *a, uint32_t nattr, const struct kfd_ioctl_svm_attribute *at)
{
	for (uint32_t i = 0; i < nattr; i++) {
		uint32_t v = at[i].value;
		int gi;
		switch (at[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
			a->pref = v;
			break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
			a->pfetch = v;
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
			if ((gi = gpu_index(v)) >= 0)
				a->acc[gi] = ACC_ACCESS;
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE:
			if ((gi = gpu_index(v)) >= 0)
				a->acc[gi] = ACC_INPLACE;
			break;
		case KFD_IOCTL_SVM_ATTR_NO_ACCESS:
			if ((gi = gpu_index(v)) >= 0)
				a->acc[gi] = ACC_NONE;
			break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
			a->flags |= v;
			break;
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
			a->flags &= ~v;
			break;
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			a->gran = v < 0x3f ? v : 0x3f;
			break;
		default:
			break;
		}
	}
}

/* svm_range_best_prefetch_location: -1 none, 0 system memory, else GPU index + 1. */
static int best_target(const struct attrs *a)
{
	if (a->pfetch == LOC_UNDEF)
		return -1;
	if (a->pfetch == KFD_IOCTL_SVM_LOCATION_SYSMEM)
		return 0;
	int gi = gpu_index(a->pfetch);
	if (gi < 0)
		return 0;
	for (int j = 0; j < E.ngpu; j++) {
		bool mapped = P.xnack ? a->acc[j] == ACC_INPLACE : a->acc[j] != ACC_NONE;
		if (!mapped || j == gi)
			continue;
		if (!E.gpu[j].hive || E.gpu[j].hive != E.gpu[gi].hive)
			return 0;   /* another GPU maps it and is not in the same hive */
	}
	if (!E.gpu[gi].vram)
		return 0;       /* an APU: its memory is system memory */
	return gi + 1;
}

static bool rpush(struct rng **v, size_t *n, size_t *cap, uint64_t s, uint64_t e, const struct attrs *a, int upd)
{
	if (s >= e)
		return true;
	if (!grow((void **)v, cap, *n + 1, sizeof(**v)))
		return false;
	struct rng *r = &(*v)[(*n)++];
	r->s = s;
	r->e = e;
	r->a = *a;
	r->upd = upd;
	r->tgt = -1;
	return true;
}

static uint64_t anon_pages(const struct vma *v, size_t nv, uint64_t a, uint64_t b, uint32_t notgpu)
{
	uint64_t c = 0;
	for (size_t i = 0; i < nv; i++) {
		if (!v[i].anon || v[i].e <= a || v[i].s >= b)
			continue;
		uint64_t s = v[i].s > a ? v[i].s : a, e = v[i].e < b ? v[i].e : b;
		c += (e - s) / PG - ht_count(s / PG, e / PG, notgpu);
	}
	return c;
}

static int svm_set(uint64_t s, uint64_t e, uint32_t nattr, const struct kfd_ioctl_svm_attribute *at)
{
	int r = check_set_attrs(nattr, at);
	if (r)
		return r;
	struct vma *vm;
	size_t nvm;
	if ((r = maps_load(s, e, &vm, &nvm)))
		return r;
	if ((r = vma_cover(vm, nvm, s, e))) {
		ifree(vm);
		return r;
	}
	/* the new range list: old ranges split at s and e, gaps in [s, e) filled */
	struct rng *nv = NULL;
	size_t nn = 0, ncap = 0;
	struct attrs def = default_attrs();
	uint64_t c = s;
	bool mid_done = false, ok = true;
	for (size_t i = 0; i < rn && ok; i++) {
		struct rng *o = &rv[i];
		if (o->e <= s) {
			ok = rpush(&nv, &nn, &ncap, o->s, o->e, &o->a, 0);
			continue;
		}
		if (o->s >= e) {
			if (!mid_done) {
				ok = ok && rpush(&nv, &nn, &ncap, c, e, &def, 1);
				mid_done = true;
			}
			ok = ok && rpush(&nv, &nn, &ncap, o->s, o->e, &o->a, 0);
			continue;
		}
		uint64_t ms = o->s > s ? o->s : s, me = o->e < e ? o->e : e;
		ok = ok && rpush(&nv, &nn, &ncap, o->s, s, &o->a, 0);   /* empty unless o->s < s */
		ok = ok && rpush(&nv, &nn, &ncap, c, ms, &def, 1);
		ok = ok && rpush(&nv, &nn, &ncap, ms, me, &o->a, 1);
		c = me;
		if (o->e > e) {
			mid_done = true;
			ok = ok && rpush(&nv, &nn, &ncap, e, o->e, &o->a, 0);
		}
	}
	if (ok && !mid_done)
		ok = rpush(&nv, &nn, &ncap, c, e, &def, 1);
	if (!ok) {
		ifree(nv);
		ifree(vm);
		return -ENOMEM;
	}
	/* apply, then plan the migrations every updated range triggers */
	uint64_t need[MAXGPU] = { 0 };
	bool uffd_ok = false;
	size_t nmoves = 0;
	for (size_t i = 0; i < nn; i++) {
		if (!nv[i].upd)
			continue;
		apply_attrs(&nv[i].a, nattr, at);
		nv[i].tgt = best_target(&nv[i].a);
		if (nv[i].tgt >= 0)
			nmoves++;
		if (nv[i].tgt > 0) {
			int gi = nv[i].tgt - 1;
			if (!E.gpu[gi].coherent && !uffd_ok)
				uffd_ok = ensure_uffd_locked();
			if (E.gpu[gi].coherent || uffd_ok)
				need[gi] += anon_pages(vm, nvm, nv[i].s, nv[i].e, (uint32_t)gi + 1);
		}
	}
	/* the moves, kept apart: a drained unmap event may edit the range list */
	struct rng *moves = nmoves ? ialloc(nmoves * sizeof(*moves)) : NULL;
	if (nmoves && !moves) {
		ifree(nv);
		ifree(vm);
		return -ENOMEM;
	}
	nmoves = 0;
	for (size_t i = 0; i < nn; i++)
		if (nv[i].upd && nv[i].tgt >= 0)
			moves[nmoves++] = nv[i];
	for (int gi = 0; gi < E.ngpu; gi++)
		if (need[gi] && need[gi] > (E.gpu[gi].vram - E.gpu[gi].used) / PG) {
			logf_("prefetch to GPU %u: %llu pages do not fit", E.gpu[gi].gpu_id, (unsigned long long)need[gi]);
			ifree(moves);
			ifree(nv);
			ifree(vm);
			return -ENOMEM;   /* nothing changed */
		}
	/* commit */
	ifree(rv);
	rv = nv;
	rn = nn;
	rcap = ncap;
	for (size_t i = 0; i < nmoves; i++) {
		uint64_t a = moves[i].s, b = moves[i].e;
		int t = moves[i].tgt;
		if (t == 0) {
			all_to_sys(a, b);
			continue;
		}
		int gi = t - 1;
		for (size_t k = 0; k < nvm; k++) {
			if (!vm[k].anon || vm[k].e <= a || vm[k].s >= b)
				continue;
			uint64_t ps = vm[k].s > a ? vm[k].s : a, pe = vm[k].e < b ? vm[k].e : b;
			if (E.gpu[gi].coherent)
				place_coherent(gi, ps, pe);
			else if (uffd_ok)
				place_private(gi, ps, pe);
		}
	}
	/* merge neighbours with equal attributes */
	size_t k = 0;
	for (size_t i = 0; i < rn; i++) {
		rv[i].upd = 0;
		rv[i].tgt = -1;
		if (k && rv[k - 1].e == rv[i].s && !memcmp(&rv[k - 1].a, &rv[i].a, sizeof(struct attrs)))
			rv[k - 1].e = rv[i].e;
		else
			rv[k++] = rv[i];
	}
	rn = k;
	ifree(moves);
	ifree(vm);
	update_have_state();
	return 0;
}

static int svm_get(uint64_t s, uint64_t e, uint32_t nattr, struct kfd_ioctl_svm_attribute *at)
{
	struct vma *vm;
	size_t nvm;
	int r = maps_load(s, e, &vm, &nvm);
	if (r)
		return r;
	r = vma_cover(vm, nvm, s, e);
	ifree(vm);
	if (r)
		return r;
	for (uint32_t i = 0; i < nattr; i++) {
		switch (at[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
			if (gpu_index(at[i].value) < 0)
				return -EINVAL;
			break;
		default:
			return -EINVAL;
		}
	}
	uint32_t loc = LOC_UNDEF, pf = LOC_UNDEF, fand = 0xffffffff, forr = 0, gran = 0xff;
	bool gl = true, gp = true, any = false;
	bool acc[MAXGPU], aip[MAXGPU];
	for (int i = 0; i < E.ngpu; i++)
		acc[i] = aip[i] = E.gpu[i].svm;
	for (size_t i = 0; i < rn; i++) {
		struct rng *g = &rv[i];
		if (g->e <= s || g->s >= e)
			continue;
		any = true;
		if (gl) {
			if (g->a.pref == LOC_UNDEF || (loc != LOC_UNDEF && loc != g->a.pref)) {
				loc = LOC_UNDEF;
				gl = false;
			} else {
				loc = g->a.pref;
			}
		}
		if (gp) {
			if (g->a.pfetch == LOC_UNDEF || (pf != LOC_UNDEF && pf != g->a.pfetch)) {
				pf = LOC_UNDEF;
				gp = false;
			} else {
				pf = g->a.pfetch;
			}
		}
		for (int j = 0; j < E.ngpu; j++) {
			acc[j] = acc[j] && g->a.acc[j] == ACC_ACCESS;
			aip[j] = aip[j] && g->a.acc[j] == ACC_INPLACE;
		}
		fand &= g->a.flags;
		forr |= g->a.flags;
		if (g->a.gran < gran)
			gran = g->a.gran;
	}
	if (!any) {
		struct attrs d = default_attrs();
		loc = d.pref;
		pf = d.pfetch;
		gran = d.gran;
		fand = forr = d.flags;
		for (int j = 0; j < E.ngpu; j++) {
			acc[j] = P.xnack && E.gpu[j].svm;
			aip[j] = false;
		}
	}
	for (uint32_t i = 0; i < nattr; i++) {
		int gi;
		switch (at[i].type) {
		case KFD_IOCTL_SVM_ATTR_PREFERRED_LOC:
			at[i].value = loc;
			break;
		case KFD_IOCTL_SVM_ATTR_PREFETCH_LOC:
			at[i].value = pf;
			break;
		case KFD_IOCTL_SVM_ATTR_ACCESS:
			gi = gpu_index(at[i].value);
			at[i].type = acc[gi] ? KFD_IOCTL_SVM_ATTR_ACCESS
				   : aip[gi] ? KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE : KFD_IOCTL_SVM_ATTR_NO_ACCESS;
			break;
		case KFD_IOCTL_SVM_ATTR_SET_FLAGS:
			at[i].value = fand;
			break;
		case KFD_IOCTL_SVM_ATTR_CLR_FLAGS:
			at[i].value = ~forr;
			break;
		case KFD_IOCTL_SVM_ATTR_GRANULARITY:
			at[i].value = gran;
			break;
		default:
			break;
		}
	}
	return 0;
}

/* ---------- ioctl entry ---------- */

/* Copies to and from the caller's memory report EFAULT as the kernel would. */
static int uread(void *dst, const void *usrc, size_t n)
{
	struct iovec l = { dst, n }, r = { (void *)(uintptr_t)usrc, n };
	int e = errno;
	ssize_t k = rsys(SYS_process_vm_readv, getpid(), &l, 1UL, &r, 1UL, 0UL);
	if (k < 0 && (errno == ENOSYS || errno == EPERM)) {
		errno = e;
		memcpy(dst, usrc, n);
		return 0;
	}
	errno = e;
	return k == (ssize_t)n ? 0 : -EFAULT;
}

static int uwrite(void *udst, const void *src, size_t n)
{
	struct iovec l = { (void *)(uintptr_t)src, n }, r = { udst, n };
	int e = errno;
	ssize_t k = rsys(SYS_process_vm_writev, getpid(), &l, 1UL, &r, 1UL, 0UL);
	if (k < 0 && (errno == ENOSYS || errno == EPERM)) {
		errno = e;
		memcpy(udst, src, n);
		return 0;
	}
	errno = e;
	return k == (ssize_t)n ? 0 : -EFAULT;
}

/* Which emulated file an fd refers to: KIND_KFD/KIND_RENDER, or 0. */
static int ident_fd(int fd, struct frec *out)
{
	if (fd < 0)
		return 0;
	int e = errno;
	struct stat st;
	unsigned char tag[16];
	int kind = 0;
	if (r_fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size == 16 &&
	    r_pread(fd, tag, sizeof(tag), 0) == (ssize_t)sizeof(tag) && !memcmp(tag, TAG_MAGIC, 8)) {
		uint64_t id;
		memcpy(&id, tag + 8, 8);
		pthread_mutex_lock(&mu);
		struct frec *f = frec_find(id);
		if (f) {
			*out = *f;
			kind = f->kind;
		}
		pthread_mutex_unlock(&mu);
	}
	errno = e;
	return kind;
}

static int ioc_version(unsigned long cmd, void *u)
{
	if (cmd != AMDKFD_IOC_GET_VERSION)
		return -EINVAL;
	struct kfd_ioctl_get_version_args a = { .major_version = KFD_IOCTL_MAJOR_VERSION,
						.minor_version = KFD_IOCTL_MINOR_VERSION };
	return uwrite(u, &a, sizeof(a));
}

static int ioc_acquire(unsigned long cmd, void *u)
{
	if (cmd != AMDKFD_IOC_ACQUIRE_VM)
		return -EINVAL;
	struct kfd_ioctl_acquire_vm_args a;
	int r = uread(&a, u, sizeof(a));
	if (r)
		return r;
	struct frec rf;
	int fd = (int)a.drm_fd;
	int kind = ident_fd(fd, &rf);
	struct stat st;
	if (!kind && r_fstat(fd, &st))
		return -EINVAL;            /* fget() failed */
	pthread_mutex_lock(&mu);
	int gi = gpu_index(a.gpu_id);
	if (gi < 0) {
		r = -EINVAL;
	} else if (P.acquired[gi]) {
		r = (kind == KIND_RENDER && P.acquired[gi] == rf.id) ? 0 : -EBUSY;
	} else if (kind != KIND_RENDER || rf.gpu != gi) {
		r = -EINVAL;               /* not an amdgpu render node of that GPU */
	} else {
		struct frec *f = frec_find(rf.id);
		if (f && f->bound_pid && f->bound_pid != P.pid) {
			r = -EINVAL;       /* its VM belongs to another KFD process */
		} else {
			if (f)
				f->bound_pid = P.pid;
			P.acquired[gi] = rf.id;
			r = 0;
		}
	}
	pthread_mutex_unlock(&mu);
	return r;
}

static int ioc_xnack(unsigned long cmd, void *u)
{
	if (cmd != AMDKFD_IOC_SET_XNACK_MODE)
		return -EINVAL;
	if (E.no_svm)
		return -EPERM;
	struct kfd_ioctl_set_xnack_mode_args a;
	int r = uread(&a, u, sizeof(a));
	if (r)
		return r;
	pthread_mutex_lock(&mu);
	if (a.xnack_enabled < 0) {
		a.xnack_enabled = P.xnack;
	} else if (a.xnack_enabled != P.xnack) {
		if (a.xnack_enabled && !xnack_can_enable())
			r = -EPERM;
		else
			P.xnack = a.xnack_enabled ? 1 : 0;
	}
	pthread_mutex_unlock(&mu);
	if (r)
		return r;
	return uwrite(u, &a, sizeof(a));
}

static int ioc_available(unsigned long cmd, void *u)
{
	if (cmd != AMDKFD_IOC_AVAILABLE_MEMORY)
		return -EINVAL;
	struct kfd_ioctl_get_available_memory_args a;
	int r = uread(&a, u, sizeof(a));
	if (r)
		return r;
	if (a.pad)
		return -EINVAL;
	pthread_mutex_lock(&mu);
	int gi = gpu_index(a.gpu_id);
	if (gi >= 0)
		a.available = E.gpu[gi].vram - E.gpu[gi].used;
	pthread_mutex_unlock(&mu);
	if (gi < 0)
		return -EINVAL;
	return uwrite(u, &a, sizeof(a));
}

static int ioc_svm(unsigned long cmd, void *u)
{
	const unsigned long sizebits = (unsigned long)_IOC_SIZEMASK << _IOC_SIZESHIFT;
	if ((cmd & ~sizebits) != (AMDKFD_IOC_SVM & ~sizebits))
		return -EINVAL;
	if (E.no_svm)
		return -EPERM;
	size_t usz = _IOC_SIZE(cmd);
	struct kfd_ioctl_svm_args h;
	if (usz < sizeof(h))
		return -EINVAL;
	int r = uread(&h, u, sizeof(h));
	if (r)
		return r;
	atomic_store(&last_nattr, (int)h.nattr);
	uint64_t need = sizeof(h) + (uint64_t)h.nattr * sizeof(struct kfd_ioctl_svm_attribute);
	if (need > usz)
		return -EINVAL;
	/* not malloc: svm_set works on it under mu, and a heap page may be an
	 * emulated VRAM page whose fault would wait for mu */
	pthread_mutex_lock(&mu);
	struct kfd_ioctl_svm_args *a = ialloc(need);
	pthread_mutex_unlock(&mu);
	if (!a)
		return -ENOMEM;
	if ((r = uread(a, u, need)))
		goto out;
	if ((a->start_addr & (PG - 1)) || (a->size & (PG - 1)) || !a->start_addr || !a->size) {
		r = -EINVAL;
		goto out;
	}
	uint64_t s = a->start_addr, e = a->start_addr + a->size;
	if (e < s) {
		r = -EFAULT;
		goto out;
	}
	bool set = a->op == KFD_IOCTL_SVM_OP_SET_ATTR;
	if (set)
		pthread_rwlock_wrlock(&mm_lock);
	pthread_mutex_lock(&mu);
	switch (a->op) {
	case KFD_IOCTL_SVM_OP_SET_ATTR:
		r = svm_set(s, e, a->nattr, a->attrs);
		break;
	case KFD_IOCTL_SVM_OP_GET_ATTR:
		r = svm_get(s, e, a->nattr, a->attrs);
		break;
	default:
		r = -EINVAL;
		break;
	}
	pthread_mutex_unlock(&mu);
	if (set)
		pthread_rwlock_unlock(&mm_lock);
	if (!r && a->op == KFD_IOCTL_SVM_OP_GET_ATTR)
		r = uwrite(u, a, need);
out:
	pthread_mutex_lock(&mu);
	ifree(a);
	pthread_mutex_unlock(&mu);
	return r;
}

static int kfd_ioctl(const struct frec *f, unsigned long cmd, void *u)
{
	unsigned nr = _IOC_NR(cmd);
	if (_IOC_TYPE(cmd) != AMDKFD_IOCTL_BASE || nr < AMDKFD_COMMAND_START || nr >= AMDKFD_COMMAND_END)
		return -ENOTTY;
	int pid = getpid();
	pthread_mutex_lock(&mu);
	calls[nr]++;
	if (f->pid != pid || P.pid != pid) {
		pthread_mutex_unlock(&mu);
		return -EBADF;   /* "Using KFD FD in wrong process" */
	}
	if (fail_n[nr] > 0 && --fail_n[nr] == 0) {
		int e = fail_err[nr];
		pthread_mutex_unlock(&mu);
		return -e;
	}
	pthread_mutex_unlock(&mu);
	switch (nr) {
	case _IOC_NR(AMDKFD_IOC_GET_VERSION):
		return ioc_version(cmd, u);
	case _IOC_NR(AMDKFD_IOC_ACQUIRE_VM):
		return ioc_acquire(cmd, u);
	case _IOC_NR(AMDKFD_IOC_SET_XNACK_MODE):
		return ioc_xnack(cmd, u);
	case _IOC_NR(AMDKFD_IOC_AVAILABLE_MEMORY):
		return ioc_available(cmd, u);
	case _IOC_NR(AMDKFD_IOC_SVM):
		return ioc_svm(cmd, u);
	default:
		return -EINVAL;
	}
}

/* ---------- path classification ---------- */

enum { P_PASS, P_REDIR, P_PROPS, P_KFD, P_RENDER, P_PAGEMAP };

static bool is_root_dirfd(int dirfd)
{
	struct stat st;
	int e = errno;
	int r = dirfd == AT_FDCWD ? r_fstatat(AT_FDCWD, ".", &st, 0) : r_fstat(dirfd, &st);
	errno = e;
	return r == 0 && S_ISDIR(st.st_mode) && st.st_dev == E.rootdev && st.st_ino == E.rootino;
}

/* p equal to prefix or below it: returns what follows, else NULL */
static const char *under(const char *p, const char *prefix)
{
	size_t n = strlen(prefix);
	if (strncmp(p, prefix, n))
		return NULL;
	return (p[n] == '\0' || p[n] == '/') ? p + n : NULL;
}

/* Normalises path (relative to dirfd) to an absolute path in norm, when it
 * may be one of ours; false when it cannot be. */
static bool normalise(int dirfd, const char *path, char *norm, size_t n)
{
	char tmp[PATH_MAX];
	if (path[0] != '/') {
		const char *p = path;
		while (p[0] == '.' && p[1] == '/')
			p += 2;
		if (strncmp(p, "sys/", 4) && strncmp(p, "dev/", 4) && strncmp(p, "proc/", 5))
			return false;
		if (!is_root_dirfd(dirfd))
			return false;
		if (snprintf(tmp, sizeof(tmp), "/%s", p) >= (int)sizeof(tmp))
			return false;
		path = tmp;
	} else if (strncmp(path, "/sys", 4) && strncmp(path, "/dev", 4) && strncmp(path, "/proc", 5) && path[1] != '/') {
		return false;
	}
	/* collapse "//" and "/./" */
	size_t o = 0;
	for (const char *p = path; *p;) {
		if (p[0] == '/' && (p[1] == '/' || (p[1] == '.' && (p[2] == '/' || p[2] == '\0')))) {
			p += (p[1] == '/') ? 1 : 2;
			continue;
		}
		if (o + 1 >= n)
			return false;
		norm[o++] = *p++;
	}
	if (o == 0)
		norm[o++] = '/';
	while (o > 1 && norm[o - 1] == '/')
		o--;
	norm[o] = '\0';
	return true;
}

static int classify(int dirfd, const char *path, char *out, size_t outlen, int *minor)
{
	char norm[PATH_MAX];
	if (!E.active || !path || !*path || !normalise(dirfd, path, norm, sizeof(norm)))
		return P_PASS;
	int kind = P_PASS;
	const char *rest;
	if (!strcmp(norm, "/dev/kfd"))
		return P_KFD;
	if (!strcmp(norm, "/dev/dri") && E.nminors) {
		kind = P_REDIR;   /* listing /dev/dri shows the tree's render nodes */
	} else if (!strncmp(norm, "/dev/dri/renderD", 16) && all_digits(norm + 16)) {
		int m = atoi(norm + 16);
		for (int i = 0; i < E.nminors; i++)
			if (E.minors[i] == m) {
				*minor = m;
				kind = P_RENDER;
			}
		if (kind == P_PASS)
			return P_PASS;
	} else if (under(norm, "/sys/class/kfd") || under(norm, "/sys/devices/virtual/kfd")) {
		kind = P_REDIR;
		size_t l = strlen(norm);
		if (E.no_svm && l > 11 && !strcmp(norm + l - 11, "/properties") && strstr(norm, "/topology/nodes/") &&
		    !strstr(norm, "/mem_banks/") && !strstr(norm, "/io_links/") && !strstr(norm, "/caches/") &&
		    !strstr(norm, "/p2p_links/"))
			kind = P_PROPS;
	} else if ((rest = under(norm, "/sys/bus/pci/devices")) && *rest == '/') {
		const char *c = rest + 1;
		size_t cl = strcspn(c, "/");
		for (int i = 0; i < E.nbdf; i++)
			if (strlen(E.bdf[i]) == cl && !strncmp(E.bdf[i], c, cl))
				kind = P_REDIR;
		if (kind == P_PASS)
			return P_PASS;
	} else if (!strncmp(norm, "/proc/", 6)) {
		const char *p = norm + 6;
		size_t cl = strcspn(p, "/");
		if (strcmp(p + cl, "/pagemap"))
			return P_PASS;
		char pid[16];
		if (cl == 4 && !strncmp(p, "self", 4))
			return P_PAGEMAP;
		if (cl == 11 && !strncmp(p, "thread-self", 11))
			return P_PAGEMAP;
		snprintf(pid, sizeof(pid), "%d", (int)getpid());
		return (cl == strlen(pid) && !strncmp(p, pid, cl)) ? P_PAGEMAP : P_PASS;
	} else {
		return P_PASS;
	}
	if (snprintf(out, outlen, "%s%s", E.root, norm) >= (int)outlen)
		return P_PASS;
	return kind;
}

/* ---------- emulated files ---------- */

static int new_memfd(const char *name, int cloexec, int kind, int gpu)
{
	int fd = (int)rsys(SYS_memfd_create, name, cloexec ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	int pid = getpid();
	pthread_mutex_lock(&mu);
	if (!grow((void **)&files, &capfiles, nfiles + 1, sizeof(*files))) {
		pthread_mutex_unlock(&mu);
		r_close(fd);
		return seterr(ENOMEM);
	}
	uint64_t id = ((uint64_t)(uint32_t)pid << 32) | (++file_seq & 0xffffffffu);
	struct frec *f = &files[nfiles++];
	memset(f, 0, sizeof(*f));
	f->id = id;
	f->kind = kind;
	f->pid = pid;
	f->gpu = gpu;
	if (kind == KIND_KFD && P.pid != pid)
		proc_create_locked(pid);   /* one KFD process per address space */
	pthread_mutex_unlock(&mu);
	unsigned char tag[16];
	memcpy(tag, TAG_MAGIC, 8);
	memcpy(tag + 8, &id, 8);
	if (r_pwrite(fd, tag, sizeof(tag), 0) != (ssize_t)sizeof(tag)) {
		r_close(fd);
		return seterr(EIO);
	}
	fd_mark(fd, kind);
	return fd;
}

static int open_kfd(int flags)
{
	if (flags & O_PATH)
		return real_openat(AT_FDCWD, "/dev/null", O_PATH | (flags & O_CLOEXEC));
	if (flags & O_DIRECTORY)
		return seterr(ENOTDIR);
	if ((flags & O_CREAT) && (flags & O_EXCL))
		return seterr(EEXIST);
	int fd = new_memfd("kfdemu-kfd", flags & O_CLOEXEC, KIND_KFD, -1);
	logf_("open /dev/kfd -> %d", fd);
	return fd;
}

static int open_render(int minor, const char *placeholder, int flags)
{
	if (flags & O_PATH)
		return real_openat(AT_FDCWD, placeholder, O_PATH | (flags & O_CLOEXEC));
	if (flags & O_DIRECTORY)
		return seterr(ENOTDIR);
	int gi = gpu_of_minor(minor);
	char name[32];
	snprintf(name, sizeof(name), "kfdemu-renderD%d", minor);
	int fd = new_memfd(name, flags & O_CLOEXEC, KIND_RENDER, gi);
	logf_("open renderD%d -> %d", minor, fd);
	return fd;
}

/* A node's properties with the SVM capability bit cleared (KFDEMU_NO_SVM:
 * a kernel without CONFIG_HSA_AMD_SVM does not set it). */
static int open_props(const char *file, int flags)
{
	if ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_PATH | O_DIRECTORY)))
		return real_openat(AT_FDCWD, file, flags, 0);
	char buf[8192], outb[8192];
	ssize_t n = slurp(file, buf, sizeof(buf));
	if (n < 0)
		return real_openat(AT_FDCWD, file, flags, 0);
	size_t o = 0;
	for (char *l = buf; *l && o < sizeof(outb) - 64;) {
		char *nl = strchr(l, '\n');
		size_t ll = nl ? (size_t)(nl - l) + 1 : strlen(l);
		if (!strncmp(l, "capability ", 11)) {
			uint64_t cap = strtoull(l + 11, NULL, 0) & ~(uint64_t)CAP_SVM;
			o += (size_t)snprintf(outb + o, sizeof(outb) - o, "capability %llu\n", (unsigned long long)cap);
		} else if (o + ll < sizeof(outb)) {
			memcpy(outb + o, l, ll);
			o += ll;
		}
		l += ll;
	}
	int fd = (int)rsys(SYS_memfd_create, "kfdemu-properties", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
	if (fd < 0)
		return -1;
	if (r_pwrite(fd, outb, o, 0) != (ssize_t)o) {
		r_close(fd);
		return seterr(EIO);
	}
	return fd;
}

static void track_pagemap(int fd)
{
	struct stat st;
	if (fd < 0 || fd >= FDMAX || r_fstat(fd, &st))
		return;
	pthread_mutex_lock(&mu);
	size_t i;
	for (i = 0; i < npms; i++)
		if (pms[i].fd == fd)
			break;
	if (i == npms) {
		if (!grow((void **)&pms, &cappms, npms + 1, sizeof(*pms))) {
			pthread_mutex_unlock(&mu);
			return;
		}
		npms++;
	}
	pms[i].fd = fd;
	pms[i].pid = getpid();
	pms[i].dev = st.st_dev;
	pms[i].ino = st.st_ino;
	fd_mark(fd, KIND_PAGEMAP);
	pthread_mutex_unlock(&mu);
}

/* ---------- interceptors: open ---------- */

enum { V_OPEN, V_OPEN64, V_OPENAT, V_OPENAT64 };

static int call_real_open(int v, int dirfd, const char *path, int flags, mode_t mode)
{
	switch (v) {
	case V_OPEN:
		return real_open ? real_open(path, flags, mode) : seterr(ENOSYS);
	case V_OPEN64:
		return real_open64 ? real_open64(path, flags, mode) : seterr(ENOSYS);
	case V_OPENAT:
		return real_openat ? real_openat(dirfd, path, flags, mode) : seterr(ENOSYS);
	default:
		return real_openat64 ? real_openat64(dirfd, path, flags, mode) : seterr(ENOSYS);
	}
}

static int do_open(int v, int dirfd, const char *path, int flags, mode_t mode)
{
	ensure_init();
	char out[PATH_MAX];
	int minor = -1;
	int k = classify(dirfd, path, out, sizeof(out), &minor);
	if ((k == P_REDIR || k == P_PROPS) && !(flags & O_PATH) &&
	    ((flags & O_ACCMODE) != O_RDONLY || (flags & (O_CREAT | O_TRUNC))))
		return seterr(EACCES);   /* sysfs attributes without a store method; and the tree stays as committed */
	switch (k) {
	case P_REDIR:
		return real_openat(AT_FDCWD, out, flags, mode);
	case P_PROPS:
		return open_props(out, flags);
	case P_KFD:
		return open_kfd(flags);
	case P_RENDER:
		return open_render(minor, out, flags);
	case P_PAGEMAP: {
		int fd = call_real_open(v, dirfd, path, flags, mode);
		if (fd >= 0)
			track_pagemap(fd);
		return fd;
	}
	default:
		return call_real_open(v, dirfd, path, flags, mode);
	}
}

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & __O_TMPFILE) == __O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = open_mode(flags, ap);
	va_end(ap);
	return do_open(V_OPEN, AT_FDCWD, path, flags, m);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = open_mode(flags, ap);
	va_end(ap);
	return do_open(V_OPEN64, AT_FDCWD, path, flags, m);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = open_mode(flags, ap);
	va_end(ap);
	return do_open(V_OPENAT, dirfd, path, flags, m);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t m = open_mode(flags, ap);
	va_end(ap);
	return do_open(V_OPENAT64, dirfd, path, flags, m);
}

EXPORT int __open_2(const char *path, int flags)
{
	return do_open(V_OPEN, AT_FDCWD, path, flags, 0);
}

EXPORT int __open64_2(const char *path, int flags)
{
	return do_open(V_OPEN64, AT_FDCWD, path, flags, 0);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	return do_open(V_OPENAT, dirfd, path, flags, 0);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	return do_open(V_OPENAT64, dirfd, path, flags, 0);
}

static FILE *do_fopen(bool is64, const char *path, const char *mode)
{
	ensure_init();
	FILE *(*fn)(const char *, const char *) = is64 ? real_fopen64 : real_fopen;
	char out[PATH_MAX];
	int minor = -1;
	int k = classify(AT_FDCWD, path, out, sizeof(out), &minor);
	if (k == P_REDIR)
		return fn(out, mode);
	if (k == P_PROPS || k == P_KFD || k == P_RENDER) {
		int flags = (strchr(mode, '+') ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY) |
			    (strchr(mode, 'e') ? O_CLOEXEC : 0);
		int fd = do_open(V_OPEN, AT_FDCWD, path, flags, 0);
		if (fd < 0)
			return NULL;
		FILE *f = fdopen(fd, mode);
		if (!f)
			r_close(fd);
		return f;
	}
	return fn(path, mode);
}

EXPORT FILE *fopen(const char *restrict path, const char *restrict mode)
{
	return do_fopen(false, path, mode);
}

EXPORT FILE *fopen64(const char *restrict path, const char *restrict mode)
{
	return do_fopen(true, path, mode);
}

/* ---------- interceptors: access, stat, readlink, opendir ---------- */

static int do_faccessat(int dirfd, const char *path, int mode, int flags, bool plain)
{
	ensure_init();
	char out[PATH_MAX];
	int minor = -1;
	switch (classify(dirfd, path, out, sizeof(out), &minor)) {
	case P_REDIR:
	case P_PROPS:
		return real_faccessat(AT_FDCWD, out, mode, flags);
	case P_KFD:
	case P_RENDER:
		return (mode & X_OK) ? seterr(EACCES) : 0;
	default:
		return plain ? real_access(path, mode) : real_faccessat(dirfd, path, mode, flags);
	}
}

EXPORT int faccessat(int dirfd, const char *path, int mode, int flags)
{
	return do_faccessat(dirfd, path, mode, flags, false);
}

EXPORT int access(const char *path, int mode)
{
	return do_faccessat(AT_FDCWD, path, mode, 0, true);
}

_Static_assert(sizeof(struct stat) == sizeof(struct stat64), "struct stat and stat64 differ");

/* Fills st as a character device (kfd: minor 0; render: minor given). */
static int synth_stat(struct stat *st, int kind, int minor)
{
	int e = errno;
	if (r_fstatat(AT_FDCWD, "/dev/null", st, 0))
		memset(st, 0, sizeof(*st));
	errno = e;
	st->st_mode = S_IFCHR | 0666;
	st->st_size = 0;
	if (kind == KIND_KFD) {
		st->st_rdev = makedev(KFD_CHR_MAJOR, 0);
		st->st_ino = 0x6b6664;
	} else {
		st->st_rdev = makedev(DRM_CHR_MAJOR, (unsigned)minor);
		st->st_ino = 0x647200 + (unsigned)minor;
	}
	return 0;
}

static int emulated_fd_stat(int fd, struct stat *st)
{
	int k = fd_kind(fd);
	if (k != KIND_KFD && k != KIND_RENDER)
		return 1;
	struct frec f;
	k = ident_fd(fd, &f);
	if (!k)
		return 1;
	return synth_stat(st, k, k == KIND_RENDER && f.gpu >= 0 ? (int)E.gpu[f.gpu].minor : 0);
}

enum { S_STAT, S_STAT64, S_LSTAT, S_LSTAT64, S_FSTATAT, S_FSTATAT64,
       S_XSTAT, S_XSTAT64, S_LXSTAT, S_LXSTAT64, S_FXSTATAT, S_FXSTATAT64 };

static int call_real_stat(int v, int xstat_ver, int dirfd, const char *path, struct stat *st, int flags)
{
	switch (v) {
	case S_XSTAT:
		return real___xstat(xstat_ver, path, st);
	case S_XSTAT64:
		return real___xstat64(xstat_ver, path, (struct stat64 *)st);
	case S_LXSTAT:
		return real___lxstat(xstat_ver, path, st);
	case S_LXSTAT64:
		return real___lxstat64(xstat_ver, path, (struct stat64 *)st);
	case S_FXSTATAT:
		return real___fxstatat(xstat_ver, dirfd, path, st, flags);
	case S_FXSTATAT64:
		return real___fxstatat64(xstat_ver, dirfd, path, (struct stat64 *)st, flags);
	case S_STAT:
		return real_stat(path, st);
	case S_STAT64:
		return real_stat64(path, (struct stat64 *)st);
	case S_LSTAT:
		return real_lstat(path, st);
	case S_LSTAT64:
		return real_lstat64(path, (struct stat64 *)st);
	case S_FSTATAT:
		return real_fstatat(dirfd, path, st, flags);
	default:
		return real_fstatat64(dirfd, path, (struct stat64 *)st, flags);
	}
}

static bool empty_path(const char *p)
{
	return p && !*p;
}

static int do_stat(int v, int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	ensure_init();
	if (E.active && (flags & AT_EMPTY_PATH) && empty_path(path) && emulated_fd_stat(dirfd, st) == 0)
		return 0;
	char out[PATH_MAX];
	int minor = -1;
	switch (classify(dirfd, path, out, sizeof(out), &minor)) {
	case P_REDIR:
	case P_PROPS:
		return real_fstatat(AT_FDCWD, out, st, flags & ~AT_EMPTY_PATH);
	case P_KFD:
		return synth_stat(st, KIND_KFD, 0);
	case P_RENDER:
		return synth_stat(st, KIND_RENDER, minor);
	default:
		return call_real_stat(v, ver, dirfd, path, st, flags);
	}
}

EXPORT int stat(const char *restrict path, struct stat *restrict st)
{
	return do_stat(S_STAT, 0, AT_FDCWD, path, st, 0);
}

EXPORT int stat64(const char *restrict path, struct stat64 *restrict st)
{
	return do_stat(S_STAT64, 0, AT_FDCWD, path, (struct stat *)st, 0);
}

EXPORT int lstat(const char *restrict path, struct stat *restrict st)
{
	return do_stat(S_LSTAT, 0, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int lstat64(const char *restrict path, struct stat64 *restrict st)
{
	return do_stat(S_LSTAT64, 0, AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int fstatat(int dirfd, const char *restrict path, struct stat *restrict st, int flags)
{
	return do_stat(S_FSTATAT, 0, dirfd, path, st, flags);
}

EXPORT int fstatat64(int dirfd, const char *restrict path, struct stat64 *restrict st, int flags)
{
	return do_stat(S_FSTATAT64, 0, dirfd, path, (struct stat *)st, flags);
}

EXPORT int fstat(int fd, struct stat *st)
{
	ensure_init();
	if (E.active && emulated_fd_stat(fd, st) == 0)
		return 0;
	return real_fstat(fd, st);
}

EXPORT int fstat64(int fd, struct stat64 *st)
{
	ensure_init();
	if (E.active && emulated_fd_stat(fd, (struct stat *)st) == 0)
		return 0;
	return real_fstat64(fd, st);
}

EXPORT int __xstat(int ver, const char *path, struct stat *st)
{
	return do_stat(S_XSTAT, ver, AT_FDCWD, path, st, 0);
}

EXPORT int __xstat64(int ver, const char *path, struct stat64 *st)
{
	return do_stat(S_XSTAT64, ver, AT_FDCWD, path, (struct stat *)st, 0);
}

EXPORT int __lxstat(int ver, const char *path, struct stat *st)
{
	return do_stat(S_LXSTAT, ver, AT_FDCWD, path, st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int __lxstat64(int ver, const char *path, struct stat64 *st)
{
	return do_stat(S_LXSTAT64, ver, AT_FDCWD, path, (struct stat *)st, AT_SYMLINK_NOFOLLOW);
}

EXPORT int __fxstatat(int ver, int dirfd, const char *path, struct stat *st, int flags)
{
	return do_stat(S_FXSTATAT, ver, dirfd, path, st, flags);
}

EXPORT int __fxstatat64(int ver, int dirfd, const char *path, struct stat64 *st, int flags)
{
	return do_stat(S_FXSTATAT64, ver, dirfd, path, (struct stat *)st, flags);
}

EXPORT int __fxstat(int ver, int fd, struct stat *st)
{
	ensure_init();
	if (E.active && emulated_fd_stat(fd, st) == 0)
		return 0;
	return real___fxstat(ver, fd, st);
}

EXPORT int __fxstat64(int ver, int fd, struct stat64 *st)
{
	ensure_init();
	if (E.active && emulated_fd_stat(fd, (struct stat *)st) == 0)
		return 0;
	return real___fxstat64(ver, fd, st);
}

static void synth_statx(struct statx *sx, const struct stat *st)
{
	sx->stx_mode = (uint16_t)st->st_mode;
	sx->stx_size = 0;
	sx->stx_ino = st->st_ino;
	sx->stx_rdev_major = major(st->st_rdev);
	sx->stx_rdev_minor = minor(st->st_rdev);
}

EXPORT int statx(int dirfd, const char *restrict path, int flags, unsigned int mask, struct statx *restrict sx)
{
	ensure_init();
	if (!real_statx)
		return seterr(ENOSYS);
	struct stat st;
	if (E.active && (flags & AT_EMPTY_PATH) && empty_path(path) && emulated_fd_stat(dirfd, &st) == 0) {
		int r = real_statx(AT_FDCWD, "/dev/null", 0, mask, sx);
		if (r == 0)
			synth_statx(sx, &st);
		return r;
	}
	char out[PATH_MAX];
	int minor = -1;
	switch (classify(dirfd, path, out, sizeof(out), &minor)) {
	case P_REDIR:
	case P_PROPS:
		return real_statx(AT_FDCWD, out, flags, mask, sx);
	case P_KFD:
	case P_RENDER: {
		int r = real_statx(AT_FDCWD, "/dev/null", 0, mask, sx);
		if (r == 0) {
			synth_stat(&st, minor >= 0 ? KIND_RENDER : KIND_KFD, minor);
			synth_statx(sx, &st);
		}
		return r;
	}
	default:
		return real_statx(dirfd, path, flags, mask, sx);
	}
}

/* readlink of /proc/self/fd/N for an emulated fd names the device. */
static ssize_t fd_link(int dirfd, const char *path, char *buf, size_t len)
{
	char norm[PATH_MAX];
	if (!E.active || !path || !normalise(dirfd, path, norm, sizeof(norm)) || strncmp(norm, "/proc/", 6))
		return -2;
	const char *p = norm + 6;
	char pid[16];
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (!strncmp(p, "self/fd/", 8))
		p += 8;
	else if (!strncmp(p, pid, strlen(pid)) && !strncmp(p + strlen(pid), "/fd/", 4))
		p += strlen(pid) + 4;
	else
		return -2;
	if (!all_digits(p))
		return -2;
	int fd = atoi(p);
	int k = fd_kind(fd);
	if (k != KIND_KFD && k != KIND_RENDER)
		return -2;
	struct frec f;
	k = ident_fd(fd, &f);
	if (!k)
		return -2;
	char name[64];
	if (k == KIND_KFD)
		snprintf(name, sizeof(name), "/dev/kfd");
	else
		snprintf(name, sizeof(name), "/dev/dri/renderD%u", f.gpu >= 0 ? E.gpu[f.gpu].minor : 0);
	size_t n = strlen(name);
	if (n > len)
		n = len;
	memcpy(buf, name, n);
	return (ssize_t)n;
}

EXPORT ssize_t readlinkat(int dirfd, const char *restrict path, char *restrict buf, size_t len)
{
	ensure_init();
	ssize_t r = fd_link(dirfd, path, buf, len);
	if (r != -2)
		return r;
	char out[PATH_MAX];
	int minor = -1;
	int k = classify(dirfd, path, out, sizeof(out), &minor);
	if (k == P_REDIR || k == P_PROPS || k == P_RENDER)
		return real_readlinkat(AT_FDCWD, out, buf, len);
	if (k == P_KFD)
		return seterr(EINVAL);
	return real_readlinkat(dirfd, path, buf, len);
}

EXPORT ssize_t readlink(const char *restrict path, char *restrict buf, size_t len)
{
	ensure_init();
	ssize_t r = fd_link(AT_FDCWD, path, buf, len);
	if (r != -2)
		return r;
	char out[PATH_MAX];
	int minor = -1;
	int k = classify(AT_FDCWD, path, out, sizeof(out), &minor);
	if (k == P_REDIR || k == P_PROPS || k == P_RENDER)
		return real_readlink(out, buf, len);
	if (k == P_KFD)
		return seterr(EINVAL);
	return real_readlink(path, buf, len);
}

EXPORT DIR *opendir(const char *path)
{
	ensure_init();
	char out[PATH_MAX];
	int minor = -1;
	switch (classify(AT_FDCWD, path, out, sizeof(out), &minor)) {
	case P_REDIR:
	case P_PROPS:
		return real_opendir(out);
	case P_KFD:
	case P_RENDER:
		errno = ENOTDIR;
		return NULL;
	default:
		return real_opendir(path);
	}
}

/* ls -l and friends ask for extended attributes of what they list */
static const char *xattr_path(const char *path, char *out, size_t n, bool *kfd)
{
	ensure_init();
	int minor = -1;
	int k = classify(AT_FDCWD, path, out, n, &minor);
	*kfd = k == P_KFD;
	return (k == P_REDIR || k == P_PROPS || k == P_RENDER) ? out : path;
}

EXPORT ssize_t getxattr(const char *path, const char *name, void *value, size_t size)
{
	char out[PATH_MAX];
	bool kfd;
	const char *p = xattr_path(path, out, sizeof(out), &kfd);
	return kfd ? seterr(ENODATA) : real_getxattr(p, name, value, size);
}

EXPORT ssize_t lgetxattr(const char *path, const char *name, void *value, size_t size)
{
	char out[PATH_MAX];
	bool kfd;
	const char *p = xattr_path(path, out, sizeof(out), &kfd);
	return kfd ? seterr(ENODATA) : real_lgetxattr(p, name, value, size);
}

EXPORT ssize_t listxattr(const char *path, char *list, size_t size)
{
	char out[PATH_MAX];
	bool kfd;
	const char *p = xattr_path(path, out, sizeof(out), &kfd);
	return kfd ? 0 : real_listxattr(p, list, size);
}

EXPORT ssize_t llistxattr(const char *path, char *list, size_t size)
{
	char out[PATH_MAX];
	bool kfd;
	const char *p = xattr_path(path, out, sizeof(out), &kfd);
	return kfd ? 0 : real_llistxattr(p, list, size);
}

/* ---------- interceptors: ioctl, close, pread ---------- */

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	va_start(ap, req);
	void *arg = va_arg(ap, void *);
	va_end(ap);
	ensure_init();
	if (E.active) {
		int kind = fd_kind(fd);
		if (_IOC_TYPE(req) == AMDKFD_IOCTL_BASE || kind == KIND_KFD) {
			struct frec f;
			if (ident_fd(fd, &f) == KIND_KFD) {
				int r = kfd_ioctl(&f, req, arg);
				if (r < 0)
					return seterr(-r);
				return r;
			}
		}
		if (_IOC_TYPE(req) == PAGEMAP_SCAN_TYPE && _IOC_NR(req) == PAGEMAP_SCAN_NR) {
			bool pm = kind == KIND_PAGEMAP;
			if (!pm) {
				char link[64], buf[64];
				snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
				ssize_t n = rsys(SYS_readlinkat, AT_FDCWD, link, buf, sizeof(buf) - 1);
				if (n > 0) {
					buf[n] = '\0';
					pm = !strncmp(buf, "/proc/", 6) && n > 8 && !strcmp(buf + n - 8, "/pagemap");
				}
			}
			if (pm)
				return seterr(ENOTTY);   /* as a kernel before 6.7: callers fall back to pread */
		}
	}
	return real_ioctl(fd, req, arg);
}

EXPORT int close(int fd)
{
	ensure_init();
	if (fd_kind(fd)) {
		pthread_mutex_lock(&mu);
		for (size_t i = 0; i < npms; i++)
			if (pms[i].fd == fd) {
				pms[i] = pms[--npms];
				break;
			}
		fd_mark(fd, 0);
		pthread_mutex_unlock(&mu);
	}
	return real_close(fd);
}

static uint64_t fake_entry(uint64_t pfn, uint32_t gpu)
{
	uint64_t off = ((uint64_t)gpu << 36) + (pfn & 0xfffffffffULL) + 1;   /* a device "pfn" */
	return PM_SWAPPED | PM_EXCLUSIVE | ((off & ((1ULL << 50) - 1)) << 5) | SWP_DEVICE_WRITE_61;
}

/* A present coherent VRAM page keeps its entry, but with a frame number in
 * no memory block: the kernel's ZONE_DEVICE frames lie outside the memory
 * blocks of /sys/devices/system/memory, so a reader that maps frames to
 * nodes must ask move_pages (which says -ENOENT) rather than find the
 * frame of the RAM page standing in for VRAM.  Frames read as 0 (no
 * CAP_SYS_ADMIN) stay 0.  Only whole entries inside the read are changed. */
static void coherent_frame(unsigned char *tmp, uint64_t off, uint64_t len, uint64_t k, uint32_t gpu)
{
	const uint64_t pfn_mask = (1ULL << 55) - 1;
	uint64_t v;
	if (k * 8 < off || k * 8 + 8 > off + len)
		return;
	memcpy(&v, tmp + (k * 8 - off), 8);
	if (!(v & PM_PRESENT) || !(v & pfn_mask))
		return;
	v = (v & ~pfn_mask) | ((1ULL << 44) + ((uint64_t)gpu << 36) + (k & 0xfffffffffULL));
	memcpy(tmp + (k * 8 - off), &v, 8);
}

static ssize_t do_pread(int fd, void *buf, size_t n, uint64_t off, bool is64)
{
	ensure_init();
	if (!E.active || fd_kind(fd) != KIND_PAGEMAP || !n)
		return is64 ? real_pread64(fd, buf, n, (off64_t)off) : real_pread(fd, buf, n, (off_t)off);
	int pid = getpid();
	bool rewrite = false;
	struct stat st;
	int fe = errno;
	bool stat_ok = r_fstat(fd, &st) == 0;
	errno = fe;
	pthread_mutex_lock(&mu);
	for (size_t i = 0; i < npms; i++) {
		if (pms[i].fd != fd)
			continue;
		if (!stat_ok || st.st_dev != pms[i].dev || st.st_ino != pms[i].ino) {
			pms[i] = pms[--npms];   /* the fd was reused behind our back */
			fd_mark(fd, 0);
		} else {
			rewrite = pms[i].pid == pid && ht_n > 0;
		}
		break;
	}
	pthread_mutex_unlock(&mu);
	if (!rewrite)
		return is64 ? real_pread64(fd, buf, n, (off64_t)off) : real_pread(fd, buf, n, (off_t)off);
	/* read into a private buffer (not malloc: it is written under mu): the
	 * caller's may itself be an emulated VRAM page */
	pthread_mutex_lock(&mu);
	unsigned char *tmp = ialloc(n);
	pthread_mutex_unlock(&mu);
	if (!tmp)
		return seterr(ENOMEM);
	ssize_t r = is64 ? real_pread64(fd, tmp, n, (off64_t)off) : real_pread(fd, tmp, n, (off_t)off);
	if (r > 0) {
		pthread_mutex_lock(&mu);
		uint64_t first = off / 8, last = (off + (uint64_t)r - 1) / 8;
		for (uint64_t k = first; k <= last && ht_n; k++) {
			struct vpage *e = ht_get(k);
			if (!e)
				continue;
			if (E.gpu[e->gpu - 1].coherent) {
				coherent_frame(tmp, off, (uint64_t)r, k, e->gpu);
				continue;
			}
			uint64_t v = fake_entry(k, e->gpu);
			unsigned char b[8];
			memcpy(b, &v, 8);
			for (uint64_t byte = k * 8; byte < k * 8 + 8; byte++)
				if (byte >= off && byte < off + (uint64_t)r)
					tmp[byte - off] = b[byte - k * 8];
		}
		pthread_mutex_unlock(&mu);
		memcpy(buf, tmp, (size_t)r);
	}
	int e = errno;
	pthread_mutex_lock(&mu);
	ifree(tmp);
	pthread_mutex_unlock(&mu);
	errno = e;
	return r;
}

EXPORT ssize_t pread(int fd, void *buf, size_t n, off_t off)
{
	return do_pread(fd, buf, n, (uint64_t)off, false);
}

EXPORT ssize_t pread64(int fd, void *buf, size_t n, off64_t off)
{
	return do_pread(fd, buf, n, (uint64_t)off, true);
}

/* ---------- interceptors: munmap, madvise, mremap ---------- */

EXPORT int munmap(void *addr, size_t len)
{
	ensure_init();
	uint64_t a = (uintptr_t)addr, id = 0;
	if (!E.active || !(atomic_load(&have_state) || atomic_load(&registered)) || (a & (PG - 1)) || !len)
		return real_munmap(addr, len);
	uint64_t b = a + ((len + PG - 1) & ~(PG - 1));
	pthread_rwlock_rdlock(&mm_lock);
	pthread_mutex_lock(&mu);
	if (P.pid == getpid()) {
		drop_state_locked(a, b, true);
		id = expect_add_locked(0, UFFD_EVENT_UNMAP, a, b);
	}
	pthread_mutex_unlock(&mu);
	int r = real_munmap(addr, len);
	int e = errno;
	if (id) {
		pthread_mutex_lock(&mu);
		expect_drop_locked(id);
		pthread_mutex_unlock(&mu);
	}
	pthread_rwlock_unlock(&mm_lock);
	errno = e;
	return r;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	ensure_init();
	uint64_t a = (uintptr_t)addr;
	bool zap = advice == MADV_DONTNEED || advice == MADV_DONTNEED_LOCKED;
	if (!E.active || !(atomic_load(&have_state) || atomic_load(&registered)) || (a & (PG - 1)) || !len ||
	    !(zap || advice == MADV_FREE || advice == MADV_REMOVE))
		return real_madvise(addr, len, advice);
	/* pages about to vanish: not while a SET is reading them */
	pthread_rwlock_rdlock(&mm_lock);
	if (zap) {
		/* the kernel frees device-private pages on a zap: the data is gone */
		pthread_mutex_lock(&mu);
		if (P.pid == getpid())
			drop_state_locked(a, a + ((len + PG - 1) & ~(PG - 1)), false);
		pthread_mutex_unlock(&mu);
	}
	int r = real_madvise(addr, len, advice);
	int e = errno;
	pthread_rwlock_unlock(&mm_lock);
	errno = e;
	return r;
}

EXPORT void *mremap(void *old, size_t olen, size_t nlen, int flags, ...)
{
	void *want = NULL;
	if (flags & MREMAP_FIXED) {
		va_list ap;
		va_start(ap, flags);
		want = va_arg(ap, void *);
		va_end(ap);
	}
	ensure_init();
	uint64_t a = (uintptr_t)old, id = 0;
	uint64_t ol = (olen + PG - 1) & ~(PG - 1), nl = (nlen + PG - 1) & ~(PG - 1);
	bool track = E.active && (atomic_load(&have_state) || atomic_load(&registered)) && !(a & (PG - 1)) && olen;
	if (!track)
		return real_mremap(old, olen, nlen, flags, want);
	pthread_rwlock_rdlock(&mm_lock);
	{
		/* device-private pages come back first, so that the move keeps their data */
		pthread_mutex_lock(&mu);
		if (P.pid == getpid()) {
			all_to_sys(a, a + ol);
			id = expect_add_locked(0, UFFD_EVENT_REMAP, a, 0);
			if (nl < ol)
				expect_add_locked(id, UFFD_EVENT_UNMAP, a + nl, a + ol);
			if (flags & MREMAP_FIXED)
				expect_add_locked(id, UFFD_EVENT_UNMAP, (uintptr_t)want, (uintptr_t)want + nl);
		}
		pthread_mutex_unlock(&mu);
	}
	void *r = real_mremap(old, olen, nlen, flags, want);
	int e = errno;
	if (id) {
		pthread_mutex_lock(&mu);
		expect_drop_locked(id);
		if (r != MAP_FAILED && P.pid == getpid()) {
			if (r != old) {
				drop_state_locked(a, a + ol, true);
				drop_state_locked((uintptr_t)r, (uintptr_t)r + nl, true);
			} else if (nl < ol) {
				drop_state_locked(a + nl, a + ol, true);
			}
		}
		pthread_mutex_unlock(&mu);
	}
	pthread_rwlock_unlock(&mm_lock);
	errno = e;
	return r;
}

/* ---------- interceptor: syscall(SYS_move_pages) ----------
 *
 * move_pages(pid, count, pages, nodes = NULL, status) reports -ENOENT for a
 * ZONE_DEVICE page (device-private or device-coherent): 6.1's
 * do_pages_stat_array sets a node only for pages outside ZONE_DEVICE, and
 * an emulated device-private page, being unpopulated, would otherwise show
 * -EFAULT and a coherent one its system node.  With target nodes, such
 * pages are not moved either (-ENOENT), so they are left out of the call. */

static long emu_move_pages(long pid, unsigned long count, void **pages, const int *nodes, int *status, long flags)
{
	int me = getpid();
	if ((pid && pid != me) || !count || count > (1UL << 28))
		return rsys(SYS_move_pages, pid, count, pages, nodes, status, flags);
	pthread_mutex_lock(&mu);
	unsigned char *mark = (P.pid == me && ht_n) ? ialloc(count) : NULL;
	pthread_mutex_unlock(&mu);
	if (!mark)
		return rsys(SYS_move_pages, pid, count, pages, nodes, status, flags);
	size_t nmark = 0;
	long r = 0;
	for (size_t i = 0; i < count; i += 256) {
		uint64_t addrs[256];
		size_t k = count - i < 256 ? count - i : 256;
		if (uread(addrs, pages + i, k * sizeof(void *))) {
			r = seterr(EFAULT);
			goto out;
		}
		pthread_mutex_lock(&mu);
		for (size_t j = 0; j < k; j++)
			if (ht_get(addrs[j] / PG)) {
				mark[i + j] = 1;
				nmark++;
			}
		pthread_mutex_unlock(&mu);
	}
	if (!nmark) {
		r = rsys(SYS_move_pages, pid, count, pages, nodes, status, flags);
	} else if (!nodes) {
		r = rsys(SYS_move_pages, pid, count, pages, nodes, status, flags);
		if (r >= 0)
			for (size_t i = 0; i < count; i++)
				if (mark[i])
					status[i] = -ENOENT;
	} else {
		pthread_mutex_lock(&mu);
		void **p2 = ialloc(count * sizeof(void *));
		int *n2 = ialloc(count * sizeof(int)), *s2 = ialloc(count * sizeof(int));
		pthread_mutex_unlock(&mu);
		if (!p2 || !n2 || !s2) {
			r = seterr(ENOMEM);
		} else {
			size_t c2 = 0;
			for (size_t i = 0; i < count; i++)
				if (!mark[i]) {
					p2[c2] = pages[i];
					n2[c2] = nodes[i];
					c2++;
				}
			r = c2 ? rsys(SYS_move_pages, pid, c2, p2, n2, s2, flags) : 0;
			if (r >= 0)
				for (size_t i = 0, j = 0; i < count; i++)
					status[i] = mark[i] ? -ENOENT : s2[j++];
		}
		int e = errno;
		pthread_mutex_lock(&mu);
		ifree(p2);
		ifree(n2);
		ifree(s2);
		pthread_mutex_unlock(&mu);
		errno = e;
	}
out:;
	int e = errno;
	pthread_mutex_lock(&mu);
	ifree(mark);
	pthread_mutex_unlock(&mu);
	errno = e;
	return r;
}

/* A long-term pin (FOLL_LONGTERM: io_uring fixed buffers) cannot hold a
 * ZONE_DEVICE page: GUP migrates device-coherent pages to system memory
 * first (device-private ones fault back by themselves).  The emulator sees
 * io_uring buffer registrations made through syscall() and does the same:
 * the coherent VRAM pages under the buffers leave VRAM and get new frames. */
static void longterm_pin(const struct iovec *uiov, unsigned long n)
{
	for (unsigned long i = 0; i < n && i < 65536; i++) {
		struct iovec v;
		if (uread(&v, uiov + i, sizeof(v)))
			return;   /* the real call reports EFAULT */
		uint64_t a = (uintptr_t)v.iov_base & ~(PG - 1), b = ((uintptr_t)v.iov_base + v.iov_len + PG - 1) & ~(PG - 1);
		if (!v.iov_base || b <= a)
			continue;
		pthread_mutex_lock(&mu);
		size_t np;
		uint64_t *list = ht_collect(a / PG, b / PG, &np);
		size_t k = 0;
		for (size_t j = 0; j < np; j++) {
			struct vpage *e = ht_get(list[j]);
			if (e && E.gpu[e->gpu - 1].coherent) {
				vram_forget(e);
				list[k++] = list[j];
			}
		}
		int fd = k ? self_fd(&memfd_self, &memfd_pid, "/proc/self/mem", O_RDWR) : -1;
		logf_("long-term pin of [%#llx, %#llx): %zu coherent VRAM page(s) leave VRAM", (unsigned long long)a,
		      (unsigned long long)b, k);
		update_have_state();
		pthread_mutex_unlock(&mu);
		/* Each page gets a new frame with the same contents: copied out,
		 * zapped, and written back after fresh pages have taken the freed
		 * frames (the page allocator would hand the same one back). */
		enum { BATCH = 64 };
		pthread_mutex_lock(&mu);
		char *save = k ? ialloc(BATCH * PG) : NULL, *hold = k ? ialloc(BATCH * PG) : NULL;
		pthread_mutex_unlock(&mu);
		for (size_t j = 0; j < k && fd >= 0 && save && hold; j += BATCH) {
			size_t m = k - j < BATCH ? k - j : BATCH;
			bool ok[BATCH];
			for (size_t q = 0; q < m; q++) {
				uint64_t addr = list[j + q] * PG;
				ok[q] = r_pread(fd, save + q * PG, PG, addr) == (ssize_t)PG && r_madvise(addr, PG, MADV_DONTNEED) == 0;
			}
			for (size_t q = 0; q < m; q++)
				hold[q * PG] = 1;
			for (size_t q = 0; q < m; q++)
				if (ok[q])
					r_pwrite(fd, save + q * PG, PG, list[j + q] * PG);
			r_madvise((uintptr_t)hold, m * PG, MADV_DONTNEED);
		}
		pthread_mutex_lock(&mu);
		ifree(save);
		ifree(hold);
		ifree(list);
		pthread_mutex_unlock(&mu);
	}
}

static void io_uring_register_hook(unsigned op, uintptr_t arg, unsigned long nargs)
{
	logf_("io_uring_register op %u", op);
	if (op == IORING_REGISTER_BUFFERS) {
		longterm_pin((const struct iovec *)arg, nargs);
	} else if (op == IORING_REGISTER_BUFFERS2 && nargs == sizeof(struct io_uring_rsrc_register)) {
		struct io_uring_rsrc_register r;
		if (!uread(&r, (void *)arg, sizeof(r)))
			longterm_pin((const struct iovec *)(uintptr_t)r.data, r.nr);
	} else if (op == IORING_REGISTER_BUFFERS_UPDATE && nargs == sizeof(struct io_uring_rsrc_update2)) {
		struct io_uring_rsrc_update2 u;
		if (!uread(&u, (void *)arg, sizeof(u)))
			longterm_pin((const struct iovec *)(uintptr_t)u.data, u.nr);
	}
}

/* Like libc's, it reads six arguments whatever the caller passed: the last
 * ones may lie past the caller's frame, which an ASan build must not check. */
EXPORT __attribute__((no_sanitize_address)) long syscall(long nr, ...)
{
	va_list ap;
	va_start(ap, nr);
	long a = va_arg(ap, long), b = va_arg(ap, long), c = va_arg(ap, long);
	long d = va_arg(ap, long), e = va_arg(ap, long), f = va_arg(ap, long);
	va_end(ap);
	if (nr == SYS_io_uring_register && atomic_load(&active_flag) && atomic_load(&have_state))
		io_uring_register_hook((unsigned)b, (uintptr_t)c, (unsigned long)d);
	if (nr == SYS_move_pages && atomic_load(&active_flag) && atomic_load(&have_state))
		return emu_move_pages(a, (unsigned long)b, (void **)(uintptr_t)c, (const int *)(uintptr_t)d,
				      (int *)(uintptr_t)e, f);
	return rsys(nr, a, b, c, d, e, f);
}

/* ---------- fork ---------- */

struct span {
	uint64_t s, e;
};

/* The VMAs whose smaps VmFlags hold any of the flags (" wf", " dc", ...).
 * Raw mmaps only: the child's copy of the arena may have been mid-update. */
#define WIPE_MAX 65536
static struct span *flag_spans(size_t *n, const char *const *flags)
{
	*n = 0;
	int fd = r_openat(AT_FDCWD, "/proc/self/smaps", O_RDONLY | O_CLOEXEC, 0);
	if (fd < 0)
		return NULL;
	size_t cap = 1 << 20, len = 0;
	char *buf = r_mmap(cap);
	struct span *v = r_mmap(WIPE_MAX * sizeof(struct span));
	if (!buf || !v) {
		r_close(fd);
		if (buf)
			r_munmap(buf, cap);
		if (v)
			r_munmap(v, WIPE_MAX * sizeof(struct span));
		return NULL;
	}
	for (;;) {
		if (len + 4096 > cap) {
			char *nb = r_mmap(cap * 2);
			if (!nb)
				break;
			memcpy(nb, buf, len);
			r_munmap(buf, cap);
			buf = nb;
			cap *= 2;
		}
		ssize_t k = r_read(fd, buf + len, cap - len - 1);
		if (k <= 0)
			break;
		len += (size_t)k;
	}
	r_close(fd);
	buf[len] = '\0';
	uint64_t cs = 0, ce = 0;
	for (char *l = buf; l && *l;) {
		char *nl = strchr(l, '\n');
		if (nl)
			*nl = '\0';
		char *p;
		uint64_t x = strtoull(l, &p, 16);
		if (p != l && *p == '-') {
			cs = x;
			ce = strtoull(p + 1, NULL, 16);
		} else if (!strncmp(l, "VmFlags:", 8) && *n < WIPE_MAX) {
			bool hit = false;
			for (int f = 0; flags[f]; f++)
				hit |= strstr(l, flags[f]) != NULL;
			if (hit) {
				v[*n].s = cs;
				v[*n].e = ce;
				(*n)++;
			}
		}
		l = nl ? nl + 1 : NULL;
	}
	r_munmap(buf, cap);
	return v;
}

static void at_prepare(void)
{
	if (!E.active)
		return;
	pthread_rwlock_wrlock(&mm_lock);
	pthread_mutex_lock(&mu);
	atomic_store(&forking, 1);
}

static bool in_spans(const struct span *w, size_t n, uint64_t addr)
{
	for (size_t j = 0; j < n; j++)
		if (addr >= w[j].s && addr < w[j].e)
			return true;
	return false;
}

/* The parent after fork, XNACK off: fork write-protected the parent's
 * copy-on-write pages, an invalidation KFD answers by evicting the range;
 * its restore worker maps the range for the GPU again with write access
 * (readonly comes from the VMA), which breaks the sharing of every page
 * in the parent at once: a coherent VRAM page becomes a system-memory copy
 * (kfd_svm.c, Linux 6.1-6.12).  Pages of VMAs the child did not get as
 * copy-on-write (MADV_DONTFORK: "dc", MADV_WIPEONFORK: "wf", shared) and of
 * ranges no GPU maps keep their place.  XNACK on: nothing happens until the
 * GPU faults, which this emulator has no GPU to do. */
static void fork_restore_locked(void)
{
	if (P.xnack || !P.pid || !ht_n)
		return;
	static const char *const not_cow[] = { " dc", " wf", " sh", NULL };
	size_t nw;
	struct span *w = flag_spans(&nw, not_cow);
	if (!w)
		return;
	size_t n;
	uint64_t *list = ht_collect(0, UINT64_MAX / PG, &n);
	for (size_t i = 0; list && i < n; i++) {
		struct vpage *e = ht_get(list[i]);
		uint64_t addr = list[i] * PG;
		if (!e || !E.gpu[e->gpu - 1].coherent || in_spans(w, nw, addr))
			continue;
		struct rng *r = range_find(addr);
		bool mapped = false;
		for (int j = 0; r && j < E.ngpu; j++)
			mapped |= r->a.acc[j] != ACC_NONE;
		if (mapped)
			vram_forget(e);
	}
	ifree(list);
	r_munmap(w, WIPE_MAX * sizeof(struct span));
}

static void at_parent(void)
{
	if (!E.active)
		return;
	fork_restore_locked();
	atomic_store(&forking, 0);
	while (atomic_load(&handler_unlocked))
		sched_yield();
	pthread_mutex_unlock(&mu);
	pthread_rwlock_unlock(&mm_lock);
}

/* The child: the parent's KFD fds answer EBADF (their opener is the parent);
 * device-private VRAM pages are written into the child's own pages now (its
 * VMAs lost the uffd registration), as the kernel's copy-on-write of a
 * device-private entry would fault them back on access; the child starts
 * without a KFD process. */
static void at_child(void)
{
	if (!E.active)
		return;
	if (memfd_self >= 0)
		r_close(memfd_self);
	memfd_self = -1;
	if (pmfd_self >= 0)
		r_close(pmfd_self);
	pmfd_self = -1;
	if (ht_n) {
		size_t nw;
		static const char *const wipe[] = { " wf", NULL };
		struct span *w = flag_spans(&nw, wipe);
		for (size_t i = 0; i < ht_cap; i++) {
			struct vpage *e = &ht[i];
			if (!e->gpu || !e->shadow || E.gpu[e->gpu - 1].coherent)
				continue;
			uint64_t addr = e->pfn * PG;
			bool wiped = false;
			for (size_t j = 0; j < nw; j++)
				if (addr >= w[j].s && addr < w[j].e)
					wiped = true;
			if (!wiped)
				mem_write(addr, e->shadow);
		}
		if (w)
			r_munmap(w, WIPE_MAX * sizeof(struct span));
	}
	/* Drop the parent's state wholesale: the arena goes, with everything in
	 * it, and a new one is made.  The file tables (which the fault handler
	 * never touches, so they are consistent) move over: the parent's kfd
	 * files must keep answering EBADF. */
	char *old_arena = arena;
	size_t old_size = arena_size;
	struct frec *of = files;
	struct pmrec *op = pms;
	size_t onf = nfiles, onp = npms;
	arena = NULL;
	arena_size = arena_top = 0;
	arena_nfree = 0;
	files = NULL;
	nfiles = capfiles = 0;
	pms = NULL;
	npms = cappms = 0;
	if (onf && grow((void **)&files, &capfiles, onf, sizeof(*files))) {
		memcpy(files, of, onf * sizeof(*files));
		nfiles = onf;
	}
	if (onp && grow((void **)&pms, &cappms, onp, sizeof(*pms))) {
		memcpy(pms, op, onp * sizeof(*pms));
		npms = onp;
	}
	if (old_arena)
		r_munmap(old_arena, old_size);
	ht = NULL;
	ht_cap = ht_n = 0;
	chunks = NULL;
	shadow_free_list = NULL;
	rv = NULL;
	rn = rcap = 0;
	for (int i = 0; i < E.ngpu; i++)
		E.gpu[i].used = 0;
	memset(&P, 0, sizeof(P));
	memset(expects, 0, sizeof(expects));
	atomic_store(&forking, 0);
	atomic_store(&handler_unlocked, 0);
	if (uffd >= 0)
		r_close(uffd);
	uffd = -1;
	uffd_state = 0;
	uffd_thread = false;
	atomic_store(&registered, 0);
	update_have_state();
	pthread_mutex_init(&mu, NULL);
	pthread_rwlock_init(&mm_lock, NULL);
}

__attribute__((constructor)) static void kfdemu_ctor(void)
{
	ensure_init();
	if (E.active)
		pthread_atfork(at_prepare, at_parent, at_child);
}

/* ---------- control API ---------- */

EXPORT int kfdemu_active(void)
{
	ensure_init();
	return E.active;
}

EXPORT int kfdemu_placement_supported(void)
{
	ensure_init();
	if (!E.active)
		return 0;
	pthread_mutex_lock(&mu);
	bool ok = ensure_uffd_locked();
	pthread_mutex_unlock(&mu);
	return ok;
}

EXPORT int kfdemu_page_location(const void *addr)
{
	ensure_init();
	if (!E.active)
		return -1;
	uint64_t a = (uintptr_t)addr;
	int r = -1;
	pthread_mutex_lock(&mu);
	if (P.pid == getpid()) {
		struct vpage *e = ht_get(a / PG);
		if (e)
			r = (int)E.gpu[e->gpu - 1].gpu_id;
		else if (range_find(a))
			r = 0;
	}
	pthread_mutex_unlock(&mu);
	return r;
}

EXPORT long kfdemu_faultbacks(void)
{
	return atomic_load(&faultbacks);
}

EXPORT void kfdemu_fail(unsigned nr, int nth, int err)
{
	ensure_init();
	if (nr >= NR_END)
		return;
	pthread_mutex_lock(&mu);
	fail_n[nr] = nth > 0 ? nth : 0;
	fail_err[nr] = err;
	pthread_mutex_unlock(&mu);
}

EXPORT long kfdemu_calls(unsigned nr)
{
	if (nr >= NR_END)
		return 0;
	pthread_mutex_lock(&mu);
	long c = calls[nr];
	pthread_mutex_unlock(&mu);
	return c;
}

EXPORT int kfdemu_last_svm_nattr(void)
{
	return atomic_load(&last_nattr);
}
