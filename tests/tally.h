/* SPDX-License-Identifier: MIT */
/* A pass/fail tally for the plain test programs that run in the VM (no Check
 * there): CHECK counts, prints what failed, and the program ends with
 * "N passed, N failed". */
#ifndef COH_TESTS_TALLY_H
#define COH_TESTS_TALLY_H

#include <stdio.h>

static int passed, failed;

#define CHECK(cond, ...)                          \
	do {                                      \
		if (cond) {                       \
			passed++;                 \
		} else {                          \
			failed++;                 \
			printf("FAIL: ");         \
			printf(__VA_ARGS__);      \
			printf("\n");             \
		}                                 \
	} while (0)

#endif
