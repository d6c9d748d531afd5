/* SPDX-License-Identifier: MIT */
/*
 * amd backend: AMD GPUs through amdkfd's shared virtual memory (SVM) on
 * /dev/kfd.  NOT YET RUN ON AMD HARDWARE: proven against the /dev/kfd
 * emulator in tests/doubles/kfdemu and on hand-written topology trees only.
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
 * prefetch attribute run by run, which is an attribute and not a placement
 * report.
 *
 * This header holds the backend's structs and what its files share; README.md
 * ("Files") says what each file holds.  The ops table is in amd.c.
 */
#ifndef COH_BACKEND_AMD_H
#define COH_BACKEND_AMD_H

#include <linux/kfd_ioctl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "backend.h"

#define HSA_CAP_SVMAPI_SUPPORTED 0x08000000u   /* kfd_sysfs.h */
#define HSA_MEM_HEAP_TYPE_FB_PUBLIC 1
#define HSA_MEM_HEAP_TYPE_FB_PRIVATE 2
#define HSA_IOLINK_TYPE_XGMI 11
#define AMD_MAX_GPUS 16
#define AMD_TARGET_NAME "amd:gpu%d"   /* of the GPU's KFD topology node */
#define TOPO "/sys/class/kfd/kfd/topology/nodes"

extern const struct coh_backend_ops coh_amd_backend;

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

static inline struct amd_backend *ab_of(const coh_target *t)
{
	return coh_target_backend_priv(t);
}

static inline struct amd_gpu *gpu_of(const coh_target *t)
{
	return coh_target_priv(t);
}

static inline bool is_amd(const coh_target *t)
{
	return t && coh_target_backend(t) == coh_amd_backend.name;
}

/* kfd.c: the /dev/kfd ioctls */
int amd_kfd_ioctl(struct amd_backend *ab, unsigned long req, void *arg);
int amd_svm(struct amd_backend *ab, uint32_t op, uintptr_t start, size_t size, struct kfd_ioctl_svm_attribute *at,
	    uint32_t n);
int amd_svm_set1(struct amd_backend *ab, uintptr_t start, size_t size, uint32_t type, uint32_t value);
void amd_kfd_open(coh_context *ctx, struct amd_backend *ab);
int amd_enter(struct amd_backend *ab);
void amd_leave(struct amd_backend *ab);
int amd_to_gpu(struct amd_backend *ab, struct amd_gpu *g, uintptr_t a, size_t len, bool prefer);
int amd_prefetch_loc(struct amd_backend *ab, uintptr_t a, size_t len, uint32_t *loc);
coh_target *amd_gpu_target(struct amd_backend *ab, uint32_t gpu_id);
coh_target *amd_prefetch_gpu(struct amd_backend *ab, uintptr_t a, size_t len);

/* discover.c */
int amd_discover(coh_context *ctx, void **priv);
void amd_target_fini(coh_target *t, void *priv);
void amd_fini(coh_context *ctx, void *priv);

/* mem.c */
int amd_free_bytes(coh_target *t, uint64_t *free_bytes);
int amd_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv);
int amd_free(coh_target *t, void *ptr, size_t size, void *priv);
int amd_adopt(coh_target *t, void *addr, size_t len, unsigned flags, void **priv);
int amd_release(coh_target *t, const struct coh_alloc_rec *rec);

/* migrate.c */
int amd_migrate(coh_target *dst, const struct coh_alloc_rec *rec, void *addr, size_t len, unsigned flags);
int amd_advise(const struct coh_alloc_rec *rec, void *addr, size_t len, int advice, coh_target *t);

/* query.c */
int amd_query_resolve(const struct coh_alloc_rec *rec, const struct coh_extent *in, struct coh_extent *out,
		      size_t max);

/* fork.c */
int amd_fork_policy(const struct coh_alloc_rec *rec, int policy);
int amd_fork_plan(const struct coh_alloc_rec *rec, int at_fork, struct coh_fork_plan *plan);
int amd_fork_copy(const struct coh_alloc_rec *rec, void *copy);
void amd_atfork_prepare(coh_context *ctx, void *priv);
void amd_atfork_parent(coh_context *ctx, void *priv);
void amd_atfork_child(coh_context *ctx, void *priv);

#endif
