/* SPDX-License-Identifier: MIT */
/* Context: options, backend filter, registration and discovery. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "growth.h"
#include "internal.h"
#include "query.h"

/* The core's own tunables; the backends declare theirs (ops->tunables). */
static const struct coh_tunable core_tunables[] = {
	{ "query.pfn", "COH_QUERY_PFN" },
	{ "query.scan", "COH_QUERY_SCAN" },   /* 0: read pagemap with pread only (core/query.c) */
	{ "async.workers", "COH_ASYNC_WORKERS" },   /* the worker pool's size (core/cqueue.c) */
	{ NULL, NULL },
};

static const struct coh_tunable *tunable_in(const struct coh_tunable *list, const char *key, size_t len)
{
	for (; list && list->key; list++)
		if (strlen(list->key) == len && !strncmp(list->key, key, len))
			return list;
	return NULL;
}

/* The declaration of a key: the core's, or that of a compiled-in backend. */
static const struct coh_tunable *tunable_find(const char *key, size_t len)
{
	const struct coh_tunable *t = tunable_in(core_tunables, key, len);
	for (unsigned i = 0; !t && i < coh_builtin_backend_count; i++) {
		const struct coh_backend_ops *ops = coh_builtin_backends[i];
		if (ops->size >= offsetof(struct coh_backend_ops, tunables) + sizeof(ops->tunables))
			t = tunable_in(ops->tunables, key, len);
	}
	return t;
}

/* "key=value,key=value": a copy cut into key and value strings (*kv, n
 * pairs).  -EINVAL for an undeclared key, an item without '=' or an empty
 * item; nothing is allocated then. */
static int tunables_parse(const char *s, char **copy, const char ***kv, size_t *n)
{
	*copy = NULL;
	*kv = NULL;
	*n = 0;
	if (!s || !*s)
		return 0;
	size_t items = 1;
	for (const char *c = s; *c; c++)
		items += *c == ',';
	char *c = strdup(s);
	const char **pairs = calloc(items, 2 * sizeof(*pairs));
	if (!c || !pairs) {
		free(c);
		free(pairs);
		return -ENOMEM;
	}
	size_t k = 0;
	for (char *item = c; item; k++) {
		char *next = strchr(item, ',');
		if (next)
			*next++ = '\0';
		char *eq = strchr(item, '=');
		if (!eq || !tunable_find(item, (size_t)(eq - item))) {
			free(c);
			free(pairs);
			return -EINVAL;
		}
		*eq = '\0';
		pairs[2 * k] = item;
		pairs[2 * k + 1] = eq + 1;
		item = next;
	}
	*copy = c;
	*kv = pairs;
	*n = k;
	return 0;
}

const char *coh_ctx_tunable(const coh_context *ctx, const char *key)
{
	const struct coh_tunable *t = key ? tunable_find(key, strlen(key)) : NULL;
	if (!t)
		return NULL;
	for (size_t i = ctx ? ctx->ntunable : 0; i-- > 0;)
		if (!strcmp(ctx->tunable_kv[2 * i], t->key))
			return ctx->tunable_kv[2 * i + 1];
	return getenv(t->env);
}

int coh_backend_validate(const struct coh_backend_ops *ops)
{
	if (!ops)
		return -EINVAL;
	if (ops->abi != COH_BACKEND_ABI)
		return -EPROTO;
	if (ops->size < offsetof(struct coh_backend_ops, fini) + sizeof(ops->fini) ||
	    ops->size > sizeof(struct coh_backend_ops))
		return -EPROTO;
	if (!ops->name || !*ops->name || strlen(ops->name) > 16 || !ops->discover || !ops->fini)
		return -EINVAL;
	for (const char *c = ops->name; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9')))
			return -EINVAL;
	/* All-or-none groups of optional ops. */
	if (!!ops->alloc != !!ops->free)
		return -EINVAL;
	if (!!ops->adopt != !!ops->release)
		return -EINVAL;
	if (!!ops->migrate_start != !!ops->migrate_poll || !!ops->migrate_start != !!ops->migrate_done)
		return -EINVAL;
	if (ops->migrate_notify && !ops->migrate_start)
		return -EINVAL;
	/* Tunables: "<name>.<key>", each with its environment variable. */
	if (ops->size >= offsetof(struct coh_backend_ops, tunables) + sizeof(ops->tunables)) {
		size_t nl = strlen(ops->name);
		for (const struct coh_tunable *t = ops->tunables; t && t->key; t++)
			if (strncmp(t->key, ops->name, nl) || t->key[nl] != '.' || !t->key[nl + 1] || strchr(t->key, ',') ||
			    strchr(t->key, '=') || !t->env || !*t->env)
				return -EINVAL;
	}
	return 0;
}

/* "a,b" keeps the named backends; "^a,b" drops them. */
static bool filter_keeps(const char *filter, const char *name)
{
	if (!filter || !*filter)
		return true;
	bool negate = filter[0] == '^';
	const char *p = filter + negate;
	size_t nl = strlen(name);
	bool listed = false;
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		if (l == nl && !strncmp(p, name, l))
			listed = true;
		if (!e)
			break;
		p = e + 1;
	}
	return negate ? !listed : listed;
}

