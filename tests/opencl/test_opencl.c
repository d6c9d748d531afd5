/* SPDX-License-Identifier: MIT */
/*
 * OpenCL as a test and interop tool (never a backend): an OpenCL device works
 * in place on memory that libcoherent allocated or adopted, and libcoherent's
 * own answers about that memory do not change under it.
 *
 *  1. Every OpenCL device is listed and matched to libcoherent targets: by PCI
 *     address (cl_khr_pci_bus_info, then CL_DEVICE_TOPOLOGY_AMD, then NVIDIA's
 *     bus/slot ids) against coh_target_device(); a CPU device maps to the
 *     targets that are NUMA nodes.
 *  2. For every target that can allocate and every device: a range of
 *     NPAGES4K pages of 4 KiB from coh_alloc() (and one from coh_adopt() of an
 *     mmap'd range where the target adopts) is filled by the CPU; a kernel
 *     reads every 64-bit word, writes one checksum per 4 KiB page and a new
 *     pattern in place; the CPU checks both.  Two ways in:
 *       host-ptr  clCreateBuffer(CL_MEM_USE_HOST_PTR) over the range; "in
 *                 place" when the kernel's writes are in the range before it
 *                 is mapped and clEnqueueMapBuffer returns the range itself;
 *       svm       the range as a raw SVM pointer (clSetKernelArgSVMPointer),
 *                 only where the device has CL_DEVICE_SVM_FINE_GRAIN_SYSTEM.
 *     coh_query(), coh_pin_query() and coh_fork_query() over the range give
 *     the same answers before, during (buffer alive) and after device access.
 *  3. A child forked after the process used OpenCL touches the memory from
 *     the CPU only (a child that calls the runtime hangs: docs/semantics.md,
 *     "The runtime fork trap"); a fork+exec'd child starts a fresh runtime.
 *
 * The definitions the library's own device-access checks are to share:
 *   word at byte offset o of the range:  pattern ^ (o * 0x9E3779B97F4A7C15)
 *   checksum of a 4 KiB page:           sum over its words w_i, i = 0..511,
 *                                       of w_i * (2i + 1), modulo 2^64
 *
 * With COH_OPENCL_FORK_TRAP=1 it also notes what the runtime does when a
 * forked child calls it on the parent's queue (a measurement, not a check).
 *
 * Output: the devices and their matches, one line per check, per target
 * "TARGET: N passed, N failed, N skipped", then the total.  Exit 1 on any
 * failure, 77 (with the reason) when there is no OpenCL platform or device,
 * or no target to run on.
 */
#define CL_TARGET_OPENCL_VERSION 300
#define CL_USE_DEPRECATED_OPENCL_1_2_APIS   /* clCreateCommandQueue: 1.2 platforms too */
#include <CL/cl.h>

#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coherent.h"

/* Device queries of extensions, defined here so that older headers do. */
#define Q_PCI_BUS_INFO_KHR 0x410F     /* cl_khr_pci_bus_info */
#define Q_TOPOLOGY_AMD 0x4037         /* cl_amd_device_attribute_query */
#define Q_PCI_BUS_ID_NV 0x4008        /* cl_nv_device_attribute_query */
#define Q_PCI_SLOT_ID_NV 0x4009       /* device << 3 | function */
#define Q_PCI_DOMAIN_ID_NV 0x400A     /* newer drivers only */
struct pci_bus_info_khr {
	cl_uint domain, bus, device, function;
};
union topology_amd {
	struct { cl_uint type; cl_uint data[5]; } raw;
	/* bus is a (signed) char: buses above 127 read negative */
	struct { cl_uint type; cl_char unused[17]; cl_char bus, device, function; } pcie;
};

#define WORDS 512                      /* 64-bit words in a 4 KiB page */
#define NPAGES4K 16
#define GOLDEN 0x9E3779B97F4A7C15ull

static const char kernel_src[] =
	"__kernel void pagesum(__global ulong *buf, __global ulong *sums, ulong pattern)\n"
	"{\n"
	"	size_t page = get_global_id(0);\n"
	"	__global ulong *w = buf + page * 512;\n"
	"	ulong s = 0;\n"
	"	for (uint i = 0; i < 512; i++) {\n"
	"		s += w[i] * (ulong)(2 * i + 1);\n"
	"		ulong o = ((ulong)page * 512 + i) * 8;\n"
	"		w[i] = pattern ^ (o * 0x9E3779B97F4A7C15UL);\n"
	"	}\n"
	"	sums[page] = s;\n"
	"}\n";

