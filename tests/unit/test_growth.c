/* SPDX-License-Identifier: MIT */
/*
 * The growth rule of coherent.h, for every struct that crosses the API and
 * every extent array: a caller built against an older, smaller struct gets
 * the fields that fit and nothing past its size is touched; a caller built
 * against a newer, larger one gets zeros past the library's struct (output)
 * or is refused with -E2BIG when it sets bytes the library does not know
 * (input).  Sizes below sizeof(size_t), and extent strides that are too
 * small or not a multiple of 8, are -EINVAL and change nothing.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

#define SENT 0xa5
#define BUF 512

static size_t ps;

static const char *data_dir(void)
{
	const char *env = getenv("COH_TEST_DATA");
	return env && *env ? env : "../tests/data";
}

static coh_context *tree(const char *name)
{
	char root[PATH_MAX];
	snprintf(root, sizeof(root), "%s/%s", data_dir(), name);
	struct coh_context_options o = { .size = sizeof(o), .fsroot = root, .backends = "host", .log_level = -1 };
	coh_context *ctx;
	ck_assert_int_eq(coh_context_create(&o, &ctx), 0);
	return ctx;
}

static void set_size(unsigned char *buf, size_t n)
{
	memcpy(buf, &n, sizeof(n));
}

static void untouched(const unsigned char *buf, size_t from, size_t to, const char *what)
{
	for (size_t i = from; i < to; i++)
		ck_assert_msg(buf[i] == SENT, "%s: byte %zu written", what, i);
}

/* An output struct: call(out) fills the struct whose size member the caller set. */
typedef int (*out_fn)(void *out, void *arg);

static void check_out(const char *what, size_t full, size_t cut, out_fn call, void *arg)
{
	unsigned char ref[BUF], buf[BUF];
	ck_assert(full + 64 <= BUF && cut < full && cut >= sizeof(size_t));
	memset(ref, 0, sizeof(ref));
	set_size(ref, full);
	ck_assert_msg(call(ref, arg) == 0, "%s: full size", what);

	/* older caller: the fields inside cut, nothing past it */
	memset(buf, SENT, sizeof(buf));
	set_size(buf, cut);
	ck_assert_msg(call(buf, arg) == 0, "%s: size %zu", what, cut);
	size_t got;
	memcpy(&got, buf, sizeof(got));
	ck_assert_uint_eq(got, cut);   /* the caller's size stays */
	ck_assert_msg(memcmp(buf + sizeof(size_t), ref + sizeof(size_t), cut - sizeof(size_t)) == 0,
		      "%s: fields inside size %zu differ", what, cut);
	untouched(buf, cut, sizeof(buf), what);

	/* newer caller: zeros past the library's struct, up to its size only */
	size_t big = full + 32;
	memset(buf, SENT, sizeof(buf));
	set_size(buf, big);
	ck_assert_msg(call(buf, arg) == 0, "%s: size %zu", what, big);
	ck_assert_msg(memcmp(buf + sizeof(size_t), ref + sizeof(size_t), full - sizeof(size_t)) == 0,
		      "%s: fields differ at size %zu", what, big);
	for (size_t i = full; i < big; i++)
		ck_assert_msg(buf[i] == 0, "%s: tail byte %zu not zeroed", what, i);
	untouched(buf, big, sizeof(buf), what);

	/* not even a size member: refused, nothing written */
	memset(buf, SENT, sizeof(buf));
	set_size(buf, sizeof(size_t) - 1);
	ck_assert_msg(call(buf, arg) == -EINVAL, "%s: tiny size accepted", what);
	untouched(buf, sizeof(size_t), sizeof(buf), what);
}

static int lookup_call(void *out, void *arg)
{
	void **a = arg;
	return coh_lookup(a[0], a[1], out);
}

static int access_call(void *out, void *arg)
{
	return coh_target_access(arg, 0, out);
}

static int cache_call(void *out, void *arg)
{
	return coh_target_memory_cache(arg, 0, out);
}

