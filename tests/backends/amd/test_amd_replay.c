/* SPDX-License-Identifier: MIT */
/* The amd backend's discovery on the hand-written KFD topology trees
 * (tests/data/make-kfd-trees.py): gpu_id, render node, PCI function and name,
 * VRAM size and its memory type for four GPU generations. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

static coh_context *tree(const char *name)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", getenv("COH_TEST_DATA"), name);
	struct coh_context_options o = { .size = sizeof(o), .backends = "amd", .fsroot = path, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void gpu(coh_context *ctx, const char *name, int kind, uint32_t gpu_id, const char *words, const char *pci,
		uint64_t vram)
{
	coh_target *t = coh_target_find(ctx, name);
	ck_assert_msg(t != NULL, "%s not discovered", name);
	ck_assert_str_eq(coh_target_backend(t), "amd");
	ck_assert_str_eq(coh_target_vendor(t), "AMD");
	ck_assert_int_eq(coh_target_kind(t), kind);
	ck_assert_msg(strstr(coh_target_model(t), words), "%s model: %s", name, coh_target_model(t));
	ck_assert_str_eq(coh_target_pci_address(t), pci);
	/* identity as data: the KFD gpu_id, the PCI function, SVM, and the
	 * status saying this path was never run on AMD hardware */
	struct coh_device_info d = { .size = sizeof(d) };
	ck_assert_int_eq(coh_target_device(t, &d), 0);
	ck_assert_uint_eq(d.status & (COH_DEVICE_HAS_GPU_ID | COH_DEVICE_HAS_PCI | COH_DEVICE_UNVERIFIED),
			  COH_DEVICE_HAS_GPU_ID | COH_DEVICE_HAS_PCI | COH_DEVICE_UNVERIFIED);
	ck_assert_uint_eq(d.gpu_id, gpu_id);
	char addr[16];
	snprintf(addr, sizeof(addr), "%04x:%02x:%02x.%x", d.pci_domain, d.pci_bus, d.pci_dev, d.pci_fn);
	ck_assert_str_eq(addr, pci);
	ck_assert_int_eq(d.memory_model, COH_MODEL_SVM);
	ck_assert_ptr_null(strstr(coh_target_model(t), "hardware"));
	ck_assert_ptr_nonnull(coh_target_pci_name(t));
	uint64_t total = 1;
	ck_assert_int_eq(coh_target_capacity(t, &total, NULL), 0);
	ck_assert_uint_eq(total, vram);
	ck_assert_int_eq(coh_target_numa_node(t), -ENOENT);
	uint64_t need = COH_CAP_ALLOC | COH_CAP_ADOPT | COH_CAP_MIGRATE | COH_CAP_QUERY | COH_CAP_PIN_QUERY |
			COH_CAP_FORK_COPY | COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_ZERO | COH_CAP_FORK_KERNEL;
	ck_assert_uint_eq(coh_target_caps(t) & need, need);
	ck_assert_uint_eq(coh_target_caps(t) & COH_CAP_FORK_SHARE, 0);
	void *p;
	ck_assert_int_eq(coh_alloc(t, 4096, NULL, &p), -EROFS);   /* a recording: described, never used */
}

START_TEST(mi210_pcie)
{
	coh_context *ctx = tree("kfd-mi210");
	ck_assert_int_eq(coh_target_count(ctx), 1);
	gpu(ctx, "amd:gpu1", COH_KIND_DEVICE_PRIVATE, 51238, "gfx90a (gfx 90010), 64 GiB VRAM device-private, SVM yes, render D128",
	    "0000:03:00.0", 64ull << 30);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(mi250x_xgmi_to_cpu)
{
	coh_context *ctx = tree("kfd-mi250x-xgmi");
	ck_assert_int_eq(coh_target_count(ctx), 2);
	gpu(ctx, "amd:gpu1", COH_KIND_DEVICE_COHERENT, 11011, "), 64 GiB VRAM device-coherent, SVM yes, render D128",
	    "0000:c1:00.0", 64ull << 30);
	gpu(ctx, "amd:gpu2", COH_KIND_DEVICE_COHERENT, 22022, "), 64 GiB VRAM device-coherent, SVM yes, render D129",
	    "0000:c9:00.0", 64ull << 30);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(mi300a_apu)
{
	coh_context *ctx = tree("kfd-mi300a");
	gpu(ctx, "amd:gpu1", COH_KIND_VENDOR_MANAGED, 47477, "gfx942 (gfx 90402), no VRAM, system memory (APU)",
	    "0000:02:00.0", 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(rx7900_rdna)
{
	coh_context *ctx = tree("kfd-rx7900");
	gpu(ctx, "amd:gpu1", COH_KIND_DEVICE_PRIVATE, 60961, "gfx1100 (gfx 110000), 24 GiB VRAM device-private",
	    "0000:0b:00.0", 24ull << 30);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(no_kfd_here)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/cxl-two-nodes", getenv("COH_TEST_DATA"));
	struct coh_context_options o = { .size = sizeof(o), .backends = "amd", .fsroot = path, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_target_count(ctx), 0);
	ck_assert_int_eq(coh_backend_status(ctx, "amd", NULL, 0), 0);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("amd_replay");
	TCase *tc = tcase_create("topology");
	tcase_add_test(tc, mi210_pcie);
	tcase_add_test(tc, mi250x_xgmi_to_cpu);
	tcase_add_test(tc, mi300a_apu);
	tcase_add_test(tc, rx7900_rdna);
	tcase_add_test(tc, no_kfd_here);
	suite_add_tcase(s, tc);
	return t_run(s);
}
