/* SPDX-License-Identifier: MIT */
/*
 * linux/kfd_ioctl.h includes <drm/drm.h>, which Debian's linux-libc-dev
 * leaves to libdrm (as libdrm/drm.h, not drm/drm.h).  kfd_ioctl.h uses
 * nothing from it but the basic kernel types, so this stand-in is enough;
 * used only where no <drm/drm.h> is installed.
 */
#ifndef COH_DRM_SHIM_H
#define COH_DRM_SHIM_H
#include <linux/ioctl.h>
#include <linux/types.h>
#endif
