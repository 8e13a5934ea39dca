"""`reef bench disb` end to end on the simulated GPU with the real scheduler: one workload,
every policy the sim device supports, the results JSON in the documented shape with numbers
for every policy, the table and the figures."""

from __future__ import annotations

import json

import pytest

from reef_rocm import cli
from reef_rocm.bench.disb.schema import validate_results

try:
    import reef_rocm.sched  # noqa: F401
    from reef_rocm.sched.policy import available_policies
except ImportError as e:  # the scheduler lands on its own branch
    pytest.skip(f"reef_rocm.sched is not importable here ({e}); merge the scheduler first",
                allow_module_level=True)  # fmt: skip


def test_workload_a_every_policy_on_sim(tmp_path, profiles, capsys):
    out = tmp_path / "out"
    rc = cli.main(["bench", "disb", "A", "--backend", "sim", "--profiles", str(profiles),
                   "--duration", "0.1", "--warmup", "0.02", "--out", str(out),
                   "--no-progress-bar"])  # fmt: skip
    assert rc == 0
    text = capsys.readouterr().out
    assert text and all(line.startswith("[simulated] ") for line in text.splitlines())
    doc = json.loads((out / "disb_A_sim_sm_90.json").read_text())
    validate_results(doc)
    assert doc["simulated"] is True and doc["card"].endswith("(simulated)")
    from reef_rocm.gpu import open_device

    with open_device("sim", arch="sm_90") as dev:
        expected = available_policies(dev.capabilities)
    res = doc["workloads"][0]
    assert sorted(res["policies"]) == sorted(expected)
    for name, m in res["policies"].items():
        rt = m["rt"]["vgg19"]
        assert rt["count"] >= 8 and rt["p99_us"] > 0, name  # 100 req/s for 0.1 s
        assert m["overall_throughput_per_s"] > 0, name
        if name != "rt-only":
            assert m["be"]["resnet152"]["throughput_per_s"] > 0, name
            assert m["compare"]["overall_vs_rt_only"] > 1, name
    for name in ("reset", "reset+poll"):
        assert res["policies"][name]["preemption"]["count"] > 0
    assert res["references"]["ideal_overall_per_s"] > res["references"]["rt_rate_per_s"]
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert pngs == [f"disb_A_sim_sm_90_fig{n}.png" for n in (10, 11, 13)]
