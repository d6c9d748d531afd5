/* SPDX-License-Identifier: MIT */
/* Helpers shared by the test programs. */
#ifndef COH_TESTS_COMMON_H
#define COH_TESTS_COMMON_H

#include <check.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "coherent.h"

/* A context on the live machine with only the host backend; fails the test on error. */
coh_context *t_ctx(void);
/* The host target the tests allocate on: NUMA node 0's, or, where node 0 is
 * offline or memory-less, the first host node with memory. */
coh_target *t_node0(coh_context *ctx);
/* Its NUMA node (0 on almost every machine; never assume it). */
int t_node0_id(coh_context *ctx);

/* Under AddressSanitizer (GCC 12's libasan) the allocator has no fork
 * handlers: a thread of the parent inside malloc at fork leaves the
 * allocator's lock held in the child, whose first malloc then waits
 * forever (seen in CI: test_host threads_and_fork).  Children forked while
 * other threads run keep to calls that allocate nothing there. */
#ifdef __SANITIZE_ADDRESS__
#define T_FORK_CHILD_MAY_MALLOC 0
#else
#define T_FORK_CHILD_MAY_MALLOC 1
#endif

/* Kernel behaviours tests depend on, detected at run time (never assumed). */
enum t_read_fault {
	T_READ_FAULT_UNKNOWN = -1,
	T_READ_FAULT_NOTHING = 0,   /* a read of untouched private anonymous memory maps no page of its own:
				       the shared zero page (not exclusive in pagemap) */
	T_READ_FAULT_POPULATES = 1, /* it maps a fresh exclusive page: reading changes residency */
};
/* What a read fault on untouched private anonymous memory does on this
 * kernel (pagemap present + exclusive bits of a page read but never written).
 * Tests that compare residency before and after must not read untouched
 * memory either way; this names the behaviour in their output. */
enum t_read_fault t_read_fault_behaviour(void);
const char *t_read_fault_name(enum t_read_fault b);
/* The threads of this process (/proc/self/task), or 0 when unreadable. */
int t_thread_count(void);
/* Runs a Check suite; returns the process exit code (0 pass, 1 fail). */
int t_run(Suite *s);
/* Writes text to root/rel, making the folders on the way (hand-written trees). */
void t_put_file(const char *root, const char *rel, const char *text);
/* Unpacks tarball into a fresh temporary folder; returns the folder of its single top entry. */
char *t_untar(const char *tarball);

#endif
