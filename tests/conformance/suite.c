/* SPDX-License-Identifier: MIT */
/*
 * The conformance suite: the same cases on every target a context discovers,
 * whatever its backend, so that every later backend inherits them.  Each case
 * passes, fails or is skipped with a reason; a target whose capability bits
 * deny an operation must refuse it with -EOPNOTSUPP (that refusal is checked).
 * The cases live in groups (cases_*.c), each with a table of the cases it
 * reports; docs/conformance.md documents every name.
 *
 *   coh-conformance              run every group on every target
 *   coh-conformance --list       the cases as a markdown table
 *   coh-conformance --names      the case names, one per line
 *
 * Output: one line per case, then per target
 *   TARGET: N passed, N failed, N skipped
 * and finally "N passed, N failed, N skipped".  Exit 1 on any failure, 77 when
 * no target was found.
 */
#include <stdarg.h>
#include <unistd.h>
#include <fcntl.h>

#include "suite.h"

size_t ps;
coh_context *ctx;
static int n_pass, n_fail, n_skip;
static int t_pass, t_fail, t_skip;

static const struct conf_group *const groups[] = {
	&conf_basic, &conf_mm, &conf_pin, &conf_fork, &conf_device, &conf_concurrent,
};
#define NGROUPS (sizeof(groups) / sizeof(groups[0]))

static bool listed(const char *check)
{
	for (size_t g = 0; g < NGROUPS; g++)
		for (const struct conf_case *c = groups[g]->cases; c->name; c++)
			if (!strcmp(c->name, check))
				return true;
	return false;
}

void report(const coh_target *t, const char *check, int verdict, const char *fmt, ...)
{
	char why[256] = "";
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(why, sizeof(why), fmt, ap);
		va_end(ap);
	}
	if (!listed(check)) {
		snprintf(why, sizeof(why), "case %s is in no group's table (suite.h: struct conf_case)", check);
		verdict = FAIL;
	}
	static const char *const names[] = { "PASS", "FAIL", "SKIP" };
	printf("  %-4s %-16s %-14s %s\n", names[verdict], coh_target_name(t), check, why);
	int *c[] = { &t_pass, &t_fail, &t_skip };
	(*c[verdict])++;
}

/* Checks that are not about fork use COPY, or the first policy the target offers. */
int first_policy(const coh_target *t)
{
	for (int p = COH_FORK_COPY; p <= COH_FORK_KERNEL; p++)
		if (coh_target_caps(t) & (COH_CAP_FORK_COPY << p))
			return p;
	return COH_FORK_COPY;
}

bool is_host_kind(int tkind)
{
	return tkind == COH_KIND_HOST_NODE || tkind == COH_KIND_CPULESS_NODE;
}

/* Memory kinds a page of this target may show before the CPU touched it. */
bool kind_fits_fresh(int tkind, int mkind)
{
	if (mkind == COH_MEM_NOT_POPULATED)
		return true;
	switch (tkind) {
	case COH_KIND_DEVICE_COHERENT: return mkind == COH_MEM_DEVICE_COHERENT;
	case COH_KIND_DEVICE_PRIVATE: return mkind == COH_MEM_DEVICE_PRIVATE;
	case COH_KIND_DEVICE_DAX: return mkind == COH_MEM_DEVICE_DAX;
	case COH_KIND_VENDOR_MANAGED: return mkind == COH_MEM_VENDOR_MANAGED;
	default: return false;
	}
}

/* ... and once the CPU wrote it: device-private memory faults back to system
 * memory on any CPU access (the seed's claim 5), device-coherent stays. */
bool kind_fits_written(int tkind, int mkind)
{
	switch (tkind) {
	case COH_KIND_HOST_NODE:
	case COH_KIND_CPULESS_NODE:
		return mkind == COH_MEM_SYSTEM || mkind == COH_MEM_SYSTEM_THP || mkind == COH_MEM_FILE;
	case COH_KIND_DEVICE_COHERENT: return mkind == COH_MEM_DEVICE_COHERENT;
	case COH_KIND_DEVICE_PRIVATE: return mkind == COH_MEM_SYSTEM;
	case COH_KIND_DEVICE_DAX: return mkind == COH_MEM_DEVICE_DAX;
	case COH_KIND_VENDOR_MANAGED: return mkind == COH_MEM_VENDOR_MANAGED || mkind == COH_MEM_SYSTEM;
	default: return false;
	}
}

void fill(unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(i * 31 + seed);
}

bool same(const unsigned char *p, size_t len, unsigned seed)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != (unsigned char)(i * 31 + seed))
			return false;
	return true;
}

/* Whether every byte of [p, p+len) can be read, asked of the kernel: the
 * bytes are written into a pipe, so a mapping whose fault handler refuses
 * answers EFAULT instead of killing the suite (process_vm_readv would do,
 * but kernels without CROSS_MEMORY_ATTACH, like the test VM's, lack it). */
bool readable(const void *p, size_t len)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC))
		return false;
	bool ok = true;
	unsigned char buf[4096];
	for (size_t off = 0; ok && off < len; off += sizeof(buf)) {
		size_t n = len - off < sizeof(buf) ? len - off : sizeof(buf);
		ok = write(pfd[1], (const unsigned char *)p + off, n) == (ssize_t)n &&
		     read(pfd[0], buf, n) == (ssize_t)n;
	}
	close(pfd[0]);
	close(pfd[1]);
	return ok;
}

