/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * REEF extensions to the amdkfd character device (/dev/kfd).
 *
 * Three ioctls that let a process preempt its own best-effort GPU work:
 * kill the waves it has running on a GPU, drop the packets still waiting
 * in one of its user-mode queues, and ask which of these a GPU supports.
 * Every operation acts only on the calling process's own waves and queues.
 *
 * The numbers use the amdkfd ioctl type ('K') with command numbers
 * 0xC0..0xC2. Upstream amdkfd uses 0x01 up to AMDKFD_COMMAND_END (0x24 in
 * Linux 6.1, 0x27 in 6.12) and AMD's out-of-tree amdgpu-dkms reserves
 * 0x80..0x86 (AMDKFD_COMMAND_START_2 .. AMDKFD_COMMAND_END_2), so 0xC0 is
 * clear of both.
 */
#ifndef _UAPI_LINUX_REEF_KFD_H
#define _UAPI_LINUX_REEF_KFD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define REEF_KFD_VERSION_MAJOR		1
#define REEF_KFD_VERSION_MINOR		0
#define REEF_KFD_VERSION		((REEF_KFD_VERSION_MAJOR << 16) | \
					 REEF_KFD_VERSION_MINOR)

/* Bits of reef_kfd_query_args.supported_ops */
#define REEF_KFD_OP_KILL_WAVES		(1U << 0) /* process-wide kill */
#define REEF_KFD_OP_KILL_QUEUE_WAVES	(1U << 1) /* REEF_KFD_KILL_F_QUEUE */
#define REEF_KFD_OP_RESET_QUEUE		(1U << 2)

/* Values of reef_kfd_query_args.sched_policy (amdkfd's sched_policy) */
#define REEF_KFD_SCHED_HWS		0 /* firmware scheduler, oversubscription */
#define REEF_KFD_SCHED_HWS_NO_OVERSUB	1 /* firmware scheduler */
#define REEF_KFD_SCHED_NO_HWS		2 /* driver maps queues to HQD slots */
#define REEF_KFD_SCHED_MES		3 /* micro engine scheduler (gfx11+) */

/**
 * struct reef_kfd_query_args - REEF_KFD_IOC_QUERY
 * @gpu_id:		to KFD: gpu_id from the KFD topology, or 0 for
 *			the version alone
 * @flags:		to KFD: must be 0
 * @version:		from KFD: REEF_KFD_VERSION of the loaded driver
 * @supported_ops:	from KFD: REEF_KFD_OP_* this GPU supports now
 * @gfx_target_version:	from KFD: as in the topology, e.g. 90006 (gfx906)
 * @sched_policy:	from KFD: REEF_KFD_SCHED_*
 * @num_xcc:		from KFD: compute dies (XCCs) of this KFD node
 * @pad:		must be 0
 */
struct reef_kfd_query_args {
	__u32 gpu_id;
	__u32 flags;
	__u32 version;
	__u32 supported_ops;
	__u32 gfx_target_version;
	__u32 sched_policy;
	__u32 num_xcc;
	__u32 pad;
};

/* reef_kfd_kill_waves_args.flags */
#define REEF_KFD_KILL_F_QUEUE		(1U << 0) /* only @ring_base's waves */

/**
 * struct reef_kfd_kill_waves_args - REEF_KFD_IOC_KILL_WAVES
 * @ring_base:	to KFD: ring-buffer address of one of the caller's queues
 *		(with REEF_KFD_KILL_F_QUEUE only, else must be 0)
 * @gpu_id:	to KFD: gpu_id from the KFD topology
 * @flags:	to KFD: REEF_KFD_KILL_F_*
 * @vmid_mask:	from KFD: VMIDs whose waves were killed; 0 when the caller
 *		had no VMID on this GPU (nothing of it was running)
 * @xcc_mask:	from KFD: XCCs the kill was sent to (0 when none)
 *
 * Kills the waves of the calling process only: the SQ command is issued
 * with its VMID check on, for the VMID(s) mapped to the caller's PASID.
 * The kernel returns once the command has been written; the waves end
 * within microseconds. Killed dispatches still complete from the queue's
 * point of view.
 */
struct reef_kfd_kill_waves_args {
	__u64 ring_base;
	__u32 gpu_id;
	__u32 flags;
	__u32 vmid_mask;
	__u32 xcc_mask;
};

/**
 * struct reef_kfd_reset_queue_args - REEF_KFD_IOC_RESET_QUEUE
 * @ring_base:	to KFD: ring-buffer address of one of the caller's AQL queues
 * @read_index:	from KFD: the queue's 64-bit read index after it was
 *		unmapped; its write index now equals it
 * @dropped:	from KFD: packets dropped (old write index - read index)
 * @gpu_id:	to KFD: gpu_id from the KFD topology
 * @flags:	to KFD: must be 0
 *
 * Unmaps the queue through the scheduler, sets its write index to its read
 * index, re-initialises its queue descriptor and maps it again. User space
 * must not submit to the queue while the call runs.
 */
struct reef_kfd_reset_queue_args {
	__u64 ring_base;
	__u64 read_index;
	__u64 dropped;
	__u32 gpu_id;
	__u32 flags;
};

#define REEF_KFD_IOCTL_BASE		'K' /* same type as AMDKFD_IOCTL_BASE */
#define REEF_KFD_COMMAND_START		0xC0
#define REEF_KFD_COMMAND_END		0xC3

#define REEF_KFD_IOC_QUERY		\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC0, struct reef_kfd_query_args)
#define REEF_KFD_IOC_KILL_WAVES		\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC1, struct reef_kfd_kill_waves_args)
#define REEF_KFD_IOC_RESET_QUEUE	\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC2, struct reef_kfd_reset_queue_args)

#endif /* _UAPI_LINUX_REEF_KFD_H */
