/* SPDX-License-Identifier: MIT */
/*
 * cohctl — inspect what libcoherent sees on this machine.
 *
 *   cohctl [--fsroot DIR] [--backends LIST] [--tunables LIST] [-v] devices [--json]
 *   cohctl [--fsroot DIR] check [--json]
 *   cohctl query PID ADDR LEN [--json]
 *   cohctl bench [--quick] [alloc|lookup|query|fork|pool|cxl|nvidia]
 *   cohctl version
 */
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "bench.h"
#include "kconfig_reqs.h"
#include "coherent.h"

static const char *opt_fsroot, *opt_backends, *opt_tunables;
static int opt_verbose;

static void usage(FILE *f)
{
	fprintf(f, "usage: cohctl [--fsroot DIR] [--backends LIST] [--tunables KEY=VALUE,...] [-v] COMMAND\n"
		   "  devices [--json]          memory targets and their capabilities\n"
		   "  check [--json]            can this kernel/driver serve each backend, what is missing\n"
		   "  query PID ADDR LEN [--json]  residency of a range of a process (PID 0: cohctl)\n"
		   "  bench [--quick] [SUITE]   run the benchmark suites (alloc, lookup, query, fork, pool, cxl, nvidia, queue)\n"
		   "  version\n");
}

/* The symbolic name of an errno value, for messages a script can match. */
static const char *errno_name(int e)
{
	switch (e < 0 ? -e : e) {
	case ENOENT: return "ENOENT";
	case ENOTDIR: return "ENOTDIR";
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EINVAL: return "EINVAL";
	case ENOMEM: return "ENOMEM";
	case ENAMETOOLONG: return "ENAMETOOLONG";
	case ELOOP: return "ELOOP";
	case EIO: return "EIO";
	default: return "errno";
	}
}

/* Library messages to stderr, errors always (a command line tool says why it failed). */
static void log_stderr(void *data, int level, const char *msg)
{
	(void)data;
	static const char *const names[] = { "none", "err", "warn", "info", "debug" };
	fprintf(stderr, "libcoherent: %s: %s\n", names[level >= 0 && level <= COH_LOG_DEBUG ? level : 0], msg);
}

static int open_ctx(coh_context **ctx)
{
	int level = opt_verbose ? COH_LOG_DEBUG : getenv("COH_LOG") ? -1 : COH_LOG_ERR;
	struct coh_context_options o = { .size = sizeof(o), .backends = opt_backends, .fsroot = opt_fsroot,
					 .log_level = level, .log_fn = log_stderr, .tunables = opt_tunables };
	int e = coh_context_create(&o, ctx);
	if (e) {
		const char *root = opt_fsroot ? opt_fsroot : getenv("COH_FSROOT");
		fprintf(stderr, "cohctl: cannot create a context%s%s: %s (%s)\n", root ? " for fsroot " : "",
			root ? root : "", errno_name(e), strerror(-e));
	}
	return e;
}

