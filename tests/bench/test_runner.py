"""The DISB runner's orchestration on the sim device with a stand-in scheduler: every policy
gets the same arrivals, references are run, the results document has the documented shape, the
table and plots come out, and bad requests are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reef_rocm.bench.disb import runner
from reef_rocm.bench.disb.plots import plot_results
from reef_rocm.bench.disb.report import results_table
from reef_rocm.bench.disb.schema import ResultsError, validate_results
from reef_rocm.bench.meta import write_result
from reef_rocm.errors import UnsupportedError

from . import fake_sched
from .conftest import run_opts as _opts


def test_every_policy_same_arrivals_and_references(tmp_path, profiles, fake, capsys):
    bench = runner.DisbBench(_opts(tmp_path, profiles))
    doc = bench.run()
    bench.close()
    policies = [p for p, _ in fake]
    # rt-only reference (RT clients only), BE-alone reference (BE only), then the others
    assert policies == ["rt-only", "streams", "sequential", "streams", "reset", "reset+poll"]
    rt_arrivals = [a["rt-vgg19-0"] for p, a in fake if "rt-vgg19-0" in a]
    assert all(a == rt_arrivals[0] for a in rt_arrivals) and len(rt_arrivals[0]) == 60
    assert "be-resnet152-0" not in fake[0][1] and list(fake[1][1]) == ["be-resnet152-0"]
    res = doc["workloads"][0]
    assert list(res["policies"]) == list(fake_sched.POLICIES)
    assert res["skipped_policies"].keys() >= {"reset+kill", "wait", "priority-streams"}
    assert res["references"]["be_alone_per_s"] > 0
    out = capsys.readouterr().out
    assert out and all(line.startswith("[simulated] ") for line in out.splitlines())


def test_document_validates_table_and_plots(tmp_path, profiles, fake):
    bench = runner.DisbBench(_opts(tmp_path, profiles, sweep_cap=[20.0, 100.0]))
    doc = bench.run()
    path = write_result(tmp_path / "r.json", doc, bench._meta_device, command="test")
    bench.close()
    loaded = json.loads(path.read_text())
    validate_results(loaded)
    assert loaded["simulated"] is True and loaded["git_commit"]
    assert [m["device_queue_cap_us"] for m in loaded["workloads"][0]["cap_sweep"]] == [20, 100]
    table = results_table(loaded)
    assert "SIMULATED" in table and "reset+poll" in table and "ideal overall" in table
    files = plot_results(loaded, tmp_path / "plots", "r")
    assert sorted(f.name for f in files) == ["r_fig10.png", "r_fig11.png", "r_fig13.png",
                                             "r_fig14.png"]  # fmt: skip
    for f in files:
        assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f.stat().st_size > 10_000
    del loaded["workloads"][0]["policies"]["reset"]["preemption"]["p99_us"]
    with pytest.raises(ResultsError, match=r"policies\.reset\.preemption\.p99_us: missing"):
        validate_results(loaded)


def test_overloaded_workload_gets_a_scaled_variant(tmp_path, profiles, fake):
    # D: 5 RT models at 20 req/s; fake service = 100 us x kernels -> make them heavy
    heavy = {m: (200, 100.0) for m in ("vgg19", "resnet152", "densenet201", "inception_v3",
                                       "distilbert")}  # fmt: skip
    from .conftest import write_profiles

    p = write_profiles(tmp_path / "heavy", heavy)  # 20 ms each x 100 req/s = 200% of the GPU
    bench = runner.DisbBench(_opts(tmp_path, p, workloads="D", rt_scale="auto",
                                   policies=["rt-only", "reset+poll"]))  # fmt: skip
    doc = bench.run()
    bench.close()
    names = [r["workload"]["name"] for r in doc["workloads"]]
    assert names[0] == "D" and doc["workloads"][0]["overloaded"]
    assert doc["workloads"][0]["offered_rt_load"] == pytest.approx(2.0)
    assert names[1] == "D@0.25x"  # scaled to 50% RT busy
    assert doc["workloads"][1]["workload"]["base"] == "D"


def test_unknown_and_unsupported_policies(tmp_path, profiles, fake):
    with pytest.raises(UnsupportedError, match="unknown policy 'fastest'"):
        runner.DisbBench(_opts(tmp_path, profiles, policies=["fastest"]))
    b = runner.DisbBench(_opts(tmp_path, profiles, policies=["reset+kill", "reset"]))
    assert b.policies == ["reset"] and "not supported" in b.skipped["reset+kill"]
    b.close()


def test_missing_profile_says_how_to_make_one(tmp_path, fake):
    from reef_rocm.bench.disb.workload import WorkloadError

    (tmp_path / "empty").mkdir()
    b = runner.DisbBench(_opts(tmp_path, tmp_path / "empty"))
    with pytest.raises(
        WorkloadError, match="no timing profile for model 'resnet152'.*reef profile"
    ):
        b.run()
    b.close()


def test_kernel_length_sweep_runs_synthetic_be_models(results_file):
    doc = json.loads(results_file.read_text())
    sweep = doc["workloads"][0]["kernel_length_sweep"]
    assert [(m["be_kernel_us"], m["policy"]) for m in sweep] == [
        (50.0, "reset"), (50.0, "reset+poll"), (400.0, "reset"), (400.0, "reset+poll")]  # fmt: skip
    pkg = doc["config"]["packages"]["synthetic-be-50us"]
    manifest = json.loads((Path(pkg) / "manifest.json").read_text())
    assert len(manifest["variants"]["plain"]["kernels"]) == 400  # 20 ms of 50 us kernels
    assert list(sweep[0]["be"]) == ["synthetic-be-50us"]


def test_kernel_length_sweep_is_sim_only(tmp_path, profiles, fake):
    with pytest.raises(UnsupportedError, match="simulated packages only"):
        runner.DisbBench(_opts(tmp_path, profiles, backend="cuda", sweep_be_kernel_us=[10.0]))


def test_be_alone_reference_is_shared_by_workloads_with_the_same_be_clients(
    tmp_path, profiles, fake
):
    bench = runner.DisbBench(_opts(tmp_path, profiles, workloads="all",
                                   policies=["rt-only", "reset"]))  # fmt: skip
    doc = bench.run()
    bench.close()
    be_only = [a for _, a in fake if all(k.startswith("be-") for k in a)]
    assert len(be_only) == 2  # ResNet-152 (A, B) and the five models (C, D, E)
    by_wl = {r["workload"]["name"]: r["be_alone"]["measured_in"] for r in doc["workloads"]}
    assert by_wl == {"A": "A", "B": "A", "C": "C", "D": "C", "E": "C"}
    assert bench.console.done == bench.console.total == 5 * 2 + 2
