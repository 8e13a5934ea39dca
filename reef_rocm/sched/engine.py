"""The scheduling engine: one single-threaded loop that owns every device call.

Each ``step()`` (1) polls completions (the RT request at the head of the RT stream, the oldest
mark of every BE device queue, drain markers), (2) refreshes the policy's View in place and
asks the policy for actions, (3) carries them out: preempt (through ``preempt.Preemptor``),
launch RT, restore preempted BE inferences, start and feed BE inferences up to each client's
device-queue cap. Drivers (``scheduler.Scheduler``): a scheduler thread, or ``run_load`` /
``Future.result()`` in-process; time comes from the clock seam (``clock.py``).

BE bookkeeping per client (``BEQueue``): the virtual host queue is the kernel range
``[next, n)`` of the current inference - not yet handed to the GPU, dropped by not launching
it. Launched kernels are covered by *marks* (events recorded every ~cap/2 us of queued work
and after each burst) in a preallocated ring; a completed mark retires its kernels' cost from
the device-queue budget. The last mark of an inference follows the output copy (the *tail*).
A preemption discards the ring (those events are never asked again), queues a drain marker
(timestamp + slot read + event) and resumes from the slots: exact restore.
"""

from __future__ import annotations

import itertools
from bisect import bisect_left
from collections import deque
from typing import Any

from reef_rocm.errors import ReefError, UnsupportedError
from reef_rocm.sched.devclock import DeviceStamps
from reef_rocm.sched.model import LoadedModel, ModelHandle
from reef_rocm.sched.options import SchedOptions
from reef_rocm.sched.policy.base import (
    CONTINUE_BE,
    LAUNCH_RT,
    PREEMPT,
    RESUME_BE,
    START_BE,
    START_ONE_BE,
    Policy,
    View,
)  # fmt: skip
from reef_rocm.sched.preempt import Preemptor
from reef_rocm.sched.records import PreemptionRecord, RequestRecord
from reef_rocm.sched.trace import ChromeTrace

NORMAL, PREEMPTED, RESUMING = "normal", "preempted", "resuming"
RING = 32  # marks per BE device queue
RT_EVENTS = 64
STAMP_SLOTS = 256  # first half RT requests, second half BE drain markers
TAIL = -1


class SchedulerClosed(ReefError):
    """The scheduler was closed before this request finished."""


def _replaced(m: LoadedModel) -> ReefError:
    return ReefError(
        f"{m.package.name} ({m.client}): this request runs on the preloaded inputs, but a "
        "request with its own inputs replaced them; preload again"
    )


class Task:
    __slots__ = ("model", "inputs", "future", "record", "on_done", "confirmed", "preemption",
                 "expected", "outputs")  # fmt: skip

    def __init__(self, model: LoadedModel, inputs: list, record: RequestRecord) -> None:
        self.model = model
        self.inputs = inputs
        self.record = record
        self.future: Any = None
        self.on_done: Any = None
        self.confirmed = False  # a mark of this inference completed: its begin-zeroing ran
        self.preemption: PreemptionRecord | None = None
        self.expected: Any = None
        self.outputs: Any = None


class BEQueue:
    """One BE client: its stream, its inference queue, its device-queue budget and marks."""

    def __init__(self, handle: ModelHandle, model: LoadedModel, stream: Any, device: Any,
                 cap: float, stamp_slot: int, cap_behind_head: bool = True) -> None:  # fmt: skip
        self.handle = handle
        self.model = model
        self.stream = stream
        self.tasks: deque[Task] = deque()
        self.cur: Task | None = None
        self.next = 0
        self.tail_issued = False
        self.cap = cap
        # a cap in profiled us bounds the work waiting behind the running run; a cap in
        # kernels (no profile) is REEF's: kernels in the device queue, the running one too
        self.cap_behind_head = cap_behind_head
        self.mark_every = cap / 2
        self.ring_ev = [device.create_event(timing=False) for _ in range(RING)]
        self.ring_stop = [0] * RING
        self.ring_cost = [0.0] * RING
        self.r_head = 0
        self.r_len = 0
        self.queued = 0.0
        self.held = False
        self.await_marker = False
        self.drain_pending = False
        self.slots_read = False
        self.drain_event = device.create_event(timing=False)
        self.stamp_slot = stamp_slot
        self.gen = 0  # flag-clear generation this stream is ordered behind

    def discard_marks(self) -> None:
        self.r_head = self.r_len = 0
        self.queued = 0.0
        self.tail_issued = False

    def close(self) -> None:
        for ev in (*self.ring_ev, self.drain_event):
            ev.close()
        self.stream.close()


