/* SPDX-License-Identifier: MIT */
/* PCI device names through libpci, with the IDs read from the fsroot's sysfs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#ifdef COH_HAVE_LIBPCI
#include <pci/pci.h>

/* libpci's default handlers print, and its error handler exits: silence both. */
static void pci_quiet(char *msg, ...)
{
	(void)msg;
}
#endif

int coh_pci_name(const coh_context *ctx, const char *address, char *buf, size_t len)
{
	uint64_t vendor, device;
	char path[160];

	if (!len)
		return -EINVAL;
	buf[0] = '\0';
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/vendor", address);
	if (coh_fs_read_u64(ctx, path, &vendor))
		return -ENOENT;
	snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/device", address);
	if (coh_fs_read_u64(ctx, path, &device))
		return -ENOENT;
#ifdef COH_HAVE_LIBPCI
	struct pci_access *pacc = pci_alloc();
	if (pacc) {
		pacc->warning = pci_quiet;
		pacc->debug = pci_quiet;
		char name[256];
		const char *r = pci_lookup_name(pacc, name, sizeof(name),
						PCI_LOOKUP_VENDOR | PCI_LOOKUP_DEVICE | PCI_LOOKUP_NO_NUMBERS,
						(int)vendor, (int)device);
		if (r) {
			snprintf(buf, len, "%s", r);
			pci_cleanup(pacc);
			return 0;
		}
		pci_cleanup(pacc);
	}
#endif
	snprintf(buf, len, "[%04llx:%04llx]", (unsigned long long)vendor, (unsigned long long)device);
	return 0;
}
