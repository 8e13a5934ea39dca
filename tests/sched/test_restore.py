"""Exact restore: a BE inference preempted at every kernel boundary (and inside kernels, and
the same kernel again and again) still computes the numpy reference."""

from __future__ import annotations

import pytest

from reef_rocm.runtime.executor import CompletionCountError
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler
from reef_rocm.sched.model import LoadedModel


def _be_kernel_starts(sim, package) -> list[float]:
    """When each kernel of one BE inference starts when it runs alone (same prefix of
    events as the preempted runs: the model is deterministic)."""
    dev = sim(trace=True)
    with Scheduler(dev, SchedOptions(policy="reset+poll")) as s:
        hb = s.load(package, "be", "bg")
        dev.trace.clear()  # the profile taken at load ran the model too
        t0 = dev.now_us
        run = s.run_load([LoadSpec(hb, arrivals_us=[0.0])], duration_us=1.0)
        assert run.requests[0].correct
        return [k.start_us - t0 for k in dev.trace.kernels() if k.name.startswith("b")]


def _one(sim, packages, policy, rt_at: float):
    dev = sim()
    with Scheduler(dev, SchedOptions(policy=policy)) as s:
        hr, hb = s.load(packages["rt"], "rt", "cam"), s.load(packages["be"], "be", "bg")
        return s.run_load(
            [LoadSpec(hb, arrivals_us=[0.0]), LoadSpec(hr, arrivals_us=[rt_at])],
            duration_us=rt_at + 1.0,
        )


def test_preempt_at_every_kernel_boundary(sim, packages):
    starts = _be_kernel_starts(sim, packages["be"])
    assert len(starts) == 8
    times = []
    for t in starts:
        times += [t - 1.0, t + 0.5, t + 40.0]  # just before, just after, mid-kernel
    for policy in ("reset+poll", "reset+kill", "reset"):
        for t in times if policy == "reset+poll" else times[2::3]:
            run = _one(sim, packages, policy, t)
            be = run.of("be")[0]
            assert be.correct is True, (policy, t)
            assert run.of("rt")[0].correct is True
            assert be.preemptions == 1 and len(run.preemptions) == 1, (policy, t)


def test_one_kernel_cut_again_and_again(sim, packages):
    """RT every 120 us inside a 100-block kernel with poll points: partial runs of one kernel
    many times over (the double-count bug: 32 -> 64 -> 96 -> 128 of 100)."""
    dev = sim()
    with Scheduler(dev, SchedOptions(policy="reset+poll")) as s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["long"], "be")
        arrivals = [30.0 + 120.0 * i for i in range(8)]
        run = s.run_load([LoadSpec(hb, arrivals_us=[0.0]), LoadSpec(hr, arrivals)], 1100.0)
    be = run.of("be")[0]
    assert be.preemptions >= 4
    assert be.correct is True and all(r.correct for r in run.of("rt"))


def test_restore_without_zeroing_is_caught(sim, packages, monkeypatch):
    """Negative control: skip the stream-ordered zeroing of re-launched kernels' slots and the
    same run must fail (over-count detected, or a wrong output) - the check above can fail."""
    real = LoadedModel.zero_slots

    def no_resume_zeroing(self, stream, start=0):
        if start == 0:
            real(self, stream, 0)

    monkeypatch.setattr(LoadedModel, "zero_slots", no_resume_zeroing)
    dev = sim()
    with Scheduler(dev, SchedOptions(policy="reset+poll")) as s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["long"], "be")
        arrivals = [30.0 + 120.0 * i for i in range(8)]
        try:
            run = s.run_load([LoadSpec(hb, arrivals_us=[0.0]), LoadSpec(hr, arrivals)], 1100.0)
        except CompletionCountError:
            return
    assert run.of("be")[0].correct is False


@pytest.mark.parametrize("policy", ["reset", "reset+poll", "reset+kill", "wait"])
def test_rt_arrival_swept_over_a_whole_inference(sim, packages, policy):
    """Flag races: RT arrivals on a 37 us grid across one BE inference - during launches,
    mark records, the output copy and the tail."""
    starts = _be_kernel_starts(sim, packages["be"])
    end = starts[-1] + 120.0
    t = 2.0
    while t < end:
        run = _one(sim, packages, policy, t)
        assert all(r.correct is True for r in run.requests), (policy, t)
        t += 37.0
