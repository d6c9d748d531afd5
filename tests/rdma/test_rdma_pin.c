/* SPDX-License-Identifier: MIT */
/* Pin-query against the RDMA stack.  ibv_reg_mr() pins the pages of a memory
 * region for the long term (ib_umem_get: pin_user_pages_fast with
 * FOLL_LONGTERM), so on every target the context finds this program asks
 * pin-query what a long-term pin does, registers the memory and compares:
 *   in place        registration works, no page frame changes;
 *   after migrate   registration works, the frames change and the pages are
 *                   no longer on their device (coh_query);
 *   never           registration fails (the errno is printed).
 * Then an RDMA WRITE from one RC queue pair to another on the same port
 * (loopback) goes through the registered region, and the CPU must read what
 * was written.  One line per target; exit 0 when every prediction held, 1 on
 * a mismatch, 77 without an RDMA device (soft-RoCE: tests/vm/rdma-setup.sh).
 * With --fork: per target and fork policy, a registered allocation across
 * fork(): the parent RDMA-writes into its region, then the child reads it;
 * what the child sees is compared with coh_fork_query() (run it with
 * RDMAV_FORK_SAFE=1 too: libibverbs' fork support on or off).
 *   test_rdma_pin [--fork] [DEVICE]   (default: $COH_RDMA_DEV, else the first device) */
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <setjmp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coherent.h"

#define NPAGES 16

struct link {
	struct ibv_context *dev;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qp[2];
	uint8_t port;
	int gid_index;
	union ibv_gid gid;
	enum ibv_mtu mtu;
};

static size_t ps;

/* ---- the queue pairs: two RC QPs on one port, each the other's peer ---- */

/* A RoCE v2 GID made from an IPv4 address (::ffff:a.b.c.d) routes without
 * IPv6; any non-zero GID otherwise. */
static int pick_gid(struct link *l, int table_len)
{
	int any = -1;
	for (int i = 0; i < table_len; i++) {
		union ibv_gid g;
		if (ibv_query_gid(l->dev, l->port, i, &g))
			continue;
		static const uint8_t zero[16];
		if (!memcmp(g.raw, zero, 16))
			continue;
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };
		if (!memcmp(g.raw, v4, 12)) {
			l->gid = g;
			return i;
		}
		if (any < 0) {
			any = i;
			l->gid = g;
		}
	}
	return any;
}

static int qp_connect(struct link *l, struct ibv_qp *qp, uint32_t peer)
{
	struct ibv_qp_attr a;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_INIT;
	a.port_num = l->port;
	a.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT | IBV_QP_ACCESS_FLAGS))
		return -errno;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = l->mtu;
	a.dest_qp_num = peer;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = l->gid;
	a.ah_attr.grh.sgid_index = (uint8_t)l->gid_index;
	a.ah_attr.grh.hop_limit = 64;
	a.ah_attr.port_num = l->port;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN | IBV_QP_RQ_PSN |
			  IBV_QP_MAX_DEST_RD_ATOMIC | IBV_QP_MIN_RNR_TIMER))
		return -errno;
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT | IBV_QP_RNR_RETRY |
			  IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		return -errno;
	return 0;
}

static int link_open(struct link *l, const char *want)
{
	int n = 0;
	memset(l, 0, sizeof(*l));
	struct ibv_device **list = ibv_get_device_list(&n);
	if (!list || n == 0) {
		fprintf(stderr, "rdma: no RDMA device (%s)\n", list ? "empty list" : strerror(errno));
		if (list)
			ibv_free_device_list(list);
		return -ENODEV;
	}
	struct ibv_device *d = NULL;
	for (int i = 0; i < n && !d; i++)
		if (!want || !strcmp(ibv_get_device_name(list[i]), want))
			d = list[i];
	if (!d) {
		fprintf(stderr, "rdma: no device named %s\n", want);
		ibv_free_device_list(list);
		return -ENODEV;
	}
	l->dev = ibv_open_device(d);
	ibv_free_device_list(list);
	if (!l->dev)
		return -errno;
	l->port = 1;
	struct ibv_port_attr pa;
	if (ibv_query_port(l->dev, l->port, &pa))
		return -errno;
	if (pa.state != IBV_PORT_ACTIVE)
		fprintf(stderr, "rdma: port %u is %s\n", l->port, ibv_port_state_str(pa.state));
	l->mtu = pa.active_mtu < IBV_MTU_1024 ? pa.active_mtu : IBV_MTU_1024;
	l->gid_index = pick_gid(l, pa.gid_tbl_len);
	if (l->gid_index < 0) {
		fprintf(stderr, "rdma: port %u has no GID (no address on its netdev?)\n", l->port);
		return -EADDRNOTAVAIL;
	}
	l->pd = ibv_alloc_pd(l->dev);
	l->cq = l->pd ? ibv_create_cq(l->dev, 16, NULL, NULL, 0) : NULL;
	if (!l->cq)
		return -errno;
	for (int i = 0; i < 2; i++) {
		struct ibv_qp_init_attr qa = {
			.send_cq = l->cq, .recv_cq = l->cq, .qp_type = IBV_QPT_RC, .sq_sig_all = 1,
			.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
		};
		l->qp[i] = ibv_create_qp(l->pd, &qa);
		if (!l->qp[i])
			return -errno;
	}
	int e = qp_connect(l, l->qp[0], l->qp[1]->qp_num);
	if (!e)
		e = qp_connect(l, l->qp[1], l->qp[0]->qp_num);
	return e;
}