/* Expected sums of blocks whose words are coh_pattern_word(pattern, .). */
void pattern_sums(uint64_t pattern, size_t len, uint64_t *sums)
{
	uint64_t blk[COH_SUM_BLOCK / 8];
	for (size_t b = 0; b < len / COH_SUM_BLOCK; b++) {
		for (size_t i = 0; i < COH_SUM_BLOCK / 8; i++)
			blk[i] = coh_pattern_word(pattern, b * COH_SUM_BLOCK + i * 8);
		sums[b] = coh_block_sum(blk);
	}
}

void pattern_fill(uint64_t *w, size_t len, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		w[i] = coh_pattern_word(pattern, i * 8);
}

/* The first word that is not the pattern's, or len / 8. */
size_t pattern_mismatch(const uint64_t *w, size_t len, uint64_t pattern)
{
	for (size_t i = 0; i < len / 8; i++)
		if (w[i] != coh_pattern_word(pattern, i * 8))
			return i;
	return len / 8;
}

int alloc_plain(coh_target *t, size_t len, void **p)
{
	return coh_alloc(t, len, &COH_ALLOC_PROPS(.flags = COH_ALLOC_NOHUGE, .fork_policy = first_policy(t)), p);
}

bool tsan_fork_lock_inherited(void)
{
#ifdef __SANITIZE_THREAD__
	coh_target *u;
	coh_target_foreach(ctx, u)
		if (!strcmp(coh_target_backend(u), "nvidia") ||
		    (getenv("KFDEMU_ROOT") && !strcmp(coh_target_backend(u), "amd")))
			return true;
#endif
	return false;
}

unsigned char *case_alloc(coh_target *t, const char *name, size_t len, unsigned seed)
{
	if (!(coh_target_caps(t) & COH_CAP_ALLOC)) {
		report(t, name, SKIP, "no alloc capability");
		return NULL;
	}
	void *p = NULL;
	int e = alloc_plain(t, len, &p);
	if (e) {
		report(t, name, FAIL, "coh_alloc: %s", coh_strerror(e));
		return NULL;
	}
	fill(p, len, seed);
	return p;
}

/* Is name one of the comma-separated words of list? */
static bool in_list(const char *list, const char *name)
{
	size_t len = strlen(name);
	for (const char *s = list; *s;) {
		size_t n = strcspn(s, ",");
		if (n == len && !strncmp(s, name, n))
			return true;
		s += n + (s[n] == ',');
	}
	return false;
}

static int list(bool names_only)
{
	if (!names_only)
		printf("| case | group | proves | skipped on |\n|---|---|---|---|\n");
	for (size_t g = 0; g < NGROUPS; g++)
		for (const struct conf_case *c = groups[g]->cases; c->name; c++) {
			if (names_only)
				printf("%s\n", c->name);
			else
				printf("| `%s` | %s | %s | %s |\n", c->name, groups[g]->name, c->proves,
				       c->skips[0] ? c->skips : "-");
		}
	return 0;
}

int main(int argc, char **argv)
{
	if (argc > 1 && (!strcmp(argv[1], "--list") || !strcmp(argv[1], "--names")))
		return list(!strcmp(argv[1], "--names"));
	/* --groups mm,fork: only those groups (a crash in one then hides no other) */
	const char *only = NULL;
	if (argc == 3 && !strcmp(argv[1], "--groups"))
		only = argv[2];
	else if (argc > 1) {
		fprintf(stderr, "usage: coh-conformance [--list | --names | --groups NAME[,NAME...]]\n");
		return 2;
	}
	if (only)
		for (const char *s = only; *s;) {
			size_t n = strcspn(s, ",");
			bool known = false;
			for (size_t g = 0; g < NGROUPS; g++) {
				char one[32];
				snprintf(one, sizeof(one), "%.*s", (int)(n < 31 ? n : 31), s);
				known |= n < 31 && !strcmp(groups[g]->name, one);
			}
			if (!known) {
				fprintf(stderr, "coh-conformance: no group '%.*s'\n", (int)n, s);
				return 2;
			}
			s += n + (s[n] == ',');
		}
	ps = (size_t)sysconf(_SC_PAGESIZE);
	int e = coh_context_create(NULL, &ctx);
	if (e) {
		fprintf(stderr, "conformance: no context: %s\n", coh_strerror(e));
		return 1;
	}
	if (coh_target_count(ctx) == 0) {
		printf("conformance: no targets discovered: nothing to check (skip)\n");
		return 77;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	coh_target *t;
	coh_target_foreach(ctx, t) {
		t_pass = t_fail = t_skip = 0;
		char node[24] = "no NUMA node";
		if (coh_target_numa_node(t) >= 0)
			snprintf(node, sizeof(node), "node %d", coh_target_numa_node(t));
		printf("%s (%s, %s, %s)\n", coh_target_name(t), coh_target_backend(t),
		       coh_target_kind_name(coh_target_kind(t)), node);
		for (size_t g = 0; g < NGROUPS; g++)
			if (!only || in_list(only, groups[g]->name))
				groups[g]->run(t);
		printf("%s: %d passed, %d failed, %d skipped\n", coh_target_name(t), t_pass, t_fail, t_skip);
		n_pass += t_pass;
		n_fail += t_fail;
		n_skip += t_skip;
	}
	coh_context_unref(ctx);
	printf("%d passed, %d failed, %d skipped\n", n_pass, n_fail, n_skip);
	return n_fail ? 1 : 0;
}
