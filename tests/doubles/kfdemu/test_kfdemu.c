/* SPDX-License-Identifier: MIT */
/*
 * Tests of the KFD emulator (libkfdemu.so), run with
 *   LD_PRELOAD=libkfdemu.so KFDEMU_ROOT=tests/data/kfd-mi210 test_kfdemu
 * Plain C, linked against glibc only; the emulator's control API is reached
 * with dlsym(RTLD_DEFAULT).  Exit 0 pass, 1 fail, 77 skip.
 *
 * The other trees are checked by re-executing this program with another
 * KFDEMU_ROOT (siblings of the given one): --rx7900 (no XNACK), --xgmi
 * (two device-coherent GPUs), --apu (no VRAM), --nosvm (KFDEMU_NO_SVM=1),
 * --nouffd (KFDEMU_NO_UFFD=1: no placement).
 */
#undef _FORTIFY_SOURCE
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
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
#include <sys/wait.h>
#include <unistd.h>

#include <linux/io_uring.h>
#include <linux/kfd_ioctl.h>
#include <sys/uio.h>

#define MiB (1UL << 20)
#define PGSZ 4096UL
#define UNDEF KFD_IOCTL_SVM_LOCATION_UNDEFINED

static int failures, checks;
static const char *mode_name = "main";

#define CHECK(cond, ...)                                                                    \
	do {                                                                                \
		checks++;                                                                   \
		if (!(cond)) {                                                              \
			failures++;                                                         \
			fprintf(stderr, "FAIL [%s] %s:%d: %s: ", mode_name, __FILE__, __LINE__, #cond); \
			fprintf(stderr, __VA_ARGS__);                                       \
			fputc('\n', stderr);                                                \
		}                                                                           \
	} while (0)

static int (*api_active)(void);
static int (*api_placement)(void);
static int (*api_location)(const void *);
static long (*api_faultbacks)(void);
static void (*api_fail)(unsigned, int, int);
static long (*api_calls)(unsigned);
static int (*api_last_nattr)(void);

static bool placement;

/* ---------- helpers ---------- */

static int kfd_version(int fd, uint32_t *major, uint32_t *minor)
{
	struct kfd_ioctl_get_version_args v = { 0, 0 };
	int r = ioctl(fd, AMDKFD_IOC_GET_VERSION, &v);
	if (r < 0)
		return -errno;
	*major = v.major_version;
	*minor = v.minor_version;
	return 0;
}

static int acquire(int kfd, int drm_fd, uint32_t gpu)
{
	struct kfd_ioctl_acquire_vm_args a = { .drm_fd = (uint32_t)drm_fd, .gpu_id = gpu };
	return ioctl(kfd, AMDKFD_IOC_ACQUIRE_VM, &a) < 0 ? -errno : 0;
}

static int xnack(int kfd, int32_t *mode)
{
	struct kfd_ioctl_set_xnack_mode_args a = { .xnack_enabled = *mode };
	int r = ioctl(kfd, AMDKFD_IOC_SET_XNACK_MODE, &a);
	if (r < 0)
		return -errno;
	*mode = a.xnack_enabled;
	return 0;
}

static int64_t available(int kfd, uint32_t gpu)
{
	struct kfd_ioctl_get_available_memory_args a = { .gpu_id = gpu };
	if (ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &a) < 0)
		return -errno;
	return (int64_t)a.available;
}

/* The size-encoded SVM call, as libhsakmt makes it. */
static int svm(int kfd, uint32_t op, const void *start, size_t size, struct kfd_ioctl_svm_attribute *at, uint32_t nattr)
{
	size_t sz = sizeof(struct kfd_ioctl_svm_args) + nattr * sizeof(*at);
	struct kfd_ioctl_svm_args *a = calloc(1, sz);
	if (!a)
		return -ENOMEM;
	a->start_addr = (uintptr_t)start;
	a->size = size;
	a->op = op;
	a->nattr = nattr;
	if (nattr)
		memcpy(a->attrs, at, nattr * sizeof(*at));
	unsigned long cmd = AMDKFD_IOC_SVM + ((unsigned long)(nattr * sizeof(*at)) << _IOC_SIZESHIFT);
	int r = ioctl(kfd, cmd, a);
	int e = errno;
	if (nattr)
		memcpy(at, a->attrs, nattr * sizeof(*at));
	free(a);
	return r < 0 ? -e : 0;
}

static int set1(int kfd, const void *p, size_t n, uint32_t type, uint32_t value)
{
	struct kfd_ioctl_svm_attribute a = { type, value };
	return svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, p, n, &a, 1);
}

static uint32_t get1(int kfd, const void *p, size_t n, uint32_t type, uint32_t value)
{
	struct kfd_ioctl_svm_attribute a = { type, value };
	int r = svm(kfd, KFD_IOCTL_SVM_OP_GET_ATTR, p, n, &a, 1);
	if (r)
		return 0xdeadbeef;
	return type == KFD_IOCTL_SVM_ATTR_ACCESS ? a.type : a.value;
}

static size_t slurp(const char *path, char *buf, size_t n)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t k = read(fd, buf, n - 1);
	close(fd);
	if (k < 0)
		k = 0;
	buf[k] = '\0';
	return (size_t)k;
}

static uint64_t prop(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *l = text; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL)
		if (!strncmp(l, key, kl) && l[kl] == ' ')
			return strtoull(l + kl + 1, NULL, 0);
	return UINT64_MAX;
}

static void *map_aligned(size_t size, size_t align)
{
	size_t span = size + align;
	unsigned char *p = mmap(NULL, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return NULL;
	uintptr_t a = ((uintptr_t)p + align - 1) & ~(uintptr_t)(align - 1);
	if (a > (uintptr_t)p)
		munmap(p, a - (uintptr_t)p);
	size_t tail = (uintptr_t)p + span - (a + size);
	if (tail)
		munmap((void *)(a + size), tail);
	return (void *)a;
}

static unsigned char pat(size_t i)
{
	return (unsigned char)(i * 7 + i / PGSZ + 1);
}

static void fill(unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		b[i] = pat(i);
}

/* First offset in [from, to) whose byte differs from the pattern, or SIZE_MAX. */
static size_t verify(const unsigned char *b, size_t from, size_t to)
{
	for (size_t i = from; i < to; i++)
		if (b[i] != pat(i))
			return i;
	return SIZE_MAX;
}

static bool pagemap_entries(const void *p, size_t npages, uint64_t *out)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	ssize_t n = pread(fd, out, npages * 8, (off_t)((uintptr_t)p / PGSZ * 8));
	close(fd);
	return n == (ssize_t)(npages * 8);
}

/* move_pages(2) asking where each page is (nodes = NULL) */
static long page_status(void *p, int *status, unsigned long n, const int *nodes)
{
	void *pages[16];
	for (unsigned long i = 0; i < n && i < 16; i++)
		pages[i] = (char *)p + i * PGSZ;
	return syscall(SYS_move_pages, 0, n, pages, nodes, status, 0);
}

/* Registers [p, p+len) as an io_uring fixed buffer (a long-term pin);
 * returns the ring fd, or -errno. */
static int uring_pin(void *p, size_t len)
{
	struct io_uring_params prm;
	memset(&prm, 0, sizeof(prm));
	int fd = (int)syscall(__NR_io_uring_setup, 1, &prm);
	if (fd < 0)
		return -errno;
	struct iovec iov = { p, len };
	if (syscall(__NR_io_uring_register, fd, IORING_REGISTER_BUFFERS, &iov, 1) < 0) {
		int e = errno;
		close(fd);
		return -e;
	}
	return fd;
}