struct dev {
	cl_device_id id;
	char name[128], version[256], platform[128];
	cl_device_type type;
	cl_device_svm_capabilities svm;
	bool has_pci;
	unsigned dom, bus, slot, fn;
	const char *pci_via;
	cl_context cx;
	cl_command_queue q;
	cl_program prog;
	cl_kernel k;
	cl_mem sums;
	double build_cold, build_warm;
};

#define MAXDEV 16
static struct dev devs[MAXDEV];
static int ndev;
static coh_context *ctx;
static size_t ps, len;
static int n_pass, n_fail, n_skip, t_pass, t_fail, t_skip;
static uint64_t next_pattern = 0x0123456789abcdefull;

enum { PASS, FAIL, SKIP };

static void report(const char *where, const char *check, int verdict, const char *fmt, ...)
{
	char why[512] = "";
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	static const char *const names[] = { "PASS", "FAIL", "SKIP" };
	printf("  %-4s %-28s %-16s %s\n", names[verdict], where, check, why);
	int *c[] = { &t_pass, &t_fail, &t_skip };
	(*c[verdict])++;
}

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the shared definitions ---- */

/* The library's own definitions (coherent.h), so the OpenCL kernel is
 * checked against what coh_device_access reports on other devices. */
static uint64_t word_at(uint64_t pattern, size_t off)
{
	return coh_pattern_word(pattern, off);
}

static uint64_t page_sum(uint64_t pattern, size_t page)
{
	uint64_t blk[WORDS];
	for (size_t i = 0; i < WORDS; i++)
		blk[i] = word_at(pattern, page * COH_SUM_BLOCK + i * 8);
	return coh_block_sum(blk);
}

static void fill(uint64_t *w, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		w[i] = word_at(pattern, i * 8);
}

/* Index of the first word that differs, or -1. */
static long differs(const uint64_t *w, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != word_at(pattern, i * 8))
			return (long)i;
	return -1;
}

/* ---- devices ---- */

static bool has_ext(cl_device_id id, const char *ext)
{
	size_t n = 0;
	if (clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, 0, NULL, &n) != CL_SUCCESS || n == 0)
		return false;
	char *s = malloc(n + 2);
	if (!s)
		return false;
	bool found = false;
	if (clGetDeviceInfo(id, CL_DEVICE_EXTENSIONS, n, s, NULL) == CL_SUCCESS) {
		s[n] = '\0';
		size_t el = strlen(ext);
		for (char *p = strstr(s, ext); p && !found; p = strstr(p + 1, ext))
			found = (p == s || p[-1] == ' ') && (p[el] == ' ' || p[el] == '\0');
	}
	free(s);
	return found;
}

/* The device's PCI address, from the first query that answers. */
static void device_pci(struct dev *d)
{
	struct pci_bus_info_khr khr;
	union topology_amd amd;
	cl_uint nvbus, nvslot, nvdom = 0;
	if (has_ext(d->id, "cl_khr_pci_bus_info") &&
	    clGetDeviceInfo(d->id, Q_PCI_BUS_INFO_KHR, sizeof(khr), &khr, NULL) == CL_SUCCESS) {
		d->dom = khr.domain, d->bus = khr.bus, d->slot = khr.device, d->fn = khr.function;
		d->pci_via = "cl_khr_pci_bus_info";
	} else if (has_ext(d->id, "cl_amd_device_attribute_query") &&
		   clGetDeviceInfo(d->id, Q_TOPOLOGY_AMD, sizeof(amd), &amd, NULL) == CL_SUCCESS &&
		   amd.raw.type == 1) {
		d->dom = 0;
		d->bus = (unsigned char)amd.pcie.bus;
		d->slot = (unsigned char)amd.pcie.device;
		d->fn = (unsigned char)amd.pcie.function;
		d->pci_via = "CL_DEVICE_TOPOLOGY_AMD (no domain: matched on bus:dev.fn)";
	} else if (has_ext(d->id, "cl_nv_device_attribute_query") &&
		   clGetDeviceInfo(d->id, Q_PCI_BUS_ID_NV, sizeof(nvbus), &nvbus, NULL) == CL_SUCCESS &&
		   clGetDeviceInfo(d->id, Q_PCI_SLOT_ID_NV, sizeof(nvslot), &nvslot, NULL) == CL_SUCCESS) {
		bool dom = clGetDeviceInfo(d->id, Q_PCI_DOMAIN_ID_NV, sizeof(nvdom), &nvdom, NULL) == CL_SUCCESS;
		d->dom = dom ? nvdom : 0;
		d->bus = nvbus & 0xff, d->slot = nvslot >> 3, d->fn = nvslot & 7;
		d->pci_via = dom ? "CL_DEVICE_PCI_BUS_ID_NV/SLOT_ID_NV/DOMAIN_ID_NV"
				 : "CL_DEVICE_PCI_BUS_ID_NV/SLOT_ID_NV (no domain: matched on bus:dev.fn)";
	} else {
		return;
	}
	d->has_pci = true;
}

