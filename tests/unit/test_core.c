/* SPDX-License-Identifier: MIT */
/* Core: version, errors, options, backend filter and validation, logging, list parsing. */
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "internal.h"
#include "query.h"

START_TEST(version_and_errors)
{
	ck_assert_int_eq(coh_version(), (COH_VERSION_MAJOR << 16) | (COH_VERSION_MINOR << 8) | COH_VERSION_PATCH);
	ck_assert_str_eq(coh_version_string(), COH_VERSION_STRING);
	ck_assert_str_eq(coh_strerror(0), "Success");
	ck_assert_ptr_nonnull(strstr(coh_strerror(-EOPNOTSUPP), "not supported"));
	ck_assert_str_eq(coh_strerror(-EROFS), coh_strerror(EROFS));
	ck_assert_ptr_nonnull(coh_strerror(-123456));
	ck_assert_str_eq(coh_mem_kind_name(COH_MEM_DEVICE_PRIVATE), "device-private");
	ck_assert_ptr_null(coh_mem_kind_name(99));
	ck_assert_str_eq(coh_fork_policy_name(COH_FORK_ZERO), "zero");
	ck_assert_str_eq(coh_pin_answer_name(COH_PIN_AFTER_MIGRATE), "after-migrate");
	ck_assert_str_eq(coh_target_kind_name(COH_KIND_CPULESS_NODE), "cpuless-node");
	ck_assert_str_eq(coh_cap_name(COH_CAP_FORK_SHARE), "fork-share");
	ck_assert_ptr_null(coh_cap_name(COH_CAP_ALLOC | COH_CAP_ADOPT));
}
END_TEST

START_TEST(parse_list)
{
	uint8_t bits[16];
	ck_assert_int_eq(coh_parse_list("0-3,8,10-11\n", bits, 128), 7);
	ck_assert_uint_eq(bits[0], 0x0f);
	ck_assert_uint_eq(bits[1], 0x0d);
	ck_assert_int_eq(coh_parse_list("", bits, 128), 0);
	ck_assert_int_eq(coh_parse_list("3-1", bits, 128), -EINVAL);
	ck_assert_int_eq(coh_parse_list("x", bits, 128), -EINVAL);
	ck_assert_int_eq(coh_parse_list("200", bits, 128), -ERANGE);
	ck_assert_int_eq(coh_parse_list("1,1,1", bits, 128), 1);
}
END_TEST

static int ctx_targets(const char *filter)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = filter, .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	int n = coh_target_count(ctx);
	coh_context_unref(ctx);
	return n;
}

START_TEST(backend_filter)
{
	int all = ctx_targets(""), host = ctx_targets("host");
	ck_assert_int_ge(host, 1);
	ck_assert_int_eq(ctx_targets("^host"), all - host);
	ck_assert_int_eq(ctx_targets("nosuch"), 0);
	ck_assert_int_ge(ctx_targets("^nvidia,amd"), 1);
	ck_assert_int_ge(ctx_targets("cxl,host"), 1);
	/* the environment variable applies when the option is NULL */
	setenv("COH_BACKENDS", "^host", 1);
	ck_assert_int_eq(ctx_targets(NULL), all - host);
	setenv("COH_BACKENDS", "host", 1);
	ck_assert_int_ge(ctx_targets(NULL), 1);
	unsetenv("COH_BACKENDS");
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "^host", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	char buf[64], wrapped[80];
	ck_assert_int_lt(coh_context_backends(ctx, buf, sizeof(buf)), (int)sizeof(buf));
	snprintf(wrapped, sizeof(wrapped), ",%s,", buf);
	ck_assert_ptr_null(strstr(wrapped, ",host,"));
	coh_context_unref(ctx);
	o.backends = "host";
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_context_backends(ctx, buf, sizeof(buf)), 4);
	ck_assert_str_eq(buf, "host");
	ck_assert_int_eq(coh_context_backends(ctx, NULL, 0), 4);
	coh_context_unref(ctx);
}
END_TEST

