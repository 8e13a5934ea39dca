"""Shared pieces of the DISB tests: synthetic per-kernel profiles (the format
``ModelInstance.profile()`` writes) standing in for the H200 profiles until they are committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reef_rocm.bench.disb import runner

from . import fake_sched

# (kernels, microseconds each): small enough that a sim run of A takes seconds
SYNTHETIC = {
    "vgg19": (6, 150.0),
    "resnet152": (12, 120.0),
    "densenet201": (10, 90.0),
    "inception_v3": (8, 100.0),
    "distilbert": (5, 80.0),
}


def write_profiles(root: Path, models: dict[str, tuple[int, float]] = SYNTHETIC) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for model, (n, us) in models.items():
        doc = {
            "model": f"{model}-cuda_sm_90",
            "variant": "plain",
            "device": "synthetic test profile (not measured)",
            "kernels": [
                {
                    "index": i,
                    "name": f"{model}_k{i}",
                    "grid": [264, 1, 1],
                    "block": [256, 1, 1],
                    "shared_mem": 0,
                    "us_median": us,
                    "us_min": us * 0.95,
                }
                for i in range(n)
            ],  # fmt: skip
            "total_us_median": n * us,
        }
        (root / f"{model}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    return write_profiles(tmp_path / "profiles")


@pytest.fixture
def fake(monkeypatch):
    seen: list[tuple[str, dict]] = []

    class Recording(fake_sched.Scheduler):
        def run_load(self, specs, duration_us, warmup_us):
            seen.append((self.options.policy,
                         {s.handle.client: s.arrivals_us for s in specs}))  # fmt: skip
            return super().run_load(specs, duration_us, warmup_us)

    mod = type("M", (), {"Scheduler": Recording, "SchedOptions": fake_sched.SchedOptions,
                         "LoadSpec": fake_sched.LoadSpec})  # fmt: skip
    monkeypatch.setattr(runner, "_sched", lambda: (mod, fake_sched.available_policies))
    return seen


def run_opts(tmp_path: Path, profiles: Path, **kw) -> runner.DisbOptions:
    base = dict(workloads="A", backend="sim", profiles=str(profiles), out=str(tmp_path / "o"),
                duration_s=0.5, warmup_s=0.1, progress_bar=False)  # fmt: skip
    return runner.DisbOptions(**{**base, **kw})


@pytest.fixture
def results_file(tmp_path: Path, profiles: Path, fake) -> Path:
    """A results JSON of DISB A on sim through the stand-in scheduler, with both sweeps."""
    from reef_rocm.bench.meta import write_result

    bench = runner.DisbBench(
        run_opts(tmp_path, profiles, sweep_cap=[20.0, 100.0], sweep_be_kernel_us=[50.0, 400.0])
    )
    try:
        doc = bench.run()
        return write_result(tmp_path / "r.json", doc, bench._meta_device, command="test")
    finally:
        bench.close()