static bool is_node_target(const coh_target *t)
{
	int k = coh_target_kind(t);
	return k == COH_KIND_HOST_NODE || k == COH_KIND_CPULESS_NODE;
}

/* Prints the targets a device maps to; counts a failure where libcoherent's
 * two spellings of a target's PCI address disagree. */
static void match_device(struct dev *d)
{
	char where[40];
	snprintf(where, sizeof(where), "cl%d", (int)(d - devs));
	coh_target *t;
	int matched = 0;
	if (d->type & CL_DEVICE_TYPE_CPU) {
		char names[256] = "";
		coh_target_foreach(ctx, t) {
			if (!is_node_target(t))
				continue;
			size_t n = strlen(names);
			snprintf(names + n, sizeof(names) - n, "%s%s", matched++ ? ", " : "", coh_target_name(t));
		}
		if (matched)
			report(where, "match", PASS, "CPU device: the node targets %s", names);
		else
			report(where, "match", SKIP, "CPU device, but the context has no NUMA-node target");
		return;
	}
	if (!d->has_pci) {
		report(where, "match", SKIP, "no PCI address: no cl_khr_pci_bus_info, AMD topology or NVIDIA bus id");
		return;
	}
	bool no_dom = strstr(d->pci_via, "no domain") != NULL;
	coh_target_foreach(ctx, t) {
		struct coh_device_info di = { .size = sizeof(di) };
		if (coh_target_device(t, &di) || !(di.status & COH_DEVICE_HAS_PCI))
			continue;
		char s[32];
		snprintf(s, sizeof(s), "%04x:%02x:%02x.%x", di.pci_domain, di.pci_bus, di.pci_dev, di.pci_fn);
		const char *addr = coh_target_pci_address(t);
		if (!addr || strcasecmp(addr, s)) {
			report(where, "match", FAIL, "%s: coh_target_pci_address \"%s\", coh_target_device %s",
			       coh_target_name(t), addr ? addr : "(null)", s);
			return;
		}
		if ((no_dom || di.pci_domain == d->dom) && di.pci_bus == d->bus && di.pci_dev == d->slot &&
		    di.pci_fn == d->fn) {
			report(where, "match", PASS, "%04x:%02x:%02x.%x via %s = %s", d->dom, d->bus, d->slot, d->fn,
			       d->pci_via, coh_target_name(t));
			matched++;
		}
	}
	if (!matched)
		report(where, "match", SKIP, "%04x:%02x:%02x.%x via %s: no libcoherent target there", d->dom, d->bus,
		       d->slot, d->fn, d->pci_via);
}

/* The SVM capability bits in words: "coarse-buffer fine-buffer atomics", "none". */
static const char *svm_words(cl_device_svm_capabilities c, char *buf, size_t n)
{
	snprintf(buf, n, "%s%s%s%s", c & CL_DEVICE_SVM_COARSE_GRAIN_BUFFER ? " coarse-buffer" : "",
		 c & CL_DEVICE_SVM_FINE_GRAIN_BUFFER ? " fine-buffer" : "",
		 c & CL_DEVICE_SVM_FINE_GRAIN_SYSTEM ? " fine-system" : "",
		 c & CL_DEVICE_SVM_ATOMICS ? " atomics" : "");
	if (!buf[0])
		snprintf(buf, n, " none");
	return buf + 1;
}

/* A program object built from kernel_src with these options, timed. */
static cl_program build(struct dev *d, const char *opts, double *secs)
{
	const char *src = kernel_src;
	cl_int e;
	cl_program p = clCreateProgramWithSource(d->cx, 1, &src, NULL, &e);
	if (!p)
		return NULL;
	double t0 = now();
	e = clBuildProgram(p, 1, &d->id, opts, NULL, NULL);
	*secs = now() - t0;
	if (e != CL_SUCCESS) {
		char log[2048] = "";
		clGetProgramBuildInfo(p, d->id, CL_PROGRAM_BUILD_LOG, sizeof(log) - 1, log, NULL);
		fprintf(stderr, "clBuildProgram: %d\n%s\n", e, log);
		clReleaseProgram(p);
		return NULL;
	}
	return p;
}

