/* SPDX-License-Identifier: MIT */
/*
 * MPI ranks exchange data through an RMA window over libcoherent memory.
 *
 * Each rank allocates its buffer on a target of its own (a device target
 * where the context has one, else its host node, both by rank modulo the
 * count), asks pin-query what a long-term pin (an RDMA registration) would do
 * and migrates to its host node first unless the answer is "in place", then
 * exposes the buffer with MPI_Win_create.  Rounds of a ring follow: every
 * rank puts its half of the buffer into the right neighbour's other half, then
 * gets it back from there; every byte is checked.  Between two rounds one rank
 * forks a helper under the buffer's fork policy: the helper checks what
 * coh_fork_query() said it would see, writes where it may and exits; the
 * window must work on.  coh_query() then says where every page is.
 *
 *   mpirun -np 3 mpi_window [--fork-policy copy|share|exclude|zero|kernel]
 *                           [--fork-rank R] [--size BYTES] [--iters N]
 *                           [--malloc] [--migrate]
 *
 * --malloc exposes aligned_alloc() memory instead (the same questions are
 * asked of it; the fork is the kernel's own); --migrate migrates whatever
 * pin-query answers.  Rank 0 prints one line per rank; the exit status is
 * non-zero when any rank saw a wrong byte or a failed call.
 */
#include <coherent.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#define REPORT_LEN 640
#define MAX_EXT 64
#define HELPER_ID 250   /* the pattern "rank" the SHARE helper writes */

struct opts {
	int policy;           /* enum coh_fork_policy */
	int fork_rank;
	size_t size;
	int iters;            /* timed rounds after the two checked ones */
	int use_malloc;
	int force_migrate;
};

struct rank_state {
	int rank, nranks;
	coh_context *ctx;
	coh_target *target;   /* where the buffer was allocated */
	coh_target *host;     /* the rank's host node: where it migrates to */
	unsigned char *buf;   /* the window: [0, half) own data, [half, size) inbox */
	unsigned char *scratch;
	size_t size, half;
	MPI_Win win;
	uint64_t verified;
	int failed;
	char report[REPORT_LEN];
	size_t rlen;
};

static void say(struct rank_state *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct rank_state *s, const char *fmt, ...)
{
	if (s->rlen >= sizeof(s->report))
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(s->report + s->rlen, sizeof(s->report) - s->rlen, fmt, ap);
	va_end(ap);
	if (n > 0)
		s->rlen += (size_t)n;
}

/* A failure of this rank: the message goes to stderr at once. */
static void fail(struct rank_state *s, const char *what, int err)
{
	fprintf(stderr, "mpi_window: rank %d: %s: %s\n", s->rank, what, coh_strerror(err));
	s->failed = 1;
}

static unsigned char pattern(int id, int round, size_t off)
{
	return (unsigned char)((off >> 12) * 7 + (off & 0xff) * 31 + (unsigned)id * 53 + (unsigned)round * 97);
}

static void fill(unsigned char *p, size_t len, int id, int round)
{
	for (size_t i = 0; i < len; i++)
		p[i] = pattern(id, round, i);
}

/* Number of bytes of p that differ from (id, round)'s pattern. */
static size_t mismatches(const unsigned char *p, size_t len, int id, int round)
{
	size_t bad = 0;
	for (size_t i = 0; i < len; i++)
		bad += p[i] != pattern(id, round, i);
	return bad;
}

static size_t nonzero(const unsigned char *p, size_t len)
{
	size_t bad = 0;
	for (size_t i = 0; i < len; i++)
		bad += p[i] != 0;
	return bad;
}

static int parse_policy(const char *name)
{
	for (int p = COH_FORK_COPY; p <= COH_FORK_KERNEL; p++)
		if (!strcasecmp(name, coh_fork_policy_name(p)))
			return p;
	return -1;
}

