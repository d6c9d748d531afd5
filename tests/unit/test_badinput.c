/* SPDX-License-Identifier: MIT */
/*
 * The bad-input table: every public function with NULL, zero and overflowing
 * lengths, unaligned addresses, unknown pointers, targets of another context,
 * double free and replayed (read-only) contexts.  Each row gives a clear
 * -errno, and afterwards nothing has changed: the allocation count, the
 * contents and the residency of a live allocation are the same.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common.h"

static coh_context *ctx, *other;
static coh_target *t, *t_other;
static unsigned char *live;     /* a live allocation of 8 pages with a pattern */
static bool live_shared;        /* live is MAP_SHARED (fork policy SHARE) */
static size_t ps;
static void *outp;
static coh_migration *mig;
static coh_pool *pool, *pool_out;
static coh_target *ts_other[1];
static struct coh_extent ext[4];
static struct coh_pin_extent pext[4];
static struct coh_alloc_info info;
static char buf[64];

#define HUGE_LEN ((size_t)-1 - 4095)

struct row {
	const char *what;
	int (*call)(void);
	int expect;
};

#define ROW(name, expr, err) \
	static int name(void) { return (expr); }
/* Allocation */
ROW(a1, coh_alloc(NULL, 4096, NULL, &outp), -EINVAL)
ROW(a2, coh_alloc(t, 0, NULL, &outp), -EINVAL)
ROW(a3, coh_alloc(t, HUGE_LEN, NULL, &outp), -EOVERFLOW)
ROW(a4, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.align = 3), &outp), -EINVAL)
ROW(a5, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.flags = 0x80000000u), &outp), -EINVAL)
ROW(a6, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_HUGE | COH_ALLOC_NOHUGE), &outp), -EINVAL)
ROW(a7, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.fork_policy = 9), &outp), -EINVAL)
ROW(a8, coh_alloc(t, 4096, NULL, NULL), -EFAULT)
ROW(f1, coh_free(NULL, live), -EINVAL)
ROW(f2, coh_free(ctx, NULL), -EFAULT)
ROW(f3, coh_free(ctx, live + 1), -ENOENT)
ROW(f4, coh_free(ctx, (void *)0x1000), -ENOENT)
ROW(f5, coh_free(other, live), -ENOENT)
ROW(d1, coh_adopt(NULL, live, 4096, NULL), -EINVAL)
ROW(d2, coh_adopt(t, NULL, 4096, NULL), -EFAULT)
ROW(d3, coh_adopt(t, live, 0, NULL), -EINVAL)
ROW(d4, coh_adopt(t, live + 8, 4096, NULL), -EINVAL)
ROW(d5, coh_adopt(t, live, HUGE_LEN, NULL), -EOVERFLOW)
ROW(d6, coh_adopt(t, live, 4096, NULL), -EEXIST)
ROW(d7, coh_adopt(t, live, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_POPULATE)), -EINVAL)
ROW(d8, coh_adopt(t, live, 4096, &COH_ALLOC_PROPS(.fork_policy = COH_FORK_SHARE)), -EOPNOTSUPP)
ROW(r1, coh_release(NULL, live), -EINVAL)
ROW(r2, coh_release(ctx, NULL), -EFAULT)
ROW(r3, coh_release(ctx, live), -EINVAL)
ROW(r4, coh_release(ctx, (void *)0x2000), -ENOENT)
ROW(l1, coh_lookup(NULL, live, &info), -EINVAL)
ROW(l2, coh_lookup(ctx, NULL, &info), -EFAULT)
ROW(l3, coh_lookup(ctx, live, NULL), -EINVAL)
ROW(l4, coh_lookup(ctx, (void *)0x3000, &info), -ENOENT)
static int l5(void)
{
	struct coh_alloc_info small = { .size = sizeof(size_t) - 1 };   /* not even its size member */
	return coh_lookup(ctx, live, &small);
}
ROW(l6, coh_alloc_count(NULL), -EINVAL)
/* Migration */
ROW(m1, coh_migrate(NULL, live, 4096, t, 0), -EINVAL)
ROW(m2, coh_migrate(ctx, NULL, 4096, t, 0), -EFAULT)
ROW(m3, coh_migrate(ctx, live, 0, t, 0), -EINVAL)
ROW(m4, coh_migrate(ctx, live, HUGE_LEN, t, 0), -EOVERFLOW)
ROW(m5, coh_migrate(ctx, live + 100, 4096, t, 0), -EINVAL)
ROW(m6, coh_migrate(ctx, live, 100, t, 0), -EINVAL)
ROW(m7, coh_migrate(ctx, live, 16 * 4096, t, 0), -EINVAL)
ROW(m8, coh_migrate(ctx, (void *)0x4000, 4096, t, 0), -ENOENT)
ROW(m9, coh_migrate(ctx, live, 4096, NULL, 0), -EINVAL)
ROW(m10, coh_migrate(ctx, live, 4096, t_other, 0), -EXDEV)
ROW(m11, coh_migrate(ctx, live, 4096, t, 1u << 30), -EINVAL)
ROW(m12, coh_migrate_async(ctx, live, 4096, t, 0, NULL), -EFAULT)
ROW(m13, coh_migrate_async(ctx, live, 4096, t_other, 0, &mig), -EXDEV)
ROW(m14, coh_migrate_async(ctx, live + 1, 4096, t, 0, &mig), -EINVAL)
ROW(m15, coh_migration_test(NULL), -EINVAL)
ROW(m16, coh_migration_wait(NULL, 0), -EINVAL)
/* Completion queue and batches: bq is a live queue of ctx, nothing in flight */
static coh_queue *bq, *bq_out;
static struct coh_completion bcomp[2];
static int bres[2];
#define BREQ_AT(a, l, d, r) ((const struct coh_migrate_req[]){ { .addr = (a), .len = (l), .dst = (d), .reserved = (r) } })
#define BREQ() BREQ_AT(live, 4096, t, 0)
#define BQR_SIZED(sz) ((struct coh_query_range[]){ { .size = (sz), .addr = live, .len = 4096, .ext = ext, .max = 4 } })
#define BQR() BQR_SIZED(sizeof(struct coh_query_range))
ROW(cq1, coh_queue_create(NULL, NULL, &bq_out), -EINVAL)
ROW(cq2, coh_queue_create(ctx, NULL, NULL), -EFAULT)
ROW(cq3, coh_queue_create(ctx, &(struct coh_queue_props){ .size = sizeof(struct coh_queue_props), .flags = 4 }, &bq_out),
    -EINVAL)
