"""HSA backend: AMD GPUs through our own AQL queues (``reef_rocm.rocm.hsa``), no HIP.

Why: HIP streams hide their queues (ROCclr multiplexes them onto at most four hardware
queues), so REEF could not know which kernels sit in a device queue, cap them, or aim a
reset at one. Here every Stream is one hardware AQL queue that this process writes itself:

* a launch is one dispatch packet (barrier bit set: stream order, as HIP gives) whose
  kernarg segment and completion signal come from a per-stream ring of ``slots``; a slot is
  reused once its signal shows the packet done (or dropped);
* ``waiting(stream)`` is exactly write index minus read index; ``device_queue_cap`` caps it;
* ``write_value32`` (the preempt flag) is a host store: at once when the stream is idle, else
  from the runtime's signal handler once a barrier packet behind the stream's work
  completes (skipped if that barrier was dropped by a reset);
* ``clear_queue`` is the reef KFD patch's RESET_QUEUE aimed at the queue's ring address,
  followed by the user-space contract (``AqlWriter.reset``); ``kill_running_waves`` is its
  KILL_WAVES. Both only where ``kfd_status`` says the patch offers them for this GPU.
* events are barrier packets on a profiled queue; ``elapsed_ms`` reads the packet
  timestamps the runtime keeps in their signals.

Copies and memsets are synchronous ``hsa_memory_copy`` calls; with a stream they first wait
for the stream to drain, which orders them but blocks the caller. Nothing here has run on
AMD hardware; ``tools/validate-hsa.py`` is what checks it on an MI-series GPU
(docs/amd.md).
"""

from __future__ import annotations

import collections
import ctypes
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError
from reef_rocm.gpu.api import (
    BackendReport,
    BoundLaunch,
    Capabilities,
    Device,
    DeviceBuffer,
    DeviceInfo,
    DevicePtr,
    Event,
    HostMappedBuffer,
    Kernel,
    LaunchConfig,
    Module,
    Stream,
    Vendor,
    device_address,
    u32,
)
from reef_rocm.gpu.params import ParamBlock
from reef_rocm.rocm.hsa import _ffi, aql, kernargs
from reef_rocm.rocm.hsa.code_object import CodeObject
from reef_rocm.rocm.hsa.memory import PoolAllocation, PoolSet, copy
from reef_rocm.rocm.hsa.queues import HsaQueue
from reef_rocm.rocm.hsa.runtime import AgentProps, HsaRuntime
from reef_rocm.rocm.hsa.signals import DROPPED, HsaSignal, SignalOps

#: HIP's kernarg limit; every slot of a stream's kernarg ring has this many bytes.
KERNARG_SLOT = 4096
#: how long a launch waits for room in a full device queue before calling the queue stuck
QUEUE_WAIT_S = 60.0


# ---------------------------------------------------------------------------------------
# memory


class HsaBuffer(DeviceBuffer):
    def __init__(self, device: HsaDevice, nbytes: int) -> None:
        self._alloc = PoolAllocation(device.runtime, device.pools.device, nbytes,
                                     [device.agent])
        self.ptr = self._alloc.ptr
        self.nbytes = nbytes

    def close(self) -> None:
        self._alloc.close()
        self.ptr = 0


class HsaHostMappedBuffer(HostMappedBuffer):
    """Fine-grained system memory: one address for host and GPU, coherent while kernels run."""

    def __init__(self, device: HsaDevice, nbytes: int) -> None:
        self._alloc = PoolAllocation(device.runtime, device.pools.fine_host, nbytes,
                                     [device.agent, device.cpu])
        self.ptr = self._alloc.ptr
        self.nbytes = nbytes
        self.host = np.frombuffer((ctypes.c_uint8 * nbytes).from_address(self.ptr),
                                  dtype=np.uint8)

    def close(self) -> None:
        self.host = np.empty(0, dtype=np.uint8)
        self._alloc.close()
        self.ptr = 0


# ---------------------------------------------------------------------------------------
# streams


