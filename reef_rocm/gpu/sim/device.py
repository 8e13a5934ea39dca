"""The sim device behind the device interface: SimDevice and the objects it hands out
(buffers, streams, events, modules, kernels, bound launches).

Every host API call costs host time (launch ``launch_overhead_us``, other stream ops
``stream_op_overhead_us``, queries ``query_overhead_us``, synchronous copies/memsets
``copy_latency_us`` + size / bandwidth, the kill/reset ioctls ``ioctl_latency_us``): the call
first runs every device event up to ``now + cost``, then takes effect at that instant (a
launched kernel is in its stream's device queue from then on). A blocking call
(``synchronize``) runs device events until its condition holds; the host then wakes
``sync_latency_us`` later. ``advance(us)`` / ``run_until(t_us)`` run the device with no host
call, for what-if loops. Setup calls (alloc, free, load_module, create_stream/event) cost no
virtual time. What the device does meanwhile is the engine's (engine.py).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from reef_rocm.errors import GpuError, UnsupportedError
from reef_rocm.gpu.api import (
    BoundLaunch,
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
    check_copy_size,
    device_address,
)
from reef_rocm.gpu.params import ParamBlock
from reef_rocm.gpu.sim.config import SimConfig, occupancy
from reef_rocm.gpu.sim.dispatch import CAPACITY, MAX_OCCUPANCY
from reef_rocm.gpu.sim.effects import Effect, resolve_effect
from reef_rocm.gpu.sim.engine import SimEngine
from reef_rocm.gpu.sim.labels import MODEL_NAME, MODEL_VERSION, SIM_TAG, ns, us
from reef_rocm.gpu.sim.memory import Allocation, SimMemory
from reef_rocm.gpu.sim.ops import KernelRun, StreamOp
from reef_rocm.gpu.sim.params import (
    ROLE_COMPLETION_SLOT,
    ROLE_POLL_EVERY,
    ROLE_POLL_INTERVAL,
    ROLE_PREEMPT_FLAG,
    decode_params,
)
from reef_rocm.gpu.sim.spec import SimKernelSpec, SimModuleSpec
from reef_rocm.gpu.sim.trace import OUTCOMES, SimTrace

_BLIT_SPEC = SimKernelSpec("write_value32 blit", 1.0)  # timing comes from the config
_BLIT_LAUNCH = LaunchConfig(1, 1)


class SimBuffer(DeviceBuffer):
    def __init__(self, device: SimDevice, alloc: Allocation) -> None:
        self._device = device
        self._alloc = alloc
        self.ptr = alloc.start
        self.nbytes = alloc.nbytes

    def close(self) -> None:
        self._device.memory.free(self._alloc)

    def __repr__(self) -> str:
        return f"<SimBuffer {self.ptr:#x} {self.nbytes} bytes {SIM_TAG}>"


class SimHostMappedBuffer(HostMappedBuffer):
    """``host`` is the very memory kernels read: host writes are visible to the device at once
    (the ~3 us visibility of real mapped memory is not modelled)."""

    def __init__(self, device: SimDevice, alloc: Allocation) -> None:
        self._device = device
        self._alloc = alloc
        self.ptr = alloc.start
        self.nbytes = alloc.nbytes
        self.host = alloc.data

    def close(self) -> None:
        self._device.memory.free(self._alloc)

    def __repr__(self) -> str:
        return f"<SimHostMappedBuffer {self.ptr:#x} {self.nbytes} bytes {SIM_TAG}>"


class SimStream(Stream):
    """An in-order device queue. ``pending_ops`` / ``pending_kernels`` count what was
    submitted and has not completed (what a device-queue cap limits)."""

    def __init__(
        self, device: SimDevice, sid: int, priority: int, cu_mask: tuple[int, ...] | None
    ) -> None:
        self._device = device
        self.id = sid
        self.priority = priority
        self.cu_mask = cu_mask
        # HIP's CU-masked streams are blocking (hipExtStreamCreateWithCUMask takes no flags);
        # every other stream the backends create is non-blocking
        blocking = cu_mask is not None and device.config.vendor_like == "amd"
        self._q = device._engine.add_stream(
            sid, priority, frozenset(cu_mask) if cu_mask is not None else None, blocking
        )
        self.destroyed = False

    @property
    def pending_ops(self) -> int:
        return len(self._q.ops)

    @property
    def hw_queue(self) -> int:
        """The hardware queue this stream is mapped onto (streams on one are in order)."""
        return self._q.hw.id

    @property
    def pending_kernels(self) -> int:
        return sum(op.kind == "kernel" for op in self._q.ops)

    def synchronize(self) -> None:
        q = self._q
        self._device._host_wait(lambda: not q.ops, f"stream {self.id}")

    def query(self) -> bool:
        self._device._host(self._device.config.query_overhead_us)
        return not self._q.ops

    def write_value32(
        self, target: DeviceBuffer | DevicePtr | HostMappedBuffer, value: int
    ) -> None:
        dev = self._device
        dev._own_stream(self)
        if not dev.capabilities.stream_write_value:
            raise UnsupportedError(f"stream write-value is off on this simulated device {SIM_TAG}")
        if not isinstance(value, (int, np.integer)) or not -(2**31) <= value < 2**32:
            raise ValueError(f"write_value32 value must fit 32 bits, got {value!r}")
        addr = device_address(target)
        dev.memory.resolve(addr, 4, "write_value32")
        value = int(value) & 0xFFFFFFFF
        op: StreamOp
        if dev.config.write_value_mode() == "blit":
            # a one-work-item kernel: one wave slot of a CU, no flag, writes at its end
            op = KernelRun(
                "write_value32", self._q, name="write_value32 blit", addr=addr, value=value,
                spec=_BLIT_SPEC, config=_BLIT_LAUNCH, num_blocks=1,
                units=CAPACITY // dev.arch.limits.max_waves_per_cu,
                block_ns=ns(dev.config.blit_time_us), skip_ns=0,
            )  # fmt: skip
        else:
            op = StreamOp("write_value32", self._q, addr=addr, value=value)
        dev._submit(op, dev.config.stream_op_overhead_us)

    def wait_event(self, event: Event) -> None:
        dev = self._device
        dev._own_stream(self)
        if not isinstance(event, SimEvent) or event._device is not dev:
            raise ValueError("wait_event needs an event of the same simulated device")
        # like CUDA: waits for the most recent record at the time of this call (none: no-op)
        op = StreamOp("wait_event", self._q, name=f"event {event.id}", target=event._last)
        dev._submit(op, dev.config.stream_op_overhead_us)

    def close(self) -> None:
        """As in CUDA/HIP: work already submitted still runs; nothing more may be."""
        self.destroyed = True

    def __repr__(self) -> str:
        mask = f" cu_mask={list(self.cu_mask)}" if self.cu_mask is not None else ""
        return (
            f"<SimStream {self.id} priority={self.priority}{mask} hw_queue={self._q.hw.id} "
            f"pending={len(self._q.ops)} {SIM_TAG}>"
        )


class SimEvent(Event):
    def __init__(self, device: SimDevice, eid: int, timing: bool) -> None:
        self._device = device
        self.id = eid
        self.timing = timing
        self._last: StreamOp | None = None

    def record(self, stream: Stream) -> None:
        dev = self._device
        s = dev._own_stream(stream)
        op = StreamOp("event_record", s._q, name=f"event {self.id}", event=self)
        self._last = op
        dev._submit(op, dev.config.stream_op_overhead_us)

    def synchronize(self) -> None:
        last = self._last
        if last is not None:
            self._device._host_wait(lambda: last.done, f"event {self.id}")

    def query(self) -> bool:
        self._device._host(self._device.config.query_overhead_us)
        return self._last is None or self._last.done

    @property
    def timestamp_us(self) -> float | None:
        """Virtual time the last record completed (None if not recorded or not done yet)."""
        last = self._last
        return us(last.end_ns) if last is not None and last.done else None  # type: ignore[arg-type]

    def elapsed_ms(self, end: Event) -> float:
        if not isinstance(end, SimEvent) or end._device is not self._device:
            raise ValueError("elapsed_ms needs an event of the same simulated device")
        for e in (self, end):
            if not e.timing:
                raise GpuError("sim.elapsed_ms", 400, f"event {e.id} has timing off {SIM_TAG}")
            if e._last is None:
                raise GpuError("sim.elapsed_ms", 400, f"event {e.id} was never recorded {SIM_TAG}")
            if not e._last.done:
                raise GpuError("sim.elapsed_ms", 600, f"event {e.id} not ready {SIM_TAG}")
        return (end._last.end_ns - self._last.end_ns) / 1e6  # type: ignore[union-attr,operator]

    def close(self) -> None:
        """Nothing to release in the model (kept for parity with hip/cuda events)."""

    def __repr__(self) -> str:
        return f"<SimEvent {self.id} t={self.timestamp_us} us {SIM_TAG}>"


class SimBoundLaunch(BoundLaunch):
    __slots__ = ("kernel", "config", "params")

    def __init__(self, kernel: SimKernel, config: LaunchConfig, params: ParamBlock) -> None:
        self.kernel = kernel
        self.config = config
        self.params = params

    def launch(self, stream: Stream) -> None:
        self.kernel._module._device._launch(self, stream)  # type: ignore[attr-defined]


class SimKernel(Kernel):
    def __init__(self, module: SimModule, spec: SimKernelSpec) -> None:
        self._module = module
        self.spec = spec
        self.name = spec.name
        # a declarative effect is resolved by op name when the module loads
        self.effect: Effect | None = (
            resolve_effect(spec.name, spec.effect, spec.params) if spec.effect else None
        )

    @property
    def attributes(self) -> dict[str, int]:
        s = self.spec
        return {
            "registers": s.registers,
            "shared_bytes": s.shared_bytes,
            "local_bytes": s.local_bytes,
            "max_threads_per_block": s.max_threads_per_block,
        }

    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        dev = self._module._device
        if block_threads > min(self.spec.max_threads_per_block, dev.info.max_threads_per_block):
            return 0
        if self.spec.blocks_per_cu is not None:
            return self.spec.blocks_per_cu
        s = self.spec
        return occupancy(
            dev.arch, block_threads, s.registers, s.shared_bytes + dynamic_shared, s.sgprs
        )

    def bind(self, config: LaunchConfig, args: Sequence[Any]) -> SimBoundLaunch:
        spec = self.spec
        args = tuple(args)
        if len(args) != len(spec.params):
            names = ", ".join(p.name for p in spec.params) or "none"
            raise TypeError(
                f"kernel {spec.signature()} takes {len(spec.params)} argument(s) ({names}), "
                f"got {len(args)} {SIM_TAG}"
            )
        params = ParamBlock(args)
        for i, (p, size) in enumerate(zip(spec.params, params.sizes, strict=True)):
            if size != p.size:
                raise TypeError(
                    f"kernel {spec.name}: argument {i} ({p.name}) is {p.type} ({p.size} bytes), "
                    f"got a {size}-byte {type(args[i]).__name__} {SIM_TAG}"
                )
        dev = self._module._device
        limit = min(spec.max_threads_per_block, dev.info.max_threads_per_block)
        if config.threads_per_block > limit:
            raise UnsupportedError(
                f"kernel {spec.name}: {config.threads_per_block} threads per block exceeds "
                f"{limit} {SIM_TAG}"
            )
        if spec.shared_bytes + config.shared_mem > dev.arch.shared_per_block:
            raise UnsupportedError(
                f"kernel {spec.name}: {spec.shared_bytes + config.shared_mem} bytes of shared "
                f"memory per block exceed {dev.arch.shared_per_block} {SIM_TAG}"
            )
        occ = self.max_active_blocks_per_cu(config.threads_per_block, config.shared_mem)
        if not 1 <= occ <= MAX_OCCUPANCY:
            raise UnsupportedError(
                f"kernel {spec.name}: occupancy {occ} blocks per CU with {config} is outside "
                f"1..{MAX_OCCUPANCY} {SIM_TAG}"
            )
        return SimBoundLaunch(self, config, params)

    def __repr__(self) -> str:
        return f"<SimKernel {self.spec.signature()} {SIM_TAG}>"


class SimModule(Module):
    def __init__(self, device: SimDevice, spec: SimModuleSpec) -> None:
        self._device = device
        self.spec = spec
        self.unloaded = False
        # every kernel is built (and its effect resolved) at load, so a bad image fails here
        self._kernels: dict[str, SimKernel] = {k.name: SimKernel(self, k) for k in spec.kernels}

    def get_kernel(self, name: str) -> SimKernel:
        if self.unloaded:
            raise GpuError("sim.get_kernel", 400, f"module {self.spec.name!r} was unloaded")
        if name not in self._kernels:
            raise GpuError(
                "sim.get_kernel",
                500,
                f"no kernel {name!r} in sim module {self.spec.name!r} "
                f"(has {', '.join(self.spec.names) or 'none'}) {SIM_TAG}",
            )
        return self._kernels[name]

    def close(self) -> None:
        self.unloaded = True

    def __repr__(self) -> str:
        return f"<SimModule {self.spec.name!r} kernels={self.spec.names} {SIM_TAG}>"


class SimDevice(Device):
    """A simulated GPU. Beyond the Device interface (all in virtual time):

    ``now_us``, ``advance(us)``, ``run_until(t_us)``, ``run_until_idle()``, ``next_event_us``,
    ``idle``; ``kill_running_waves()`` (wave_kill), ``clear_queue(stream)`` (queue_reset);
    ``trace``, ``stats()``, ``peek``/``peek_u32`` (inspection at no virtual cost).
    """

    def __init__(self, ordinal: int, config: SimConfig) -> None:
        self.config = config
        self.arch = config.arch_model
        self.capabilities = config.capabilities()
        arch = self.arch
        self.info = DeviceInfo(
            backend="sim",
            vendor=Vendor.SIM,
            ordinal=ordinal,
            name=f"{MODEL_NAME} model of {arch.arch} {SIM_TAG}",
            arch=arch.arch,
            compute_units=arch.compute_units,
            memory_bytes=arch.memory_bytes,
            warp_size=arch.warp_size,
            max_threads_per_block=1024,
            max_shared_memory_per_block=arch.shared_per_block,
            driver_version=f"{MODEL_NAME} {MODEL_VERSION} {SIM_TAG}",
            runtime_version=f"{MODEL_NAME} {MODEL_VERSION} {SIM_TAG}",
            extra={
                "simulated": True,
                "model": f"{MODEL_NAME} {MODEL_VERSION}: discrete-event GPU model",
                "imitates": f"{arch.product} ({arch.arch}), {arch.compute_units} CUs",
                "config": config.as_dict(),
            },
        )
        self.memory = SimMemory(arch.memory_bytes)
        self.trace: SimTrace | None = SimTrace(self.info.name) if config.trace else None
        self._engine = SimEngine(config, self.memory, arch.compute_units, self.trace)
        self._n_events = 0
        self._closed = False
        self._skip_ns = ns(config.block_skip_us)

    # -- clock -----------------------------------------------------------------------------

    @property
    def now_us(self) -> float:
        """The virtual clock, microseconds since the device was opened."""
        return us(self._engine.now)

    @property
    def next_event_us(self) -> float | None:
        """When the device next changes state on its own (None: nothing scheduled)."""
        t = self._engine.next_event_ns
        return us(t) if t is not None else None

    @property
    def idle(self) -> bool:
        return self._engine.idle

    def advance(self, us: float) -> None:
        """Let ``us`` microseconds of device time pass with no host call."""
        if us < 0:
            raise ValueError("advance() needs a non-negative duration")
        self._check_open()
        self._engine.run_to(self._engine.now + ns(us))

    def run_until(self, t_us: float) -> None:
        """Run device events up to absolute virtual time ``t_us`` (>= now)."""
        t = ns(t_us)
        if t < self._engine.now:
            raise ValueError(f"run_until({t_us}) is in the past (now {self.now_us} us)")
        self._check_open()
        self._engine.run_to(t)

    def run_until_idle(self) -> float:
        """Run until no device work is left; returns the time it went idle (no host cost)."""
        self._check_open()
        self._engine.run_all("run_until_idle")
        return self.now_us

    def _host(self, cost_us: float) -> None:
        """A host API call taking ``cost_us``: the device runs on meanwhile."""
        self._check_open()
        self._engine.run_to(self._engine.now + ns(cost_us))

    def _host_wait(self, done: Callable[[], bool], what: str) -> None:
        """A blocking host call: run the device until ``done()``, then wake the host."""
        self._check_open()
        if done():
            self._host(self.config.query_overhead_us)
            return
        self._engine.wait_until(done, what)
        self._engine.run_to(self._engine.now + ns(self.config.sync_latency_us))

    def _check_open(self) -> None:
        if self._closed:
            raise GpuError("sim", 201, f"device {self.info.name} was closed")

    # -- submission --------------------------------------------------------------------------

    def _own_stream(self, stream: Stream) -> SimStream:
        if not isinstance(stream, SimStream) or stream._device is not self:
            raise ValueError(f"stream {stream!r} does not belong to {self.info.name}")
        if stream.destroyed:
            raise GpuError("sim.stream", 400, f"stream {stream.id} was destroyed {SIM_TAG}")
        return stream

    def _submit(self, op: StreamOp, cost_us: float) -> None:
        self._host(cost_us)
        self._engine.submit(op)

    def _launch(self, bound: SimBoundLaunch, stream: Stream) -> None:
        s = self._own_stream(stream)
        kernel = bound.kernel
        if kernel._module.unloaded:
            raise GpuError("sim.launch", 400, f"module of kernel {kernel.name} was unloaded")
        spec = kernel.spec
        params = bound.params
        if len(params) != len(spec.params):
            raise TypeError(f"kernel {spec.signature()}: {len(params)} packed arguments")
        # The device reads its arguments from the packed bytes with the kernel's own layout,
        # as a GPU reads its kernarg segment: a packing bug shows up as garbage values here.
        args = decode_params(spec.params, params.raw())
        for p, v in zip(spec.params, args, strict=True):
            if p.type != "ptr" or (v == 0 and p.role is None):
                continue
            if self.memory.find(int(v)) is None:
                raise GpuError(
                    "sim.launch",
                    1,
                    f"kernel {spec.name}: argument {p.name} = {int(v):#x} is not a live "
                    f"simulated device address (wrong argument, freed buffer, or arguments "
                    f"packed in a layout the kernel does not expect) {SIM_TAG}",
                )
        fi = spec.role_index(ROLE_PREEMPT_FLAG)
        si = spec.role_index(ROLE_COMPLETION_SLOT)
        pi = spec.role_index(ROLE_POLL_INTERVAL)
        flag = int(args[fi]) if fi is not None else None
        slot = int(args[si]) if si is not None else None
        for addr, what in ((flag, "preempt flag"), (slot, "completion slot")):
            if addr is not None:
                self.memory.resolve(addr, 4, f"{spec.name} {what}")
        ei = spec.role_index(ROLE_POLL_EVERY)
        block_ns = max(1, ns(spec.block_time_us))
        every = int(args[ei]) if ei is not None else spec.poll_every
        if pi is not None:
            poll_us = float(args[pi])
        elif every is not None:
            if every < 0:
                raise ValueError(f"kernel {spec.name}: poll_every {every} is negative")
            # N loop iterations of a block of loop_trips iterations; N >= trips: never polls
            poll_us = 0.0 if every == 0 else us(block_ns) * every / spec.loop_trips
        else:
            poll_us = spec.poll_interval_us or 0.0
        if poll_us < 0:
            raise ValueError(f"kernel {spec.name}: poll interval {poll_us} us is negative")
        if poll_us and not self.capabilities.in_kernel_polling:
            raise UnsupportedError(
                f"kernel {spec.name} polls its flag but in-kernel polling is off {SIM_TAG}"
            )
        config = bound.config
        occ = kernel.max_active_blocks_per_cu(config.threads_per_block, config.shared_mem)
        run = KernelRun(
            "kernel",
            s._q,
            name=spec.name,
            spec=spec,
            config=config,
            args=args,
            num_blocks=config.num_blocks,
            units=CAPACITY // occ,
            block_ns=block_ns,
            effect=kernel.effect,
            skip_ns=ns(spec.skip_time_us) if spec.skip_time_us is not None else self._skip_ns,
            poll_ns=ns(poll_us),
            flag_addr=flag,
            slot_addr=slot,
        )
        self._submit(run, self.config.launch_overhead_us)

    # -- REEF's device-level mechanisms -------------------------------------------------------

    def kill_running_waves(self) -> int:
        """Kill every running block of this device (the patched-KFD wave kill; one simulated
        device is one process, so "this process's waves" is all of them).

        The ioctl takes ``ioctl_latency_us`` of host time and the waves die at its end. Killed
        blocks neither increment completion slots nor run ``on_block``. The kernels they belong
        to keep dispatching their remaining blocks - which is why REEF raises the preempt flag
        first: those blocks then skip, the dispatches complete and the streams drain. Returns
        the number of blocks killed. Backend-neutral name: the hip backend mirrors it.
        """
        if not self.capabilities.wave_kill:
            raise UnsupportedError(f"wave kill is off on this simulated device {SIM_TAG}")
        self._host(self.config.ioctl_latency_us)
        return self._engine.kill_all()

    def clear_queue(self, stream: Stream) -> int:
        """Drop every op of ``stream`` that has not started (the patched-KFD queue reset);
        the op at the head keeps running. Dropped kernels never run, dropped write-values never
        write, dropped event records complete now (so nothing waits on them forever). Costs
        ``ioctl_latency_us``; returns the number of kernels dropped."""
        if not self.capabilities.queue_reset:
            raise UnsupportedError(f"queue reset is off on this simulated device {SIM_TAG}")
        s = self._own_stream(stream)
        self._host(self.config.ioctl_latency_us)
        return self._engine.clear(s._q)

    # -- Device interface -----------------------------------------------------------------------

    def create_stream(self, priority: int = 0, cu_mask: Sequence[int] | None = None) -> SimStream:
        self._check_open()
        mask = None
        if cu_mask is not None:
            if not self.capabilities.cu_mask:
                raise UnsupportedError(f"CU masks are off on this simulated device {SIM_TAG}")
            cus = list(cu_mask)
            n = self.arch.compute_units
            if not cus or len(set(cus)) != len(cus):
                raise ValueError(f"cu_mask must list distinct CU indices, got {cus}")
            if not all(isinstance(c, (int, np.integer)) and 0 <= c < n for c in cus):
                raise ValueError(f"cu_mask indices must be in 0..{n - 1}, got {cus}")
            mask = tuple(sorted(int(c) for c in cus))
        least, most = self.stream_priority_range()
        # clamped into the range, as CUDA and HIP do
        return SimStream(
            self, len(self._engine.streams), min(max(int(priority), most), least), mask
        )

    def stream_priority_range(self) -> tuple[int, int]:
        return self.config.stream_priority_range()

    def load_module(self, image: Any) -> SimModule:
        """``image``: a SimModuleSpec (or one SimKernelSpec), its dict, or its JSON bytes."""
        self._check_open()
        return SimModule(self, SimModuleSpec.from_image(image))

    def alloc(self, nbytes: int) -> SimBuffer:
        self._check_open()
        return SimBuffer(self, self.memory.allocate(nbytes, "device"))

    def alloc_host_mapped(self, nbytes: int) -> SimHostMappedBuffer:
        self._check_open()
        if not self.capabilities.host_mapped_memory:
            raise UnsupportedError(f"host-mapped memory is off on this simulated device {SIM_TAG}")
        return SimHostMappedBuffer(self, self.memory.allocate(nbytes, "host_mapped"))

    def _copy_us(self, nbytes: int) -> float:
        return self.config.copy_latency_us + nbytes / (self.config.copy_bandwidth_gbps * 1e3)

    def _copy(
        self,
        stream: Stream | None,
        nbytes: int,
        name: str,
        action: Callable[[], None],
        host_waits: bool = True,
    ) -> None:
        duration = ns(self._copy_us(nbytes))
        if stream is not None:
            s = self._own_stream(stream)
            op = StreamOp("copy", s._q, name=name, duration_ns=duration, action=action)
            self._submit(op, self.config.stream_op_overhead_us)
            return
        # no stream: the legacy default stream (see docs/sim.md, "Null stream")
        op = StreamOp("copy", self._engine.null, name=name, duration_ns=duration, action=action)
        if not host_waits:  # enqueued; the call returns at once
            self._host(self.config.stream_op_overhead_us)
            self._engine.submit_null(op)
            return
        self._check_open()
        self._engine.submit_null(op)
        self._engine.wait_until(lambda: op.done, name)

    def copy_to_device(
        self, dst: DeviceBuffer | DevicePtr, src: Any, stream: Stream | None = None
    ) -> None:
        data = _host_bytes(src, writable=False)
        addr = device_address(dst)
        check_copy_size(dst, data.nbytes)
        self.memory.resolve(addr, data.nbytes, "copy_to_device")
        # a stream copy reads the host array when it executes, as DMA from pinned memory does
        self._copy(stream, data.nbytes, "to_device", lambda: self.memory.write(addr, data))

    def copy_to_host(
        self, dst: Any, src: DeviceBuffer | DevicePtr, stream: Stream | None = None
    ) -> None:
        out = _host_bytes(dst, writable=True)
        addr = device_address(src)
        check_copy_size(src, out.nbytes)
        self.memory.resolve(addr, out.nbytes, "copy_to_host")

        def action() -> None:
            out[:] = self.memory.view(addr, out.nbytes, "copy_to_host")

        self._copy(stream, out.nbytes, "to_host", action)

    def memset32(
        self, dst: DeviceBuffer | DevicePtr, value: int, count: int, stream: Stream | None = None
    ) -> None:
        if not isinstance(count, (int, np.integer)) or count < 0:
            raise ValueError(f"memset32 count must be a non-negative int, got {count!r}")
        addr = device_address(dst)
        check_copy_size(dst, 4 * count)
        self.memory.resolve(addr, max(4 * count, 1), "memset32")
        words = np.full(count, int(value) & 0xFFFFFFFF, dtype="<u4")

        def action() -> None:
            if count:
                self.memory.write(addr, words)

        self._copy(stream, 4 * count, "memset32", action, self.config.sync_memset_waits())

    def create_event(self, timing: bool = True) -> SimEvent:
        self._check_open()
        e = SimEvent(self, self._n_events, timing)
        self._n_events += 1
        return e

    def synchronize(self) -> None:
        engine = self._engine
        self._host_wait(lambda: not engine.busy, "device")

    def close(self) -> None:
        self._closed = True

    # -- inspection (no virtual time) ------------------------------------------------------

    def peek(self, target: Any, nbytes: int) -> bytes:
        """Read simulated memory without costing virtual time (tests and reports only; a
        scheduler must use copy_to_host, which costs what a real read costs)."""
        return self.memory.read(device_address(target), nbytes)

    def peek_u32(self, target: Any) -> int:
        return self.memory.read_u32(device_address(target))

    def stats(self) -> dict[str, Any]:
        e = self._engine
        return {
            "simulated": True,
            "model": f"{MODEL_NAME} {MODEL_VERSION}",
            "device": self.info.name,
            "now_us": self.now_us,
            "launches": e.n_launches,
            "kernels_finished": e.counts["kernels"],
            "blocks": {k: e.counts[k] for k in OUTCOMES},
            "kills": e.counts["kills"],
            "killed_blocks": e.counts["killed_blocks"],
            "queue_resets": e.counts["queue_resets"],
            "running_blocks": len(e.running),
            "cu_utilisation": e.utilisation(),
        }

    def __repr__(self) -> str:
        return f"<SimDevice {self.info.name} t={self.now_us} us>"


def _host_bytes(array: Any, writable: bool) -> np.ndarray:
    """A flat uint8 view of a C-contiguous numpy array or bytes-like object."""
    if isinstance(array, (bytes, bytearray, memoryview)) and not writable:
        return np.frombuffer(array, dtype=np.uint8)
    if not isinstance(array, np.ndarray):
        need = "a writable numpy array" if writable else "a numpy array or bytes"
        raise TypeError(f"expected {need}, got {type(array).__name__}")
    if not array.flags.c_contiguous:
        raise ValueError("host array must be C-contiguous")
    if writable and not array.flags.writeable:
        raise TypeError("copy_to_host needs a writable numpy array")
    return array.reshape(-1).view(np.uint8)
