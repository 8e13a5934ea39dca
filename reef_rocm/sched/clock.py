"""The clock seam: one engine, two kinds of time.

Real devices: the host's ``time.perf_counter_ns``. Waiting while GPU work is in flight is
spinning without a system call (the scheduler polls the GPU, as REEF's does): even
``time.sleep(0)`` is a timed sleep on Linux that returns up to the thread's timer slack late
(measured 80 us p50 on the 2-core dev VM, ~50 us on the H200 host), which used to put that
much between an RT arrival and the engine noticing it. With nothing in flight the clock sleeps
to shortly before the next arrival, with the thread's timer slack cut to 1 ns
(``_timerslack``). A scheduler thread serving other threads waits on its inbox instead
(``poll_inbox``): a submission wakes it at once and the GIL is free meanwhile.
The sim: its virtual clock (``dev.now_us``); waiting is ``dev.run_until(t)``, so a simulated
run is deterministic and takes no longer than the work the model has to do.
"""

from __future__ import annotations

import queue
import time
from typing import Any

from reef_rocm.errors import GpuError
from reef_rocm.sched._timerslack import set_timer_slack_ns

# wake this early before an arrival, then spin: a sleeping thread wakes late (timer, VM exit,
# CPU idle state) and runs its first loop iterations cold; on the H200 host a 200 us margin
# still left 24 us p50 from an RT arrival to its launch on an idle GPU
SLEEP_MARGIN_US = 2000.0
INBOX_POLL_S = 20e-6  # a serving thread re-polls the GPU this often while work is in flight


class HostClock:
    kind = "host"

    def __init__(self) -> None:
        self._t0 = time.perf_counter_ns()

    def now_us(self) -> float:
        return (time.perf_counter_ns() - self._t0) / 1000.0

    def now_ns(self) -> int:
        """Absolute perf_counter nanoseconds (the calibration's host side)."""
        return time.perf_counter_ns()

    def to_us(self, abs_ns: int) -> float:
        return (abs_ns - self._t0) / 1000.0

    def precise(self) -> bool:
        """Cut the calling thread's timer slack to 1 ns (the thread that drives the engine)."""
        return set_timer_slack_ns(1)

    def wait_until(self, t_us: float, busy: bool) -> None:
        """Let time pass until ``t_us`` or until there may be something to do. Busy (GPU work
        in flight): return at once - the caller polls the GPU again (a spin, no syscall)."""
        if busy:
            return
        dt = t_us - self.now_us()
        if dt > SLEEP_MARGIN_US:
            time.sleep(min(dt - SLEEP_MARGIN_US, 5000.0) / 1e6)

    def poll_inbox(self, inbox: queue.SimpleQueue) -> Any:
        """Work in flight, nothing else to do, other threads may submit: block on the inbox
        for at most INBOX_POLL_S (releasing the GIL); the item, or None to poll the GPU."""
        try:
            return inbox.get(timeout=INBOX_POLL_S)
        except queue.Empty:
            return None


class SimClock:
    kind = "virtual (simulated)"

    def __init__(self, device: Any) -> None:
        self.dev = device

    def now_us(self) -> float:
        return self.dev.now_us

    def now_ns(self) -> int:
        return int(round(self.dev.now_us * 1000))

    def to_us(self, abs_ns: int) -> float:
        return abs_ns / 1000.0

    def precise(self) -> bool:
        return True  # virtual time has no slack

    def poll_inbox(self, inbox: queue.SimpleQueue) -> Any:
        """Run the model to its next event (the host would poll then); inbox items are taken
        by the caller's next non-blocking drain."""
        self.wait_until(float("inf"), busy=True)
        return None

    def wait_until(self, t_us: float, busy: bool) -> None:
        """Run the model to ``t_us``, or only to its next event when work is in flight (the
        host would poll then)."""
        dev = self.dev
        nxt = dev.next_event_us
        if busy:
            if nxt is None:
                if t_us == float("inf"):
                    raise GpuError(
                        "sched.wait", 1,
                        "the scheduler waits for simulated work but the device has nothing "
                        "scheduled (a scheduler bug: work was never submitted)",
                    )  # fmt: skip
                dev.run_until(max(t_us, dev.now_us))
                return
            dev.run_until(max(min(nxt, t_us), dev.now_us))
            return
        if t_us == float("inf"):
            if nxt is None:
                return
            t_us = nxt
        dev.run_until(max(t_us, dev.now_us))


def clock_for(device: Any) -> HostClock | SimClock:
    if device.info.extra.get("simulated") and hasattr(device, "run_until"):
        return SimClock(device)
    return HostClock()