static void link_close(struct link *l)
{
	for (int i = 0; i < 2; i++)
		if (l->qp[i])
			ibv_destroy_qp(l->qp[i]);
	if (l->cq)
		ibv_destroy_cq(l->cq);
	if (l->pd)
		ibv_dealloc_pd(l->pd);
	if (l->dev)
		ibv_close_device(l->dev);
}

/* RDMA WRITE of len bytes from src (lkey) to the remote address dst (rkey),
 * through qp[0]; waits for its completion (TCG is slow: up to 30 s). */
static int rdma_write(struct link *l, void *src, uint32_t lkey, void *dst, uint32_t rkey, size_t len)
{
	struct ibv_sge sge = { .addr = (uintptr_t)src, .length = (uint32_t)len, .lkey = lkey };
	struct ibv_send_wr wr = {
		.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = IBV_WR_RDMA_WRITE,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = (uintptr_t)dst, .rkey = rkey },
	};
	struct ibv_send_wr *bad = NULL;
	if (ibv_post_send(l->qp[0], &wr, &bad))
		return -errno;
	struct timespec t0, now, nap = { 0, 1000000 };
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct ibv_wc wc;
		int n = ibv_poll_cq(l->cq, 1, &wc);
		if (n < 0)
			return -EIO;
		if (n == 1) {
			if (wc.status != IBV_WC_SUCCESS) {
				fprintf(stderr, "rdma: write completed with %s\n", ibv_wc_status_str(wc.status));
				return -EIO;
			}
			return 0;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > 30)
			return -ETIMEDOUT;
		nanosleep(&nap, NULL);
	}
}

/* ---- frames ---- */

/* pagemap entry of each page, with only what names the frame kept: the
 * present and swap bits and the PFN or swap entry (device-private pages are
 * swap entries).  PFNs read as 0 unless root. */
static int frames_of(const void *addr, size_t n, uint64_t *f)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	ssize_t r = pread(fd, f, n * 8, (off_t)((uintptr_t)addr / ps * 8));
	close(fd);
	if (r != (ssize_t)(n * 8))
		return -EIO;
	for (size_t i = 0; i < n; i++)
		f[i] &= (3ull << 62) | ((1ull << 55) - 1);
	return 0;
}

/* Whether pagemap shows frame numbers here (root): any present page with one. */
static bool frames_visible(const uint64_t *f, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((f[i] >> 63) && (f[i] & ((1ull << 55) - 1)))
			return true;
	return false;
}

static bool frames_differ(const uint64_t *a, const uint64_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (a[i] != b[i])
			return true;
	return false;
}

static bool on_device(int kind)
{
	return kind == COH_MEM_DEVICE_PRIVATE || kind == COH_MEM_DEVICE_COHERENT;
}

/* ---- one target ---- */

static void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

