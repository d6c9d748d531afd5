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
/* The host target of NUMA node 0 (every Linux machine has one). */
coh_target *t_node0(coh_context *ctx);
/* Runs a Check suite; returns the process exit code (0 pass, 1 fail). */
int t_run(Suite *s);
/* Unpacks tarball into a fresh temporary folder; returns the folder of its single top entry. */
char *t_untar(const char *tarball);

#endif