ROW(cq4, coh_queue_create(ctx, &(struct coh_queue_props){ .size = 2 }, &bq_out), -EINVAL)
ROW(cq5, coh_queue_destroy(NULL), -EINVAL)
ROW(cq6, coh_queue_fd(NULL), -EINVAL)
ROW(cq7, coh_queue_migrate(NULL, BREQ(), 1, sizeof(struct coh_migrate_req)), -EINVAL)
ROW(cq8, coh_queue_migrate(bq, NULL, 1, sizeof(struct coh_migrate_req)), -EFAULT)
ROW(cq9, coh_queue_migrate(bq, BREQ(), 0, sizeof(struct coh_migrate_req)), -EINVAL)
ROW(cq10, coh_queue_migrate(bq, BREQ(), 1, 16), -EINVAL)
ROW(cq11, coh_queue_migrate(bq, BREQ_AT(live, 4096, t_other, 0), 1, sizeof(struct coh_migrate_req)), -EXDEV)
ROW(cq12, coh_queue_migrate(bq, BREQ_AT(live + 1, 4096, t, 0), 1, sizeof(struct coh_migrate_req)), -EINVAL)
ROW(cq13, coh_queue_migrate(bq, BREQ_AT((void *)0x1000, 4096, t, 0), 1, sizeof(struct coh_migrate_req)), -ENOENT)
ROW(cq14, coh_queue_migrate(bq, BREQ_AT(live, HUGE_LEN, t, 0), 1, sizeof(struct coh_migrate_req)), -EOVERFLOW)
ROW(cq15, coh_queue_migrate(bq, BREQ_AT(live, 4096, t, 1), 1, sizeof(struct coh_migrate_req)), -EINVAL)
ROW(cq16, coh_queue_reap(NULL, bcomp, 2, sizeof(bcomp[0]), 0), -EINVAL)
ROW(cq17, coh_queue_reap(bq, NULL, 2, sizeof(bcomp[0]), 0), -EFAULT)
ROW(cq18, coh_queue_reap(bq, bcomp, 0, sizeof(bcomp[0]), 0), -EINVAL)
ROW(cq19, coh_queue_reap(bq, bcomp, 2, 12, 0), -EINVAL)
ROW(cq20, coh_migrate_batch(NULL, BREQ(), 1, sizeof(struct coh_migrate_req), bres), -EINVAL)
ROW(cq21, coh_migrate_batch(ctx, NULL, 1, sizeof(struct coh_migrate_req), bres), -EFAULT)
ROW(cq22, coh_migrate_batch(ctx, BREQ(), 1, sizeof(struct coh_migrate_req), NULL), -EFAULT)
ROW(cq23, coh_migrate_batch(ctx, BREQ(), 0, sizeof(struct coh_migrate_req), bres), -EINVAL)
ROW(cq24, coh_migrate_batch(ctx, BREQ_AT(live, 4096, t_other, 0), 1, sizeof(struct coh_migrate_req), bres), -EXDEV)
ROW(cq25, coh_migrate_batch(ctx, BREQ_AT((void *)0x1000, 4096, t, 0), 1, sizeof(struct coh_migrate_req), bres), -ENOENT)
ROW(cq26, coh_query_batch(NULL, BQR(), 1, sizeof(struct coh_extent)), -EINVAL)
ROW(cq27, coh_query_batch(ctx, NULL, 1, sizeof(struct coh_extent)), -EFAULT)
ROW(cq28, coh_query_batch(ctx, BQR(), 0, sizeof(struct coh_extent)), -EINVAL)
ROW(cq29, coh_query_batch(ctx, BQR_SIZED(8), 1, sizeof(struct coh_extent)), -EINVAL)
ROW(cq30, coh_query_batch(ctx, BQR(), 1, 4), -EINVAL)
/* Device access */
static uint64_t sums1[1];
ROW(x1, coh_device_access(NULL, t, live, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EINVAL)
ROW(x2, coh_device_access(ctx, NULL, live, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EINVAL)
ROW(x3, coh_device_access(ctx, t_other, live, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EXDEV)
ROW(x4, coh_device_access(ctx, t, NULL, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EFAULT)
ROW(x5, coh_device_access(ctx, t, live, HUGE_LEN, COH_DEVICE_FILL, 0, NULL, 0), -EOVERFLOW)
ROW(x6, coh_device_access(ctx, t, live + 8, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EINVAL)
ROW(x7, coh_device_access(ctx, t, live, 4096, 0, 0, NULL, 0), -EINVAL)
ROW(x8, coh_device_access(ctx, t, live, 4096, 1u << 7, 0, NULL, 0), -EINVAL)
ROW(x9, coh_device_access(ctx, t, live, 4096, COH_DEVICE_SUM, 0, NULL, 1), -EINVAL)
ROW(x10, coh_device_access(ctx, t, live, 8192, COH_DEVICE_SUM, 0, sums1, 1), -EINVAL)
ROW(x11, coh_device_access(ctx, t, live, 4096, COH_DEVICE_SUM, 0, sums1, 1), -EOPNOTSUPP)
/* Advice */
ROW(v1, coh_advise(NULL, live, 4096, COH_ADVISE_PREFERRED_LOCATION, t), -EINVAL)
ROW(v2, coh_advise(ctx, NULL, 4096, COH_ADVISE_PREFERRED_LOCATION, t), -EFAULT)
ROW(v3, coh_advise(ctx, live, 0, COH_ADVISE_PREFERRED_LOCATION, t), -EINVAL)
ROW(v4, coh_advise(ctx, live + 1, 4096, COH_ADVISE_PREFERRED_LOCATION, t), -EINVAL)
ROW(v5, coh_advise(ctx, live, 4096, 0, t), -EINVAL)
ROW(v6, coh_advise(ctx, live, 4096, COH_ADVISE_PREFERRED_LOCATION, t_other), -EXDEV)
ROW(v7, coh_advise(ctx, (void *)0x5000, 4096, COH_ADVISE_PREFERRED_LOCATION, t), -ENOENT)
ROW(v8, coh_advise(ctx, live, HUGE_LEN, COH_ADVISE_READ_MOSTLY, NULL), -EOVERFLOW)
/* Queries */
ROW(q1, coh_query(NULL, live, 4096, ext, 4, sizeof(struct coh_extent)), -EINVAL)
ROW(q2, coh_query(ctx, NULL, 4096, ext, 4, sizeof(struct coh_extent)), -EFAULT)
ROW(q3, coh_query(ctx, live, 0, ext, 4, sizeof(struct coh_extent)), -EINVAL)
ROW(q4, coh_query(ctx, live, HUGE_LEN, ext, 4, sizeof(struct coh_extent)), -EOVERFLOW)
ROW(q5, coh_query(ctx, live, 4096, NULL, 4, sizeof(struct coh_extent)), -EFAULT)
ROW(q6, coh_query(ctx, live, 4096, ext, 0, sizeof(struct coh_extent)), -EINVAL)
ROW(q7, coh_query_pid(ctx, -5, live, 4096, ext, 4, sizeof(struct coh_extent)), -EINVAL)
ROW(q8, coh_query_pid(ctx, 0x3fffffff, live, 4096, ext, 4, sizeof(struct coh_extent)), -ENOENT)
ROW(p1, coh_pin_query(NULL, live, 4096, pext, 4, sizeof(struct coh_pin_extent)), -EINVAL)
ROW(p2, coh_pin_query(ctx, NULL, 4096, pext, 4, sizeof(struct coh_pin_extent)), -EFAULT)
ROW(p3, coh_pin_query(ctx, live, 0, pext, 4, sizeof(struct coh_pin_extent)), -EINVAL)
ROW(p4, coh_pin_query(ctx, live, 4096, NULL, 4, sizeof(struct coh_pin_extent)), -EFAULT)
ROW(p5, coh_pin_query(ctx, live, 4096, pext, 0, sizeof(struct coh_pin_extent)), -EINVAL)
ROW(p6, coh_pin_query(ctx, live, HUGE_LEN, pext, 4, sizeof(struct coh_pin_extent)), -EOVERFLOW)
static struct coh_fork_extent fext[4];
ROW(o1, coh_fork_query(NULL, live, 4096, fext, 4, sizeof(struct coh_fork_extent)), -EINVAL)
ROW(o2, coh_fork_query(ctx, NULL, 4096, fext, 4, sizeof(struct coh_fork_extent)), -EFAULT)
ROW(o3, coh_fork_query(ctx, live, 0, fext, 4, sizeof(struct coh_fork_extent)), -EINVAL)
ROW(o4, coh_fork_query(ctx, live, 4096, NULL, 4, sizeof(struct coh_fork_extent)), -EFAULT)
ROW(o5, coh_fork_query(ctx, live, 4096, fext, 0, sizeof(struct coh_fork_extent)), -EINVAL)
ROW(o6, coh_fork_query(ctx, live, HUGE_LEN, fext, 4, sizeof(struct coh_fork_extent)), -EOVERFLOW)
/* Fork policy */
ROW(k1, coh_fork_policy_set(NULL, live, 8 * 4096, COH_FORK_ZERO), -EINVAL)
ROW(k2, coh_fork_policy_set(ctx, NULL, 8 * 4096, COH_FORK_ZERO), -EFAULT)
ROW(k3, coh_fork_policy_set(ctx, live, 0, COH_FORK_ZERO), -EINVAL)
ROW(k4, coh_fork_policy_set(ctx, live, 8 * 4096, 17), -EINVAL)
ROW(k5, coh_fork_policy_set(ctx, live, 8 * 4096, -1), -EINVAL)
ROW(k6, coh_fork_policy_set(ctx, live + 4096, 4096, COH_FORK_ZERO), -EINVAL)
ROW(k7, coh_fork_policy_set(ctx, (void *)0x6000, 4096, COH_FORK_ZERO), -ENOENT)
ROW(k8, coh_fork_policy_set(ctx, live, 8 * 4096, COH_FORK_SHARE), -EOPNOTSUPP)
ROW(k9, coh_fork_policy_get(NULL, live), -EINVAL)
ROW(k10, coh_fork_policy_get(ctx, (void *)0x7000), -ENOENT)
ROW(k11, coh_fork_policy_get(ctx, NULL), -EFAULT)
/* Context and targets */
ROW(c1, coh_context_set_log(NULL, NULL, NULL), -EINVAL)
ROW(c2, coh_context_set_log_level(NULL, 1), -EINVAL)
ROW(c3, coh_context_set_log_level(ctx, -1), -EINVAL)
ROW(c4, coh_context_get_log_level(NULL), -EINVAL)
ROW(c5, coh_context_is_replay(NULL), -EINVAL)
ROW(c6, coh_context_backends(NULL, buf, sizeof(buf)), -EINVAL)
ROW(c7, coh_context_backends(ctx, NULL, 10), -EINVAL)
ROW(c8, coh_context_create(NULL, NULL), -EINVAL)
ROW(t1, coh_target_count(NULL), -EINVAL)
ROW(t2, coh_target_index(NULL), -EINVAL)
ROW(t3, coh_target_kind(NULL), -EINVAL)
ROW(t4, coh_target_numa_node(NULL), -EINVAL)
ROW(t5, coh_target_capacity(NULL, NULL, NULL), -EINVAL)
ROW(t6, coh_target_distance(NULL, t), -EINVAL)
ROW(t7, coh_target_distance(t, t_other), -EINVAL)
ROW(t8, coh_target_memory_tier(NULL), -EINVAL)
ROW(t9, coh_target_access(NULL, 0, NULL), -EINVAL)
static int t10(void)
{
	struct coh_access a = { .size = sizeof(a) };
	return coh_target_access(t, 2, &a);
}
static int t11(void)
{
	struct coh_access a = { .size = 4 };
	return coh_target_access(t, 0, &a);
}

/* Pools */
#define POOL_PROPS(...) (&(struct coh_pool_props){ .size = sizeof(struct coh_pool_props), __VA_ARGS__ })
ROW(pc1, coh_pool_create(NULL, POOL_PROPS(.targets = &t, .ntargets = 1), &pool_out), -EINVAL)
ROW(pc2, coh_pool_create(ctx, NULL, &pool_out), -EINVAL)
ROW(pc3, coh_pool_create(ctx, POOL_PROPS(.targets = &t, .ntargets = 1), NULL), -EFAULT)
ROW(pc4, coh_pool_create(ctx, POOL_PROPS(.targets = &t, .ntargets = 0), &pool_out), -EINVAL)
ROW(pc5, coh_pool_create(ctx, POOL_PROPS(.targets = ts_other, .ntargets = 1), &pool_out), -EXDEV)
ROW(pc6, coh_pool_create(ctx, POOL_PROPS(.targets = &t, .ntargets = 1, .fork_policy = 9), &pool_out), -EINVAL)
ROW(pa1, coh_pool_alloc(NULL, 64, 0, &outp), -EINVAL)
ROW(pa2, coh_pool_alloc(pool, 0, 0, &outp), -EINVAL)
ROW(pa3, coh_pool_alloc(pool, HUGE_LEN, 0, &outp), -EOVERFLOW)
ROW(pa4, coh_pool_alloc(pool, 64, 3, &outp), -EINVAL)
ROW(pa5, coh_pool_alloc(pool, 64, 0, NULL), -EFAULT)
ROW(pf1, coh_pool_free(NULL, live), -EINVAL)
ROW(pf2, coh_pool_free(pool, NULL), -EFAULT)
ROW(pf3, coh_pool_free(pool, live), -ENOENT)
ROW(pf4, coh_pool_free(pool, (void *)0x8000), -ENOENT)
ROW(pm1, coh_pool_migrate(pool, t_other, 0), -EXDEV)
ROW(pm2, coh_pool_migrate(pool, NULL, 0), -EINVAL)
ROW(pm3, coh_pool_migrate(NULL, t, 0), -EINVAL)
ROW(ps1, coh_pool_stats(NULL, NULL), -EINVAL)
ROW(pt1, coh_pool_trim(NULL), -EINVAL)
ROW(pd1, coh_pool_destroy(NULL), -EINVAL)

/* Sharing between processes (since 1.1) */
/* A handle with a sound envelope (a memfd of one page on descriptor 0),
 * one field changed: which (0 none) to v. */
enum { H_MAGIC = 1, H_VERSION, H_SIZE, H_LENGTH, H_OFFSET, H_RESERVED, H_KIND, H_FD };
static struct coh_handle hv_buf;
static struct coh_handle *hv(int which, int64_t v)
{
	struct coh_handle *h = &hv_buf;
	*h = (struct coh_handle){ .magic = COH_HANDLE_MAGIC, .version = COH_HANDLE_VERSION,
				  .size = sizeof(struct coh_handle), .kind = COH_HANDLE_MEMFD, .fd = 0,
				  .length = 4096, .object_size = 4096, .node = -1 };
	switch (which) {
	case H_MAGIC: h->magic = (uint32_t)v; break;
	case H_VERSION: h->version = (uint16_t)v; break;
	case H_SIZE: h->size = (uint16_t)v; break;
	case H_LENGTH: h->length = (uint64_t)v; break;
	case H_OFFSET: h->offset = (uint64_t)v; break;
	case H_RESERVED: h->reserved = (uint32_t)v; break;
	case H_KIND: h->kind = (uint32_t)v; break;
	case H_FD: h->fd = (int32_t)v; break;
	default: break;
	}
	return h;
}
#define HV(f, v) hv((f), (v))
static struct coh_handle hout;
/* memory not allocated shareable: -EINVAL, or -EOPNOTSUPP on a target that never shares */
static int sh_private(void)
{
	int e = coh_export(ctx, live, &hout);
	return e == ((coh_target_caps(t) & COH_CAP_SHARE) ? -EINVAL : -EOPNOTSUPP) ? -EINVAL : e;
}
ROW(sh1, coh_export(NULL, live, &hout), -EINVAL)
ROW(sh2, coh_export(ctx, NULL, &hout), -EFAULT)
ROW(sh3, coh_export(ctx, live, NULL), -EINVAL)
ROW(sh4, coh_export(ctx, live + ps, &hout), -ENOENT)
ROW(sh5, coh_export(other, live, &hout), -ENOENT)
ROW(sh6, sh_private(), -EINVAL)
ROW(si1, coh_import(NULL, HV(0, 0), &outp), -EINVAL)
ROW(si2, coh_import(ctx, NULL, &outp), -EINVAL)
ROW(si3, coh_import(ctx, HV(0, 0), NULL), -EFAULT)
ROW(si4, coh_import(ctx, HV(H_MAGIC, 0x12345678), &outp), -EINVAL)
ROW(si5, coh_import(ctx, HV(H_VERSION, 2), &outp), -EPROTONOSUPPORT)
ROW(si6, coh_import(ctx, HV(H_SIZE, 8), &outp), -EINVAL)
ROW(si7, coh_import(ctx, HV(H_LENGTH, 0), &outp), -EINVAL)
ROW(si8, coh_import(ctx, HV(H_LENGTH, 8192), &outp), -EINVAL)
ROW(si9, coh_import(ctx, HV(H_OFFSET, -1), &outp), -EINVAL)
ROW(si10, coh_import(ctx, HV(H_RESERVED, 1), &outp), -EINVAL)
ROW(si11, coh_import(ctx, HV(H_KIND, 9), &outp), -EINVAL)
ROW(si12, coh_import(ctx, HV(H_FD, -1), &outp), -EBADF)
ROW(si13, coh_import(ctx, HV(H_FD, 1000000), &outp), -EBADF)
ROW(ss1, coh_handle_send(-1, NULL), -EINVAL)
ROW(ss2, coh_handle_send(-1, HV(H_FD, -1)), -EBADF)
ROW(ss3, coh_handle_send(-1, HV(H_MAGIC, 0)), -EINVAL)
ROW(ss4, coh_handle_send(-1, HV(0, 0)), -EBADF)
ROW(ss5, coh_handle_recv(-1, NULL), -EINVAL)
ROW(ss6, coh_handle_recv(-1, &hout), -EBADF)
ROW(ss7, coh_handle_close(NULL), -EINVAL)
ROW(sa1, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE), &outp), -EOPNOTSUPP)
ROW(sa2, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE, .fork_policy = COH_FORK_ZERO), &outp),
    -EOPNOTSUPP)
ROW(sa3, coh_alloc(t, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_IMPORTED), &outp), -EINVAL)
ROW(sa4, coh_adopt(t, live, 4096, &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE)), -EINVAL)

