/* SPDX-License-Identifier: MIT */
/*
 * Two unrelated processes share a buffer: this program starts a second copy
 * of itself (posix_spawn, not fork) with one end of a socketpair.  The first
 * allocates shareable memory, writes a greeting, exports it and sends the
 * handle; the second imports it at its own address, reads the greeting,
 * writes a reply and says so; the first reads the reply.
 */
#include <coherent.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

#define LEN (64u << 10)

static int second(coh_context *ctx, int sock)
{
	struct coh_handle h;
	char *buf;
	int e = coh_handle_recv(sock, &h);
	if (!e)
		e = coh_import(ctx, &h, (void **)&buf);
	coh_handle_close(&h);
	if (e) {
		fprintf(stderr, "share: import: %s\n", coh_strerror(e));
		return 1;
	}
	printf("second process (%d) reads at %p: %s\n", (int)getpid(), (void *)buf, buf);
	snprintf(buf + LEN / 2, 64, "hello back from %d", (int)getpid());
	if (write(sock, "!", 1) != 1)
		return 1;
	coh_free(ctx, buf);   /* unmaps this process's view only */
	return 0;
}

int main(int argc, char **argv)
{
	coh_context *ctx;
	int e = coh_context_create(NULL, &ctx);
	if (e) {
		fprintf(stderr, "share: %s\n", coh_strerror(e));
		return 1;
	}
	if (argc == 2 && !strcmp(argv[1], "second")) {
		int r = second(ctx, 3);
		coh_context_unref(ctx);
		return r;
	}
	coh_target *t = coh_target_find(ctx, "host:node0");
	char *buf;
	e = coh_alloc(t, LEN, &COH_ALLOC_PROPS(.flags = COH_ALLOC_SHAREABLE, .fork_policy = COH_FORK_SHARE),
		      (void **)&buf);
	if (e) {
		fprintf(stderr, "share: alloc: %s\n", coh_strerror(e));
		return 1;
	}
	snprintf(buf, 64, "hello from %d", (int)getpid());

	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv))
		return 1;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, sv[1], 3);
	char self[256];
	ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (l <= 0)
		return 1;
	self[l] = '\0';
	char *args[] = { self, "second", NULL };
	pid_t pid;
	e = posix_spawn(&pid, self, &fa, NULL, args, environ);
	posix_spawn_file_actions_destroy(&fa);
	if (e)
		return 1;
	close(sv[1]);

	struct coh_handle h;
	e = coh_export(ctx, buf, &h);
	if (!e)
		e = coh_handle_send(sv[0], &h);
	coh_handle_close(&h);
	char c = 0;
	if (e || read(sv[0], &c, 1) != 1) {
		fprintf(stderr, "share: %s\n", e ? coh_strerror(e) : "no answer");
		return 1;
	}
	int st = 0;
	waitpid(pid, &st, 0);
	printf("first process (%d) reads at %p: %s\n", (int)getpid(), (void *)(buf + LEN / 2), buf + LEN / 2);
	int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0 && !strncmp(buf + LEN / 2, "hello back", 10);
	coh_free(ctx, buf);
	coh_context_unref(ctx);
	return ok ? 0 : 1;
}