class HsaStream(Stream):
    """One hardware AQL queue and its writer, slot ring and synchronisation state."""

    def __init__(self, device: HsaDevice, priority: int, cu_mask: Sequence[int] | None,
                 size: int, cap: int | None, slots: int) -> None:
        least, greatest = device.stream_priority_range()
        if not greatest <= priority <= least:
            raise ValueError(f"priority {priority} outside {greatest}..{least}")
        self._device = device
        self.priority = priority
        words = None
        if cu_mask is not None:
            from reef_rocm.rocm.hsa.cu_mask import logical_mask_words

            words = logical_mask_words(cu_mask, device.info.compute_units)
        name = {-1: "high", 0: "normal", 1: "low"}[priority]
        self.queue = HsaQueue(device.runtime, device.agent, size, name, words)
        self.cu_mask = None if cu_mask is None else tuple(sorted({int(c) for c in cu_mask}))
        try:
            self.queue.enable_profiling()
            self.writer = aql.AqlWriter(self.queue, device.signal_ops, cap=cap,
                                        name=self.queue.ring_base, registry=device.registry)
            self._signals = [HsaSignal(device.runtime, 0) for _ in range(slots)]
            self._kernargs = PoolAllocation(device.runtime, device.pools.kernarg,
                                            slots * KERNARG_SLOT, [device.agent])
        except Exception:
            self._release()
            raise
        self._handles = [s.handle for s in self._signals]
        self._next = 0  # slots used so far
        self._last = 0  # signal handle of the newest packet (0: none yet)
        self._lock = threading.RLock()
        # async handler callbacks: alive while pending, then for 64 more fires
        self._pending: dict[int, Any] = {}
        self._fired: collections.deque[Any] = collections.deque(maxlen=64)
        self._handler_key = 0
        self.last_reset: aql.ResetReport | None = None

    # --- slots ------------------------------------------------------------------------
    def _take_slot(self) -> tuple[int, int]:
        """(signal handle, kernarg address) of the next slot, once its last use is over."""
        j = self._next % len(self._handles)
        h = self._handles[j]
        if self._device.signal_ops.load(h) > 0:
            self._signals[j].wait_below(1)
        self._next += 1
        self._device.signal_ops.store_relaxed(h, 1)
        return h, self._kernargs.ptr + j * KERNARG_SLOT

    def _wait_room(self) -> None:
        if self.writer.free() > 0:
            return
        deadline = time.monotonic() + QUEUE_WAIT_S
        while self.writer.free() <= 0:
            if time.monotonic() > deadline:
                raise GpuError("hsa launch", 0, f"device queue at {self.queue.ring_base:#x} "
                               f"made no progress for {QUEUE_WAIT_S:.0f} s")
            time.sleep(0)

    def _give_back(self, handle: int) -> None:
        """A slot whose packet was never published is free again."""
        self._device.signal_ops.store_relaxed(handle, 0)

    def _dispatch(self, launch: HsaBoundLaunch) -> None:
        with self._lock:
            self._wait_room()
            sig, karg = self._take_slot()
            try:
                launch.plan.write(karg, self.queue.address)
                launch.template.set_kernarg(karg)
                self.writer.dispatch(launch.template, signal=sig, tag=launch.kernel.name)
            except BaseException:
                self._give_back(sig)
                raise
            self._last = sig

    def _barrier(self, deps: Sequence[int], signal: int | None, tag: str) -> int:
        """A barrier-AND behind all of the stream's work; returns its signal."""
        with self._lock:
            self._wait_room()
            sig = signal if signal is not None else self._take_slot()[0]
            try:
                self.writer.barrier_and(deps, signal=sig, tag=tag, barrier=True)
            except BaseException:
                if signal is None:
                    self._give_back(sig)
                raise
            self._last = sig
            return sig

    # --- Stream ---------------------------------------------------------------------------
    def query(self) -> bool:
        return self._last == 0 or self._device.signal_ops.load(self._last) <= 0

    def synchronize(self) -> None:
        last = self._last
        if last and self._device.signal_ops.load(last) > 0:
            self._device.runtime.lib.hsa_signal_wait_scacquire(
                _ffi.Handle(last), _ffi.HSA_SIGNAL_CONDITION_LT, 1, 2**64 - 1,
                _ffi.HSA_WAIT_STATE_BLOCKED)

    def write_value32(self, target: DeviceBuffer | DevicePtr | HostMappedBuffer,
                      value: int) -> None:
        addr, pattern = device_address(target), u32(value)
        host_visible = isinstance(target, HsaHostMappedBuffer)
        with self._lock:
            if self.query():  # nothing of ours is pending: the store is in order now
                self._device._store32(addr, pattern, host_visible)
                return
            sig = self._barrier([], None, "write_value32")
            device, lib = self._device, self._device.runtime.lib

            key = self._handler_key = self._handler_key + 1
            pending, fired = self._pending, self._fired

            def fire(observed: int, _arg: Any) -> bool:
                if observed >= 0:  # DROPPED: the reset took the barrier; no write
                    device._store32(addr, pattern, host_visible)
                # the callback object must outlive this call: it moves to a bounded list
                fired.append(pending.pop(key, None))
                return False  # one shot

            pending[key] = _ffi.SignalHandler(fire)
            lib.check("hsa_amd_signal_async_handler", lib.hsa_amd_signal_async_handler(
                _ffi.Handle(sig), _ffi.HSA_SIGNAL_CONDITION_LT, 1, pending[key], None))

    def wait_event(self, event: Event) -> None:
        if not isinstance(event, HsaEvent):
            raise TypeError(f"expected an HsaEvent, got {type(event).__name__}")
        self._barrier([event.signal.handle], None, "wait_event")

    def waiting(self) -> int:
        """Packets of this stream in the device queue not yet taken by the command processor."""
        return self.writer.waiting()

    def _release(self) -> None:
        for s in getattr(self, "_signals", []):
            s.close()
        if getattr(self, "_kernargs", None) is not None:
            self._kernargs.close()
        self.queue.close()

    def close(self) -> None:
        if self.queue.is_open:
            self.synchronize()
            self._release()