#define PM_PRESENT (1ULL << 63)
#define PM_SWAPPED (1ULL << 62)

static int open_kfd(void)
{
	int fd = open("/dev/kfd", O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open /dev/kfd: %s", strerror(errno));
	return fd;
}

static int open_render(unsigned minor)
{
	char path[64];
	snprintf(path, sizeof(path), "/dev/dri/renderD%u", minor);
	int fd = open(path, O_RDWR | O_CLOEXEC);
	CHECK(fd >= 0, "open %s: %s", path, strerror(errno));
	return fd;
}

/* ---------- main tree (kfd-mi210) ---------- */

static const uint32_t MI210 = 51238;

static void t_version_and_files(int kfd)
{
	uint32_t maj = 0, min = 0;
	CHECK(kfd_version(kfd, &maj, &min) == 0 && maj == 1 && min == 11, "GET_VERSION %u.%u", maj, min);
	/* a second open: another fd, same KFD process */
	int k2 = open("/dev/kfd", O_RDWR);
	CHECK(k2 >= 0 && k2 != kfd, "second open %d", k2);
	CHECK(kfd_version(k2, &maj, &min) == 0, "GET_VERSION on the second fd");
	int d = dup(k2);
	CHECK(kfd_version(d, &maj, &min) == 0, "GET_VERSION on a dup()ed fd");
	close(d);
	close(k2);
	CHECK(kfd_version(kfd, &maj, &min) == 0, "first fd still works after closing the second");
	struct stat st;
	CHECK(stat("/dev/kfd", &st) == 0 && S_ISCHR(st.st_mode), "stat /dev/kfd");
	CHECK(fstat(kfd, &st) == 0 && S_ISCHR(st.st_mode), "fstat of the kfd fd");
	CHECK(access("/dev/kfd", R_OK | W_OK) == 0, "access /dev/kfd: %s", strerror(errno));
	CHECK(faccessat(AT_FDCWD, "/dev/kfd", F_OK, 0) == 0, "faccessat /dev/kfd");
	char link[64], buf[64];
	snprintf(link, sizeof(link), "/proc/self/fd/%d", kfd);
	ssize_t n = readlink(link, buf, sizeof(buf) - 1);
	CHECK(n == 8 && !memcmp(buf, "/dev/kfd", 8), "readlink of the kfd fd: %.*s", (int)(n > 0 ? n : 0), buf);
	/* libcoherent's way: openat() relative to a directory fd of "/" */
	int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int k3 = openat(root, "dev/kfd", O_RDWR | O_CLOEXEC);
	CHECK(k3 >= 0 && kfd_version(k3, &maj, &min) == 0, "openat(rootfd, \"dev/kfd\")");
	if (k3 >= 0)
		close(k3);
	int p = openat(root, "dev/kfd", O_PATH | O_CLOEXEC);
	CHECK(p >= 0, "O_PATH open of dev/kfd (existence probe)");
	if (p >= 0)
		close(p);
	close(root);
	/* bad commands */
	struct kfd_ioctl_get_version_args v;
	CHECK(ioctl(kfd, _IOC(_IOC_READ, 'K', 0x01, 4), &v) < 0 && errno == EINVAL, "GET_VERSION with size 4: %s", strerror(errno));
	CHECK(ioctl(kfd, _IOWR('K', 0x01, struct kfd_ioctl_get_version_args), &v) < 0 && errno == EINVAL,
	      "GET_VERSION with the wrong direction");
	CHECK(ioctl(kfd, _IOWR('K', 0x30, struct kfd_ioctl_get_version_args), &v) < 0 && errno == ENOTTY, "nr 0x30: ENOTTY");
	CHECK(ioctl(kfd, _IOWR('K', 0x00, struct kfd_ioctl_get_version_args), &v) < 0 && errno == ENOTTY, "nr 0x00: ENOTTY");
	CHECK(ioctl(kfd, _IOR('J', 0x01, struct kfd_ioctl_get_version_args), &v) < 0 && errno == ENOTTY, "type 'J': ENOTTY");
	CHECK(ioctl(kfd, AMDKFD_IOC_GET_PROCESS_APERTURES_NEW, &v) < 0 && errno == EINVAL, "unemulated ioctl: EINVAL");
	CHECK(ioctl(kfd, AMDKFD_IOC_GET_VERSION, (void *)16) < 0 && errno == EFAULT, "bad pointer: EFAULT");
	/* other files pass through */
	CHECK(slurp("/proc/self/status", buf, sizeof(buf)) > 0, "/proc/self/status passes through");
}

static void t_topology(void)
{
	char buf[4096];
	CHECK(slurp("/sys/class/kfd/kfd/topology/nodes/1/gpu_id", buf, sizeof(buf)) && strtoul(buf, NULL, 10) == MI210,
	      "nodes/1/gpu_id = %s", buf);
	CHECK(slurp("/sys/class/kfd/kfd/topology/nodes/0/gpu_id", buf, sizeof(buf)) && strtoul(buf, NULL, 10) == 0, "nodes/0/gpu_id");
	CHECK(slurp("/sys/devices/virtual/kfd/kfd/topology/nodes/1/properties", buf, sizeof(buf)) > 0, "properties");
	CHECK(prop(buf, "gfx_target_version") == 90010, "gfx_target_version");
	CHECK(prop(buf, "drm_render_minor") == 128, "drm_render_minor");
	CHECK(prop(buf, "capability") & 0x08000000, "SVM capability bit");
	DIR *d = opendir("/sys/class/kfd/kfd/topology/nodes");
	CHECK(d != NULL, "opendir nodes: %s", strerror(errno));
	int seen = 0, others = 0;
	if (d) {
		struct dirent *e;
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, "0"))
				seen |= 1;
			else if (!strcmp(e->d_name, "1"))
				seen |= 2;
			else if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
				others++;
		}
		closedir(d);
	}
	CHECK(seen == 3 && others == 0, "nodes lists 0 and 1 only (seen %d, others %d)", seen, others);
	/* the relative form libcoherent uses */
	int root = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int fd = openat(root, "sys/class/kfd/kfd/topology/nodes/1/mem_banks/0/properties", O_RDONLY | O_CLOEXEC);
	CHECK(fd >= 0, "openat(rootfd, sys/...): %s", strerror(errno));
	if (fd >= 0) {
		ssize_t n = read(fd, buf, sizeof(buf) - 1);
		buf[n > 0 ? n : 0] = '\0';
		CHECK(prop(buf, "size_in_bytes") == 64ULL << 30, "VRAM bank size");
		close(fd);
	}
	int dfd = openat(root, "sys/class/kfd/kfd/topology/nodes", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CHECK(dfd >= 0, "openat O_DIRECTORY nodes");
	if (dfd >= 0) {
		DIR *dd = fdopendir(dfd);
		int n = 0;
		for (struct dirent *e; dd && (e = readdir(dd));)
			n += e->d_name[0] != '.';
		CHECK(n == 2, "fdopendir lists %d nodes", n);
		if (dd)
			closedir(dd);
	}
	char link[256];
	ssize_t n = readlinkat(root, "sys/class/kfd/kfd", link, sizeof(link) - 1);
	CHECK(n > 0 && !strncmp(link, "../../devices/virtual/kfd/kfd", (size_t)n), "readlinkat sys/class/kfd/kfd");
	struct stat st;
	CHECK(fstatat(root, "sys/class/kfd/kfd/topology", &st, 0) == 0 && S_ISDIR(st.st_mode), "fstatat topology");
	CHECK(stat("/sys/class/kfd/kfd/topology/nodes/1/io_links/0/properties", &st) == 0 && S_ISREG(st.st_mode), "stat io_links");
	CHECK(access("/sys/class/kfd/kfd/topology/generation_id", R_OK) == 0, "access generation_id");
	CHECK(open("/sys/class/kfd/kfd/topology/generation_id", O_WRONLY) < 0 && errno == EACCES, "the tree is read-only");
	close(root);
	CHECK(slurp("/sys/bus/pci/devices/0000:03:00.0/vendor", buf, sizeof(buf)) && !strncmp(buf, "0x1002", 6),
	      "PCI vendor of the tree's GPU");
	FILE *f = fopen("/sys/class/kfd/kfd/topology/nodes/1/name", "r");
	CHECK(f != NULL, "fopen of the node name");
	if (f) {
		CHECK(fgets(buf, sizeof(buf), f) && !strncmp(buf, "gfx90a", 6), "node name %s", buf);
		fclose(f);
	}
	CHECK(stat("/dev/dri/renderD128", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 226 && minor(st.st_rdev) == 128,
	      "stat renderD128");
	CHECK(open("/dev/dri/renderD129", O_RDWR) < 0, "renderD129 is not in the tree");
	d = opendir("/dev/dri");
	int renders = 0;
	for (struct dirent *e; d && (e = readdir(d));)
		renders += !strcmp(e->d_name, "renderD128");
	if (d)
		closedir(d);
	CHECK(renders == 1, "/dev/dri lists the tree's render node");
}

static void t_acquire(int kfd, int *render_out)
{
	int r1 = open_render(128);
	CHECK(acquire(kfd, kfd, MI210) == -EINVAL, "ACQUIRE_VM with the kfd fd: EINVAL");
	int null = open("/dev/null", O_RDWR);
	CHECK(acquire(kfd, null, MI210) == -EINVAL, "ACQUIRE_VM with /dev/null: EINVAL");
	close(null);
	CHECK(acquire(kfd, 1000, MI210) == -EINVAL, "ACQUIRE_VM with a closed fd: EINVAL");
	CHECK(acquire(kfd, r1, 12345) == -EINVAL, "ACQUIRE_VM with an unknown gpu_id: EINVAL");
	CHECK(acquire(kfd, r1, MI210) == 0, "ACQUIRE_VM");
	CHECK(acquire(kfd, r1, MI210) == 0, "ACQUIRE_VM again with the same fd");
	int d = dup(r1);
	CHECK(acquire(kfd, d, MI210) == 0, "ACQUIRE_VM with a dup of the same file");
	close(d);
	int r2 = open_render(128);
	CHECK(acquire(kfd, r2, MI210) == -EBUSY, "ACQUIRE_VM with another render fd: EBUSY");
	close(r2);
	*render_out = r1;
}

static void t_sizes(int kfd)
{
	/* an SVM call whose encoded size cannot hold nattr attributes */
	struct kfd_ioctl_svm_args *s = calloc(1, sizeof(*s) + 2 * sizeof(struct kfd_ioctl_svm_attribute));
	void *p = map_aligned(MiB, MiB);
	s->start_addr = (uintptr_t)p;
	s->size = MiB;
	s->op = KFD_IOCTL_SVM_OP_GET_ATTR;
	s->nattr = 2;
	s->attrs[0].type = s->attrs[1].type = KFD_IOCTL_SVM_ATTR_GRANULARITY;
	unsigned long one = AMDKFD_IOC_SVM + (8UL << _IOC_SIZESHIFT);
	CHECK(ioctl(kfd, one, s) < 0 && errno == EINVAL, "SVM size for 1 attr with nattr 2: %s", strerror(errno));
	CHECK(api_last_nattr() == 2, "kfdemu_last_svm_nattr %d", api_last_nattr());
	CHECK(ioctl(kfd, AMDKFD_IOC_SVM, s) < 0 && errno == EINVAL, "SVM with the bare header size and nattr 2");
	unsigned long two = AMDKFD_IOC_SVM + (16UL << _IOC_SIZESHIFT);
	CHECK(ioctl(kfd, two, s) == 0 && s->attrs[0].value == 9 && s->attrs[1].value == 9, "SVM with the right size");
	CHECK(api_last_nattr() == 2, "kfdemu_last_svm_nattr");
	s->op = 7;
	CHECK(ioctl(kfd, two, s) < 0 && errno == EINVAL, "SVM op 7: EINVAL");
	free(s);
	struct kfd_ioctl_get_available_memory_args av = { .gpu_id = MI210, .pad = 1 };
	CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &av) < 0 && errno == EINVAL, "AVAILABLE_MEMORY pad 1: EINVAL");
	av.pad = 0;
	av.gpu_id = 1;
	CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &av) < 0 && errno == EINVAL, "AVAILABLE_MEMORY unknown gpu");
	av.gpu_id = MI210;
	CHECK(ioctl(kfd, AMDKFD_IOC_AVAILABLE_MEMORY, &av) == 0 && av.available == 64ULL << 30, "AVAILABLE_MEMORY %llu",
	      (unsigned long long)av.available);
	munmap(p, MiB);
}

