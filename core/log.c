/* SPDX-License-Identifier: MIT */
/* Logging: one callback per context, level from options or COH_LOG. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "internal.h"

static const char *const level_names[] = { "none", "err", "warn", "info", "debug" };

int coh_log_level_parse(const char *s)
{
	if (!s || !*s)
		return COH_LOG_NONE;
	if (s[0] >= '0' && s[0] <= '9') {
		int v = atoi(s);
		return v > COH_LOG_DEBUG ? COH_LOG_DEBUG : v;
	}
	for (int i = 0; i <= COH_LOG_DEBUG; i++)
		if (!strcasecmp(s, level_names[i]))
			return i;
	if (!strcasecmp(s, "error"))
		return COH_LOG_ERR;
	if (!strcasecmp(s, "warning"))
		return COH_LOG_WARN;
	return COH_LOG_NONE;
}

void coh_log(coh_context *ctx, int level, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	if (!ctx || level > ctx->log_level || level <= COH_LOG_NONE)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	pthread_mutex_lock(&ctx->log_lock);
	if (ctx->log_fn) {
		ctx->log_fn(ctx->log_data, level, msg);
	} else {
		char line[600];
		int n = snprintf(line, sizeof(line), "libcoherent: %s: %s\n", level_names[level], msg);
		if (n > (int)sizeof(line))
			n = sizeof(line);
		if (n > 0 && write(STDERR_FILENO, line, (size_t)n) < 0) {
			/* nowhere left to report it */
		}
	}
	pthread_mutex_unlock(&ctx->log_lock);
}