static int noop_discover(coh_context *ctx, void **priv)
{
	(void)ctx;
	*priv = NULL;
	return 0;
}
static void noop_fini(coh_context *ctx, void *priv)
{
	(void)ctx;
	(void)priv;
}
static int noop_alloc(coh_target *t, size_t s, size_t a, unsigned f, void **o, void **p)
{
	(void)t;
	(void)s;
	(void)a;
	(void)f;
	(void)o;
	(void)p;
	return -ENOSYS;
}

/* A target whose capability bits promise an op its backend lacks is refused:
 * the core would call the missing op (ADOPT with no adopt was accepted). */
START_TEST(caps_need_ops)
{
	struct coh_context *ctx = calloc(1, sizeof(*ctx));
	ck_assert_ptr_nonnull(ctx);
	pthread_mutex_init(&ctx->log_lock, NULL);
	ctx->log_level = COH_LOG_NONE;
	ctx->nslots = 1;
	ctx->slots[0].table = (struct coh_backend_ops){ .abi = COH_BACKEND_ABI, .size = sizeof(struct coh_backend_ops),
						      .name = "fake", .discover = noop_discover, .fini = noop_fini };
	ctx->slots[0].ops = &ctx->slots[0].table;
	struct coh_target_desc d = { .kind = COH_KIND_HOST_NODE, .numa_node = -1, .caps = COH_CAP_QUERY };
	snprintf(d.name, sizeof(d.name), "fake:a");
	ck_assert_int_eq(coh_target_add(ctx, &d), 0);   /* core-provided capabilities only */
	static const uint64_t caps[] = { COH_CAP_ALLOC, COH_CAP_ADOPT, COH_CAP_MIGRATE, COH_CAP_MIGRATE_ASYNC,
					 COH_CAP_ADVISE };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		snprintf(d.name, sizeof(d.name), "fake:b%zu", i);
		d.caps = COH_CAP_QUERY | caps[i];
		ck_assert_int_eq(coh_target_add(ctx, &d), -EINVAL);
	}
	ck_assert_int_eq(ctx->ntargets, 1);
	ctx->slots[0].table.alloc = noop_alloc;
	snprintf(d.name, sizeof(d.name), "fake:c");
	d.caps = COH_CAP_ALLOC;
	ck_assert_int_eq(coh_target_add(ctx, &d), 0);
	for (int i = 0; i < ctx->ntargets; i++)
		free(ctx->targets[i]);
	free(ctx->targets);
	pthread_mutex_destroy(&ctx->log_lock);
	free(ctx);
}
END_TEST

/* describe_node: each backend is asked once per node, in registry order; per
 * field the first that fills it wins; only targets of that node change. */
static int describe_calls[2][4];
static int describe_first(coh_context *ctx, void *priv, int node, struct coh_node_desc *d)
{
	(void)ctx;
	(void)priv;
	describe_calls[0][node]++;
	if (node != 1)
		return -ENOENT;
	snprintf(d->model, sizeof(d->model), "first's model");
	return 0;
}
static int describe_second(coh_context *ctx, void *priv, int node, struct coh_node_desc *d)
{
	(void)ctx;
	(void)priv;
	describe_calls[1][node]++;
	if (node != 1 && node != 2)
		return -ENOENT;
	snprintf(d->vendor, sizeof(d->vendor), "second's vendor");
	snprintf(d->model, sizeof(d->model), "second's model");
	return 0;
}