static void t_xnack_mi210(int kfd)
{
	int32_t m = -1;
	CHECK(xnack(kfd, &m) == 0 && m == 1, "XNACK query on MI210: %d", m);
	m = 0;
	CHECK(xnack(kfd, &m) == 0, "XNACK off");
	m = -1;
	CHECK(xnack(kfd, &m) == 0 && m == 0, "XNACK query after off: %d", m);
	void *p = map_aligned(MiB, MiB);
	CHECK(get1(kfd, p, MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_NO_ACCESS, "XNACK off: default NO_ACCESS");
	m = 1;
	CHECK(xnack(kfd, &m) == 0 && m == 1, "XNACK on");
	CHECK(get1(kfd, p, MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_ACCESS, "XNACK on: default ACCESS");
	munmap(p, MiB);
}

static void t_svm_attrs(int kfd)
{
	const size_t SZ = 8 * MiB;
	unsigned char *b = map_aligned(SZ, 2 * MiB);
	CHECK(b != NULL, "mmap 8 MiB");
	if (!b)
		return;
	/* never registered: the defaults */
	struct kfd_ioctl_svm_attribute g[6] = {
		{ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0 }, { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0 },
		{ KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0 },     { KFD_IOCTL_SVM_ATTR_CLR_FLAGS, 0 },
		{ KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 },   { KFD_IOCTL_SVM_ATTR_ACCESS, MI210 },
	};
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_GET_ATTR, b, SZ, g, 6) == 0, "GET defaults");
	CHECK(g[0].value == UNDEF && g[1].value == UNDEF, "default locations %#x %#x", g[0].value, g[1].value);
	CHECK(g[2].value == 3 && g[3].value == ~3u, "default flags %#x / %#x", g[2].value, g[3].value);
	CHECK(g[4].value == 9, "default granularity %u", g[4].value);
	CHECK(g[5].type == KFD_IOCTL_SVM_ATTR_ACCESS && g[5].value == MI210, "default access (XNACK on)");
	CHECK(api_last_nattr() == 6, "last nattr 6");
	CHECK(api_location(b) == -1, "not an SVM range yet");
	/* register the whole buffer, then split it */
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, SZ, NULL, 0) == 0, "SET with no attributes registers the range");
	CHECK(api_location(b) == 0, "registered: system memory");
	CHECK(set1(kfd, b + 3 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, MI210) == 0, "SET preferred on the middle");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == UNDEF, "preferred over the whole: undefined");
	CHECK(get1(kfd, b + 3 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == MI210, "preferred over the middle");
	CHECK(get1(kfd, b + 4 * MiB, PGSZ, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == MI210, "preferred inside the middle");
	CHECK(get1(kfd, b, 3 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == UNDEF, "preferred before the middle");
	CHECK(set1(kfd, b + 3 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == 0, "preferred = system memory");
	CHECK(get1(kfd, b + 3 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == 0, "preferred is sysmem");
	/* flags: SET_FLAGS = AND, CLR_FLAGS = bits clear everywhere */
	CHECK(set1(kfd, b, 4 * MiB, KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_RO) == 0, "SET_FLAGS GPU_RO");
	CHECK(get1(kfd, b, 4 * MiB, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) == 0xb, "flags of the first half");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) == 0x3, "flags AND over the whole");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_CLR_FLAGS, 0) == ~0xbu, "flags NOR over the whole");
	CHECK(set1(kfd, b + 7 * MiB, MiB, KFD_IOCTL_SVM_ATTR_CLR_FLAGS, KFD_IOCTL_SVM_FLAG_HOST_ACCESS) == 0, "CLR_FLAGS");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) == 0x2, "flags AND after CLR");
	CHECK(get1(kfd, b + 7 * MiB, MiB, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) == 0x2, "flags of the cleared part");
	/* granularity: clamped, minimum over the range */
	CHECK(set1(kfd, b + 2 * MiB, MiB, KFD_IOCTL_SVM_ATTR_GRANULARITY, 4) == 0, "granularity 4");
	CHECK(set1(kfd, b + 6 * MiB, MiB, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0x50) == 0, "granularity 0x50");
	CHECK(get1(kfd, b + 6 * MiB, MiB, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0) == 0x3f, "granularity clamped to 0x3f");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0) == 4, "granularity minimum");
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 9) == 0, "granularity back to 9");
	/* access: the type is rewritten */
	CHECK(set1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_NO_ACCESS, MI210) == 0, "NO_ACCESS");
	CHECK(set1(kfd, b + MiB, MiB, KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, MI210) == 0, "ACCESS_IN_PLACE");
	CHECK(get1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_NO_ACCESS, "query -> NO_ACCESS");
	CHECK(get1(kfd, b + MiB, MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, "query -> IN_PLACE");
	CHECK(get1(kfd, b + 2 * MiB, MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_ACCESS, "query -> ACCESS");
	CHECK(get1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == KFD_IOCTL_SVM_ATTR_NO_ACCESS, "mixed -> NO_ACCESS");
	CHECK(set1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_ACCESS, MI210) == 0, "ACCESS again");
	/* bad attributes change nothing */
	struct kfd_ioctl_svm_attribute bad[2] = { { KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, MI210 }, { 99, 0 } };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, SZ, bad, 2) == -EINVAL, "unknown attribute type: EINVAL");
	CHECK(get1(kfd, b + 3 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == 0, "nothing changed");
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_ACCESS, 4242) == -EINVAL, "unknown GPU: EINVAL");
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, UNDEF) == -EINVAL, "prefetch to 'undefined': EINVAL");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, MI210) == 0xdeadbeef, "GET with ACCESS_IN_PLACE: EINVAL");
	CHECK(get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_NO_ACCESS, MI210) == 0xdeadbeef, "GET with NO_ACCESS: EINVAL");
	struct kfd_ioctl_svm_attribute q = { KFD_IOCTL_SVM_ATTR_NO_ACCESS, MI210 };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_GET_ATTR, b, SZ, &q, 1) == -EINVAL, "GET NO_ACCESS errno");
	CHECK(set1(kfd, b + 1, SZ - PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EINVAL, "unaligned start: EINVAL");
	CHECK(set1(kfd, b, 100, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EINVAL, "unaligned size: EINVAL");
	CHECK(set1(kfd, b, 0, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EINVAL, "size 0: EINVAL");
	CHECK(set1(kfd, NULL, PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EINVAL, "start 0: EINVAL");
	/* the kernel ignores unregistered gaps when some range overlaps the query */
	unsigned char *c = map_aligned(4 * MiB, MiB);
	CHECK(set1(kfd, c + MiB, MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, MI210) == 0, "SET on a middle piece only");
	CHECK(get1(kfd, c, 4 * MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == MI210, "gaps do not count");
	CHECK(api_location(c) == -1 && api_location(c + MiB) == 0, "locations around the piece");
	munmap(c, 4 * MiB);
	CHECK(api_location(c + MiB) == -1, "munmap forgets the range");
	munmap(b, SZ);
}

static void t_efault(int kfd, int render)
{
	unsigned char *p = mmap(NULL, 3 * PGSZ, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	munmap(p + PGSZ, PGSZ);
	CHECK(set1(kfd, p, 3 * PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EFAULT, "SET over a hole: EFAULT");
	CHECK(get1(kfd, p, 3 * PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0) == 0xdeadbeef, "GET over a hole fails");
	struct kfd_ioctl_svm_attribute q = { KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_GET_ATTR, p, 3 * PGSZ, &q, 1) == -EFAULT, "GET over a hole: EFAULT");
	CHECK(set1(kfd, p, PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == 0, "SET on the mapped page");
	munmap(p, PGSZ);
	munmap(p + 2 * PGSZ, PGSZ);
	/* a mapping of a device file (VM_IO/PFNMAP in the kernel) */
	void *dev = mmap(NULL, PGSZ, PROT_READ, MAP_SHARED, render, 0);
	CHECK(dev != MAP_FAILED, "mmap of the render node: %s", strerror(errno));
	if (dev != MAP_FAILED) {
		CHECK(set1(kfd, dev, PGSZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 1) == -EFAULT, "SET on a device mapping: EFAULT");
		munmap(dev, PGSZ);
	}
}

static void t_placement(int kfd)
{
	const size_t SZ = 8 * MiB;
	unsigned char *b = map_aligned(SZ, 2 * MiB);
	fill(b, SZ);
	int64_t av0 = available(kfd, MI210);
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, SZ, NULL, 0) == 0, "register");
	CHECK(set1(kfd, b + 2 * MiB, 4 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "PREFETCH to the GPU");
	CHECK(get1(kfd, b + 2 * MiB, 4 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == MI210, "prefetch attribute");
	CHECK(api_location(b + 2 * MiB) == (int)MI210 && api_location(b + 6 * MiB - 1) == (int)MI210, "pages in VRAM");
	CHECK(api_location(b) == 0 && api_location(b + 6 * MiB) == 0, "neighbours in system memory");
	uint64_t *pm = malloc(SZ / PGSZ * 8);
	CHECK(pagemap_entries(b, SZ / PGSZ, pm), "pagemap pread");
	size_t bad = 0;
	for (size_t i = 0; i < SZ / PGSZ; i++) {
		bool vram = i >= 512 && i < 1536;
		if (vram ? !((pm[i] & PM_SWAPPED) && !(pm[i] & PM_PRESENT) && (pm[i] & 0x1f) && (pm[i] >> 5 & ((1ULL << 50) - 1)))
			 : !(pm[i] & PM_PRESENT))
			bad++;
	}
	CHECK(bad == 0, "%zu pagemap entries wrong (first VRAM entry %#llx)", bad, (unsigned long long)pm[512]);
	int pmfd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	struct {
		uint64_t v[12];
	} scan = { { sizeof(scan) } };
	CHECK(ioctl(pmfd, _IOWR('f', 16, scan), &scan) < 0 && errno == ENOTTY, "PAGEMAP_SCAN: ENOTTY");
	/* the kernel's pagemap takes whole entries only */
	unsigned char two[16];
	CHECK(pread(pmfd, two, 8, (off_t)(((uintptr_t)b / PGSZ + 512) * 8 + 4)) < 0 && errno == EINVAL, "unaligned pread: EINVAL");
	close(pmfd);
	CHECK(available(kfd, MI210) == av0 - (int64_t)(4 * MiB), "AVAILABLE_MEMORY dropped by 4 MiB");
	int mst[2] = { 1, 1 };
	CHECK(page_status(b + 2 * MiB, mst, 1, NULL) == 0 && mst[0] == -ENOENT, "move_pages: VRAM page is ZONE_DEVICE (-ENOENT): %d",
	      mst[0]);
	CHECK(page_status(b, mst, 1, NULL) == 0 && mst[0] >= 0, "move_pages: system page has a node: %d", mst[0]);
	/* CPU read: the 2 MiB block comes back */
	long fb0 = api_faultbacks();
	CHECK(b[3 * MiB + 100] == pat(3 * MiB + 100), "CPU read of a VRAM page");
	CHECK(api_faultbacks() - fb0 == 512, "faulted back one 2 MiB block: %ld pages", api_faultbacks() - fb0);
	CHECK(api_location(b + 2 * MiB) == 0 && api_location(b + 4 * MiB - 1) == 0, "the block is in system memory");
	CHECK(api_location(b + 4 * MiB) == (int)MI210, "the next block is still in VRAM");
	CHECK(available(kfd, MI210) == av0 - (int64_t)(2 * MiB), "AVAILABLE_MEMORY after the fault");
	/* prefetch back to system memory */
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == 0, "PREFETCH to system memory");
	CHECK(api_location(b + 5 * MiB) == 0, "back in system memory");
	CHECK(verify(b, 0, SZ) == SIZE_MAX, "data intact after the round trip");
	CHECK(available(kfd, MI210) == av0, "AVAILABLE_MEMORY restored");
	/* a write fault */
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "PREFETCH all");
	b[5 * MiB] = 0xab;
	CHECK(b[5 * MiB] == 0xab && verify(b, 4 * MiB, 5 * MiB) == SIZE_MAX && verify(b, 5 * MiB + 1, 6 * MiB) == SIZE_MAX,
	      "write fault keeps the rest of the block");
	CHECK(api_location(b + 5 * MiB) == 0 && api_location(b + 6 * MiB) == (int)MI210, "write fault locations");
	b[5 * MiB] = pat(5 * MiB);
	/* kernel-mode accesses fault the page back too */
	int pfd[2];
	CHECK(pipe(pfd) == 0, "pipe");
	unsigned char got[64];
	CHECK(api_location(b + 7 * MiB) == (int)MI210, "source page in VRAM");
	CHECK(write(pfd[1], b + 7 * MiB, 64) == 64, "write() from a VRAM page");
	CHECK(read(pfd[0], got, 64) == 64 && !memcmp(got, b + 7 * MiB, 64) && verify(b, 7 * MiB, 7 * MiB + 64) == SIZE_MAX,
	      "write() data");
	CHECK(set1(kfd, b + 6 * MiB, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0 && api_location(b + 6 * MiB) == (int)MI210,
	      "prefetch again");
	CHECK(write(pfd[1], "HELLO", 5) == 5, "pipe write");
	CHECK(read(pfd[0], b + 6 * MiB + 10, 5) == 5, "read() into a VRAM page: %s", strerror(errno));
	CHECK(!memcmp(b + 6 * MiB + 10, "HELLO", 5) && verify(b, 6 * MiB, 6 * MiB + 10) == SIZE_MAX &&
	      verify(b, 6 * MiB + 15, 7 * MiB) == SIZE_MAX, "read() data");
	memcpy(b + 6 * MiB + 10, (unsigned char[5]){ pat(6 * MiB + 10), pat(6 * MiB + 11), pat(6 * MiB + 12),
						     pat(6 * MiB + 13), pat(6 * MiB + 14) }, 5);
	close(pfd[0]);
	close(pfd[1]);
	/* O_DIRECT: get_user_pages on a VRAM page */
	char tmpl[] = "/tmp/kfdemu-odirect-XXXXXX";
	int tf = mkstemp(tmpl);
	if (tf >= 0) {
		unsigned char page[4096];
		memset(page, 0x5a, sizeof(page));
		bool ok = write(tf, page, sizeof(page)) == (ssize_t)sizeof(page) && fsync(tf) == 0;
		close(tf);
		int df = open(tmpl, O_RDONLY | O_DIRECT);
		if (ok && df >= 0) {
			CHECK(api_location(b + 1 * MiB) == (int)MI210, "target page in VRAM before O_DIRECT");
			ssize_t n = read(df, b + 1 * MiB, 4096);
			if (n < 0 && errno == EINVAL) {
				printf("note: O_DIRECT read not supported on /tmp, skipped\n");
			} else {
				CHECK(n == 4096, "O_DIRECT read into a VRAM page: %zd %s", n, strerror(errno));
				CHECK(b[MiB] == 0x5a && b[MiB + 4095] == 0x5a && verify(b, MiB + 4096, 2 * MiB) == SIZE_MAX,
				      "O_DIRECT data");
			}
			close(df);
		} else {
			printf("note: O_DIRECT open failed (%s), skipped\n", strerror(errno));
			if (df >= 0)
				close(df);
		}
		unlink(tmpl);
		for (size_t i = MiB; i < MiB + 4096; i++)
			b[i] = pat(i);
	}
	/* granularity 0: page by page */
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == 0, "back to system memory");
	struct kfd_ioctl_svm_attribute ga[2] = { { KFD_IOCTL_SVM_ATTR_GRANULARITY, 0 },
						 { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210 } };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, MiB, ga, 2) == 0, "granularity 0 + prefetch");
	fb0 = api_faultbacks();
	CHECK(b[100] == pat(100), "read with granularity 0");
	CHECK(api_faultbacks() - fb0 == 1, "one page faulted back: %ld", api_faultbacks() - fb0);
	CHECK(api_location(b + PGSZ) == (int)MI210, "the next page stays");
	/* every SET over a range with a prefetch location migrates again */
	CHECK(set1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_SET_FLAGS, 0) == 0 && api_location(b) == (int)MI210,
	      "SET re-triggers the prefetch (kernel behaviour)");
	/* MADV_DONTNEED discards VRAM pages like the kernel's zap */
	CHECK(madvise(b + 2 * PGSZ, PGSZ, MADV_DONTNEED) == 0, "madvise");
	CHECK(b[2 * PGSZ] == 0 && b[2 * PGSZ + 4095] == 0, "discarded VRAM page reads zero");
	CHECK(verify(b, 3 * PGSZ, MiB) == SIZE_MAX, "the others are intact");
	/* mremap keeps the data */
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == 0, "back to system memory");
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 9) == 0, "granularity 9");
	for (size_t i = 2 * PGSZ; i < 3 * PGSZ; i++)
		b[i] = pat(i);
	unsigned char *m = map_aligned(2 * MiB, 2 * MiB);
	fill(m, 2 * MiB);
	CHECK(set1(kfd, m, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0 && api_location(m) == (int)MI210, "prefetch m");
	unsigned char *m2 = mremap(m, 2 * MiB, 4 * MiB, MREMAP_MAYMOVE);
	CHECK(m2 != MAP_FAILED, "mremap");
	if (m2 != MAP_FAILED) {
		CHECK(verify(m2, 0, 2 * MiB) == SIZE_MAX, "mremap'ed data intact");
		munmap(m2, 4 * MiB);
	}
	/* glibc's realloc moves a large block with its internal mremap: the
	 * emulator learns of it from the userfaultfd remap event */
	unsigned char *mb = malloc(4 * MiB);
	if (mb) {
		unsigned char *in = (unsigned char *)(((uintptr_t)mb + PGSZ - 1) & ~(PGSZ - 1));
		size_t inl = (4 * MiB - (size_t)(in - mb)) & ~(PGSZ - 1);
		fill(in, inl);
		CHECK(set1(kfd, in, inl, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "prefetch a malloc'd block");
		size_t delta = (size_t)(in - mb);
		unsigned char *mb2 = realloc(mb, 32 * MiB);
		CHECK(mb2 != NULL, "realloc");
		if (mb2) {
			CHECK(verify(mb2 + delta, 0, inl) == SIZE_MAX, "data intact after realloc moved the block");
			free(mb2);
		} else {
			free(mb);
		}
	}
	/* an mremap the emulator does not intercept (a raw system call, as
	 * glibc's own realloc makes): the VRAM pages move with the mapping */
	unsigned char *src = map_aligned(2 * MiB, 2 * MiB), *dst = map_aligned(2 * MiB, 2 * MiB);
	fill(src, 2 * MiB);
	CHECK(set1(kfd, src, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "prefetch src");
	void *moved = (void *)syscall(SYS_mremap, src, 2 * MiB, 2 * MiB, MREMAP_MAYMOVE | MREMAP_FIXED, dst);
	CHECK(moved == dst, "raw mremap");
	if (moved == dst) {
		CHECK(api_location(dst) == (int)MI210 && api_location(src) == -1, "the VRAM pages moved: %d %d",
		      api_location(dst), api_location(src));
		CHECK(verify(dst, 0, 2 * MiB) == SIZE_MAX, "moved data intact");
		CHECK(api_location(dst) == -1, "faulted back (no SVM range at the new address)");
	}
	munmap(dst, 2 * MiB);
	/* munmap drops the state */
	int64_t av1 = available(kfd, MI210);
	unsigned char *u = map_aligned(4 * MiB, 2 * MiB);
	fill(u, 4 * MiB);
	CHECK(set1(kfd, u, 4 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "prefetch u");
	CHECK(available(kfd, MI210) == av1 - (int64_t)(4 * MiB), "u in VRAM");
	munmap(u, 4 * MiB);
	CHECK(api_location(u) == -1 && api_location(u + 3 * MiB) == -1, "munmap drops the pages and ranges");
	CHECK(available(kfd, MI210) == av1, "munmap gives the VRAM back");
	/* capacity */
	int64_t av2 = available(kfd, MI210);
	size_t big = (size_t)av2 + 4 * MiB;
	unsigned char *h = mmap(NULL, big, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (h == MAP_FAILED) {
		printf("note: cannot reserve %zu bytes of address space, capacity check skipped\n", big);
	} else {
		h[0] = 1;
		CHECK(set1(kfd, h, big, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == -ENOMEM, "more than the VRAM: ENOMEM");
		CHECK(api_location(h) == -1 && h[0] == 1, "nothing moved, no range created");
		CHECK(get1(kfd, h, big, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == UNDEF, "nothing changed");
		CHECK(available(kfd, MI210) == av2, "AVAILABLE_MEMORY unchanged");
		munmap(h, big);
	}
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == 0, "all back");
	CHECK(verify(b, 0, SZ) == SIZE_MAX, "final data check");
	free(pm);
	munmap(b, SZ);
}

static void t_fork(int kfd, int render)
{
	const size_t SZ = 4 * MiB;
	unsigned char *b = map_aligned(SZ, 2 * MiB);
	unsigned char *w = map_aligned(MiB, MiB);
	fill(b, SZ);
	fill(w, MiB);
	CHECK(madvise(w, MiB, MADV_WIPEONFORK) == 0, "MADV_WIPEONFORK");
	CHECK(set1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "prefetch before fork");
	CHECK(set1(kfd, w, MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "prefetch the wipe-on-fork buffer");
	bool vram = api_location(b) == (int)MI210;
	CHECK(!placement || vram, "in VRAM before fork");
	long fb0 = api_faultbacks();
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		uint32_t maj, min;
		if (kfd_version(kfd, &maj, &min) != -EBADF)
			_exit(10);
		if (verify(b, 0, SZ) != SIZE_MAX)
			_exit(11);
		for (size_t i = 0; i < MiB; i++)
			if (w[i])
				_exit(12);
		if (api_location(b) != -1)
			_exit(13);
		int k = open("/dev/kfd", O_RDWR | O_CLOEXEC);
		if (k < 0 || kfd_version(k, &maj, &min) || maj != 1)
			_exit(14);
		if (get1(k, b, SZ, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) != UNDEF)
			_exit(15);   /* a fresh KFD process has no ranges */
		if (acquire(k, render, MI210) != -EINVAL)
			_exit(16);   /* the parent's render file is bound to the parent's process */
		int r = open("/dev/dri/renderD128", O_RDWR);
		if (acquire(k, r, MI210) != 0)
			_exit(17);
		if (kfd_version(kfd, &maj, &min) != -EBADF)
			_exit(18);
		_exit(0);
	}
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "fork child failed with %d", WIFEXITED(st) ? WEXITSTATUS(st) : -1);
	CHECK(api_faultbacks() == fb0, "the child did not fault the parent's pages back");
	CHECK(!placement || api_location(b + MiB) == (int)MI210, "still in VRAM in the parent");
	CHECK(verify(b, 0, SZ) == SIZE_MAX && verify(w, 0, MiB) == SIZE_MAX, "parent data");
	uint32_t maj, min;
	CHECK(kfd_version(kfd, &maj, &min) == 0, "parent fd still works");
	munmap(b, SZ);
	munmap(w, MiB);
}

static void t_fail(int kfd)
{
	uint32_t maj, min;
	long c0 = api_calls(0x01);
	api_fail(0x01, 2, EIO);
	CHECK(kfd_version(kfd, &maj, &min) == 0, "1st call passes");
	CHECK(kfd_version(kfd, &maj, &min) == -EIO, "2nd call fails with EIO");
	CHECK(kfd_version(kfd, &maj, &min) == 0, "3rd call passes");
	CHECK(api_calls(0x01) == c0 + 3, "calls counted: %ld", api_calls(0x01) - c0);
	api_fail(0x01, 1, EIO);
	api_fail(0x01, 0, 0);
	CHECK(kfd_version(kfd, &maj, &min) == 0, "nth 0 clears");
	unsigned char *b = map_aligned(MiB, MiB);
	CHECK(set1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == 0, "set preferred sysmem");
	api_fail(0x20, 1, ENOMEM);
	CHECK(set1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, MI210) == -ENOMEM, "injected ENOMEM");
	CHECK(get1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, 0) == 0, "nothing changed by the failed call");
	munmap(b, MiB);
}

struct reader {
	unsigned char *b;
	size_t size;
	int rounds;
	size_t bad;
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	for (int k = 0; k < r->rounds; k++)
		for (size_t i = (size_t)k * 131 % PGSZ; i < r->size; i += PGSZ)
			if (r->b[i] != pat(i))
				r->bad++;
	return NULL;
}

static void t_threads(int kfd)
{
	const size_t SZ = 8 * MiB;
	unsigned char *b = map_aligned(SZ, 2 * MiB);
	fill(b, SZ);
	struct reader rd[4];
	pthread_t t[4];
	for (int i = 0; i < 4; i++) {
		rd[i] = (struct reader){ b, SZ, 20, 0 };
		pthread_create(&t[i], NULL, reader_main, &rd[i]);
	}
	int errs = 0;
	for (int k = 0; k < 40; k++) {
		size_t off = (size_t)(k % 4) * 2 * MiB;
		errs += set1(kfd, b + off, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, (k & 1) ? 0 : MI210) != 0;
		errs += get1(kfd, b, SZ, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0) != 9;
	}
	size_t bad = 0;
	for (int i = 0; i < 4; i++) {
		pthread_join(t[i], NULL);
		bad += rd[i].bad;
	}
	CHECK(errs == 0, "%d ioctls failed during the concurrent run", errs);
	CHECK(bad == 0, "%zu bad reads while pages migrated", bad);
	CHECK(verify(b, 0, SZ) == SIZE_MAX, "data after the concurrent run");
	munmap(b, SZ);
}

/* A program linked against glibc only sees the tree too. */
static void t_plain_program(void)
{
	const char *cat = access("/bin/cat", X_OK) == 0 ? "/bin/cat" : access("/usr/bin/cat", X_OK) == 0 ? "/usr/bin/cat" : NULL;
	if (!cat) {
		printf("note: no cat, plain-program check skipped\n");
		return;
	}
	int pfd[2];
	if (pipe(pfd))
		return;
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		dup2(pfd[1], 1);
		close(pfd[0]);
		close(pfd[1]);
		execl(cat, "cat", "/sys/class/kfd/kfd/topology/nodes/1/gpu_id", (char *)NULL);
		_exit(127);
	}
	close(pfd[1]);
	char buf[64] = { 0 };
	ssize_t n = read(pfd[0], buf, sizeof(buf) - 1);
	close(pfd[0]);
	int st = 0;
	waitpid(pid, &st, 0);
	CHECK(n > 0 && strtoul(buf, NULL, 10) == MI210 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "cat through the emulator: '%s'", buf);
}

/* ---------- other trees ---------- */

static int mode_rx7900(void)
{
	const uint32_t G = 60961;
	int kfd = open_kfd();
	int32_t m = -1;
	CHECK(xnack(kfd, &m) == 0 && m == 0, "RDNA: XNACK off by default (%d)", m);
	m = 1;
	CHECK(xnack(kfd, &m) == -EPERM, "RDNA: XNACK on refused with EPERM");
	m = 0;
	CHECK(xnack(kfd, &m) == 0, "RDNA: XNACK off accepted");
	int r = open_render(128);
	CHECK(acquire(kfd, r, G) == 0, "ACQUIRE_VM");
	CHECK(acquire(kfd, r, MI210) == -EINVAL, "the MI210's gpu_id is not in this tree");
	unsigned char *b = map_aligned(2 * MiB, 2 * MiB);
	fill(b, 2 * MiB);
	CHECK(get1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_ACCESS, G) == KFD_IOCTL_SVM_ATTR_NO_ACCESS, "default NO_ACCESS");
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, 2 * MiB, NULL, 0) == 0, "register");
	CHECK(get1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_ACCESS, G) == KFD_IOCTL_SVM_ATTR_NO_ACCESS, "new range NO_ACCESS");
	struct kfd_ioctl_svm_attribute a[2] = { { KFD_IOCTL_SVM_ATTR_ACCESS, G }, { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, G } };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, 2 * MiB, a, 2) == 0, "ACCESS + PREFETCH");
	if (placement) {
		CHECK(api_location(b) == (int)G, "in the RX 7900's VRAM");
		CHECK(available(kfd, G) == (int64_t)(24ULL << 30) - (int64_t)(2 * MiB), "AVAILABLE_MEMORY");
		CHECK(verify(b, 0, 2 * MiB) == SIZE_MAX && api_location(b) == 0, "faulted back");
	}
	munmap(b, 2 * MiB);
	return failures ? 1 : 0;
}