static void filter_warn_unknown(coh_context *ctx, const char *filter)
{
	if (!filter || !*filter)
		return;
	const char *p = filter + (filter[0] == '^');
	while (*p) {
		const char *e = strchr(p, ',');
		size_t l = e ? (size_t)(e - p) : strlen(p);
		bool known = false;
		for (unsigned i = 0; i < coh_builtin_backend_count; i++)
			if (strlen(coh_builtin_backends[i]->name) == l &&
			    !strncmp(coh_builtin_backends[i]->name, p, l))
				known = true;
		if (!known && l)
			coh_warn(ctx, "backend filter names '%.*s', which is not compiled in", (int)l, p);
		if (!e)
			break;
		p = e + 1;
	}
}

static void free_targets(coh_context *ctx)
{
	for (int i = 0; i < ctx->ntargets; i++) {
		coh_target *t = ctx->targets[i];
		if (t->slot->ops->target_fini)
			t->slot->ops->target_fini(t, t->d.priv);
		free(t);
	}
	free(ctx->targets);
	ctx->targets = NULL;
	ctx->ntargets = 0;
}

static void drop_rec(struct coh_rec *r, void *arg)
{
	coh_context *ctx = arg;
	const struct coh_backend_ops *ops = r->pub.target->slot->ops;
	if (!ctx->replay) {
		int e = 0;
		if (r->pub.adopted) {
			if (r->pub.fork_policy != COH_FORK_KERNEL)
				e = coh_fork_apply(ctx, r, COH_FORK_KERNEL);
			if (ops->release) {
				int e2 = ops->release(r->pub.target, &r->pub);
				e = e ? e : e2;
			}
		} else if (ops->free) {
			e = ops->free(r->pub.target, (void *)r->pub.start, r->pub.length, r->pub.priv);
		}
		/* nobody to return it to: say what is left behind */
		if (e)
			coh_warn(ctx, "context end: %s %#lx+%zu: %s", r->pub.adopted ? "releasing" : "freeing",
				 (unsigned long)r->pub.start, r->pub.length, strerror(-e));
	}
	coh_rec_put(r);
}

static void context_free(coh_context *ctx)
{
	coh_fork_unregister(ctx);
	coh_workers_fini(ctx);   /* no job is in flight: each holds a reference */
	int e = coh_amap_destroy(&ctx->amap, drop_rec, ctx);
	if (e)
		coh_warn(ctx, "context end: lookup table memory left mapped: %s", strerror(-e));
	free(atomic_load(&ctx->spare_rec));
	free_targets(ctx);
	coh_pfn_map_free(ctx);
	for (int i = ctx->nslots - 1; i >= 0; i--)
		ctx->slots[i].ops->fini(ctx, ctx->slots[i].priv);
	if (ctx->rootfd >= 0)
		close(ctx->rootfd);
	pthread_mutex_destroy(&ctx->log_lock);
	pthread_mutex_destroy(&ctx->cma_lock);
	free(ctx->cma_ranges);
	free(ctx->tunables);
	free(ctx->tunable_kv);
	free(ctx);
}

