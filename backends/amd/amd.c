/* SPDX-License-Identifier: MIT */
/*
 * amd backend: AMD GPUs through amdkfd's shared virtual memory (SVM) on
 * /dev/kfd.  NOT YET RUN ON AMD HARDWARE: proven against the /dev/kfd
 * emulator in tests/kfdemu and on hand-written topology trees only.
 *
 * Discovery reads the KFD topology (/sys/class/kfd/kfd/topology/nodes/N:
 * gpu_id, properties, memory banks, io links) through the fsroot, so recorded
 * trees replay.  A GPU's VRAM is device-coherent where the 6.1 rule applies
 * (gfx90a, MI200, with an xGMI link to a CPU node: the VRAM aperture is
 * registered as MEMORY_DEVICE_COHERENT), device-private on every other
 * discrete GPU, and plain system memory on an APU (no VRAM bank).  The PCI
 * function comes from `domain` and `location_id`, the render node from
 * `drm_render_minor` (checked with libdrm where it is built in).
 *
 * Live, the backend opens /dev/kfd with the kernel's own uAPI
 * (linux/kfd_ioctl.h): version (SVM needs KFD 1.5), XNACK mode, and for
 * each SVM-capable GPU its render node and ACQUIRE_VM.  Memory is ordinary
 * private anonymous memory with SVM attributes: alloc = mmap + preferred
 * location + access + prefetch (migration) to the GPU; adopt works in place;
 * migrate = prefetch location; residency = the kernel's page view (device
 * pages are swap-like entries in pagemap) with the GPU named from KFD's
 * prefetch attribute, which is an attribute and not a placement report.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kfd_ioctl.h>
#include <numaif.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#ifdef COH_HAVE_LIBDRM
#include <xf86drm.h>
#endif

#include "backend.h"

/* The argument layouts and ioctl numbers this backend relies on (KFD 1.11 of
 * Linux 6.1; FACTS sheet §1.2): a mismatching header fails the build. */
_Static_assert(sizeof(struct kfd_ioctl_get_version_args) == 8, "get_version layout");
_Static_assert(sizeof(struct kfd_ioctl_acquire_vm_args) == 8, "acquire_vm layout");
_Static_assert(sizeof(struct kfd_ioctl_set_xnack_mode_args) == 4, "set_xnack_mode layout");
_Static_assert(sizeof(struct kfd_ioctl_get_available_memory_args) == 16, "available_memory layout");
_Static_assert(sizeof(struct kfd_ioctl_svm_args) == 24, "svm header layout");
_Static_assert(sizeof(struct kfd_ioctl_svm_attribute) == 8, "svm attribute layout");
_Static_assert(AMDKFD_IOC_GET_VERSION == 0x80084B01u, "GET_VERSION number");
_Static_assert(AMDKFD_IOC_ACQUIRE_VM == 0x40084B15u, "ACQUIRE_VM number");
_Static_assert(AMDKFD_IOC_SVM == 0xC0184B20u, "SVM number");
_Static_assert(AMDKFD_IOC_SET_XNACK_MODE == 0xC0044B21u, "SET_XNACK_MODE number");
_Static_assert(AMDKFD_IOC_AVAILABLE_MEMORY == 0xC0104B23u, "AVAILABLE_MEMORY number");

#define HSA_CAP_SVMAPI_SUPPORTED 0x08000000u   /* kfd_sysfs.h */
#define HSA_MEM_HEAP_TYPE_FB_PUBLIC 1
#define HSA_MEM_HEAP_TYPE_FB_PRIVATE 2
#define HSA_IOLINK_TYPE_XGMI 11
#define AMD_MAX_GPUS 16
#define AMD_TARGET_NAME "amd:gpu%d"   /* of the GPU's KFD topology node */
#define TOPO "/sys/class/kfd/kfd/topology/nodes"

const struct coh_backend_ops coh_amd_backend;

enum amd_mem { AMD_PRIVATE, AMD_COHERENT, AMD_UNIFIED };

struct amd_gpu {
	int node;             /* topology node index */
	uint32_t gpu_id;
	int render_minor, gfx, domain, location;
	uint32_t cap;
	uint64_t vram, simd;
	enum amd_mem mem;
	bool svm;             /* SVM usable on this GPU in this process */
	int render_fd;
	char name[32];
};