static void json_str(const char *s)
{
	putchar('"');
	for (; s && *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void caps_string(uint64_t caps, char *buf, size_t len)
{
	buf[0] = '\0';
	size_t used = 0;
	for (int b = 0; b < 64; b++) {
		const char *n = coh_cap_name(1ull << b);
		if (!(caps & (1ull << b)) || !n)
			continue;
		int w = snprintf(buf + used, len - used, "%s%s", used ? "," : "", n);
		if (w < 0 || (size_t)w >= len - used)
			break;
		used += (size_t)w;
	}
}

/* ", "key": N" or null when the figure is 0 (unknown, not provided). */
static void json_figure(const char *key, uint32_t v)
{
	printf(", \"%s\": ", key);
	v ? printf("%u", v) : printf("null");
}

static const char *cache_indexing(int v)
{
	return v == 0 ? "direct-mapped" : v == 1 ? "indexed" : v == 2 ? "other" : "unknown";
}

static const char *cache_policy(int v)
{
	return v == 0 ? "write-back" : v == 1 ? "write-through" : v == 2 ? "other" : "unknown";
}

/* ---------------- devices ---------------- */

static const char *memory_model_name(int m)
{
	static const char *const names[] = { "unknown", "node", "hmm", "svm", "managed", "devdax" };
	return m >= 0 && m < (int)(sizeof(names) / sizeof(names[0])) ? names[m] : "unknown";
}

/* The device identity (coh_target_device) as a JSON object. */
static void json_device(const coh_target *t)
{
	struct coh_device_info d = { .size = sizeof(d) };
	if (coh_target_device(t, &d)) {
		printf("null");
		return;
	}
	printf("{\"memory_model\": ");
	json_str(memory_model_name(d.memory_model));
	printf(", \"gpu_id\": ");
	(d.status & COH_DEVICE_HAS_GPU_ID) ? printf("%u", d.gpu_id) : printf("null");
	printf(", \"uuid\": ");
	if (d.status & COH_DEVICE_HAS_UUID) {
		printf("\"");
		for (int i = 0; i < 16; i++)
			printf("%s%02x", i == 4 || i == 6 || i == 8 || i == 10 ? "-" : "", d.uuid[i]);
		printf("\"");
	} else {
		printf("null");
	}
	printf(", \"verified_on_hardware\": %s, \"access\": ", (d.status & COH_DEVICE_UNVERIFIED) ? "false" : "true");
	json_str(d.access_note);
	printf("}");
}

static int cmd_devices(int argc, char **argv)
{
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	coh_context *ctx;
	int e = open_ctx(&ctx);
	if (e)
		return 1;
	coh_target *t;
	if (json) {
		printf("{\n  \"version\": \"%s\",\n  \"replay\": %s,\n  \"targets\": [", coh_version_string(),
		       coh_context_is_replay(ctx) ? "true" : "false");
		int i = 0;
		coh_target_foreach(ctx, t) {
			uint64_t total = 0, free_b = 0;
			int te = coh_target_capacity(t, &total, NULL);
			int fe = coh_target_capacity(t, NULL, &free_b);
			printf("%s\n    {\"name\": ", i++ ? "," : "");
			json_str(coh_target_name(t));
			printf(", \"backend\": ");
			json_str(coh_target_backend(t));
			printf(", \"kind\": ");
			json_str(coh_target_kind_name(coh_target_kind(t)));
			printf(", \"vendor\": ");
			json_str(coh_target_vendor(t));
			printf(", \"model\": ");
			json_str(coh_target_model(t));
			printf(", \"pci_address\": ");
			if (coh_target_pci_address(t))
				json_str(coh_target_pci_address(t));
			else
				printf("null");
			printf(", \"pci_name\": ");
			if (coh_target_pci_name(t))
				json_str(coh_target_pci_name(t));
			else
				printf("null");
			int node = coh_target_numa_node(t);
			printf(", \"numa_node\": ");
			node >= 0 ? printf("%d", node) : printf("null");
			printf(", \"total_bytes\": ");
			te == 0 ? printf("%" PRIu64, total) : printf("null");
			printf(", \"free_bytes\": ");
			fe == 0 ? printf("%" PRIu64, free_b) : printf("null");
			printf(", \"persistent\": %s", coh_target_persistent(t) == 1 ? "true" : "false");
			printf(", \"device\": ");
			json_device(t);
			int tier = coh_target_memory_tier(t);
			printf(", \"memory_tier\": ");
			tier >= 0 ? printf("%d", tier) : printf("null");
			printf(", \"capabilities\": [");
			uint64_t caps = coh_target_caps(t);
			int c = 0;
			for (int b = 0; b < 64; b++)
				if ((caps & (1ull << b)) && coh_cap_name(1ull << b)) {
					printf("%s", c++ ? ", " : "");
					json_str(coh_cap_name(1ull << b));
				}
			printf("], \"distances\": {");
			coh_target *u;
			c = 0;
			coh_target_foreach(ctx, u) {
				int d = coh_target_distance(t, u);
				if (d >= 0)
					printf("%s\"%s\": %d", c++ ? ", " : "", coh_target_name(u), d);
			}
			printf("}, \"access\": [");
			c = 0;
			for (unsigned cls = 0; cls < 2; cls++) {
				struct coh_access a = { .size = sizeof(a) };
				if (coh_target_access(t, cls, &a))
					continue;
				/* 0 is "not provided" (HMAT): null, as hwloc shows nothing */
				printf("%s{\"class\": %u", c++ ? ", " : "", cls);
				json_figure("read_bandwidth_MBps", a.read_bandwidth);
				json_figure("write_bandwidth_MBps", a.write_bandwidth);
				json_figure("read_latency_ns", a.read_latency);
				json_figure("write_latency_ns", a.write_latency);
				printf(", \"initiators\": [");
				int init[1024];
				int ni = coh_target_initiators(t, cls, init, 1024);
				for (int k = 0; k < ni && k < 1024; k++)
					printf("%s%d", k ? ", " : "", init[k]);
				printf("]}");
			}
			printf("], \"memory_side_caches\": [");
			struct coh_memory_cache mc = { .size = sizeof(mc) };
			for (unsigned k = 0; coh_target_memory_cache(t, k, &mc) == 0; k++) {
				printf("%s{\"level\": %u, \"size_bytes\": %" PRIu64, k ? ", " : "", mc.level,
				       mc.cache_bytes);
				json_figure("line_size", mc.line_size);
				printf(", \"indexing\": ");
				json_str(cache_indexing(mc.indexing));
				printf(", \"write_policy\": ");
				json_str(cache_policy(mc.write_policy));
				printf("}");
			}
			printf("]}");
		}
		printf("\n  ],\n  \"backends\": [");
		char names[256], note[2048];
		coh_context_backends(ctx, names, sizeof(names));
		int k = 0;
		for (char *sv, *b = strtok_r(names, ",", &sv); b; b = strtok_r(NULL, ",", &sv)) {
			int nt = coh_backend_status(ctx, b, note, sizeof(note));
			printf("%s\n    {\"name\": ", k++ ? "," : "");
			json_str(b);
			printf(", \"targets\": %d, \"note\": ", nt);
			json_str(note);
			printf("}");
		}
		printf("\n  ]\n}\n");
	} else {
		printf("%-16s %-8s %-16s %5s %12s %12s %4s  %s\n", "TARGET", "BACKEND", "KIND", "NODE", "TOTAL",
		       "FREE", "TIER", "CAPABILITIES");
		coh_target_foreach(ctx, t) {
			uint64_t total = 0, free_b = 0;
			char tb[32], fb[32], caps[512], tier[16];
			int te = coh_target_capacity(t, &total, NULL);
			int fe = coh_target_capacity(t, NULL, &free_b);
			if (te == 0)
				snprintf(tb, sizeof(tb), "%.1f GiB", (double)total / (1 << 30));
			else
				snprintf(tb, sizeof(tb), "unknown");
			if (fe == 0)
				snprintf(fb, sizeof(fb), "%.1f GiB", (double)free_b / (1 << 30));
			else
				snprintf(fb, sizeof(fb), "-");
			int tr = coh_target_memory_tier(t);
			if (tr >= 0)
				snprintf(tier, sizeof(tier), "%d", tr);
			else
				snprintf(tier, sizeof(tier), "-");
			caps_string(coh_target_caps(t), caps, sizeof(caps));
			char node[16] = "-";
			if (coh_target_numa_node(t) >= 0)
				snprintf(node, sizeof(node), "%d", coh_target_numa_node(t));
			printf("%-16s %-8s %-16s %5s %12s %12s %4s  %s\n", coh_target_name(t), coh_target_backend(t),
			       coh_target_kind_name(coh_target_kind(t)), node, tb, fb, tier, caps);
			if (coh_target_kind(t) != COH_KIND_HOST_NODE)
				printf("%-16s %s: %s\n", "", coh_target_vendor(t), coh_target_model(t));
			struct coh_device_info di = { .size = sizeof(di) };
			if (coh_target_device(t, &di) == 0 && (di.status & COH_DEVICE_UNVERIFIED))
				printf("%-16s this backend's path for it has never run on real hardware\n", "");
			if (coh_target_pci_address(t))
				printf("%-16s pci %s %s\n", "", coh_target_pci_address(t),
				       coh_target_pci_name(t) ? coh_target_pci_name(t) : "");
			struct coh_memory_cache mc = { .size = sizeof(mc) };
			for (unsigned k = 0; coh_target_memory_cache(t, k, &mc) == 0; k++) {
				char line[32] = "";
				if (mc.line_size)
					snprintf(line, sizeof(line), ", %u-byte lines", mc.line_size);
				printf("%-16s memory-side cache L%u: %.1f GiB%s, %s, %s\n", "", mc.level,
				       (double)mc.cache_bytes / (1 << 30), line, cache_indexing(mc.indexing),
				       cache_policy(mc.write_policy));
			}
		}
		if (coh_target_count(ctx) == 0)
			printf("(no targets)\n");
		/* backends with something to say: what they found, or why nothing */
		char names[256], note[2048];
		coh_context_backends(ctx, names, sizeof(names));
		for (char *sv, *b = strtok_r(names, ",", &sv); b; b = strtok_r(NULL, ",", &sv)) {
			if (coh_backend_status(ctx, b, note, sizeof(note)) < 0 || !note[0])
				continue;
			for (char *lv, *l = strtok_r(note, "\n", &lv); l; l = strtok_r(NULL, "\n", &lv))
				printf("backend %-8s %s\n", b, l);
		}
	}
	coh_context_unref(ctx);
	return 0;
}

/* ---------------- check ---------------- */

static int rootfd = -1;

static int root_open(const char *path)
{
	while (*path == '/')
		path++;
	/* O_NONBLOCK and regular files or folders only: a FIFO in a tree must not hang */
	int fd = openat(rootfd, path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) < 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)))) {
		close(fd);
		errno = EINVAL;
		return -1;
	}
	return fd;
}

