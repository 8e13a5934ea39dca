/* SPDX-License-Identifier: (GPL-2.0 WITH Linux-syscall-note) OR MIT */
/*
 * REEF extensions to the amdkfd character device (/dev/kfd).
 *
 * Three ioctls that let a process preempt its own best-effort GPU work:
 * ask which operations a GPU offers, kill the waves it has running on a
 * GPU (only where the driver knows the process's VMID), and reset some or
 * all of its compute queues: kill their waves, drop every packet they have
 * not finished and map them again, empty. Every operation acts only on the
 * calling process's own waves and queues.
 *
 * The numbers use the amdkfd ioctl type ('K') with command numbers
 * 0xC0..0xC2. Upstream amdkfd uses 0x01 up to AMDKFD_COMMAND_END (0x24 in
 * Linux 6.1, 0x27 in 6.12) and AMD's out-of-tree amdgpu-dkms reserves
 * 0x80..0x86 (AMDKFD_COMMAND_START_2 .. AMDKFD_COMMAND_END_2), so 0xC0 is
 * clear of both.
 *
 * Interface 2.0 replaces 1.0: the HWS kill no longer reads VMID mapping
 * registers (the firmware resets the queues instead), the queue-scoped SQ
 * kill is gone (a per-queue reset replaces it) and RESET_QUEUE became
 * RESET_QUEUES with a new argument layout.
 */
#ifndef _UAPI_LINUX_REEF_KFD_H
#define _UAPI_LINUX_REEF_KFD_H

#include <linux/ioctl.h>
#include <linux/types.h>

#define REEF_KFD_VERSION_MAJOR		2
#define REEF_KFD_VERSION_MINOR		0
#define REEF_KFD_VERSION		((REEF_KFD_VERSION_MAJOR << 16) | \
					 REEF_KFD_VERSION_MINOR)

/* Bits of reef_kfd_query_args.supported_ops */
#define REEF_KFD_OP_KILL_WAVES		(1U << 0) /* SQ kill, no HWS only */
#define REEF_KFD_OP_RESET_PROCESS	(1U << 1) /* every compute queue */
#define REEF_KFD_OP_RESET_QUEUES	(1U << 2) /* named compute queues */

/* Values of reef_kfd_query_args.sched_policy (amdkfd's sched_policy) */
#define REEF_KFD_SCHED_HWS		0 /* firmware scheduler, oversubscription */
#define REEF_KFD_SCHED_HWS_NO_OVERSUB	1 /* firmware scheduler */
#define REEF_KFD_SCHED_NO_HWS		2 /* driver maps queues to HQD slots */
#define REEF_KFD_SCHED_MES		3 /* micro engine scheduler (gfx11+) */

/* Values of reef_kfd_reset_queues_args.mechanism */
#define REEF_KFD_MECH_NONE		0 /* nothing was mapped: pointers only */
#define REEF_KFD_MECH_HWS_UNMAP_RESET	1 /* UNMAP_QUEUES action RESET */
#define REEF_KFD_MECH_HQD_RESET		2 /* per-HQD dequeue of reset type */

/**
 * struct reef_kfd_query_args - REEF_KFD_IOC_QUERY
 * @gpu_id:		to KFD: gpu_id from the KFD topology, or 0 for
 *			the version alone
 * @flags:		to KFD: must be 0
 * @version:		from KFD: REEF_KFD_VERSION of the loaded driver
 * @supported_ops:	from KFD: REEF_KFD_OP_* this GPU supports now
 * @gfx_target_version:	from KFD: as in the topology, e.g. 90010 (gfx90a)
 * @sched_policy:	from KFD: REEF_KFD_SCHED_*
 * @num_xcc:		from KFD: compute dies (XCCs) of this KFD node
 * @max_queues:		from KFD: most ring bases one RESET_QUEUES takes
 */
struct reef_kfd_query_args {
	__u32 gpu_id;
	__u32 flags;
	__u32 version;
	__u32 supported_ops;
	__u32 gfx_target_version;
	__u32 sched_policy;
	__u32 num_xcc;
	__u32 max_queues;
};

