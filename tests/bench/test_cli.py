"""`reef bench` as a group: models (unchanged), disb, plot, compare."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reef_rocm import cli


def reef(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reef_rocm.cli", *args], capture_output=True,
                          text=True)  # fmt: skip


def test_bench_is_a_group():
    out = reef("bench")
    assert out.returncode == 2
    for name in ("models", "disb", "plot", "compare"):
        assert name in out.stdout
    assert "--sweep-cap" in reef("bench", "disb", "--help").stdout


def test_bench_models_passes_its_arguments_through(monkeypatch):
    import reef_rocm.runtime.bench as rb

    seen = []
    monkeypatch.setattr(rb, "main", lambda argv: seen.append(argv) or 0)
    assert cli.main(["bench", "models", "--packages", "P", "--out", "o.json"]) == 0
    assert seen == [["--packages", "P", "--out", "o.json"]]


def test_plot_redraws_and_prints_the_table(results_file, tmp_path, capsys):
    assert cli.main(["bench", "plot", str(results_file), "--out", str(tmp_path / "p")]) == 0
    out = capsys.readouterr().out
    assert all(line.startswith("[simulated] ") for line in out.splitlines())
    assert "reset+poll" in out
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == [
        "r_fig10.png", "r_fig11.png", "r_fig12.png", "r_fig13.png", "r_fig14.png"]  # fmt: skip


def test_compare_same_run_is_stable_changed_run_is_not(results_file, tmp_path, capsys):
    assert cli.main(["bench", "compare", str(results_file), str(results_file)]) == 0
    assert "0 differ by more than 5%: stable" in capsys.readouterr().out
    doc = json.loads(results_file.read_text())
    rt = doc["workloads"][0]["policies"]["reset"]["rt"]["vgg19"]
    rt["p99_us"] *= 1.06
    other = tmp_path / "other.json"
    other.write_text(json.dumps(doc))
    assert cli.main(["bench", "compare", str(results_file), str(other)]) == 1
    out = capsys.readouterr().out
    assert "1 differ by more than 5%" in out and "RT p99" in out


@pytest.mark.parametrize("text", ["{nope", '{"benchmark": "models"}'])
def test_plot_refuses_what_is_not_a_disb_result(tmp_path, capsys, text):
    f = tmp_path / "x.json"
    f.write_text(text)
    assert cli.main(["bench", "plot", str(f)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(f) in err


def test_disb_bad_workload_is_one_line_error(capsys):
    assert cli.main(["bench", "disb", "Q", "--backend", "sim"]) == 1
    assert "unknown workload 'Q'" in capsys.readouterr().err