struct amd_backend {
	coh_context *ctx;
	int kfd;              /* /dev/kfd, -1 when not open */
	pid_t pid;            /* the process whose KFD process the fd is */
	int minor;            /* KFD interface minor version */
	int xnack;            /* process XNACK mode, -1 unknown */
	pthread_mutex_t lock; /* ioctls; held across fork */
	bool fork_locked;     /* the fork prepare hook holds lock */
	struct amd_gpu *gpus[AMD_MAX_GPUS];
	int ngpus;
};

static struct amd_backend *ab_of(const coh_target *t)
{
	return coh_target_backend_priv(t);
}

static struct amd_gpu *gpu_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static bool is_amd(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_amd_backend.name;
}

/* ---------------- topology ---------------- */

/* One "key value" from a properties file; -1 when absent. */
static long long prop(const char *text, const char *key)
{
	size_t kl = strlen(key);
	for (const char *p = text; p && *p;) {
		if (!strncmp(p, key, kl) && p[kl] == ' ')
			return strtoll(p + kl + 1, NULL, 0);
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return -1;
}

static int read_props(coh_context *ctx, char *buf, size_t len, const char *fmt, int a, int b)
{
	char path[160];
	snprintf(path, sizeof(path), fmt, a, b);
	return coh_fs_read(ctx, path, buf, len);
}

/* Is node n a CPU node (cores, no SIMDs)? */
static bool cpu_node(coh_context *ctx, int n)
{
	char buf[8192];
	if (read_props(ctx, buf, sizeof(buf), TOPO "/%d/properties", n, 0) < 0)
		return false;
	return prop(buf, "simd_count") == 0 && prop(buf, "cpu_cores_count") > 0;
}

static struct amd_gpu *read_gpu(coh_context *ctx, int n)
{
	char buf[8192];
	if (read_props(ctx, buf, sizeof(buf), TOPO "/%d/gpu_id", n, 0) < 0)
		return NULL;
	uint32_t id = (uint32_t)strtoul(buf, NULL, 0);
	if (id == 0 || read_props(ctx, buf, sizeof(buf), TOPO "/%d/properties", n, 0) < 0)
		return NULL;   /* a CPU node */
	struct amd_gpu *g = calloc(1, sizeof(*g));
	if (!g)
		return NULL;
	g->node = n;
	g->gpu_id = id;
	g->render_fd = -1;
	g->render_minor = (int)prop(buf, "drm_render_minor");
	g->gfx = (int)prop(buf, "gfx_target_version");
	g->domain = (int)prop(buf, "domain");
	g->location = (int)prop(buf, "location_id");
	g->cap = (uint32_t)prop(buf, "capability");
	g->simd = (uint64_t)prop(buf, "simd_count");
	long long banks = prop(buf, "mem_banks_count"), links = prop(buf, "io_links_count");
	char nm[64] = "";
	read_props(ctx, nm, sizeof(nm), TOPO "/%d/name", n, 0);
	snprintf(g->name, sizeof(g->name), "%.31s", nm);
	for (int m = 0; m < banks && m < 64; m++) {
		char mb[1024];
		if (read_props(ctx, mb, sizeof(mb), TOPO "/%d/mem_banks/%d/properties", n, m) < 0)
			continue;
		long long heap = prop(mb, "heap_type");
		if (heap == HSA_MEM_HEAP_TYPE_FB_PUBLIC || heap == HSA_MEM_HEAP_TYPE_FB_PRIVATE)
			g->vram += (uint64_t)prop(mb, "size_in_bytes");
	}
	bool xgmi_cpu = false;
	for (int l = 0; l < links && l < 64; l++) {
		char lb[1024];
		if (read_props(ctx, lb, sizeof(lb), TOPO "/%d/io_links/%d/properties", n, l) < 0)
			continue;
		if (prop(lb, "type") == HSA_IOLINK_TYPE_XGMI && cpu_node(ctx, (int)prop(lb, "node_to")))
			xgmi_cpu = true;
	}
	/* Linux 6.1 svm_migrate_init: MEMORY_DEVICE_COHERENT only for an Aldebaran
	 * (gfx90a) whose xGMI reaches the CPU; an APU has no VRAM bank at all. */
	g->mem = g->vram == 0 ? AMD_UNIFIED : xgmi_cpu && g->gfx == 90010 ? AMD_COHERENT : AMD_PRIVATE;
	return g;
}

static int node_cmp(const void *a, const void *b)
{
	return *(const int *)a - *(const int *)b;
}

/* ---------------- /dev/kfd ---------------- */

static int kfd_ioctl(struct amd_backend *ab, unsigned long req, void *arg)
{
	return coh_sys_ioctl(ab->kfd, req, arg);
}

/* SET or GET of n attributes over [start, start+size): the size of the
 * attribute array is encoded in the command, as the kernel expects. */
static int svm(struct amd_backend *ab, uint32_t op, uintptr_t start, size_t size, struct kfd_ioctl_svm_attribute *at,
	       uint32_t n)
{
	struct {
		struct kfd_ioctl_svm_args h;
		struct kfd_ioctl_svm_attribute a[8];
	} args;
	if (n > 8)
		return -EINVAL;
	memset(&args, 0, sizeof(args));
	args.h.start_addr = start;
	args.h.size = size;
	args.h.op = op;
	args.h.nattr = n;
	memcpy(args.a, at, n * sizeof(*at));
	unsigned long cmd = AMDKFD_IOC_SVM + ((unsigned long)(n * sizeof(*at)) << _IOC_SIZESHIFT);
	int e = kfd_ioctl(ab, cmd, &args);
	if (!e && op == KFD_IOCTL_SVM_OP_GET_ATTR)
		memcpy(at, args.a, n * sizeof(*at));
	return e;
}

static int svm_set1(struct amd_backend *ab, uintptr_t start, size_t size, uint32_t type, uint32_t value)
{
	struct kfd_ioctl_svm_attribute a = { type, value };
	return svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, start, size, &a, 1);
}

