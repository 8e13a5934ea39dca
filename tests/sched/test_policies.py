"""Every policy on the sim: outputs checked against the numpy reference, and what makes each
policy what it is (no preemption, FIFO order, RT first, drain before RT)."""

from __future__ import annotations

import pytest

from reef_rocm.errors import UnsupportedError
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler
from reef_rocm.sched.policy import all_policies, available_policies, get_policy

POLICIES = ["rt-only", "sequential", "streams", "priority-streams", "wait", "reset",
            "reset+poll", "reset+kill"]  # fmt: skip
ARRIVALS = [300.0 + 700.0 * i for i in range(12)]


def _run(sim, packages, policy, **opts):
    dev = sim(trace=True)
    with Scheduler(dev, SchedOptions(policy=policy, **opts)) as s:
        hr = s.load(packages["rt"], "rt", "cam0")
        hb = s.load(packages["be"], "be", "bg")
        run = s.run_load([LoadSpec(hr, ARRIVALS), LoadSpec(hb)], duration_us=9000, warmup_us=0)
        return dev, run


def test_registry_names_every_policy():
    # reset+poll+dkp needs a padding backend: tests/sched/test_dkp_policy.py
    assert sorted(all_policies()) == sorted([*POLICIES, "reset+poll+dkp"])


@pytest.mark.parametrize("policy", POLICIES)
def test_policy_runs_and_every_output_is_correct(sim, packages, policy):
    dev, run = _run(sim, packages, policy)
    rt, be = run.of("rt"), run.of("be")
    assert len(rt) == len(ARRIVALS)
    assert all(r.done_us is not None and r.done_us > r.arrival_us for r in run.requests)
    assert all(r.correct is True for r in run.requests), [r for r in run.requests if not r.correct]
    if policy == "rt-only":
        assert be == [] and run.preemptions == []
        return
    assert len(be) >= 5
    preempts = policy in ("wait", "reset", "reset+poll", "reset+kill")
    assert bool(run.preemptions) == preempts
    assert (sum(r.preemptions for r in be) > 0) == preempts
    # RT is never preempted: no RT block was ever cut short (the kill is process-wide, so this
    # also checks that RT launches only after it)
    rt_names = {f"r{i}" for i in range(4)}
    cut = [b for b in dev.trace.of_kind("block") if b.name in rt_names and b.outcome != "completed"]
    assert cut == []


def test_sequential_runs_one_inference_at_a_time(sim, packages):
    _, run = _run(sim, packages, "sequential")
    spans = sorted((r.launched_us, r.done_us) for r in run.requests)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end  # nothing overlaps: RT waited behind the BE inference submitted


def test_wait_launches_rt_only_after_be_drained(sim, packages):
    _, run = _run(sim, packages, "wait")
    assert run.preemptions
    for p in run.preemptions:
        assert p.be_drained_us is not None and p.rt_start_us is not None
        assert p.rt_start_us >= p.be_drained_us


def test_reset_launches_rt_before_be_has_left(sim, packages):
    """Reset-based preemption does not wait: RT starts while evicted BE work still drains."""
    _, run = _run(sim, packages, "reset")
    assert any(p.rt_start_us < p.be_drained_us for p in run.preemptions)
    assert all(p.mechanisms == ("host_queue", "flag") for p in run.preemptions)


def test_kill_level_uses_kill_and_queue_reset(sim, packages):
    _, run = _run(sim, packages, "reset+kill")
    assert all(
        p.mechanisms == ("host_queue", "flag", "queue_reset", "kill") for p in run.preemptions
    )
    assert sum(p.killed for p in run.preemptions) > 0
    assert sum(p.dropped_kernels for p in run.preemptions) > 0


def test_preemption_latency_ordering_on_the_model(sim, packages):
    """Same workload, same model: RT waits least with reset-based preemption, most behind
    sequential execution (what the policies are for; no absolute thresholds)."""
    p99 = {}
    for pol in ("sequential", "streams", "reset+poll"):
        _, run = _run(sim, packages, pol)
        lat = sorted(r.latency_us for r in run.of("rt"))
        p99[pol] = lat[-1]
    assert p99["reset+poll"] < p99["streams"] < p99["sequential"]


def test_missing_capability_refuses_clearly(sim):
    nv = sim(arch="sm_90")
    assert "reset+kill" not in available_policies(nv.capabilities)
    with pytest.raises(UnsupportedError, match="wave_kill"):
        Scheduler(nv, SchedOptions(policy="reset+kill"))
    flat = sim(stream_priorities=False)
    with pytest.raises(UnsupportedError, match="stream_priorities"):
        get_policy("priority-streams", flat.capabilities)
    nopoll = sim(in_kernel_polling=False)
    with pytest.raises(UnsupportedError, match="in_kernel_polling"):
        Scheduler(nopoll, SchedOptions(policy="reset+poll"))
    with pytest.raises(ValueError, match="unknown policy"):
        get_policy("fifo")


def test_nvidia_model_runs_reset_poll(sim, packages):
    """sm_90 (the cuda backend's capability set): no kill, flags and polls."""
    dev = sim(arch="sm_90")
    with Scheduler(dev, SchedOptions(policy="reset+poll")) as s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        run = s.run_load([LoadSpec(hr, ARRIVALS[:5]), LoadSpec(hb)], duration_us=4000)
    assert run.preemptions and all(r.correct for r in run.requests)
    assert all("kill" not in p.mechanisms for p in run.preemptions)


def test_options_reject_bad_values():
    with pytest.raises(ValueError, match="device_queue_cap_us"):
        SchedOptions(device_queue_cap_us=0)
    with pytest.raises(ValueError, match="device_queue_cap_kernels"):
        SchedOptions(device_queue_cap_kernels=0)
    with pytest.raises(ValueError, match="poll_target_us"):
        SchedOptions(poll_target_us=-1)
