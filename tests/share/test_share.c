/* SPDX-License-Identifier: MIT */
/*
 * Sharing between unrelated processes (coh_export, coh_handle_send/recv,
 * coh_import): this program runs itself again through posix_spawn (no fork:
 * the peer is a process of its own, with a context of its own) and talks to
 * it over an AF_UNIX socketpair handed down as descriptor 3.
 *   test_share [host|cxl]
 * host: a COH_ALLOC_SHAREABLE allocation (a memfd); cxl: device-dax chunks
 * (exit 77 without a device-dax target).  Checked: data written by either
 * process is read by the other; the import is an allocation of the
 * importer's context (coh_lookup, coh_query, coh_pin_query answer for it);
 * forged handles are refused and change nothing; an exporter that frees its
 * memory and exits first leaves the importer's mapping intact; after the last
 * user of device-dax memory has freed it a handle for it is stale.
 * Prints "N passed, N failed".
 */
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include "coherent.h"
#include "seedfill.h"
#include "tally.h"

extern char **environ;

static coh_context *ctx;
static bool dax;

static coh_target *share_target(void)
{
	struct coh_context_options o = { .size = sizeof(o), .backends = dax ? "cxl" : "host", .log_level = -1 };
	if (coh_context_create(&o, &ctx))
		return NULL;
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (coh_target_caps(u) & COH_CAP_SHARE)
			return u;
	return NULL;
}

static size_t share_len(void)
{
	return dax ? 2u << 21 : 16u << 12;
}


/* The two ends talk over an AF_UNIX socketpair (rd == wr), or, on a kernel
 * without sockets (the VM's), over two pipes: the handle's record then
 * carries the sender's pid, and the receiver opens the descriptor through
 * /proc/PID/fd (the sender keeps it open until the receiver answers). */
struct chan {
	int rd, wr;
};
static bool nosock;

static bool put(struct chan c, char x)
{
	return write(c.wr, &x, 1) == 1;
}

static char get(struct chan c)
{
	char x = 0;
	return read(c.rd, &x, 1) == 1 ? x : 0;
}

static int send_h(struct chan c, const struct coh_handle *h)
{
	if (!nosock)
		return coh_handle_send(c.wr, h);
	struct {
		struct coh_handle h;
		pid_t pid;
	} m = { *h, getpid() };
	return write(c.wr, &m, sizeof(m)) == (ssize_t)sizeof(m) ? 0 : -EIO;
}

static int recv_h(struct chan c, struct coh_handle *h)
{
	if (!nosock)
		return coh_handle_recv(c.rd, h);
	struct {
		struct coh_handle h;
		pid_t pid;
	} m;
	if (read(c.rd, &m, sizeof(m)) != (ssize_t)sizeof(m))
		return -EIO;
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd/%d", (int)m.pid, (int)m.h.fd);
	m.h.fd = open(path, O_RDWR | O_CLOEXEC);
	if (m.h.fd < 0)
		return -errno;
	*h = m.h;
	return 0;
}

static void *alloc_shared(coh_target *t)
{
	void *p = NULL;
	int e = coh_alloc(t, share_len(), &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE, .fork_policy = COH_FORK_SHARE),
			  &p);
	return e ? NULL : p;
}

/* ---- the peer (the spawned process) ---- */

/* "import": receives a handle, imports it, checks and writes, tries forged
 * copies; "export": exports an allocation and frees it and exits once the
 * other side says it imported ("nowait": at once, before any import). */
