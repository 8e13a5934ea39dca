"""Simulated model packages: real package directories that ModelInstance runs on the sim."""

from __future__ import annotations

import json

import numpy as np
import pytest

from reef_rocm.errors import CodeObjectError, PackageError
from reef_rocm.gpu import LaunchConfig, open_device
from reef_rocm.gpu.sim import SimModuleSpec
from reef_rocm.gpu.sim.packages import (
    POLL_PARAM,
    SimKernelPlan,
    build_sim_package,
    sim_package_from_profile,
)
from reef_rocm.package import Manifest, ModelPackage
from reef_rocm.package.manifest import idempotence_violations
from reef_rocm.package.weights import generate
from reef_rocm.runtime.executor import ModelInstance

N = 256
PLANS = [
    SimKernelPlan("k0", grid=8, block=64, block_time_us=10, blocks_per_cu=1, scale=0.5, bias=1.0),
    SimKernelPlan("k1", grid=16, block=64, block_time_us=20, blocks_per_cu=2, loop_trips=10,
                  poll_every=2, scale=0.75, bias=-0.25),
    SimKernelPlan("k2", grid=(4, 2), block=128, block_time_us=5, scale=0.625, bias=0.5),
]  # fmt: skip


def expected(x: np.ndarray, seed: int = 0) -> np.ndarray:
    """The chain computed here from the plans, not by the package builder."""
    y = x.astype(np.float32)
    for i, p in enumerate(PLANS):
        w = generate(seed, f"w{i}", [N], "float32", {"kind": "uniform", "bound": 0.5})
        y = y * np.float32(p.scale) + np.float32(p.bias) + w
    return y


@pytest.fixture
def pkg(tmp_path):
    return build_sim_package(tmp_path / "chain", "chain", PLANS, elements=N, seed=3)


def sim(**kw):
    return open_device("sim", compute_units=4, trace=True, **kw)


def test_package_loads_and_plain_run_matches_numpy(pkg):
    p = ModelPackage.load(pkg)
    m = p.manifest
    assert m.target["backend"] == "sim" and set(m.variants) == {"plain", "preemptible"}
    assert idempotence_violations(m, "plain") == []
    assert [k.grid for k in m.variant("plain").kernels] == [[8, 1, 1], [16, 1, 1], [4, 2, 1]]
    x = p.reference_inputs()[0]
    ref = p.reference_outputs()[0]
    np.testing.assert_array_equal(ref, expected(x, seed=3))
    dev = sim()
    with ModelInstance(dev, pkg, variant="plain") as inst:
        (out,) = inst.run([x])
    np.testing.assert_array_equal(out, ref)
    # every block ran its slice once; k1 pinned 2 per CU on 4 CUs: 16 blocks in 2 rounds
    ks = {k.name: k for k in dev.trace.kernels()}
    assert ks["k1"].end_us - ks["k1"].start_us == pytest.approx(40)
    assert len(dev.trace.blocks("k2")) == 8


def test_variant_binaries_are_sim_module_json(pkg):
    p = ModelPackage.load(pkg)
    spec = SimModuleSpec.from_image(p.binary("preemptible"))
    k1 = spec.kernel("k1")
    assert k1.preemptible and k1.loop_trips == 10 and k1.poll_every == 2
    assert k1.effect["op"] == "affine"
    assert [a["kind"] for a in p.manifest.variant("preemptible").kernels[1].args] == [
        "buffer", "buffer", "buffer", "preempt_flag", "completion_slot",
    ]  # fmt: skip
    assert SimModuleSpec.from_image(p.binary("plain")).kernel("k1").poll_every is None


def slots_now(dev, inst) -> list[int]:
    """The completion slots as they are (a test's look, at no virtual cost)."""
    raw = dev.peek(inst.completion_slots, 4 * inst.num_kernels)
    return np.frombuffer(raw, dtype="<u4").tolist()