static int parse_opts(int argc, char **argv, struct opts *o)
{
	*o = (struct opts){ .policy = COH_FORK_COPY, .size = 1u << 20, .iters = 3 };
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (!strcmp(a, "--malloc")) {
			o->use_malloc = 1;
		} else if (!strcmp(a, "--migrate")) {
			o->force_migrate = 1;
		} else if (v && !strcmp(a, "--fork-policy")) {
			if ((o->policy = parse_policy(v)) < 0)
				return -1;
			i++;
		} else if (v && !strcmp(a, "--fork-rank")) {
			o->fork_rank = atoi(v);
			i++;
		} else if (v && !strcmp(a, "--size")) {
			o->size = strtoull(v, NULL, 0);
			i++;
		} else if (v && !strcmp(a, "--iters")) {
			o->iters = atoi(v);
			i++;
		} else {
			return -1;
		}
	}
	/* MPI counts are ints: each half moves in one call */
	return o->size >= 2 && o->size <= (1ull << 30) && o->iters >= 0 && o->fork_rank >= 0 ? 0 : -1;
}

/* The fork capability bit of a policy. */
static uint64_t fork_cap(int policy)
{
	static const uint64_t caps[] = {
		[COH_FORK_COPY] = COH_CAP_FORK_COPY, [COH_FORK_SHARE] = COH_CAP_FORK_SHARE,
		[COH_FORK_EXCLUDE] = COH_CAP_FORK_EXCLUDE, [COH_FORK_ZERO] = COH_CAP_FORK_ZERO,
		[COH_FORK_KERNEL] = COH_CAP_FORK_KERNEL,
	};
	return caps[policy];
}

/* The usable targets of one side: host nodes (kind HOST_NODE) or the rest,
 * the device targets (CPU-less nodes, device memory, managed memory).
 * Returns how many there are; *out gets the nth of them (nth -1: none). */
static int usable_targets(coh_context *ctx, int policy, int device, int nth, coh_target **out)
{
	int count = coh_target_count(ctx), found = 0;
	for (int i = 0; i < count; i++) {
		coh_target *t = coh_target_get(ctx, (unsigned)i);
		uint64_t caps = t ? coh_target_caps(t) : 0;
		if (!(caps & COH_CAP_ALLOC) || !(caps & fork_cap(policy)) ||
		    (coh_target_kind(t) != COH_KIND_HOST_NODE) != device)
			continue;
		if (found++ == nth)
			*out = t;
	}
	return count < 0 ? count : found;
}

/* The rank's host node, by rank modulo their count, and where its buffer is
 * allocated: likewise a device target that takes the policy where there is
 * one, else that host node. */
static int pick_targets(struct rank_state *s, int policy)
{
	int nhost = usable_targets(s->ctx, policy, 0, -1, NULL);
	int ndev = usable_targets(s->ctx, policy, 1, -1, NULL);
	if (nhost < 0 || ndev < 0)
		return nhost < 0 ? nhost : ndev;
	if (nhost == 0)
		return -ENODEV;
	usable_targets(s->ctx, policy, 0, s->rank % nhost, &s->host);
	s->target = s->host;
	if (ndev > 0)
		usable_targets(s->ctx, policy, 1, s->rank % ndev, &s->target);
	return 0;
}

/* Pin-query's worst answers over a range (in place < after migrate < never
 * < unknown), and the reason given for the worst long-term one. */
struct pin_view {
	int short_term, long_term;
	const char *why;
};

static int pin_answers(coh_context *ctx, const void *p, size_t len, struct pin_view *v)
{
	static const int rank_of[] = { [COH_PIN_UNKNOWN] = 3, [COH_PIN_IN_PLACE] = 0,
				       [COH_PIN_AFTER_MIGRATE] = 1, [COH_PIN_NEVER] = 2 };
	struct coh_pin_extent ext[MAX_EXT];
	const char *at = p, *end = at + len;
	*v = (struct pin_view){ COH_PIN_IN_PLACE, COH_PIN_IN_PLACE, NULL };
	while (at < end) {
		int n = coh_pin_query(ctx, at, (size_t)(end - at), ext, MAX_EXT, sizeof(ext[0]));
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
		for (int i = 0; i < n; i++) {
			if (rank_of[ext[i].short_term] > rank_of[v->short_term])
				v->short_term = ext[i].short_term;
			if (rank_of[ext[i].long_term] > rank_of[v->long_term] || !v->why) {
				v->long_term = ext[i].long_term;
				v->why = ext[i].reason;
			}
		}
		at = (const char *)(ext[n - 1].start + ext[n - 1].length);
	}
	return 0;
}

/* Where the window's pages are: each must be populated, and on `where`
 * (its node, and its target where the query names one) when where is set. */
