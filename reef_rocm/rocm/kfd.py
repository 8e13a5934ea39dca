"""Python binding for the REEF amdkfd ioctls (``kfd_patch/include/uapi/linux/reef_kfd.h``).

The patched amdkfd driver (see ``docs/kfd_patch.md``) adds three ioctls on ``/dev/kfd``:
QUERY (version and per-GPU supported operations), RESET_QUEUES (reset all, or up to four
named, of the calling process's compute queues: waves killed, unfinished packets dropped,
queues mapped again, empty) and KILL_WAVES (SQ kill of the calling process's waves, only
where the driver runs without the hardware scheduler). This module wraps them with
``fcntl.ioctl`` and ctypes structures, and also wraps stock amdkfd's
``AMDKFD_IOC_UPDATE_QUEUE`` (queue percentage 0), the one preemption an unpatched kernel
offers (see :data:`UNPATCHED_QUEUE_SUSPEND` for its cost).

The structure layouts and ioctl numbers are written out here once; ``tests/kfd`` compiles
a C program against the uapi header (and the system's ``linux/kfd_ioctl.h``) and checks
that they match byte for byte.

Entry points:

* :func:`kfd_status` never raises: it says whether ``/dev/kfd`` exists, whether the
  patch is loaded, its version, and which operations each GPU supports. ``reef doctor``
  and the backends' capability reports use it; :func:`preemption_options` turns it into
  the preemption levels a scheduler can choose, each with its expected cost.
* :class:`KfdDevice` performs the operations on one GPU (by KFD ``gpu_id``) and raises
  :class:`~reef_rocm.errors.BackendUnavailable`, :class:`~reef_rocm.errors.UnsupportedError`
  or :class:`~reef_rocm.errors.GpuError`.

Only the process that opened ``/dev/kfd`` may use the descriptor (amdkfd checks this), and
the queues a reset can find are those the same process created through ROCr/HIP: amdkfd
has one KFD process per address space, so the descriptor opened here and the one the HIP
runtime opened refer to the same queues.

Nothing here has run against a real AMD GPU.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError

DEV_KFD = "/dev/kfd"
KFD_SYSFS = "/sys/class/kfd/kfd"

# --- constants of reef_kfd.h (checked against the header by tests/kfd) ----------------

REEF_KFD_VERSION_MAJOR = 2
REEF_KFD_VERSION_MINOR = 0
REEF_KFD_VERSION = (REEF_KFD_VERSION_MAJOR << 16) | REEF_KFD_VERSION_MINOR

REEF_KFD_OP_KILL_WAVES = 1 << 0
REEF_KFD_OP_RESET_PROCESS = 1 << 1
REEF_KFD_OP_RESET_QUEUES = 1 << 2

REEF_KFD_SCHED_HWS = 0
REEF_KFD_SCHED_HWS_NO_OVERSUB = 1
REEF_KFD_SCHED_NO_HWS = 2
REEF_KFD_SCHED_MES = 3

REEF_KFD_MECH_NONE = 0
REEF_KFD_MECH_HWS_UNMAP_RESET = 1
REEF_KFD_MECH_HQD_RESET = 2

REEF_KFD_MAX_RESET_QUEUES = 4
REEF_KFD_RESET_F_PROCESS = 1 << 0

REEF_KFD_IOCTL_BASE = ord("K")
REEF_KFD_COMMAND_START = 0xC0
REEF_KFD_COMMAND_END = 0xC3

OP_NAMES = {
    REEF_KFD_OP_KILL_WAVES: "kill_waves",
    REEF_KFD_OP_RESET_PROCESS: "reset_process",
    REEF_KFD_OP_RESET_QUEUES: "reset_queues",
}
# Interface 1.0 called the queue reset "reset_queue"; supports() still answers to it.
_OP_ALIASES = {"reset_queue": "reset_queues"}
SCHED_NAMES = {
    REEF_KFD_SCHED_HWS: "hws",
    REEF_KFD_SCHED_HWS_NO_OVERSUB: "hws_no_oversubscription",
    REEF_KFD_SCHED_NO_HWS: "no_hws",
    REEF_KFD_SCHED_MES: "mes",
}
MECHANISM_NAMES = {
    REEF_KFD_MECH_NONE: "none (nothing was mapped)",
    REEF_KFD_MECH_HWS_UNMAP_RESET: "hws_unmap_reset",
    REEF_KFD_MECH_HQD_RESET: "hqd_reset",
}


class ReefKfdQueryArgs(ctypes.Structure):
    _fields_ = [
        ("gpu_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("version", ctypes.c_uint32),
        ("supported_ops", ctypes.c_uint32),
        ("gfx_target_version", ctypes.c_uint32),
        ("sched_policy", ctypes.c_uint32),
        ("num_xcc", ctypes.c_uint32),
        ("max_queues", ctypes.c_uint32),
    ]


class ReefKfdKillWavesArgs(ctypes.Structure):
    _fields_ = [
        ("gpu_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("vmid_mask", ctypes.c_uint32),
        ("xcc_mask", ctypes.c_uint32),
    ]


class ReefKfdResetQueuesArgs(ctypes.Structure):
    _fields_ = [
        ("ring_base", ctypes.c_uint64 * REEF_KFD_MAX_RESET_QUEUES),
        ("read_index", ctypes.c_uint64 * REEF_KFD_MAX_RESET_QUEUES),
        ("dropped", ctypes.c_uint64 * REEF_KFD_MAX_RESET_QUEUES),
        ("gpu_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("num_queues", ctypes.c_uint32),
        ("mechanism", ctypes.c_uint32),
    ]


# Stock amdkfd's AMDKFD_IOC_UPDATE_QUEUE (include/uapi/linux/kfd_ioctl.h, every 6.x kernel):
# the unpatched way to take a queue off the GPU (percentage 0) and put it back.
AMDKFD_IOC_UPDATE_QUEUE_NR = 0x07


class KfdIoctlUpdateQueueArgs(ctypes.Structure):
    _fields_ = [
        ("ring_base_address", ctypes.c_uint64),
        ("queue_id", ctypes.c_uint32),
        ("ring_size", ctypes.c_uint32),
        ("queue_percentage", ctypes.c_uint32),
        ("queue_priority", ctypes.c_uint32),
    ]


# Linux's generic _IOC encoding (x86-64 and arm64; amdkfd supports no other ABI that
# differs): nr bits 0-7, type bits 8-15, size bits 16-29, direction bits 30-31.
_IOC_WRITE = 1
_IOC_READ = 2


def _ioc(direction: int, type_: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (type_ << 8) | nr


def _iowr(nr: int, struct: type[ctypes.Structure]) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, REEF_KFD_IOCTL_BASE, nr, ctypes.sizeof(struct))


REEF_KFD_IOC_QUERY = _iowr(0xC0, ReefKfdQueryArgs)
REEF_KFD_IOC_KILL_WAVES = _iowr(0xC1, ReefKfdKillWavesArgs)
REEF_KFD_IOC_RESET_QUEUES = _iowr(0xC2, ReefKfdResetQueuesArgs)
AMDKFD_IOC_UPDATE_QUEUE = _ioc(_IOC_WRITE, REEF_KFD_IOCTL_BASE, AMDKFD_IOC_UPDATE_QUEUE_NR,
                               ctypes.sizeof(KfdIoctlUpdateQueueArgs))


def ops_names(mask: int) -> list[str]:
    """Names of the REEF_KFD_OP_* bits set in ``mask``."""
    return [name for bit, name in OP_NAMES.items() if mask & bit]


def version_string(version: int) -> str:
    return f"{version >> 16}.{version & 0xFFFF}"


# --- topology ---------------------------------------------------------------------------


@dataclass(frozen=True)
class KfdNode:
    """One GPU node of the KFD topology (CPU nodes, whose gpu_id is 0, are left out)."""

    node: int
    gpu_id: int
    name: str
    gfx_target_version: int
    # PCI address (location_id = bus << 8 | device << 3 | function; bits 28+ hold the
    # partition on partitioned GPUs) and unique_id: how a HIP/HSA device is matched to its
    # node, since runtime ordinals do not follow KFD node order. None when not reported.
    domain: int | None = None
    location_id: int | None = None
    unique_id: int | None = None


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def topology_gpus(sysfs_root: str | os.PathLike[str] = KFD_SYSFS) -> list[KfdNode]:
    """GPU nodes from ``<sysfs_root>/topology/nodes/*`` in node order; [] if absent."""
    nodes_dir = Path(sysfs_root) / "topology" / "nodes"
    try:
        entries = sorted((p for p in nodes_dir.iterdir() if p.name.isdigit()),
                         key=lambda p: int(p.name))
    except OSError:
        return []
    gpus = []
    for entry in entries:
        gpu_id = _read_int(entry / "gpu_id")
        if not gpu_id:  # CPU node or unreadable
            continue
        try:
            name = (entry / "name").read_text().strip()
        except OSError:
            name = ""
        props: dict[str, int] = {}
        try:
            # "properties" is "key value" lines; gfx_target_version is e.g. 90006 (gfx906)
            for line in (entry / "properties").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key in ("gfx_target_version", "domain", "location_id", "unique_id"):
                    try:
                        props[key] = int(value)
                    except ValueError:
                        continue
        except OSError:
            pass
        gpus.append(
            KfdNode(
                int(entry.name), gpu_id, name, props.get("gfx_target_version", 0),
                props.get("domain"), props.get("location_id"), props.get("unique_id"),
            )  # fmt: skip
        )
    return gpus


# --- the device -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    version: int
    supported_ops: int
    gfx_target_version: int
    sched_policy: int
    num_xcc: int
    max_queues: int = 0

    @property
    def ops(self) -> list[str]:
        return ops_names(self.supported_ops)

    @property
    def sched_name(self) -> str:
        return SCHED_NAMES.get(self.sched_policy, f"unknown({self.sched_policy})")


@dataclass(frozen=True)
class KillResult:
    vmid_mask: int  # the VMID whose waves were killed (a bit); 0: nothing of ours ran
    xcc_mask: int  # XCCs the command went to


@dataclass(frozen=True)
class ResetResult:
    read_index: int  # 64-bit read index the queue restarts at; write index now equals it
    dropped: int  # packets dropped that had not been read


@dataclass(frozen=True)
class QueuesResetResult:
    """What one RESET_QUEUES did.

    ``queues`` has one entry per named ring (empty after a process-wide reset: read each
    queue's indices from the queue itself). ``mechanism`` names how the driver did it.
    """

    num_queues: int
    mechanism: str
    queues: tuple[ResetResult, ...] = ()


class _KfdFile:
    """/dev/kfd opened once per process (amdkfd rejects a descriptor used after fork)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()

    def fd(self) -> int:
        with self._lock:
            if self._fd is None or self._pid != os.getpid():
                try:
                    self._fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
                except FileNotFoundError as e:
                    raise BackendUnavailable(
                        f"{self.path} does not exist: the amdgpu driver with KFD "
                        "(CONFIG_HSA_AMD) is not loaded, or this machine has no AMD GPU"
                    ) from e
                except PermissionError as e:
                    raise BackendUnavailable(
                        f"cannot open {self.path}: permission denied (add the user to "
                        "the 'render' group)"
                    ) from e
                except OSError as e:
                    raise BackendUnavailable(f"cannot open {self.path}: {e.strerror}") from e
                self._pid = os.getpid()
            return self._fd

    def close(self) -> None:
        with self._lock:
            if self._fd is not None and self._pid == os.getpid():
                os.close(self._fd)
            self._fd = None


_ERRNO_HINTS = {
    errno.EAGAIN: "a write index moved during the reset (a producer was running): the "
                  "queue was reset and mapped but nothing was dropped from it",
    errno.EBUSY: "the HWS runlist is oversubscribed or the scheduler is halted; nothing "
                 "changed",
    errno.ESRCH: "the process has active queues but no VMID; nothing was killed",
    errno.ENOENT: "no queue of this process with that ring base on this GPU",
    errno.EIO: "the scheduler is stopped, hung or the GPU is being reset",
}


def _ioctl(kfile: _KfdFile, name: str, request: int, args: ctypes.Structure) -> None:
    """Issue one ioctl on /dev/kfd; map errno to the project's exceptions."""
    buf = bytearray(bytes(args))
    try:
        fcntl.ioctl(kfile.fd(), request, buf, True)
    except OSError as e:
        code = e.errno or 0
        if code == errno.ENOTTY:
            raise BackendUnavailable(
                f"{kfile.path} does not know {name}: the REEF kfd patch is not loaded "
                "(see docs/kfd_patch.md, tools/install-kfd-patch.sh)"
            ) from e
        if code == errno.EOPNOTSUPP:
            raise UnsupportedError(
                f"{name} is not supported on GPU {getattr(args, 'gpu_id', '?')} "
                "(gfx9 without MES or SR-IOV only; the SQ kill only without HWS; AQL "
                "compute queues only; see docs/kfd_patch.md)"
            ) from e
        hint = _ERRNO_HINTS.get(code)
        raise GpuError(name, code, os.strerror(code) + (f" ({hint})" if hint else "")) from e
    ctypes.memmove(ctypes.addressof(args), bytes(buf), len(buf))


def _check_ring(ring_base: int) -> None:
    if not 0 < ring_base < 2**64:
        raise ValueError(f"ring_base must be a non-zero 64-bit address, got {ring_base:#x}")


class KfdDevice:
    """REEF operations on one GPU, named by its KFD topology ``gpu_id``."""

    def __init__(self, gpu_id: int, dev_path: str = DEV_KFD,
                 _kfile: _KfdFile | None = None) -> None:
        if not 0 < gpu_id < 2**32:
            raise ValueError(f"gpu_id must be a non-zero 32-bit KFD gpu_id, got {gpu_id}")
        self.gpu_id = gpu_id
        self._kfile = _kfile or _KfdFile(dev_path)

    @classmethod
    def all(cls, dev_path: str = DEV_KFD,
            sysfs_root: str | os.PathLike[str] = KFD_SYSFS) -> list[KfdDevice]:
        """One KfdDevice per GPU in the topology, sharing one descriptor."""
        kfile = _KfdFile(dev_path)
        return [cls(n.gpu_id, dev_path, kfile) for n in topology_gpus(sysfs_root)]

    def close(self) -> None:
        self._kfile.close()

    def __enter__(self) -> KfdDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def query(self) -> QueryResult:
        args = ReefKfdQueryArgs(gpu_id=self.gpu_id)
        _ioctl(self._kfile, "REEF_KFD_IOC_QUERY", REEF_KFD_IOC_QUERY, args)
        return QueryResult(args.version, args.supported_ops, args.gfx_target_version,
                           args.sched_policy, args.num_xcc, args.max_queues)

    def kill_waves(self) -> KillResult:
        """Kill this process's running waves on the GPU (SQ kill; driver without HWS only).

        Also kills the process's real-time waves: issue it before launching RT work. The
        queues keep running; a killed dispatch completes with incomplete output.
        """
        args = ReefKfdKillWavesArgs(gpu_id=self.gpu_id)
        _ioctl(self._kfile, "REEF_KFD_IOC_KILL_WAVES", REEF_KFD_IOC_KILL_WAVES, args)
        return KillResult(args.vmid_mask, args.xcc_mask)

    def reset_queues(self, ring_bases: Sequence[int]) -> QueuesResetResult:
        """Reset up to four of this process's AQL queues, named by ring address.

        Their waves are killed, their unfinished packets dropped (write index := read
        index) and they are mapped again, empty; the process's other queues keep running
        (with HWS they see one runlist resubmission). The caller must follow the contract
        in ``reef_kfd.h``: no producer running during the call; afterwards invalidate the
        dropped slots and complete their signals with an error.
        """
        bases = list(ring_bases)
        if not 1 <= len(bases) <= REEF_KFD_MAX_RESET_QUEUES:
            raise ValueError(f"reset_queues takes 1 to {REEF_KFD_MAX_RESET_QUEUES} ring "
                             f"bases, got {len(bases)}")
        if len(set(bases)) != len(bases):
            raise ValueError("reset_queues: a ring base is named twice")
        for b in bases:
            _check_ring(b)
        args = ReefKfdResetQueuesArgs(gpu_id=self.gpu_id, num_queues=len(bases))
        for i, b in enumerate(bases):
            args.ring_base[i] = b
        _ioctl(self._kfile, "REEF_KFD_IOC_RESET_QUEUES", REEF_KFD_IOC_RESET_QUEUES, args)
        return QueuesResetResult(
            args.num_queues, MECHANISM_NAMES.get(args.mechanism, str(args.mechanism)),
            tuple(ResetResult(args.read_index[i], args.dropped[i])
                  for i in range(len(bases))))

    def reset_process(self) -> QueuesResetResult:
        """Reset every compute queue of this process on the GPU (REEF's process-wide kill).

        With HWS: one UNMAP_QUEUES (action RESET, by PASID) and one runlist. Hits the
        process's real-time queues too; use :meth:`reset_queues` to spare them.
        """
        args = ReefKfdResetQueuesArgs(gpu_id=self.gpu_id, flags=REEF_KFD_RESET_F_PROCESS)
        _ioctl(self._kfile, "REEF_KFD_IOC_RESET_QUEUES", REEF_KFD_IOC_RESET_QUEUES, args)
        return QueuesResetResult(
            args.num_queues, MECHANISM_NAMES.get(args.mechanism, str(args.mechanism)))

    def reset_queue(self, ring_base: int) -> ResetResult:
        """Reset one queue (the 1.0 name; see :meth:`reset_queues`)."""
        return self.reset_queues([ring_base]).queues[0]

    def update_queue(self, queue_id: int, ring_base: int, ring_size: int,
                     percentage: int, priority: int) -> None:
        """Stock ``AMDKFD_IOC_UPDATE_QUEUE`` (no patch needed); see UNPATCHED_QUEUE_SUSPEND.

        ``queue_id`` is the KFD queue id AMDKFD_IOC_CREATE_QUEUE returned (known to whoever
        created the queue, e.g. the HSA queue manager; HIP does not expose it). amdkfd
        overwrites the ring address, ring size, percentage and priority with the values
        given, so pass the queue's own ring and priority. Percentage 0 takes the queue off
        the GPU with its waves saved (CWSR), 100 puts it back.
        """
        if not 0 <= percentage <= 100:
            raise ValueError(f"percentage must be 0..100, got {percentage}")
        if not 0 <= priority <= 15:
            raise ValueError(f"priority must be 0..15 (KFD_MAX_QUEUE_PRIORITY), got {priority}")
        if ring_size <= 0 or ring_size & (ring_size - 1):
            raise ValueError(f"ring_size must be a power of two, got {ring_size}")
        _check_ring(ring_base)
        args = KfdIoctlUpdateQueueArgs(ring_base, queue_id, ring_size, percentage, priority)
        _ioctl(self._kfile, "AMDKFD_IOC_UPDATE_QUEUE", AMDKFD_IOC_UPDATE_QUEUE, args)

    def suspend_queue(self, queue_id: int, ring_base: int, ring_size: int,
                      priority: int) -> None:
        """Unpatched preemption: take one queue off the GPU (percentage 0)."""
        self.update_queue(queue_id, ring_base, ring_size, 0, priority)

    def resume_queue(self, queue_id: int, ring_base: int, ring_size: int,
                     priority: int) -> None:
        """Put a queue taken off by :meth:`suspend_queue` back (percentage 100)."""
        self.update_queue(queue_id, ring_base, ring_size, 100, priority)


# --- preemption levels, each with its expected cost --------------------------------------


@dataclass(frozen=True)
class PreemptionOption:
    """One way to preempt best-effort work on a GPU, for the scheduler to choose from."""

    name: str  # "reset_queues", "reset_process", "kill_waves", "queue_suspend"
    needs_patch: bool
    scope: str  # what it hits
    mechanism: str  # what the driver does
    expected_cost: str  # from the sources; nothing here was measured on an AMD GPU
    verified_on_hardware: bool = False


RESET_QUEUES_HWS = PreemptionOption(
    "reset_queues", True, "the named queues of the calling process (RT queues spared)",
    "UNMAP_QUEUES action RESET by doorbell offsets, MQD re-initialised, one runlist",
    "one firmware unmap of the named queues plus one runlist resubmission for the whole "
    "GPU (whether the firmware preempts still-mapped queues on a new runlist is unverified)")
RESET_PROCESS_HWS = PreemptionOption(
    "reset_process", True, "every compute queue of the calling process (RT queues too)",
    "UNMAP_QUEUES action RESET by PASID, MQDs re-initialised, one runlist",
    "one firmware unmap of the caller's queues plus one runlist resubmission; the caller's "
    "RT work must be launched after it returns")
RESET_QUEUES_NO_HWS = PreemptionOption(
    "reset_queues", True, "the named queues of the calling process",
    "reset-type dequeue of each queue's own HQD, MQD re-initialised, HQD loaded again",
    "one HQD dequeue and one load per queue; no other queue is touched")
KILL_WAVES_NO_HWS = PreemptionOption(
    "kill_waves", True, "every wave of the calling process's VMID",
    "SQ_CMD KILL broadcast with the VMID check on, the VMID the driver assigned",
    "two register writes per XCC; queues keep running and the killed dispatch completes")
UNPATCHED_QUEUE_SUSPEND = PreemptionOption(
    "queue_suspend", False, "one queue (by KFD queue id); its waves are saved, not killed",
    "stock AMDKFD_IOC_UPDATE_QUEUE with percentage 0 (and 100 to resume)",
    "with HWS every call unmaps every dynamic queue of the GPU (all processes, CWSR save of "
    "their waves) and resubmits the runlist: two device-wide preemptions per "
    "suspend/resume pair; needs the KFD queue id, which HIP does not expose")
UNPATCHED_QUEUE_SUSPEND_NO_HWS = PreemptionOption(
    "queue_suspend", False, "one queue (by KFD queue id); its waves are saved, not killed",
    "stock AMDKFD_IOC_UPDATE_QUEUE with percentage 0: the queue's own HQD is dequeued",
    "one HQD dequeue with wave save per suspend and one load per resume; no other queue is "
    "touched; needs the KFD queue id, which HIP does not expose")

AMDGPU_SCHED_POLICY_PARAM = "/sys/module/amdgpu/parameters/sched_policy"


def module_sched_policy(path: str | os.PathLike[str] = AMDGPU_SCHED_POLICY_PARAM) -> str:
    """amdgpu's ``sched_policy`` module parameter as a SCHED_NAMES value ("" if unreadable).

    Readable without the patch, so the cost of the unpatched option can be stated.
    """
    value = _read_int(Path(path))
    return "" if value is None else SCHED_NAMES.get(value, "")


def preemption_options(status: KfdStatus, gpu_id: int,
                       sched_policy: str | None = None) -> list[PreemptionOption]:
    """The preemption levels available on ``gpu_id``, narrowest scope first.

    ``sched_policy`` (a SCHED_NAMES value) is used when the patch cannot report it; by
    default it is read from amdgpu's module parameter.
    """
    if sched_policy is None:
        sched_policy = module_sched_policy()
    gpu = status.gpus.get(gpu_id)
    opts: list[PreemptionOption] = []
    if status.patch_loaded and gpu is not None and not gpu.error:
        no_hws = gpu.sched_policy == "no_hws"
        if "reset_queues" in gpu.supported_ops:
            opts.append(RESET_QUEUES_NO_HWS if no_hws else RESET_QUEUES_HWS)
        if "kill_waves" in gpu.supported_ops:
            opts.append(KILL_WAVES_NO_HWS)
        if "reset_process" in gpu.supported_ops:
            opts.append(RESET_PROCESS_HWS)
    if status.dev_kfd:
        policy = gpu.sched_policy if gpu is not None and gpu.sched_policy else sched_policy
        # Unknown policy: assume HWS, amdgpu's default and the costlier case
        opts.append(UNPATCHED_QUEUE_SUSPEND_NO_HWS if policy == "no_hws"
                    else UNPATCHED_QUEUE_SUSPEND)
    return opts


# --- status for `reef doctor` and capability reports ------------------------------------


@dataclass(frozen=True)
class GpuKfdStatus:
    gpu_id: int
    name: str
    gfx_target_version: int
    supported_ops: list[str] = field(default_factory=list)
    sched_policy: str = ""
    num_xcc: int = 0
    error: str = ""  # why the query of this GPU failed, "" if it did not


@dataclass(frozen=True)
class KfdStatus:
    dev_kfd: bool  # /dev/kfd exists
    patch_loaded: bool  # the running amdkfd answers REEF_KFD_IOC_QUERY
    patch_version: str | None  # "2.0" when loaded
    gpus: dict[int, GpuKfdStatus] = field(default_factory=dict)  # by gpu_id
    reason: str = ""  # why the patch cannot be used, "" when it can

    def supports(self, gpu_id: int, op: str) -> bool:
        """Whether ``op`` ("kill_waves", "reset_process", "reset_queues") works on gpu_id."""
        gpu = self.gpus.get(gpu_id)
        op = _OP_ALIASES.get(op, op)
        return bool(self.patch_loaded and gpu and op in gpu.supported_ops)

    @property
    def any_kill(self) -> bool:
        """Whether some GPU can end this process's running waves (SQ kill or reset)."""
        return any({"kill_waves", "reset_process"} & set(g.supported_ops)
                   for g in self.gpus.values())

    def describe(self) -> list[str]:
        """Human-readable lines for `reef doctor`."""
        if not self.patch_loaded:
            return [f"kfd patch: not available ({self.reason})"]
        lines = [f"kfd patch: version {self.patch_version}"]
        for g in self.gpus.values():
            ops = ", ".join(g.supported_ops) or "none"
            extra = f" (error: {g.error})" if g.error else ""
            lines.append(f"  gpu_id {g.gpu_id} {g.name} gfx_target_version "
                         f"{g.gfx_target_version} sched {g.sched_policy or '?'}: {ops}{extra}")
        return lines


def kfd_status(dev_path: str = DEV_KFD,
               sysfs_root: str | os.PathLike[str] = KFD_SYSFS) -> KfdStatus:
    """Probe /dev/kfd and the REEF patch without raising (for doctor and capabilities)."""
    if not os.path.exists(dev_path):
        return KfdStatus(False, False, None,
                         reason=f"{dev_path} does not exist (no AMD GPU or amdgpu not loaded)")
    kfile = _KfdFile(dev_path)
    try:
        args = ReefKfdQueryArgs(gpu_id=0)
        try:
            _ioctl(kfile, "REEF_KFD_IOC_QUERY", REEF_KFD_IOC_QUERY, args)
        except BackendUnavailable as e:
            return KfdStatus(True, False, None, reason=str(e))
        except (UnsupportedError, GpuError) as e:
            return KfdStatus(True, False, None, reason=f"query failed: {e}")
        if args.version >> 16 != REEF_KFD_VERSION_MAJOR:
            return KfdStatus(True, False, version_string(args.version),
                             reason=f"driver interface {version_string(args.version)} is "
                             f"not compatible with this binding "
                             f"({version_string(REEF_KFD_VERSION)})")
        gpus: dict[int, GpuKfdStatus] = {}
        for node in topology_gpus(sysfs_root):
            try:
                q = KfdDevice(node.gpu_id, dev_path, kfile).query()
                gpus[node.gpu_id] = GpuKfdStatus(node.gpu_id, node.name, q.gfx_target_version,
                                                 q.ops, q.sched_name, q.num_xcc)
            except (BackendUnavailable, UnsupportedError, GpuError) as e:
                gpus[node.gpu_id] = GpuKfdStatus(node.gpu_id, node.name,
                                                 node.gfx_target_version, error=str(e))
        reason = "" if gpus else f"no GPU in {sysfs_root}/topology"
        return KfdStatus(True, True, version_string(args.version), gpus, reason)
    finally:
        kfile.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m reef_rocm.rocm.kfd``: print the status (the install script verifies with it)."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m reef_rocm.rocm.kfd",
                                     description="Report the REEF kfd patch status")
    parser.add_argument("--json", action="store_true", help="print the status as JSON")
    parser.add_argument("--require-patch", action="store_true",
                        help="exit 1 unless the patch answers REEF_KFD_IOC_QUERY")
    parser.add_argument("--require-gpu", action="store_true",
                        help="exit 1 unless the topology has a GPU and QUERY succeeds for "
                        "every GPU in it (names real gpu_ids, not just the version)")
    parser.add_argument("--options", action="store_true",
                        help="also list each GPU's preemption options and expected costs")
    parser.add_argument("--dev", default=DEV_KFD, help="KFD device node (default /dev/kfd)")
    parser.add_argument("--sysfs", default=KFD_SYSFS, help="KFD sysfs root")
    args = parser.parse_args(argv)
    status = kfd_status(args.dev, args.sysfs)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(status), indent=2, sort_keys=True))
    else:
        print("\n".join(status.describe()))
    if args.options:
        for node in topology_gpus(args.sysfs):
            print(f"gpu_id {node.gpu_id} preemption options:")
            for opt in preemption_options(status, node.gpu_id):
                patch = "patch" if opt.needs_patch else "no patch"
                print(f"  {opt.name} ({patch}): {opt.mechanism}; scope: {opt.scope}; "
                      f"expected cost: {opt.expected_cost}")
    if args.require_patch and not status.patch_loaded:
        return 1
    if args.require_gpu and not status_names_every_gpu(status):
        print("no GPU answered REEF_KFD_IOC_QUERY" if not status.gpus else
              "REEF_KFD_IOC_QUERY failed for: " +
              ", ".join(str(g.gpu_id) for g in status.gpus.values() if g.error))
        return 1
    return 0


def status_names_every_gpu(status: KfdStatus) -> bool:
    """Whether the patch answered QUERY for at least one GPU and failed for none."""
    return status.patch_loaded and bool(status.gpus) and not any(
        g.error for g in status.gpus.values())


if __name__ == "__main__":
    raise SystemExit(main())
