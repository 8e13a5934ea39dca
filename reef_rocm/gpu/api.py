"""The one device interface every backend (cuda, hip, sim) implements.

Shaped after cuda.core: small objects (Device, Stream, Module, Kernel, Event, buffers) with a
launch path that packs kernel arguments once (``Kernel.bind``) so that each launch is one
driver call. What a backend can do for preemption is stated as explicit capabilities and a
capability level (after XSched): the scheduler asks, it never guesses from the vendor.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reef_rocm.errors import GpuError, UnsupportedError
from reef_rocm.gpu.params import ParamBlock


class Vendor(str, enum.Enum):
    NVIDIA = "nvidia"
    AMD = "amd"
    SIM = "sim"


class PreemptLevel(enum.IntEnum):
    """How deep a backend can reach into best-effort work that was already submitted.

    Every level includes the ones below it.
    """

    #: Stop submitting: work still in our own (virtual) host queues is dropped. Any backend.
    HOST_QUEUE = 1
    #: Kernels already in the device queue are evicted lazily: they see the preempt flag at
    #: block start and return. Needs a stream write-value (or host-mapped memory).
    DEVICE_QUEUE = 2
    #: Waves already running on the compute units are killed (patched KFD on AMD).
    RUNNING = 3


@dataclass(frozen=True)
class Capabilities:
    """What a backend/device can do for preemption and partitioning."""

    stream_write_value: bool = False  # 32-bit write to device memory ordered in a stream
    stream_priorities: bool = False  # streams with dispatch priorities
    cu_mask: bool = False  # streams restricted to a set of CUs (AMD)
    wave_kill: bool = False  # kill this process's running waves (reef KFD patch)
    queue_reset: bool = False  # drop packets waiting in one device queue (reef KFD patch)
    in_kernel_polling: bool = False  # kernels may poll a flag in device memory while running
    host_mapped_memory: bool = False  # host memory the GPU can read/write directly
    indirect_calls: bool = False  # kernels call device functions through pointers (DKP)
    graphs: bool = False  # a stream's launches captured once and replayed with one call

    @property
    def level(self) -> PreemptLevel:
        if self.wave_kill:
            return PreemptLevel.RUNNING
        if self.stream_write_value or self.host_mapped_memory:
            return PreemptLevel.DEVICE_QUEUE
        return PreemptLevel.HOST_QUEUE

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["level"] = self.level.name
        return d


@dataclass(frozen=True)
class DeviceInfo:
    """Plain facts about one GPU (or one simulated GPU)."""

    backend: str  # "cuda" | "hip" | "sim"
    vendor: Vendor
    ordinal: int
    name: str
    arch: str  # "sm_90", "gfx90a", ... (compile target of the device's code objects)
    compute_units: int  # SMs on NVIDIA, CUs on AMD
    memory_bytes: int
    warp_size: int  # 32 on NVIDIA, 64 on gfx9 (wavefront size)
    max_threads_per_block: int = 1024
    max_shared_memory_per_block: int = 48 * 1024
    driver_version: str = ""
    runtime_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    #: KFD topology ``gpu_id`` of this GPU (AMD): what the reef KFD patch's ioctls name a GPU
    #: by. None where there is no KFD or the node could not be matched for sure.
    kfd_gpu_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["vendor"] = self.vendor.value
        return d


@dataclass(frozen=True)
class LaunchConfig:
    """Grid and block shape plus dynamic shared memory (LDS on AMD) in bytes."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    shared_mem: int = 0

    def __init__(
        self, grid: int | Sequence[int], block: int | Sequence[int], shared_mem: int = 0
    ) -> None:
        object.__setattr__(self, "grid", _dim3("grid", grid))
        object.__setattr__(self, "block", _dim3("block", block))
        if not isinstance(shared_mem, int) or shared_mem < 0:
            raise ValueError(f"shared_mem must be a non-negative int, got {shared_mem!r}")
        object.__setattr__(self, "shared_mem", shared_mem)

    @property
    def num_blocks(self) -> int:
        g = self.grid
        return g[0] * g[1] * g[2]

    @property
    def threads_per_block(self) -> int:
        b = self.block
        return b[0] * b[1] * b[2]


def _dim3(what: str, v: int | Sequence[int]) -> tuple[int, int, int]:
    if isinstance(v, int):
        dims: tuple = (v,)
    elif isinstance(v, (tuple, list)):
        dims = tuple(v)
    else:
        raise ValueError(f"{what} must be 1-3 positive ints, got {v!r}")
    if not 1 <= len(dims) <= 3 or not all(isinstance(x, int) and x >= 1 for x in dims):
        raise ValueError(f"{what} must be 1-3 positive ints, got {v!r}")
    return (*dims, *(1,) * (3 - len(dims)))  # type: ignore[return-value]