static int device_call(void *out, void *arg)
{
	return coh_target_device(arg, out);
}

START_TEST(output_structs)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	int tag;
	void *p;
	ck_assert_int_eq(coh_alloc(t, 3 * ps, &COH_ALLOC_PROPS(.user_data = &tag), &p), 0);
	void *la[2] = { ctx, (char *)p + ps };
	check_out("coh_alloc_info", sizeof(struct coh_alloc_info), offsetof(struct coh_alloc_info, user_data),
		  lookup_call, la);
	check_out("coh_alloc_info (base only)", sizeof(struct coh_alloc_info),
		  offsetof(struct coh_alloc_info, length), lookup_call, la);
	check_out("coh_device_info", sizeof(struct coh_device_info), offsetof(struct coh_device_info, status),
		  device_call, t);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);

	/* HMAT figures and memory-side caches come from recorded trees */
	ctx = tree("numa-hmat-zeros");
	check_out("coh_access", sizeof(struct coh_access), offsetof(struct coh_access, nr_initiators), access_call,
		  coh_target_by_node(ctx, 0));
	coh_context_unref(ctx);
	ctx = tree("numa-memcache");
	check_out("coh_memory_cache", sizeof(struct coh_memory_cache), offsetof(struct coh_memory_cache, line_size),
		  cache_call, coh_target_by_node(ctx, 0));
	coh_context_unref(ctx);
}
END_TEST

/* ---- input structs ---- */

START_TEST(context_options)
{
	unsigned char buf[BUF];
	struct coh_context_options *o = (struct coh_context_options *)buf;
	coh_context *ctx;
	/* older caller: the unknown key sits past its size and is never read */
	memset(buf, 0, sizeof(buf));
	o->backends = "host";
	o->log_level = -1;
	o->tunables = "no.such.key=1";
	o->size = offsetof(struct coh_context_options, tunables);
	ck_assert_int_eq(coh_context_create(o, &ctx), 0);
	char names[64];
	coh_context_backends(ctx, names, sizeof(names));
	ck_assert_str_eq(names, "host");
	coh_context_unref(ctx);
	o->size = sizeof(*o);
	ctx = (coh_context *)1;
	ck_assert_int_eq(coh_context_create(o, &ctx), -EINVAL);
	ck_assert_ptr_null(ctx);
	/* smaller still: only backends, the log level takes its default */
	o->tunables = NULL;
	o->size = offsetof(struct coh_context_options, fsroot);
	ck_assert_int_eq(coh_context_create(o, &ctx), 0);
	coh_context_unref(ctx);
	/* newer caller: a zero tail is accepted, a set byte in it refused */
	o->size = sizeof(*o) + 24;
	ck_assert_int_eq(coh_context_create(o, &ctx), 0);
	coh_context_unref(ctx);
	buf[sizeof(*o) + 23] = 1;
	ck_assert_int_eq(coh_context_create(o, &ctx), -E2BIG);
	o->size = sizeof(size_t) - 1;
	ck_assert_int_eq(coh_context_create(o, &ctx), -EINVAL);
}
END_TEST