/* Context, queue and kernel for a device.  The first build carries an option
 * no earlier run used, so it misses every compiler cache (cold); the second,
 * the same again, is what a program pays once the cache holds it (warm). */
static int setup_device(struct dev *d)
{
	cl_int e;
	d->cx = clCreateContext(NULL, 1, &d->id, NULL, NULL, &e);
	if (!d->cx)
		return e;
	d->q = clCreateCommandQueue(d->cx, d->id, 0, &e);
	if (!d->q)
		return e;
	char opts[64];
	snprintf(opts, sizeof(opts), "-D COH_RUN=%ldu%ld", (long)getpid(), (long)time(NULL));
	cl_program cold = build(d, opts, &d->build_cold);
	if (!cold)
		return CL_BUILD_PROGRAM_FAILURE;
	clReleaseProgram(cold);
	d->prog = build(d, opts, &d->build_warm);
	if (!d->prog)
		return CL_BUILD_PROGRAM_FAILURE;
	d->k = clCreateKernel(d->prog, "pagesum", &e);
	if (!d->k)
		return e;
	d->sums = clCreateBuffer(d->cx, CL_MEM_READ_WRITE, NPAGES4K * sizeof(uint64_t), NULL, &e);
	return d->sums ? CL_SUCCESS : e;
}

static void teardown_device(struct dev *d)
{
	if (d->sums)
		clReleaseMemObject(d->sums);
	if (d->k)
		clReleaseKernel(d->k);
	if (d->prog)
		clReleaseProgram(d->prog);
	if (d->q)
		clReleaseCommandQueue(d->q);
	if (d->cx)
		clReleaseContext(d->cx);
}

static int find_devices(void)
{
	cl_platform_id plats[8];
	cl_uint np = 0;
	cl_int e = clGetPlatformIDs(8, plats, &np);
	if (e != CL_SUCCESS || np == 0) {
		printf("test_opencl: no OpenCL platform (clGetPlatformIDs: %d): the loader found no ICD "
		       "(OCL_ICD_VENDORS=%s) (skip)\n", e, getenv("OCL_ICD_VENDORS") ? getenv("OCL_ICD_VENDORS") : "unset");
		return -1;
	}
	for (cl_uint p = 0; p < np && p < 8; p++) {
		char pname[128] = "";
		clGetPlatformInfo(plats[p], CL_PLATFORM_NAME, sizeof(pname), pname, NULL);
		cl_device_id ids[MAXDEV];
		cl_uint nd = 0;
		if (clGetDeviceIDs(plats[p], CL_DEVICE_TYPE_ALL, MAXDEV, ids, &nd) != CL_SUCCESS)
			nd = 0;
		printf("platform %u: %s, %u device(s)\n", p, pname, nd);
		for (cl_uint i = 0; i < nd && i < MAXDEV && ndev < MAXDEV; i++) {
			cl_bool avail = CL_FALSE;
			clGetDeviceInfo(ids[i], CL_DEVICE_AVAILABLE, sizeof(avail), &avail, NULL);
			if (!avail)
				continue;
			struct dev *d = &devs[ndev++];
			d->id = ids[i];
			snprintf(d->platform, sizeof(d->platform), "%s", pname);
			clGetDeviceInfo(d->id, CL_DEVICE_NAME, sizeof(d->name), d->name, NULL);
			clGetDeviceInfo(d->id, CL_DEVICE_VERSION, sizeof(d->version), d->version, NULL);
			clGetDeviceInfo(d->id, CL_DEVICE_TYPE, sizeof(d->type), &d->type, NULL);
			/* OpenCL 1.2 devices do not know the query: no SVM */
			if (clGetDeviceInfo(d->id, CL_DEVICE_SVM_CAPABILITIES, sizeof(d->svm), &d->svm, NULL) != CL_SUCCESS)
				d->svm = 0;
			device_pci(d);
		}
	}
	return ndev;
}

/* ---- libcoherent's answers about a range ---- */

#define MAXEXT 16
struct answers {
	int n, npin, nfork;
	struct coh_extent e[MAXEXT];
	struct coh_pin_extent pin[MAXEXT];
	struct coh_fork_extent fork[MAXEXT];
};

