/* SPDX-License-Identifier: MIT */
/* The cxl backend's discovery on recorded machines: device-dax devices in
 * devdax mode become targets, kmem-bound ones (system RAM) do not. */
#include <stdlib.h>
#include <string.h>

#include "common.h"

static coh_context *replay(const char *tarball, char **root)
{
	char path[512];
	snprintf(path, sizeof(path), "%s/%s", getenv("COH_TEST_DATA"), tarball);
	*root = t_untar(path);
	ck_assert_ptr_nonnull(*root);
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .fsroot = *root, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void cleanup(char *root)
{
	char cmd[600];
	char *slash = strrchr(root, '/');
	*slash = '\0';   /* the mkdtemp folder above the tree */
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	ck_assert_int_eq(system(cmd), 0);
	free(root);
}

static void expect(coh_context *ctx, const char *name, uint64_t size)
{
	coh_target *t = coh_target_find(ctx, name);
	ck_assert_msg(t != NULL, "%s not discovered", name);
	ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_DAX);
	ck_assert_str_eq(coh_target_backend(t), "cxl");
	uint64_t total = 0;
	ck_assert_int_eq(coh_target_capacity(t, &total, NULL), 0);
	ck_assert_uint_eq(total, size);
	ck_assert_uint_eq(coh_target_caps(t), COH_CAP_ALLOC | COH_CAP_QUERY | COH_CAP_PIN_QUERY | COH_CAP_FORK_SHARE |
						      COH_CAP_FORK_EXCLUDE | COH_CAP_FORK_KERNEL);
	ck_assert_int_eq(coh_target_numa_node(t), -ENOENT);
	/* nothing to allocate from yet: refused, not faked */
	void *p;
	ck_assert_int_eq(coh_alloc(t, 4096, 0, 0, &p), -EROFS);   /* replay first */
}

START_TEST(fake_hetero_tiers)
{
	char *root;
	coh_context *ctx = replay("fakeheteromemtiers.tar.bz2", &root);
	/* hwloc: "OSDev[Memory](SPM) ... Size=524288KiB ... dax0.0"; dax1.0, 3.0, 5.0, 7.0, 8.0 are kmem */
	ck_assert_int_eq(coh_target_count(ctx), 3);
	expect(ctx, "cxl:dax0.0", 536870912);
	expect(ctx, "cxl:dax2.0", 536870912);
	expect(ctx, "cxl:dax6.0", 526385152);
	ck_assert_ptr_null(coh_target_find(ctx, "cxl:dax1.0"));
	ck_assert_ptr_nonnull(strstr(coh_target_model(coh_target_find(ctx, "cxl:dax0.0")), "hmem.0"));
	coh_context_unref(ctx);
	cleanup(root);
}
END_TEST

START_TEST(two_socket_with_dax)
{
	char *root;
	coh_context *ctx = replay("32em64t-2n8c+dax+nvme+mic+dimms.tar.bz2", &root);
	/* dax0.0 and dax1.3 in devdax mode (hwloc lists both as NVM DAX devices); dax1.4 is kmem */
	ck_assert_int_eq(coh_target_count(ctx), 2);
	expect(ctx, "cxl:dax0.0", 107808292864ull);
	expect(ctx, "cxl:dax1.3", 63415779328ull);
	ck_assert_ptr_nonnull(strstr(coh_target_model(coh_target_find(ctx, "cxl:dax1.3")), "region1"));
	coh_context_unref(ctx);
	cleanup(root);
}
END_TEST

START_TEST(no_dax_here)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "cxl", .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	coh_target *t;
	coh_target_foreach(ctx, t) ck_assert_int_eq(coh_target_kind(t), COH_KIND_DEVICE_DAX);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("cxl_replay");
	TCase *tc = tcase_create("cxl_replay");
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, fake_hetero_tiers);
	tcase_add_test(tc, two_socket_with_dax);
	tcase_add_test(tc, no_dax_here);
	suite_add_tcase(s, tc);
	return t_run(s);
}