static const struct row rows[] = {
	{ "alloc NULL target", a1, -EINVAL }, { "alloc zero size", a2, -EINVAL },
	{ "alloc overflowing size", a3, -EOVERFLOW }, { "alloc non-power-of-two align", a4, -EINVAL },
	{ "alloc unknown flag", a5, -EINVAL }, { "alloc HUGE|NOHUGE", a6, -EINVAL },
	{ "alloc unknown fork policy", a7, -EINVAL }, { "alloc NULL out", a8, -EFAULT },
	{ "free NULL ctx", f1, -EINVAL }, { "free NULL", f2, -EFAULT }, { "free interior", f3, -ENOENT },
	{ "free unknown", f4, -ENOENT }, { "free in another context", f5, -ENOENT },
	{ "adopt NULL target", d1, -EINVAL }, { "adopt NULL", d2, -EFAULT }, { "adopt zero", d3, -EINVAL },
	{ "adopt unaligned", d4, -EINVAL }, { "adopt overflowing", d5, -EOVERFLOW },
	{ "adopt an allocation", d6, -EEXIST }, { "adopt with alloc hint", d7, -EINVAL },
	{ "adopt as SHARE", d8, -EOPNOTSUPP },
	{ "release NULL ctx", r1, -EINVAL }, { "release NULL", r2, -EFAULT },
	{ "release an allocation", r3, -EINVAL }, { "release unknown", r4, -ENOENT },
	{ "lookup NULL ctx", l1, -EINVAL }, { "lookup NULL", l2, -EFAULT }, { "lookup NULL info", l3, -EINVAL },
	{ "lookup unknown", l4, -ENOENT }, { "lookup short info", l5, -EINVAL },
	{ "alloc_count NULL", l6, -EINVAL },
	{ "migrate NULL ctx", m1, -EINVAL }, { "migrate NULL", m2, -EFAULT }, { "migrate zero", m3, -EINVAL },
	{ "migrate overflowing", m4, -EOVERFLOW }, { "migrate unaligned addr", m5, -EINVAL },
	{ "migrate unaligned len", m6, -EINVAL }, { "migrate past the end", m7, -EINVAL },
	{ "migrate unknown", m8, -ENOENT }, { "migrate NULL target", m9, -EINVAL },
	{ "migrate to another context", m10, -EXDEV }, { "migrate unknown flag", m11, -EINVAL },
	{ "migrate_async NULL out", m12, -EFAULT }, { "migrate_async other ctx", m13, -EXDEV },
	{ "migrate_async unaligned", m14, -EINVAL }, { "migration_test NULL", m15, -EINVAL },
	{ "migration_wait NULL", m16, -EINVAL },
	/* completion queue and batches */
	{ "queue_create NULL ctx", cq1, -EINVAL }, { "queue_create NULL out", cq2, -EFAULT },
	{ "queue_create unknown flag", cq3, -EINVAL }, { "queue_create short props", cq4, -EINVAL },
	{ "queue_destroy NULL", cq5, -EINVAL }, { "queue_fd NULL", cq6, -EINVAL },
	{ "queue_migrate NULL queue", cq7, -EINVAL }, { "queue_migrate NULL reqs", cq8, -EFAULT },
	{ "queue_migrate zero", cq9, -EINVAL }, { "queue_migrate short req_size", cq10, -EINVAL },
	{ "queue_migrate other context", cq11, -EXDEV }, { "queue_migrate unaligned", cq12, -EINVAL },
	{ "queue_migrate unknown", cq13, -ENOENT }, { "queue_migrate overflowing", cq14, -EOVERFLOW },
	{ "queue_migrate reserved", cq15, -EINVAL }, { "queue_reap NULL queue", cq16, -EINVAL },
	{ "queue_reap NULL out", cq17, -EFAULT }, { "queue_reap max 0", cq18, -EINVAL },
	{ "queue_reap bad comp_size", cq19, -EINVAL }, { "migrate_batch NULL ctx", cq20, -EINVAL },
	{ "migrate_batch NULL", cq21, -EFAULT }, { "migrate_batch NULL results", cq22, -EFAULT },
	{ "migrate_batch zero", cq23, -EINVAL }, { "migrate_batch other context", cq24, -EXDEV },
	{ "migrate_batch unknown", cq25, -ENOENT }, { "query_batch NULL ctx", cq26, -EINVAL },
	{ "query_batch NULL", cq27, -EFAULT }, { "query_batch zero", cq28, -EINVAL },
	{ "query_batch short size", cq29, -EINVAL }, { "query_batch bad ext_size", cq30, -EINVAL },
	{ "device_access NULL ctx", x1, -EINVAL }, { "device_access NULL target", x2, -EINVAL },
	{ "device_access other context", x3, -EXDEV }, { "device_access NULL", x4, -EFAULT },
	{ "device_access overflowing", x5, -EOVERFLOW }, { "device_access unaligned", x6, -EINVAL },
	{ "device_access no ops", x7, -EINVAL }, { "device_access unknown op", x8, -EINVAL },
	{ "device_access SUM without sums", x9, -EINVAL }, { "device_access short sums", x10, -EINVAL },
	{ "device_access on host memory", x11, -EOPNOTSUPP },
	{ "advise NULL ctx", v1, -EINVAL }, { "advise NULL", v2, -EFAULT }, { "advise zero", v3, -EINVAL },
	{ "advise unaligned", v4, -EINVAL }, { "advise unknown advice", v5, -EINVAL },
	{ "advise other context", v6, -EXDEV }, { "advise unknown", v7, -ENOENT },
	{ "advise overflowing", v8, -EOVERFLOW },
	{ "query NULL ctx", q1, -EINVAL }, { "query NULL", q2, -EFAULT }, { "query zero", q3, -EINVAL },
	{ "query overflowing", q4, -EOVERFLOW }, { "query NULL out", q5, -EFAULT }, { "query max 0", q6, -EINVAL },
	{ "query negative pid", q7, -EINVAL }, { "query missing pid", q8, -ENOENT },
	{ "pin_query NULL ctx", p1, -EINVAL }, { "pin_query NULL", p2, -EFAULT }, { "pin_query zero", p3, -EINVAL },
	{ "pin_query NULL out", p4, -EFAULT }, { "pin_query max 0", p5, -EINVAL },
	{ "pin_query overflowing", p6, -EOVERFLOW },
	{ "fork_query NULL ctx", o1, -EINVAL }, { "fork_query NULL", o2, -EFAULT }, { "fork_query zero", o3, -EINVAL },
	{ "fork_query NULL out", o4, -EFAULT }, { "fork_query max 0", o5, -EINVAL },
	{ "fork_query overflowing", o6, -EOVERFLOW },
	{ "fork_policy_set NULL ctx", k1, -EINVAL }, { "fork_policy_set NULL", k2, -EFAULT },
	{ "fork_policy_set zero", k3, -EINVAL }, { "fork_policy_set bad policy", k4, -EINVAL },
	{ "fork_policy_set negative policy", k5, -EINVAL }, { "fork_policy_set part", k6, -EINVAL },
	{ "fork_policy_set unknown", k7, -ENOENT }, { "fork_policy_set SHARE on private", k8, -EOPNOTSUPP },
	{ "fork_policy_get NULL ctx", k9, -EINVAL }, { "fork_policy_get unknown", k10, -ENOENT },
	{ "fork_policy_get NULL", k11, -EFAULT },
	{ "set_log NULL", c1, -EINVAL }, { "set_log_level NULL", c2, -EINVAL },
	{ "set_log_level -1", c3, -EINVAL }, { "get_log_level NULL", c4, -EINVAL },
	{ "is_replay NULL", c5, -EINVAL }, { "backends NULL ctx", c6, -EINVAL },
	{ "backends NULL buf", c7, -EINVAL }, { "context_create NULL out", c8, -EINVAL },
	{ "target_count NULL", t1, -EINVAL }, { "target_index NULL", t2, -EINVAL },
	{ "target_kind NULL", t3, -EINVAL }, { "target_numa_node NULL", t4, -EINVAL },
	{ "target_capacity NULL", t5, -EINVAL }, { "target_distance NULL", t6, -EINVAL },
	{ "target_distance across contexts", t7, -EINVAL }, { "target_memory_tier NULL", t8, -EINVAL },
	{ "target_access NULL", t9, -EINVAL }, { "target_access class 2", t10, -EINVAL },
	{ "target_access short struct", t11, -EINVAL },
	{ "pool_create NULL ctx", pc1, -EINVAL }, { "pool_create NULL props", pc2, -EINVAL },
	{ "pool_create NULL out", pc3, -EFAULT }, { "pool_create no target", pc4, -EINVAL },
	{ "pool_create target of another context", pc5, -EXDEV },
	{ "pool_create unknown fork policy", pc6, -EINVAL },
	{ "pool_alloc NULL pool", pa1, -EINVAL }, { "pool_alloc zero", pa2, -EINVAL },
	{ "pool_alloc overflowing", pa3, -EOVERFLOW }, { "pool_alloc non-power-of-two align", pa4, -EINVAL },
	{ "pool_alloc NULL out", pa5, -EFAULT }, { "pool_free NULL pool", pf1, -EINVAL },
	{ "pool_free NULL", pf2, -EFAULT }, { "pool_free an allocation of no pool", pf3, -ENOENT },
	{ "pool_free unknown", pf4, -ENOENT }, { "pool_migrate other context", pm1, -EXDEV },
	{ "pool_migrate NULL target", pm2, -EINVAL }, { "pool_migrate NULL pool", pm3, -EINVAL },
	{ "pool_stats NULL", ps1, -EINVAL }, { "pool_trim NULL", pt1, -EINVAL },
	{ "pool_destroy NULL", pd1, -EINVAL },
	/* sharing between processes */
	{ "export NULL ctx", sh1, -EINVAL }, { "export NULL", sh2, -EFAULT }, { "export NULL handle", sh3, -EINVAL },
	{ "export interior", sh4, -ENOENT }, { "export in another context", sh5, -ENOENT },
	{ "export memory not allocated shareable", sh6, -EINVAL },
	{ "import NULL ctx", si1, -EINVAL }, { "import NULL handle", si2, -EINVAL }, { "import NULL out", si3, -EFAULT },
	{ "import bad magic", si4, -EINVAL }, { "import bad version", si5, -EPROTONOSUPPORT },
	{ "import short size", si6, -EINVAL }, { "import zero length", si7, -EINVAL },
	{ "import length past the object", si8, -EINVAL }, { "import overflowing offset", si9, -EINVAL },
	{ "import reserved bits", si10, -EINVAL }, { "import unknown kind", si11, -EINVAL },
	{ "import no fd", si12, -EBADF }, { "import closed fd", si13, -EBADF },
	{ "handle_send NULL", ss1, -EINVAL }, { "handle_send no fd", ss2, -EBADF },
	{ "handle_send bad magic", ss3, -EINVAL }, { "handle_send bad socket", ss4, -EBADF },
	{ "handle_recv NULL", ss5, -EINVAL }, { "handle_recv bad socket", ss6, -EBADF },
	{ "handle_close NULL", ss7, -EINVAL },
	{ "alloc SHAREABLE with COPY", sa1, -EOPNOTSUPP }, { "alloc SHAREABLE with ZERO", sa2, -EOPNOTSUPP },
	{ "alloc IMPORTED", sa3, -EINVAL }, { "adopt SHAREABLE", sa4, -EINVAL },
};

