"""The in-process API benchmarks and the server use.

    with Scheduler(device, SchedOptions(policy="reset+poll")) as sched:
        h = sched.load(package, priority="rt", client="cam0")
        res = sched.submit(h, inputs).result()
        run = sched.run_load([LoadSpec(h_rt, arrivals_us=[...]), LoadSpec(h_be)], duration_us=1e5)

One engine (``engine.Engine``), two drivers. Thread mode (default on real GPUs): a scheduler
thread runs the engine and owns every device call; ``submit`` from any thread puts the request
into a thread-safe inbox, ``load``/``unload``/``run_load`` are run on that thread and waited for.
In-process mode (default on the sim): the caller's thread drives the engine - ``run_load``
runs to the end, ``Future.result()`` steps the engine until its request is done - so a
simulated run is deterministic.
"""

from __future__ import annotations

import heapq
import queue
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import ReefError
from reef_rocm.package.files import ModelPackage
from reef_rocm.sched.clock import clock_for
from reef_rocm.sched.engine import Engine, SchedulerClosed
from reef_rocm.sched.model import ModelHandle
from reef_rocm.sched.options import SchedOptions
from reef_rocm.sched.policy import get_policy
from reef_rocm.sched.records import LoadSpec, RequestRecord, RunResult, SchedStatus

RTOL = 1e-3  # as the executor GPU tests: |out - ref| <= RTOL * (|ref| + max|ref|)


def outputs_match(out: list[np.ndarray], ref: list[np.ndarray], rtol: float = RTOL) -> bool:
    if len(out) != len(ref):
        return False
    for o, r in zip(out, ref, strict=True):
        if o.shape != r.shape:
            return False
        scale = max(float(np.abs(r).max()) if r.size else 0.0, 1e-6)
        if not np.allclose(o, r, rtol=rtol, atol=rtol * scale):
            return False
    return True


class _InlineFuture(Future):
    """A Future whose ``result()`` drives the in-process engine until it is done."""

    def __init__(self, sched: Scheduler) -> None:
        super().__init__()
        self._sched = sched

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            self._sched._drive(lambda: self.done())
        return super().result(timeout)

    def exception(self, timeout: float | None = None) -> BaseException | None:
        if not self.done():
            self._sched._drive(lambda: self.done())
        return super().exception(timeout)


