/* SPDX-License-Identifier: MIT */
/* nvidia backend: the ops table (the design: nvidia.h). */
#include "nvidia.h"

static const struct coh_tunable nv_tunables[] = {
	{ "nvidia.streams", "COH_NVIDIA_STREAMS" },
	{ "nvidia.chunk_mb", "COH_NVIDIA_CHUNK_MB" },
	{ "nvidia.prefer", "COH_NVIDIA_PREFER" },
	{ "nvidia.cuda_library", "COH_CUDA_LIBRARY" },
	{ NULL, NULL },
};

const struct coh_backend_ops coh_nvidia_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "nvidia",
	.discover = nv_discover,
	.fini = nv_fini,
	.target_fini = nv_target_fini,
	.free_bytes = nv_free_bytes,
	.alloc = nv_alloc,
	.free = nv_free,
	.adopt = nv_adopt,
	.release = nv_release,
	.migrate = nv_migrate,
	.advise = nv_advise,
	.fork_policy = nv_fork_policy,
	.atfork_prepare = nv_atfork_prepare,
	.atfork_parent = nv_atfork_parent,
	.atfork_child = nv_atfork_child,
	.query_resolve = nv_query_resolve,
	.fork_plan = nv_fork_plan,
	.fork_copy = nv_fork_copy,
	.fork_buffer = nv_fork_buffer,
	.migrate_start = nv_migrate_start,
	.migrate_poll = nv_migrate_poll,
	.migrate_done = nv_migrate_done,
	.migrate_notify = nv_migrate_notify,
	.migrate_batch = nv_migrate_batch,
	.migrate_batch_start = nv_migrate_batch_start,
	.device_access = nv_device_access,
	.owned_mappings = nv_owned,
	.tunables = nv_tunables,
};
