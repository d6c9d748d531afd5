/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

int coh_version(void)
{
	return (COH_VERSION_MAJOR << 16) | (COH_VERSION_MINOR << 8) | COH_VERSION_PATCH;
}

const char *coh_version_string(void)
{
	return COH_VERSION_STRING;
}

const char *coh_strerror(int err)
{
	if (err == INT32_MIN)
		return "Unknown error";
	if (err < 0)
		err = -err;
	switch (err) {
	case 0: return "Success";
	case EOPNOTSUPP: return "Operation not supported by this backend or target";
	case EROFS: return "Refused: the context replays a recorded fsroot (read-only)";
	case EXDEV: return "Target belongs to another context";
	case ENOENT: return "No such allocation, target or entry";
	case EINPROGRESS: return "Migration still in progress";
	case EPROTO: return "Backend ops table has a wrong ABI version or size";
	default: break;
	}
	/* strerror() of glibc returns a static, thread-safe string for known values. */
	return strerror(err);
}
