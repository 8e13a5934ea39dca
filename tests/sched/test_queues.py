"""BE device queues stay within their cap (profiled microseconds, or kernels without a
profile), and close() releases every allocation."""

from __future__ import annotations

import pytest

from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler
from reef_rocm.sched.engine import Engine


def _watch_feed(monkeypatch, seen):
    real = Engine._feed

    def feed(self, q):
        out = real(self, q)
        head = q.ring_cost[q.r_head] if q.r_len else 0.0  # the running run: not capped
        seen.append((q, q.stream.pending_kernels, q.queued - head, max(q.model.cost)))
        return out

    monkeypatch.setattr(Engine, "_feed", feed)


@pytest.mark.parametrize("profile", [True, False])
def test_device_queue_cap(sim, packages, monkeypatch, profile):
    seen = []
    _watch_feed(monkeypatch, seen)
    opts = SchedOptions(policy="reset+poll", profile_on_load=profile, device_queue_cap_us=50.0)
    with Scheduler(sim(), opts) as s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        assert hb.profile_source == ("measured at load" if profile else "none (kernel-count cap)")
        run = s.run_load([LoadSpec(hb), LoadSpec(hr, [400.0, 1300.0])], duration_us=2500)
    assert seen and all(r.correct for r in run.requests)
    for _q, pending, queued, biggest in seen:
        if profile:
            # the cap bounds the work waiting behind the running run, overshot by at most
            # one kernel
            assert queued < 50.0 + biggest
        else:
            assert pending <= 2  # REEF's kernel-count cap: 2 kernels in the device queue
    assert max(p for _, p, _, _ in seen) >= (1 if profile else 2)


def test_close_releases_everything(sim, packages):
    dev = sim()
    before = dev.memory.live_bytes
    s = Scheduler(dev, SchedOptions(policy="reset+kill"))
    hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
    s.run_load([LoadSpec(hb), LoadSpec(hr, [300.0])], duration_us=800)
    s.unload(hr)
    assert dev.memory.live_bytes > before
    s.close()
    assert dev.memory.live_bytes == before
