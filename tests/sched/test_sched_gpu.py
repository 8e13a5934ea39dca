"""The scheduler on a real GPU (cuda backend): zoo packages carried in $REEF_PACKAGES (default
.carry/packages, built with ``reef compile --zoo --target cuda:sm_90``). Every policy the
device supports runs RT tiny_cnn against closed-loop BE resnet18 for a short while; every
output matches its CPU reference; preempting policies preempt; thread-mode submit works."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reef_rocm.package.files import ModelPackage, find_packages
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler, outputs_match
from reef_rocm.sched.policy import available_policies

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("REEF_PACKAGES", ROOT / ".carry" / "packages"))
TARGET = os.environ.get("REEF_TARGET", "cuda:sm_90")


@pytest.fixture(scope="module")
def dev():
    from reef_rocm.gpu import open_device, probe

    backend = "cuda" if TARGET.startswith("cuda") else "hip"
    report = probe(backend)
    if not report.available:
        pytest.skip(f"no {backend} GPU: {report.reason}")
    d = open_device(backend)
    yield d
    d.close()


def _pkg(name: str) -> ModelPackage:
    found = {ModelPackage.load(p).name: p for p in find_packages(PACKAGES, TARGET)}
    if name not in found:
        pytest.skip(f"no {TARGET} package {name} under {PACKAGES}")
    return ModelPackage.load(found[name])


@pytest.mark.parametrize(
    "policy", ["rt-only", "sequential", "streams", "priority-streams", "wait", "reset",
               "reset+poll", "reset+kill"],
)  # fmt: skip
def test_policy_on_gpu(dev, policy):
    if policy not in available_policies(dev.capabilities):
        pytest.skip(f"{policy} needs a capability this device lacks")
    rt, be = _pkg("tiny_cnn"), _pkg("resnet18")
    with Scheduler(dev, SchedOptions(policy=policy, threaded=False)) as s:
        hr, hb = s.load(rt, "rt", "cam"), s.load(be, "be", "bg")
        arrivals = [2000.0 + 3000.0 * i for i in range(60)]
        run = s.run_load([LoadSpec(hr, arrivals), LoadSpec(hb)], duration_us=200_000,
                         warmup_us=10_000)  # fmt: skip
    assert run.of("rt") and all(r.correct is True for r in run.requests)
    if policy != "rt-only":
        assert run.of("be")
    if policy in ("wait", "reset", "reset+poll", "reset+kill"):
        assert run.preemptions
        assert all(p.latency_us is not None for p in run.preemptions)
        assert sum(r.preemptions for r in run.of("be")) > 0


def test_thread_mode_on_gpu(dev):
    rt, be = _pkg("tiny_cnn"), _pkg("resnet18")
    with Scheduler(dev, SchedOptions(policy="reset+poll")) as s:
        assert s.threaded
        hr, hb = s.load(rt, "rt"), s.load(be, "be")
        fb = [s.submit(hb, be.reference_inputs()) for _ in range(4)]
        fr = [s.submit(hr, rt.reference_inputs()) for _ in range(4)]
        for f in fr:
            assert outputs_match(f.result(timeout=60).outputs, rt.reference_outputs())
        for f in fb:
            assert outputs_match(f.result(timeout=60).outputs, be.reference_outputs())


@pytest.mark.parametrize("rt_graphs", [False, True])
def test_preloaded_and_graph_rt_on_gpu(dev, rt_graphs):
    """Preloaded inputs (no transfer on the RT path) and RT as one launch graph: every
    output still matches, and the BE work is preempted and restored exactly."""
    if rt_graphs and not dev.capabilities.graphs:
        pytest.skip("device cannot capture launch graphs")
    rt, be = _pkg("tiny_cnn"), _pkg("resnet18")
    opts = SchedOptions(policy="reset+poll", threaded=False, rt_graphs=rt_graphs)
    with Scheduler(dev, opts) as s:
        hr, hb = s.load(rt, "rt", "cam"), s.load(be, "be", "bg")
        arrivals = [2000.0 + 3000.0 * i for i in range(60)]
        run = s.run_load([LoadSpec(hr, arrivals, preload=True), LoadSpec(hb, preload=True)],
                         duration_us=200_000, warmup_us=10_000)  # fmt: skip
    assert run.of("rt") and run.of("be") and run.preemptions
    assert all(r.correct is True for r in run.requests)
    assert all(p.latency_us is not None for p in run.preemptions)
