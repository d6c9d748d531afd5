/* SPDX-License-Identifier: MIT */
/* Conformance: the concurrent group (cases to come). */
#include "suite.h"

static const struct conf_case cases[] = {
	{ NULL, NULL, NULL },
};

static void run(coh_target *t)
{
	(void)t;
}

const struct conf_group conf_concurrent = { "concurrent", run, cases };