static int check_residency(struct rank_state *s, coh_target *where)
{
	struct coh_extent ext[MAX_EXT];
	const char *at = (const char *)s->buf, *end = at + s->size;
	size_t pages[COH_MEM_UNMAPPED + 1] = { 0 }, off_target = 0;
	int node = where ? coh_target_numa_node(where) : -1;
	long pg = sysconf(_SC_PAGESIZE);
	while (at < end) {
		int n = coh_query(s->ctx, at, (size_t)(end - at), ext, MAX_EXT, sizeof(ext[0]));
		if (n < 0)
			return n;
		if (n == 0)
			return -EIO;
		for (int i = 0; i < n; i++) {
			size_t np = ext[i].length / (size_t)pg;
			if (ext[i].kind >= 0 && ext[i].kind <= COH_MEM_UNMAPPED)
				pages[ext[i].kind] += np;
			if (where && ((ext[i].target && ext[i].target != where) ||
				      (node >= 0 && ext[i].node >= 0 && ext[i].node != node)))
				off_target += np;
		}
		at = (const char *)(ext[n - 1].start + ext[n - 1].length);
	}
	say(s, "; residency:");
	for (int k = 0; k <= COH_MEM_UNMAPPED; k++)
		if (pages[k])
			say(s, " %zu %s", pages[k], coh_mem_kind_name(k));
	if (where)
		say(s, " on %s", coh_target_name(where));
	size_t missing = pages[COH_MEM_NOT_POPULATED] + pages[COH_MEM_UNMAPPED] + pages[COH_MEM_SWAPPED];
	if (missing || off_target) {
		fprintf(stderr, "mpi_window: rank %d: %zu pages not resident, %zu away from the target\n",
			s->rank, missing, off_target);
		s->failed = 1;
	}
	return 0;
}

/* One round of the ring: put the own half into the right neighbour's inbox,
 * check what the left one put here, get the own data back from the right
 * neighbour's inbox and check it.  *t_put and *t_get gain the time of each
 * epoch. */
static void ring_round(struct rank_state *s, int round, double *t_put, double *t_get)
{
	int right = (s->rank + 1) % s->nranks, left = (s->rank + s->nranks - 1) % s->nranks;
	int half = (int)s->half;
	fill(s->buf, s->half, s->rank, round);
	memset(s->scratch, 0, s->half);
	/* the opening fence waits for the slowest rank: not timed */
	int e = MPI_Win_fence(0, s->win);
	double t0 = MPI_Wtime();
	if (e == MPI_SUCCESS)
		e = MPI_Put(s->buf, half, MPI_BYTE, right, (MPI_Aint)s->half, half, MPI_BYTE, s->win);
	if (e == MPI_SUCCESS)
		e = MPI_Win_fence(0, s->win);
	double t1 = MPI_Wtime();
	if (e == MPI_SUCCESS)
		e = MPI_Get(s->scratch, half, MPI_BYTE, right, (MPI_Aint)s->half, half, MPI_BYTE, s->win);
	if (e == MPI_SUCCESS)
		e = MPI_Win_fence(0, s->win);
	double t2 = MPI_Wtime();
	if (e != MPI_SUCCESS) {
		fprintf(stderr, "mpi_window: rank %d: round %d: MPI error %d\n", s->rank, round, e);
		s->failed = 1;
		return;
	}
	*t_put += t1 - t0;
	*t_get += t2 - t1;
	size_t bad_in = mismatches(s->buf + s->half, s->half, left, round);
	size_t bad_back = mismatches(s->scratch, s->half, s->rank, round);
	if (bad_in || bad_back) {
		fprintf(stderr, "mpi_window: rank %d: round %d: %zu wrong bytes put here by rank %d, "
			"%zu wrong bytes got back from rank %d\n", s->rank, round, bad_in, left, bad_back, right);
		s->failed = 1;
	}
	s->verified += 2 * s->half - bad_in - bad_back;
}

/* What coh_fork_query() says a child forked now sees: one view for the
 * whole buffer, COH_CHILD_UNKNOWN when the extents differ or fall short. */
