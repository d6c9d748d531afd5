/* SPDX-License-Identifier: MIT */
/*
 * The part of the CUDA driver API (libcuda.so.1) the nvidia backend uses,
 * restated from the facts in the project's FACTS sheet §2 (values checked
 * against CUDA 12.8/13.0 cuda.h) so that the library builds without the CUDA
 * SDK.  The backend resolves every entry point with dlsym under its versioned
 * export name (COH_CU_NAMES below); CUDA 13's cuda.h maps the plain names to
 * the same exports.  The driver double in tests/doubles/cudadouble implements the
 * same list.
 */
#ifndef COH_CUDA_ABI_H
#define COH_CUDA_ABI_H

#include <stddef.h>
#include <stdint.h>

typedef int CUresult;
typedef int CUdevice;
typedef uint64_t CUdeviceptr;
typedef struct CUctx_st *CUcontext;
typedef struct CUstream_st *CUstream;
typedef struct CUevent_st *CUevent;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct {
	unsigned char bytes[16];
} CUuuid;
typedef struct {
	int type;   /* CU_MEM_LOCATION_TYPE_* */
	int id;     /* device ordinal or host NUMA node */
} CUmemLocation;

/* CUresult values the backend tells apart. */
#define CUDA_SUCCESS 0
#define CUDA_ERROR_INVALID_VALUE 1
#define CUDA_ERROR_OUT_OF_MEMORY 2
#define CUDA_ERROR_NOT_INITIALIZED 3
#define CUDA_ERROR_DEINITIALIZED 4
#define CUDA_ERROR_NO_DEVICE 100
#define CUDA_ERROR_INVALID_DEVICE 101
#define CUDA_ERROR_INVALID_CONTEXT 201
#define CUDA_ERROR_NOT_READY 600
#define CUDA_ERROR_ILLEGAL_ADDRESS 700
#define CUDA_ERROR_HOST_MEMORY_ALREADY_REGISTERED 712
#define CUDA_ERROR_NOT_SUPPORTED 801
#define CUDA_ERROR_UNKNOWN 999

/* CUdevice_attribute */
#define CU_DEVICE_ATTRIBUTE_PCI_BUS_ID 33
#define CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID 34
#define CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING 41
#define CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID 50
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR 75
#define CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR 76
#define CU_DEVICE_ATTRIBUTE_MANAGED_MEMORY 83
#define CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS 88
#define CU_DEVICE_ATTRIBUTE_CONCURRENT_MANAGED_ACCESS 89
#define CU_DEVICE_ATTRIBUTE_HOST_REGISTER_SUPPORTED 99
#define CU_DEVICE_ATTRIBUTE_PAGEABLE_MEMORY_ACCESS_USES_HOST_PAGE_TABLES 100
#define CU_DEVICE_ATTRIBUTE_NUMA_CONFIG 130
#define CU_DEVICE_ATTRIBUTE_NUMA_ID 131
#define CU_DEVICE_ATTRIBUTE_HOST_NUMA_ID 134

/* cuMemAllocManaged flags */
#define CU_MEM_ATTACH_GLOBAL 0x1

/* CUmem_advise */
#define CU_MEM_ADVISE_SET_READ_MOSTLY 1
#define CU_MEM_ADVISE_UNSET_READ_MOSTLY 2
#define CU_MEM_ADVISE_SET_PREFERRED_LOCATION 3
#define CU_MEM_ADVISE_UNSET_PREFERRED_LOCATION 4
#define CU_MEM_ADVISE_SET_ACCESSED_BY 5
#define CU_MEM_ADVISE_UNSET_ACCESSED_BY 6

/* CUmem_range_attribute (4-byte int results) */
#define CU_MEM_RANGE_ATTRIBUTE_READ_MOSTLY 1
#define CU_MEM_RANGE_ATTRIBUTE_PREFERRED_LOCATION 2
#define CU_MEM_RANGE_ATTRIBUTE_LAST_PREFETCH_LOCATION 4

/* CUpointer_attribute */
#define CU_POINTER_ATTRIBUTE_MEMORY_TYPE 2
#define CU_POINTER_ATTRIBUTE_IS_MANAGED 8
#define CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL 9

