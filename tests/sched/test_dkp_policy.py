"""reset+poll+dkp on the sim: the padder's protocol against a model of the padded launch
(tests/sched/sim_dkp.py): outputs equal the references, padded progress is restored
exactly, BE kernels never run before their predecessor completed, and nothing is padded
without a DKP profile, beyond the tolerance or with models that have no DKP bodies."""

from __future__ import annotations

import pytest

from reef_rocm.errors import ReefError, UnsupportedError
from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler
from reef_rocm.sched import padder as padder_mod
from reef_rocm.sched.policy import available_policies, get_policy

from .sim_dkp import SimPadBackend

POLICY = "reset+poll+dkp"


@pytest.fixture(scope="module")
def pk(tmp_path_factory):
    """RT kernels of 2 blocks on 8 CUs (6 CUs idle, 40 us), BE kernels of 10 us blocks."""
    root = tmp_path_factory.mktemp("dkppk")

    def plans(prefix, n, grid, block_us, trips=1):
        return [SimKernelPlan(f"{prefix}{i}", grid=grid, block=64, block_time_us=block_us,
                              blocks_per_cu=1, loop_trips=trips) for i in range(n)]  # fmt: skip

    return {
        "rt": build_sim_package(root / "rt", "rtp", plans("r", 3, 2, 40.0), compute_units=8),
        "be": build_sim_package(root / "be", "bep", plans("b", 4, 24, 10.0, 10),
                                compute_units=8, poll_arg=True, seed=5),
        "be2": build_sim_package(root / "be2", "bep2", plans("c", 3, 16, 8.0, 8),
                                 compute_units=8, poll_arg=True, seed=9),
    }  # fmt: skip


def _run(sim, pk, monkeypatch, rt_at, be_at, duration, **backend_kw):
    box = {}

    def fake(device, options, stream):
        box["b"] = SimPadBackend(device, options.dkp_tolerance, **backend_kw)
        return box["b"]

    monkeypatch.setattr(padder_mod, "open_backend", fake)
    dev = sim(indirect_calls=True)
    with Scheduler(dev, SchedOptions(policy=POLICY)) as s:
        hr = s.load(pk["rt"], "rt", "cam")
        hb = s.load(pk["be"], "be", "bg")
        hb2 = s.load(pk["be2"], "be", "bg2")
        run = s.run_load([LoadSpec(hr, arrivals_us=rt_at), LoadSpec(hb, arrivals_us=be_at),
                          LoadSpec(hb2, arrivals_us=be_at)], duration_us=duration)  # fmt: skip
        stats = s.engine.padder.stats
    return run, box["b"], stats


def _all_correct(run):
    assert run.requests and all(r.correct is True for r in run.requests), [
        (r.client, r.seq, r.correct, r.error) for r in run.requests if r.correct is not True
    ]


def _bursts(times, n=3):
    """n RT requests of one model at each time: the first preempts BE work (its BE clients
    are not drained yet, so it is not padded), the ones behind it run while BE is held and
    drained, and are padded."""
    return [t for t in times for _ in range(n)]


def test_padded_runs_are_exact_and_counted(sim, pk, monkeypatch):
    rt_at = _bursts([50.0, 700.0, 1400.0])
    # a BE request arriving during a burst is started by the padder inside an RT launch
    run, b, st = _run(sim, pk, monkeypatch, rt_at, [0.0, 760.0], 3000.0)
    _all_correct(run)
    assert not b.violations
    rts = run.of("rt")
    assert len(rts) == 9 and st.padded > 0 and b.blocks_run > 0 and st.be_started > 0
    # the padder's count (from slot reads on the RT stream) is what the model ran
    assert sum(r.pad_be_blocks for r in rts) == b.blocks_run == st.be_blocks
    assert sum(r.padded_kernels for r in rts) == st.padded
    assert all(r.padded_kernels == 0 for r in run.of("be"))


def test_partial_padding_then_preemption_restores_exactly(sim, pk, monkeypatch):
    """Each padded launch runs at most 5 of a BE kernel's 24 virtual blocks, so kernels are
    left part-run by padding, resumed on the BE stream, preempted again mid-kernel, and
    padded again from their drained slots; bursts of RT requests continue a held client's
    kernel from its exact cursor."""
    rt_at = sorted(_bursts([30.0, 900.0, 1800.0], 4) + [400.0 + 230.0 * i for i in range(8)])
    run, b, st = _run(sim, pk, monkeypatch, rt_at, [0.0, 0.0, 0.0, 640.0], 4000.0,
                      per_launch=5)  # fmt: skip
    _all_correct(run)
    assert not b.violations
    assert b.blocks_run > 0 and st.padded > 0, st
    assert any(r.preemptions > 0 for r in run.of("be"))  # real preemptions after padding
    assert sum(r.pad_be_blocks for r in run.of("rt")) == b.blocks_run