static int predicted_view(struct rank_state *s)
{
	struct coh_fork_extent ext[MAX_EXT];
	int n = coh_fork_query(s->ctx, s->buf, s->size, ext, MAX_EXT, sizeof(ext[0]));
	if (n < 0)
		return n;
	int view = n > 0 ? ext[0].child_view : COH_CHILD_UNKNOWN;
	size_t covered = 0;
	for (int i = 0; i < n; i++) {
		covered += ext[i].length;
		if (ext[i].child_view != view)
			view = COH_CHILD_UNKNOWN;
	}
	return covered == s->size ? view : COH_CHILD_UNKNOWN;
}

/* The helper: checks the view it was promised, writes where it may, exits
 * 0 when all was as predicted (1: wrong bytes, 2: a mapping where none
 * should be, 3: the go-ahead never came).  It calls nothing of MPI. */
static void helper(struct rank_state *s, int view, int go, int round)
{
	char c;
	if (read(go, &c, 1) != 1)
		_exit(3);
	unsigned char vec[1];
	switch (view) {
	case COH_CHILD_COPY:
	case COH_CHILD_SHARED:
		if (mismatches(s->buf, s->half, s->rank, round) ||
		    mismatches(s->buf + s->half, s->half, (s->rank + s->nranks - 1) % s->nranks, round))
			_exit(1);
		if (view == COH_CHILD_SHARED)
			fill(s->buf, s->half, HELPER_ID, round);   /* the parent must see this */
		else
			memset(s->buf, 0xa5, s->size);            /* the parent must not */
		break;
	case COH_CHILD_ZERO:
		if (nonzero(s->buf, s->size))
			_exit(1);
		memset(s->buf, 0xa5, s->size);
		break;
	case COH_CHILD_ABSENT:
		/* no mapping: mincore() answers ENOMEM, and the child's
		 * context no longer knows the range */
		if (mincore(s->buf, 1, vec) == 0 || coh_lookup(s->ctx, s->buf, &(struct coh_alloc_info){
				.size = sizeof(struct coh_alloc_info) }) != -ENOENT)
			_exit(2);
		break;
	default:
		break;                 /* unreadable or unknown: not touched */
	}
	_exit(0);
}

/* Forks the helper while the window exists; pin-query answers again while
 * the helper lives (before either side wrote), then the helper goes on. */
static void fork_helper(struct rank_state *s, const struct opts *o, int round)
{
	int view = predicted_view(s);
	if (view < 0) {
		fail(s, "coh_fork_query", view);
		return;
	}
	static const int expect[] = { [COH_FORK_COPY] = COH_CHILD_COPY, [COH_FORK_SHARE] = COH_CHILD_SHARED,
				       [COH_FORK_EXCLUDE] = COH_CHILD_ABSENT, [COH_FORK_ZERO] = COH_CHILD_ZERO,
				       [COH_FORK_KERNEL] = 0 };
	int want = o->use_malloc ? COH_CHILD_COPY : expect[o->policy];
	if (want && view != want) {
		fprintf(stderr, "mpi_window: rank %d: fork policy %s: predicted child view %s, not %s\n", s->rank,
			coh_fork_policy_name(o->policy), coh_child_view_name(view), coh_child_view_name(want));
		s->failed = 1;
	}
	int p[2];
	if (pipe(p)) {
		fail(s, "pipe", -errno);
		return;
	}
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		fail(s, "fork", -errno);
		close(p[0]);
		close(p[1]);
		return;
	}
	if (pid == 0) {
		close(p[1]);
		helper(s, view, p[0], round);
	}
	close(p[0]);
	struct pin_view v;
	int e = pin_answers(s->ctx, s->buf, s->size, &v);
	if (e)
		fail(s, "coh_pin_query during the fork", e);
	int st = 0;
	if (write(p[1], "g", 1) != 1)
		fail(s, "pipe write", -errno);
	close(p[1]);
	if (waitpid(pid, &st, 0) != pid) {
		fail(s, "waitpid", -errno);
		return;
	}
	say(s, "; fork %s: child view %s, helper exit %d, long pin meanwhile %s",
	    o->use_malloc ? "(kernel, malloc)" : coh_fork_policy_name(o->policy), coh_child_view_name(view),
	    WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st), e ? "?" : coh_pin_answer_name(v.long_term));
	if (!WIFEXITED(st) || WEXITSTATUS(st)) {
		fprintf(stderr, "mpi_window: rank %d: the helper did not see %s (status %#x)\n", s->rank,
			coh_child_view_name(view), (unsigned)st);
		s->failed = 1;
	}
	/* the parent's side: the helper's writes show only where shared */
	int own = view == COH_CHILD_SHARED ? HELPER_ID : s->rank;
	size_t bad = mismatches(s->buf, s->half, own, round) +
		     mismatches(s->buf + s->half, s->half, (s->rank + s->nranks - 1) % s->nranks, round);
	if (bad) {
		fprintf(stderr, "mpi_window: rank %d: %zu bytes of the parent wrong after the helper\n", s->rank, bad);
		s->failed = 1;
	}
	s->verified += s->size - bad;
}