/**
 * struct reef_kfd_kill_waves_args - REEF_KFD_IOC_KILL_WAVES
 * @gpu_id:	to KFD: gpu_id from the KFD topology
 * @flags:	to KFD: must be 0
 * @vmid_mask:	from KFD: the VMID whose waves were killed, as a bit; 0 when
 *		the caller has no active queue on this GPU (nothing of it
 *		can run)
 * @xcc_mask:	from KFD: XCCs the kill was sent to (0 when none)
 *
 * Offered only without HWS, where the driver itself assigned the caller's
 * VMID: SQ_CMD KILL is broadcast with the VMID check on, so only the
 * caller's waves end. The queues keep running; the killed dispatch still
 * completes from the queue's point of view (its output is incomplete).
 * -ESRCH: the caller has active queues but no VMID (the kill would be
 * a no-op, so the call fails rather than report success).
 */
struct reef_kfd_kill_waves_args {
	__u32 gpu_id;
	__u32 flags;
	__u32 vmid_mask;
	__u32 xcc_mask;
};

#define REEF_KFD_MAX_RESET_QUEUES	4 /* doorbells in one UNMAP_QUEUES */

/* reef_kfd_reset_queues_args.flags */
#define REEF_KFD_RESET_F_PROCESS	(1U << 0) /* every compute queue */

/**
 * struct reef_kfd_reset_queues_args - REEF_KFD_IOC_RESET_QUEUES
 * @ring_base:	to KFD: ring-buffer addresses of @num_queues of the caller's
 *		AQL compute queues (all 0 with REEF_KFD_RESET_F_PROCESS)
 * @read_index:	from KFD: per named queue, the 64-bit read index the queue
 *		restarts at
 * @dropped:	from KFD: per named queue, packets dropped that had not been
 *		read (old write index - read index)
 * @gpu_id:	to KFD: gpu_id from the KFD topology
 * @flags:	to KFD: REEF_KFD_RESET_F_*
 * @num_queues:	to KFD: entries used in @ring_base (1..4, or 0 with
 *		REEF_KFD_RESET_F_PROCESS); from KFD: queues reset
 * @mechanism:	from KFD: REEF_KFD_MECH_*
 *
 * For each queue: its waves are killed (reset-type preemption, nothing is
 * saved), its write index is set to its read index with an atomic
 * compare-and-exchange, its queue descriptor is initialised as at queue
 * creation, except for the ring position, CU mask and XCC assignment,
 * and it is mapped again. With HWS this is one UNMAP_QUEUES (action RESET,
 * by PASID or by doorbell offsets) and one runlist; without HWS one
 * reset-type HQD dequeue and one load per queue.
 *
 * User space, before the call: every producer of these queues stopped, no
 * slot reserved but not yet published. After it: set the header of every
 * slot in [read_index, old write index) to INVALID before reusing the ring,
 * complete the completion signal of every packet that has not completed
 * (dropped or in flight: a reset dispatch never signals) with an error
 * value, and resolve barrier packets that depend on them. A packet in
 * flight may still have completed before the reset.
 *
 * -EAGAIN: a write index moved while it was being rewound (a producer was
 * running). That queue was still reset and mapped, but nothing was dropped
 * from it: it continues from @read_index up to the new write index.
 * -EBUSY: the HWS runlist is oversubscribed (the firmware could map a queue
 * again before it is rewound) or the scheduler is halted; nothing changed.
 * -EACCES: amdkfd's hang recovery has reset a queue of the caller on this
 * GPU (Linux 6.12), which leaves them unusable; nothing changed.
 */
struct reef_kfd_reset_queues_args {
	__u64 ring_base[REEF_KFD_MAX_RESET_QUEUES];
	__u64 read_index[REEF_KFD_MAX_RESET_QUEUES];
	__u64 dropped[REEF_KFD_MAX_RESET_QUEUES];
	__u32 gpu_id;
	__u32 flags;
	__u32 num_queues;
	__u32 mechanism;
};

#define REEF_KFD_IOCTL_BASE		'K' /* same type as AMDKFD_IOCTL_BASE */
#define REEF_KFD_COMMAND_START		0xC0
#define REEF_KFD_COMMAND_END		0xC3

#define REEF_KFD_IOC_QUERY		\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC0, struct reef_kfd_query_args)
#define REEF_KFD_IOC_KILL_WAVES		\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC1, struct reef_kfd_kill_waves_args)
#define REEF_KFD_IOC_RESET_QUEUES	\
		_IOWR(REEF_KFD_IOCTL_BASE, 0xC2, struct reef_kfd_reset_queues_args)

#endif /* _UAPI_LINUX_REEF_KFD_H */