class Scheduler:
    """REEF's scheduler on one device. Release with ``close()`` (or ``with``)."""

    def __init__(self, device: Any, options: SchedOptions | None = None) -> None:
        self.options = options = options or SchedOptions()
        self.device = device
        self.policy = get_policy(options.policy, device.capabilities)
        self.clock = clock_for(device)
        simulated = bool(device.info.extra.get("simulated"))
        self.threaded = (not simulated) if options.threaded is None else bool(options.threaded)
        self._inbox: queue.SimpleQueue = queue.SimpleQueue()
        self._error: BaseException | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        if self.threaded:
            ready: Future = Future()
            self._thread = threading.Thread(
                target=self._thread_main, args=(ready,), name="reef-sched", daemon=True
            )
            self._thread.start()
            self.engine: Engine = ready.result()
        else:
            self.engine = Engine(device, options, self.policy, self.clock)

    # ------------------------------------------------------------------ public API
    @property
    def trace(self):
        return self.engine.trace

    def load(
        self, package: ModelPackage | str | Path, priority: str = "be", client: str | None = None
    ) -> ModelHandle:
        """Load a model package for ``priority`` "rt" or "be" under ``client`` (default: the
        model's name). RT runs the plain variant; BE the variant the policy needs."""
        if priority not in ("rt", "be"):
            raise ValueError(f"priority must be 'rt' or 'be', got {priority!r}")
        pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        return self._call(lambda: self.engine.load(pkg, priority, client or pkg.name))

    def unload(self, handle: ModelHandle) -> None:
        self._call(lambda: self.engine.unload(handle))

    def preload(self, handle: ModelHandle, inputs: Any) -> None:
        """Upload ``inputs`` to ``handle``'s device input buffers now; ``submit(handle, None)``
        then runs on them with no input transfer on the request's path (REEF's registered
        blobs). A request with its own inputs replaces them."""
        self._call(lambda: self.engine.preload(handle, inputs))

    def submit(self, handle: ModelHandle, inputs: Any) -> Future:
        """Queue one inference; thread-safe. The future gives an InferenceResult. ``inputs``
        None: run on the inputs ``preload`` put on the device."""
        self._check_open()
        task = self.engine.make_task(handle, inputs)  # validates on the caller's thread
        if self.threaded:
            task.future = Future()
            self._inbox.put(("task", task))
        else:
            task.future = _InlineFuture(self)
            self.engine.submit(task)
        return task.future

    def status(self) -> SchedStatus:
        return self._call(self._status)

    def run_load(
        self, loads: list[LoadSpec], duration_us: float, warmup_us: float = 0.0,
        check: bool = True,
    ) -> RunResult:  # fmt: skip
        """Run a workload in-process: open-loop clients (``arrivals_us`` relative to the start)
        and closed-loop ones (``arrivals_us=None``: a new request the moment the last one
        finished) for ``duration_us``; requests that arrived after ``warmup_us`` are reported.
        With ``check``, each output is compared with the package's reference outputs when the
        inputs are its reference inputs. Deterministic on the sim."""
        if duration_us <= 0 or warmup_us < 0 or warmup_us >= duration_us:
            raise ValueError(
                f"need 0 <= warmup_us < duration_us, got warmup {warmup_us}, duration {duration_us}"
            )
        return self._call(lambda: self._run_load(loads, duration_us, warmup_us, check))

    def close(self) -> None:
        """Stop: requests not finished fail with SchedulerClosed; device work already queued
        completes; every model instance and stream is released."""
        if self._closed:
            return
        self._closed = True
        if self.threaded and self._thread is not None:
            self._inbox.put(("stop", None))
            self._thread.join()
        else:
            try:
                self.engine.cancel_all(
                    SchedulerClosed("scheduler closed before this request finished")
                )
            finally:
                self.engine.close()

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _check_open(self) -> None:
        if self._closed:
            raise SchedulerClosed("the scheduler is closed")
        if self._error is not None:
            raise ReefError(f"the scheduler stopped on an error: {self._error!r}") from self._error

    def _call(self, fn: Any) -> Any:
        self._check_open()
        if not self.threaded:
            return fn()
        fut: Future = Future()
        self._inbox.put(("call", (fn, fut)))
        return fut.result()

    def _status(self) -> SchedStatus:
        e = self.engine
        depths = {}
        for q in e.be:
            depths[q.handle.client] = (
                depths.get(q.handle.client, 0) + len(q.tasks) + (q.cur is not None)
            )
        depths["rt"] = len(e.rt_fifo) + len(e.rt_inflight)
        return SchedStatus(
            policy=self.policy.name,
            models=[{"name": h.name, "client": h.client, "priority": h.priority,
                     "variant": h.variant, "profile": h.profile_source}
                    for h, _, _ in e.models.values()],
            queue_depths=depths, preemptions=len(e.preemptions), state=e.state,
            clock_us=e._now(), capabilities=self.device.capabilities.as_dict(),
        )  # fmt: skip

    def _drive(self, done: Any) -> None:
        """In-process: step the engine until ``done()``."""
        e = self.engine
        while not done():
            if not e.step():
                if e.idle:
                    raise ReefError("nothing is queued, yet the request is not done")
                self.clock.wait_until(float("inf"), busy=e.busy)

    def _handle(self, kind: str, payload: Any) -> bool:
        if kind == "task":
            self.engine.submit(payload)
        elif kind == "call":
            fn, fut = payload
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)
        elif kind == "stop":
            return False
        return True

    def _thread_main(self, ready: Future) -> None:
        try:
            bind = getattr(self.device, "make_current", None)
            if bind is not None:  # CUDA contexts / HIP devices are per host thread
                bind()
            self.engine = Engine(self.device, self.options, self.policy, self.clock)
        except BaseException as exc:  # noqa: BLE001
            ready.set_exception(exc)
            return
        ready.set_result(self.engine)
        e, inbox, clock = self.engine, self._inbox, self.clock
        clock.precise()
        running = True
        try:
            while running:
                while True:  # drain the inbox without blocking
                    try:
                        kind, payload = inbox.get_nowait()
                    except queue.Empty:
                        break
                    if not self._handle(kind, payload):
                        running = False
                        break
                if not running:
                    break
                if not e.step():
                    if e.idle:
                        kind, payload = inbox.get()
                        running = self._handle(kind, payload)
                    else:  # work in flight (or stuck: the sim clock then says so)
                        item = clock.poll_inbox(inbox)
                        if item is not None:
                            running = self._handle(*item)
        except BaseException as exc:  # noqa: BLE001 - fail every request, keep the reason
            self._error = exc
            e.cancel_all(exc)
        finally:
            e.cancel_all(SchedulerClosed("scheduler closed before this request finished"))
            while True:  # calls that arrived after the stop
                try:
                    kind, payload = inbox.get_nowait()
                except queue.Empty:
                    break
                if kind == "call":
                    payload[1].set_exception(SchedulerClosed("the scheduler is closed"))
                elif kind == "task" and not payload.future.done():
                    payload.future.set_exception(SchedulerClosed("the scheduler is closed"))
            e.close()

    # ------------------------------------------------------------------ run_load
    def _run_load(self, loads: list[LoadSpec], duration_us: float, warmup_us: float,
                  check: bool) -> RunResult:  # fmt: skip
        e = self.engine
        if not e.idle:
            raise ReefError("run_load needs an idle scheduler (requests are still queued)")
        e.preemptions.clear()
        e.checks.clear()
        e.trace.clear()
        self.clock.precise()  # this thread drives the run: no timer slack on its sleeps
        e.origin_us = self.clock.now_us()
        records: list[RequestRecord] = []
        heap: list[tuple[float, int, int]] = []  # (arrival, order, load index)
        plans = []
        for li, spec in enumerate(loads):
            h = spec.handle
            _, m, _ = e._entry(h)
            if h.priority == "be" and not self.policy.runs_be:
                plans.append(None)
                continue
            inputs = spec.inputs
            expected = None
            if inputs is None:
                inputs = m.package.reference_inputs()
                if check:
                    expected = m.package.reference_outputs() or None
            inputs = m.check_inputs(inputs)
            if spec.preload:
                m.preload(inputs, e.side)
                inputs = None
            plans.append((h, inputs, expected))
            if spec.arrivals_us is None:
                heapq.heappush(heap, (0.0, len(heap) + li * 1_000_000, li))
            else:
                for k, t in enumerate(sorted(float(a) for a in spec.arrivals_us)):
                    if 0 <= t < duration_us:
                        heapq.heappush(heap, (t, k * 1000 + li, li))
        closed = {li for li, s in enumerate(loads) if s.arrivals_us is None and plans[li]}
        order = [0]

        def submit(li: int, t: float) -> None:
            h, inputs, expected = plans[li]
            task = e.make_task(h, inputs, arrival_us=t)
            task.expected = expected
            if li in closed:
                task.on_done = lambda tk, li=li: resubmit(li)
            records.append(task.record)
            e.submit(task)

        def resubmit(li: int) -> None:
            t = e._now()
            if t < duration_us:
                order[0] += 1
                submit(li, t)

        clock = self.clock
        while True:
            # 1 ns of slack: the sim's clock is integer ns, so waiting until an arrival can
            # land a rounding error short of it
            now = e._now() + 1e-3
            while heap and heap[0][0] <= now:
                t, _, li = heapq.heappop(heap)
                submit(li, t)
            progress = e.step()
            if not heap and e.idle:
                break
            if not progress:
                nxt = heap[0][0] + e.origin_us if heap else float("inf")
                if e.busy or nxt != float("inf"):
                    clock.wait_until(nxt, busy=e.busy)
                elif not e.idle:
                    # work queued but nothing in flight and no progress: a policy that
                    # never lets it run (a bug); fail loudly rather than spin
                    raise ReefError(
                        f"policy {self.policy.name} makes no progress: {e.view.as_dict()}"
                    )
        end = e._now()
        for rec, out, ref in e.checks:
            rec.correct = outputs_match(out, ref)
        e.checks.clear()
        kept = [r for r in records if r.arrival_us >= warmup_us]
        window = (warmup_us, max(duration_us, end))
        return RunResult(
            policy=self.policy.name, duration_us=duration_us, warmup_us=warmup_us,
            requests=kept,
            preemptions=[p for p in e.preemptions if p.rt_arrival_us >= warmup_us],
            busy_fraction=_busy_fraction(records, *window), clock=clock.kind,
            device=self.device.info.name, options=dict(self.options.__dict__),
        )  # fmt: skip


def _busy_fraction(records: list[RequestRecord], lo: float, hi: float) -> float | None:
    """Share of [lo, hi] during which some request was on the GPU (union of launch..done)."""
    spans = sorted(
        (max(lo, r.launched_us), min(hi, r.done_us)) for r in records
        if r.launched_us is not None and r.done_us is not None and r.done_us > lo
    )  # fmt: skip
    if hi <= lo:
        return None
    total, cur_s, cur_e = 0.0, None, None
    for s, t in spans:
        if t <= s:
            continue
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                total += cur_e - cur_s  # type: ignore[operator]
            cur_s, cur_e = s, t
        else:
            cur_e = max(cur_e, t)
    if cur_e is not None:
        total += cur_e - cur_s  # type: ignore[operator]
    return total / (hi - lo)