/* Reads only the pages the residency query calls populated: a read of an
 * untouched page may itself populate it (no shared zero page on some kernels;
 * never one for MAP_SHARED memory), and the probe would change what it
 * measures. */
static void snapshot(int *count, struct coh_extent *res, int *nres, uint32_t *sum, int *policy)
{
	*count = coh_alloc_count(ctx);
	*nres = coh_query(ctx, live, 8 * ps, res, 4, sizeof(struct coh_extent));
	ck_assert_int_gt(*nres, 0);
	uint32_t s = 0;
	for (int e = 0; e < *nres; e++) {
		if (res[e].kind == COH_MEM_NOT_POPULATED)
			continue;
		const unsigned char *b = (const unsigned char *)res[e].start;
		for (size_t i = 0; i < res[e].length; i++)
			s = s * 31 + b[i];
	}
	*sum = s;
	*policy = coh_fork_policy_get(ctx, live);
}

START_TEST(table)
{
	/* The probe alone changes nothing: two snapshots with no call between. */
	{
		int c0, c1, n0, n1, p0, p1;
		uint32_t s0, s1;
		struct coh_extent e0[4], e1[4];
		snapshot(&c0, e0, &n0, &s0, &p0);
		snapshot(&c1, e1, &n1, &s1, &p1);
		ck_assert_msg(n0 == 2 && e0[1].kind == COH_MEM_NOT_POPULATED && e0[1].length == 4 * ps,
			      "the untouched half is populated (%d extents): the snapshot read it", n0);
		ck_assert(n0 == n1 && !memcmp(e0, e1, sizeof(e0[0]) * (size_t)n0) && s0 == s1);
	}
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		if (live_shared && strstr(rows[i].what, "on private"))
			continue;   /* a row about private memory */
		int c0, c1, n0, n1, p0, p1;
		uint32_t s0, s1;
		struct coh_extent e0[4], e1[4];
		snapshot(&c0, e0, &n0, &s0, &p0);
		outp = (void *)0x1;
		int got = rows[i].call();
		ck_assert_msg(got == rows[i].expect, "%s: got %d (%s), expected %d (%s)", rows[i].what, got,
			      coh_strerror(got), rows[i].expect, coh_strerror(rows[i].expect));
		snapshot(&c1, e1, &n1, &s1, &p1);
		ck_assert_msg(c0 == c1, "%s: allocation count changed", rows[i].what);
		ck_assert_msg(n0 == n1 && !memcmp(e0, e1, sizeof(e0[0]) * (size_t)n0),
			      "%s: residency changed: %d extents (%s node %d +%zu), then %d (%s node %d +%zu)", rows[i].what,
			      n0, coh_mem_kind_name(e0[0].kind), e0[0].node, e0[0].length, n1,
			      coh_mem_kind_name(e1[0].kind), e1[0].node, e1[0].length);
		ck_assert_msg(s0 == s1, "%s: contents changed", rows[i].what);
		ck_assert_msg(p0 == p1, "%s: fork policy changed", rows[i].what);
	}
}
END_TEST