START_TEST(describe_nodes_order)
{
	struct coh_context *ctx = calloc(1, sizeof(*ctx));
	ck_assert_ptr_nonnull(ctx);
	ctx->nslots = 2;
	for (int i = 0; i < 2; i++) {
		ctx->slots[i].table = (struct coh_backend_ops){ .abi = COH_BACKEND_ABI, .size = sizeof(struct coh_backend_ops),
							      .name = i ? "second" : "first", .discover = noop_discover,
							      .fini = noop_fini,
							      .describe_node = i ? describe_second : describe_first };
		ctx->slots[i].ops = &ctx->slots[i].table;
	}
	static const int nodes[] = { 1, 1, 2, 3, -1 };
	const int n = (int)(sizeof(nodes) / sizeof(nodes[0]));
	ctx->targets = calloc((size_t)n, sizeof(*ctx->targets));
	ck_assert_ptr_nonnull(ctx->targets);
	for (int i = 0; i < n; i++) {
		coh_target *t = calloc(1, sizeof(*t));
		ck_assert_ptr_nonnull(t);
		t->ctx = ctx;
		t->slot = &ctx->slots[0];
		t->index = i;
		t->d.numa_node = nodes[i];
		snprintf(t->d.name, sizeof(t->d.name), "first:t%d", i);
		snprintf(t->d.vendor, sizeof(t->d.vendor), "own vendor");
		snprintf(t->d.model, sizeof(t->d.model), "own model");
		ctx->targets[ctx->ntargets++] = t;
	}
	coh_targets_describe_nodes(ctx);
	for (int b = 0; b < 2; b++) {
		ck_assert_int_eq(describe_calls[b][0], 0);   /* no target there */
		for (int node = 1; node <= 3; node++)
			ck_assert_int_eq(describe_calls[b][node], 1);
	}
	for (int i = 0; i < 2; i++) {
		ck_assert_str_eq(ctx->targets[i]->d.vendor, "second's vendor");
		ck_assert_str_eq(ctx->targets[i]->d.model, "first's model");
	}
	ck_assert_str_eq(ctx->targets[2]->d.vendor, "second's vendor");
	ck_assert_str_eq(ctx->targets[2]->d.model, "second's model");
	for (int i = 3; i < n; i++) {
		ck_assert_str_eq(ctx->targets[i]->d.vendor, "own vendor");
		ck_assert_str_eq(ctx->targets[i]->d.model, "own model");
	}
	for (int i = 0; i < ctx->ntargets; i++)
		free(ctx->targets[i]);
	free(ctx->targets);
	free(ctx);
}
END_TEST

/* The core classifies a mapping as a backend's own only through the
 * backends' owned_mappings: none of the device paths is the core's. */
START_TEST(owned_mappings)
{
	struct coh_vma m = { 0 };
	int owned = 0;
	for (unsigned i = 0; i < coh_builtin_backend_count; i++) {
		const struct coh_owned_mapping *o = coh_builtin_backends[i]->owned_mappings;
		for (; o && o->prefix; o++, owned++) {
			ck_assert_int_ge(o->kind, COH_MEM_UNKNOWN);
			ck_assert_int_lt(o->kind, COH_MEM_UNMAPPED);
			ck_assert_int_eq(coh_owned_mapping_kind(o->prefix), o->kind);
			snprintf(m.path, sizeof(m.path), "%s", o->prefix);
			ck_assert_int_eq(coh_vma_classify(&m), COH_VMA_OWNED);
		}
	}
	printf("owned mappings: %d declared by the compiled-in backends\n", owned);
	ck_assert_int_eq(coh_owned_mapping_kind("/dev/zero"), -1);
	snprintf(m.path, sizeof(m.path), "/dev/some-driver");
	ck_assert_int_eq(coh_vma_classify(&m), COH_VMA_DEVICE);
	snprintf(m.path, sizeof(m.path), "/dev/dax0.0");
	ck_assert_int_eq(coh_vma_classify(&m), COH_VMA_DEVDAX);
}
END_TEST

START_TEST(backend_validation)
{
	struct coh_backend_ops ok = { .abi = COH_BACKEND_ABI, .size = sizeof(ok), .name = "fake",
				      .discover = noop_discover, .fini = noop_fini };
	ck_assert_int_eq(coh_backend_validate(&ok), 0);
	ck_assert_int_eq(coh_backend_validate(NULL), -EINVAL);
	struct coh_backend_ops b = ok;
	b.abi = 99;
	ck_assert_int_eq(coh_backend_validate(&b), -EPROTO);
	b = ok;
	b.size = 8;
	ck_assert_int_eq(coh_backend_validate(&b), -EPROTO);
	b.size = sizeof(b) + 8;
	ck_assert_int_eq(coh_backend_validate(&b), -EPROTO);
	b = ok;
	b.name = "Bad-Name";
	ck_assert_int_eq(coh_backend_validate(&b), -EINVAL);
	b = ok;
	b.discover = NULL;
	ck_assert_int_eq(coh_backend_validate(&b), -EINVAL);
	b = ok;
	b.alloc = noop_alloc;   /* alloc without free: an incomplete group */
	ck_assert_int_eq(coh_backend_validate(&b), -EINVAL);
	/* a short (older) table that still has the mandatory ops is accepted */
	b = ok;
	b.size = offsetof(struct coh_backend_ops, fini) + sizeof(b.fini);
	ck_assert_int_eq(coh_backend_validate(&b), 0);
	/* every built-in backend passes */
	for (unsigned i = 0; i < coh_builtin_backend_count; i++)
		ck_assert_int_eq(coh_backend_validate(coh_builtin_backends[i]), 0);
}
END_TEST