START_TEST(alloc_props)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	unsigned char buf[BUF];
	struct coh_alloc_props *pr = (struct coh_alloc_props *)buf;
	struct coh_alloc_info info = { .size = sizeof(info) };
	int tag;
	void *p;
	/* older caller: fork_policy and user_data past its size are not read */
	memset(buf, 0, sizeof(buf));
	pr->flags = COH_ALLOC_NOHUGE;
	pr->fork_policy = 99;
	pr->user_data = &tag;
	pr->size = offsetof(struct coh_alloc_props, fork_policy);
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), 0);
	ck_assert_int_eq(coh_lookup(ctx, p, &info), 0);
	ck_assert_uint_eq(info.flags, COH_ALLOC_NOHUGE);
	ck_assert_int_eq(info.fork_policy, COH_FORK_COPY);
	ck_assert_ptr_null(info.user_data);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* the full struct: the same fields are read */
	pr->size = sizeof(*pr);
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), -EINVAL);   /* policy 99 */
	pr->fork_policy = COH_FORK_EXCLUDE;
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), 0);
	ck_assert_int_eq(coh_lookup(ctx, p, &info), 0);
	ck_assert_int_eq(info.fork_policy, COH_FORK_EXCLUDE);
	ck_assert_ptr_eq(info.user_data, &tag);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	/* newer caller: zero tail accepted, a set byte refused before anything is made */
	pr->size = sizeof(*pr) + 16;
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), 0);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	buf[sizeof(*pr) + 8] = 1;
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), -E2BIG);
	void *own = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ck_assert_ptr_ne(own, MAP_FAILED);
	ck_assert_int_eq(coh_adopt(t, own, ps, pr), -E2BIG);
	pr->size = sizeof(size_t) - 1;
	ck_assert_int_eq(coh_alloc(t, ps, pr, &p), -EINVAL);
	ck_assert_int_eq(coh_adopt(t, own, ps, pr), -EINVAL);
	ck_assert_int_eq(coh_alloc_count(ctx), 0);
	/* adopt, older caller: the user data past its size is not read */
	memset(buf, 0, sizeof(buf));
	pr->user_data = &tag;
	pr->size = offsetof(struct coh_alloc_props, user_data);
	ck_assert_int_eq(coh_adopt(t, own, ps, pr), 0);
	ck_assert_int_eq(coh_lookup(ctx, own, &info), 0);
	ck_assert_ptr_null(info.user_data);
	ck_assert_int_eq(coh_release(ctx, own), 0);
	munmap(own, ps);
	coh_context_unref(ctx);
}
END_TEST

/* ---- extent arrays ---- */

/* A range of at least two extents for every query: 2 pages written, 2
 * never touched, the last one wiped in a child (a fork-query difference). */
struct range {
	coh_context *ctx;
	unsigned char *p;
	size_t len;
};

static struct range range_make(void)
{
	struct range r = { .ctx = t_ctx(), .len = 4 * ps };
	ck_assert_int_eq(coh_alloc(t_node0(r.ctx), r.len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE),
				   (void **)&r.p), 0);
	memset(r.p, 1, 2 * ps);
	ck_assert_int_eq(madvise(r.p + 3 * ps, ps, MADV_WIPEONFORK), 0);
	return r;
}

static void range_free(struct range *r)
{
	ck_assert_int_eq(coh_free(r->ctx, r->p), 0);
	coh_context_unref(r->ctx);
}

typedef int (*ext_fn)(const struct range *r, void *ext, size_t max, size_t ext_size);

static int query_call(const struct range *r, void *ext, size_t max, size_t ext_size)
{
	return coh_query(r->ctx, r->p, r->len, ext, max, ext_size);
}

static int query_pid_call(const struct range *r, void *ext, size_t max, size_t ext_size)
{
	return coh_query_pid(r->ctx, getpid(), r->p, r->len, ext, max, ext_size);
}

static int pin_call(const struct range *r, void *ext, size_t max, size_t ext_size)
{
	return coh_pin_query(r->ctx, r->p, r->len, ext, max, ext_size);
}

static int fork_call(const struct range *r, void *ext, size_t max, size_t ext_size)
{
	return coh_fork_query(r->ctx, r->p, r->len, ext, max, ext_size);
}

/* The fields of an extent struct: offset and size of each, in order. */
struct field {
	size_t off, size;
};