static int mode_nosvm(void)
{
	char buf[4096];
	CHECK(slurp("/sys/class/kfd/kfd/topology/nodes/1/properties", buf, sizeof(buf)) > 0, "properties");
	CHECK(!(prop(buf, "capability") & 0x08000000) && prop(buf, "gfx_target_version") == 90010,
	      "no SVM capability bit without CONFIG_HSA_AMD_SVM");
	int kfd = open_kfd();
	uint32_t maj, min;
	CHECK(kfd_version(kfd, &maj, &min) == 0, "GET_VERSION");
	int32_t m = -1;
	CHECK(xnack(kfd, &m) == -EPERM, "SET_XNACK_MODE: EPERM");
	unsigned char *b = map_aligned(MiB, MiB);
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, MiB, NULL, 0) == -EPERM, "SVM SET: EPERM");
	CHECK(get1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_GRANULARITY, 0) == 0xdeadbeef, "SVM GET fails");
	munmap(b, MiB);
	return failures ? 1 : 0;
}

static int mode_nouffd(void)
{
	CHECK(api_placement() == 0, "KFDEMU_NO_UFFD: no placement");
	int kfd = open_kfd(), r = open_render(128);
	CHECK(acquire(kfd, r, MI210) == 0, "ACQUIRE_VM");
	unsigned char *b = map_aligned(2 * MiB, 2 * MiB);
	fill(b, 2 * MiB);
	int64_t av = available(kfd, MI210);
	CHECK(set1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, MI210) == 0, "PREFETCH records the attribute");
	CHECK(get1(kfd, b, 2 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == MI210, "prefetch attribute");
	CHECK(api_location(b) == 0, "pages stay in system memory");
	CHECK(available(kfd, MI210) == av, "AVAILABLE_MEMORY unchanged");
	uint64_t pm[4];
	CHECK(pagemap_entries(b, 4, pm) && (pm[0] & PM_PRESENT) && (pm[3] & PM_PRESENT), "pagemap: present");
	CHECK(verify(b, 0, 2 * MiB) == SIZE_MAX, "data");
	munmap(b, 2 * MiB);
	return failures ? 1 : 0;
}