/* KFD binds one render file per GPU to the process for good (ACQUIRE_VM with
 * another open file answers EBUSY, even after the first fd was closed), so the
 * render fds are the process's: shared by contexts and kept open. */
static pthread_mutex_t render_lock = PTHREAD_MUTEX_INITIALIZER;
static struct render {
	uint32_t gpu_id;
	int fd, refs;
	pid_t pid;
} renders[AMD_MAX_GPUS];

static int render_get(uint32_t gpu_id)
{
	int fd = -1;
	pthread_mutex_lock(&render_lock);
	for (int i = 0; i < AMD_MAX_GPUS; i++)
		if (renders[i].refs && renders[i].gpu_id == gpu_id && renders[i].pid == getpid()) {
			fd = renders[i].fd;
			break;
		}
	pthread_mutex_unlock(&render_lock);
	return fd;
}

static void render_keep(uint32_t gpu_id, int fd)
{
	pthread_mutex_lock(&render_lock);
	for (int i = 0; i < AMD_MAX_GPUS; i++)
		if (!renders[i].refs || renders[i].pid != getpid()) {   /* free, or a parent's slot */
			renders[i] = (struct render){ gpu_id, fd, 1, getpid() };
			break;
		}
	pthread_mutex_unlock(&render_lock);
}