/* 1 match, 0 mismatch, -1 not checked (said why). */
static int check_target(coh_context *ctx, coh_target *t, struct link *l, unsigned char *src, struct ibv_mr *smr)
{
	const char *name = coh_target_name(t);
	size_t len = NPAGES * ps;
	unsigned char *p = NULL;
	uint64_t before[NPAGES], after[NPAGES];
	char outcome[160] = "", why[200] = "";
	int match = -1;
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		printf("rdma-pin %-16s -                 -                                    match n/a (no alloc)\n", name);
		return -1;
	}
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE), (void **)&p);
	if (e) {
		printf("rdma-pin %-16s -                 -                                    match n/a (coh_alloc: %s)\n",
		       name, coh_strerror(e));
		return -1;
	}
	fill(p, len, 7);
	/* the CPU's writes may have pulled device-private pages out: put them back */
	if ((coh_target_caps(t) & COH_CAP_MIGRATE) && (e = coh_migrate(ctx, p, len, t, 0)) != 0)
		snprintf(why, sizeof(why), "; migrate back to the target: %s", coh_strerror(e));
	struct coh_pin_extent pe[4];
	int n = coh_pin_query(ctx, p, len, pe, 4, sizeof(pe[0]));
	int predicted = n >= 1 ? pe[0].long_term : COH_PIN_UNKNOWN;
	int kind = n >= 1 ? pe[0].kind : COH_MEM_UNKNOWN;
	for (int i = 1; i < n; i++)
		if (pe[i].long_term != predicted)
			predicted = COH_PIN_UNKNOWN;   /* mixed: the whole registration has no single answer */
	if (n < 1 || (uintptr_t)p + len > pe[n - 1].start + pe[n - 1].length) {
		snprintf(why, sizeof(why), "; pin-query answered %d extent(s) short of the range", n);
		predicted = COH_PIN_UNKNOWN;
	}
	frames_of(p, NPAGES, before);
	struct ibv_mr *mr = ibv_reg_mr(l->pd, p, len,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	int reg_errno = mr ? 0 : errno;
	frames_of(p, NPAGES, after);
	/* without frame numbers (not root) only the residency query can tell */
	bool seen = frames_visible(before, NPAGES) || frames_visible(after, NPAGES);
	bool moved = frames_differ(before, after, NPAGES);
	struct coh_extent x[4];
	int nx = coh_query(ctx, p, len, x, 4, sizeof(x[0]));
	bool still_on_device = false;
	for (int i = 0; i < nx; i++)
		still_on_device |= on_device(x[i].kind);
	if (mr)
		snprintf(outcome, sizeof(outcome), "ok, frames %s, now %s",
			 !seen ? "hidden" : moved ? "moved" : "unchanged", nx >= 1 ? coh_mem_kind_name(x[0].kind) : "?");
	else
		snprintf(outcome, sizeof(outcome), "failed: %s (errno %d)", strerror(reg_errno), reg_errno);

	switch (predicted) {
	case COH_PIN_IN_PLACE:
		match = mr && (!seen || !moved) && (!on_device(kind) || still_on_device);
		break;
	case COH_PIN_AFTER_MIGRATE:
		match = mr && (!seen || moved) && !still_on_device;
		break;
	case COH_PIN_NEVER:
		match = !mr;
		break;
	default:
		match = -1;
		break;
	}

	/* the registered region at work: the NIC writes, the CPU reads */
	if (mr) {
		fill(src, len, 11);
		e = rdma_write(l, src, smr->lkey, p, mr->rkey, len);
		if (e) {
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "; RDMA WRITE: %s", strerror(-e));
			if (match == 1)
				match = 0;
		} else if (memcmp(p, src, len)) {
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "; RDMA WRITE did not land in the region");
			if (match == 1)
				match = 0;
		} else {
			snprintf(why + strlen(why), sizeof(why) - strlen(why), "; RDMA WRITE landed");
		}
		ibv_dereg_mr(mr);
	}
	printf("rdma-pin %-16s %-8s %-14s reg_mr %-44s match %s%s [%s]\n", name, coh_mem_kind_name(kind),
	       coh_pin_answer_name(predicted), outcome, match == 1 ? "yes" : match == 0 ? "NO" : "n/a", why,
	       n >= 1 && pe[0].reason ? pe[0].reason : "-");
	fflush(stdout);
	coh_free(ctx, p);
	return match;
}

/* ---- fork with a registered region ---- */

static sigjmp_buf segv_jmp;

static void on_segv(int sig)
{
	siglongjmp(segv_jmp, sig);
}

/* 0 when the CPU reads [p, p+len), else the signal the read raised. */
static int cpu_reads(const unsigned char *p, size_t len)
{
	struct sigaction sa = { .sa_handler = on_segv }, prev_segv, prev_bus;
	sigaction(SIGSEGV, &sa, &prev_segv);
	sigaction(SIGBUS, &sa, &prev_bus);
	volatile unsigned sum = 0;
	int sig = sigsetjmp(segv_jmp, 1);
	if (!sig)
		for (size_t i = 0; i < len; i += ps)
			sum += p[i];
	sigaction(SIGSEGV, &prev_segv, NULL);
	sigaction(SIGBUS, &prev_bus, NULL);
	return sig;
}