class HsaEvent(Event):
    def __init__(self, device: HsaDevice, timing: bool) -> None:
        self._device = device
        self.timing = timing
        self.signal = HsaSignal(device.runtime, 0)
        self._recorded = False

    def record(self, stream: Stream) -> None:
        if not isinstance(stream, HsaStream):
            raise TypeError(f"expected an HsaStream, got {type(stream).__name__}")
        self.signal.store(1)
        # tracked: a stream synchronize returns only once the event is complete too (then
        # elapsed_ms works); an event re-recorded elsewhere before that makes the first
        # stream wait for the second one's work, never less
        stream._barrier([], self.signal.handle, "event")
        self._recorded = True

    def query(self) -> bool:
        return self.signal.value <= 0

    def synchronize(self) -> None:
        if self.signal.value > 0:
            self.signal.wait_below(1)

    def _end_ticks(self) -> int:
        t = _ffi.ProfilingDispatchTime()
        lib = self._device.runtime.lib
        lib.check("hsa_amd_profiling_get_dispatch_time", lib.hsa_amd_profiling_get_dispatch_time(
            _ffi.Handle(self._device.agent.handle), _ffi.Handle(self.signal.handle),
            ctypes.byref(t)))
        return int(t.end)

    def elapsed_ms(self, end: Event) -> float:
        if not isinstance(end, HsaEvent):
            raise TypeError(f"expected an HsaEvent, got {type(end).__name__}")
        if not (self.timing and end.timing):
            raise UnsupportedError("elapsed_ms needs two events created with timing=True")
        if not (self._recorded and end._recorded) or not (self.query() and end.query()):
            raise UnsupportedError("elapsed_ms needs both events recorded and completed")
        ticks = end._end_ticks() - self._end_ticks()
        return ticks * 1e3 / self._device.timestamp_hz

    def close(self) -> None:
        self.signal.close()


# ---------------------------------------------------------------------------------------
# modules and kernels