static bool root_exists(const char *path)
{
	while (*path == '/')
		path++;
	return faccessat(rootfd, path, F_OK, 0) == 0;
}

static bool root_has_entries(const char *path, const char *prefix)
{
	int fd = root_open(path);
	if (fd < 0)
		return false;
	bool found = false;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return false;
	}
	struct dirent *de;
	while (!found && (de = readdir(d)))
		if (!strncmp(de->d_name, prefix, strlen(prefix)) &&
		    (!*prefix || (de->d_name[strlen(prefix)] >= '0' && de->d_name[strlen(prefix)] <= '9')))
			found = true;   /* "node" + id, "dax" + id: not "node_possible" */
	closedir(d);
	return found;
}

static char *kconfig;   /* whole kernel config text, NULL when not found */
static char kconfig_src[256];

/* The running kernel's config: /proc/config.gz, else /boot/config-$(uname -r).
 * zlib reads plain files transparently, so one loop serves both. */
static void load_kconfig(void)
{
	char rel[128] = "", path[200] = "/proc/config.gz";
	int fd = root_open(path);
	if (fd < 0) {
		int rf = root_open("/proc/sys/kernel/osrelease");
		if (rf >= 0) {
			ssize_t n = read(rf, rel, sizeof(rel) - 1);
			close(rf);
			rel[n > 0 ? n : 0] = '\0';
			rel[strcspn(rel, "\n")] = '\0';
		}
		snprintf(path, sizeof(path), "/boot/config-%s", rel);
		fd = root_open(path);
	}
	if (fd < 0)
		return;
	gzFile g = gzdopen(fd, "rb");
	if (!g) {
		close(fd);
		return;
	}
	size_t cap = 1 << 20, len = 0;
	char *buf = malloc(cap);
	int n;
	while (buf && (n = gzread(g, buf + len, (unsigned)(cap - len - 1))) > 0) {
		len += (size_t)n;
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap * 2);
			if (!nb)
				break;
			buf = nb;
			cap *= 2;
		}
	}
	gzclose(g);
	if (!buf || len == 0) {
		free(buf);
		return;
	}
	buf[len] = '\0';
	kconfig = buf;
	snprintf(kconfig_src, sizeof(kconfig_src), "%s", path);
}

