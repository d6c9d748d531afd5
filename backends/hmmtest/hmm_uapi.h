/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The uAPI of the Linux test_hmm driver (lib/test_hmm_uapi.h in the kernel
 * tree, Linux 6.1; unchanged for these commands in later trees).  That file is
 * not installed with the kernel headers, so its definitions are restated here
 * from the 6.1 source, under the kernel header's licence.
 */
#ifndef COH_HMMTEST_UAPI_H
#define COH_HMMTEST_UAPI_H

#include <linux/ioctl.h>
#include <linux/types.h>

struct hmm_dmirror_cmd {
	__u64 addr;     /* page-aligned start in the mirrored process */
	__u64 ptr;      /* user buffer: data or one snapshot byte per page */
	__u64 npages;
	__u64 cpages;   /* out: pages copied or migrated */
	__u64 faults;   /* out: device faults taken */
};

#define HMM_DMIRROR_READ            _IOWR('H', 0x00, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_WRITE           _IOWR('H', 0x01, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_DEV  _IOWR('H', 0x02, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_MIGRATE_TO_SYS  _IOWR('H', 0x03, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_SNAPSHOT        _IOWR('H', 0x04, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_EXCLUSIVE       _IOWR('H', 0x05, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_CHECK_EXCLUSIVE _IOWR('H', 0x06, struct hmm_dmirror_cmd)
#define HMM_DMIRROR_RELEASE         _IOWR('H', 0x07, struct hmm_dmirror_cmd)

/* Snapshot bytes: a location ORed with READ or WRITE (and PMD/PUD). */
enum {
	HMM_DMIRROR_PROT_ERROR = 0xFF,
	HMM_DMIRROR_PROT_NONE = 0x00,
	HMM_DMIRROR_PROT_READ = 0x01,
	HMM_DMIRROR_PROT_WRITE = 0x02,
	HMM_DMIRROR_PROT_PMD = 0x04,
	HMM_DMIRROR_PROT_PUD = 0x08,
	HMM_DMIRROR_PROT_ZERO = 0x10,
	HMM_DMIRROR_PROT_DEV_PRIVATE_LOCAL = 0x20,
	HMM_DMIRROR_PROT_DEV_PRIVATE_REMOTE = 0x30,
	HMM_DMIRROR_PROT_DEV_COHERENT_LOCAL = 0x40,
	HMM_DMIRROR_PROT_DEV_COHERENT_REMOTE = 0x50,
};

#endif
