/* SPDX-License-Identifier: MIT */
/*
 * The conformance suite's shared parts: the context, the verdicts, the
 * helpers every group of cases uses, and the case registry (suite.c).
 */
#ifndef COH_CONFORMANCE_SUITE_H
#define COH_CONFORMANCE_SUITE_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coherent.h"

extern size_t ps;           /* the page size */
extern coh_context *ctx;    /* the context every case runs in */

enum { PASS, FAIL, SKIP };

/* One verdict of case `check` (a name of some group's case table: an
 * unlisted name is a FAIL of its own) on target t. */
void report(const coh_target *t, const char *check, int verdict, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* In a case function with a `name` and an `out:` label: FAIL and clean up. */
#define CHECK(cond, ...)                                       \
	do {                                                   \
		if (!(cond)) {                                 \
			report(t, name, FAIL, __VA_ARGS__);    \
			goto out;                              \
		}                                              \
	} while (0)

/* A case as documented: docs/conformance.md lists every name (a ctest
 * checks), with what it proves and where it is skipped. */
struct conf_case {
	const char *name;
	const char *proves;
	const char *skips;     /* the targets that skip it, and why; "" for none */
};

/* A group of cases: run() reports each of its cases on target t. */
struct conf_group {
	const char *name;
	void (*run)(coh_target *t);
	const struct conf_case *cases;   /* ended by { NULL } */
};

extern const struct conf_group conf_basic, conf_mm, conf_pin, conf_fork, conf_device, conf_concurrent;

/* helpers (suite.c) */
int first_policy(const coh_target *t);
bool is_host_kind(int tkind);
bool kind_fits_fresh(int tkind, int mkind);
bool kind_fits_written(int tkind, int mkind);
void fill(unsigned char *p, size_t len, unsigned seed);
bool same(const unsigned char *p, size_t len, unsigned seed);
bool readable(const void *p, size_t len);
/* coh_alloc with the case's usual properties: no huge pages, the target's
 * first fork policy; 0 or -errno. */
int alloc_plain(coh_target *t, size_t len, void **p);
/* A case's plain allocation of len bytes filled with fill(seed); NULL once
 * a skip (no alloc capability) or a failure is reported. */
unsigned char *case_alloc(coh_target *t, const char *name, size_t len, unsigned seed);
/* Under ThreadSanitizer, whether a loaded backend (nvidia) or the /dev/kfd
 * emulator holds a lock across fork that stays held in the child (their
 * atfork hooks), so that a fork or a new context there draws a lock-order
 * report: a checked design, not a race.  false without ThreadSanitizer. */
bool tsan_fork_lock_inherited(void);
/* Words of coh_pattern_word(pattern, offset) (what a device fill writes):
 * write them, find the first word that differs (len / 8: none), and the
 * coh_block_sum of each COH_SUM_BLOCK block of such a range. */
void pattern_fill(uint64_t *w, size_t len, uint64_t pattern);
size_t pattern_mismatch(const uint64_t *w, size_t len, uint64_t pattern);
void pattern_sums(uint64_t pattern, size_t len, uint64_t *sums);

#endif