/* Names never crash on NULL and refuse NULL handles. */
START_TEST(null_accessors)
{
	ck_assert_ptr_null(coh_target_backend(NULL));
	ck_assert_ptr_null(coh_target_name(NULL));
	ck_assert_ptr_null(coh_target_vendor(NULL));
	ck_assert_ptr_null(coh_target_model(NULL));
	ck_assert_ptr_null(coh_target_pci_address(NULL));
	ck_assert_ptr_null(coh_target_pci_name(NULL));
	ck_assert_ptr_null(coh_target_context(NULL));
	ck_assert_uint_eq(coh_target_caps(NULL), 0);
	ck_assert_ptr_null(coh_target_get(NULL, 0));
	ck_assert_ptr_null(coh_target_get(ctx, 100000));
	ck_assert_ptr_null(coh_target_next(NULL, NULL));
	ck_assert_ptr_null(coh_target_next(ctx, t_other));   /* a target of another context */
	ck_assert_ptr_null(coh_target_find(ctx, NULL));
	ck_assert_ptr_null(coh_target_find(ctx, "host:node9999"));
	ck_assert_ptr_null(coh_target_by_node(ctx, -1));
	ck_assert_ptr_null(coh_context_ref(NULL));
	coh_context_unref(NULL);
	coh_migration_free(NULL);
	ck_assert_str_eq(coh_target_kind_name(0), "unknown");
	ck_assert_ptr_null(coh_fork_policy_name(9));
	ck_assert_ptr_null(coh_pin_answer_name(-1));
	ck_assert_ptr_null(coh_child_view_name(42));
	ck_assert_str_eq(coh_child_view_name(COH_CHILD_ABSENT), "absent");
}
END_TEST

