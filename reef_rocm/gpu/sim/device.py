"""The discrete-event GPU model behind the device interface.

One virtual clock (integer nanoseconds; ``now_us`` in microseconds) is shared by the host and
the device, and only the model moves it:

* every host API call costs host time (launch ``launch_overhead_us``, other stream ops
  ``stream_op_overhead_us``, queries ``query_overhead_us``, synchronous copies/memsets
  ``copy_latency_us`` + size / bandwidth, the kill/reset ioctls ``ioctl_latency_us``). The call
  first runs every device event up to ``now + cost``, then takes effect at that instant (a
  launched kernel is in its stream's device queue from then on).
* a blocking call (``synchronize``) runs device events until its condition holds; the host
  then wakes ``sync_latency_us`` later.
* ``advance(us)`` / ``run_until(t_us)`` run the device with no host call, for what-if loops.

Within one instant, device events run in the order they were scheduled, and block dispatch
happens after them, so a memory write at time t is seen by every block that starts at t.
Setup calls (alloc, free, load_module, create_stream/event) cost no virtual time.

Device: ``compute_units`` CUs; a block of a kernel with occupancy k uses 1/k of a CU (the
tightest of its resource limits), so blocks of different kernels share a CU in proportion.
Streams are in-order device queues; the head kernel of each stream is "active" from
``dispatch_latency_us`` after it reaches the head. Whenever room frees up, blocks of active
kernels are dispatched in order of (stream priority, activation order), least-loaded CU first
and round robin, only onto the stream's CU mask if it has one. A kernel whose next block does
not fit lets later kernels use the room (backfill). Priorities only order dispatch; running
blocks are never preempted - only ``kill_running_waves`` stops them.
"""

from __future__ import annotations

import heapq
import json
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
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
from reef_rocm.gpu.sim.effects import Effect, resolve_effect
from reef_rocm.gpu.sim.memory import Allocation, SimMemory
from reef_rocm.gpu.sim.spec import (
    ROLE_COMPLETION_SLOT,
    ROLE_POLL_EVERY,
    ROLE_POLL_INTERVAL,
    ROLE_PREEMPT_FLAG,
    SimKernelSpec,
    SimModuleSpec,
    SimParam,
    decode_params,
)

MODEL_NAME = "REEF-SIM"
MODEL_VERSION = "1"
SIM_TAG = "(simulated)"

# A CU's capacity in integer units divisible by every occupancy 1..64, so a block of a kernel
# with occupancy k uses exactly CAPACITY // k and mixed kernels add up without rounding.
MAX_OCCUPANCY = 64
CAPACITY = math.lcm(*range(1, MAX_OCCUPANCY + 1))

OUTCOMES = ("completed", "skipped", "polled_out", "killed")


def _ns(us: float) -> int:
    return int(round(us * 1000))


def _us(ns: int) -> float:
    return ns / 1000


# ---------------------------------------------------------------------------------------
# trace


@dataclass(frozen=True, slots=True)
class TraceRecord:
    """One interval on the virtual timeline. ``kind``: block, kernel, write_value32,
    event_record, wait_event, copy, kill, queue_reset. Block ``outcome``: completed, skipped
    (saw the flag at start), polled_out (saw it at a poll point), killed."""

    kind: str
    name: str
    start_us: float
    end_us: float
    stream: int | None = None
    launch: int | None = None  # launch sequence number (tells two launches of a kernel apart)
    cu: int | None = None
    block: int | None = None
    outcome: str = ""

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__slots__}
        d["simulated"] = True
        return d


class SimTrace:
    """Everything that happened on a simulated device, in the order it ended."""

    simulated = True

    def __init__(self, device_name: str) -> None:
        self.device = device_name
        self.records: list[TraceRecord] = []

    def blocks(self, kernel: str | None = None, launch: int | None = None) -> list[TraceRecord]:
        return [
            r
            for r in self.records
            if r.kind == "block"
            and (kernel is None or r.name == kernel)
            and (launch is None or r.launch == launch)
        ]

    def kernels(self, name: str | None = None) -> list[TraceRecord]:
        return [r for r in self.records if r.kind == "kernel" and (name is None or r.name == name)]

    def of_kind(self, kind: str) -> list[TraceRecord]:
        return [r for r in self.records if r.kind == kind]

    def clear(self) -> None:
        self.records.clear()

    def as_dict(self) -> dict[str, Any]:
        return {
            "simulated": True,
            "model": f"{MODEL_NAME} {MODEL_VERSION}",
            "device": self.device,
            "time_unit": "us (virtual)",
            "records": [r.as_dict() for r in self.records],
        }

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def __len__(self) -> int:
        return len(self.records)

    def __repr__(self) -> str:
        return f"<SimTrace of {self.device}: {len(self.records)} records {SIM_TAG}>"