static int take_answers(void *p, struct answers *a)
{
	memset(a, 0, sizeof(*a));
	a->n = coh_query(ctx, p, len, a->e, MAXEXT, sizeof(a->e[0]));
	a->npin = coh_pin_query(ctx, p, len, a->pin, MAXEXT, sizeof(a->pin[0]));
	a->nfork = coh_fork_query(ctx, p, len, a->fork, MAXEXT, sizeof(a->fork[0]));
	return a->n < 0 ? a->n : a->npin < 0 ? a->npin : a->nfork < 0 ? a->nfork : 0;
}

static bool same_extent(const struct coh_extent *x, const struct coh_extent *y)
{
	return x->start == y->start && x->length == y->length && x->kind == y->kind && x->node == y->node &&
	       x->target == y->target;
}

static bool same_pin(const struct coh_pin_extent *x, const struct coh_pin_extent *y)
{
	return x->start == y->start && x->length == y->length && x->short_term == y->short_term &&
	       x->long_term == y->long_term;
}

static bool same_fork(const struct coh_fork_extent *x, const struct coh_fork_extent *y)
{
	return x->start == y->start && x->length == y->length && x->policy == y->policy &&
	       x->child_view == y->child_view && x->parent_keeps == y->parent_keeps;
}

/* What differs between two sets of answers, or NULL. */
static const char *answers_differ(const struct answers *a, const struct answers *b)
{
	if (a->n != b->n || a->npin != b->npin || a->nfork != b->nfork)
		return "the number of extents";
	for (int i = 0; i < a->n; i++)
		if (!same_extent(&a->e[i], &b->e[i]))
			return "residency (kind, node or target)";
	for (int i = 0; i < a->npin; i++)
		if (!same_pin(&a->pin[i], &b->pin[i]))
			return "the pin answers";
	for (int i = 0; i < a->nfork; i++)
		if (!same_fork(&a->fork[i], &b->fork[i]))
			return "the fork answers";
	return NULL;
}

/* ---- one pass of the kernel over a range ---- */

/* Runs the kernel over [p, p+len), through a USE_HOST_PTR buffer (svm false)
 * or as an SVM pointer; checks the checksums and the new pattern.  0, or a
 * failure described in why. */
static int pass_kernel(struct dev *d, uint64_t *p, bool svm, char *why, size_t wn, struct answers *during)
{
	uint64_t old = next_pattern, pat = next_pattern * GOLDEN + 1;
	next_pattern = pat * GOLDEN + 1;
	fill(p, old);
	cl_int e;
	cl_mem buf = NULL;
	int rc = -1;
	if (svm) {
		e = clSetKernelArgSVMPointer(d->k, 0, p);
	} else {
		buf = clCreateBuffer(d->cx, CL_MEM_READ_WRITE | CL_MEM_USE_HOST_PTR, len, p, &e);
		if (buf)
			e = clSetKernelArg(d->k, 0, sizeof(buf), &buf);
	}
	if (e == CL_SUCCESS)
		e = clSetKernelArg(d->k, 1, sizeof(d->sums), &d->sums);
	if (e == CL_SUCCESS)
		e = clSetKernelArg(d->k, 2, sizeof(pat), &pat);
	size_t global = NPAGES4K;
	if (e == CL_SUCCESS)
		e = clEnqueueNDRangeKernel(d->q, d->k, 1, NULL, &global, NULL, 0, NULL, NULL);
	if (e == CL_SUCCESS)
		e = clFinish(d->q);
	if (e != CL_SUCCESS) {
		snprintf(why, wn, "%s: OpenCL error %d", svm ? "svm" : "host-ptr", e);
		goto out;
	}
	uint64_t sums[NPAGES4K];
	e = clEnqueueReadBuffer(d->q, d->sums, CL_TRUE, 0, sizeof(sums), sums, 0, NULL, NULL);
	if (e != CL_SUCCESS) {
		snprintf(why, wn, "reading the checksums: OpenCL error %d", e);
		goto out;
	}
	for (size_t i = 0; i < NPAGES4K; i++)
		if (sums[i] != page_sum(old, i)) {
			snprintf(why, wn, "page %zu: device checksum %#llx, the CPU's %#llx", i,
				 (unsigned long long)sums[i], (unsigned long long)page_sum(old, i));
			goto out;
		}
	if (take_answers(p, during)) {
		snprintf(why, wn, "a query failed while the device held the range");
		goto out;
	}
	if (svm) {
		long w = differs(p, pat);
		if (w >= 0) {
			snprintf(why, wn, "word %ld not the kernel's pattern", w);
			goto out;
		}
		snprintf(why, wn, "fine-grain system SVM: checksums and the kernel's pattern right");
		rc = 0;
		goto out;
	}
	/* Before the map: did the kernel write the range itself? */
	bool direct = differs(p, pat) < 0;
	void *m = clEnqueueMapBuffer(d->q, buf, CL_TRUE, CL_MAP_READ | CL_MAP_WRITE, 0, len, 0, NULL, NULL, &e);
	if (!m) {
		snprintf(why, wn, "clEnqueueMapBuffer: OpenCL error %d", e);
		goto out;
	}
	/* A finished map of a USE_HOST_PTR buffer leaves the latest bits in the range. */
	long w = differs(p, pat);
	clEnqueueUnmapMemObject(d->q, buf, m, 0, NULL, NULL);
	clFinish(d->q);
	if (w >= 0) {
		snprintf(why, wn, "word %ld of the range not the kernel's pattern after the map", w);
		goto out;
	}
	snprintf(why, wn, "checksums and pattern right; map %s the range, kernel wrote %s: %s",
		 m == (void *)p ? "returned" : "did not return", direct ? "the range itself" : "a copy",
		 m == (void *)p && direct ? "in place" : "NOT in place");
	rc = 0;
out:
	if (buf)
		clReleaseMemObject(buf);
	clFinish(d->q);
	return rc;
}

