"""tools/preempt_storm.py runs on the sim and writes its result."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

TOOL = Path(__file__).resolve().parents[2] / "tools" / "preempt_storm.py"


def test_storm_on_sim(tmp_path):
    spec = importlib.util.spec_from_file_location("preempt_storm", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    out = tmp_path / "storm.json"
    rc = mod.main(["--backend", "sim", "--preemptions", "8", "--chunk-s", "0.02",
                   "--sim-cus", "8", "--out", str(out)])  # fmt: skip
    doc = json.loads(out.read_text())
    assert rc == 0 and doc["ok"] and doc["simulated"] is True
    c = doc["counts"]
    assert c["preemptions"] >= 8 and c["mismatches"] == 0 and c["unchecked"] == 0
    assert c["be_correct"] == c["be_requests"] > 0 and c["be_preempted_requests"] > 0
    assert doc["preemption_latency_us"]["p99"] is not None and doc["git_commit"]