def test_preempt_at_a_kernel_boundary_and_restore_gives_the_reference(pkg):
    p = ModelPackage.load(pkg)
    x, ref = p.reference_inputs()[0], p.reference_outputs()[0]
    dev = sim(dispatch_latency_us=10)  # longer than the synchronous memset that raises the flag
    with ModelInstance(dev, pkg, variant="preemptible") as inst:
        s = dev.create_stream()
        inst.begin(s)
        inst.set_input(0, x, s)
        inst.launch_range(s)
        # raise the flag once k0 is done and before k1 starts (k1 waits for dispatch latency)
        while slots_now(dev, inst)[0] < 8:
            dev.advance(0.5)
        dev.memset32(inst.preempt_flag, 1, 1)
        s.synchronize()
        assert inst.read_slots(s).tolist() == [8, 0, 0]
        assert not np.array_equal(inst.get_output(0, s), ref)
        start = inst.first_incomplete()
        assert start == 1
        dev.memset32(inst.preempt_flag, 0, 1)
        inst.resume(s, start)
        np.testing.assert_array_equal(inst.get_output(0, s), ref)
        inst.read_slots(s)
        assert inst.first_incomplete() == inst.num_kernels
    skipped = [b for b in dev.trace.blocks("k1") if b.outcome == "skipped"]
    assert len(skipped) == 16


def test_preempt_mid_kernel_by_polling_and_restore_gives_the_reference(pkg):
    p = ModelPackage.load(pkg)
    x, ref = p.reference_inputs()[0], p.reference_outputs()[0]
    dev = sim()
    with ModelInstance(dev, pkg, variant="preemptible") as inst:
        s = dev.create_stream()
        inst.begin(s)
        inst.set_input(0, x, s)
        inst.launch_range(s)
        while not any(b.name == "k1" for b in dev.trace.blocks()):
            dev.advance(0.5)
        dev.advance(5)  # the first round of k1 (20 us blocks) ended, the second runs
        dev.memset32(inst.preempt_flag, 1, 1)
        s.synchronize()
        outcomes = {b.outcome for b in dev.trace.blocks("k1")}
        assert "polled_out" in outcomes and "completed" in outcomes
        assert 0 < inst.read_slots(s)[1] < 16
        start = inst.first_incomplete()
        assert start == 1
        dev.memset32(inst.preempt_flag, 0, 1)
        inst.resume(s, start)  # zeroes the slots of k1.. in stream order, then launches
        np.testing.assert_array_equal(inst.get_output(0, s), ref)
        assert inst.read_slots(s).tolist() == [8, 16, 8]


def test_poll_every_argument_sets_the_poll_period(tmp_path):
    plans = [SimKernelPlan("loop", grid=4, block_time_us=100, blocks_per_cu=1, loop_trips=20)]
    path = build_sim_package(tmp_path / "p", "p", plans, elements=64, poll_arg=True)
    m = Manifest.load(path)
    args = m.variant("preemptible").kernels[0].args
    assert args[-1] == {"kind": "reef_param", "name": POLL_PARAM, "dtype": "int32"}
    dev = sim()
    mod = dev.load_module(ModelPackage.load(path).binary("preemptible"))
    k = mod.get_kernel("loop")
    bufs = [dev.alloc(256) for _ in range(3)]
    flag, slot = dev.alloc(4), dev.alloc(4)
    s = dev.create_stream()
    for every in (4, 0):  # 4 of 20 iterations of 100 us: a poll every 20 us; 0: none
        dev.memset32(flag, 0, 1)
        dev.trace.clear()
        t0 = dev.now_us
        k.bind(LaunchConfig(4, 64), [*bufs, flag, slot, np.int32(every)]).launch(s)
        dev.run_until(t0 + 30)  # blocks started ~t0 + 5.7 us
        dev.memset32(flag, 1, 1)
        s.synchronize()
        blocks = dev.trace.blocks("loop")
        start = blocks[0].start_us
        if every:
            assert {b.outcome for b in blocks} == {"polled_out"}
            assert all(b.end_us == pytest.approx(start + 40) for b in blocks)
        else:
            assert {b.outcome for b in blocks} == {"completed"}