static int alloc_buffers(struct rank_state *s, const struct opts *o)
{
	long pg = sysconf(_SC_PAGESIZE);
	s->size = (o->size + 2 * (size_t)pg - 1) / (2 * (size_t)pg) * (2 * (size_t)pg);
	s->half = s->size / 2;
	if (o->use_malloc) {
		s->buf = aligned_alloc((size_t)pg, s->size);
		s->scratch = malloc(s->half);
		return s->buf && s->scratch ? 0 : -ENOMEM;
	}
	int e = coh_alloc(s->target, s->size, &COH_ALLOC_PROPS(.fork_policy = o->policy), (void **)&s->buf);
	if (e)
		return e;
	return coh_alloc(s->host, s->half, NULL, (void **)&s->scratch);
}

/* Allocation, lookup, pin-query and what its long-term answer calls for:
 * nothing when in place; a migration to the host node when the kernel would
 * migrate for the pin anyway (or the answer is unknown); a new allocation on
 * the host node, the data copied, when a pin would fail wherever the pages
 * are (driver-managed memory).  0 or -errno. */
static int prepare(struct rank_state *s, const struct opts *o, double *t_pin)
{
	int e = pick_targets(s, o->policy);
	if (e)
		return e;
	if ((e = alloc_buffers(s, o)))
		return e;
	fill(s->buf, s->size, s->rank, 0);   /* populate before asking about pins */

	/* what a transport asks first: is this libcoherent memory, and where */
	struct coh_alloc_info info = { .size = sizeof(info) };
	e = coh_lookup(s->ctx, s->buf, &info);
	if (e && !(o->use_malloc && e == -ENOENT))
		return e;
	if (e)
		say(s, "malloc memory (coh_lookup: %s)", coh_strerror(e));
	else
		say(s, "%s (%s), fork policy %s", coh_target_name(info.target),
		    coh_target_kind_name(coh_target_kind(info.target)), coh_fork_policy_name(info.fork_policy));

	/* the first call of a process, then the best of four more */
	struct pin_view v;
	double first = 0;
	for (int i = 0; i < 5; i++) {
		double t0 = MPI_Wtime();
		e = pin_answers(s->ctx, s->buf, s->size, &v);
		double t = MPI_Wtime() - t0;
		if (e)
			return e;
		if (i == 0)
			first = t;
		else if (i == 1 || t < *t_pin)
			*t_pin = t;
	}
	say(s, "; pin-query short %s long %s (first %.0f us, then %.0f us)", coh_pin_answer_name(v.short_term),
	    coh_pin_answer_name(v.long_term), first * 1e6, *t_pin * 1e6);
	if (v.long_term != COH_PIN_IN_PLACE)
		say(s, " [%s]", v.why ? v.why : "no reason given");
	if (o->use_malloc || (v.long_term == COH_PIN_IN_PLACE && !o->force_migrate)) {
		say(s, ", not moved");
		return 0;
	}
	if (v.long_term != COH_PIN_NEVER) {
		if ((e = coh_migrate(s->ctx, s->buf, s->size, s->host, 0)))
			return e;
		if ((e = pin_answers(s->ctx, s->buf, s->size, &v)))
			return e;
		s->target = s->host;
		say(s, ", migrated to %s: long %s", coh_target_name(s->host), coh_pin_answer_name(v.long_term));
	}
	if (v.long_term != COH_PIN_IN_PLACE) {
		unsigned char *copy;
		e = coh_alloc(s->host, s->size, &COH_ALLOC_PROPS(.fork_policy = o->policy), (void **)&copy);
		if (e)
			return e;
		memcpy(copy, s->buf, s->size);
		if ((e = coh_free(s->ctx, s->buf))) {
			int e2 = coh_free(s->ctx, copy);
			return e2 ? e2 : e;
		}
		s->buf = copy;
		s->target = s->host;
		if ((e = pin_answers(s->ctx, s->buf, s->size, &v)))
			return e;
		say(s, ", copied to a new allocation on %s: long %s", coh_target_name(s->host),
		    coh_pin_answer_name(v.long_term));
	}
	return v.long_term == COH_PIN_IN_PLACE ? 0 : -EFAULT;
}