/* CUmemLocationType */
#define CU_MEM_LOCATION_TYPE_DEVICE 1
#define CU_MEM_LOCATION_TYPE_HOST 2

/* Legacy device numbers: the CPU, and "none / not uniform". */
#define CU_DEVICE_CPU (-1)
#define CU_DEVICE_INVALID (-2)

#define CU_STREAM_NON_BLOCKING 0x1
#define CU_EVENT_DISABLE_TIMING 0x2

/* Function types, one per entry point. */
typedef CUresult (*cu_init_fn)(unsigned flags);
typedef CUresult (*cu_driver_version_fn)(int *version);
typedef CUresult (*cu_device_count_fn)(int *count);
typedef CUresult (*cu_device_get_fn)(CUdevice *dev, int ordinal);
typedef CUresult (*cu_device_name_fn)(char *name, int len, CUdevice dev);
typedef CUresult (*cu_device_uuid_fn)(CUuuid *uuid, CUdevice dev);
typedef CUresult (*cu_device_total_mem_fn)(size_t *bytes, CUdevice dev);
typedef CUresult (*cu_device_attribute_fn)(int *value, int attrib, CUdevice dev);
typedef CUresult (*cu_primary_retain_fn)(CUcontext *ctx, CUdevice dev);
typedef CUresult (*cu_primary_release_fn)(CUdevice dev);
typedef CUresult (*cu_ctx_push_fn)(CUcontext ctx);
typedef CUresult (*cu_ctx_pop_fn)(CUcontext *ctx);
typedef CUresult (*cu_mem_get_info_fn)(size_t *free_bytes, size_t *total);
typedef CUresult (*cu_alloc_managed_fn)(CUdeviceptr *p, size_t bytes, unsigned flags);
typedef CUresult (*cu_mem_free_fn)(CUdeviceptr p);
typedef CUresult (*cu_prefetch_v2_fn)(CUdeviceptr p, size_t bytes, CUmemLocation loc, unsigned flags,
				      CUstream s);
typedef CUresult (*cu_prefetch_fn)(CUdeviceptr p, size_t bytes, CUdevice dst, CUstream s);
typedef CUresult (*cu_advise_v2_fn)(CUdeviceptr p, size_t bytes, int advice, CUmemLocation loc);
typedef CUresult (*cu_advise_fn)(CUdeviceptr p, size_t bytes, int advice, CUdevice dev);
typedef CUresult (*cu_range_attribute_fn)(void *data, size_t size, int attrib, CUdeviceptr p, size_t bytes);
typedef CUresult (*cu_pointer_attribute_fn)(void *data, int attrib, CUdeviceptr p);
typedef CUresult (*cu_host_register_fn)(void *p, size_t bytes, unsigned flags);
typedef CUresult (*cu_host_unregister_fn)(void *p);
typedef CUresult (*cu_memcpy_async_fn)(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s);
typedef CUresult (*cu_stream_create_fn)(CUstream *s, unsigned flags);
typedef CUresult (*cu_stream_fn)(CUstream s);
typedef CUresult (*cu_event_create_fn)(CUevent *ev, unsigned flags);
typedef CUresult (*cu_event_record_fn)(CUevent ev, CUstream s);
typedef CUresult (*cu_event_fn)(CUevent ev);
typedef CUresult (*cu_error_name_fn)(CUresult r, const char **name);
typedef CUresult (*cu_module_load_data_fn)(CUmodule *mod, const void *image);
typedef CUresult (*cu_module_get_function_fn)(CUfunction *fn, CUmodule mod, const char *name);
typedef CUresult (*cu_module_unload_fn)(CUmodule mod);
typedef void (*CUhostFn)(void *user);
typedef CUresult (*cu_launch_host_func_fn)(CUstream s, CUhostFn fn, void *user);
/* CUDA 13: one stream-ordered batch of prefetches; locs[k] applies from
 * prefetch loc_idxs[k] up to the next entry's (loc_idxs[0] is 0). */
typedef CUresult (*cu_prefetch_batch_fn)(CUdeviceptr *dptrs, size_t *sizes, size_t count, CUmemLocation *locs,
					 size_t *loc_idxs, size_t nlocs, unsigned long long flags, CUstream s);