def test_profile_package_replays_measured_times(tmp_path):
    profile = {
        "model": "resnet_like", "variant": "plain", "device": "NVIDIA H200",
        "kernels": [
            {"index": 0, "name": "conv", "grid": [64, 1, 1], "block": [256, 1, 1],
             "shared_mem": 0, "us_median": 24.0, "us_min": 23.0},
            {"index": 1, "name": "relu", "grid": [3, 1, 1], "block": [64, 1, 1],
             "shared_mem": 0, "us_median": 3.0, "us_min": 2.5},
            {"index": 2, "name": "conv", "grid": [64, 1, 1], "block": [256, 1, 1],
             "shared_mem": 0, "us_median": 12.0, "us_min": 11.0},
        ],
    }  # fmt: skip
    with pytest.raises(ValueError, match="compute_units"):
        sim_package_from_profile(tmp_path / "x", profile)
    path = sim_package_from_profile(tmp_path / "r", json.dumps(profile), compute_units=16)
    p = ModelPackage.load(path)
    assert p.manifest.target["arch"] == "sm_90" and p.manifest.target["compute_units"] == 16
    assert [k.name for k in p.manifest.variant("plain").kernels] == ["conv", "relu", "conv_2"]
    dev = open_device("sim", arch="sm_90", compute_units=16, trace=True)
    with ModelInstance(dev, path) as inst:
        (out,) = inst.run(p.reference_inputs())
    np.testing.assert_array_equal(out, p.reference_outputs()[0])
    dur = {k.name: k.end_us - k.start_us for k in dev.trace.kernels()}
    assert dur == pytest.approx({"conv": 24.0, "relu": 3.0, "conv_2": 12.0})


def test_duration_plans_last_their_duration_whatever_the_block_count(tmp_path):
    plans = [
        SimKernelPlan("many", grid=300, block=256, duration_us=12),  # 3 rounds on 104 CUs
        SimKernelPlan("few", grid=(2, 2), block=64, duration_us=7, blocks_per_cu=4),
    ]
    path = build_sim_package(tmp_path / "d", "d", plans, elements=1024)  # gfx90a, 104 CUs
    dev = open_device("sim", trace=True)
    with ModelInstance(dev, path) as inst:
        inst.run(ModelPackage.load(path).reference_inputs())
    dur = {k.name: k.end_us - k.start_us for k in dev.trace.kernels()}
    assert dur == pytest.approx({"many": 12.0, "few": 7.0})
    # more blocks than elements is fine: the extra blocks own no slice
    assert len(dev.trace.blocks("many")) == 300


def test_timing_only_package_has_no_reference_output(tmp_path):
    path = build_sim_package(tmp_path / "t", "t", PLANS, functional=False, elements=N)
    p = ModelPackage.load(path)
    assert p.reference_outputs() == [] and len(p.reference_inputs()) == 1
    assert SimModuleSpec.from_image(p.binary()).kernel("k0").effect is None
    with ModelInstance(sim(), path) as inst:
        (out,) = inst.run(p.reference_inputs())
    assert not out.any()  # nothing wrote the output


def test_bad_plans_and_effects_are_refused(tmp_path):
    with pytest.raises(ValueError, match="exactly one"):
        SimKernelPlan("k", grid=1)
    with pytest.raises(ValueError, match="unique"):
        build_sim_package(tmp_path / "a", "a", [PLANS[0], PLANS[0]])
    build_sim_package(tmp_path / "b", "b", PLANS[:1])
    with pytest.raises(PackageError, match="not empty"):
        build_sim_package(tmp_path / "b", "b", PLANS[:1])
    dev = sim()
    bad = {"name": "k", "block_time_us": 1, "params": ["a", "b"],
           "effect": {"op": "affine", "src": "a", "dst": "nope", "n": 4}}  # fmt: skip
    img = {"format": "reef-sim-module", "version": 1, "kernels": [bad]}
    with pytest.raises(CodeObjectError, match="nope"):
        dev.load_module(img)
    bad["effect"] = {"op": "fft", "src": "a", "dst": "b", "n": 4}
    with pytest.raises(CodeObjectError, match="unknown effect op 'fft'"):
        dev.load_module(img)