/* The GPU's render node and ACQUIRE_VM: SVM ranges can name it afterwards. */
static int acquire(coh_context *ctx, struct amd_backend *ab, struct amd_gpu *g)
{
	int shared = render_get(g->gpu_id);
	if (shared >= 0) {
		g->render_fd = shared;   /* bound already by another context of this process */
		return 0;
	}
	char path[48];
	snprintf(path, sizeof(path), "/dev/dri/renderD%d", g->render_minor);
	int fd = coh_fs_open(ctx, path, O_RDWR);
	if (fd < 0) {
		coh_backend_note(ctx, "%s: %s: %s: SVM not usable", g->name, path, strerror(-fd));
		return fd;
	}
#ifdef COH_HAVE_LIBDRM
	/* the render node must be this GPU's PCI function */
	drmDevicePtr dev = NULL;
	if (drmGetDevice2(fd, 0, &dev) == 0 && dev) {
		if (dev->bustype == DRM_BUS_PCI && dev->businfo.pci &&
		    (dev->businfo.pci->domain != g->domain || dev->businfo.pci->bus != (g->location >> 8) ||
		     dev->businfo.pci->dev != ((g->location >> 3) & 0x1f) || dev->businfo.pci->func != (g->location & 7)))
			coh_warn(ctx, "amd: %s is PCI %04x:%02x:%02x.%x, topology says another function", path,
				 dev->businfo.pci->domain, dev->businfo.pci->bus, dev->businfo.pci->dev,
				 dev->businfo.pci->func);
		drmFreeDevice(&dev);
	} else {
		coh_info(ctx, "amd: libdrm does not identify %s: the topology's render minor is used", path);
	}
#endif
	struct kfd_ioctl_acquire_vm_args av = { .drm_fd = (uint32_t)fd, .gpu_id = g->gpu_id };
	int e = kfd_ioctl(ab, AMDKFD_IOC_ACQUIRE_VM, &av);
	if (e) {
		coh_backend_note(ctx, "%s: ACQUIRE_VM: %s: SVM not usable", g->name, strerror(-e));
		close(fd);
		return e;
	}
	g->render_fd = fd;
	render_keep(g->gpu_id, fd);
	return 0;
}

/* Opens /dev/kfd and binds every SVM-capable GPU; what fails is noted. */
static void kfd_open(coh_context *ctx, struct amd_backend *ab)
{
	int fd = coh_fs_open(ctx, "/dev/kfd", O_RDWR);
	if (fd < 0) {
		coh_backend_note(ctx, "cannot open /dev/kfd: %s: GPUs are described only", strerror(-fd));
		return;
	}
	ab->kfd = fd;
	struct kfd_ioctl_get_version_args v = { 0 };
	int e = kfd_ioctl(ab, AMDKFD_IOC_GET_VERSION, &v);
	if (e || v.major_version != 1 || v.minor_version < 5) {
		coh_backend_note(ctx, "KFD %u.%u%s: SVM needs 1.5 or later", v.major_version, v.minor_version,
				 e ? " (GET_VERSION failed)" : "");
		return;
	}
	ab->minor = (int)v.minor_version;
	struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = -1 };
	e = kfd_ioctl(ab, AMDKFD_IOC_SET_XNACK_MODE, &x);
	if (e == -EPERM) {
		coh_backend_note(ctx, "KFD 1.%d without SVM: the kernel lacks CONFIG_HSA_AMD_SVM", ab->minor);
		return;
	}
	ab->xnack = e ? -1 : x.xnack_enabled;
	/* amd.xnack (COH_AMD_XNACK) =0/1 asks for a mode (before any queue exists, as KFD requires) */
	const char *want = coh_ctx_tunable(ctx, "amd.xnack");
	if (want && (!strcmp(want, "0") || !strcmp(want, "1")) && atoi(want) != ab->xnack) {
		x.xnack_enabled = atoi(want);
		e = kfd_ioctl(ab, AMDKFD_IOC_SET_XNACK_MODE, &x);
		if (e)
			coh_backend_note(ctx, "XNACK %s refused: %s", atoi(want) ? "on" : "off", strerror(-e));
		else
			ab->xnack = x.xnack_enabled;
	}
	int usable = 0;
	for (int i = 0; i < ab->ngpus; i++) {
		struct amd_gpu *g = ab->gpus[i];
		if (!(g->cap & HSA_CAP_SVMAPI_SUPPORTED)) {
			coh_backend_note(ctx, "%s: no SVM on this GPU (capability bit clear)", g->name);
			continue;
		}
		if (acquire(ctx, ab, g) == 0) {
			g->svm = true;
			usable++;
		}
	}
	coh_backend_note(ctx, "KFD 1.%d, XNACK %s, %d GPU(s) with SVM", ab->minor,
			 ab->xnack < 0 ? "unknown" : ab->xnack ? "on" : "off", usable);
}