def test_next_kernel_before_predecessor_is_caught(sim, pk, monkeypatch):
    """Negative control: let the padder move to a client's next kernel without a slot read
    showing the current one complete - the model sees BE blocks run too early."""

    def eager(self, c):
        if c.started and c.kernel + 1 < c.q.model.n:
            c.kernel += 1
            c.planned = 0

    monkeypatch.setattr(padder_mod.Padder, "_refresh", eager)
    rt_at = _bursts([30.0, 400.0], 4)
    _, b, _ = _run(sim, pk, monkeypatch, rt_at, [0.0], 2500.0, per_launch=5)
    assert b.violations


def test_no_dkp_profile_pads_nothing(sim, pk, monkeypatch):
    rt_at = _bursts([50.0, 700.0])
    with pytest.warns(UserWarning, match="no DKP profile"):
        run, b, st = _run(sim, pk, monkeypatch, rt_at, [0.0], 1500.0, has_profile=False)
    _all_correct(run)
    assert b.blocks_run == 0 and not b.pads and st.padded == 0
    assert st.unprofiled == st.rt_kernels > 0


def test_tolerance_and_models_without_bodies(sim, pk, monkeypatch):
    """RT kernel 0 is 30 % slower through the dispatcher (beyond the 2 % default): always
    plain; bep2 has no DKP bodies: never used as padding (it still runs, on its stream)."""
    rt_at = _bursts([50.0, 900.0], 4)
    run, b, st = _run(sim, pk, monkeypatch, rt_at, [0.0, 0.0], 2500.0,
                      bodies={"rtp", "bep"}, profile={"rtp": [1.3, 1.0, 1.01]})  # fmt: skip
    _all_correct(run)
    assert b.pads and st.over_tolerance > 0
    assert {p.names[1] for p in b.pads} <= {1, 2}
    assert {p.names[2] for p in b.pads} == {"bep"}
    assert len(run.of("be", "bg2")) == 2


def test_capability_and_build_errors(sim):
    assert POLICY not in available_policies(sim().capabilities)
    with pytest.raises(UnsupportedError, match="indirect_calls"):
        get_policy(POLICY, sim().capabilities)
    with pytest.raises(UnsupportedError, match="indirect_calls"):
        Scheduler(sim(), SchedOptions(policy=POLICY))
    with pytest.raises(UnsupportedError, match="needs a DKP build"):
        Scheduler(sim(indirect_calls=True), SchedOptions(policy=POLICY))
    with pytest.raises(ReefError, match="dkp_build.json"):
        Scheduler(sim(indirect_calls=True), SchedOptions(policy=POLICY, dkp_build="/nonexistent"))
    assert get_policy(POLICY).pads and get_policy("reset+poll").pads is False


def test_padding_without_zeroing_is_caught(sim, pk, monkeypatch):
    """Negative control for exact restore: pad a held client's kernel without zeroing its
    slot first (the evicted launch's count stays in it) - the run must fail."""
    from reef_rocm.sched.model import LoadedModel

    real = LoadedModel.zero_slots

    def skip_on_rt(self, stream, start=0):
        if getattr(stream, "_dkp_rt", False):
            return
        real(self, stream, start)

    monkeypatch.setattr(LoadedModel, "zero_slots", skip_on_rt)
    real_init = padder_mod.Padder.__init__

    def mark(self, engine):
        real_init(self, engine)
        engine.rt_stream._dkp_rt = True

    monkeypatch.setattr(padder_mod.Padder, "__init__", mark)
    rt_at = sorted(_bursts([30.0, 900.0, 1800.0], 4) + [400.0 + 230.0 * i for i in range(8)])
    try:
        run, _, _ = _run(sim, pk, monkeypatch, rt_at, [0.0, 0.0, 0.0, 640.0], 4000.0,
                         per_launch=5)  # fmt: skip
    except ReefError:
        return  # CompletionCountError: blocks counted twice
    assert not all(r.correct is True for r in run.requests)