# ---------------------------------------------------------------------------------------
# stream operations


@dataclass(eq=False, slots=True)
class _Op:
    kind: str
    stream: SimStream
    name: str = ""
    start_ns: int | None = None
    end_ns: int | None = None
    done: bool = False
    dropped: bool = False
    waiters: list[_Op] = field(default_factory=list)
    # per kind
    addr: int = 0
    value: int = 0
    duration_ns: int = 0
    action: Callable[[], None] | None = None
    target: _Op | None = None  # wait_event: the record it waits for
    event: SimEvent | None = None


@dataclass(eq=False, slots=True)
class _KernelRun(_Op):
    spec: SimKernelSpec | None = None
    config: LaunchConfig | None = None
    args: tuple[int | float, ...] = ()
    launch_id: int = 0
    num_blocks: int = 0
    units: int = 0
    block_ns: int = 0
    skip_ns: int = 0
    poll_ns: int = 0
    flag_addr: int | None = None
    slot_addr: int | None = None
    effect: Effect | None = None
    activation: int = -1
    activate_ns: int | None = None
    first_block_ns: int | None = None
    next_block: int = 0
    ended: int = 0
    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))


@dataclass(eq=False, slots=True)
class _Block:
    run: _KernelRun
    cu: int
    index: int
    start_ns: int
    end_ns: int
    done: bool = False