int coh_context_create(const struct coh_context_options *opts, coh_context **out)
{
	struct coh_context_options o = { .size = sizeof(o), .log_level = -1 };

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts) {
		int e = coh_struct_in(&o, sizeof(o), opts);
		if (e)
			return e;
		if (o.log_level < -1 || o.log_level > COH_LOG_DEBUG)
			return -EINVAL;
	}
	char *tunables;
	const char **tunable_kv;
	size_t ntunable;
	int te = tunables_parse(o.tunables, &tunables, &tunable_kv, &ntunable);
	if (te)
		return te;

	coh_fault_env();
	coh_context *ctx = calloc(1, sizeof(*ctx));
	if (!ctx) {
		free(tunables);
		free(tunable_kv);
		return -ENOMEM;
	}
	ctx->tunables = tunables;
	ctx->tunable_kv = tunable_kv;
	ctx->ntunable = ntunable;
	atomic_init(&ctx->refs, 1);
	pthread_mutex_init(&ctx->log_lock, NULL);
	pthread_mutex_init(&ctx->cma_lock, NULL);
	coh_workers_init(ctx);
	ctx->rootfd = -1;
	ctx->log_level = o.log_level >= 0 ? o.log_level : coh_log_level_parse(getenv("COH_LOG"));
	ctx->log_fn = o.log_fn;
	ctx->log_data = o.log_data;
	long ps = sysconf(_SC_PAGESIZE);
	ctx->page_size = ps > 0 ? (size_t)ps : COH_PAGE_SIZE_MIN;

	int err = coh_amap_init(&ctx->amap);
	if (err) {
		coh_workers_fini(ctx);
		pthread_mutex_destroy(&ctx->log_lock);
		pthread_mutex_destroy(&ctx->cma_lock);
		free(ctx->tunables);
		free(ctx->tunable_kv);
		free(ctx);
		return err;
	}

	const char *root = o.fsroot ? o.fsroot : getenv("COH_FSROOT");
	if (!root || !*root)
		root = "/";
	if (strlen(root) >= sizeof(ctx->fsroot)) {
		err = -ENAMETOOLONG;
		goto fail;
	}
	strcpy(ctx->fsroot, root);
	ctx->rootfd = coh_sys_openat(AT_FDCWD, root, O_RDONLY | O_DIRECTORY | O_CLOEXEC, false);
	if (ctx->rootfd < 0) {
		err = ctx->rootfd;
		coh_err(ctx, "fsroot %s: %s", root, strerror(-err));
		goto fail;
	}
	{
		char real[4096];
		ctx->replay = !(realpath(root, real) && !strcmp(real, "/"));
	}
	if (ctx->replay) {
		/* A recorded machine always has its node folder; an empty folder or
		 * the one above a tree has none and must not pass for a one-node
		 * machine.  The live root may lack it (CONFIG_NUMA off): the host
		 * backend then serves all memory as one target. */
		int fd = coh_fs_open(ctx, "/sys/devices/system/node", O_RDONLY | O_DIRECTORY);
		if (fd < 0) {
			err = fd;
			coh_err(ctx, "fsroot %s: %s/sys/devices/system/node: %s: not a recorded machine", root,
				root, strerror(-err));
			goto fail;
		}
		close(fd);
		coh_info(ctx, "fsroot %s: replay mode, memory-changing calls refused", root);
	}

	{
		char rel[128];
		int maj, min;
		if (coh_fs_read(ctx, "/proc/sys/kernel/osrelease", rel, sizeof(rel)) > 0 &&
		    sscanf(rel, "%d.%d", &maj, &min) == 2)
			ctx->kernel_version = maj * 1000 + min;
	}
	const char *filter = o.backends ? o.backends : getenv("COH_BACKENDS");
	filter_warn_unknown(ctx, filter);

	for (unsigned i = 0; i < coh_builtin_backend_count; i++) {
		const struct coh_backend_ops *ops = coh_builtin_backends[i];
		int v = coh_backend_validate(ops);
		if (v) {
			coh_err(ctx, "backend #%u (%s) refused: %s", i, ops && ops->name ? ops->name : "?",
				strerror(-v));
			continue;
		}
		if (!filter_keeps(filter, ops->name)) {
			coh_info(ctx, "backend %s: filtered out", ops->name);
			continue;
		}
		if (ctx->nslots == (int)(sizeof(ctx->slots) / sizeof(ctx->slots[0])))
			break;
		struct coh_backend_slot *slot = &ctx->slots[ctx->nslots++];
		slot->note[0] = '\0';
		memset(&slot->table, 0, sizeof(slot->table));
		memcpy(&slot->table, ops, ops->size);   /* validated: size <= sizeof */
		slot->orig = ops;
		slot->ops = &slot->table;
		ops = slot->ops;
		int before = ctx->ntargets;
		int r = ops->discover(ctx, &slot->priv);
		if (r < 0) {
			coh_warn(ctx, "backend %s: discovery failed: %s", ops->name, strerror(-r));
			/* drop what it added before failing, then the backend */
			for (int t = before; t < ctx->ntargets; t++) {
				coh_target *tg = ctx->targets[t];
				if (ops->target_fini)
					ops->target_fini(tg, tg->d.priv);
				free(tg);
			}
			ctx->ntargets = before;
			ops->fini(ctx, slot->priv);
			ctx->nslots--;
			continue;
		}
		coh_info(ctx, "backend %s: %d target(s)", ops->name, ctx->ntargets - before);
	}
	coh_targets_describe_nodes(ctx);
	coh_targets_validate(ctx);
	coh_fork_register(ctx);
	*out = ctx;
	return 0;
