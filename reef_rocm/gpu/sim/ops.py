"""The device-side records the event engine works on: stream queues, their ops, and the
blocks of running kernels. Plain data; the engine gives them their behaviour."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from reef_rocm.gpu.api import LaunchConfig
from reef_rocm.gpu.sim.effects import Effect
from reef_rocm.gpu.sim.spec import SimKernelSpec
from reef_rocm.gpu.sim.trace import OUTCOMES


@dataclass(eq=False, slots=True)
class HwQueue:
    """A hardware queue (an AQL queue on AMD, a channel/connection on NVIDIA): in order
    across every stream mapped onto it, so an op waits for the op ahead of it whichever
    stream that came from (head-of-line blocking)."""

    id: int
    priority: int
    ops: deque[StreamOp] = field(default_factory=deque)
    head_started: bool = False
    streams: list[int] = field(default_factory=list)  # ids of the streams mapped here


@dataclass(eq=False, slots=True)
class StreamQueue:
    """The device side of one stream: its unfinished ops, in order, and the hardware queue it
    is mapped onto. ``cu_set``: the CUs its blocks may use (None: all). ``blocking``: a
    blocking stream synchronises with the legacy default (null) stream."""

    id: int
    priority: int
    cu_set: frozenset[int] | None
    hw: HwQueue
    ops: deque[StreamOp] = field(default_factory=deque)
    blocking: bool = False


@dataclass(eq=False, slots=True)
class StreamOp:
    """One op of a stream: kernel (see KernelRun), write_value32, event_record, wait_event or
    copy (copies and memsets)."""

    kind: str
    stream: StreamQueue
    name: str = ""
    start_ns: int | None = None
    end_ns: int | None = None
    done: bool = False
    dropped: bool = False
    waiters: list[StreamOp] = field(default_factory=list)
    # per kind
    addr: int = 0
    value: int = 0
    duration_ns: int = 0
    action: Callable[[], None] | None = None
    target: StreamOp | None = None  # wait_event: the record it waits for
    event: Any = None  # event_record: the SimEvent it records


@dataclass(eq=False, slots=True)
class KernelRun(StreamOp):
    """One kernel launch, from submission until its last block ended."""

    spec: SimKernelSpec | None = None
    config: LaunchConfig | None = None
    args: tuple[int | float, ...] = ()
    launch_id: int = 0
    num_blocks: int = 0
    units: int = 0  # CU capacity units one block takes (see dispatch.CAPACITY)
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
class RunningBlock:
    """A block on a CU."""

    run: KernelRun
    cu: int
    index: int
    start_ns: int
    end_ns: int
    done: bool = False