static void release(struct rank_state *s, const struct opts *o)
{
	if (o->use_malloc) {
		free(s->buf);
		free(s->scratch);
		return;
	}
	int e;
	if (s->buf && (e = coh_free(s->ctx, s->buf)))
		fail(s, "coh_free", e);
	if (s->scratch && (e = coh_free(s->ctx, s->scratch)))
		fail(s, "coh_free", e);
}

/* Every rank's report to rank 0, which prints them in rank order. */
static void print_reports(struct rank_state *s)
{
	char *all = s->rank == 0 ? calloc((size_t)s->nranks, REPORT_LEN) : NULL;
	if (s->rank == 0 && !all) {
		s->failed = 1;
		return;
	}
	MPI_Gather(s->report, REPORT_LEN, MPI_CHAR, all, REPORT_LEN, MPI_CHAR, 0, MPI_COMM_WORLD);
	for (int r = 0; all && r < s->nranks; r++)
		printf("rank %d: %s\n", r, all + (size_t)r * REPORT_LEN);
	fflush(stdout);
	free(all);
}

int main(int argc, char **argv)
{
	MPI_Init(&argc, &argv);
	struct rank_state s = { .failed = 0 };
	MPI_Comm_rank(MPI_COMM_WORLD, &s.rank);
	MPI_Comm_size(MPI_COMM_WORLD, &s.nranks);
	struct opts o;
	if (parse_opts(argc, argv, &o)) {
		if (s.rank == 0)
			fprintf(stderr, "usage: mpirun -np N %s [--fork-policy copy|share|exclude|zero|kernel] "
				"[--fork-rank R] [--size BYTES] [--iters N] [--malloc] [--migrate]\n", argv[0]);
		MPI_Finalize();
		return 2;
	}
	int e = coh_context_create(NULL, &s.ctx);
	double t_pin = 0, t_win = 0;
	if (e)
		fail(&s, "coh_context_create", e);
	else if ((e = prepare(&s, &o, &t_pin)))
		fail(&s, "prepare", e);

	/* nobody exposes a window unless every rank got this far */
	int any_failed = 0;
	MPI_Allreduce(&s.failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	if (!any_failed) {
		MPI_Barrier(MPI_COMM_WORLD);   /* time the call, not the wait for the others */
		double t0 = MPI_Wtime();
		e = MPI_Win_create(s.buf, (MPI_Aint)s.size, 1, MPI_INFO_NULL, MPI_COMM_WORLD, &s.win);
		t_win = MPI_Wtime() - t0;
		if (e != MPI_SUCCESS)
			MPI_Abort(MPI_COMM_WORLD, 1);   /* collective: the others cannot go on either */
		say(&s, "; win_create %.0f us", t_win * 1e6);

		double t_put = 0, t_get = 0;
		ring_round(&s, 1, &t_put, &t_get);
		if (s.rank == o.fork_rank % s.nranks)
			fork_helper(&s, &o, 1);
		ring_round(&s, 2, &t_put, &t_get);
		t_put = t_get = 0;
		for (int i = 0; i < o.iters; i++)
			ring_round(&s, 3 + i, &t_put, &t_get);
		if (o.iters && t_put > 0 && t_get > 0)
			say(&s, "; put %.2f GB/s get %.2f GB/s", (double)s.half * o.iters / t_put / 1e9,
			    (double)s.half * o.iters / t_get / 1e9);
		if ((e = check_residency(&s, o.use_malloc ? NULL : s.target)))
			fail(&s, "coh_query", e);
		MPI_Win_free(&s.win);
		say(&s, "; %llu bytes verified%s", (unsigned long long)s.verified, s.failed ? "; FAILED" : "");
	}
	print_reports(&s);
	release(&s, &o);
	if (s.ctx)
		coh_context_unref(s.ctx);
	MPI_Allreduce(&s.failed, &any_failed, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
	MPI_Finalize();
	return any_failed;
}
