"""The scheduler thread's timer slack (Linux ``prctl(PR_SET_TIMERSLACK)``), the one FFI call of
``sched/``.

Linux lets a normal thread's timed sleeps and waits expire up to its timer slack late (50 us by
default) so wake-ups can be batched. A scheduler that sleeps until the next arrival, or waits
on its inbox between GPU polls, would then react ~50 us late - as large as the preemption
latency REEF aims at - so the scheduler thread asks for 1 ns. Elsewhere (not Linux, no libc)
nothing changes and ``set_timer_slack_ns`` says so by returning False.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

PR_SET_TIMERSLACK = 29
PR_GET_TIMERSLACK = 30


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def set_timer_slack_ns(ns: int = 1) -> bool:
    """Set the calling thread's timer slack; True when the kernel took it."""
    libc = _libc()
    if libc is None:
        return False
    return libc.prctl(PR_SET_TIMERSLACK, ctypes.c_ulong(ns), 0, 0, 0) == 0


def timer_slack_ns() -> int | None:
    """The calling thread's timer slack (None where it cannot be read)."""
    libc = _libc()
    if libc is None:
        return None
    v = libc.prctl(PR_GET_TIMERSLACK, 0, 0, 0, 0)
    return None if v < 0 else int(v)
