/* SPDX-License-Identifier: MIT */
/*
 * An OpenCL kernel working in place on libcoherent memory.
 *
 * libcoherent does not know OpenCL and does not link it; the program does.
 * Memory from coh_alloc() or an application's own range registered with
 * coh_adopt() is ordinary process memory, so OpenCL reaches it the two ways
 * it reaches any host memory:
 *
 *   - a buffer created with CL_MEM_USE_HOST_PTR over the range: on a runtime
 *     that can, the device uses the range itself (PoCL's CPU device does);
 *     others copy it in and out around each command (NVIDIA's);
 *   - the bare pointer as a kernel argument (clSetKernelArgSVMPointer): only
 *     on a device with fine-grain *system* SVM (CL_DEVICE_SVM_FINE_GRAIN_SYSTEM),
 *     which can use any pointer of the process.  Coarse- and fine-grain
 *     *buffer* SVM cover clSVMAlloc memory only, not libcoherent's.
 *
 * Afterwards libcoherent still answers for the range: where its pages are
 * (coh_query), what a pin and a fork would do.
 *
 * Never call OpenCL in a child forked after OpenCL was used: fork and exec
 * instead (docs/semantics.md, "The runtime fork trap").
 *
 * Build: cc opencl_interop.c $(pkg-config --cflags --libs libcoherent) -lOpenCL
 * Exit 77 when there is no OpenCL device.
 */
#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS
#include <CL/cl.h>
#include <coherent.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#define N (64 * 1024 / sizeof(uint32_t))   /* 64 KiB of uint32 */

/* Each element becomes 3 * x + 1. */
static const char *src = "__kernel void times3plus1(__global uint *x) { size_t i = get_global_id(0); x[i] = 3 * x[i] + 1; }";

static cl_context cx;
static cl_command_queue q;
static cl_kernel k;

/* Runs the kernel over the range; svm: as a bare pointer, else through a
 * USE_HOST_PTR buffer.  Returns the number of wrong elements, -1 on an error. */
static long run(coh_context *ctx, uint32_t *p, int svm)
{
	for (size_t i = 0; i < N; i++)
		p[i] = (uint32_t)i;
	cl_int e;
	cl_mem buf = NULL;
	size_t n = N;
	if (svm) {
		e = clSetKernelArgSVMPointer(k, 0, p);
	} else {
		buf = clCreateBuffer(cx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, N * sizeof(*p), p, &e);
		if (buf)
			e = clSetKernelArg(k, 0, sizeof(buf), &buf);
	}
	if (e == CL_SUCCESS)
		e = clEnqueueNDRangeKernel(q, k, 1, NULL, &n, NULL, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clFinish(q);
	if (e == CL_SUCCESS && buf) {
		/* Mapping hands the latest data to the host: with USE_HOST_PTR in
		 * the range itself.  Same pointer back = no copy was needed. */
		void *m = clEnqueueMapBuffer(q, buf, CL_TRUE, CL_MAP_READ, 0, N * sizeof(*p), 0, NULL, NULL, &e);
		if (m) {
			printf("  USE_HOST_PTR: map returned %s\n", m == (void *)p ? "the range itself" : "another pointer");
			clEnqueueUnmapMemObject(q, buf, m, 0, NULL, NULL);
			clFinish(q);
		}
	}
	if (buf)
		clReleaseMemObject(buf);
	if (e != CL_SUCCESS) {
		printf("  OpenCL error %d\n", e);
		return -1;
	}
	long bad = 0;
	for (size_t i = 0; i < N; i++)
		bad += p[i] != 3 * (uint32_t)i + 1;
	/* libcoherent still knows the range and where its pages are. */
	struct coh_extent ext[4];
	int ne = coh_query(ctx, p, N * sizeof(*p), ext, 4, sizeof(ext[0]));
	if (ne > 0)
		printf("  %ld wrong; pages: %s on %s\n", bad, coh_mem_kind_name(ext[0].kind),
		       ext[0].target ? coh_target_name(ext[0].target) : "-");
	return bad;
}

int main(void)
{
	/* The first OpenCL device of the first platform. */
	cl_platform_id plat;
	cl_device_id dev;
	cl_uint n = 0;
	cl_int e;
	if (clGetPlatformIDs(1, &plat, &n) != CL_SUCCESS || !n ||
	    clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, &n) != CL_SUCCESS || !n) {
		printf("opencl_interop: no OpenCL device (skip)\n");
		return 77;
	}
	char name[128] = "";
	clGetDeviceInfo(dev, CL_DEVICE_NAME, sizeof(name), name, NULL);
	cl_device_svm_capabilities svm = 0;   /* an OpenCL 1.2 device refuses the query: none */
	if (clGetDeviceInfo(dev, CL_DEVICE_SVM_CAPABILITIES, sizeof(svm), &svm, NULL) != CL_SUCCESS)
		svm = 0;
	cx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
	q = cx ? clCreateCommandQueue(cx, dev, 0, &e) : NULL;
	cl_program prog = q ? clCreateProgramWithSource(cx, 1, &src, NULL, &e) : NULL;
	if (!prog || clBuildProgram(prog, 1, &dev, NULL, NULL, NULL) != CL_SUCCESS ||
	    !(k = clCreateKernel(prog, "times3plus1", &e))) {
		printf("opencl_interop: cannot set up %s\n", name);
		return 1;
	}

	/* The first libcoherent target that allocates. */
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *t = NULL;
	coh_target_foreach(ctx, t)
		if (coh_target_caps(t) & COH_CAP_ALLOC)
			break;
	if (!t) {
		printf("opencl_interop: no target allocates (skip)\n");
		return 77;
	}
	printf("%s on %s\n", name, coh_target_name(t));
	long bad = 0;

	/* 1. Memory from coh_alloc. */
	uint32_t *p;
	if (coh_alloc(t, N * sizeof(*p), NULL, (void **)&p) == 0) {
		printf("coh_alloc:\n");
		bad += run(ctx, p, 0) != 0;
		if (svm & CL_DEVICE_SVM_FINE_GRAIN_SYSTEM)
			bad += run(ctx, p, 1) != 0;
		coh_free(ctx, p);
	}

	/* 2. The application's own memory, adopted: still the application's,
	 * now also known to libcoherent. */
	void *m = mmap(NULL, N * sizeof(*p), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m != MAP_FAILED && coh_adopt(t, m, N * sizeof(*p), NULL) == 0) {
		printf("coh_adopt:\n");
		bad += run(ctx, m, 0) != 0;
		if (svm & CL_DEVICE_SVM_FINE_GRAIN_SYSTEM)
			bad += run(ctx, m, 1) != 0;
		coh_release(ctx, m);
	}
	if (m != MAP_FAILED)
		munmap(m, N * sizeof(*p));
	if (!(svm & CL_DEVICE_SVM_FINE_GRAIN_SYSTEM))
		printf("no fine-grain system SVM on this device: the bare-pointer way was not tried\n");

	clReleaseKernel(k);
	clReleaseProgram(prog);
	clReleaseCommandQueue(q);
	clReleaseContext(cx);
	coh_context_unref(ctx);
	return bad ? 1 : 0;
}