typedef CUresult (*cu_launch_kernel_fn)(CUfunction fn, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
					unsigned bz, unsigned shared_bytes, CUstream s, void **params, void **extra);

/*
 * X(field, type, export name, required): the table the backend fills with
 * dlsym.  Optional entries may be missing (older drivers): the backend then
 * uses the legacy form or reports the feature unavailable.
 */
#define COH_CU_NAMES(X)                                                                  \
	X(init, cu_init_fn, "cuInit", 1)                                                 \
	X(driver_version, cu_driver_version_fn, "cuDriverGetVersion", 1)                 \
	X(device_count, cu_device_count_fn, "cuDeviceGetCount", 1)                       \
	X(device_get, cu_device_get_fn, "cuDeviceGet", 1)                                \
	X(device_name, cu_device_name_fn, "cuDeviceGetName", 1)                          \
	X(device_uuid, cu_device_uuid_fn, "cuDeviceGetUuid_v2", 0)                       \
	X(device_total_mem, cu_device_total_mem_fn, "cuDeviceTotalMem_v2", 1)            \
	X(device_attribute, cu_device_attribute_fn, "cuDeviceGetAttribute", 1)           \
	X(primary_retain, cu_primary_retain_fn, "cuDevicePrimaryCtxRetain", 1)           \
	X(primary_release, cu_primary_release_fn, "cuDevicePrimaryCtxRelease_v2", 1)     \
	X(ctx_push, cu_ctx_push_fn, "cuCtxPushCurrent_v2", 1)                            \
	X(ctx_pop, cu_ctx_pop_fn, "cuCtxPopCurrent_v2", 1)                               \
	X(mem_get_info, cu_mem_get_info_fn, "cuMemGetInfo_v2", 1)                        \
	X(alloc_managed, cu_alloc_managed_fn, "cuMemAllocManaged", 1)                    \
	X(mem_free, cu_mem_free_fn, "cuMemFree_v2", 1)                                   \
	X(prefetch_v2, cu_prefetch_v2_fn, "cuMemPrefetchAsync_v2", 0)                    \
	X(prefetch, cu_prefetch_fn, "cuMemPrefetchAsync", 0)                             \
	X(advise_v2, cu_advise_v2_fn, "cuMemAdvise_v2", 0)                               \
	X(advise, cu_advise_fn, "cuMemAdvise", 0)                                        \
	X(range_attribute, cu_range_attribute_fn, "cuMemRangeGetAttribute", 1)           \
	X(pointer_attribute, cu_pointer_attribute_fn, "cuPointerGetAttribute", 1)        \
	X(host_register, cu_host_register_fn, "cuMemHostRegister_v2", 1)                 \
	X(host_unregister, cu_host_unregister_fn, "cuMemHostUnregister", 1)              \
	X(memcpy_async, cu_memcpy_async_fn, "cuMemcpyAsync", 1)                          \
	X(stream_create, cu_stream_create_fn, "cuStreamCreate", 1)                       \
	X(stream_sync, cu_stream_fn, "cuStreamSynchronize", 1)                           \
	X(stream_destroy, cu_stream_fn, "cuStreamDestroy_v2", 1)                         \
	X(event_create, cu_event_create_fn, "cuEventCreate", 1)                          \
	X(event_record, cu_event_record_fn, "cuEventRecord", 1)                          \
	X(event_query, cu_event_fn, "cuEventQuery", 1)                                   \
	X(event_sync, cu_event_fn, "cuEventSynchronize", 1)                              \
	X(event_destroy, cu_event_fn, "cuEventDestroy_v2", 1)                            \
	X(error_name, cu_error_name_fn, "cuGetErrorName", 0)                             \
	X(module_load_data, cu_module_load_data_fn, "cuModuleLoadData", 0)               \
	X(module_get_function, cu_module_get_function_fn, "cuModuleGetFunction", 0)      \
	X(module_unload, cu_module_unload_fn, "cuModuleUnload", 0)                       \
	X(launch_kernel, cu_launch_kernel_fn, "cuLaunchKernel", 0)                       \
	X(launch_host_func, cu_launch_host_func_fn, "cuLaunchHostFunc", 0)               \
	X(prefetch_batch, cu_prefetch_batch_fn, "cuMemPrefetchBatchAsync", 0)

#endif