static int peer(const char *role, bool wait)
{
	struct chan s = { 3, nosock ? 4 : 3 };
	coh_target *t = share_target();
	if (!t)
		return 77;
	size_t len = share_len();
	if (!strcmp(role, "export")) {
		unsigned char *p = alloc_shared(t);
		struct coh_handle h;
		if (!p || coh_export(ctx, p, &h))
			return 2;
		fill(p, len, 3);
		if (send_h(s, &h))
			return 3;
		if (wait && get(s) != 'I')
			return 4;
		if (coh_handle_close(&h))
			return 3;
		if (coh_free(ctx, p))
			return 5;
		coh_context_unref(ctx);
		return 0;   /* the importer reads on after this process is gone */
	}
	struct coh_handle h;
	int e = recv_h(s, &h);
	CHECK(e == 0, "peer: recv: %s", coh_strerror(e));
	if (e)
		return 1;
	int before = coh_alloc_count(ctx);
	/* forged copies: each refused, nothing mapped */
	struct {
		const char *what;
		struct coh_handle h;
		int want;
	} bad[8];
	int nb = 0;
	bad[nb].what = "bad magic", bad[nb].h = h, bad[nb].h.magic ^= 1, bad[nb++].want = -EINVAL;
	bad[nb].what = "bad version", bad[nb].h = h, bad[nb].h.version = 99, bad[nb++].want = -EPROTONOSUPPORT;
	bad[nb].what = "short size", bad[nb].h = h, bad[nb].h.size = 8, bad[nb++].want = -EINVAL;
	bad[nb].what = "length past the object", bad[nb].h = h, bad[nb].h.length = h.object_size + 4096,
	bad[nb++].want = -EINVAL;
	bad[nb].what = "object larger than the fd", bad[nb].h = h, bad[nb].h.object_size += 1u << 21,
	bad[nb].h.length += 1u << 21, bad[nb++].want = dax ? -ENODEV : -EINVAL;
	bad[nb].what = "no fd", bad[nb].h = h, bad[nb].h.fd = -1, bad[nb++].want = -EBADF;
	bad[nb].what = "unknown kind", bad[nb].h = h, bad[nb].h.kind = 7, bad[nb++].want = -EINVAL;
	bad[nb].what = "other kind", bad[nb].h = h, bad[nb].h.kind = dax ? COH_HANDLE_MEMFD : COH_HANDLE_DEVDAX,
	bad[nb++].want = -ENODEV;
	for (int i = 0; i < nb; i++) {
		void *q = NULL;
		e = coh_import(ctx, &bad[i].h, &q);
		CHECK(e == bad[i].want && q == NULL && coh_alloc_count(ctx) == before, "peer: forged (%s): %s, want %s",
		      bad[i].what, coh_strerror(e), coh_strerror(bad[i].want));
	}
	unsigned char *p = NULL;
	e = coh_import(ctx, &h, (void **)&p);
	CHECK(e == 0 && p, "peer: import: %s", coh_strerror(e));
	coh_handle_close(&h);
	if (e)
		return 1;
	CHECK(same(p, len, 1), "peer: the exporter's data is not here");
	struct coh_alloc_info info = { .size = sizeof(info) };
	e = coh_lookup(ctx, p + 100, &info);
	CHECK(e == 0 && info.base == p && info.length == len && info.target == t &&
	      (info.flags & COH_ALLOC_IMPORTED) && info.fork_policy == COH_FORK_SHARE,
	      "peer: lookup: %s", coh_strerror(e));
	struct coh_extent x[4];
	int n = coh_query(ctx, p, len, x, 4, sizeof(x[0]));
	CHECK(n >= 1 && x[0].kind == (dax ? COH_MEM_DEVICE_DAX : COH_MEM_FILE) && x[0].target == t,
	      "peer: query: %d extents, kind %s", n, n > 0 ? coh_mem_kind_name(x[0].kind) : "-");
	struct coh_pin_extent pe[4];
	n = coh_pin_query(ctx, p, len, pe, 4, sizeof(pe[0]));
	CHECK(n >= 1 && pe[0].short_term != COH_PIN_UNKNOWN, "peer: pin-query: %d (%s)", n,
	      n > 0 && pe[0].reason ? pe[0].reason : "-");
	fill(p + len / 2, len / 2, 2);
	put(s, 'W');
	/* shared memory: EXCLUDE and KERNEL can be set, COPY and ZERO cannot */
	CHECK(coh_fork_policy_set(ctx, p, len, COH_FORK_COPY) == -EOPNOTSUPP &&
	      coh_fork_policy_set(ctx, p, len, COH_FORK_ZERO) == -EOPNOTSUPP &&
	      coh_fork_policy_get(ctx, p) == COH_FORK_SHARE, "peer: COPY or ZERO taken by an import");
	CHECK(coh_fork_policy_set(ctx, p, len, COH_FORK_EXCLUDE) == 0 && coh_fork_policy_get(ctx, p) == COH_FORK_EXCLUDE &&
	      coh_fork_policy_set(ctx, p, len, COH_FORK_SHARE) == 0, "peer: EXCLUDE and back on an import: %s",
	      coh_strerror(coh_fork_policy_set(ctx, p, len, COH_FORK_EXCLUDE)));
	CHECK(get(s) == 'C', "peer: the exporter did not check");
	CHECK(coh_release(ctx, p) == 0 && coh_alloc_count(ctx) == before, "peer: release of the import");
	coh_context_unref(ctx);
	return failed ? 1 : 0;
}

