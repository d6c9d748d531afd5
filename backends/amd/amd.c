/* SPDX-License-Identifier: MIT */
/* amd backend: the ops table (the design: amd.h; the files: README.md). */
#include "amd.h"

static const struct coh_tunable amd_tunables[] = {
	{ "amd.xnack", "COH_AMD_XNACK" },
	{ NULL, NULL },
};

const struct coh_backend_ops coh_amd_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "amd",
	.discover = amd_discover,
	.fini = amd_fini,
	.target_fini = amd_target_fini,
	.free_bytes = amd_free_bytes,
	.alloc = amd_alloc,
	.free = amd_free,
	.adopt = amd_adopt,
	.release = amd_release,
	.migrate = amd_migrate,
	.advise = amd_advise,
	.query_resolve = amd_query_resolve,
	.fork_policy = amd_fork_policy,
	.fork_plan = amd_fork_plan,
	.fork_copy = amd_fork_copy,
	.atfork_prepare = amd_atfork_prepare,
	.atfork_parent = amd_atfork_parent,
	.atfork_child = amd_atfork_child,
	.tunables = amd_tunables,
};