static void check_ext(const char *what, size_t full, const struct field *f, int nf, ext_fn call)
{
	struct range r = range_make();
	unsigned char ref[BUF], buf[BUF];
	const size_t max = 4;
	int n = call(&r, ref, max, full);
	ck_assert_msg(n >= 2, "%s: %d extents", what, n);
	/* every stride the rule allows: smaller ones at each field boundary
	 * that is a multiple of 8, the library's own, and larger ones */
	for (size_t s = COH_EXT_SIZE_MIN; s <= full + 24; s += 8) {
		memset(buf, SENT, sizeof(buf));
		ck_assert_msg(call(&r, buf, max, s) == n, "%s: stride %zu", what, s);
		for (int i = 0; i < n; i++) {
			const unsigned char *e = buf + (size_t)i * s, *x = ref + (size_t)i * full;
			for (int k = 0; k < nf; k++)
				if (f[k].off + f[k].size <= s)
					ck_assert_msg(memcmp(e + f[k].off, x + f[k].off, f[k].size) == 0,
						      "%s: stride %zu, extent %d, field %d differs", what, s, i, k);
			for (size_t b = full; b < s; b++)
				ck_assert_msg(e[b] == 0, "%s: stride %zu, extent %d: tail byte %zu not zeroed",
					      what, s, i, b);
		}
		untouched(buf, (size_t)n * s, sizeof(buf), what);
	}
	/* strides the rule refuses: nothing written */
	static const size_t bad[] = { 0, 8, COH_EXT_SIZE_MIN - 1, COH_EXT_SIZE_MIN + 4, 36 };
	for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]); k++) {
		memset(buf, SENT, sizeof(buf));
		ck_assert_msg(call(&r, buf, max, bad[k]) == -EINVAL, "%s: stride %zu accepted", what, bad[k]);
		untouched(buf, 0, sizeof(buf), what);
	}
	/* a max the calls refuse, also where a work buffer would cap it */
	memset(buf, SENT, sizeof(buf));
	ck_assert_int_eq(call(&r, buf, (size_t)INT32_MAX + 1, COH_EXT_SIZE_MIN), -EINVAL);
	ck_assert_int_eq(call(&r, buf, (size_t)INT32_MAX + 1, full), -EINVAL);
	untouched(buf, 0, sizeof(buf), what);
	/* one extent at a time with the smallest stride: as with the full one */
	ck_assert_int_eq(call(&r, ref, 1, full), 1);
	memset(buf, SENT, sizeof(buf));
	ck_assert_int_eq(call(&r, buf, 1, COH_EXT_SIZE_MIN), 1);
	ck_assert_msg(memcmp(buf, ref, COH_EXT_SIZE_MIN) == 0, "%s: max 1 differs", what);
	untouched(buf, COH_EXT_SIZE_MIN, sizeof(buf), what);
	range_free(&r);
}

#define F(type, m) { offsetof(type, m), sizeof(((type *)0)->m) }

START_TEST(extent_arrays)
{
	static const struct field ext[] = { F(struct coh_extent, start), F(struct coh_extent, length),
					    F(struct coh_extent, kind), F(struct coh_extent, node),
					    F(struct coh_extent, target) };
	static const struct field pin[] = { F(struct coh_pin_extent, start), F(struct coh_pin_extent, length),
					    F(struct coh_pin_extent, kind), F(struct coh_pin_extent, node),
					    F(struct coh_pin_extent, short_term), F(struct coh_pin_extent, long_term),
					    F(struct coh_pin_extent, reason) };
	static const struct field frk[] = { F(struct coh_fork_extent, start), F(struct coh_fork_extent, length),
					    F(struct coh_fork_extent, policy), F(struct coh_fork_extent, child_view),
					    F(struct coh_fork_extent, parent_keeps), F(struct coh_fork_extent, reason) };
	check_ext("coh_query", sizeof(struct coh_extent), ext, 5, query_call);
	check_ext("coh_query_pid", sizeof(struct coh_extent), ext, 5, query_pid_call);
	check_ext("coh_pin_query", sizeof(struct coh_pin_extent), pin, 7, pin_call);
	check_ext("coh_fork_query", sizeof(struct coh_fork_extent), frk, 6, fork_call);
}
END_TEST

/* ---- lists instead of fixed arrays ---- */