static int amd_discover(coh_context *ctx, void **priv)
{
	struct amd_backend *ab = calloc(1, sizeof(*ab));
	if (!ab)
		return -ENOMEM;
	*priv = ab;
	ab->ctx = ctx;
	ab->kfd = -1;
	ab->xnack = -1;
	ab->pid = getpid();
	pthread_mutex_init(&ab->lock, NULL);
	DIR *d = coh_fs_opendir(ctx, TOPO);
	if (!d)
		return 0;   /* no amdkfd */
	int nodes[64], nn = 0;
	struct dirent *de;
	while ((de = readdir(d)) && nn < 64)
		if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
			nodes[nn++] = atoi(de->d_name);
	closedir(d);
	qsort(nodes, (size_t)nn, sizeof(int), node_cmp);
	for (int i = 0; i < nn && ab->ngpus < AMD_MAX_GPUS; i++) {
		struct amd_gpu *g = read_gpu(ctx, nodes[i]);
		if (g)
			ab->gpus[ab->ngpus++] = g;
	}
	if (ab->ngpus == 0) {
		coh_backend_note(ctx, "KFD topology has no GPU node");
		return 0;
	}
	if (!coh_ctx_replay(ctx))
		kfd_open(ctx, ab);
	int added = 0;
	for (int i = 0; i < ab->ngpus; i++) {
		struct amd_gpu *g = ab->gpus[i];
		struct coh_target_desc desc = { 0 };
		static const char *const mem[] = { "device-private", "device-coherent", "system memory (APU)" };
		desc.kind = g->mem == AMD_COHERENT ? COH_KIND_DEVICE_COHERENT
			    : g->mem == AMD_PRIVATE ? COH_KIND_DEVICE_PRIVATE
						    : COH_KIND_VENDOR_MANAGED;
		snprintf(desc.name, sizeof(desc.name), AMD_TARGET_NAME, g->node);
		snprintf(desc.vendor, sizeof(desc.vendor), "AMD");
		char vram[48];
		if (g->mem == AMD_UNIFIED)
			snprintf(vram, sizeof(vram), "no VRAM, %s", mem[g->mem]);
		else
			snprintf(vram, sizeof(vram), "%.0f GiB VRAM %s", (double)g->vram / (1 << 30), mem[g->mem]);
		char full[256];
		snprintf(full, sizeof(full), "%s (gfx %d), %s, SVM %s, render D%d", g->name, g->gfx, vram,
			 (g->cap & HSA_CAP_SVMAPI_SUPPORTED) ? "yes" : "no", g->render_minor);
		desc.gpu_id = g->gpu_id;
		/* proven against recorded trees and the KFD emulator only */
		desc.device_status = COH_DEVICE_HAS_GPU_ID | COH_DEVICE_UNVERIFIED;
		if (g->cap & HSA_CAP_SVMAPI_SUPPORTED)
			desc.memory_model = COH_MODEL_SVM;
		snprintf(desc.model, sizeof(desc.model), "%.*s", (int)sizeof(desc.model) - 1, full);
		if (g->domain >= 0 && g->location >= 0)
			snprintf(desc.pci_address, sizeof(desc.pci_address), "%04x:%02x:%02x.%x", g->domain & 0xffff,
				 (g->location >> 8) & 0xff, (g->location >> 3) & 0x1f, g->location & 7);
		desc.numa_node = -1;
		desc.total_bytes = g->vram;
		desc.caps = COH_CAP_QUERY | COH_CAP_PIN_QUERY;
		/* a recording describes what the live machine would offer */
		if ((g->cap & HSA_CAP_SVMAPI_SUPPORTED) && (coh_ctx_replay(ctx) || g->svm))
			desc.caps |= COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_MIGRATE_ASYNC |
				     COH_CAP_ADVISE | COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO |
				     COH_CAP_FORK_KERNEL;
		desc.priv = g;
		int e = coh_target_add(ctx, &desc);
		if (e)
			return e;
		added++;
	}
	return added;
}

static void amd_target_fini(coh_target *t, void *priv)
{
	(void)t;
	struct amd_gpu *g = priv;
	g->node = -1;   /* freed with the backend: the fd outlives the target list */
}