/* A replayed context describes a machine but refuses to change memory. */
START_TEST(replay_refuses)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = "host", .fsroot = "/tmp/..", .log_level = -1 };
	(void)o;
	char dir[] = "/tmp/coh-badinput-XXXXXX";
	ck_assert_ptr_nonnull(mkdtemp(dir));
	char path[512];
	snprintf(path, sizeof(path), "mkdir -p %s/sys/devices/system/node/node0 && "
		 "echo 0 > %s/sys/devices/system/node/online && "
		 "echo 'Node 0 MemTotal: 1024 kB' > %s/sys/devices/system/node/node0/meminfo && "
		 "echo 0-1 > %s/sys/devices/system/node/node0/cpulist", dir, dir, dir, dir);
	ck_assert_int_eq(system(path), 0);
	struct coh_context_options ro = { .size = sizeof(ro), .backends = "host", .fsroot = dir, .log_level = -1 };
	coh_context *rc;
	ck_assert_int_eq(coh_context_create(&ro, &rc), 0);
	ck_assert_int_eq(coh_context_is_replay(rc), 1);
	coh_target *rt = coh_target_find(rc, "host:node0");
	ck_assert_ptr_nonnull(rt);
	void *p;
	ck_assert_int_eq(coh_alloc(rt, 4096, NULL, &p), -EROFS);
	ck_assert_int_eq(coh_adopt(rt, live, 4096, NULL), -EROFS);
	ck_assert_int_eq(coh_migrate(rc, live, 4096, rt, 0), -EROFS);
	ck_assert_int_eq(coh_free(rc, live), -EROFS);
	ck_assert_int_eq(coh_release(rc, live), -EROFS);
	ck_assert_int_eq(coh_advise(rc, live, 4096, COH_ADVISE_READ_MOSTLY, NULL), -EROFS);
	ck_assert_int_eq(coh_device_access(rc, rt, live, 4096, COH_DEVICE_FILL, 0, NULL, 0), -EROFS);
	ck_assert_int_eq(coh_fork_policy_set(rc, live, 4096, COH_FORK_ZERO), -EROFS);
	struct coh_extent e[2];
	struct coh_pin_extent pe[2];
	ck_assert_int_eq(coh_query(rc, live, 4096, e, 2, sizeof(struct coh_extent)), -EROFS);
	ck_assert_int_eq(coh_pin_query(rc, live, 4096, pe, 2, sizeof(struct coh_pin_extent)), -EROFS);
	struct coh_fork_extent fe[2];
	ck_assert_int_eq(coh_fork_query(rc, live, 4096, fe, 2, sizeof(struct coh_fork_extent)), -EROFS);
	coh_pool *rp;
	ck_assert_int_eq(coh_pool_create(rc, POOL_PROPS(.targets = &rt, .ntargets = 1), &rp), -EROFS);
	coh_context_unref(rc);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	ck_assert_int_eq(system(path), 0);
}
END_TEST

