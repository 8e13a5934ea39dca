"""``reef tune measure`` on a real GPU (no TVM needed): the round-1 bundle in .carry/tune/round1
(or $REEF_TUNE_BUNDLE). The default schedule of its smallest dense task is checked against
numpy, then every candidate of that task is measured: the default and some tuned ones valid,
times positive."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.compiler.tune.bundle import load_bundle
from reef_rocm.compiler.tune.measure import MeasureOptions, _TaskRun, compare, measure_bundle

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = Path(os.environ.get("REEF_TUNE_BUNDLE", ROOT / ".carry" / "tune" / "round1"))


@pytest.fixture(scope="module")
def dev():
    from reef_rocm.gpu import open_device, probe

    report = probe("cuda")
    if not report.available:
        pytest.skip(f"no cuda GPU: {report.reason}")
    d = open_device("cuda")
    yield d
    d.close()


@pytest.fixture(scope="module")
def dense():
    if not (BUNDLE / "index.json").is_file():
        pytest.skip(f"no tuning bundle at {BUNDLE}")
    b = load_bundle(BUNDLE)
    tasks = [t for t in b.tasks if "NT_matmul" in t.name and len(t.params) == 4]
    if not tasks:
        pytest.skip("the bundle has no dense task")
    return b, min(tasks, key=lambda t: sum(p["nbytes"] for p in t.params))


def test_default_schedule_matches_numpy(dev, dense):
    b, task = dense
    stream = dev.create_stream()
    run = _TaskRun(dev, stream, b, task, seed=0)
    try:
        assert run.load_error is None, run.load_error
        (out,), _ = run.outputs(run.bind(task.candidates[0]))
        host = []
        for i, p in enumerate(task.params[:3]):
            a = np.empty(tuple(p["shape"]), dtype=p["dtype"])
            dev.copy_to_host(a, run.buffers[i], stream)
            host.append(a)
        stream.synchronize()
        x, w, bias = (a.astype(np.float64) for a in host)
        ref = x @ w.T + bias
        if "relu" in task.name:
            ref = np.maximum(ref, 0.0)
        ok, rel = compare(out, ref.astype(np.float32), 1e-3)
        assert ok, f"{task.name}: default schedule differs from numpy (rel err {rel:.3g})"
    finally:
        run.close()
        stream.close()


def test_measure_task(dev, dense):
    b, task = dense
    doc = measure_bundle(b, dev, MeasureOptions(repeats=5, tasks=(task.id,)), progress=False)
    rows = doc["results"]
    assert doc["stopped"] is None
    assert len(rows) == len(task.candidates)
    assert rows[0]["kind"] == "default" and rows[0]["valid"], rows[0].get("error")
    valid = [r for r in rows if r["valid"]]
    assert all(r["us_median"] > 0 and r["us_min"] <= r["us_median"] for r in valid)
    if len(task.candidates) > 1:
        assert len(valid) > 1, [r.get("error") for r in rows]