static void amd_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	for (int i = 0; i < ab->ngpus; i++) {
		free(ab->gpus[i]);   /* its render fd stays with the process (see render_get) */
	}
	if (ab->kfd >= 0)
		close(ab->kfd);
	pthread_mutex_destroy(&ab->lock);
	free(ab);
}

/* ---------------- memory ---------------- */

/* Enters the backend for an SVM call: -ECHILD in a forked child (its KFD fd
 * belongs to the parent: every ioctl would answer EBADF). */
static int amd_enter(struct amd_backend *ab)
{
	if (ab->pid != getpid())
		return -ECHILD;
	if (ab->kfd < 0)
		return -ENODEV;
	pthread_mutex_lock(&ab->lock);
	return 0;
}

static void amd_leave(struct amd_backend *ab)
{
	pthread_mutex_unlock(&ab->lock);
}

static int amd_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct amd_backend *ab = ab_of(t);
	struct amd_gpu *g = gpu_of(t);
	if (g->mem == AMD_UNIFIED || !g->svm)
		return -EOPNOTSUPP;
	int e = amd_enter(ab);
	if (e)
		return e;
	struct kfd_ioctl_get_available_memory_args a = { .gpu_id = g->gpu_id };
	e = kfd_ioctl(ab, AMDKFD_IOC_AVAILABLE_MEMORY, &a);
	amd_leave(ab);
	if (!e)
		*free_bytes = a.available;
	return e;
}

/* Lets the GPU reach the range and moves it there. */
static int to_gpu(struct amd_backend *ab, struct amd_gpu *g, uintptr_t a, size_t len, bool prefer)
{
	struct kfd_ioctl_svm_attribute at[3];
	uint32_t n = 0;
	if (prefer)
		at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g->gpu_id };
	at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_ACCESS, g->gpu_id };
	if (g->mem != AMD_UNIFIED)   /* an APU's memory is system memory already */
		at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, g->gpu_id };
	return svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, a, len, at, n);
}

static int amd_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	struct amd_backend *ab = ab_of(t);
	(void)flags;
	void *p;
	int e = coh_sys_mmap_aligned(size, align, PROT_READ | PROT_WRITE, MAP_PRIVATE, &p);
	if (e)
		return e;
	uintptr_t a = (uintptr_t)p;
	if ((e = amd_enter(ab)) == 0) {
		e = to_gpu(ab, gpu_of(t), a, size, true);   /* pages are made on the GPU */
		amd_leave(ab);
	}
	if (e) {
		coh_sys_munmap((void *)a, size);
		return e;
	}
	*out = (void *)a;
	return 0;
}

static int amd_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)priv;
	struct amd_backend *ab = ab_of(t);
	/* under the lock: the fork hook copies ranges it found and must not see them go */
	bool locked = amd_enter(ab) == 0;
	int e = coh_sys_munmap(ptr, size);   /* KFD drops the SVM range with the mapping */
	if (locked)
		amd_leave(ab);
	return e;
}

static int amd_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv)
{
	(void)priv;
	(void)flags;
	struct amd_backend *ab = ab_of(t);
	int e = coh_range_anon_private(coh_target_context(t), addr, len);
	if (e)
		return e;
	if ((e = amd_enter(ab)))
		return e;
	e = svm_set1(ab, (uintptr_t)addr, len, KFD_IOCTL_SVM_ATTR_ACCESS, gpu_of(t)->gpu_id);   /* in place */
	amd_leave(ab);
	return e;
}

static int amd_release(coh_target *t, const struct coh_alloc_rec *rec)
{
	(void)t;
	(void)rec;
	return 0;   /* the attributes stay with the memory until it is unmapped; the caller keeps it */
}