@dataclass(frozen=True, slots=True)
class SimBlockContext:
    """What a kernel's ``on_block`` callable sees when one of its blocks completes."""

    kernel: str
    block_id: int  # linear block index, x fastest
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    params: tuple[SimParam, ...]
    args: tuple[int | float, ...]  # decoded from the launch's packed argument bytes
    memory: SimMemory
    now_us: float
    simulated: bool = True

    @property
    def num_blocks(self) -> int:
        return self.grid[0] * self.grid[1] * self.grid[2]

    @property
    def block_idx(self) -> tuple[int, int, int]:
        gx, gy, _ = self.grid
        b = self.block_id
        return (b % gx, (b // gx) % gy, b // (gx * gy))

    def arg(self, name: str) -> int | float:
        for p, v in zip(self.params, self.args, strict=True):
            if p.name == name:
                return v
        raise KeyError(f"kernel {self.kernel} has no parameter {name!r}")


# ---------------------------------------------------------------------------------------
# interface objects


class SimBuffer(DeviceBuffer):
    def __init__(self, device: SimDevice, alloc: Allocation) -> None:
        self._device = device
        self._alloc = alloc
        self.ptr = alloc.start
        self.nbytes = alloc.nbytes

    def free(self) -> None:
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

    def free(self) -> None:
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
        self._cu_set = frozenset(cu_mask) if cu_mask is not None else None
        self._ops: deque[_Op] = deque()
        self._head_started = False
        self.destroyed = False

    @property
    def pending_ops(self) -> int:
        return len(self._ops)

    @property
    def pending_kernels(self) -> int:
        return sum(op.kind == "kernel" for op in self._ops)

    def synchronize(self) -> None:
        self._device._host_wait(lambda: not self._ops, f"stream {self.id}")

    def query(self) -> bool:
        self._device._host(self._device.config.query_overhead_us)
        return not self._ops

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
        op = _Op("write_value32", self, addr=addr, value=int(value) & 0xFFFFFFFF)
        dev._submit(self, op, dev.config.stream_op_overhead_us)

    def wait_event(self, event: Event) -> None:
        dev = self._device
        dev._own_stream(self)
        if not isinstance(event, SimEvent) or event._device is not dev:
            raise ValueError("wait_event needs an event of the same simulated device")
        # like CUDA: waits for the most recent record at the time of this call (none: no-op)
        op = _Op("wait_event", self, name=f"event {event.id}", target=event._last)
        dev._submit(self, op, dev.config.stream_op_overhead_us)

    def destroy(self) -> None:
        """As in CUDA/HIP: work already submitted still runs; nothing more may be."""
        self.destroyed = True

    def __repr__(self) -> str:
        mask = f" cu_mask={list(self.cu_mask)}" if self.cu_mask is not None else ""
        return (
            f"<SimStream {self.id} priority={self.priority}{mask} "
            f"pending={len(self._ops)} {SIM_TAG}>"
        )


class SimEvent(Event):
    def __init__(self, device: SimDevice, eid: int, timing: bool) -> None:
        self._device = device
        self.id = eid
        self.timing = timing
        self._last: _Op | None = None

    def record(self, stream: Stream) -> None:
        dev = self._device
        s = dev._own_stream(stream)
        op = _Op("event_record", s, name=f"event {self.id}", event=self)
        self._last = op
        dev._submit(s, op, dev.config.stream_op_overhead_us)

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
        return _us(last.end_ns) if last is not None and last.done else None  # type: ignore[arg-type]

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

    def destroy(self) -> None:
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
        return occupancy(
            dev.arch, block_threads, self.spec.registers, self.spec.shared_bytes + dynamic_shared
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

    def unload(self) -> None:
        self.unloaded = True

    def __repr__(self) -> str:
        return f"<SimModule {self.spec.name!r} kernels={self.spec.names} {SIM_TAG}>"


# ---------------------------------------------------------------------------------------
# the device


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
        self._now = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self._used = [0] * arch.compute_units
        self._dirty: set[int] = set()
        self._full_pass = False
        self._active: list[_KernelRun] = []
        self._running: dict[_Block, None] = {}  # insertion-ordered set
        self._streams: list[SimStream] = []
        self._n_events = 0
        self._n_launches = 0
        self._n_activations = 0
        self._rng = random.Random(config.seed)
        self._closed = False
        self._counts = dict.fromkeys(OUTCOMES, 0)
        self._counts.update(kernels=0, kills=0, killed_blocks=0, queue_resets=0)
        self._busy_ns = 0  # CU-occupancy-weighted busy time, for utilisation stats
        self._lat_ns = {  # cached ns values of config times
            "dispatch": _ns(config.dispatch_latency_us),
            "visibility": _ns(config.flag_visibility_us),
            "skip": _ns(config.block_skip_us),
        }

    # -- clock -----------------------------------------------------------------------------

    @property
    def now_us(self) -> float:
        """The virtual clock, microseconds since the device was opened."""
        return _us(self._now)

    @property
    def next_event_us(self) -> float | None:
        """When the device next changes state on its own (None: nothing scheduled)."""
        return _us(self._heap[0][0]) if self._heap else None

    @property
    def idle(self) -> bool:
        return not self._heap and not any(s._ops for s in self._streams)

    def advance(self, us: float) -> None:
        """Let ``us`` microseconds of device time pass with no host call."""
        if us < 0:
            raise ValueError("advance() needs a non-negative duration")
        self._check_open()
        self._run_to(self._now + _ns(us))

    def run_until(self, t_us: float) -> None:
        """Run device events up to absolute virtual time ``t_us`` (>= now)."""
        t = _ns(t_us)
        if t < self._now:
            raise ValueError(f"run_until({t_us}) is in the past (now {self.now_us} us)")
        self._check_open()
        self._run_to(t)

    def run_until_idle(self) -> float:
        """Run until no device work is left; returns the time it went idle (no host cost)."""
        self._check_open()
        while self._heap:
            self._step()
        self._check_deadlock("run_until_idle")
        return self.now_us

    def _push(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (t, self._seq, fn, args))
        self._seq += 1

    def _step(self) -> None:
        """Run every event of the earliest instant, then dispatch blocks at that instant."""
        t = self._heap[0][0]
        self._now = t
        heap = self._heap
        while heap and heap[0][0] == t:
            _, _, fn, args = heapq.heappop(heap)
            fn(*args)
        self._dispatch()

    def _run_to(self, t: int) -> None:
        while self._heap and self._heap[0][0] <= t:
            self._step()
        self._now = max(self._now, t)

    def _host(self, cost_us: float) -> None:
        """A host API call taking ``cost_us``: the device runs on meanwhile."""
        self._check_open()
        self._run_to(self._now + _ns(cost_us))

    def _host_wait(self, done: Callable[[], bool], what: str) -> None:
        """A blocking host call: run the device until ``done()``, then wake the host."""
        self._check_open()
        if done():
            self._host(self.config.query_overhead_us)
            return
        while not done():
            if not self._heap:
                self._check_deadlock(f"synchronize on {what}")
                raise GpuError("sim.synchronize", 1, f"{what} never completes {SIM_TAG}")
            self._step()
        self._run_to(self._now + _ns(self.config.sync_latency_us))

    def _check_deadlock(self, what: str) -> None:
        stuck = [s for s in self._streams if s._ops]
        if stuck:
            heads = "; ".join(
                f"stream {s.id}: {s._ops[0].kind} {s._ops[0].name}".rstrip() for s in stuck
            )
            raise GpuError(
                "sim." + what.split()[0],
                1,
                f"deadlock {SIM_TAG}: {what} can never finish, nothing is scheduled but "
                f"streams are blocked ({heads}); this is a bug in the model, please report it",
            )

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

    def _submit(self, stream: SimStream, op: _Op, cost_us: float) -> None:
        self._host(cost_us)
        if isinstance(op, _KernelRun):
            op.launch_id = self._n_launches
            self._n_launches += 1
        stream._ops.append(op)
        self._pump(stream)
        self._dispatch()

    def _pump(self, s: SimStream) -> None:
        """Start the stream's head op if it is not running; retire ops that finish at once."""
        while s._ops and not s._head_started:
            op = s._ops[0]
            s._head_started = True
            op.start_ns = self._now
            if self._begin(op):
                self._retire(op)

    def _begin(self, op: _Op) -> bool:
        """Start ``op`` at the head of its stream; True if it completed on the spot."""
        if isinstance(op, _KernelRun):
            lat = self._lat_ns["dispatch"]
            if lat:
                self._push(self._now + lat, self._activate, op)
            else:
                self._activate(op)
            return False
        if op.kind == "write_value32":
            vis = self._lat_ns["visibility"]
            if not vis:
                self.memory.write_u32(op.addr, op.value)
                return True
            self._push(self._now + vis, self._finish_write, op)
            return False
        if op.kind == "event_record":
            return True
        if op.kind == "wait_event":
            target = op.target
            if target is None or target.done:
                return True
            target.waiters.append(op)
            return False
        if op.kind == "copy":
            if not op.duration_ns:
                op.action()  # type: ignore[misc]
                return True
            self._push(self._now + op.duration_ns, self._finish_copy, op)
            return False
        raise AssertionError(op.kind)

    def _finish_write(self, op: _Op) -> None:
        if not op.dropped:
            self.memory.write_u32(op.addr, op.value)
            self._complete(op)

    def _finish_copy(self, op: _Op) -> None:
        if not op.dropped:
            op.action()  # type: ignore[misc]
            self._complete(op)

    def _complete(self, op: _Op) -> None:
        """An op that finished after it started (not on the spot)."""
        if op.dropped or op.done:
            return
        self._retire(op)
        self._pump(op.stream)

    def _retire(self, op: _Op) -> None:
        s = op.stream
        head = s._ops.popleft()
        assert head is op, "stream ops retire in order"
        s._head_started = False
        self._mark_done(op)

    def _mark_done(self, op: _Op) -> None:
        op.done = True
        op.end_ns = self._now
        if self.trace is not None and op.kind != "kernel":
            outcome = f"value={op.value}" if op.kind == "write_value32" else ""
            if op.dropped:
                outcome = "dropped"
            start = op.start_ns if op.start_ns is not None else self._now
            self.trace.records.append(
                TraceRecord(
                    op.kind, op.name, _us(start), _us(self._now), op.stream.id, outcome=outcome
                )  # fmt: skip
            )
        waiters, op.waiters = op.waiters, []
        for w in waiters:
            self._complete(w)

    # -- kernels -----------------------------------------------------------------------------

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
        block_ns = max(1, _ns(spec.block_time_us))
        every = int(args[ei]) if ei is not None else spec.poll_every
        if pi is not None:
            poll_us = float(args[pi])
        elif every is not None:
            if every < 0:
                raise ValueError(f"kernel {spec.name}: poll_every {every} is negative")
            # N loop iterations of a block of loop_trips iterations; N >= trips: never polls
            poll_us = 0.0 if every == 0 else _us(block_ns) * every / spec.loop_trips
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
        run = _KernelRun(
            "kernel",
            s,
            name=spec.name,
            spec=spec,
            config=config,
            args=args,
            num_blocks=config.num_blocks,
            units=CAPACITY // occ,
            block_ns=block_ns,
            effect=kernel.effect,
            skip_ns=_ns(spec.skip_time_us)
            if spec.skip_time_us is not None
            else self._lat_ns["skip"],
            poll_ns=_ns(poll_us),
            flag_addr=flag,
            slot_addr=slot,
        )
        self._submit(s, run, self.config.launch_overhead_us)

    def _activate(self, run: _KernelRun) -> None:
        if run.dropped:
            return
        run.activation = self._n_activations
        self._n_activations += 1
        run.activate_ns = self._now
        self._active.append(run)
        self._full_pass = True

    def _dispatch(self) -> None:
        """Fill free CU room with blocks of active kernels, most urgent stream first.

        Only CUs that gained room since the last pass are looked at, unless a kernel became
        active (then all are): every still-active kernel found no room anywhere else before.
        """
        if not self._active:
            self._dirty.clear()
            self._full_pass = False
            return
        if self._full_pass:
            cus: Sequence[int] = range(len(self._used))
        else:
            cus = sorted(self._dirty)
        self._dirty.clear()
        self._full_pass = False
        if not cus:
            return
        self._active.sort(key=lambda r: (r.stream.priority, r.activation))
        for run in self._active:
            mask = run.stream._cu_set
            self._dispatch_run(run, cus if mask is None else [c for c in cus if c in mask])
        self._active = [r for r in self._active if r.next_block < r.num_blocks]

    def _dispatch_run(self, run: _KernelRun, cus: Sequence[int]) -> None:
        remaining = run.num_blocks - run.next_block
        if remaining <= 0 or not cus:
            return
        used = self._used
        u = run.units
        cands = sorted((used[c], c, (CAPACITY - used[c]) // u) for c in cus)
        room = {c: r for _, c, r in cands if r > 0}
        order = [c for _, c, r in cands if r > 0]
        while remaining and order:  # round robin, least-loaded CU first
            nxt = []
            for c in order:
                if not remaining:
                    break
                self._start_block(run, c)
                remaining -= 1
                room[c] -= 1
                if room[c]:
                    nxt.append(c)
            order = nxt

    def _start_block(self, run: _KernelRun, cu: int) -> None:
        now = self._now
        idx = run.next_block
        run.next_block += 1
        self._used[cu] += run.units
        if run.first_block_ns is None:
            run.first_block_ns = now
        if run.flag_addr is not None and self.memory.read_u32(run.flag_addr):
            blk = _Block(run, cu, idx, now, now + run.skip_ns)
            self._running[blk] = None
            self._push(blk.end_ns, self._end_block, blk, "skipped")
            return
        dur = run.block_ns
        if self.config.block_time_jitter:
            j = self.config.block_time_jitter
            dur = max(1, round(dur * (1 + self._rng.uniform(-j, j))))
        blk = _Block(run, cu, idx, now, now + dur)
        self._running[blk] = None
        if run.poll_ns and now + run.poll_ns < blk.end_ns:
            self._push(now + run.poll_ns, self._poll, blk)
        self._push(blk.end_ns, self._end_block, blk, "completed")

    def _poll(self, blk: _Block) -> None:
        if blk.done:
            return
        run = blk.run
        if self.memory.read_u32(run.flag_addr):  # type: ignore[arg-type]
            self._end_block(blk, "polled_out")
        elif self._now + run.poll_ns < blk.end_ns:
            self._push(self._now + run.poll_ns, self._poll, blk)

    def _end_block(self, blk: _Block, outcome: str) -> None:
        if blk.done:
            return
        blk.done = True
        del self._running[blk]
        run = blk.run
        self._used[blk.cu] -= run.units
        self._dirty.add(blk.cu)
        self._busy_ns += (self._now - blk.start_ns) * run.units
        run.outcomes[outcome] += 1
        self._counts[outcome] += 1
        spec = run.spec
        assert spec is not None and run.config is not None
        if outcome == "completed":
            if spec.on_block is not None or run.effect is not None:
                ctx = SimBlockContext(
                    spec.name,
                    blk.index,
                    run.config.grid,
                    run.config.block,
                    spec.params,
                    run.args,
                    self.memory,
                    self.now_us,
                )  # fmt: skip
                if run.effect is not None:
                    run.effect.apply(ctx)
                if spec.on_block is not None:
                    spec.on_block(ctx)
            # the count comes after the block's writes (the release fence real kernels need)
            if run.slot_addr is not None:
                self.memory.add_u32(run.slot_addr, 1)
        if self.trace is not None:
            self.trace.records.append(
                TraceRecord(
                    "block",
                    spec.name,
                    _us(blk.start_ns),
                    _us(self._now),
                    run.stream.id,
                    run.launch_id,
                    blk.cu,
                    blk.index,
                    outcome,
                )  # fmt: skip
            )
        run.ended += 1
        if run.ended == run.num_blocks:
            self._kernel_done(run)

    def _kernel_done(self, run: _KernelRun) -> None:
        self._counts["kernels"] += 1
        if self.trace is not None:
            o = run.outcomes
            summary = ", ".join(f"{k}={o[k]}" for k in OUTCOMES if o[k])
            start = run.first_block_ns if run.first_block_ns is not None else self._now
            self.trace.records.append(
                TraceRecord(
                    "kernel",
                    run.name,
                    _us(start),
                    _us(self._now),
                    run.stream.id,
                    run.launch_id,
                    outcome=summary,
                )  # fmt: skip
            )
        self._complete(run)

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
        victims = list(self._running)
        for blk in victims:
            self._end_block(blk, "killed")
        self._counts["kills"] += 1
        self._counts["killed_blocks"] += len(victims)
        if self.trace is not None:
            self.trace.records.append(
                TraceRecord(
                    "kill",
                    "kill_running_waves",
                    self.now_us,
                    self.now_us,
                    outcome=f"killed={len(victims)}",
                )  # fmt: skip
            )
        self._dispatch()
        return len(victims)

    def clear_queue(self, stream: Stream) -> int:
        """Drop every op of ``stream`` that has not started (the patched-KFD queue reset);
        the op at the head keeps running. Dropped kernels never run, dropped write-values never
        write, dropped event records complete now (so nothing waits on them forever). Costs
        ``ioctl_latency_us``; returns the number of kernels dropped."""
        if not self.capabilities.queue_reset:
            raise UnsupportedError(f"queue reset is off on this simulated device {SIM_TAG}")
        s = self._own_stream(stream)
        self._host(self.config.ioctl_latency_us)
        keep = 1 if s._head_started else 0
        dropped = list(s._ops)[keep:]
        for _ in dropped:
            s._ops.pop()
        kernels = 0
        for op in dropped:
            op.dropped = True
            kernels += op.kind == "kernel"
            if op.kind == "wait_event" and op.target is not None:
                op.target.waiters = [w for w in op.target.waiters if w is not op]
            if op.kind == "event_record":
                self._mark_done(op)
        self._counts["queue_resets"] += 1
        if self.trace is not None:
            self.trace.records.append(
                TraceRecord(
                    "queue_reset",
                    f"stream {s.id}",
                    self.now_us,
                    self.now_us,
                    s.id,
                    outcome=f"dropped_kernels={kernels}",
                )  # fmt: skip
            )
        self._pump(s)
        self._dispatch()
        return kernels

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
        s = SimStream(self, len(self._streams), min(max(int(priority), most), least), mask)
        self._streams.append(s)
        return s

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

    def _copy(self, stream: Stream | None, nbytes: int, name: str, action: Callable[[], None]):
        if stream is None:
            self._host(self._copy_us(nbytes))
            action()
            return
        s = self._own_stream(stream)
        op = _Op("copy", s, name=name, duration_ns=_ns(self._copy_us(nbytes)), action=action)
        self._submit(s, op, self.config.stream_op_overhead_us)

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

        self._copy(stream, 4 * count, "memset32", action)

    def create_event(self, timing: bool = True) -> SimEvent:
        self._check_open()
        e = SimEvent(self, self._n_events, timing)
        self._n_events += 1
        return e

    def synchronize(self) -> None:
        self._host_wait(lambda: not any(s._ops for s in self._streams), "device")

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
        cus = self.arch.compute_units
        return {
            "simulated": True,
            "model": f"{MODEL_NAME} {MODEL_VERSION}",
            "device": self.info.name,
            "now_us": self.now_us,
            "launches": self._n_launches,
            "kernels_finished": self._counts["kernels"],
            "blocks": {k: self._counts[k] for k in OUTCOMES},
            "kills": self._counts["kills"],
            "killed_blocks": self._counts["killed_blocks"],
            "queue_resets": self._counts["queue_resets"],
            "running_blocks": len(self._running),
            "cu_utilisation": (self._busy_ns / CAPACITY) / (cus * self._now) if self._now else 0.0,
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