/* What the child sees at p: 'D' the parent's RDMA WRITE (fill() pattern
 * dma), 'O' the contents at fork (pattern old), 'Z' zeros, 'A' no mapping
 * (SIGSEGV), 'X' anything else.  The patterns are computed, not read from the
 * parent's buffers: with RDMAV_FORK_SAFE every registered buffer, the source
 * of the write included, is left out of the child. */
static char child_view(const unsigned char *p, size_t len, unsigned dma, unsigned old)
{
	struct sigaction sa = { .sa_handler = on_segv }, prev;
	sigaction(SIGSEGV, &sa, &prev);
	char v = 'X';
	if (sigsetjmp(segv_jmp, 1)) {
		v = 'A';
	} else {
		bool is_dma = true, is_old = true, is_zero = true;
		for (size_t i = 0; i < len; i++) {
			unsigned char c = p[i];
			is_dma &= c == (unsigned char)(i * 31 + dma);
			is_old &= c == (unsigned char)(i * 31 + old);
			is_zero &= c == 0;
		}
		v = is_dma ? 'D' : is_old ? 'O' : is_zero ? 'Z' : 'X';
	}
	sigaction(SIGSEGV, &prev, NULL);
	return v;
}

static const char *view_name(char v)
{
	switch (v) {
	case 'D': return "the parent's RDMA write";
	case 'O': return "the data at fork";
	case 'Z': return "zeros";
	case 'A': return "no mapping (SIGSEGV)";
	default: return "something else";
	}
}

/* The view coh_fork_query predicts, as child_view()'s letter. */
static char predicted_letter(int view)
{
	switch (view) {
	case COH_CHILD_COPY: return 'O';
	case COH_CHILD_SHARED: return 'D';
	case COH_CHILD_ABSENT: return 'A';
	case COH_CHILD_ZERO: return 'Z';
	default: return '?';
	}
}

/* Registers an allocation of policy `policy`, forks; the parent RDMA-writes
 * into its region, then the child reads it.  1 match, 0 mismatch, -1 not checked. */
static int fork_row(coh_context *ctx, coh_target *t, int policy, struct link *l, unsigned char *src,
		    struct ibv_mr *smr)
{
	const char *name = coh_target_name(t);
	size_t len = NPAGES * ps;
	unsigned char *p = NULL;
	int e = coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = policy), (void **)&p);
	if (e) {
		printf("rdma-fork %-16s %-7s match n/a (coh_alloc: %s)\n", name, coh_fork_policy_name(policy),
		       coh_strerror(e));
		return -1;
	}
	fill(p, len, 7);
	if (coh_target_caps(t) & COH_CAP_MIGRATE)
		coh_migrate(ctx, p, len, t, 0);
	struct ibv_mr *mr = ibv_reg_mr(l->pd, p, len,
				       IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	if (!mr) {
		/* the CPU's reads of the range while it is MADV_DONTFORK, as
		 * libibverbs' fork support leaves it during the registration, and
		 * after (libibverbs undid it) */
		int er = errno, during = -1;
		if (madvise(p, len, MADV_DONTFORK) == 0) {
			during = cpu_reads(p, len);
			madvise(p, len, MADV_DOFORK);
		}
		int after = cpu_reads(p, len);
		printf("rdma-fork %-16s %-7s match n/a (ibv_reg_mr: %s; CPU reads of the range while MADV_DONTFORK: %s, "
		       "after: %s)\n", name, coh_fork_policy_name(policy), strerror(er),
		       during < 0 ? "madvise failed" : during ? strsignal(during) : "ok", after ? strsignal(after) : "ok");
		coh_free(ctx, p);
		return -1;
	}
	/* asked once the region is registered: the pin is part of what fork meets */
	struct coh_fork_extent fe[4];
	int nf = coh_fork_query(ctx, p, len, fe, 4, sizeof(fe[0]));
	int view = nf >= 1 ? fe[0].child_view : COH_CHILD_UNKNOWN;
	uint64_t before[NPAGES], after[NPAGES];
	frames_of(p, NPAGES, before);
	int go[2], res[2];
	if (pipe(go) || pipe(res)) {
		perror("pipe");
		exit(1);
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		char c;
		close(go[1]);
		close(res[0]);
		if (read(go[0], &c, 1) != 1)
			_exit(2);
		c = child_view(p, len, 13, 7);
		_exit(write(res[1], &c, 1) == 1 ? 0 : 2);
	}
	close(go[0]);
	close(res[1]);
	frames_of(p, NPAGES, after);
	bool moved = frames_differ(before, after, NPAGES);
	fill(src, len, 13);
	e = rdma_write(l, src, smr->lkey, p, mr->rkey, len);
	bool parent_sees = !e && !memcmp(p, src, len);
	char c = '?', v = '?';
	if (write(go[1], &c, 1) != 1 || read(res[0], &v, 1) != 1)
		v = '?';
	int st = 0;
	waitpid(pid, &st, 0);
	close(go[1]);
	close(res[0]);
	char pv = predicted_letter(view);
	int match = pv == '?' ? -1 : (pv == v && parent_sees && !moved);
	printf("rdma-fork %-16s %-7s predicted child %-10s parent keeps %-5s | parent: frames %s, RDMA write %s"
	       " | child sees %s | match %s\n",
	       name, coh_fork_policy_name(policy), coh_child_view_name(view),
	       nf >= 1 && fe[0].parent_keeps == COH_KEEPS_YES ? "yes" : nf >= 1 && fe[0].parent_keeps == COH_KEEPS_NO ? "no" : "other",
	       moved ? "moved" : "kept", e ? strerror(-e) : parent_sees ? "landed" : "not seen by the CPU", view_name(v),
	       match == 1 ? "yes" : match == 0 ? "NO" : "n/a");
	fflush(stdout);
	ibv_dereg_mr(mr);
	coh_free(ctx, p);
	return match;
}

