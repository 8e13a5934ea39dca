"""Python binding for the REEF amdkfd ioctls (``kfd_patch/include/uapi/linux/reef_kfd.h``).

The patched amdkfd driver (see ``docs/kfd_patch.md``) adds three ioctls on ``/dev/kfd``:
QUERY (version and per-GPU supported operations), KILL_WAVES (kill the calling process's
waves on one GPU) and RESET_QUEUE (drop the packets still waiting in one of the calling
process's AQL queues). This module wraps them with ``fcntl.ioctl`` and ctypes structures.

The structure layouts and ioctl numbers are written out here once; ``tests/kfd`` compiles
a C program against the uapi header and checks that they match byte for byte.

Entry points:

* :func:`kfd_status` never raises: it says whether ``/dev/kfd`` exists, whether the
  patch is loaded, its version, and which operations each GPU supports. ``reef doctor``
  and the backends' capability reports use it.
* :class:`KfdDevice` performs the operations on one GPU (by KFD ``gpu_id``) and raises
  :class:`~reef_rocm.errors.BackendUnavailable`, :class:`~reef_rocm.errors.UnsupportedError`
  or :class:`~reef_rocm.errors.GpuError`.

Only the process that opened ``/dev/kfd`` may use the descriptor (amdkfd checks this), and
the queues a reset can find are those the same process created through ROCr/HIP: amdkfd
has one KFD process per address space, so the descriptor opened here and the one the HIP
runtime opened refer to the same queues.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError

DEV_KFD = "/dev/kfd"
KFD_SYSFS = "/sys/class/kfd/kfd"

# --- constants of reef_kfd.h (checked against the header by tests/kfd) ----------------

REEF_KFD_VERSION_MAJOR = 1
REEF_KFD_VERSION_MINOR = 0
REEF_KFD_VERSION = (REEF_KFD_VERSION_MAJOR << 16) | REEF_KFD_VERSION_MINOR

REEF_KFD_OP_KILL_WAVES = 1 << 0
REEF_KFD_OP_KILL_QUEUE_WAVES = 1 << 1
REEF_KFD_OP_RESET_QUEUE = 1 << 2

REEF_KFD_SCHED_HWS = 0
REEF_KFD_SCHED_HWS_NO_OVERSUB = 1
REEF_KFD_SCHED_NO_HWS = 2
REEF_KFD_SCHED_MES = 3

REEF_KFD_KILL_F_QUEUE = 1 << 0

REEF_KFD_IOCTL_BASE = ord("K")
REEF_KFD_COMMAND_START = 0xC0
REEF_KFD_COMMAND_END = 0xC3

OP_NAMES = {
    REEF_KFD_OP_KILL_WAVES: "kill_waves",
    REEF_KFD_OP_KILL_QUEUE_WAVES: "kill_queue_waves",
    REEF_KFD_OP_RESET_QUEUE: "reset_queue",
}
SCHED_NAMES = {
    REEF_KFD_SCHED_HWS: "hws",
    REEF_KFD_SCHED_HWS_NO_OVERSUB: "hws_no_oversubscription",
    REEF_KFD_SCHED_NO_HWS: "no_hws",
    REEF_KFD_SCHED_MES: "mes",
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
        ("pad", ctypes.c_uint32),
    ]


class ReefKfdKillWavesArgs(ctypes.Structure):
    _fields_ = [
        ("ring_base", ctypes.c_uint64),
        ("gpu_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
        ("vmid_mask", ctypes.c_uint32),
        ("xcc_mask", ctypes.c_uint32),
    ]


class ReefKfdResetQueueArgs(ctypes.Structure):
    _fields_ = [
        ("ring_base", ctypes.c_uint64),
        ("read_index", ctypes.c_uint64),
        ("dropped", ctypes.c_uint64),
        ("gpu_id", ctypes.c_uint32),
        ("flags", ctypes.c_uint32),
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
REEF_KFD_IOC_RESET_QUEUE = _iowr(0xC2, ReefKfdResetQueueArgs)


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
        gfx = 0
        try:
            # "properties" is "key value" lines; gfx_target_version is e.g. 90006 (gfx906)
            for line in (entry / "properties").read_text().splitlines():
                key, _, value = line.partition(" ")
                if key == "gfx_target_version":
                    gfx = int(value)
        except (OSError, ValueError):
            pass
        gpus.append(KfdNode(int(entry.name), gpu_id, name, gfx))
    return gpus


# --- the device -------------------------------------------------------------------------


@dataclass(frozen=True)
class QueryResult:
    version: int
    supported_ops: int
    gfx_target_version: int
    sched_policy: int
    num_xcc: int

    @property
    def ops(self) -> list[str]:
        return ops_names(self.supported_ops)

    @property
    def sched_name(self) -> str:
        return SCHED_NAMES.get(self.sched_policy, f"unknown({self.sched_policy})")


@dataclass(frozen=True)
class KillResult:
    vmid_mask: int  # VMIDs whose waves were killed; 0: nothing of ours was running
    xcc_mask: int  # XCCs the command went to


@dataclass(frozen=True)
class ResetResult:
    read_index: int  # 64-bit read index the queue stopped at; write index now equals it
    dropped: int  # packets dropped


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


def _ioctl(kfile: _KfdFile, name: str, request: int, args: ctypes.Structure) -> None:
    """Issue one REEF ioctl; map errno to the project's exceptions."""
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
                "(gfx9 GPUs only; queue-scoped kill only without HWS; see docs/kfd_patch.md)"
            ) from e
        raise GpuError(name, code, os.strerror(code)) from e
    ctypes.memmove(ctypes.addressof(args), bytes(buf), len(buf))


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

    def query(self) -> QueryResult:
        args = ReefKfdQueryArgs(gpu_id=self.gpu_id)
        _ioctl(self._kfile, "REEF_KFD_IOC_QUERY", REEF_KFD_IOC_QUERY, args)
        return QueryResult(args.version, args.supported_ops, args.gfx_target_version,
                           args.sched_policy, args.num_xcc)

    def kill_waves(self, ring_base: int | None = None) -> KillResult:
        """Kill this process's waves on the GPU; with ``ring_base``, only that queue's.

        Process-wide, this also kills the process's real-time waves: REEF issues it before
        launching RT work. The queue-scoped form needs the driver in no-HWS mode.
        """
        args = ReefKfdKillWavesArgs(gpu_id=self.gpu_id)
        if ring_base is not None:
            if not 0 < ring_base < 2**64:
                raise ValueError(f"ring_base must be a non-zero address, got {ring_base:#x}")
            args.ring_base = ring_base
            args.flags = REEF_KFD_KILL_F_QUEUE
        _ioctl(self._kfile, "REEF_KFD_IOC_KILL_WAVES", REEF_KFD_IOC_KILL_WAVES, args)
        return KillResult(args.vmid_mask, args.xcc_mask)

    def reset_queue(self, ring_base: int) -> ResetResult:
        """Drop the packets waiting in this process's AQL queue whose ring is at ``ring_base``.

        No thread may submit to that queue while this runs.
        """
        if not 0 < ring_base < 2**64:
            raise ValueError(f"ring_base must be a non-zero address, got {ring_base:#x}")
        args = ReefKfdResetQueueArgs(gpu_id=self.gpu_id, ring_base=ring_base)
        _ioctl(self._kfile, "REEF_KFD_IOC_RESET_QUEUE", REEF_KFD_IOC_RESET_QUEUE, args)
        return ResetResult(args.read_index, args.dropped)


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
    patch_version: str | None  # "1.0" when loaded
    gpus: dict[int, GpuKfdStatus] = field(default_factory=dict)  # by gpu_id
    reason: str = ""  # why the patch cannot be used, "" when it can

    def supports(self, gpu_id: int, op: str) -> bool:
        """Whether ``op`` ("kill_waves", "kill_queue_waves", "reset_queue") works on gpu_id."""
        gpu = self.gpus.get(gpu_id)
        return bool(self.patch_loaded and gpu and op in gpu.supported_ops)

    @property
    def any_kill(self) -> bool:
        return any("kill_waves" in g.supported_ops for g in self.gpus.values())

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
    parser.add_argument("--dev", default=DEV_KFD, help="KFD device node (default /dev/kfd)")
    parser.add_argument("--sysfs", default=KFD_SYSFS, help="KFD sysfs root")
    args = parser.parse_args(argv)
    status = kfd_status(args.dev, args.sysfs)
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(status), indent=2, sort_keys=True))
    else:
        print("\n".join(status.describe()))
    return 1 if args.require_patch and not status.patch_loaded else 0


if __name__ == "__main__":
    raise SystemExit(main())
