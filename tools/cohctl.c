/* SPDX-License-Identifier: MIT */
/*
 * cohctl — inspect what libcoherent sees on this machine.
 *
 *   cohctl [--fsroot DIR] [--backends LIST] [--tunables LIST] [-v] devices [--json]
 *   cohctl [--fsroot DIR] check [--json]
 *   cohctl query PID ADDR LEN [--json]
 *   cohctl query PID ADDR LEN --watch [--interval MS] [--count N] [--json]
 *   cohctl bench [--quick] [alloc|lookup|query|fork|pool|cxl|nvidia|queue] [--plot FILE.svg]
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
#include <strings.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
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
		   "  query PID ADDR LEN --watch [--interval MS] [--count N] [--json]\n"
		   "                            the same refreshed (every 1000 ms): pages per target and a page map,\n"
		   "                            until Ctrl-C, N refreshes or the process exits\n"
		   "  bench [--quick] [SUITE] [--plot FILE.svg]\n"
		   "                            run the benchmark suites (alloc, lookup, query, fork, pool, cxl, nvidia,\n"
		   "                            queue); --plot also draws the rows as an SVG bar chart\n"
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
	/* the marker of kernel/patches (6.1, 6.12): a CoW fault keeps a coherent page on the device */
	req_path(&reqs[1][nreq[1]++], "patch: CoW stays on device", "/sys/module/test_hmm/parameters/cow_on_device",
		 false);
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

/* A whole decimal (base 10) or C-style (base 0) unsigned number, no sign,
 * no blank, no junk after it; *suffix, when given, takes one trailing
 * letter instead. */
static bool parse_u64(const char *s, int base, unsigned long long *v, char *suffix)
{
	if (!*s || !((*s >= '0' && *s <= '9')))
		return false;
	char *end;
	errno = 0;
	*v = strtoull(s, &end, base);
	if (errno || end == s)
		return false;
	if (suffix) {
		*suffix = *end;
		return !*end || !end[1];
	}
	return !*end;
}

/* The range to look at: PID ADDR LEN, LEN with an optional k, m or g. */
static bool parse_range(char **argv, long *pid, uintptr_t *addr, uintptr_t *len)
{
	unsigned long long p, a, l;
	char sfx;
	if (!parse_u64(argv[1], 10, &p, NULL) || p > 0x7fffffff) {
		fprintf(stderr, "cohctl: bad PID '%s'\n", argv[1]);
		return false;
	}
	if (!parse_u64(argv[2], 0, &a, NULL) || a > UINTPTR_MAX) {
		fprintf(stderr, "cohctl: bad address '%s'\n", argv[2]);
		return false;
	}
	int shift = -1;
	if (parse_u64(argv[3], 0, &l, &sfx))
		shift = !sfx ? 0 : strchr("kK", sfx) ? 10 : strchr("mM", sfx) ? 20 : strchr("gG", sfx) ? 30 : -1;
	if (shift < 0 || l > (UINTPTR_MAX >> shift) || (l << shift) > UINTPTR_MAX - a) {
		fprintf(stderr, "cohctl: bad length '%s' (bytes, k, m or g; the range must not wrap)\n", argv[3]);
		return false;
	}
	*pid = (long)p;
	*addr = (uintptr_t)a;
	*len = (uintptr_t)(l << shift);
	return true;
}