/* Both ways in over one range, each with libcoherent's answers compared. */
static void run_range(coh_target *t, struct dev *d, const char *what, uint64_t *p)
{
	char where[96], check[32], why[256];
	snprintf(where, sizeof(where), "%s cl%d", coh_target_name(t), (int)(d - devs));
	for (int svm = 0; svm <= 1; svm++) {
		snprintf(check, sizeof(check), "%s/%s", what, svm ? "svm" : "host-ptr");
		if (svm && !(d->svm & CL_DEVICE_SVM_FINE_GRAIN_SYSTEM)) {
			char s[96];
			report(where, check, SKIP, "no CL_DEVICE_SVM_FINE_GRAIN_SYSTEM (SVM: %s): only buffers "
			       "made by clSVMAlloc could be shared", svm_words(d->svm, s, sizeof(s)));
			continue;
		}
		struct answers before, during, after;
		fill(p, 0);   /* populate: a first CPU touch is not what is compared */
		if (take_answers(p, &before)) {
			report(where, check, FAIL, "a query failed: residency %d, pin %d, fork %d", before.n,
			       before.npin, before.nfork);
			continue;
		}
		if (pass_kernel(d, p, svm, why, sizeof(why), &during)) {
			report(where, check, FAIL, "%s", why);
			continue;
		}
		if (take_answers(p, &after)) {
			report(where, check, FAIL, "a query failed after the device access");
			continue;
		}
		const char *diff = answers_differ(&before, &during);
		const char *diff2 = answers_differ(&before, &after);
		if (diff || diff2) {
			report(where, check, FAIL, "%s changed by the device access (%s)", diff ? diff : diff2,
			       diff ? "while the buffer lived" : "after");
			continue;
		}
		struct coh_alloc_info info = { .size = sizeof(info) };
		if (coh_lookup(ctx, p, &info) || info.target != t || info.base != p || info.length != len) {
			report(where, check, FAIL, "coh_lookup no longer finds the range on %s", coh_target_name(t));
			continue;
		}
		report(where, check, PASS, "%s; answers unchanged (%d extent(s), %s on %s, pin %s/%s, fork child %s)",
		       why, before.n, coh_mem_kind_name(before.e[0].kind),
		       before.e[0].target ? coh_target_name(before.e[0].target) : "-",
		       coh_pin_answer_name(before.pin[0].short_term), coh_pin_answer_name(before.pin[0].long_term),
		       coh_child_view_name(before.fork[0].child_view));
	}
}

/* Checks that are not about fork use COPY, or the first policy the target offers. */
static int first_policy(const coh_target *t)
{
	for (int p = COH_FORK_COPY; p <= COH_FORK_KERNEL; p++)
		if (coh_target_caps(t) & (COH_CAP_FORK_COPY << p))
			return p;
	return COH_FORK_COPY;
}