static void setup_with(int policy)
{
	live_shared = policy == COH_FORK_SHARE;
	ps = (size_t)sysconf(_SC_PAGESIZE);
	ctx = t_ctx();
	other = t_ctx();
	t = t_node0(ctx);
	t_other = t_node0(other);
	/* Half of it written, half never touched: a bad call must not populate
	 * the untouched half either. */
	ck_assert_int_eq(coh_alloc(t, 8 * ps, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policy), (void **)&live), 0);
	for (size_t i = 0; i < 4 * ps; i++)
		live[i] = (unsigned char)(i * 13);
	info.size = sizeof(info);
	ts_other[0] = t_other;
	/* a pool with no block: it holds no allocation, so the count is the table's */
	ck_assert_int_eq(coh_pool_create(ctx, POOL_PROPS(.targets = &t, .ntargets = 1), &pool), 0);
	ck_assert_int_eq(coh_queue_create(ctx, NULL, &bq), 0);
}

static void setup(void)
{
	setup_with(COH_FORK_COPY);
}

/* MAP_SHARED memory: a read fault populates a page on every kernel, so the
 * table's own probe must never read an untouched page (regression: it read
 * all eight pages, which failed on kernels without a shared zero page). */
static void setup_shared(void)
{
	setup_with(COH_FORK_SHARE);
}

static void teardown(void)
{
	ck_assert_int_eq(coh_pool_destroy(pool), 0);
	ck_assert_int_eq(coh_queue_destroy(bq), 0);
	ck_assert_int_eq(coh_queue_destroy(bq), -EINVAL);   /* double destroy */
	ck_assert_int_eq(coh_free(ctx, live), 0);
	ck_assert_int_eq(coh_free(ctx, live), -ENOENT);   /* double free */
	coh_context_unref(ctx);
	coh_context_unref(other);
}

int main(void)
{
	printf("kernel: a read of untouched anonymous memory %s\n", t_read_fault_name(t_read_fault_behaviour()));
	Suite *s = suite_create("badinput");
	TCase *tc = tcase_create("badinput");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, table);
	tcase_add_test(tc, null_accessors);
	tcase_add_test(tc, replay_refuses);
	suite_add_tcase(s, tc);
	TCase *sh = tcase_create("badinput-shared");
	tcase_add_checked_fixture(sh, setup_shared, teardown);
	tcase_add_test(sh, table);
	suite_add_tcase(s, sh);
	return t_run(s);
}
