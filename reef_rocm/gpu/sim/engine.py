"""The discrete-event engine: one virtual clock, stream queues, kernels and their blocks.

Time is integer nanoseconds. Events sit in a heap ordered by (time, scheduling order); ``step``
runs every event of the earliest instant, in the order they were scheduled, and then
dispatches blocks, so a memory write at time t is seen by every block that starts at t.

Streams are mapped onto a bounded number of hardware queues (``HwQueue``, option
``hw_queues``): round robin in creation order within each priority (a hardware queue has one
priority), a CU-masked stream on a queue of its own. A hardware queue is in order across all
its streams. The head kernel of a hardware queue becomes *active* ``dispatch_latency_us``
after it reaches the head; the next op starts when it completes (all its blocks ended).
Whenever CU room frees up, blocks of active kernels are placed in order of (stream priority,
activation order) by the dispatcher, only onto the stream's CU set if it has one; a kernel
whose next block fits nowhere lets later kernels use the room (backfill). Priorities only
order dispatch; running blocks are never preempted - only ``kill_all`` stops them.
The engine knows nothing of the device interface (``device.py`` builds on it).
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Sequence
from typing import Any

from reef_rocm.errors import GpuError
from reef_rocm.gpu.sim.config import SimConfig
from reef_rocm.gpu.sim.context import SimBlockContext
from reef_rocm.gpu.sim.dispatch import CAPACITY, make_dispatcher
from reef_rocm.gpu.sim.labels import SIM_TAG, ns, us
from reef_rocm.gpu.sim.memory import SimMemory
from reef_rocm.gpu.sim.ops import HwQueue, KernelRun, RunningBlock, StreamOp, StreamQueue
from reef_rocm.gpu.sim.trace import OUTCOMES, SimTrace, TraceRecord

#: what a block that stopped part-way leaves in its output slice (0xDEADBEEF words, LE)
POISON_WORD = b"\xef\xbe\xad\xde"


def poison(nbytes: int) -> bytes:
    return (POISON_WORD * (nbytes // 4 + 1))[:nbytes]


class SimEngine:
    """Clock, event heap, stream queues, dispatch and the life of every block."""

    def __init__(
        self, config: SimConfig, memory: SimMemory, compute_units: int, trace: SimTrace | None
    ) -> None:
        self.config = config
        self.memory = memory
        self.trace = trace
        self.dispatcher = make_dispatcher(config.dispatcher)
        self.now = 0
        self._heap: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.used = [0] * compute_units  # capacity units in use per CU
        self._dirty: set[int] = set()
        self._full_pass = False
        self._active: list[KernelRun] = []
        self.running: dict[RunningBlock, None] = {}  # insertion-ordered set
        self.streams: list[StreamQueue] = []
        self.hw_queues: list[HwQueue] = []
        self._pools: dict[int, list[HwQueue]] = {}  # priority -> shared hardware queues
        self._pool_next: dict[int, int] = {}
        self._hw_limit = config.hw_queue_count()
        # the legacy default stream: what calls without a stream go through (stream id -1)
        self.null = StreamQueue(-1, 0, None, HwQueue(-1, 0), blocking=True)
        self.null.hw.streams.append(-1)
        self.n_launches = 0
        self._n_activations = 0
        self._rng = random.Random(config.seed)
        self.counts = dict.fromkeys(OUTCOMES, 0)
        self.counts.update(kernels=0, kills=0, killed_blocks=0, queue_resets=0)
        self.busy_ns = 0  # CU-occupancy-weighted busy time, for utilisation stats
        self._poison = config.poison_partial_writes
        self._lat_ns = {  # cached ns values of config times
            "dispatch": ns(config.dispatch_latency_us),
            "visibility": ns(config.flag_visibility_us),
            "skip": ns(config.block_skip_us),
        }

    # -- clock ----------------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        """Some stream (the null stream included) has unfinished work."""
        return bool(self.null.ops) or any(q.ops for q in self.hw_queues)

    @property
    def next_event_ns(self) -> int | None:
        return self._heap[0][0] if self._heap else None

    @property
    def idle(self) -> bool:
        return not self._heap and not self.busy

    def push(self, t: int, fn: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._heap, (t, self._seq, fn, args))
        self._seq += 1

    def step(self) -> None:
        """Run every event of the earliest instant, then dispatch blocks at that instant."""
        t = self._heap[0][0]
        self.now = t
        heap = self._heap
        while heap and heap[0][0] == t:
            _, _, fn, args = heapq.heappop(heap)
            fn(*args)
        self.dispatch()

    def run_to(self, t: int) -> None:
        while self._heap and self._heap[0][0] <= t:
            self.step()
        self.now = max(self.now, t)

    def run_all(self, what: str) -> None:
        while self._heap:
            self.step()
        self.check_deadlock(what)

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        """Run events until ``done()``; GpuError if it can never become true."""
        while not done():
            if not self._heap:
                self.check_deadlock(f"synchronize on {what}")
                raise GpuError("sim.synchronize", 1, f"{what} never completes {SIM_TAG}")
            self.step()

    def check_deadlock(self, what: str) -> None:
        stuck = [q for q in (self.null, *self.streams) if q.ops]
        if stuck:
            heads = "; ".join(
                f"stream {q.id}: {q.ops[0].kind} {q.ops[0].name}".rstrip() for q in stuck
            )
            raise GpuError(
                "sim." + what.split()[0],
                1,
                f"deadlock {SIM_TAG}: {what} can never finish, nothing is scheduled but "
                f"streams are blocked ({heads}); this is a bug in the model, please report it",
            )

    # -- stream ops ---------------------------------------------------------------------------

    def add_stream(
        self, sid: int, priority: int, cu_set: frozenset[int] | None, blocking: bool = False
    ) -> StreamQueue:
        """A new stream, mapped onto a hardware queue: a CU-masked stream gets its own (a CU
        mask is a property of the hardware queue); others share the pool of their priority,
        round robin, up to ``hw_queues`` queues per pool."""
        if cu_set is not None:
            hw = self._new_hw(priority)
        else:
            pool = self._pools.setdefault(priority, [])
            i = self._pool_next.get(priority, 0)
            self._pool_next[priority] = i + 1
            if len(pool) < self._hw_limit:
                pool.append(self._new_hw(priority))
            hw = pool[i % len(pool)]
        q = StreamQueue(sid, priority, cu_set, hw, blocking=blocking)
        hw.streams.append(sid)
        self.streams.append(q)
        return q

    def _new_hw(self, priority: int) -> HwQueue:
        hw = HwQueue(len(self.hw_queues), priority)
        self.hw_queues.append(hw)
        return hw

    def submit(self, op: StreamOp) -> None:
        """``op`` enters its stream and that stream's hardware queue now."""
        if op.kind == "kernel":
            op.launch_id = self.n_launches  # type: ignore[attr-defined]
            self.n_launches += 1
        op.stream.ops.append(op)
        op.stream.hw.ops.append(op)
        self.pump(op.stream.hw)
        self.dispatch()

    def submit_null(self, op: StreamOp) -> None:
        """``op`` enters the legacy default stream: it first waits for the work already
        submitted to every blocking stream (non-blocking streams are not ordered with it)."""
        for q in self.streams:
            if q.blocking and q.ops:
                self.submit(
                    StreamOp("wait_event", self.null, name=f"legacy sync stream {q.id}",
                             target=q.ops[-1])
                )  # fmt: skip
        self.submit(op)

    def pump(self, q: HwQueue) -> None:
        """Start the queue's head op if it is not running; retire ops that finish at once."""
        while q.ops and not q.head_started:
            op = q.ops[0]
            q.head_started = True
            op.start_ns = self.now
            if self._begin(op):
                self._retire(op)

    def _begin(self, op: StreamOp) -> bool:
        """Start ``op`` at the head of its stream; True if it completed on the spot."""
        if isinstance(op, KernelRun):
            lat = self._lat_ns["dispatch"]
            if lat:
                self.push(self.now + lat, self._activate, op)
            else:
                self._activate(op)
            return False
        if op.kind == "write_value32":
            vis = self._lat_ns["visibility"]
            if not vis:
                self.memory.write_u32(op.addr, op.value)
                return True
            self.push(self.now + vis, self._finish_write, op)
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
            self.push(self.now + op.duration_ns, self._finish_copy, op)
            return False
        raise AssertionError(op.kind)

    def _finish_write(self, op: StreamOp) -> None:
        if not op.dropped:
            self.memory.write_u32(op.addr, op.value)
            self._complete(op)

    def _finish_copy(self, op: StreamOp) -> None:
        if not op.dropped:
            op.action()  # type: ignore[misc]
            self._complete(op)

    def _complete(self, op: StreamOp) -> None:
        """An op that finished after it started (not on the spot)."""
        if op.dropped or op.done:
            return
        self._retire(op)
        self.pump(op.stream.hw)

    def _retire(self, op: StreamOp) -> None:
        hw = op.stream.hw
        head = hw.ops.popleft()
        assert head is op, "hardware queue ops retire in order"
        hw.head_started = False
        mine = op.stream.ops.popleft()
        assert mine is op, "stream ops retire in order"
        self._mark_done(op)

    def _mark_done(self, op: StreamOp) -> None:
        op.done = True
        op.end_ns = self.now
        if self.trace is not None and op.kind != "kernel":
            outcome = f"value={op.value}" if op.kind == "write_value32" else ""
            if op.dropped:
                outcome = "dropped"
            start = op.start_ns if op.start_ns is not None else self.now
            self.trace.records.append(
                TraceRecord(
                    op.kind, op.name, us(start), us(self.now), op.stream.id, outcome=outcome
                )  # fmt: skip
            )
        waiters, op.waiters = op.waiters, []
        for w in waiters:
            self._complete(w)

    # -- kernels and blocks ---------------------------------------------------------------

    def _activate(self, run: KernelRun) -> None:
        if run.dropped:
            return
        run.activation = self._n_activations
        self._n_activations += 1
        run.activate_ns = self.now
        self._active.append(run)
        self._full_pass = True

    def dispatch(self) -> None:
        """Fill free CU room with blocks of active kernels, most urgent stream first.

        Only CUs that gained room since the last pass are looked at, unless a kernel became
        active (then all are): every still-active kernel found no room anywhere else before.
        """
        if not self._active:
            self._dirty.clear()
            self._full_pass = False
            return
        if self._full_pass:
            cus: Sequence[int] = range(len(self.used))
        else:
            cus = sorted(self._dirty)
        self._dirty.clear()
        self._full_pass = False
        if not cus:
            return
        self._active.sort(key=lambda r: (r.stream.priority, r.activation))
        for run in self._active:
            mask = run.stream.cu_set
            allowed = cus if mask is None else [c for c in cus if c in mask]
            if run.next_block >= run.num_blocks or not allowed:
                continue
            for cu in self.dispatcher.place(run, allowed, self.used):
                if self.used[cu] + run.units > CAPACITY or run.next_block >= run.num_blocks:
                    raise GpuError(
                        "sim.dispatch",
                        1,
                        f"dispatcher {self.dispatcher.name!r} placed a block of {run.name} "
                        f"where it does not fit (CU {cu}) or beyond the grid {SIM_TAG}",
                    )
                self._start_block(run, cu)
        self._active = [r for r in self._active if r.next_block < r.num_blocks]

    def _start_block(self, run: KernelRun, cu: int) -> None:
        now = self.now
        idx = run.next_block
        run.next_block += 1
        self.used[cu] += run.units
        if run.first_block_ns is None:
            run.first_block_ns = now
        if run.flag_addr is not None and self.memory.read_u32(run.flag_addr):
            blk = RunningBlock(run, cu, idx, now, now + run.skip_ns)
            self.running[blk] = None
            self.push(blk.end_ns, self.end_block, blk, "skipped")
            return
        dur = run.block_ns
        if self.config.block_time_jitter:
            j = self.config.block_time_jitter
            dur = max(1, round(dur * (1 + self._rng.uniform(-j, j))))
        blk = RunningBlock(run, cu, idx, now, now + dur)
        self.running[blk] = None
        if run.poll_ns and now + run.poll_ns < blk.end_ns:
            self.push(now + run.poll_ns, self._poll, blk)
        self.push(blk.end_ns, self.end_block, blk, "completed")

    def _poll(self, blk: RunningBlock) -> None:
        if blk.done:
            return
        run = blk.run
        if self.memory.read_u32(run.flag_addr):  # type: ignore[arg-type]
            self.end_block(blk, "polled_out")
        elif self.now + run.poll_ns < blk.end_ns:
            self.push(self.now + run.poll_ns, self._poll, blk)

    def end_block(self, blk: RunningBlock, outcome: str) -> None:
        if blk.done:
            return
        blk.done = True
        del self.running[blk]
        run = blk.run
        self.used[blk.cu] -= run.units
        self._dirty.add(blk.cu)
        self.busy_ns += (self.now - blk.start_ns) * run.units
        run.outcomes[outcome] += 1
        self.counts[outcome] += 1
        spec = run.spec
        assert spec is not None and run.config is not None
        if outcome in ("polled_out", "killed") and run.effect is not None and self._poison:
            # a block stopped part-way has stored some of its outputs: model the worst case,
            # its whole slice of every output it writes holds garbage
            ctx = SimBlockContext(
                spec.name, blk.index, run.config.grid, run.config.block, spec.params,
                run.args, self.memory, us(self.now),
            )  # fmt: skip
            for addr, nbytes in run.effect.writes(ctx):
                self.memory.write(addr, poison(nbytes))
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
                    us(self.now),
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
                    "block" if run.kind == "kernel" else "blit",
                    spec.name,
                    us(blk.start_ns),
                    us(self.now),
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

    def _kernel_done(self, run: KernelRun) -> None:
        if run.kind == "write_value32":  # a blit: its one work-item writes the value
            self.memory.write_u32(run.addr, run.value)
            self._complete(run)
            return
        self.counts["kernels"] += 1
        if self.trace is not None:
            o = run.outcomes
            summary = ", ".join(f"{k}={o[k]}" for k in OUTCOMES if o[k])
            start = run.first_block_ns if run.first_block_ns is not None else self.now
            self.trace.records.append(
                TraceRecord(
                    "kernel",
                    run.name,
                    us(start),
                    us(self.now),
                    run.stream.id,
                    run.launch_id,
                    outcome=summary,
                )  # fmt: skip
            )
        self._complete(run)

    # -- REEF's device-level mechanisms -----------------------------------------------------

    def kill_all(self) -> int:
        """Kill every running block now; returns how many."""
        victims = list(self.running)
        for blk in victims:
            self.end_block(blk, "killed")
        self.counts["kills"] += 1
        self.counts["killed_blocks"] += len(victims)
        if self.trace is not None:
            self.trace.records.append(
                TraceRecord(
                    "kill",
                    "kill_running_waves",
                    us(self.now),
                    us(self.now),
                    outcome=f"killed={len(victims)}",
                )  # fmt: skip
            )
        self.dispatch()
        return len(victims)

    def clear(self, q: StreamQueue) -> int:
        """Reset the hardware queue of ``q``: drop every op on it that has not started, of
        every stream mapped there (the reset acts on the hardware queue); returns the kernels
        dropped."""
        hw = q.hw
        keep = 1 if hw.head_started else 0
        dropped = list(hw.ops)[keep:]
        for _ in dropped:
            hw.ops.pop()
        kernels = 0
        for op in dropped:
            op.dropped = True
            op.stream.ops.remove(op)
            kernels += op.kind == "kernel"
            if op.kind == "wait_event" and op.target is not None:
                op.target.waiters = [w for w in op.target.waiters if w is not op]
            if op.kind == "event_record":
                self._mark_done(op)
        self.counts["queue_resets"] += 1
        if self.trace is not None:
            self.trace.records.append(
                TraceRecord(
                    "queue_reset",
                    f"stream {q.id}",
                    us(self.now),
                    us(self.now),
                    q.id,
                    outcome=f"dropped_kernels={kernels}",
                )  # fmt: skip
            )
        self.pump(hw)
        self.dispatch()
        return kernels

    def utilisation(self) -> float:
        """Occupancy-weighted CU busy fraction since time 0."""
        if not self.now:
            return 0.0
        return (self.busy_ns / CAPACITY) / (len(self.used) * self.now)
