/* SPDX-License-Identifier: MIT */
/*
 * Sharing between processes: coh_export() turns an allocation into a handle
 * (a fixed-width record plus a file descriptor), coh_handle_send() and
 * coh_handle_recv() carry it over an AF_UNIX socket (the record as bytes,
 * the descriptor as SCM_RIGHTS), and coh_import() maps it in another
 * process as an allocation of that process's context.  The core checks the
 * record's envelope (magic, version, size, reserved bits, a descriptor that
 * is open); the backend that serves the handle's kind checks the rest
 * against the descriptor itself (memfd size and seals, device identity) and
 * against its own state (the cxl device map's share entries).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* The envelope of a handle: 0 or -errno. */
static int handle_check(const struct coh_handle *h)
{
	if (h->magic != COH_HANDLE_MAGIC)
		return -EINVAL;
	if (h->size != sizeof(*h))
		return -EINVAL;   /* a short (or longer) record is another layout */
	if (h->version != COH_HANDLE_VERSION)
		return -EPROTONOSUPPORT;
	if (h->reserved || (h->kind != COH_HANDLE_MEMFD && h->kind != COH_HANDLE_DEVDAX))
		return -EINVAL;
	if (h->length == 0 || h->length > (SIZE_MAX >> 1) || h->offset > UINT64_MAX - h->length ||
	    h->offset + h->length > h->object_size)
		return -EINVAL;
	return 0;
}

/* The arguments both ends check first. */
static int args_check(const coh_context *ctx, const void *h, const void *addr)
{
	if (!ctx || !h)
		return -EINVAL;
	if (!addr)
		return -EFAULT;
	return ctx->replay ? -EROFS : 0;
}

int coh_export(coh_context *ctx, const void *addr, struct coh_handle *h)
{
	int e = args_check(ctx, h, addr);
	if (e)
		return e;
	struct coh_rec *r;
	e = coh_rec_get(ctx, addr, 1, &r);
	if (e)
		return e;
	if (r->pub.start != (uintptr_t)addr || r->pub.adopted || coh_pool_owns(r->pub.start))
		e = r->pub.start != (uintptr_t)addr ? -ENOENT : -EINVAL;
	else if (!(r->pub.target->d.caps & COH_CAP_SHARE))
		e = -EOPNOTSUPP;
	if (!e) {
		struct coh_handle x;
		memset(&x, 0, sizeof(x));
		x.magic = COH_HANDLE_MAGIC;
		x.version = COH_HANDLE_VERSION;
		x.size = sizeof(x);
		x.fd = -1;
		x.node = r->pub.target->d.numa_node;
		e = r->pub.target->slot->ops->share_export(&r->pub, &x);
		if (!e && (x.fd < 0 || handle_check(&x))) {
			if (x.fd >= 0)
				close(x.fd);
			e = -EIO;   /* a backend's mistake: never hand out a handle import refuses */
		}
		if (!e)
			*h = x;
	}
	coh_rec_put(r);
	return e;
}

int coh_handle_send(int sock, const struct coh_handle *h)
{
	if (!h)
		return -EINVAL;
	int e = handle_check(h);
	if (e)
		return e;
	if (h->fd < 0 || fcntl(sock, F_GETFD) < 0)
		return -EBADF;   /* checked first: a kernel without sockets would say ENOSYS */
	struct coh_handle wire = *h;
	wire.fd = -1;   /* a number of this process means nothing to the other */
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { .iov_base = &wire, .iov_len = sizeof(wire) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	struct cmsghdr *c = CMSG_FIRSTHDR(&m);
	c->cmsg_level = SOL_SOCKET;
	c->cmsg_type = SCM_RIGHTS;
	c->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(c), &h->fd, sizeof(int));
	ssize_t n = coh_sys_sendmsg(sock, &m, MSG_NOSIGNAL);
	if (n < 0)
		return (int)n;
	return n == (ssize_t)sizeof(wire) ? 0 : -EIO;
}

/* Closes every descriptor a received control message carries. */
static void close_rights(struct msghdr *m)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c; c = CMSG_NXTHDR(m, c)) {
		if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
			continue;
		size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < k; i++) {
			int fd;
			memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
			close(fd);
		}
	}
}

int coh_handle_recv(int sock, struct coh_handle *h)
{
	if (!h)
		return -EINVAL;
	if (fcntl(sock, F_GETFD) < 0)
		return -EBADF;
	struct coh_handle wire;
	union {
		struct cmsghdr c;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} u;
	memset(&u, 0, sizeof(u));
	struct iovec iov = { .iov_base = &wire, .iov_len = sizeof(wire) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof(u.buf) };
	ssize_t n = coh_sys_recvmsg(sock, &m, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return (int)n;
	if (n == 0)
		return -ECONNRESET;
	int fd = -1, nfd = 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			nfd += (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
			memcpy(&fd, CMSG_DATA(c), sizeof(int));
		}
	int e = 0;
	if (n != (ssize_t)sizeof(wire) || nfd != 1 || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		e = -EPROTO;
	else if ((e = handle_check(&wire)) == 0 && wire.fd != -1)
		e = -EINVAL;
	if (e) {
		close_rights(&m);
		return e;
	}
	wire.fd = fd;
	*h = wire;
	return 0;
}

int coh_handle_close(struct coh_handle *h)
{
	if (!h)
		return -EINVAL;
	if (h->fd < 0)
		return 0;
	int fd = h->fd;
	h->fd = -1;
	return close(fd) ? -errno : 0;
}

int coh_import(coh_context *ctx, const struct coh_handle *h, void **addr)
{
	int e = args_check(ctx, h, addr);
	if (!e)
		e = handle_check(h);
	if (e)
		return e;
	if (h->fd < 0 || fcntl(h->fd, F_GETFD) < 0)
		return -EBADF;
	/* the exporter's node first, so residency names the same node's target */
	e = -ENODEV;
	for (int pass = 0; pass < 2 && e == -ENODEV; pass++)
		for (int i = 0; i < ctx->ntargets && e == -ENODEV; i++) {
			coh_target *t = ctx->targets[i];
			if (!(t->d.caps & COH_CAP_SHARE) || (pass == 0 && (h->node < 0 || t->d.numa_node != h->node)))
				continue;
			void *p = NULL, *priv = NULL;
			e = t->slot->ops->share_import(t, h, &p, &priv);
			if (e)
				continue;
			e = coh_rec_add_import(t, p, (size_t)h->length, priv);
			if (e) {
				t->slot->ops->free(t, p, (size_t)h->length, priv);
				return e;
			}
			*addr = p;
		}
	return e;
}