static int mode_xgmi(void)
{
	const uint32_t G1 = 11011, G2 = 22022;
	int kfd = open_kfd();
	int r1 = open_render(128), r2 = open_render(129);
	CHECK(acquire(kfd, r2, G1) == -EINVAL, "renderD129 belongs to the second GPU");
	CHECK(acquire(kfd, r1, G1) == 0 && acquire(kfd, r2, G2) == 0, "ACQUIRE_VM both");
	int32_t m = -1;
	CHECK(xnack(kfd, &m) == 0 && m == 1, "XNACK on (gfx90a)");
	unsigned char *b = map_aligned(4 * MiB, 2 * MiB);
	fill(b, 4 * MiB);
	int64_t a1 = available(kfd, G1), a2 = available(kfd, G2);
	struct kfd_ioctl_svm_attribute at[3] = { { KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, G1 },
						 { KFD_IOCTL_SVM_ATTR_ACCESS_IN_PLACE, G2 },
						 { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, G1 } };
	CHECK(svm(kfd, KFD_IOCTL_SVM_OP_SET_ATTR, b, 4 * MiB, at, 3) == 0, "in place on both, prefetch to the first");
	CHECK(api_location(b) == (int)G1, "same hive: the prefetch goes to the GPU (%d)", api_location(b));
	CHECK(available(kfd, G1) == a1 - (int64_t)(4 * MiB), "AVAILABLE_MEMORY of the first GPU");
	uint64_t pm[2];
	CHECK(pagemap_entries(b, 2, pm) && (pm[0] & PM_PRESENT) && !(pm[0] & PM_SWAPPED), "coherent VRAM stays CPU-mapped");
	long fb0 = api_faultbacks();
	CHECK(verify(b, 0, 4 * MiB) == SIZE_MAX && api_faultbacks() == fb0, "CPU reads coherent VRAM in place");
	CHECK(api_location(b) == (int)G1, "still in VRAM after the CPU read");
	int st2[2] = { 1, 1 }, node0[2] = { 0, 0 };
	CHECK(page_status(b, st2, 2, NULL) == 0 && st2[0] == -ENOENT && st2[1] == -ENOENT, "move_pages: coherent VRAM is ZONE_DEVICE");
	CHECK(page_status(b, st2, 2, node0) == 0 && st2[0] == -ENOENT && api_location(b) == (int)G1,
	      "move_pages cannot move device pages");
	uint64_t before = 0, after = 0;
	pagemap_entries(b, 1, &before);
	int ring = uring_pin(b, 2 * PGSZ);
	if (ring == -ENOSYS || ring == -EPERM || ring == -EACCES) {
		printf("note: io_uring unavailable (%s): long-term pin check skipped\n", strerror(-ring));
	} else {
		CHECK(ring >= 0, "io_uring fixed buffer: %s", strerror(ring < 0 ? -ring : 0));
		pagemap_entries(b, 1, &after);
		CHECK(api_location(b) == 0 && api_location(b + PGSZ) == 0 && api_location(b + 2 * PGSZ) == (int)G1,
		      "a long-term pin takes coherent pages out of VRAM");
		CHECK((before & ((1ULL << 55) - 1)) != (after & ((1ULL << 55) - 1)) || !(before & ((1ULL << 55) - 1)),
		      "the pinned page has a new frame");
		CHECK(verify(b, 0, 4 * MiB) == SIZE_MAX, "data after the pin");
		if (ring >= 0)
			close(ring);
	}
	CHECK(set1(kfd, b, 4 * MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, G2) == 0, "prefetch to the second GPU");
	CHECK(api_location(b) == (int)G2 && available(kfd, G1) == a1 && available(kfd, G2) == a2 - (int64_t)(4 * MiB),
	      "moved between the GPUs: %lld %lld", (long long)(a1 - available(kfd, G1)), (long long)(a2 - available(kfd, G2)));
	munmap(b, 4 * MiB);
	CHECK(available(kfd, G2) == a2, "munmap frees it");
	return failures ? 1 : 0;
}

