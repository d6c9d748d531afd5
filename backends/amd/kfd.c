/* SPDX-License-Identifier: MIT */
/* amd backend: the /dev/kfd ioctls (version, XNACK, ACQUIRE_VM with the render
 * nodes, SVM attributes, available memory) and the lock around them. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef COH_HAVE_LIBDRM
#include <xf86drm.h>
#endif

#include "amd.h"

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

/* ---------------- /dev/kfd ---------------- */

int amd_kfd_ioctl(struct amd_backend *ab, unsigned long req, void *arg)
{
	return coh_sys_ioctl(ab->kfd, req, arg);
}

/* SET or GET of n attributes over [start, start+size): the size of the
 * attribute array is encoded in the command, as the kernel expects. */
int amd_svm(struct amd_backend *ab, uint32_t op, uintptr_t start, size_t size, struct kfd_ioctl_svm_attribute *at,
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
	int e = amd_kfd_ioctl(ab, cmd, &args);
	if (!e && op == KFD_IOCTL_SVM_OP_GET_ATTR)
		memcpy(at, args.a, n * sizeof(*at));
	return e;
}

int amd_svm_set1(struct amd_backend *ab, uintptr_t start, size_t size, uint32_t type, uint32_t value)
{
	struct kfd_ioctl_svm_attribute a = { type, value };
	return amd_svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, start, size, &a, 1);
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
	int e = amd_kfd_ioctl(ab, AMDKFD_IOC_ACQUIRE_VM, &av);
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
void amd_kfd_open(coh_context *ctx, struct amd_backend *ab)
{
	int fd = coh_fs_open(ctx, "/dev/kfd", O_RDWR);
	if (fd < 0) {
		coh_backend_note(ctx, "cannot open /dev/kfd: %s: GPUs are described only", strerror(-fd));
		return;
	}
	ab->kfd = fd;
	struct kfd_ioctl_get_version_args v = { 0 };
	int e = amd_kfd_ioctl(ab, AMDKFD_IOC_GET_VERSION, &v);
	if (e || v.major_version != 1 || v.minor_version < 5) {
		coh_backend_note(ctx, "KFD %u.%u%s: SVM needs 1.5 or later", v.major_version, v.minor_version,
				 e ? " (GET_VERSION failed)" : "");
		return;
	}
	ab->minor = (int)v.minor_version;
	struct kfd_ioctl_set_xnack_mode_args x = { .xnack_enabled = -1 };
	e = amd_kfd_ioctl(ab, AMDKFD_IOC_SET_XNACK_MODE, &x);
	if (e == -EPERM) {
		coh_backend_note(ctx, "KFD 1.%d without SVM: the kernel lacks CONFIG_HSA_AMD_SVM", ab->minor);
		return;
	}
	ab->xnack = e ? -1 : x.xnack_enabled;
	/* amd.xnack (COH_AMD_XNACK) =0/1 asks for a mode (before any queue exists, as KFD requires) */
	const char *want = coh_ctx_tunable(ctx, "amd.xnack");
	if (want && (!strcmp(want, "0") || !strcmp(want, "1")) && atoi(want) != ab->xnack) {
		x.xnack_enabled = atoi(want);
		e = amd_kfd_ioctl(ab, AMDKFD_IOC_SET_XNACK_MODE, &x);
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

/* ---------------- entering the backend, SVM calls ---------------- */

/* Enters the backend for an SVM call: -ECHILD in a forked child (its KFD fd
 * belongs to the parent: every ioctl would answer EBADF). */
int amd_enter(struct amd_backend *ab)
{
	if (ab->pid != getpid())
		return -ECHILD;
	if (ab->kfd < 0)
		return -ENODEV;
	pthread_mutex_lock(&ab->lock);
	return 0;
}

void amd_leave(struct amd_backend *ab)
{
	pthread_mutex_unlock(&ab->lock);
}

/* Lets the GPU reach the range and moves it there. */
int amd_to_gpu(struct amd_backend *ab, struct amd_gpu *g, uintptr_t a, size_t len, bool prefer)
{
	struct kfd_ioctl_svm_attribute at[3];
	uint32_t n = 0;
	if (prefer)
		at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFERRED_LOC, g->gpu_id };
	at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_ACCESS, g->gpu_id };
	if (g->mem != AMD_UNIFIED)   /* an APU's memory is system memory already */
		at[n++] = (struct kfd_ioctl_svm_attribute){ KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, g->gpu_id };
	return amd_svm(ab, KFD_IOCTL_SVM_OP_SET_ATTR, a, len, at, n);
}

/* KFD's PREFETCH_LOC of [a, a+len): a gpu_id, KFD_IOCTL_SVM_LOCATION_SYSMEM,
 * or KFD_IOCTL_SVM_LOCATION_UNDEFINED when the range's SVM ranges disagree
 * (or none was ever prefetched).  An attribute, not a placement report. */
int amd_prefetch_loc(struct amd_backend *ab, uintptr_t a, size_t len, uint32_t *loc)
{
	struct kfd_ioctl_svm_attribute at = { KFD_IOCTL_SVM_ATTR_PREFETCH_LOC, 0 };
	int e = amd_svm(ab, KFD_IOCTL_SVM_OP_GET_ATTR, a, len, &at, 1);
	*loc = e ? KFD_IOCTL_SVM_LOCATION_UNDEFINED : at.value;
	return e;
}

/* The target of the GPU with this gpu_id, or NULL. */
coh_target *amd_gpu_target(struct amd_backend *ab, uint32_t gpu_id)
{
	for (int i = 0; i < ab->ngpus; i++)
		if (ab->gpus[i]->gpu_id == gpu_id && ab->gpus[i]->node >= 0) {
			char name[32];
			snprintf(name, sizeof(name), AMD_TARGET_NAME, ab->gpus[i]->node);
			return coh_target_find(ab->ctx, name);
		}
	return NULL;
}

/* The GPU KFD last prefetched all of [a, a+len) to, or NULL (attribute, not placement). */
coh_target *amd_prefetch_gpu(struct amd_backend *ab, uintptr_t a, size_t len)
{
	uint32_t loc;
	return amd_prefetch_loc(ab, a, len, &loc) ? NULL : amd_gpu_target(ab, loc);
}