class Engine:
    def __init__(self, device: Any, options: SchedOptions, policy: Policy, clock: Any) -> None:
        self.device = device
        self.options = options
        self.policy = policy
        self.clock = clock
        self.trace = ChromeTrace(options.trace, {
            "policy": policy.name, "device": device.info.name, "clock": clock.kind,
            "simulated": bool(device.info.extra.get("simulated")),
        })  # fmt: skip
        least, most = device.stream_priority_range()
        self._least = least
        self.rt_stream = device.create_stream(priority=most if policy.rt_urgent else least)
        self.side = device.create_stream(priority=most)
        self.preemptor = Preemptor(device, policy.plan, self.side)
        self.stamps: DeviceStamps | None = None
        if options.device_timestamps:
            self.stamps = DeviceStamps(device, clock, STAMP_SLOTS)
            if self.stamps.available:
                self.stamps.calibrate(self.side)
        self.rt_fifo: deque[Task] = deque()
        self.rt_inflight: deque[tuple[Task, Any, int]] = deque()
        self.rt_events = [device.create_event(timing=False) for _ in range(RT_EVENTS)]
        self._rt_n = 0
        self.rt_busy: set[int] = set()
        self.be: list[BEQueue] = []
        self.models: dict[int, tuple[ModelHandle, LoadedModel, BEQueue | None]] = {}
        self.view = View()
        self.state = NORMAL
        self.gen = 0
        self.preemptions: list[PreemptionRecord] = []
        self._open: PreemptionRecord | None = None
        self._open_queues = 0
        self.origin_us = clock.now_us()
        self.seq = 0
        self._seq = itertools.count(1)
        self.completed = 0
        self.checks: list[tuple[RequestRecord, list, list]] = []
        self.closed = False
        # dynamic kernel padding (+dkp policies): the one hook object, called at load/unload,
        # the RT launch, RT completion and BE resume
        self.padder: Any = None
        if policy.pads:
            from reef_rocm.sched.padder import Padder  # imports reef_rocm.dkp only when used

            try:
                self.padder = Padder(self)
            except BaseException:
                self.close()
                raise

    # ------------------------------------------------------------------ models
    def load(self, package: Any, priority: str, client: str) -> ModelHandle:
        pol, opt = self.policy, self.options
        be = priority == "be"
        variant = pol.be_variant if be else "plain"
        m = LoadedModel(
            self.device, package, priority, client, variant, cap_fallback_us=1.0,
            poll_target_us=opt.poll_target_us, profile_on_load=opt.profile_on_load and be,
            poll=be and self.preemptor.uses_poll,
        )  # fmt: skip
        q = None
        try:
            h = ModelHandle(
                name=m.package.name, priority=priority, client=client,
                input_specs=m.input_specs, output_specs=m.output_specs, variant=variant,
                num_kernels=m.n, profile_source=m.profile_source,
            )  # fmt: skip
            if be:
                if m.preemptible:
                    m.use_flag(self.preemptor.flag)
                profiled = not m.profile_source.startswith("none")
                cap = opt.device_queue_cap_us if profiled else float(opt.device_queue_cap_kernels)
                slot = STAMP_SLOTS // 2 + len(self.models) % (STAMP_SLOTS // 2)
                q = BEQueue(h, m, self.device.create_stream(priority=self._least), self.device,
                            cap, slot, cap_behind_head=profiled)  # fmt: skip
                self.be.append(q)
            elif opt.rt_graphs:
                if not self.device.capabilities.graphs:
                    raise UnsupportedError(
                        f"rt_graphs: {self.device.info.name} cannot capture launch graphs "
                        "(capability graphs is off)"
                    )
                m.capture_graph(self.rt_stream)
            if self.padder is not None:
                self.padder.add(m, be)
        except BaseException:
            if q is not None and q in self.be:
                self.be.remove(q)
                q.close()
            m.close()
            raise
        self.models[h.id] = (h, m, q)
        return h

    def unload(self, h: ModelHandle) -> None:
        _, m, q = self._entry(h)
        busy = (q is not None and (q.cur is not None or q.tasks)) or any(
            t.model is m for t in self.rt_fifo
        ) or id(m) in self.rt_busy  # fmt: skip
        if busy:
            raise ReefError(f"cannot unload {h!r}: it has requests queued or running")
        del self.models[h.id]
        if self.padder is not None:
            self.padder.remove(m)
        if q is not None:
            self.be.remove(q)
            q.stream.synchronize()
            q.close()
        m.close()

    def _entry(self, h: ModelHandle) -> tuple[ModelHandle, LoadedModel, BEQueue | None]:
        e = self.models.get(getattr(h, "id", None))
        if e is None or e[0] is not h:
            raise ValueError(f"{h!r} is not loaded in this scheduler")
        return e

    # ------------------------------------------------------------------ requests
    def preload(self, h: ModelHandle, inputs: Any) -> None:
        """Upload ``inputs`` into the model's device input buffers now (and wait for it);
        requests submitted with ``inputs=None`` then run on them with no transfer in front of
        their first kernel (REEF's clients registered input blobs before asking for an
        inference). Kernels never write their inputs, so the buffers stay valid until a
        request with its own inputs replaces them."""
        _, m, _ = self._entry(h)
        m.preload(m.check_inputs(inputs), self.side)

    def make_task(self, h: ModelHandle, inputs: Any, arrival_us: float | None = None) -> Task:
        _, m, _ = self._entry(h)
        if h.priority == "be" and not self.policy.runs_be:
            raise UnsupportedError(f"policy {self.policy.name!r} runs no best-effort work")
        if inputs is None:
            if not m.preloaded:
                raise ValueError(
                    f"{h.name} ({h.client}) has no preloaded inputs: pass inputs, or call "
                    "preload(handle, inputs) first"
                )
            arrays = None
        else:
            arrays = m.check_inputs(inputs)
        self.seq = seq = next(self._seq)  # itertools.count: safe from any submitting thread
        t = self.clock.now_us() - self.origin_us if arrival_us is None else arrival_us
        rec = RequestRecord(h.client, h.name, h.priority, t, seq=seq)
        return Task(m, arrays, rec)

    def submit(self, task: Task) -> None:
        if self.closed:
            raise SchedulerClosed("the scheduler is closed")
        task.record.submitted_us = self._now()
        m = task.model
        if m.priority == "rt":
            self.rt_fifo.append(task)
        else:
            for q in self.be:
                if q.model is m:
                    q.tasks.append(task)
                    return
            raise ValueError("model not loaded")  # pragma: no cover

    def _fail(self, task: Task, exc: BaseException) -> None:
        task.record.error = str(exc)
        if task.future is not None and not task.future.done():
            task.future.set_exception(exc)

    def _now(self) -> float:
        return self.clock.now_us() - self.origin_us

    def _finish(self, task: Task, outputs: list) -> None:
        rec = task.record
        self.completed += 1
        if task.expected is not None:
            self.checks.append((rec, outputs, task.expected))
        task.outputs = outputs
        if task.future is not None and not task.future.done():
            from reef_rocm.sched.records import InferenceResult

            task.future.set_result(InferenceResult(outputs, rec))
        if self.trace.enabled:
            self.trace.span(f"{rec.priority} {rec.client}", rec.model, rec.arrival_us,
                            rec.done_us or rec.arrival_us, seq=rec.seq,
                            preemptions=rec.preemptions, first_block_us=rec.start_us)  # fmt: skip
        if task.on_done is not None:
            task.on_done(task)

    # ------------------------------------------------------------------ the loop
    @property
    def busy(self) -> bool:
        """Device work in flight that the engine waits for."""
        if self.rt_inflight:
            return True
        for q in self.be:
            if q.r_len or q.drain_pending:
                return True
        return False

    @property
    def idle(self) -> bool:
        """Nothing queued or in flight anywhere."""
        if self.rt_fifo or self.rt_inflight:
            return False
        return all(q.cur is None and not q.tasks for q in self.be)

    def step(self) -> bool:
        """One iteration. A waiting RT request is acted on before any completion is polled,
        so no event query stands between its arrival and the preemption."""
        progress = self._act(rt_first=True) if self.rt_fifo else False
        progress |= self._poll()
        return self._act(rt_first=False) or progress

    def _act(self, rt_first: bool) -> bool:
        progress = False
        v = self._refresh()
        a = self.policy.decide(v)
        if a & PREEMPT:
            self._preempt()
            progress = True
            v = self._refresh()
            a = self.policy.decide(v) | (a & LAUNCH_RT)
        if a & LAUNCH_RT and self.rt_fifo:
            progress |= self._launch_rt()
        for q in self.be:
            if q.await_marker:
                self._queue_marker(q)
        if rt_first:
            return progress
        if a & RESUME_BE and self.state != NORMAL:
            progress |= self._resume()
        if a & START_BE:
            for q in self.be:
                if q.cur is None and q.tasks and not q.held:
                    self._start(q)
                    progress = True
        elif a & START_ONE_BE and not any(q.cur is not None for q in self.be):
            best = None
            for q in self.be:
                if (
                    q.tasks
                    and not q.held
                    and (
                        best is None
                        or q.tasks[0].record.arrival_us < best.tasks[0].record.arrival_us
                    )
                ):
                    best = q
            if best is not None:
                self._start(best)
                progress = True
        if a & (CONTINUE_BE | START_BE | START_ONE_BE):
            for q in self.be:
                if q.cur is not None and not q.held and not q.tail_issued:
                    progress |= self._feed(q)
        return progress

    def _refresh(self) -> View:
        v = self.view
        v.rt_waiting = len(self.rt_fifo)
        v.rt_running = len(self.rt_inflight)
        waiting = active = on_dev = 0
        drained = True
        for q in self.be:
            waiting += len(q.tasks)
            if q.cur is not None:
                active += 1
            if q.r_len or q.drain_pending or q.await_marker:
                on_dev += 1
            if q.drain_pending or q.await_marker:
                drained = False
        v.be_waiting, v.be_active, v.be_on_device, v.be_drained = waiting, active, on_dev, drained
        v.preempted = self.state == PREEMPTED
        v.resuming = self.state == RESUMING
        return v

    # ------------------------------------------------------------------ completions
    def _poll(self) -> bool:
        progress = False
        fl = self.rt_inflight
        while fl and fl[0][1].query():
            task, _, slot = fl.popleft()
            self._finish_rt(task, slot)
            progress = True
        for q in self.be:
            if q.held:
                if q.drain_pending and q.drain_event.query():
                    q.drain_pending = False
                    self._drained(q)
                    progress = True
                continue
            while q.r_len:
                i = q.r_head
                if not q.ring_ev[i].query():
                    break
                q.r_head = (i + 1) % RING
                q.r_len -= 1
                q.queued = q.queued - q.ring_cost[i] if q.r_len else 0.0
                q.cur.confirmed = True  # type: ignore[union-attr]
                progress = True
                if q.ring_stop[i] == TAIL:
                    self._finish_be(q)
                    break
        return progress

    def _finish_rt(self, task: Task, slot: int) -> None:
        rec = task.record
        rec.done_us = self._now()
        st = self.stamps
        t = st.host_us(slot) if st is not None and st.available else None
        # no timestamp kernel: no measured start (never pass a host launch time off as one)
        rec.start_us = t - self.origin_us if t is not None else None
        self.rt_busy.discard(id(task.model))
        if self.padder is not None:
            self.padder.rt_done(task)
        p = task.preemption
        if p is not None:
            p.rt_start_us = rec.start_us
            if self.trace.enabled and rec.start_us is not None:
                self.trace.span(
                    "preemption", "RT arrival -> first RT block", p.rt_arrival_us,
                    rec.start_us, killed=p.killed, dropped=p.dropped_kernels,
                )  # fmt: skip
        self._finish(task, task.model.take_outputs())

    def _finish_be(self, q: BEQueue) -> None:
        task = q.cur
        assert task is not None
        task.record.done_us = self._now()
        q.cur = None
        q.tail_issued = False
        self._finish(task, q.model.take_outputs())

    def _drained(self, q: BEQueue) -> None:
        rec = self._open
        if rec is None:
            return
        st = self.stamps
        t = st.host_us(q.stamp_slot) if st is not None and st.available else None
        t = t - self.origin_us if t is not None else self._now()
        if rec.be_drained_us is None or t > rec.be_drained_us:
            rec.be_drained_us = t
        self._open_queues -= 1
        if self._open_queues <= 0:
            self._open = None

    # ------------------------------------------------------------------ RT
    def _launch_rt(self) -> bool:
        launched = False
        s = self.rt_stream
        st = self.stamps if self.stamps is not None and self.stamps.available else None
        while self.rt_fifo:
            task = self.rt_fifo[0]
            m = task.model
            if id(m) in self.rt_busy:
                break  # one request of a model in flight (its staging buffers)
            self.rt_fifo.popleft()
            if task.inputs is None and not m.preloaded:
                self._fail(task, _replaced(m))
                continue
            self.rt_busy.add(id(m))
            slot = self._rt_n % (STAMP_SLOTS // 2)
            ev = self.rt_events[self._rt_n % RT_EVENTS]
            self._rt_n += 1
            task.record.launched_us = self._now()
            if task.inputs is not None:  # else preloaded: the first kernel follows the stamp
                m.set_inputs(task.inputs)
                m.upload_inputs(s)
            if st is not None:
                st.clear(slot)
                st.stamp(slot, s)
            if self.padder is not None:
                self.padder.launch_rt(task, m, s)  # kernel by kernel, padded where it pays
            elif m.graph is not None:
                m.graph.launch(s)  # the whole RT inference: one call
            else:
                m.inst.launch_range(s, 0, m.n)  # the whole RT inference as one run of kernels
            m.download_outputs(s)
            if st is not None:
                st.read_async(slot, s)
            ev.record(s)
            self.rt_inflight.append((task, ev, slot))
            launched = True
        return launched

    # ------------------------------------------------------------------ BE
    def _start(self, q: BEQueue) -> None:
        task = q.tasks.popleft()
        m = q.model
        if task.inputs is None and not m.preloaded:
            self._fail(task, _replaced(m))
            return
        q.cur = task
        self._gate(q)
        m.zero_slots(q.stream, 0)
        if task.inputs is not None:
            m.set_inputs(task.inputs)
            m.upload_inputs(q.stream)
        q.next = 0
        q.tail_issued = False
        task.confirmed = False
        # a mark right behind the slot zeroing: once it completed, a queue reset can no longer
        # have dropped the zeroing, so a preemption may trust the slots (exact restore)
        self._mark(q, 0, 0.0)
        task.record.launched_us = task.record.start_us = self._now()

    def _gate(self, q: BEQueue) -> None:
        if q.gen != self.gen:
            self.preemptor.gate(q.stream)
            q.gen = self.gen

    def _mark(self, q: BEQueue, stop: int, cost: float) -> None:
        i = (q.r_head + q.r_len) % RING
        q.ring_ev[i].record(q.stream)
        q.ring_stop[i] = stop
        q.ring_cost[i] = cost
        q.r_len += 1

    def _feed(self, q: BEQueue) -> bool:
        """Hand kernels from the virtual host queue to the device queue until the cap (in
        profiled us; at least one kernel), in runs between marks: each run is one
        ``launch_range`` call (one C call with the span launcher).

        The oldest unfinished run is not counted: it is (about to be) running, and the cap
        bounds what waits *behind* it. Counting it let one long kernel (ResNet-152 has
        500 us ones) fill the budget alone, so the next kernel was launched only after the
        host saw it finish (a launch-latency gap; on the H200 DISB A's BE throughput moved
        within noise). Waiting work costs little to evict (its blocks leave at start); the
        running run is what polls or the kill deal with."""
        cap = q.cap
        queued = q.queued
        waiting = queued - (q.ring_cost[q.r_head] if q.r_len and q.cap_behind_head else 0.0)
        if waiting >= cap or q.r_len >= RING - 1:
            return False
        self._gate(q)
        m = q.model
        cum, n, s, inst = m.cum, m.n, q.stream, m.inst
        i = q.next
        stop = min(n, bisect_left(cum, cum[i] + (cap - waiting), i + 1))
        every = q.mark_every
        while i < stop and q.r_len < RING - 1:
            j = min(stop, bisect_left(cum, cum[i] + every, i + 1))
            inst.launch_range(s, i, j)
            queued += cum[j] - cum[i]
            if j == n:
                m.download_outputs(s)
                self._mark(q, TAIL, cum[j] - cum[i])
                q.tail_issued = True
            else:
                self._mark(q, j, cum[j] - cum[i])
            i = j
        if i == n and not q.tail_issued:  # every kernel was already handed over
            m.download_outputs(s)
            self._mark(q, TAIL, 0.0)
            q.tail_issued = True
        q.next = i
        q.queued = queued
        return True

    # ------------------------------------------------------------------ preemption
    def _preempt(self) -> None:
        now = self._now()
        pending: list[BEQueue] = []
        for q in self.be:
            if q.cur is None:
                continue
            if not q.held:
                q.held = True  # drop the virtual host queue: [next, n) is simply not launched
                if q.r_len:
                    pending.append(q)
        self.state = PREEMPTED
        pre = self.preemptor
        if not pending or not pre.uses_flag:
            return  # nothing on the device: holding the host queues was all it took
        killed, dropped = pre.evict([q.stream for q in pending])
        for q in pending:
            q.discard_marks()
            q.await_marker = True
        rec = PreemptionRecord(
            rt_arrival_us=self.rt_fifo[0].record.arrival_us if self.rt_fifo else now,
            flag_raised_us=now, killed=killed, dropped_kernels=dropped,
            be_queues=len(pending), mechanisms=pre.mechanisms,
        )  # fmt: skip
        if self.rt_fifo:
            self.rt_fifo[0].preemption = rec
        self.preemptions.append(rec)
        self._open = rec
        self._open_queues = len(pending)
        if self.trace.enabled:
            self.trace.instant("preemption", "flag raised", now, killed=killed, dropped=dropped)

    def _queue_marker(self, q: BEQueue) -> None:
        """Behind the evicted BE work: when the queue drained, and the slots (off the RT
        critical path: queued after RT was launched)."""
        st = self.stamps
        if st is not None and st.available:
            st.clear(q.stamp_slot)
            st.stamp(q.stamp_slot, q.stream)
            st.read_async(q.stamp_slot, q.stream)
        q.model.read_slots_async(q.stream)
        q.drain_event.record(q.stream)
        q.await_marker = False
        q.drain_pending = True
        q.slots_read = True

    def _resume(self) -> bool:
        pre = self.preemptor
        progress = False
        if self.state == PREEMPTED:
            if pre.flag_up:
                pre.clear()
                self.gen += 1
                for rec in self.preemptions[-1:]:
                    rec.flag_cleared_us = self._now()
                if self.trace.enabled:
                    self.trace.instant("preemption", "flag cleared", self._now())
            self.state = RESUMING
            progress = True
        still = False
        for q in self.be:
            if not q.held:
                continue
            if q.drain_pending or q.await_marker:
                still = True
                continue
            task = q.cur
            if task is not None and q.slots_read:
                q.slots_read = False
                m = q.model
                start = m.first_incomplete() if task.confirmed else 0
                self._gate(q)
                m.zero_slots(q.stream, start)
                if start == 0 and task.inputs is not None:
                    m.upload_inputs(q.stream)  # a queue reset may have dropped the first copy
                q.next = start
                task.record.preemptions += 1
            if self.padder is not None:
                self.padder.resumed(q)
            q.held = False
            progress = True
        if not still:
            self.state = NORMAL
        return progress

    # ------------------------------------------------------------------ stop
    def cancel_all(self, exc: BaseException) -> None:
        tasks = list(self.rt_fifo) + [t for t, _, _ in self.rt_inflight]
        for q in self.be:
            tasks += list(q.tasks)
            if q.cur is not None:
                tasks.append(q.cur)
            q.tasks.clear()
            q.cur = None
            q.held = q.await_marker = q.drain_pending = q.slots_read = False
            q.discard_marks()
        self.rt_fifo.clear()
        self.rt_inflight.clear()
        self.rt_busy.clear()
        for t in tasks:
            if t.record.error is None:
                t.record.error = str(exc)
            if t.future is not None and not t.future.done():
                t.future.set_exception(exc)

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        dev = self.device
        try:
            if self.preemptor.flag_up:
                self.preemptor.clear()
            dev.synchronize()
        finally:
            if self.padder is not None:
                self.padder.close()
            for q in self.be:
                q.close()
            for _, m, _ in self.models.values():
                m.close()
            self.models.clear()
            self.be.clear()
            for ev in self.rt_events:
                ev.close()
            if self.stamps is not None:
                self.stamps.close()
            self.preemptor.close()
            self.rt_stream.close()
            self.side.close()