static int mode_apu(void)
{
	const uint32_t G = 47477;
	int kfd = open_kfd(), r = open_render(128);
	CHECK(acquire(kfd, r, G) == 0, "ACQUIRE_VM");
	CHECK(available(kfd, G) == 0, "no VRAM on the APU");
	unsigned char *b = map_aligned(MiB, MiB);
	fill(b, MiB);
	CHECK(set1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, G) == 0, "prefetch to the APU");
	CHECK(get1(kfd, b, MiB, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0) == G && api_location(b) == 0, "stays in system memory");
	CHECK(verify(b, 0, MiB) == SIZE_MAX, "data");
	munmap(b, MiB);
	return failures ? 1 : 0;
}

static int run_mode(const char *mode, const char *tree, const char *env)
{
	const char *root = getenv("KFDEMU_ROOT");
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s", root);
	char *slash = strrchr(path, '/');
	if (!slash)
		return 77;
	snprintf(slash + 1, sizeof(path) - (size_t)(slash + 1 - path), "%s", tree);
	struct stat st;
	if (stat(path, &st)) {
		printf("note: %s not found, %s skipped\n", path, mode);
		return 77;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid == 0) {
		setenv("KFDEMU_ROOT", path, 1);
		if (env)
			putenv((char *)env);
		execl("/proc/self/exe", "test_kfdemu", mode, (char *)NULL);
		_exit(127);
	}
	int s = 0;
	waitpid(pid, &s, 0);
	int rc = WIFEXITED(s) ? WEXITSTATUS(s) : 128 + WTERMSIG(s);
	printf("%-10s %s\n", mode, rc == 0 ? "ok" : rc == 77 ? "skipped" : "FAILED");
	return rc;
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	api_active = dlsym(RTLD_DEFAULT, "kfdemu_active");
	api_placement = dlsym(RTLD_DEFAULT, "kfdemu_placement_supported");
	api_location = dlsym(RTLD_DEFAULT, "kfdemu_page_location");
	api_faultbacks = dlsym(RTLD_DEFAULT, "kfdemu_faultbacks");
	api_fail = dlsym(RTLD_DEFAULT, "kfdemu_fail");
	api_calls = dlsym(RTLD_DEFAULT, "kfdemu_calls");
	api_last_nattr = dlsym(RTLD_DEFAULT, "kfdemu_last_svm_nattr");
	if (!api_active || !api_placement || !api_location || !api_faultbacks || !api_fail || !api_calls || !api_last_nattr) {
		printf("SKIP: libkfdemu.so is not preloaded (run with LD_PRELOAD=libkfdemu.so KFDEMU_ROOT=tests/data/kfd-mi210)\n");
		return 77;
	}
	if (!api_active()) {
		printf("SKIP: the emulator is inactive: KFDEMU_ROOT does not name a KFD topology tree\n");
		return 77;
	}
	placement = api_placement();
	const char *mode = argc > 1 ? argv[1] : "";
	if (*mode) {
		mode_name = mode;
		if (!strcmp(mode, "--rx7900"))
			return mode_rx7900();
		if (!strcmp(mode, "--nosvm"))
			return mode_nosvm();
		if (!strcmp(mode, "--nouffd"))
			return mode_nouffd();
		if (!strcmp(mode, "--xgmi"))
			return mode_xgmi();
		if (!strcmp(mode, "--apu"))
			return mode_apu();
		fprintf(stderr, "unknown mode %s\n", mode);
		return 2;
	}
	char buf[64];
	if (!slurp("/sys/class/kfd/kfd/topology/nodes/1/gpu_id", buf, sizeof(buf)) || strtoul(buf, NULL, 10) != MI210) {
		printf("SKIP: the main run expects KFDEMU_ROOT=tests/data/kfd-mi210\n");
		return 77;
	}
	if (!placement)
		printf("note: no userfaultfd here (not root, or disabled): placement checks skipped\n");

	int kfd = open_kfd(), render = -1;
	if (kfd < 0)
		return 1;
	t_version_and_files(kfd);
	t_topology();
	t_acquire(kfd, &render);
	t_sizes(kfd);
	t_xnack_mi210(kfd);
	t_svm_attrs(kfd);
	t_efault(kfd, render);
	if (placement) {
		t_placement(kfd);
		t_threads(kfd);
	}
	t_fork(kfd, render);
	t_fail(kfd);
	t_plain_program();
	printf("main       %s (%d checks, %d failed)\n", failures ? "FAILED" : "ok", checks, failures);

	int sub_fail = 0;
	struct {
		const char *mode, *tree, *env;
	} subs[] = {
		{ "--rx7900", "kfd-rx7900", NULL },        { "--xgmi", "kfd-mi250x-xgmi", NULL },
		{ "--apu", "kfd-mi300a", NULL },           { "--nosvm", "kfd-mi210", "KFDEMU_NO_SVM=1" },
		{ "--nouffd", "kfd-mi210", "KFDEMU_NO_UFFD=1" },
	};
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		int rc = run_mode(subs[i].mode, subs[i].tree, subs[i].env);
		if (rc != 0 && rc != 77)
			sub_fail++;
	}
	close(kfd);
	return (failures || sub_fail) ? 1 : 0;
}
