/* SPDX-License-Identifier: MIT */
/*
 * Fuzz target over the sysfs/procfs parsers reached by discovery: a replay
 * tree from tests/data is copied once into a private folder, and each input
 * replaces one of its files (the first byte picks which, among the files
 * under this target's prefixes; the rest is the new content).  A context is
 * created on the tree, every target property read, and the file restored.
 *
 * Built once per target with FUZZ_TREE (folder under tests/data), FUZZ_BACKENDS
 * and FUZZ_PREFIXES ("a|b|c": paths relative to the tree).  FUZZ_SEEDS=DIR
 * writes one seed per file (its index byte and its unchanged content) and exits.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coherent.h"
#include "fuzz.h"

struct tfile {
	char *rel;
	char *orig;
	size_t len;
};
static struct tfile files[256];
static int nfiles;
static char root[512];

static bool wanted(const char *rel)
{
	char pre[] = FUZZ_PREFIXES;
	for (char *save = NULL, *p = strtok_r(pre, "|", &save); p; p = strtok_r(NULL, "|", &save))
		if (!strncmp(rel, p, strlen(p)))
			return true;
	return false;
}

static char *slurp(const char *path, size_t *len)
{
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, n = 0;
	char *b = malloc(cap);
	ssize_t r;
	while (b && (r = read(fd, b + n, cap - n)) > 0) {
		n += (size_t)r;
		if (n == cap) {
			char *nb = realloc(b, cap *= 2);
			if (!nb) {
				free(b);
				b = NULL;
			}
			b = nb;
		}
	}
	close(fd);
	*len = n;
	return b;
}

static void collect(const char *rel)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/%s", root, rel);
	DIR *d = opendir(path);
	if (!d)
		return;
	struct dirent *de;
	while ((de = readdir(d)) && nfiles < (int)(sizeof(files) / sizeof(files[0]))) {
		if (de->d_name[0] == '.')
			continue;
		char sub[1024];
		if (snprintf(sub, sizeof(sub), "%s%s%s", rel, *rel ? "/" : "", de->d_name) >= (int)sizeof(sub))
			continue;
		snprintf(path, sizeof(path), "%s/%s", root, sub);
		struct stat st;
		if (lstat(path, &st))
			continue;
		if (S_ISDIR(st.st_mode)) {
			collect(sub);
		} else if (S_ISREG(st.st_mode) && wanted(sub)) {
			struct tfile *t = &files[nfiles];
			t->orig = slurp(path, &t->len);
			t->rel = strdup(sub);
			if (t->orig && t->rel)
				nfiles++;
		}
	}
	closedir(d);
}

static int cmp_file(const void *a, const void *b)
{
	return strcmp(((const struct tfile *)a)->rel, ((const struct tfile *)b)->rel);
}

static void put(const struct tfile *t, const void *data, size_t len)
{
	char path[2048];
	snprintf(path, sizeof(path), "%s/%s", root, t->rel);
	int fd = open(path, O_WRONLY | O_TRUNC);
	if (fd < 0)
		abort();   /* the private copy must stay writable */
	if (len && write(fd, data, len) != (ssize_t)len)
		abort();
	close(fd);
}

/* The private copy goes when the process exits (libFuzzer ends through exit()). */
static void remove_copy(void)
{
	char cmd[600];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	if (system(cmd) != 0)
		fprintf(stderr, "coh-fuzz: could not remove %s\n", root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *tmp = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
	snprintf(root, sizeof(root), "%s/coh-fuzz-XXXXXX", tmp);
	if (!mkdtemp(root)) {
		perror("coh-fuzz: mkdtemp");
		exit(1);
	}
	char cmd[2048];
	snprintf(cmd, sizeof(cmd), "cp -a '%s/%s/.' '%s/'", COH_TEST_DATA, FUZZ_TREE, root);
	if (system(cmd) != 0) {
		fprintf(stderr, "coh-fuzz: cannot copy %s/%s\n", COH_TEST_DATA, FUZZ_TREE);
		exit(1);
	}
	atexit(remove_copy);
	collect("");
	qsort(files, (size_t)nfiles, sizeof(files[0]), cmp_file);
	if (nfiles == 0) {
		fprintf(stderr, "coh-fuzz: no file under %s in %s\n", FUZZ_PREFIXES, FUZZ_TREE);
		exit(1);
	}
	const char *seeds = getenv("FUZZ_SEEDS");
	if (seeds) {
		for (int i = 0; i < nfiles; i++) {
			char path[1024];
			snprintf(path, sizeof(path), "%s/seed-%03d", seeds, i);
			FILE *f = fopen(path, "w");
			if (!f) {
				perror(path);
				exit(1);
			}
			fputc(i, f);
			fwrite(files[i].orig, 1, files[i].len, f);
			fclose(f);
		}
		exit(0);
	}
	return 0;
}

static void read_everything(coh_context *ctx)
{
	coh_target *t, *u;
	int n = coh_target_count(ctx);
	int seen = 0;
	FUZZ_ASSERT(n >= 0);
	coh_target_foreach(ctx, t) {
		seen++;
		FUZZ_ASSERT(coh_target_name(t) != NULL);
		FUZZ_ASSERT(coh_target_find(ctx, coh_target_name(t)) == t);
		(void)coh_target_kind_name(coh_target_kind(t));
		(void)coh_target_vendor(t);
		(void)coh_target_model(t);
		(void)coh_target_pci_address(t);
		(void)coh_target_pci_name(t);
		int node = coh_target_numa_node(t);
		if (node >= 0)
			(void)coh_target_by_node(ctx, node);
		uint64_t total = 0, free_b = 0;
		if (coh_target_capacity(t, &total, &free_b) == 0)
			FUZZ_ASSERT(free_b <= total || total == 0);
		(void)coh_target_caps(t);
		(void)coh_target_memory_tier(t);
		struct coh_access acc = { .size = sizeof(acc) };
		for (unsigned c = 0; c < 3; c++)
			(void)coh_target_access(t, c, &acc);
		coh_target_foreach(ctx, u) {
			/* a distance is a SLIT value or -ENOENT, never a stray number */
			int d = coh_target_distance(t, u);
			FUZZ_ASSERT(d == -ENOENT || (d >= 10 && d <= 255));
		}
		for (unsigned i = 0; i < 8; i++) {
			struct coh_memory_cache mc = { .size = sizeof(mc) };
			if (coh_target_memory_cache(t, i, &mc) < 0)
				break;
			FUZZ_ASSERT(mc.cache_bytes > 0);
		}
		int pm = coh_target_persistent(t);
		FUZZ_ASSERT(pm == 0 || pm == 1);
	}
	FUZZ_ASSERT(seen == n);
	char buf[4096];
	(void)coh_context_backends(ctx, buf, sizeof(buf));
	(void)coh_backend_status(ctx, FUZZ_BACKENDS, buf, sizeof(buf));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size == 0)
		return 0;
	const struct tfile *t = &files[data[0] % nfiles];
	put(t, data + 1, size - 1);
	struct coh_context_options o = { .size = sizeof(o), .backends = FUZZ_BACKENDS, .fsroot = root,
					 .log_level = 0 };
	coh_context *ctx = NULL;
	int e = coh_context_create(&o, &ctx);
	FUZZ_ASSERT(e == 0 || e < 0);
	if (e == 0) {
		FUZZ_ASSERT(coh_context_is_replay(ctx));
		read_everything(ctx);
		coh_context_unref(ctx);
	}
	put(t, t->orig, t->len);
	return 0;
}
