"""The host clock's waits: no timed sleep while GPU work is in flight, timer slack cut on the
thread that drives the engine, and a serving thread woken by a submission at once."""

from __future__ import annotations

import queue
import sys
import threading
import time

import pytest

from reef_rocm.sched import clock as clock_mod
from reef_rocm.sched._timerslack import set_timer_slack_ns, timer_slack_ns


def test_busy_wait_never_sleeps(monkeypatch):
    """A busy wait must not sleep, not even sleep(0): Linux adds the timer slack."""
    slept = []
    monkeypatch.setattr(clock_mod.time, "sleep", slept.append)
    c = clock_mod.HostClock()
    c.wait_until(c.now_us() + 10_000.0, busy=True)
    c.wait_until(float("inf"), busy=True)
    assert slept == []


def test_idle_wait_sleeps_only_until_shortly_before_the_arrival(monkeypatch):
    slept = []
    monkeypatch.setattr(clock_mod.time, "sleep", slept.append)
    c = clock_mod.HostClock()
    c.wait_until(c.now_us() + 50.0, busy=False)  # inside the margin: spin, no sleep
    assert slept == []
    c.wait_until(c.now_us() + clock_mod.SLEEP_MARGIN_US + 3000.0, busy=False)
    assert len(slept) == 1
    assert 0 < slept[0] * 1e6 <= 3000.0


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux-only")
def test_timer_slack_is_per_thread():
    seen = {}

    def worker():
        seen["before"] = timer_slack_ns()
        seen["set"] = set_timer_slack_ns(1)
        seen["after"] = timer_slack_ns()

    main_before = timer_slack_ns()
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen["set"] is True and seen["after"] == 1
    assert timer_slack_ns() == main_before  # the caller's thread is not touched


def test_poll_inbox_returns_a_submission_and_times_out_empty():
    c = clock_mod.HostClock()
    q: queue.SimpleQueue = queue.SimpleQueue()
    assert c.poll_inbox(q) is None
    threading.Timer(0.01, q.put, args=(("task", 7),)).start()
    got = None
    deadline = time.monotonic() + 5
    while got is None and time.monotonic() < deadline:
        got = c.poll_inbox(q)
    assert got == ("task", 7)