class HsaBoundLaunch(BoundLaunch):
    __slots__ = ("kernel", "config", "params", "template", "plan")

    def __init__(self, kernel: HsaKernel, config: LaunchConfig, params: ParamBlock) -> None:
        self.kernel = kernel
        self.config = config
        self.params = params
        self.plan = kernel.layout.plan(params, config)
        if self.plan.size > KERNARG_SLOT:
            raise UnsupportedError(f"kernel {kernel.name}: {self.plan.size}-byte kernarg "
                                   f"segment exceeds {KERNARG_SLOT}")
        sym = kernel.symbol
        self.template = aql.DispatchTemplate(
            sym.kernel_object, 0,
            grid=[g * b for g, b in zip(config.grid, config.block, strict=True)],
            workgroup=config.block,
            group_segment_size=sym.group_segment_size + config.shared_mem,
            private_segment_size=sym.private_segment_size, barrier=True)

    def launch(self, stream: Stream) -> None:
        stream._dispatch(self)  # type: ignore[attr-defined]


class HsaKernel(Kernel):
    def __init__(self, module: HsaModule, name: str) -> None:
        self.name = name
        self.module = module
        self.symbol = module.code.kernel(name)
        layout = module.layouts.get(name)
        if layout is None:
            raise GpuError("kernel lookup", 0, f"no argument metadata for {name!r}")
        self.layout = layout
        self.resources = module.resources.kernels.get(name)

    @property
    def attributes(self) -> dict[str, int]:
        r = self.resources
        return {
            "registers": r.registers if r else 0,
            "shared_bytes": self.symbol.group_segment_size,
            "local_bytes": self.symbol.private_segment_size,
            "max_threads_per_block": r.max_threads if r else 1024,
        }

    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        from reef_rocm.codeobj.occupancy import occupancy

        if self.resources is None:
            raise UnsupportedError(f"kernel {self.name}: no resource metadata for occupancy")
        return occupancy(self.module.device.info.arch, self.resources, block_threads,
                         dynamic_shared).blocks_per_cu

    def _bind(self, config: LaunchConfig, args: Sequence[Any]) -> HsaBoundLaunch:
        return HsaBoundLaunch(self, config, ParamBlock(args))


class HsaModule(Module):
    def __init__(self, device: HsaDevice, image: bytes) -> None:
        from reef_rocm.codeobj.reader import read_code_object

        self.device: HsaDevice = device
        self.resources = read_code_object(bytes(image))
        self.layouts = kernargs.layouts(bytes(image))
        self.code = CodeObject(device.runtime, device.agent, bytes(image))

    def _load_kernel(self, name: str) -> HsaKernel:
        return HsaKernel(self, name)

    def close(self) -> None:
        self.code.close()
        self._forget_kernels()


# ---------------------------------------------------------------------------------------
# device


def _kfd_gpu_id(agent: AgentProps) -> int | None:
    """KFD gpu_id of the agent: ROCr's driver node id is the KFD topology node."""
    from reef_rocm.rocm import kfd

    for node in kfd.topology_gpus():
        if node.node == agent.driver_node_id:
            return int(node.gpu_id)
    return None


def _capabilities(gpu_id: int | None) -> Capabilities:
    kill = reset = False
    if gpu_id is not None:
        from reef_rocm.rocm import kfd

        status = kfd.kfd_status()
        kill = status.supports(gpu_id, "kill_waves")
        reset = status.supports(gpu_id, "reset_queue")
    return Capabilities(stream_write_value=True, stream_priorities=True, cu_mask=True,
                        wave_kill=kill, queue_reset=reset, in_kernel_polling=True,
                        host_mapped_memory=True, indirect_calls=True)