/* ---- the test (the first process) ---- */

static pid_t spawn_peer(struct chan *c, const char *role, const char *wait)
{
	int sv[2], back[2] = { -1, -1 };
	if (nosock ? pipe2(sv, O_CLOEXEC) || pipe2(back, O_CLOEXEC)   /* a pipe each way */
		   : socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return -1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	/* dup2 clears close-on-exec: the peer reads fd 3 and writes fd 4 (or both on 3) */
	posix_spawn_file_actions_adddup2(&fa, nosock ? sv[0] : sv[1], 3);
	if (nosock)
		posix_spawn_file_actions_adddup2(&fa, back[1], 4);
	char self[256];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l <= 0)
		return -1;
	self[l] = '\0';
	char *argv[] = { self, "peer", (char *)role, (char *)wait, dax ? "cxl" : "host", nosock ? "pipes" : "socket", NULL };
	pid_t pid;
	int e = posix_spawn(&pid, self, &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (nosock) {
		close(sv[0]);
		close(back[1]);
		*c = (struct chan){ back[0], sv[1] };
	} else {
		close(sv[1]);
		*c = (struct chan){ sv[0], sv[0] };
	}
	if (e) {
		close(c->rd);
		if (c->wr != c->rd)
			close(c->wr);
		return -1;
	}
	return pid;
}

static void chan_close(struct chan c)
{
	close(c.rd);
	if (c.wr != c.rd)
		close(c.wr);
}

static int reap(pid_t pid)
{
	int st = 0;
	if (waitpid(pid, &st, 0) != pid)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/* A message that is not a handle, with a descriptor: the receiver refuses it
 * and keeps no descriptor. */
static bool send_raw(int s, const void *buf, size_t len, int fd)
{
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &fd, sizeof(int));
	return sendmsg(s, &m, 0) == (ssize_t)len;
}

static int open_fds(void)
{
	int n = 0;
	for (int fd = 0; fd < 1024; fd++)
		n += fcntl(fd, F_GETFD) >= 0;
	return n;
}

int main(int argc, char **argv)
{
	if (argc == 6 && !strcmp(argv[1], "peer")) {
		dax = !strcmp(argv[4], "cxl");
		nosock = !strcmp(argv[5], "pipes");
		return peer(argv[2], !strcmp(argv[3], "wait"));
	}
	dax = argc > 1 && !strcmp(argv[1], "cxl");
	signal(SIGPIPE, SIG_IGN);
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	nosock = (probe < 0 && (errno == ENOSYS || errno == EAFNOSUPPORT)) || getenv("TEST_SHARE_PIPES");   /* the VM; or forced */
	if (probe >= 0)
		close(probe);
	if (nosock)
		printf("test_share: no sockets in this kernel: handles over pipes, descriptors through /proc/PID/fd\n");
	coh_target *t = share_target();
	if (!t) {
		printf("test_share: no %s target that shares here (skip)\n", dax ? "device-dax" : "host");
		return 77;
	}
	size_t len = share_len();

	/* 1. this process exports, the peer imports: both directions */
	unsigned char *p = alloc_shared(t);
	CHECK(p != NULL, "alloc shareable");
	if (!p)
		return 1;
	fill(p, len, 1);
	struct coh_handle h;
	int e = coh_export(ctx, p, &h);
	CHECK(e == 0 && h.fd >= 0 && h.length == len, "export: %s", coh_strerror(e));
	struct coh_handle forged = h;
	forged.magic = 0;
	CHECK(coh_handle_send(0, &forged) == -EINVAL, "send refuses a forged handle");
	struct chan sock;
	pid_t pid = spawn_peer(&sock, "import", "wait");
	CHECK(pid > 0, "spawn the importer");
	if (pid <= 0)
		return 1;
	CHECK(send_h(sock, &h) == 0, "send");
	CHECK(get(sock) == 'W', "the importer wrote");
	CHECK(coh_handle_close(&h) == 0 && h.fd == -1, "close the handle");
	CHECK(same(p, len / 2, 1) && same(p + len / 2, len / 2, 2), "the importer's writes are here");
	put(sock, 'C');
	CHECK(reap(pid) == 0, "the importer's checks passed");
	chan_close(sock);
	CHECK(coh_free(ctx, p) == 0, "free the exported memory");

	/* 2. forged messages on the wire: refused, no descriptor kept */
	int sv[2];
	if (!nosock && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0) {
		struct coh_handle w;
		memset(&w, 0, sizeof(w));
		w.magic = COH_HANDLE_MAGIC ^ 0x100;
		w.size = sizeof(w);
		w.version = COH_HANDLE_VERSION;
		int fds = open_fds(), dn = open("/dev/null", O_RDONLY | O_CLOEXEC);
		struct coh_handle r;
		CHECK(send_raw(sv[0], &w, sizeof(w), dn) && coh_handle_recv(sv[1], &r) == -EINVAL, "recv: bad magic");
		CHECK(send_raw(sv[0], &w, 16, dn) && coh_handle_recv(sv[1], &r) == -EPROTO, "recv: short message");
		close(dn);
		CHECK(open_fds() == fds, "recv keeps no descriptor of a refused message");
		close(sv[0]);
		CHECK(coh_handle_recv(sv[1], &r) == -ECONNRESET, "recv at the end of the stream");
		close(sv[1]);
	}

	/* 3. the exporter frees its memory and exits first: the importer reads on */
	int nowait_max = dax || nosock ? 1 : 2;   /* device chunks (and /proc/PID/fd) need a live exporter */
	for (int round = 0; round < nowait_max; round++) {
		bool wait = round == 0;
		pid = spawn_peer(&sock, "export", wait ? "wait" : "nowait");
		CHECK(pid > 0, "spawn the exporter");
		if (pid <= 0)
			break;
		e = recv_h(sock, &h);
		CHECK(e == 0, "recv from the exporter: %s", coh_strerror(e));
		if (!wait)
			CHECK(reap(pid) == 0, "the exporter exited before the import");
		unsigned char *q = NULL;
		if (!e)
			e = coh_import(ctx, &h, (void **)&q);
		CHECK(e == 0, "import (%s): %s", wait ? "exporter alive" : "exporter gone", coh_strerror(e));
		put(sock, 'I');
		if (wait)
			CHECK(reap(pid) == 0, "the exporter freed its memory and exited");
		chan_close(sock);
		if (!e) {
			CHECK(same(q, len, 3), "the data outlives its exporter");
			fill(q, len, 4);
			CHECK(same(q, len, 4), "and takes writes");
			if (dax) {
				/* the chunks are still in use: a stranger cannot have them */
				uint64_t fr = 0, tot = 0;
				coh_target_capacity(t, &tot, &fr);
				CHECK(fr <= tot - len, "the imported chunks count as used (%llu of %llu free)",
				      (unsigned long long)fr, (unsigned long long)tot);
			}
			CHECK(coh_free(ctx, q) == 0, "free the import");
			if (dax) {
				void *q2 = NULL;
				CHECK(coh_import(ctx, &h, &q2) == -ESTALE, "a handle after its last user freed it is stale");
			}
		}
		coh_handle_close(&h);
	}
	CHECK(coh_alloc_count(ctx) == 0, "nothing left allocated");
	coh_context_unref(ctx);
	printf("%d passed, %d failed\n", passed, failed);
	return failed ? 1 : 0;
}