@dataclass(frozen=True)
class DevicePtr:
    """A raw device address, e.g. an offset into a buffer. Packs as a 64-bit pointer."""

    value: int

    @property
    def ptr(self) -> int:
        return self.value


class Resource(abc.ABC):
    """Something that holds a driver object: ``close()`` releases it (idempotent: a second
    close does nothing) and ``with`` closes it on exit. ``close()`` is the one release verb of
    every buffer, stream, event, module and device."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Any:  # Any: each subclass returns itself
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeviceBuffer(Resource):
    """Device memory. ``ptr`` is the device address; passing the buffer as a kernel argument
    passes that address."""

    ptr: int
    nbytes: int

    def offset(self, nbytes: int) -> DevicePtr:
        if not 0 <= nbytes <= self.nbytes:
            raise ValueError(f"offset {nbytes} outside buffer of {self.nbytes} bytes")
        return DevicePtr(self.ptr + nbytes)


class HostMappedBuffer(Resource):
    """Pinned host memory the GPU can access directly.

    ``host`` is a numpy uint8 view of it on the host, ``ptr`` the address kernels use.
    """

    ptr: int
    nbytes: int
    host: Any  # numpy.ndarray of uint8


class Event(Resource):

    @abc.abstractmethod
    def record(self, stream: Stream) -> None: ...

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    @abc.abstractmethod
    def query(self) -> bool:
        """True once the work before the record point has completed."""

    @abc.abstractmethod
    def elapsed_ms(self, end: Event) -> float:
        """Milliseconds from this event to ``end`` (both recorded and completed)."""


class Stream(Resource):
    """An in-order queue of device work."""

    priority: int

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    @abc.abstractmethod
    def query(self) -> bool:
        """True if all work submitted to the stream has completed."""

    @abc.abstractmethod
    def write_value32(
        self, target: DeviceBuffer | DevicePtr | HostMappedBuffer, value: int
    ) -> None:
        """Write a 32-bit value to device memory in stream order (the preempt flag)."""

    @abc.abstractmethod
    def wait_event(self, event: Event) -> None: ...


class Graph(Resource):
    """Launches captured once (``Device.capture_graph``), replayed with one call."""

    @abc.abstractmethod
    def launch(self, stream: Stream) -> None: ...


class BoundLaunch(abc.ABC):
    """A kernel with its launch shape and arguments packed once; ``launch`` is one driver call.

    ``params`` may be edited in place (``params.set(i, value)``) between launches, e.g. to
    point a kernel at another completion slot, without re-packing the rest.
    """

    kernel: Kernel
    config: LaunchConfig
    params: ParamBlock

    @abc.abstractmethod
    def launch(self, stream: Stream) -> None: ...

    @property
    def c_launcher(self) -> Any:
        """This launch as a pre-bound C launcher (``gpu.fastlaunch``), or None where launches
        go through Python; the executor strings these into one span call."""
        return None

    def check_launch_status(self, status: int, what: str = "") -> None:
        """Raise the error ``launch`` raises for driver status ``status`` (a no-op for 0);
        ``what`` names the launch in the message. Only backends with a C launcher call it."""
        if status:
            raise GpuError(f"launch ({what})" if what else "launch", int(status))


class Kernel(abc.ABC):
    """One kernel of a loaded module. ``module`` is the Module it came from."""

    name: str
    module: Module

    def bind(self, config: LaunchConfig, args: Sequence[Any]) -> BoundLaunch:
        """Pack ``args`` (buffers, DevicePtr, numpy scalars) once for repeated launches.

        Checks the block shape against the device's limit, then asks the backend's
        ``_bind`` to pack. A backend may instead override ``bind`` whole (the sim does).
        """
        check_block_size(self.name, config, self.module.device.info.max_threads_per_block)
        return self._bind(config, args)

    def _bind(self, config: LaunchConfig, args: Sequence[Any]) -> BoundLaunch:
        """Backend hook: pack ``args`` and build the launch (shape already checked)."""
        raise NotImplementedError(f"{type(self).__name__} implements neither bind nor _bind")

    def launch(self, stream: Stream, config: LaunchConfig, *args: Any) -> None:
        """Convenience one-off launch; hot paths keep the BoundLaunch instead."""
        self.bind(config, args).launch(stream)

    @property
    @abc.abstractmethod
    def attributes(self) -> dict[str, int]:
        """Resource usage the runtime reports: keys ``registers``, ``shared_bytes`` (static),
        ``local_bytes`` (scratch/private per thread), ``max_threads_per_block``."""

    @abc.abstractmethod
    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        """Occupancy as the runtime computes it: resident blocks per SM/CU."""


class Module(Resource):
    """A loaded code object (cubin/PTX on NVIDIA, HSACO on AMD, a kernel model in sim).

    ``get_kernel`` looks each name up once (``_load_kernel``, the backend hook) and caches
    the Kernel; ``close()`` unloads the code object and forgets the cache.
    """

    device: Device

    def get_kernel(self, name: str) -> Kernel:
        cache: dict[str, Kernel] = self.__dict__.setdefault("_kernel_cache", {})
        kernel = cache.get(name)
        if kernel is None:
            try:
                kernel = cache[name] = self._load_kernel(name)
            except GpuError as e:
                raise GpuError(e.call, e.code, f"kernel {name!r} not found in module") from e
        return kernel

    def _load_kernel(self, name: str) -> Kernel:
        """Backend hook: look kernel ``name`` up in the loaded code object (GpuError if
        absent)."""
        raise NotImplementedError(
            f"{type(self).__name__} implements neither get_kernel nor _load_kernel"
        )

    def _forget_kernels(self) -> None:
        self.__dict__.pop("_kernel_cache", None)


class Device(Resource):
    """One GPU seen through one backend.

    The base class holds what every backend shares: copy and memset validation (the backend
    implements ``_copy_to_device`` / ``_copy_to_host`` / ``_memset32`` on checked raw
    addresses), ``make_current`` for threads, and the optional preemption verbs, which raise
    UnsupportedError unless the capability says otherwise. ``close()`` releases the device's
    context; the default has nothing to release.
    """

    info: DeviceInfo
    capabilities: Capabilities

    def close(self) -> None:  # noqa: B027 - only some backends hold a context
        """Release the device's context. Default: nothing to release."""

    def make_current(self) -> None:  # noqa: B027 - only some backends keep per-thread state
        """Bind this device to the calling thread. Every thread that uses the device (the
        scheduler's, the server's) calls it once before its first call. cuda: the primary
        context becomes current; hip: ``hipSetDevice``. Default: no per-thread state."""

    @abc.abstractmethod
    def create_stream(self, priority: int = 0, cu_mask: Sequence[int] | None = None) -> Stream:
        """Create a stream. Lower ``priority`` numbers are more urgent (CUDA/HIP convention).

        ``cu_mask`` lists the CU indices the stream may use; only where
        ``capabilities.cu_mask`` is true, otherwise UnsupportedError.
        """

    @abc.abstractmethod
    def stream_priority_range(self) -> tuple[int, int]:
        """(least urgent, most urgent) priority values."""

    @abc.abstractmethod
    def load_module(self, image: Any) -> Module:
        """Load a code object: cubin/PTX bytes (cuda), HSACO bytes (hip), a kernel model (sim)."""

    @abc.abstractmethod
    def alloc(self, nbytes: int) -> DeviceBuffer: ...

    @abc.abstractmethod
    def alloc_host_mapped(self, nbytes: int) -> HostMappedBuffer: ...

    def copy_to_device(
        self, dst: DeviceBuffer | DevicePtr, src: Any, stream: Stream | None = None
    ) -> None:
        """Copy a C-contiguous numpy array (or bytes) to device memory.

        With a stream the copy is ordered in it (the host array must stay alive until the
        stream synchronizes); without one it is synchronous.
        """
        addr, n = host_address(src)
        check_copy_size(dst, n)
        self._copy_to_device(device_address(dst), addr, n, stream)

    def copy_to_host(
        self, dst: Any, src: DeviceBuffer | DevicePtr, stream: Stream | None = None
    ) -> None:
        """Copy device memory into a writable C-contiguous numpy array (dst.nbytes bytes)."""
        addr, n = host_address(_writable_array(dst))
        check_copy_size(src, n)
        self._copy_to_host(addr, device_address(src), n, stream)

    def memset32(
        self, dst: DeviceBuffer | DevicePtr, value: int, count: int, stream: Stream | None = None
    ) -> None:
        """Set ``count`` 32-bit words to ``value`` (any int that fits 32 bits, signed or not).

        With a stream the memset is ordered in it (asynchronous); without one it is
        synchronous. Housekeeping the scheduler relies on (slot resets, flag clears) always
        passes an explicit stream: the legacy null stream is not ordered against the
        project's non-blocking streams.
        """
        if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"memset32 count must be a non-negative int, got {count!r}")
        pattern = u32(value)
        check_copy_size(dst, 4 * count)
        self._memset32(device_address(dst), pattern, int(count), stream)

    # backend hooks: addresses are checked ints, ``stream`` is None or one of this backend's
    def _copy_to_device(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot copy to the device")

    def _copy_to_host(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot copy to the host")

    def _memset32(self, dst: int, pattern: int, count: int, stream: Stream | None) -> None:
        raise NotImplementedError(f"{type(self).__name__} cannot memset")

    @abc.abstractmethod
    def create_event(self, timing: bool = True) -> Event: ...

    @abc.abstractmethod
    def synchronize(self) -> None: ...

    def kill_running_waves(self) -> int:
        """Kill this process's waves running on the device (PreemptLevel.RUNNING).

        Process-wide, as the hardware kill is: raise the preempt flag first so the killed
        kernels' remaining blocks leave at start, and launch RT work only after this returns.

        Returns the number of blocks (work-groups) killed when the backend can count them,
        0 when it knows that none of this process's blocks was running, and -1 when blocks
        may have been killed but the backend cannot count them (hip: the KFD patch reports
        only which VMIDs it hit). The caller learns which kernels lost blocks from their
        completion slots, not from this number.

        Only where ``capabilities.wave_kill``; otherwise UnsupportedError.
        """
        raise UnsupportedError(
            f"{self.info.backend} device {self.info.name!r} cannot kill running waves "
            "(capability wave_kill is off: needs an AMD GPU with the reef KFD patch)"
        )

    def capture_graph(self, stream: Stream, enqueue: Callable[[Stream], None]) -> Graph:
        """Record what ``enqueue(stream)`` queues (kernel launches) into a graph, without
        running it; ``graph.launch(stream)`` then replays it with one call. Kernel arguments
        are captured by value: later in-place changes to bound parameters are not seen.
        Only where ``capabilities.graphs``; otherwise UnsupportedError."""
        raise UnsupportedError(
            f"{self.info.backend} device {self.info.name!r} cannot capture launch graphs "
            "(capability graphs is off)"
        )

    def clear_queue(self, stream: Stream) -> int:
        """Drop the work queued in ``stream`` that has not started; return how many kernels
        were dropped. Only where ``capabilities.queue_reset``; otherwise UnsupportedError."""
        raise UnsupportedError(
            f"{self.info.backend} device {self.info.name!r} cannot reset a device queue "
            "(capability queue_reset is off)"
        )


@dataclass
class BackendReport:
    """What ``probe()`` found for one backend, for ``reef doctor`` and backend selection."""

    backend: str
    available: bool
    reason: str = ""  # why not available, or notes
    versions: dict[str, str] = field(default_factory=dict)
    devices: list[DeviceInfo] = field(default_factory=list)
    capabilities: list[Capabilities] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "available": self.available,
            "reason": self.reason,
            "versions": self.versions,
            "devices": [d.as_dict() for d in self.devices],
            "capabilities": [c.as_dict() for c in self.capabilities],
        }


def device_address(target: Any) -> int:
    """Device address of a buffer, a DevicePtr or a host-mapped buffer."""
    try:
        return int(target.ptr)
    except AttributeError:
        raise TypeError(
            f"expected a DeviceBuffer, DevicePtr or HostMappedBuffer, got {type(target).__name__}"
        ) from None


def host_address(array: Any) -> tuple[int, int]:
    """(address, nbytes) of a C-contiguous numpy array or bytes-like object, for copies."""
    if isinstance(array, (bytes, bytearray, memoryview)):
        array = np.frombuffer(array, dtype=np.uint8)
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected a numpy array or bytes, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError("host array must be C-contiguous")
    return array.ctypes.data, array.nbytes


def check_copy_size(target: Any, nbytes: int) -> None:
    """Refuse a copy of ``nbytes`` into/out of a buffer that is smaller (a DevicePtr has no
    size and is not checked)."""
    size = getattr(target, "nbytes", None)
    if size is not None and nbytes > size:
        raise ValueError(f"copy of {nbytes} bytes into/from a buffer of {size} bytes")


def u32(value: int) -> int:
    """The 32-bit pattern of ``value`` as an unsigned int; -1 and 0xFFFFFFFF are the same
    pattern. ValueError for anything that does not fit 32 bits."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"32-bit value must be an int, got {value!r}")
    if not -(2**31) <= value < 2**32:
        raise ValueError(f"value {value} does not fit in 32 bits")
    return int(value) & 0xFFFFFFFF


def check_block_size(kernel: str, config: LaunchConfig, limit: int) -> None:
    """UnsupportedError when ``config``'s block has more threads than the device allows."""
    if config.threads_per_block > limit:
        raise UnsupportedError(
            f"kernel {kernel}: {config.threads_per_block} threads per block exceeds the "
            f"device limit of {limit}"
        )


def _writable_array(dst: Any) -> Any:
    if not isinstance(dst, np.ndarray) or not dst.flags.writeable:
        raise TypeError(f"copy_to_host needs a writable numpy array, got {type(dst).__name__}")
    return dst