def _device_info(runtime: HsaRuntime, agent: AgentProps, ordinal: int,
                 pools: PoolSet | None) -> DeviceInfo:
    return DeviceInfo(
        backend="hsa", vendor=Vendor.AMD, ordinal=ordinal,
        name=agent.product_name or agent.name, arch=agent.gfx_target,
        compute_units=agent.compute_units,
        memory_bytes=pools.device.size if pools else 0,
        warp_size=agent.wavefront_size,
        max_threads_per_block=agent.workgroup_max_size or 1024,
        max_shared_memory_per_block=64 * 1024,
        runtime_version=f"HSA {runtime.version()}",
        kfd_gpu_id=_kfd_gpu_id(agent),
        extra={"xcc_count": agent.xcc_count, "shader_engines": agent.shader_engines,
               "shader_arrays_per_se": agent.shader_arrays_per_se,
               "queue_max_size": agent.queue_max_size, "pci_domain": agent.pci_domain,
               "pci_bus": agent.pci_bus, "pci_device": agent.pci_device,
               "library": runtime.lib.path},
    )


class HsaDevice(Device):
    def __init__(self, ordinal: int = 0, queue_size: int = 1024,
                 device_queue_cap: int | None = None, slots: int = 64,
                 lib: Any = None) -> None:
        if slots < 1:
            raise ValueError(f"slots must be positive, got {slots}")
        self.runtime = HsaRuntime(lib)
        try:
            gpus = self.runtime.gpu_agents()
            if not 0 <= ordinal < len(gpus):
                raise BackendUnavailable(f"HSA GPU agent {ordinal} requested, "
                                         f"{len(gpus)} present")
            self.agent = gpus[ordinal]
            self.cpu = self.runtime.cpu_agent()
            self.pools = PoolSet.find(self.runtime, self.agent, self.cpu)
            self.info = _device_info(self.runtime, self.agent, ordinal, self.pools)
        except Exception:
            self.runtime.close()
            raise
        self.capabilities = _capabilities(self.info.kfd_gpu_id)
        self.signal_ops = SignalOps(self.runtime.lib)
        self.registry = aql.DependencyRegistry()
        self.queue_size, self.device_queue_cap, self.slots = queue_size, device_queue_cap, slots
        freq = ctypes.c_uint64()
        self.runtime.lib.check("hsa_system_get_info", self.runtime.lib.hsa_system_get_info(
            _ffi.HSA_SYSTEM_INFO_TIMESTAMP_FREQUENCY, ctypes.byref(freq)))
        self.timestamp_hz = int(freq.value) or 1
        self._streams: list[HsaStream] = []
        self._kfd: Any = None
        self._scratch = np.zeros(1, dtype=np.uint32)

    # --- preemption -----------------------------------------------------------------------
    def _kfd_device(self) -> Any:
        if self._kfd is None:
            from reef_rocm.rocm.kfd import KfdDevice

            self._kfd = KfdDevice(self.info.kfd_gpu_id)  # type: ignore[arg-type]
        return self._kfd

    def kill_running_waves(self) -> int:
        """KILL_WAVES through the reef KFD patch: -1 when waves of ours were hit (the
        patch reports VMIDs, not counts), 0 when none ran."""
        if not self.capabilities.wave_kill:
            return super().kill_running_waves()
        return -1 if self._kfd_device().kill_waves().vmid_mask else 0

    def clear_queue(self, stream: Stream) -> int:
        """RESET_QUEUE on the stream's ring, then the user-space contract; returns the
        number of kernels dropped (``stream.last_reset`` has the full report)."""
        if not self.capabilities.queue_reset:
            return super().clear_queue(stream)
        if not isinstance(stream, HsaStream):
            raise TypeError(f"expected an HsaStream, got {type(stream).__name__}")
        kfd = self._kfd_device()
        with stream._lock:
            report = stream.writer.reset(kfd.reset_queue)
            stream.last_reset = report
            # The in-flight packet may complete or, where the driver killed its waves, never
            # signal. A barrier-bit marker completes once whatever the queue still runs has
            # finished, so synchronize() waits for exactly that and never for a dead signal.
            stream._barrier([], None, "after reset")
        return sum(1 for d in report.dropped if d.kind == "dispatch")

    # --- Device ---------------------------------------------------------------------------
    def create_stream(self, priority: int = 0, cu_mask: Sequence[int] | None = None) -> HsaStream:
        s = HsaStream(self, priority, cu_mask, self.queue_size, self.device_queue_cap,
                      self.slots)
        self._streams.append(s)
        return s

    def stream_priority_range(self) -> tuple[int, int]:
        return (1, -1)  # low, normal (0), high: the AMD queue priorities

    def load_module(self, image: bytes) -> HsaModule:
        if not image:
            raise ValueError("empty module image")
        return HsaModule(self, image)

    def alloc(self, nbytes: int) -> HsaBuffer:
        return HsaBuffer(self, nbytes)

    def alloc_host_mapped(self, nbytes: int) -> HsaHostMappedBuffer:
        return HsaHostMappedBuffer(self, nbytes)

    def _drain(self, stream: Stream | None) -> None:
        if stream is not None:
            if not isinstance(stream, HsaStream):
                raise TypeError(f"expected an HsaStream, got {type(stream).__name__}")
            stream.synchronize()

    def _copy_to_device(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        self._drain(stream)
        copy(self.runtime, dst, src, nbytes)

    def _copy_to_host(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        self._drain(stream)
        copy(self.runtime, dst, src, nbytes)

    def _memset32(self, dst: int, pattern: int, count: int, stream: Stream | None) -> None:
        self._drain(stream)
        if count:
            fill = np.full(count, pattern, dtype=np.uint32)
            copy(self.runtime, dst, fill.ctypes.data, fill.nbytes)

    def _store32(self, addr: int, pattern: int, host_visible: bool) -> None:
        if host_visible:
            _ffi.store_release_u32(addr, pattern)
        else:
            scratch = np.array([pattern], dtype=np.uint32)
            copy(self.runtime, addr, scratch.ctypes.data, 4)

    def create_event(self, timing: bool = True) -> HsaEvent:
        return HsaEvent(self, timing)

    def synchronize(self) -> None:
        for s in self._streams:
            if s.queue.is_open:
                s.synchronize()

    def close(self) -> None:
        for s in self._streams:
            s.close()
        self._streams.clear()
        if self._kfd is not None:
            self._kfd.close()
            self._kfd = None
        self.runtime.close()


def probe() -> BackendReport:
    """What the HSA backend finds here; never raises (the reason names what is missing)."""
    report = BackendReport(backend="hsa", available=False)
    try:
        lib = _ffi.library()
    except BackendUnavailable as e:
        report.reason = str(e)
        return report
    report.versions["library"] = lib.path
    why = _ffi.missing_kfd_reason()
    if why:
        report.reason = f"libhsa-runtime64 found but the HSA runtime cannot start: {why}"
        return report
    try:
        with HsaRuntime(lib) as rt:
            report.versions["hsa"] = rt.version()
            for i, agent in enumerate(rt.gpu_agents()):
                try:
                    pools = PoolSet.find(rt, agent, rt.cpu_agent())
                except BackendUnavailable:
                    pools = None
                info = _device_info(rt, agent, i, pools)
                report.devices.append(info)
                report.capabilities.append(_capabilities(info.kfd_gpu_id))
    except Exception as e:  # the promise is "never raises": say what broke instead
        report.devices.clear()
        report.capabilities.clear()
        report.reason = f"hsa backend failed while probing ({type(e).__name__}: {e})"
        return report
    report.available = bool(report.devices)
    if not report.devices:
        report.reason = "the HSA runtime started but reports no GPU agent"
    return report


def open_device(ordinal: int = 0, **options: Any) -> HsaDevice:
    """Open AMD GPU ``ordinal`` (HSA agent order). Options: ``queue_size`` (packets per
    stream, default 1024), ``device_queue_cap`` (most packets waiting per stream),
    ``slots`` (in-flight launches per stream, default 64)."""
    unknown = sorted(set(options) - {"queue_size", "device_queue_cap", "slots"})
    if unknown:
        raise TypeError(f"hsa backend takes queue_size, device_queue_cap and slots, got "
                        f"{unknown}")
    return HsaDevice(ordinal, **options)


__all__ = ["DROPPED", "HsaDevice", "open_device", "probe"]
