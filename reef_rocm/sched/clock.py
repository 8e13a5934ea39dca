"""The clock seam: one engine, two kinds of time.

Real devices: the host's ``time.perf_counter_ns``; waiting is spinning (the scheduler thread
polls the GPU, as REEF's does). The sim: its virtual clock (``dev.now_us``); waiting is
``dev.run_until(t)``, so a simulated run is deterministic and takes no longer than the work
the model has to do.
"""

from __future__ import annotations

import time
from typing import Any

from reef_rocm.errors import GpuError


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

    def wait_until(self, t_us: float, busy: bool) -> None:
        """Let time pass until ``t_us`` or until there may be something to do."""
        if busy:
            time.sleep(0)  # yield the GIL to submitting threads; the GPU is polled next
            return
        dt = t_us - self.now_us()
        if dt > 1000:  # sleep to ~500 us before the arrival (sleep overshoots), then spin
            time.sleep(min(dt - 500.0, 5000.0) / 1e6)
        elif dt > 0:
            time.sleep(0)


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