START_TEST(initiator_list)
{
	coh_context *ctx = tree("numa-hmat-zeros");
	coh_target *t = coh_target_by_node(ctx, 0);
	int nodes[4] = { -7, -7, -7, -7 };
	ck_assert_int_eq(coh_target_initiators(t, 0, NULL, 0), 1);
	ck_assert_int_eq(coh_target_initiators(t, 0, nodes, 0), 1);
	ck_assert_int_eq(nodes[0], -7);   /* max 0: nothing written */
	ck_assert_int_eq(coh_target_initiators(t, 0, nodes, 4), 1);
	ck_assert_int_eq(nodes[0], 0);
	ck_assert_int_eq(nodes[1], -7);
	ck_assert_int_eq(coh_target_initiators(t, 0, NULL, 1), -EFAULT);
	ck_assert_int_eq(coh_target_initiators(t, 2, nodes, 4), -EINVAL);
	ck_assert_int_eq(coh_target_initiators(NULL, 0, nodes, 4), -EINVAL);
	ck_assert_int_eq(coh_target_initiators(coh_target_by_node(ctx, 1), 0, nodes, 4), -ENOENT);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(user_data)
{
	coh_context *ctx = t_ctx();
	coh_target *t = t_node0(ctx);
	int a, b;
	void *p;
	struct coh_alloc_info info = { .size = sizeof(info) };
	ck_assert_int_eq(coh_alloc(t, 20 << 20, &COH_ALLOC_PROPS(.user_data = &a), &p), 0);
	ck_assert_int_eq(coh_lookup(ctx, (char *)p + (19 << 20), &info), 0);
	ck_assert_ptr_eq(info.user_data, &a);
	/* any address inside replaces it, for every page of it */
	ck_assert_int_eq(coh_set_user_data(ctx, (char *)p + (9 << 20) + 5, &b), 0);
	for (size_t off = 0; off < (20u << 20); off += 1u << 20) {
		ck_assert_int_eq(coh_lookup(ctx, (char *)p + off, &info), 0);
		ck_assert_ptr_eq(info.user_data, &b);
	}
	ck_assert_int_eq(coh_set_user_data(ctx, (char *)p + (20 << 20), &a), -ENOENT);
	ck_assert_int_eq(coh_set_user_data(ctx, NULL, &a), -EFAULT);
	ck_assert_int_eq(coh_set_user_data(NULL, p, &a), -EINVAL);
	ck_assert_int_eq(coh_set_user_data(ctx, p, NULL), 0);
	ck_assert_int_eq(coh_lookup(ctx, p, &info), 0);
	ck_assert_ptr_null(info.user_data);
	ck_assert_int_eq(coh_free(ctx, p), 0);
	coh_context_unref(ctx);
}
END_TEST

START_TEST(tunables)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .log_level = -1 };
	coh_context *ctx;
	static const char *const good[] = { "", "query.pfn=0", "nvidia.streams=2,nvidia.chunk_mb=64",
					     "nvidia.prefer=1,amd.xnack=1,nvidia.cuda_library=/nowhere/libcuda.so",
					     "cxl.mapdir=private", "query.pfn=1,query.pfn=0" };
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		o.tunables = good[i];
		ck_assert_msg(coh_context_create(&o, &ctx) == 0, "'%s' refused", good[i]);
		coh_context_unref(ctx);
	}
	static const char *const bad[] = { "nvidia.stream=2", "query.pfn", ",", "query.pfn=0,", "=1",
					   "query.pfn=0,,amd.xnack=1", "QUERY.PFN=0" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		o.tunables = bad[i];
		ctx = (coh_context *)1;
		ck_assert_msg(coh_context_create(&o, &ctx) == -EINVAL, "'%s' accepted", bad[i]);
		ck_assert_ptr_null(ctx);
	}
}
END_TEST

int main(void)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	Suite *s = suite_create("growth");
	TCase *tc = tcase_create("growth");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, output_structs);
	tcase_add_test(tc, context_options);
	tcase_add_test(tc, alloc_props);
	tcase_add_test(tc, extent_arrays);
	tcase_add_test(tc, initiator_list);
	tcase_add_test(tc, user_data);
	tcase_add_test(tc, tunables);
	suite_add_tcase(s, tc);
	return t_run(s);
}
