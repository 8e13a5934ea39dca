"""DISB workloads: the built-ins are DISB's published table; custom JSON files parse, and
bad ones are refused with an error naming the field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reef_rocm.bench.disb.workload import BUILTIN, WorkloadError, load_file, parse, resolve

FIVE = ["densenet201", "distilbert", "inception_v3", "resnet152", "vgg19"]


def _summary(name: str) -> tuple[list[tuple[str, str, float | None]], list[str]]:
    w = BUILTIN[name]
    rt = sorted((c.model, c.load.kind, c.load.rate_per_s) for c in w.rt_clients)
    assert all(c.load.kind == "closed" for c in w.be_clients)  # every DISB BE client
    return rt, sorted(c.model for c in w.be_clients)


def test_builtins_are_the_disb_table():
    # DISB's table, written out independently of the module's table
    assert _summary("A") == ([("vgg19", "uniform", 100.0)], ["resnet152"])
    assert _summary("B") == ([("vgg19", "closed", None)], ["resnet152"])
    assert _summary("C") == ([("vgg19", "uniform", 100.0)], FIVE)
    assert _summary("D") == ([(m, "uniform", 20.0) for m in FIVE], FIVE)
    assert _summary("E") == ([(m, "poisson", 20.0) for m in FIVE], FIVE)


def test_resolve_names_all_and_files(tmp_path):
    assert [w.name for w in resolve("all")] == ["A", "B", "C", "D", "E"]
    assert resolve("c")[0].name == "C"
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"clients": [
        {"model": "vgg19", "priority": "rt", "load": {"kind": "poisson", "rate_per_s": 50}},
        {"model": "resnet18", "priority": "be", "load": {"kind": "closed"}}]}))  # fmt: skip
    w = resolve(str(f))[0]
    assert w.name == "mine" and w.source == str(f)
    assert [c.name for c in w.clients] == ["rt-vgg19-0", "be-resnet18-1"]
    with pytest.raises(WorkloadError, match="unknown workload 'F'"):
        resolve("F")


def test_full_custom_file_round_trips(tmp_path):
    trace = tmp_path / "arr.txt"
    trace.write_text("# microseconds\n100\n2500.5\n\n9000\n")
    doc = {
        "name": "trace-wl", "description": "d", "duration_s": 2.5, "warmup_s": 0.5, "seed": 7,
        "clients": [
            {"name": "cam0", "model": "vgg19", "priority": "rt",
             "load": {"kind": "trace", "file": "arr.txt"}},
            {"name": "bg", "model": "resnet152", "priority": "be", "load": {"kind": "closed"}},
            {"name": "u", "model": "distilbert", "priority": "rt",
             "load": {"kind": "uniform", "rate_per_s": 10}},
        ],
    }  # fmt: skip
    f = tmp_path / "wl.json"
    f.write_text(json.dumps(doc))
    w = load_file(f)
    assert (w.name, w.duration_s, w.warmup_s, w.seed) == ("trace-wl", 2.5, 0.5, 7)
    assert w.clients[0].load.trace == str(trace)  # relative to the workload file
    again = w.as_dict()
    assert [c["load"]["kind"] for c in again["clients"]] == ["trace", "closed", "uniform"]


GOOD_RT = {"model": "vgg19", "priority": "rt", "load": {"kind": "uniform", "rate_per_s": 1}}


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ([], "must be a JSON object"),
        ({"clients": []}, ".clients: must be a non-empty list"),
        ({"clients": [GOOD_RT], "duration_s": 0}, ".duration_s: must be > 0"),
        ({"clients": [GOOD_RT], "duration_s": "5"}, ".duration_s: must be a number"),
        ({"clients": [GOOD_RT], "warmup_s": -1}, ".warmup_s: must be >= 0"),
        ({"clients": [GOOD_RT], "seed": 1.5}, ".seed: must be an integer"),
        ({"clients": [GOOD_RT], "durration_s": 5}, ".durration_s: unknown field"),
        ({"clients": [{**GOOD_RT, "priority": "high"}]}, ".clients[0].priority: must be 'rt'"),
        ({"clients": [{**GOOD_RT, "model": ""}]}, ".clients[0].model: must be a model name"),
        ({"clients": [GOOD_RT, {**GOOD_RT, "load": {"kind": "burst"}}]},
         ".clients[1].load.kind: must be one of"),
        ({"clients": [{**GOOD_RT, "load": {"kind": "poisson"}}]},
         ".clients[0].load.rate_per_s: required"),
        ({"clients": [{**GOOD_RT, "load": {"kind": "uniform", "rate_per_s": -3}}]},
         ".clients[0].load.rate_per_s: must be > 0"),
        ({"clients": [{**GOOD_RT, "load": {"kind": "closed", "rate_per_s": 3}}]},
         ".clients[0].load.rate_per_s: unknown field"),
        ({"clients": [{**GOOD_RT, "load": {"kind": "trace"}}]}, ".clients[0].load.file: required"),
        ({"clients": [{**GOOD_RT, "load": {"kind": "trace", "file": "nope.txt"}}]},
         ".clients[0].load.file: cannot read trace"),
        ({"clients": [{**GOOD_RT, "name": "x"}, {**GOOD_RT, "name": "x"}]},
         ".clients[1].name: duplicate client name"),
        ({"clients": [{**GOOD_RT, "priority": "be"}]}, ".clients: needs at least one client"),
    ],
)  # fmt: skip
def test_bad_files_name_the_field(tmp_path, doc, field):
    f = tmp_path / "bad.json"
    f.write_text(json.dumps(doc))
    with pytest.raises(WorkloadError) as e:
        load_file(f)
    assert str(e.value).startswith(str(f)) and field in str(e.value)


@pytest.mark.parametrize(
    ("text", "msg"),
    [("100\nabc\n", "line 2 is not a number"), ("5\n3\n", "line 2: time goes backwards"),
     ("-1\n", "line 1: negative time"), ("# nothing\n", "no arrival times"),
     ('{"arrivals_us": [1, "x"]}', "entry 1 is not a number"), ("[1, 0]", "entry 1: time goes")],
)  # fmt: skip
def test_bad_traces_say_where(tmp_path, text, msg):
    (tmp_path / "t.txt").write_text(text)
    doc = {"clients": [{**GOOD_RT, "load": {"kind": "trace", "file": "t.txt"}}]}
    with pytest.raises(WorkloadError, match=msg):
        parse(doc, source=str(tmp_path / "wl.json"), base_dir=tmp_path)


def test_not_json_is_refused(tmp_path):
    f = tmp_path / "x.json"
    f.write_text("{nope")
    with pytest.raises(WorkloadError, match="not JSON"):
        load_file(f)
    with pytest.raises(WorkloadError, match="cannot read"):
        load_file(Path(tmp_path / "missing.json"))


def test_rt_scale_changes_only_open_loop_rt_rates():
    d = BUILTIN["D"].with_rt_scale(0.5)
    assert d.name == "D@0.5x" and d.base == "D" and d.rt_scale == 0.5
    assert d.description.endswith("[RT rates x0.5]")
    assert {c.load.rate_per_s for c in d.rt_clients} == {10.0}
    assert all(c.load.kind == "closed" for c in d.be_clients)
    assert d.with_rt_scale(0.5).name == "D@0.25x"
    b = BUILTIN["B"].with_rt_scale(0.5)
    assert b.rt_clients[0].load.kind == "closed"
    with pytest.raises(WorkloadError, match="rt scale"):
        BUILTIN["A"].with_rt_scale(0)