static int query_once(long pid, uintptr_t addr, uintptr_t len, bool json)
{
	coh_context *ctx;
	if (open_ctx(&ctx))
		return 1;
	struct coh_extent ext[256];
	uintptr_t cur = addr, stop = addr + len;
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

/* --watch: the range tallied per target at every refresh.  Categories:
 * the three below, then one per target (coh_target_index() + W_TARGET0),
 * so a target keeps its map letter for the whole watch. */
enum { W_NOT_PRESENT, W_UNKNOWN, W_UNMAPPED, W_TARGET0 };
#define W_MAX_COLS 1024

struct watch {
	coh_context *ctx;
	long pid;
	unsigned long long start_time;   /* of the process, to see it exit (or its PID reused) */
	uintptr_t base;                  /* the range widened to whole pages */
	uint64_t npages, page;
	int ncat;
	uint64_t *pages;                 /* [ncat] */
	uint64_t *cols;                  /* [W_MAX_COLS][ncat] */
	int ncols;
	bool json, tty;
	unsigned long long count, interval_ms;
};

/* Start time of the process (clock ticks after boot), 0 once it is gone or a zombie. */
static unsigned long long proc_start_time(long pid)
{
	const char *root = opt_fsroot ? opt_fsroot : getenv("COH_FSROOT");
	char path[4200], buf[1024];
	snprintf(path, sizeof(path), "%s/proc/%ld/stat", root ? root : "", pid ? pid : (long)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'), state;
	unsigned long long t;
	/* fields 3 (state) to 22 (starttime) of proc(5) */
	if (!p || sscanf(p + 1, " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
			 &state, &t) != 2)
		return 0;
	return state == 'Z' || state == 'X' ? 0 : t ? t : 1;
}

static char watch_mark(int cat)
{
	static const char fixed[] = ".?-";
	if (cat < W_TARGET0)
		return fixed[cat];
	return cat - W_TARGET0 < 26 ? (char)('A' + cat - W_TARGET0) : '#';
}

static const char *watch_cat_name(const struct watch *w, int cat)
{
	static const char *const fixed[] = { "not present", "unknown", "unmapped" };
	return cat < W_TARGET0 ? fixed[cat] : coh_target_name(coh_target_get(w->ctx, (unsigned)(cat - W_TARGET0)));
}

static int watch_category(const struct coh_extent *x)
{
	if (x->target && coh_target_index(x->target) >= 0)
		return W_TARGET0 + coh_target_index(x->target);
	if (x->kind == COH_MEM_UNMAPPED)
		return W_UNMAPPED;
	if (x->kind == COH_MEM_NOT_POPULATED || x->kind == COH_MEM_SWAPPED)
		return W_NOT_PRESENT;
	return W_UNKNOWN;
}

/* First page of column c: columns split the pages as evenly as whole pages allow. */
static uint64_t watch_col_first(const struct watch *w, int c)
{
	return (uint64_t)((unsigned __int128)w->npages * (unsigned)c / (unsigned)w->ncols);
}

/* Counts pages [p0, p1) of category cat, in total and per map column. */
static void watch_add(struct watch *w, uint64_t p0, uint64_t p1, int cat)
{
	w->pages[cat] += p1 - p0;
	int c = (int)((unsigned __int128)p0 * (unsigned)w->ncols / w->npages);
	while (c + 1 < w->ncols && watch_col_first(w, c + 1) <= p0)
		c++;
	for (; c < w->ncols && watch_col_first(w, c) < p1; c++) {
		uint64_t lo = watch_col_first(w, c), hi = watch_col_first(w, c + 1);
		lo = lo > p0 ? lo : p0;
		hi = hi < p1 ? hi : p1;
		w->cols[(size_t)c * (size_t)w->ncat + (size_t)cat] += hi - lo;
	}
}

/* One snapshot of the range into w->pages and w->cols: 0 or -errno. */
static int watch_sample(struct watch *w)
{
	int width = 64;
	struct winsize ws;
	if (w->tty && ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		width = ws.ws_col - 10;
	width = width < 16 ? 16 : width > W_MAX_COLS ? W_MAX_COLS : width;
	w->ncols = w->npages < (uint64_t)width ? (int)w->npages : width;
	memset(w->pages, 0, sizeof(*w->pages) * (size_t)w->ncat);
	memset(w->cols, 0, sizeof(*w->cols) * (size_t)w->ncat * W_MAX_COLS);
	struct coh_extent ext[256];
	uintptr_t end = w->base + w->npages * w->page, cur = w->base;
	while (cur < end) {
		int n = coh_query_pid(w->ctx, (pid_t)w->pid, (void *)cur, end - cur, ext, 256, sizeof(ext[0]));
		if (n < 0)
			return n;
		if (n == 0)
			break;
		for (int i = 0; i < n; i++) {
			uintptr_t s = ext[i].start < cur ? cur : ext[i].start;
			uintptr_t e = ext[i].start + ext[i].length > end ? end : ext[i].start + ext[i].length;
			if (e > s)
				watch_add(w, (s - w->base) / w->page, (e - w->base + w->page - 1) / w->page,
					  watch_category(&ext[i]));
		}
		cur = ext[n - 1].start + ext[n - 1].length;
	}
	if (cur < end)   /* not described: say so rather than lose the pages */
		watch_add(w, (cur - w->base) / w->page, w->npages, W_UNKNOWN);
	return 0;
}

/* The map line: per column the category holding most of its pages. */
static void watch_map(const struct watch *w, char *out)
{
	for (int c = 0; c < w->ncols; c++) {
		const uint64_t *k = &w->cols[(size_t)c * (size_t)w->ncat];
		int best = 0;
		for (int cat = 1; cat < w->ncat; cat++)
			if (k[cat] > k[best])
				best = cat;
		out[c] = watch_mark(best);
	}
	out[w->ncols] = '\0';
}

static void watch_time(char *buf, size_t len)
{
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	localtime_r(&ts.tv_sec, &tm);
	char day[32], zone[8];
	strftime(day, sizeof(day), "%Y-%m-%dT%H:%M:%S", &tm);
	strftime(zone, sizeof(zone), "%z", &tm);
	snprintf(buf, len, "%s.%03ld%s", day, ts.tv_nsec / 1000000, zone);
}

static void watch_print(const struct watch *w, unsigned long long refresh)
{
	char when[64], map[W_MAX_COLS + 1], of[32] = "";
	watch_time(when, sizeof(when));
	watch_map(w, map);
	double per_col = (double)w->npages / w->ncols;
	if (w->json) {
		printf("{\"time\": \"%s\", \"pid\": %ld, \"refresh\": %llu, \"start\": \"0x%" PRIxPTR "\", "
		       "\"length\": %" PRIu64 ", \"page_size\": %" PRIu64 ", \"pages\": %" PRIu64 ", \"targets\": [",
		       when, w->pid, refresh, w->base, w->npages * w->page, w->page, w->npages);
		int k = 0;
		for (int cat = W_TARGET0; cat < w->ncat; cat++) {
			if (!w->pages[cat])
				continue;
			printf("%s{\"name\": ", k++ ? ", " : "");
			json_str(watch_cat_name(w, cat));
			printf(", \"mark\": \"%c\", \"pages\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", watch_mark(cat),
			       w->pages[cat], w->pages[cat] * w->page);
		}
		printf("]");
		static const char *const keys[] = { "not_present", "unknown", "unmapped" };
		for (int cat = 0; cat < W_TARGET0; cat++)
			printf(", \"%s\": {\"pages\": %" PRIu64 ", \"bytes\": %" PRIu64 "}", keys[cat], w->pages[cat],
			       w->pages[cat] * w->page);
		printf(", \"map\": \"%s\", \"pages_per_column\": %.6g}\n", map, per_col);
		fflush(stdout);
		return;
	}
	if (w->tty)
		printf("\033[H\033[2J");   /* home and clear: redraw in place */
	if (w->count)
		snprintf(of, sizeof(of), "/%llu", w->count);
	printf("--- %s  pid %ld  refresh %llu%s\n", when, w->pid, refresh, of);
	printf("range 0x%016" PRIxPTR "-0x%016" PRIxPTR "  %" PRIu64 " bytes, %" PRIu64 " pages of %" PRIu64 " bytes\n",
	       w->base, w->base + w->npages * w->page, w->npages * w->page, w->npages, w->page);
	for (int cat = W_TARGET0; cat < w->ncat + W_TARGET0; cat++) {
		int c = cat < w->ncat ? cat : cat - w->ncat;   /* targets first, then the rest */
		if (c >= W_TARGET0 && !w->pages[c])
			continue;
		printf("  %c %-20s %12" PRIu64 " pages %16" PRIu64 " bytes\n", watch_mark(c), watch_cat_name(w, c),
		       w->pages[c], w->pages[c] * w->page);
	}
	printf("    %-20s %12" PRIu64 " pages %16" PRIu64 " bytes\n", "total", w->npages, w->npages * w->page);
	printf("  map |%s|  %.3g page%s per column\n", map, per_col, per_col == 1 ? "" : "s");
	fflush(stdout);
}

/* The process is gone: the last line of the watch. */
static void watch_exited(const struct watch *w, unsigned long long refreshes)
{
	char when[64];
	watch_time(when, sizeof(when));
	if (w->json)
		printf("{\"time\": \"%s\", \"pid\": %ld, \"exited\": true, \"refreshes\": %llu}\n", when, w->pid, refreshes);
	else
		printf("--- %s  pid %ld exited after %llu refreshes\n", when, w->pid, refreshes);
	fflush(stdout);
}

static int watch_run(struct watch *w)
{
	w->start_time = proc_start_time(w->pid);
	if (!w->start_time) {
		fprintf(stderr, "cohctl: no process %ld\n", w->pid);
		return 1;
	}
	/* SIGINT and SIGTERM end the watch between two refreshes: held
	 * pending meanwhile, taken by sigtimedwait() as the wait.  One the
	 * shell had ignored (a background job's SIGINT) stays ignored. */
	sigset_t stop_set, old;
	sigemptyset(&stop_set);
	for (int s = 0; s < 2; s++) {
		int sig = s ? SIGTERM : SIGINT;
		struct sigaction sa;
		if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler != SIG_IGN)
			sigaddset(&stop_set, sig);
	}
	sigprocmask(SIG_BLOCK, &stop_set, &old);
	int rc = 0;
	for (unsigned long long refresh = 1;; refresh++) {
		int e = watch_sample(w);
		unsigned long long now = proc_start_time(w->pid);
		if (now != w->start_time) {
			if (refresh == 1) {
				fprintf(stderr, "cohctl: no process %ld\n", w->pid);
				rc = 1;
			} else {
				watch_exited(w, refresh - 1);
			}
			break;
		}
		if (e) {
			fprintf(stderr, "cohctl: query of process %ld: %s\n", w->pid, coh_strerror(e));
			rc = 1;
			break;
		}
		if (refresh == 1 && w->pages[W_UNMAPPED] == w->npages) {
			fprintf(stderr, "cohctl: 0x%" PRIxPTR "-0x%" PRIxPTR " is not mapped in process %ld\n", w->base,
				w->base + w->npages * w->page, w->pid);
			rc = 1;
			break;
		}
		watch_print(w, refresh);
		if (w->count && refresh >= w->count)
			break;
		struct timespec ts = { .tv_sec = (time_t)(w->interval_ms / 1000),
				       .tv_nsec = (long)(w->interval_ms % 1000) * 1000000 };
		if (sigtimedwait(&stop_set, NULL, &ts) > 0)
			break;
	}
	sigprocmask(SIG_SETMASK, &old, NULL);
	return rc;
}

static int cmd_query(int argc, char **argv)
{
	if (argc < 4) {
		usage(stderr);
		return 2;
	}
	bool json = false, watch = false, timing = false;
	unsigned long long interval = 1000, count = 0;
	for (int i = 4; i < argc; i++) {
		bool is_interval = !strcmp(argv[i], "--interval"), is_count = !strcmp(argv[i], "--count");
		if (!strcmp(argv[i], "--json")) {
			json = true;
		} else if (!strcmp(argv[i], "--watch")) {
			watch = true;
		} else if (is_interval || is_count) {
			unsigned long long v;
			if (i + 1 >= argc || !parse_u64(argv[i + 1], 10, &v, NULL) || v < 1 ||
			    v > (is_interval ? 3600000ull : 1000000000ull)) {
				fprintf(stderr, "cohctl: bad %s '%s' (%s)\n", argv[i], i + 1 < argc ? argv[i + 1] : "",
					is_interval ? "milliseconds, 1 to 3600000" : "refreshes, 1 to 1000000000");
				return 2;
			}
			*(is_interval ? &interval : &count) = v;
			timing = true;
			i++;
		} else {
			fprintf(stderr, "cohctl: query: unknown option '%s'\n", argv[i]);
			usage(stderr);
			return 2;
		}
	}
	if (timing && !watch) {
		fprintf(stderr, "cohctl: query: --interval and --count go with --watch\n");
		return 2;
	}
	long pid;
	uintptr_t addr, len;
	if (!parse_range(argv, &pid, &addr, &len))
		return 2;
	if (!watch)
		return query_once(pid, addr, len, json);
	if (!len) {
		fprintf(stderr, "cohctl: query --watch: the length must not be 0\n");
		return 2;
	}
	struct watch w = { .pid = pid, .json = json, .tty = isatty(STDOUT_FILENO), .count = count,
			   .interval_ms = interval, .page = (uint64_t)sysconf(_SC_PAGESIZE) };
	w.base = addr & ~(uintptr_t)(w.page - 1);
	w.npages = (addr + len - w.base + w.page - 1) / w.page;
	if (open_ctx(&w.ctx))
		return 1;
	w.ncat = W_TARGET0 + coh_target_count(w.ctx);
	w.pages = calloc((size_t)w.ncat, sizeof(*w.pages));
	w.cols = calloc((size_t)w.ncat * W_MAX_COLS, sizeof(*w.cols));
	int rc = 1;
	if (w.pages && w.cols)
		rc = watch_run(&w);
	else
		fprintf(stderr, "cohctl: out of memory\n");
	free(w.pages);
	free(w.cols);
	coh_context_unref(w.ctx);
	return rc;
}

/* ---------------- bench ---------------- */

static void bench_progress(const char *msg)
{
	fprintf(stderr, "cohctl bench: %s\n", msg);
}

/* --plot writes SVG alone, to a file named so. */
static bool plot_name_ok(const char *path)
{
	size_t l = strlen(path);
	if (l >= 5 && !strcasecmp(path + l - 4, ".svg"))
		return true;
	fprintf(stderr, "cohctl bench: --plot writes SVG only: name the file FILE.svg, not '%s'%s\n", path,
		l >= 4 && !strcasecmp(path + l - 4, ".png") ? " (rsvg-convert or a browser turn the SVG into a PNG)" : "");
	return false;
}

/* Where --plot writes, opened before the run so that a path that cannot
 * be written fails at once: NULL after a message otherwise. */
static FILE *plot_open(const char *path)
{
	FILE *f = fopen(path, "we");
	if (!f)
		fprintf(stderr, "cohctl bench: %s: %s\n", path, strerror(errno));
	return f;
}

static int cmd_bench(int argc, char **argv)
{
	struct bench_opts o = { .progress = bench_progress };
	const char *suite = NULL, *plot = NULL;
	bool md = false;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--quick")) {
			o.quick = true;
		} else if (!strcmp(argv[i], "--markdown")) {
			md = true;
		} else if (!strcmp(argv[i], "--plot")) {
			if (i + 1 >= argc) {
				fprintf(stderr, "cohctl bench: --plot needs a file name (FILE.svg)\n");
				return 2;
			}
			plot = argv[++i];
		} else {
			suite = argv[i];
		}
	}
	if (plot && !plot_name_ok(plot))
		return 2;
	FILE *pf = plot ? plot_open(plot) : NULL;
	if (plot && !pf)
		return 1;
	struct bench_result r[64];
	int n = bench_run(suite, &o, r, 64);
	if (n < 0) {
		fprintf(stderr, "cohctl bench: %s\n", n == -ENOENT ? "no such suite" : coh_strerror(n));
		if (pf) {
			fclose(pf);
			unlink(plot);
		}
		return 1;
	}
	bench_print(r, n, md);
	if (!pf)
		return 0;
	char title[160];
	snprintf(title, sizeof(title), "libcoherent %s benchmarks: %s%s", coh_version_string(),
		 suite ? suite : "all suites", o.quick ? " (--quick)" : "");
	int e = bench_plot_svg(pf, title, r, n);
	if (fclose(pf) || e) {
		fprintf(stderr, "cohctl bench: writing %s failed\n", plot);
		return 1;
	}
	fprintf(stderr, "cohctl bench: %d rows plotted to %s\n", n, plot);
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