int main(int argc, char **argv)
{
	ps = (size_t)sysconf(_SC_PAGESIZE);
	bool forks = argc > 1 && !strcmp(argv[1], "--fork");
	if (forks) {
		argc--;
		argv++;
	}
	const char *want = argc > 1 ? argv[1] : getenv("COH_RDMA_DEV");
	struct link l;
	int e = link_open(&l, want);
	if (e == -ENODEV) {
		link_close(&l);
		return 77;
	}
	if (e) {
		fprintf(stderr, "rdma: setting up the loopback queue pairs: %s\n", strerror(-e));
		link_close(&l);
		return 1;
	}
	printf("rdma: %s port %u, GID index %d, MTU %d, QPs %u <-> %u\n", ibv_get_device_name(l.dev->device),
	       l.port, l.gid_index, 128 << l.mtu, l.qp[0]->qp_num, l.qp[1]->qp_num);
	size_t len = NPAGES * ps;
	unsigned char *src = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *smr = src != MAP_FAILED ? ibv_reg_mr(l.pd, src, len, IBV_ACCESS_LOCAL_WRITE) : NULL;
	if (!smr) {
		fprintf(stderr, "rdma: registering the source buffer: %s\n", strerror(errno));
		link_close(&l);
		return 1;
	}
	coh_context *ctx = NULL;
	e = coh_context_create(NULL, &ctx);
	if (e) {
		fprintf(stderr, "rdma: coh_context_create: %s\n", coh_strerror(e));
		return 1;
	}
	int matched = 0, mismatched = 0, unchecked = 0;
	coh_target *t;
	if (forks) {
		enum ibv_fork_status fs = ibv_is_fork_initialized();
		printf("rdma-fork: RDMAV_FORK_SAFE=%s, ibv_is_fork_initialized: %s\n",
		       getenv("RDMAV_FORK_SAFE") ? getenv("RDMAV_FORK_SAFE") : "(unset)",
		       fs == IBV_FORK_DISABLED ? "disabled" : fs == IBV_FORK_ENABLED ? "enabled" : "unneeded (the kernel copies pinned pages at fork)");
	}
	coh_target_foreach(ctx, t) {
		for (int policy = forks ? COH_FORK_COPY : -1; policy <= (forks ? COH_FORK_KERNEL : -1); policy++) {
			if (forks && !(coh_target_caps(t) & (COH_CAP_FORK_COPY << policy)))
				continue;
			int m = forks ? fork_row(ctx, t, policy, &l, src, smr) : check_target(ctx, t, &l, src, smr);
			if (m == 1)
				matched++;
			else if (m == 0)
				mismatched++;
			else
				unchecked++;
		}
	}
	printf("%s: %d matched, %d mismatched, %d not checked\n", forks ? "rdma-fork" : "rdma-pin", matched, mismatched, unchecked);
	coh_context_unref(ctx);
	ibv_dereg_mr(smr);
	munmap(src, len);
	link_close(&l);
	return mismatched ? 1 : matched ? 0 : 77;
}