/* A child of a process that has used OpenCL: it reads and writes the range
 * from the CPU and never calls the runtime.  The parent keeps its data. */
static void check_fork_child(coh_target *t, uint64_t *p, int policy)
{
	const char *check = "fork-child";
	if (policy != COH_FORK_COPY) {
		report(coh_target_name(t), check, SKIP, "the child of a %s range does not read the parent's data",
		       coh_fork_policy_name(policy));
		return;
	}
	uint64_t pat = 0xfeedfacecafef00dull;
	fill(p, pat);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(20);
		int bad = differs(p, pat) >= 0;
		fill(p, ~pat);
		_exit(bad ? 3 : 0);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		report(coh_target_name(t), check, FAIL, "fork or wait failed");
	else if (!WIFEXITED(st) || WEXITSTATUS(st))
		report(coh_target_name(t), check, FAIL, "child %s %d", WIFEXITED(st) ? "exited" : "killed by signal",
		       WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	else if (differs(p, pat) >= 0)
		report(coh_target_name(t), check, FAIL, "the child's writes reached the parent (COPY)");
	else
		report(coh_target_name(t), check, PASS, "child of an OpenCL process read the data from the CPU "
		       "(no runtime call), its writes stayed private");
}

static void run_target(coh_target *t)
{
	int policy = first_policy(t);
	uint64_t *p = NULL;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policy), (void **)&p);
	if (e) {
		report(coh_target_name(t), "alloc", FAIL, "coh_alloc: %s", coh_strerror(e));
		return;
	}
	for (int i = 0; i < ndev; i++)
		run_range(t, &devs[i], "alloc", p);
	check_fork_child(t, p, policy);
	e = coh_free(ctx, p);
	if (e)
		report(coh_target_name(t), "free", FAIL, "coh_free after device access: %s", coh_strerror(e));

	if (!(coh_target_caps(t) & COH_CAP_ADOPT)) {
		report(coh_target_name(t), "adopt", SKIP, "the target does not adopt memory");
		return;
	}
	void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (m == MAP_FAILED) {
		report(coh_target_name(t), "adopt", FAIL, "mmap failed");
		return;
	}
	e = coh_adopt(t, m, len, &COH_ALLOC_PROPS(.fork_policy = policy));
	if (e) {
		report(coh_target_name(t), "adopt", e == -EOPNOTSUPP ? SKIP : FAIL, "coh_adopt: %s", coh_strerror(e));
	} else {
		for (int i = 0; i < ndev; i++)
			run_range(t, &devs[i], "adopt", m);
		e = coh_release(ctx, m);
		if (e)
			report(coh_target_name(t), "release", FAIL, "coh_release after device access: %s", coh_strerror(e));
	}
	munmap(m, len);
}

/* ---- fork + exec: a fresh runtime ---- */

/* The exec'd child: the call that hangs in a forked child, in a fresh process. */
static int exec_child(void)
{
	alarm(60);
	cl_platform_id plat;
	cl_device_id dev;
	cl_uint n = 0;
	cl_int e;
	if (clGetPlatformIDs(1, &plat, &n) != CL_SUCCESS || !n ||
	    clGetDeviceIDs(plat, CL_DEVICE_TYPE_ALL, 1, &dev, &n) != CL_SUCCESS || !n)
		return 2;
	cl_context cx = clCreateContext(NULL, 1, &dev, NULL, NULL, &e);
	if (!cx)
		return 3;
	cl_command_queue q = clCreateCommandQueue(cx, dev, 0, &e);
	e = q ? clFinish(q) : e;
	if (q)
		clReleaseCommandQueue(q);
	clReleaseContext(cx);
	return e == CL_SUCCESS ? 0 : 4;
}