static int amd_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags)
{
	(void)flags;
	struct amd_backend *ab = ab_of(rec->target);
	if (is_amd(dst)) {
		struct amd_gpu *g = gpu_of(dst);
		if (!g->svm)
			return -EOPNOTSUPP;
		int e = amd_enter(ab);
		if (!e) {
			e = to_gpu(ab, g, (uintptr_t)addr, len, false);
			amd_leave(ab);
		}
		/* KFD migrates what it can and says nothing of pages it could not
		 * move (pinned ones): the kernel's page view tells whether all went */
		return e ? e : g->mem == AMD_UNIFIED ? 0 : coh_range_on_device(ab->ctx, addr, len);
	}
	int node = coh_target_numa_node(dst);
	if (node < 0 || node >= COH_NODE_LIMIT)
		return -EOPNOTSUPP;
	int e = amd_enter(ab);
	if (e)
		return e;
	e = svm_set1(ab, (uintptr_t)addr, len, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM);
	amd_leave(ab);
	if (e)
		return e;
	/* system memory now; then onto the node asked for */
	e = coh_sys_mbind_node(addr, len, node, MPOL_BIND, MPOL_MF_MOVE);
	return e == -ENOSYS ? 0 : e;   /* a kernel without NUMA has one node anyway */
}

static int amd_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t)
{
	struct amd_backend *ab = ab_of(rec->target);
	uint32_t where = KFD_IOCTL_SVM_LOCATION_SYSMEM;
	if (is_amd(t))
		where = gpu_of(t)->gpu_id;
	else if (t && coh_target_numa_node(t) < 0)
		return -EOPNOTSUPP;
	struct kfd_ioctl_svm_attribute a;
	switch (advice) {
	case COH_ADVISE_PREFERRED_LOCATION: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, where }; break;
	case COH_ADVISE_UNSET_PREFERRED_LOCATION:
		a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, KFD_IOCTL_SVM_LOCATION_UNDEFINED };
		break;
	case COH_ADVISE_ACCESSED_BY:
	case COH_ADVISE_UNSET_ACCESSED_BY:
		if (!is_amd(t))
			return -EOPNOTSUPP;   /* access attributes name GPUs */
		a = (struct kfd_ioctl_svm_attribute){ advice == COH_ADVISE_ACCESSED_BY ? KFD_IOCTL_SVM_ATTR_ACCESS
										 : KFD_IOCTL_SVM_ATTR_NO_ACCESS,
						      where };
		break;
	case COH_ADVISE_READ_MOSTLY: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_SET_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY }; break;
	case COH_ADVISE_UNSET_READ_MOSTLY: a = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_CLR_FLAGS, KFD_IOCTL_SVM_FLAG_GPU_READ_MOSTLY }; break;
	default: return -EINVAL;
	}
	int e = amd_enter(ab);
	if (e)
		return e;
	e = svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, (uintptr_t)addr, len, &a, 1);
	amd_leave(ab);
	return e;
}

/* The GPU KFD last prefetched [a, a+len) to, or NULL (attribute, not placement). */
static coh_target *prefetch_gpu(struct amd_backend *ab, uintptr_t a, size_t len)
{
	struct kfd_ioctl_svm_attribute at = { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0 };
	if (svm(ab, KFD_IOCTL_SVM_OP_GET_ATTR, a, len, &at, 1))
		return NULL;
	for (int i = 0; i < ab->ngpus; i++)
		if (ab->gpus[i]->gpu_id == at.value && ab->gpus[i]->node >= 0) {
			char name[32];
			snprintf(name, sizeof(name), AMD_TARGET_NAME, ab->gpus[i]->node);
			return coh_target_find(ab->ctx, name);
		}
	return NULL;
}

/* Device pages the kernel reports are named after the GPU KFD put them on. */
static int amd_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
			     size_t max)
{
	(void)max;
	if (in->kind != COH_MEM_DEVICE_PRIVATE && in->kind != COH_MEM_DEVICE_COHERENT)
		return -ENOENT;   /* system memory: the kernel's view holds */
	struct amd_backend *ab = ab_of(rec->target);
	int e = amd_enter(ab);
	if (e)
		return e;
	coh_target *g = prefetch_gpu(ab, in->start, in->length);
	amd_leave(ab);
	out[0] = *in;
	out[0].target = g ? g : (is_amd(rec->home) ? rec->home : rec->target);
	return 1;
}

/* ---------------- fork ---------------- */

/* COPY of device pages: the CPU cannot read VRAM without moving it, and a
 * page shared copy-on-write with a child cannot move back.  So the core
 * stages the range (MADV_DONTFORK keeps it from the child, which gets the
 * copy at the same address), and the copy hook brings it to system memory,
 * copies it and sends it back to its GPU.  EXCLUDE and ZERO are the kernel's
 * controls on this private memory; KERNEL is the kernel's copy-on-write of
 * device pages. */