struct logbuf {
	int count;
	int max_level;
	char last[512];
};
static void log_cb(void *data, int level, const char *msg)
{
	struct logbuf *lb = data;
	lb->count++;
	if (level > lb->max_level)
		lb->max_level = level;
	snprintf(lb->last, sizeof(lb->last), "%s", msg);
}

START_TEST(logging)
{
	struct logbuf lb = { 0 };
	struct coh_context_options o = { .size = sizeof(o), .backends = "host,nosuch", .log_level = COH_LOG_DEBUG,
					 .log_fn = log_cb, .log_data = &lb };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_gt(lb.count, 0);            /* discovery is logged */
	ck_assert_int_eq(lb.max_level, COH_LOG_DEBUG);
	ck_assert_int_eq(coh_context_get_log_level(ctx), COH_LOG_DEBUG);
	ck_assert_int_eq(coh_context_set_log_level(ctx, COH_LOG_NONE), 0);
	int before = lb.count;
	coh_context_unref(coh_context_ref(ctx));  /* ref/unref pair keeps it alive */
	void *p;
	ck_assert_int_eq(coh_alloc(t_node0(ctx), 4096, NULL, &p), 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	ck_assert_int_eq(lb.count, before);       /* level NONE: silent */
	ck_assert_int_eq(coh_context_set_log_level(ctx, 7), -EINVAL);
	ck_assert_int_eq(coh_context_set_log(ctx, NULL, NULL), 0);
	coh_context_unref(ctx);

	/* COH_LOG applies when the option says -1 */
	struct logbuf lb2 = { 0 };
	setenv("COH_LOG", "info", 1);
	o.log_level = -1;
	o.log_data = &lb2;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_context_get_log_level(ctx), COH_LOG_INFO);
	ck_assert_int_gt(lb2.count, 0);
	ck_assert_int_le(lb2.max_level, COH_LOG_INFO);
	coh_context_unref(ctx);
	unsetenv("COH_LOG");
}
END_TEST

START_TEST(options)
{
	coh_context *ctx = (coh_context *)0x1;
	struct coh_context_options o = { .size = 4 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), -EINVAL);
	ck_assert_ptr_null(ctx);
	o = (struct coh_context_options){ .size = sizeof(o), .log_level = 9 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), -EINVAL);
	o = (struct coh_context_options){ .size = sizeof(o), .fsroot = "/nonexistent/root", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), -ENOENT);
	ck_assert_int_eq(coh_context_create(NULL, NULL), -EINVAL);
	ck_assert_int_eq(coh_context_create(NULL, &ctx), 0);
	ck_assert_int_eq(coh_context_is_replay(ctx), 0);
	coh_context_unref(ctx);
	/* a fsroot that resolves to / is not a replay */
	o = (struct coh_context_options){ .size = sizeof(o), .fsroot = "/tmp/..", .log_level = -1 };
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	ck_assert_int_eq(coh_context_is_replay(ctx), 0);
	coh_context_unref(ctx);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("core");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, version_and_errors);
	tcase_add_test(tc, parse_list);
	tcase_add_test(tc, backend_filter);
	tcase_add_test(tc, backend_validation);
	tcase_add_test(tc, caps_need_ops);
	tcase_add_test(tc, describe_nodes_order);
	tcase_add_test(tc, owned_mappings);
	tcase_add_test(tc, logging);
	tcase_add_test(tc, options);
	suite_add_tcase(s, tc);
	return t_run(s);
}
