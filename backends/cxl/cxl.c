/* SPDX-License-Identifier: MIT */
/* cxl backend: the ops table (the design: cxl.h; the files: README.md). */
#include "cxl.h"

static const struct coh_tunable cxl_tunables[] = {
	{ "cxl.mapdir", "COH_CXL_MAPDIR" },
	{ NULL, NULL },
};

const struct coh_backend_ops coh_cxl_backend = {
	.abi = COH_BACKEND_ABI,
	.size = sizeof(struct coh_backend_ops),
	.name = "cxl",
	.discover = cxl_discover,
	.fini = cxl_fini,
	.target_fini = cxl_target_fini,
	.free_bytes = cxl_free_bytes,
	.alloc = cxl_alloc,
	.free = cxl_free,
	.migrate = cxl_migrate,
	.query_resolve = cxl_query_resolve,
	.describe_node = cxl_describe_node,
	.fork_policy = cxl_fork_policy,
	.fork_plan = cxl_fork_plan,
	.fork_copy = cxl_fork_copy,
	.atfork_prepare = cxl_atfork_prepare,
	.atfork_parent = cxl_atfork_parent,
	.atfork_child = cxl_atfork_child,
	.tunables = cxl_tunables,
	.share_export = cxl_share_export,
	.share_import = cxl_share_import,
};
