/* SPDX-License-Identifier: MIT */
/* cxl backend: alloc, free and free bytes, as runs of window chunks. */
#include <errno.h>
#include <sys/mman.h>
#include <unistd.h>

#include "cxl.h"

int cxl_alloc(coh_target *t, size_t size, size_t align, unsigned flags, void **out, void **priv)
{
	(void)priv;
	struct cxl_target *ct = ct_of(t);
	size_t a = ct->align, n = (size + a - 1) / a;
	if (align > a)
		return -EINVAL;   /* the device's own alignment is the only one it offers */
	if (flags & COH_ALLOC_HUGE)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&ct->lock);
	int e = cxl_window(t, ct);
	long first = e ? -1 : cxl_find_run(ct, n);
	if (!e && first < 0)
		e = -ENOMEM;
	if (e)
		goto out;
	uint8_t *p = ct->base + (size_t)first * a;
	int policy = coh_backend_fork_policy(flags);
	if (cxl_policy_forks(policy) && (e = coh_sys_madvise(p, n * a, MADV_DOFORK)))
		goto out;
	memset(ct->state + first, CH_DEV, n);
	ct->run[first] = (uint32_t)n;
	ct->forks[first] = cxl_policy_forks(policy);
	ct->nused += n;
	ct->hint = (size_t)first + n < ct->nchunks ? (size_t)first + n : 0;
	*out = p;
out:
	pthread_mutex_unlock(&ct->lock);
	return e;
}

int cxl_free(coh_target *t, void *ptr, size_t size, void *priv)
{
	(void)priv;
	struct cxl_target *ct = ct_of(t);
	if (ct->base && ct->pid != getpid())
		return coh_sys_munmap(ptr, (size + ct->align - 1) / ct->align * ct->align);   /* a child's view */
	pthread_mutex_lock(&ct->lock);
	long c = cxl_first_chunk(ct, ptr);
	int e = c < 0 ? -ENOENT : 0;
	if (!e) {
		size_t n = ct->run[c];
		bool host = false;
		for (size_t i = (size_t)c; i < (size_t)c + n; i++)
			host |= ct->state[i] == CH_HOST;
		/* the window gets the device back where host memory replaced it */
		if (host)
			e = cxl_remap_device(ct, (size_t)c, n, false);
		else if (ct->forks[c])
			e = coh_sys_madvise(ptr, n * ct->align, MADV_DONTFORK);
		memset(ct->state + c, CH_FREE, n);
		ct->run[c] = 0;
		ct->forks[c] = 0;
		ct->nused -= n;
	}
	pthread_mutex_unlock(&ct->lock);
	return e;
}

int cxl_free_bytes(coh_target *t, uint64_t *free_bytes)
{
	struct cxl_target *ct = ct_of(t);
	pthread_mutex_lock(&ct->lock);
	*free_bytes = (uint64_t)(ct->nchunks - ct->nused) * ct->align;
	pthread_mutex_unlock(&ct->lock);
	return 0;
}