static int amd_fork_policy(const struct coh_alloc_rec *rec, int policy)
{
	return policy == COH_FORK_SHARE ? -EOPNOTSUPP : coh_fork_madvise(rec, policy);
}

static int amd_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan)
{
	if (rec->fork_policy == COH_FORK_KERNEL && gpu_of(rec->target)->mem == AMD_PRIVATE) {
		/* test_hmm's device-private pages move for both processes on the
		 * child's first access; KFD's fault handler is its own and was
		 * never measured on AMD hardware (the emulator keeps them) */
		plan->child_view = COH_CHILD_COPY;
		plan->parent_keeps = COH_KEEPS_UNKNOWN;
		plan->reason = "kernel copy-on-write of VRAM the CPU cannot map: KFD's fault handler decides whether "
			       "the parent's pages move (not measured on AMD hardware)";
		return 0;
	}
	if (rec->fork_policy != COH_FORK_COPY)
		return 0;
	if (at_fork) {
		struct amd_backend *ab = ab_of(rec->target);
		if (!ab->fork_locked)
			return 0;   /* no KFD process here: nothing to bring back */
		coh_target *g = prefetch_gpu(ab, rec->start, rec->length);
		if (!g || gpu_of(g)->mem == AMD_UNIFIED)
			return 0;   /* in system memory: the kernel's copy-on-write is the copy */
	}
	plan->stage = COH_STAGE_COPY;
	plan->dontfork = 1;
	plan->reason = "device pages are brought to system memory, copied and sent back to the GPU before fork; the "
		       "child gets the copy at the same address";
	return 0;
}

/* The prepare hook holds the backend's lock. */
static int amd_fork_copy(const struct coh_alloc_rec *rec, void *copy)
{
	struct amd_backend *ab = ab_of(rec->target);
	coh_target *g = prefetch_gpu(ab, rec->start, rec->length);
	if (!g)
		return -ENODEV;
	int e = svm_set1(ab, rec->start, rec->length, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, KFD_IOCTL_SVM_LOCATION_SYSMEM);
	if (e)
		return e;
	coh_fork_snapshot(copy, (void *)rec->start, rec->length);
	svm_set1(ab, rec->start, rec->length, KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, gpu_of(g)->gpu_id);
	return 0;
}

static void amd_atfork_prepare(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	ab->fork_locked = false;
	if (ab->kfd < 0 || ab->pid != getpid())
		return;
	pthread_mutex_lock(&ab->lock);   /* no ioctl in flight across fork; released in parent/child */
	ab->fork_locked = true;
}

static void amd_atfork_parent(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	if (ab->fork_locked) {
		ab->fork_locked = false;
		pthread_mutex_unlock(&ab->lock);
	}
}

static void amd_atfork_child(coh_context *ctx, void *priv)
{
	(void)ctx;
	struct amd_backend *ab = priv;
	/* the forking thread took it and is the child's one thread: unlocked, not
	 * made anew (the KFD fd is the parent's: calls answer -ECHILD) */
	if (ab->fork_locked) {
		ab->fork_locked = false;
		pthread_mutex_unlock(&ab->lock);
	}
}

static const struct coh_tunable amd_tunables[] = {
	{ "amd.xnack", "COH_AMD_XNACK" },
	{ NULL, NULL },
};

const struct coh_backend_ops coh_amd_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "amd",
	.discover = amd_discover,
	.fini = amd_fini,
	.target_fini = amd_target_fini,
	.free_bytes = amd_free_bytes,
	.alloc = amd_alloc,
	.free = amd_free,
	.adopt = amd_adopt,
	.release = amd_release,
	.migrate = amd_migrate,
	.advise = amd_advise,
	.query_resolve = amd_query_resolve,
	.fork_policy = amd_fork_policy,
	.fork_plan = amd_fork_plan,
	.fork_copy = amd_fork_copy,
	.atfork_prepare = amd_atfork_prepare,
	.atfork_parent = amd_atfork_parent,
	.atfork_child = amd_atfork_child,
	.tunables = amd_tunables,
};