fail:
	context_free(ctx);
	return err;
}

coh_context *coh_context_ref(coh_context *ctx)
{
	if (ctx)
		atomic_fetch_add(&ctx->refs, 1);
	return ctx;
}

void coh_context_unref(coh_context *ctx)
{
	if (ctx && atomic_fetch_sub(&ctx->refs, 1) == 1)
		context_free(ctx);
}

int coh_context_set_log(coh_context *ctx, coh_log_fn fn, void *data)
{
	if (!ctx)
		return -EINVAL;
	pthread_mutex_lock(&ctx->log_lock);
	ctx->log_fn = fn;
	ctx->log_data = data;
	pthread_mutex_unlock(&ctx->log_lock);
	return 0;
}

int coh_context_set_log_level(coh_context *ctx, int level)
{
	if (!ctx || level < COH_LOG_NONE || level > COH_LOG_DEBUG)
		return -EINVAL;
	ctx->log_level = level;
	return 0;
}

int coh_context_get_log_level(const coh_context *ctx)
{
	return ctx ? ctx->log_level : -EINVAL;
}

int coh_context_is_replay(const coh_context *ctx)
{
	return ctx ? ctx->replay : -EINVAL;
}

bool coh_ctx_replay(const coh_context *ctx)
{
	return ctx->replay;
}

size_t coh_ctx_page_size(const coh_context *ctx)
{
	return ctx->page_size;
}

void coh_backend_note(coh_context *ctx, const char *fmt, ...)
{
	if (!ctx || ctx->nslots == 0)
		return;
	struct coh_backend_slot *slot = &ctx->slots[ctx->nslots - 1];   /* the one discovering */
	char line[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	size_t used = strlen(slot->note);
	/* one line more; a line that does not fit whole is left out */
	if (used + (used ? 1 : 0) + strlen(line) < sizeof(slot->note))
		snprintf(slot->note + used, sizeof(slot->note) - used, "%s%s", used ? "\n" : "", line);
	coh_info(ctx, "backend %s: %s", slot->ops->name, line);
}

int coh_backend_status(const coh_context *ctx, const char *backend, char *buf, size_t len)
{
	if (!ctx || !backend || (!buf && len))
		return -EINVAL;
	for (int i = 0; i < ctx->nslots; i++) {
		const struct coh_backend_slot *slot = &ctx->slots[i];
		if (strcmp(slot->ops->name, backend))
			continue;
		if (len)
			snprintf(buf, len, "%s", slot->note);
		int n = 0;
		for (int t = 0; t < ctx->ntargets; t++)
			n += ctx->targets[t]->slot == slot;
		return n;
	}
	return -ENOENT;
}

int coh_context_backends(const coh_context *ctx, char *buf, size_t len)
{
	if (!ctx || (!buf && len))
		return -EINVAL;
	size_t used = 0;
	for (int i = 0; i < ctx->nslots; i++) {
		const char *name = ctx->slots[i].ops->name;
		size_t n = strlen(name) + (i ? 1 : 0);
		if (used < len)
			snprintf(buf + used, len - used, "%s%s", i ? "," : "", name);
		used += n;
	}
	if (len && used == 0)
		buf[0] = '\0';
	return (int)used;
}
