/* SPDX-License-Identifier: MIT */
/* What a child sees under each fork policy, on the first target. */
#include <coherent.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

int main(void)
{
	coh_context *ctx;
	if (coh_context_create(NULL, &ctx))
		return 1;
	coh_target *t = coh_target_get(ctx, 0);
	int bad = 0;
	for (int pol = COH_FORK_COPY; t && pol <= COH_FORK_KERNEL; pol++) {
		char *p;
		int e = coh_alloc(t, 4096, &COH_ALLOC_PROPS(.fork_policy = pol), (void **)&p);
		if (e) {
			printf("%-8s %s\n", coh_fork_policy_name(pol), coh_strerror(e));
			continue;
		}
		strcpy(p, "parent data");
		fflush(stdout);
		pid_t pid = fork();
		if (pid == 0) {
			signal(SIGSEGV, SIG_DFL);
			printf("%-8s child reads \"%s\"", coh_fork_policy_name(pol), p);
			fflush(stdout);
			strcpy(p, "child data");
			_exit(0);
		}
		int st;
		waitpid(pid, &st, 0);
		if (WIFSIGNALED(st))
			printf("%-8s child killed by signal %d (no mapping)", coh_fork_policy_name(pol), WTERMSIG(st));
		printf(", parent then reads \"%s\"\n", p);
		bad |= pol == COH_FORK_SHARE ? strcmp(p, "child data") != 0 : strcmp(p, "parent data") != 0;
		coh_free(ctx, p);
	}
	coh_context_unref(ctx);
	return bad;
}
