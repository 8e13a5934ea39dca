"""Preloaded inputs (REEF's registered blobs): requests without inputs run on what
``preload`` put on the device, with no copy to the device on their path, and still compute
the reference - also when BE work on preloaded inputs is preempted and restored."""

from __future__ import annotations

import numpy as np
import pytest

from reef_rocm.errors import ReefError
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler
from reef_rocm.sched.scheduler import outputs_match


def _to_device_copies(dev) -> list:
    return [r for r in dev.trace.of_kind("copy") if r.name == "to_device"]


def test_preloaded_rt_request_copies_nothing_to_the_device(sim, packages):
    dev = sim(trace=True)
    with Scheduler(dev, SchedOptions(policy="rt-only")) as s:
        h = s.load(packages["rt"], "rt", "cam")
        pkg = s.engine.models[h.id][1].package
        s.preload(h, pkg.reference_inputs())
        dev.trace.clear()
        res = s.submit(h, None).result()
        assert _to_device_copies(dev) == []
        assert outputs_match(res.outputs, pkg.reference_outputs())
        # a request with its own inputs still uploads them (and computes the same)
        res2 = s.submit(h, pkg.reference_inputs()).result()
        assert len(_to_device_copies(dev)) == len(pkg.reference_inputs())
        assert outputs_match(res2.outputs, pkg.reference_outputs())


def test_no_inputs_without_preload_is_refused(sim, packages):
    with Scheduler(sim(), SchedOptions(policy="rt-only")) as s:
        h = s.load(packages["rt"], "rt", "cam")
        with pytest.raises(ValueError, match="no preloaded inputs"):
            s.submit(h, None)


def test_replaced_preload_fails_the_request_clearly(sim, packages):
    """A request queued for the preloaded inputs, behind one that brought its own: the own
    inputs replaced the preloaded ones, so the second must fail, not compute on them."""
    with Scheduler(sim(), SchedOptions(policy="rt-only")) as s:
        h = s.load(packages["rt"], "rt", "cam")
        pkg = s.engine.models[h.id][1].package
        ref = pkg.reference_inputs()
        s.preload(h, ref)
        other = [np.ones_like(a) for a in ref]
        f1 = s.submit(h, other)
        f2 = s.submit(h, None)
        assert not outputs_match(f1.result().outputs, pkg.reference_outputs())
        with pytest.raises(ReefError, match="replaced them"):
            f2.result()


@pytest.mark.parametrize("policy", ["reset+poll", "reset"])
def test_preloaded_run_load_with_preemptions_is_exact(sim, packages, policy):
    dev = sim(trace=True)
    with Scheduler(dev, SchedOptions(policy=policy)) as s:
        hr, hb = s.load(packages["rt"], "rt", "cam"), s.load(packages["long"], "be", "bg")
        dev.trace.clear()
        arrivals = [30.0 + 120.0 * i for i in range(6)]
        run = s.run_load(
            [LoadSpec(hb, preload=True), LoadSpec(hr, arrivals, preload=True)], 800.0
        )
    assert run.preemptions, "the run must preempt BE work"
    assert run.of("rt") and all(r.correct is True for r in run.of("rt"))
    assert run.of("be") and all(r.correct is True for r in run.of("be"))
    assert any(r.preemptions for r in run.of("be"))
    # the two preloads are the only copies to the device in the whole run
    n_in = sum(len(s.input_specs) for s in (hr, hb))
    assert len(_to_device_copies(dev)) == n_in


def test_rt_graphs_need_the_capability(sim, packages):
    from reef_rocm.errors import UnsupportedError

    with Scheduler(sim(), SchedOptions(policy="rt-only", rt_graphs=True)) as s:
        with pytest.raises(UnsupportedError, match="capability graphs is off"):
            s.load(packages["rt"], "rt", "cam")
        assert not s.engine.models  # nothing half-loaded stays behind