/* 'y', 'm', 'n' (not set) or '?' (no config to read) */
static char kconf(const char *sym)
{
	if (!kconfig)
		return '?';
	char key[96];
	snprintf(key, sizeof(key), "\n%s=", sym);
	const char *p = strstr(kconfig, key);
	if (!p)
		return 'n';
	return p[strlen(key)];
}

struct req {
	const char *what;
	bool required;
	int ok;              /* 1 ok, 0 missing, -1 unknown */
	char detail[160];
};

static void req_kconf(struct req *r, const char *sym, bool required, bool module_ok)
{
	char v = kconf(sym);
	r->what = sym;
	r->required = required;
	r->ok = v == '?' ? -1 : (v == 'y' || (module_ok && v == 'm'));
	snprintf(r->detail, sizeof(r->detail), "%s", v == '?' ? "no kernel config to read" :
		 v == 'y' ? "=y" : v == 'm' ? "=m" : "not set");
}

static void req_path(struct req *r, const char *what, const char *path, bool required)
{
	r->what = what;
	r->required = required;
	r->ok = root_exists(path);
	snprintf(r->detail, sizeof(r->detail), "%s %s", path, r->ok ? "present" : "absent");
}

static void req_dir(struct req *r, const char *what, const char *dir, const char *prefix, bool required)
{
	r->what = what;
	r->required = required;
	r->ok = root_has_entries(dir, prefix);
	snprintf(r->detail, sizeof(r->detail), "%s/%s* %s", dir, prefix, r->ok ? "found" : "none");
}