static void check_fork_exec(void)
{
	fflush(stdout);
	double t0 = now();
	pid_t pid = fork();
	if (pid == 0) {
		execl("/proc/self/exe", "test_opencl", "--exec-child", (char *)NULL);
		_exit(127);
	}
	int st = 0;
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		report("process", "fork+exec", FAIL, "fork or wait failed");
	else if (!WIFEXITED(st) || WEXITSTATUS(st))
		report("process", "fork+exec", FAIL, "the exec'd child's clFinish: %s %d",
		       WIFEXITED(st) ? "exit" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
	else
		report("process", "fork+exec", PASS, "an exec'd child created a context and a queue and "
		       "finished it (%.2f s)", now() - t0);
}

/* Only with COH_OPENCL_FORK_TRAP=1 (tests/device/nvidia.sh): what the runtime
 * does when a forked child calls it on the parent's queue.  A measurement,
 * not a check: the answer is the runtime's (PoCL 3.1: clFinish hangs). */
static void note_fork_trap(struct dev *d)
{
	char b[64] = "";
	cl_int e;
	cl_mem m = clCreateBuffer(d->cx, CL_MEM_READ_WRITE, sizeof(b), NULL, &e);
	if (!m)
		return;
	clFinish(d->q);
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		alarm(5);
		e = clEnqueueWriteBuffer(d->q, m, CL_FALSE, 0, sizeof(b), b, 0, NULL, NULL);
		if (e == CL_SUCCESS)
			e = clFinish(d->q);
		_exit(e == CL_SUCCESS ? 0 : 1);
	}
	int st = 0;
	if (pid > 0 && waitpid(pid, &st, 0) == pid)
		printf("  NOTE cl%d fork-trap: a forked child's write and clFinish on the parent's queue %s\n",
		       (int)(d - devs), WIFSIGNALED(st) && WTERMSIG(st) == SIGALRM ? "hung (killed after 5 s)"
		       : WIFSIGNALED(st) ? "crashed" : WEXITSTATUS(st) ? "failed" : "returned");
	clReleaseMemObject(m);
}

static void close_tally(const char *what)
{
	printf("%s: %d passed, %d failed, %d skipped\n", what, t_pass, t_fail, t_skip);
	n_pass += t_pass, n_fail += t_fail, n_skip += t_skip;
	t_pass = t_fail = t_skip = 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && !strcmp(argv[1], "--exec-child"))
		return exec_child();
	setvbuf(stdout, NULL, _IOLBF, 0);
	ps = (size_t)sysconf(_SC_PAGESIZE);
	len = (NPAGES4K * 4096 + ps - 1) / ps * ps;
	if (len != NPAGES4K * 4096) {
		printf("test_opencl: pages of %zu bytes do not tile %d KiB (skip)\n", ps, NPAGES4K * 4);
		return 77;
	}
	int nd = find_devices();
	if (nd <= 0) {
		if (nd == 0)
			printf("test_opencl: the platforms have no available device (skip)\n");
		return 77;
	}
	int e = coh_context_create(NULL, &ctx);
	if (e) {
		fprintf(stderr, "test_opencl: no context: %s\n", coh_strerror(e));
		return 1;
	}
	int rc = 0;
	for (int i = 0; i < ndev; i++) {
		struct dev *d = &devs[i];
		char s[96];
		printf("cl%d: %s (%s, %s, %s), SVM: %s\n", i, d->name, d->platform, d->version,
		       d->type & CL_DEVICE_TYPE_CPU ? "CPU" : d->type & CL_DEVICE_TYPE_GPU ? "GPU" : "other",
		       svm_words(d->svm, s, sizeof(s)));
		match_device(d);
		cl_int ce = setup_device(d);
		if (ce != CL_SUCCESS) {
			report("process", "setup", FAIL, "cl%d: context, queue or build: OpenCL error %d", i, ce);
			close_tally("devices");
			rc = 1;
			goto out;
		}
		printf("cl%d: program build %.3f s cold, %.3f s warm (cache: %s)\n", i, d->build_cold, d->build_warm,
		       getenv("POCL_CACHE_DIR") ? getenv("POCL_CACHE_DIR") : "the runtime's default");
	}
	close_tally("devices");

	int ran = 0;
	coh_target *t;
	coh_target_foreach(ctx, t) {
		if (!(coh_target_caps(t) & COH_CAP_ALLOC))
			continue;
		printf("%s (%s, %s)\n", coh_target_name(t), coh_target_backend(t), coh_target_kind_name(coh_target_kind(t)));
		run_target(t);
		close_tally(coh_target_name(t));
		ran++;
	}
	check_fork_exec();
	if (getenv("COH_OPENCL_FORK_TRAP") && !strcmp(getenv("COH_OPENCL_FORK_TRAP"), "1"))
		for (int i = 0; i < ndev; i++)
			note_fork_trap(&devs[i]);
	close_tally("process");
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	if (!ran) {
		printf("test_opencl: no target can allocate: nothing to run on (skip)\n");
		rc = n_fail ? 1 : 77;
	} else {
		rc = n_fail ? 1 : 0;
	}
out:
	for (int i = 0; i < ndev; i++)
		teardown_device(&devs[i]);
	coh_context_unref(ctx);
	return rc;
}
