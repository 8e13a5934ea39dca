"""The sim replay of a profile: the coarse model's grids (computed by hand) and that a simulated
package replays every profiled kernel's duration, coarse or exact."""

from __future__ import annotations

import json

import pytest

from reef_rocm.bench.disb.packages import SimModel, coarsen_profile, find_profile, sim_package
from reef_rocm.bench.disb.workload import WorkloadError

PROFILE = {
    "model": "m",
    "device": "NVIDIA H200",
    "kernels": [
        {"index": 0, "name": "small", "grid": [66, 1, 1], "block": [128, 1, 1], "us_median": 7.0},
        {"index": 1, "name": "one", "grid": [1, 1, 1], "block": [32, 1, 1], "us_median": 3.0},
        {"index": 2, "name": "two", "grid": [200, 1, 1], "block": [256, 1, 1], "us_median": 40.0},
        {"index": 3, "name": "big", "grid": [33, 40, 1], "block": [256, 1, 1], "us_median": 300.0},
    ],
}  # fmt: skip
COARSE = SimModel("sm_90", compute_units=16, profile_compute_units=132, max_rounds=4)


def test_coarse_grids_by_hand():
    out = coarsen_profile(PROFILE, COARSE)
    # 66 of 132 SMs -> half of 16; 1 block -> 1; 200 blocks = 2 rounds -> 2 x 16;
    # 1320 blocks = 10 rounds -> capped at 4 x 16
    assert [k["grid"] for k in out["kernels"]] == [[8, 1, 1], [1, 1, 1], [32, 1, 1], [64, 1, 1]]
    assert [k["us_median"] for k in out["kernels"]] == [7.0, 3.0, 40.0, 300.0]
    assert out["kernels"][3]["profiled_grid"] == [33, 40, 1]
    exact = SimModel("sm_90", 132, 132, None)
    assert exact.exact and coarsen_profile(PROFILE, exact) is PROFILE


@pytest.mark.parametrize(
    "sim", [COARSE, SimModel("sm_90", 132, 132, None)], ids=["coarse", "exact"]
)
def test_sim_package_replays_profiled_durations(tmp_path, sim):
    from reef_rocm.gpu import open_device
    from reef_rocm.runtime.executor import ModelInstance

    f = tmp_path / "m.json"
    f.write_text(json.dumps(PROFILE))
    pkg = sim_package(tmp_path / "cache", "m", f, sim)
    assert sim_package(tmp_path / "cache", "m", f, sim) == pkg  # built once
    with open_device("sim", arch=sim.arch, compute_units=sim.compute_units) as dev:
        with ModelInstance(dev, pkg) as inst:
            s = dev.create_stream()
            for i, k in enumerate(PROFILE["kernels"]):
                t0 = dev.now_us
                inst.launch_range(s, i, i + 1)
                s.synchronize()
                took = dev.now_us - t0
                # launch + dispatch + sync latencies of the sim model sit on top of the kernel
                cfg = dev.config
                extra = cfg.launch_overhead_us + cfg.dispatch_latency_us + cfg.sync_latency_us
                assert took == pytest.approx(k["us_median"] + extra, abs=0.5), k["name"]


def test_find_profile_by_model_field_and_bad_profile(tmp_path):
    (tmp_path / "x.json").write_text(json.dumps({**PROFILE, "model": "vgg19-cuda_sm_90"}))
    (tmp_path / "junk.json").write_text("{not json")
    assert find_profile(tmp_path, "vgg19").name == "x.json"
    with pytest.raises(WorkloadError, match="no timing profile for model 'resnet152'"):
        find_profile(tmp_path, "resnet152")
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"model": "b", "kernels": [{"name": "k"}]}))
    with pytest.raises(WorkloadError, match="profile .*bad.json"):
        sim_package(tmp_path / "c", "b", bad, COARSE)