static void req_lib(struct req *r, const char *lib, bool replay)
{
	r->what = lib;
	r->required = true;
	if (replay) {
		r->ok = -1;
		snprintf(r->detail, sizeof(r->detail), "not checked in replay mode");
		return;
	}
	void *h = dlopen(lib, RTLD_LAZY | RTLD_LOCAL);
	r->ok = h != NULL;
	snprintf(r->detail, sizeof(r->detail), "%s", h ? "loadable" : "cannot be loaded");
	if (h)
		dlclose(h);
}

static int cmd_check(int argc, char **argv)
{
	bool json = argc > 1 && !strcmp(argv[1], "--json");
	const char *root = opt_fsroot ? opt_fsroot : getenv("COH_FSROOT");
	if (!root || !*root)
		root = "/";
	rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (rootfd < 0) {
		int e = errno;
		fprintf(stderr, "cohctl: fsroot %s: %s (%s)\n", root, errno_name(e), strerror(e));
		return 1;
	}
	char real[4096];
	bool replay = !(realpath(root, real) && !strcmp(real, "/"));
	/* as for devices: a replay root that is no recorded machine is an error */
	int nd = replay ? openat(rootfd, "sys/devices/system/node", O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
	if (replay && nd < 0) {
		int e = errno;
		fprintf(stderr, "cohctl: fsroot %s: %s/sys/devices/system/node: %s (%s): not a recorded machine\n",
			root, root, errno_name(e), strerror(e));
		close(rootfd);
		return 1;
	}
	if (nd >= 0)
		close(nd);
	load_kconfig();

	/* which backends this build has (a context without filter) */
	char built[256] = "";
	coh_context *ctx;
	struct coh_context_options o = { .size = sizeof(o), .backends = "", .fsroot = root, .log_level = -1 };
	if (coh_context_create(&o, &ctx) == 0) {
		coh_context_backends(ctx, built, sizeof(built));
		coh_context_unref(ctx);
	}

	static const char *const names[] = { "host", "hmmtest", "nvidia", "cxl", "amd" };
	struct req reqs[5][16];
	int nreq[5] = { 0 };
	memset(reqs, 0, sizeof(reqs));
	/* kernel options: kernel/configs/<backend>.config, compiled in */
	for (size_t k = 0; k < sizeof(kreqs) / sizeof(kreqs[0]); k++)
		for (int b = 0; b < 5; b++)
			if (!strcmp(kreqs[k].backend, names[b]) && nreq[b] < 16)
				req_kconf(&reqs[b][nreq[b]++], kreqs[k].symbol, kreqs[k].required, kreqs[k].module_ok);
	/* what the running system must show */
	/* any node: node 0 can be offline */
	req_dir(&reqs[0][nreq[0]++], "NUMA nodes in sysfs", "/sys/devices/system/node", "node", false);
	req_path(&reqs[0][nreq[0]++], "pagemap", "/proc/self/pagemap", true);
	req_path(&reqs[1][nreq[1]++], "test_hmm device", "/dev/hmm_dmirror0", true);
	req_path(&reqs[1][nreq[1]++], "test_hmm coherent device", "/dev/hmm_dmirror2", false);
	req_path(&reqs[2][nreq[2]++], "UVM device", "/dev/nvidia-uvm", true);
	req_path(&reqs[2][nreq[2]++], "NVIDIA driver", "/proc/driver/nvidia/version", true);
	req_lib(&reqs[2][nreq[2]++], "libcuda.so.1", replay);
	req_dir(&reqs[3][nreq[3]++], "device-dax devices", "/sys/bus/dax/devices", "dax", true);
	req_dir(&reqs[3][nreq[3]++], "CXL memory devices", "/sys/bus/cxl/devices", "mem", false);
	req_path(&reqs[4][nreq[4]++], "KFD device", "/dev/kfd", true);
	req_dir(&reqs[4][nreq[4]++], "KFD topology", "/sys/class/kfd/kfd/topology/nodes", "", true);

	if (json)
		printf("{\n  \"kernel_config\": %s%s%s,\n  \"backends\": [", kconfig ? "\"" : "",
		       kconfig ? kconfig_src : "null", kconfig ? "\"" : "");
	else
		printf("kernel config: %s\n\n", kconfig ? kconfig_src : "not found (/proc/config.gz, /boot/config-*)");
	for (int b = 0; b < 5; b++) {
		char key[32];
		snprintf(key, sizeof(key), ",%s,", names[b]);
		char blist[260];
		snprintf(blist, sizeof(blist), ",%s,", built);
		bool compiled = strstr(blist, key) != NULL;
		int missing = 0, unknown = 0;
		for (int i = 0; i < nreq[b]; i++) {
			if (reqs[b][i].required && reqs[b][i].ok == 0)
				missing++;
			if (reqs[b][i].required && reqs[b][i].ok < 0)
				unknown++;
		}
		const char *verdict = missing ? "missing" : unknown ? "unknown" : "ready";
		if (json) {
			printf("%s\n    {\"backend\": \"%s\", \"compiled\": %s, \"status\": \"%s\", \"requirements\": [",
			       b ? "," : "", names[b], compiled ? "true" : "false", verdict);
			for (int i = 0; i < nreq[b]; i++) {
				printf("%s{\"what\": ", i ? ", " : "");
				json_str(reqs[b][i].what);
				printf(", \"required\": %s, \"ok\": %s, \"detail\": ", reqs[b][i].required ? "true" : "false",
				       reqs[b][i].ok < 0 ? "null" : reqs[b][i].ok ? "true" : "false");
				json_str(reqs[b][i].detail);
				printf("}");
			}
			printf("]}");
		} else {
			printf("%-8s %-8s (%s in this build)\n", names[b], verdict,
			       compiled ? "compiled" : "not compiled");
			for (int i = 0; i < nreq[b]; i++)
				printf("    [%s] %-26s %s%s\n",
				       reqs[b][i].ok > 0 ? "ok" : reqs[b][i].ok < 0 ? "??" : "--", reqs[b][i].what,
				       reqs[b][i].detail, reqs[b][i].required ? "" : " (optional)");
		}
	}
	if (json)
		printf("\n  ]\n}\n");
	free(kconfig);
	close(rootfd);
	return 0;
}

/* ---------------- query ---------------- */

static int cmd_query(int argc, char **argv)
{
	if (argc < 4) {
		usage(stderr);
		return 2;
	}
	bool json = argc > 4 && !strcmp(argv[4], "--json");
	char *end;
	long pid = strtol(argv[1], &end, 10);
	if (*end || pid < 0) {
		fprintf(stderr, "cohctl: bad PID '%s'\n", argv[1]);
		return 2;
	}
	unsigned long long addr = strtoull(argv[2], &end, 0);
	if (*end) {
		fprintf(stderr, "cohctl: bad address '%s'\n", argv[2]);
		return 2;
	}
	unsigned long long len = strtoull(argv[3], &end, 0);
	if (*end && (end[1] || !strchr("kKmMgG", *end))) {
		fprintf(stderr, "cohctl: bad length '%s'\n", argv[3]);
		return 2;
	}
	if (*end)
		len <<= (*end == 'k' || *end == 'K') ? 10 : (*end == 'm' || *end == 'M') ? 20 : 30;
	coh_context *ctx;
	if (open_ctx(&ctx))
		return 1;
	struct coh_extent ext[256];
	uintptr_t cur = (uintptr_t)addr, stop = (uintptr_t)(addr + len);
	int rc = 0, first = 1;
	if (json)
		printf("{\"pid\": %ld, \"extents\": [", pid);
	else
		printf("%-18s %-18s %12s %-16s %5s %s\n", "START", "END", "BYTES", "KIND", "NODE", "TARGET");
	while (cur < stop) {
		int n = coh_query_pid(ctx, (pid_t)pid, (void *)cur, stop - cur, ext, 256, sizeof(struct coh_extent));
		if (n < 0) {
			fprintf(stderr, "cohctl: query: %s\n", coh_strerror(n));
			rc = 1;
			break;
		}
		for (int i = 0; i < n; i++) {
			const struct coh_extent *x = &ext[i];
			const char *tn = x->target ? coh_target_name(x->target) : NULL;
			if (json) {
				printf("%s\n  {\"start\": \"0x%" PRIxPTR "\", \"length\": %zu, \"kind\": \"%s\", \"node\": %d, "
				       "\"target\": ",
				       first ? "" : ",", x->start, x->length, coh_mem_kind_name(x->kind), x->node);
				tn ? json_str(tn) : (void)printf("null");
				printf("}");
			} else {
				printf("0x%016" PRIxPTR " 0x%016" PRIxPTR " %12zu %-16s %5d %s\n", x->start,
				       x->start + x->length, x->length, coh_mem_kind_name(x->kind), x->node, tn ? tn : "-");
			}
			first = 0;
		}
		if (n == 0)
			break;
		cur = ext[n - 1].start + ext[n - 1].length;
	}
	if (json)
		printf("\n]}\n");
	coh_context_unref(ctx);
	return rc;
}

/* ---------------- bench ---------------- */

static void bench_progress(const char *msg)
{
	fprintf(stderr, "cohctl bench: %s\n", msg);
}

static int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = { .progress = bench_progress };
	const char *suite = NULL;
	bool md = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick"))
			o.quick = true;
		else if (!strcmp(argv[i], "--markdown"))
			md = true;
		else
			suite = argv[i];
	}
	struct bench_result r[64];
	int n = bench_run(suite, &o, r, 64);
	if (n < 0) {
		fprintf(stderr, "cohctl bench: %s\n", n == -ENOENT ? "no such suite" : coh_strerror(n));
		return 1;
	}
	bench_print(r, n, md);
	return 0;
}

int main(int argc, char **argv)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-'; i++) {
		if (!strcmp(argv[i], "--fsroot") && i + 1 < argc)
			opt_fsroot = argv[++i];
		else if (!strcmp(argv[i], "--backends") && i + 1 < argc)
			opt_backends = argv[++i];
		else if (!strcmp(argv[i], "--tunables") && i + 1 < argc)
			opt_tunables = argv[++i];
		else if (!strcmp(argv[i], "-v"))
			opt_verbose = 1;
		else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (i >= argc) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[i];
	argc -= i;
	argv += i;
	if (!strcmp(cmd, "devices"))
		return cmd_devices(argc, argv);
	if (!strcmp(cmd, "check"))
		return cmd_check(argc, argv);
	if (!strcmp(cmd, "query"))
		return cmd_query(argc, argv);
	if (!strcmp(cmd, "bench"))
		return cmd_bench(argc, argv);
	if (!strcmp(cmd, "version")) {
		printf("cohctl %s (libcoherent %s)\n", COH_VERSION_STRING, coh_version_string());
		return 0;
	}
	fprintf(stderr, "cohctl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
