"""reef tune on the CPU: export a tiny task, measure it on a fake GPU (tests/tune/fake_gpu.py),
import the timings and read them back through TVM; bundle schema and bad input."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import dense_reference
from fake_gpu import FakeDevice

from reef_rocm.compiler.tune.bundle import INDEX_FILE, load_bundle, validate_index
from reef_rocm.compiler.tune.database import TuneDatabase
from reef_rocm.compiler.tune.measure import MeasureOptions, measure_bundle
from reef_rocm.errors import PackageError

ROOT = Path(__file__).resolve().parents[2]


def _fake(bundle, wrong=(), missing=(), us=None):
    task = bundle.tasks[0]
    return FakeDevice(task.params, dense_reference, us or {}, set(wrong), set(missing))


def _kernel(task, cid):
    return next(c for c in task.candidates if c["id"] == cid)["kernels"][0]["name"]


def test_bundle_index(tiny_bundle):
    path, task = tiny_bundle
    b = load_bundle(path)
    assert b.index["target"] == "cuda:sm_90" and b.index["backend"] == "cuda"
    (t,) = b.tasks
    assert t.workload_hash == task.workload_hash and t.name == task.name
    assert [p["shape"] for p in t.params] == [[16, 32], [24, 32], [24], [16, 24]]
    assert t.outputs == [3] and t.params[3]["nbytes"] == 16 * 24 * 4
    assert t.candidates[0]["kind"] == "default" and len(t.candidates) >= 2
    assert len({c["key"] for c in t.candidates}) == len(t.candidates)
    image = b.binary(t)
    for c in t.candidates:  # every kernel the index names is in the code object
        for k in c["kernels"]:
            assert k["name"].encode() in image
            assert k["block"][0] * k["block"][1] * k["block"][2] <= 1024
            assert {a["param"] for a in k["args"]} == {0, 1, 2, 3}
    detail = json.loads((path / t.raw["detail"]).read_text())
    assert [c["id"] for c in detail["candidates"]] == [c["id"] for c in t.candidates]


@pytest.mark.parametrize(
    "break_it, message",
    [
        (lambda d: d.pop("tasks"), "missing field 'tasks'"),
        (lambda d: d.update(format="x"), "format"),
        (
            lambda d: d["tasks"][0]["candidates"].append(dict(d["tasks"][0]["candidates"][1])),
            "duplicate candidate id",
        ),
        (
            lambda d: d["tasks"][0]["candidates"][0]["kernels"][0]["args"].append({"param": 9}),
            "no parameter 9",
        ),
        (lambda d: d["tasks"][0]["candidates"][0].update(kind="ms"), "default schedule"),
        (lambda d: d["tasks"][0]["params"][0].update(dtype="complex64"), "not supported"),
        (
            lambda d: d["tasks"][0]["candidates"][0]["kernels"][0].update(grid=[0, 1, 1]),
            "three positive ints",
        ),
    ],
)
def test_bundle_schema_errors(tiny_bundle, break_it, message):
    index = json.loads((tiny_bundle[0] / INDEX_FILE).read_text())
    bad = copy.deepcopy(index)
    break_it(bad)
    with pytest.raises(PackageError, match=message):
        validate_index(bad)


def test_bundle_file_errors(tiny_bundle, tmp_path):
    with pytest.raises(PackageError, match="no such bundle"):
        load_bundle(tmp_path / "nope")
    with pytest.raises(PackageError, match="not a tuning bundle"):
        load_bundle(tmp_path)
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle[0], b)
    (b / "t0.cubin.gz").unlink()
    with pytest.raises(PackageError, match="binary t0.cubin.gz is missing"):
        load_bundle(b)
    (b / INDEX_FILE).write_text("{not json")
    with pytest.raises(PackageError, match="corrupt JSON"):
        load_bundle(b)


def test_in_place_round_trip(tiny_bundle, tmp_path):
    """export -> measure (fake GPU) -> import -> TVM reads the best record back; a resumed
    export skips what was measured."""
    import tvm_ffi

    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.export import export_bundle
    from reef_rocm.compiler.tune.space import ms_target

    path, task = tiny_bundle
    b = load_bundle(path)
    t = b.tasks[0]
    ms_ids = [c["id"] for c in t.candidates if c["kind"] == "ms"]
    fast, wrong = ms_ids[0], ms_ids[-1]
    us = {_kernel(t, 0): 50.0, _kernel(t, fast): 20.0}
    dev = _fake(b, wrong={_kernel(t, wrong)}, us=us)
    doc = measure_bundle(b, dev, MeasureOptions(repeats=5), progress=False)
    rows = {r["candidate"]: r for r in doc["results"]}
    assert rows[0]["valid"] and rows[0]["us_median"] == pytest.approx(50.0)
    assert rows[fast]["valid"] and rows[fast]["us_median"] == pytest.approx(20.0)
    assert not rows[wrong]["valid"] and "differs" in rows[wrong]["error"]
    # a candidate 10x slower than the default in its checked run is not timed further
    slow = ms_ids[1]
    doc2 = measure_bundle(
        b, _fake(b, us={_kernel(t, 0): 5.0, _kernel(t, slow): 80.0}), progress=False
    )
    row = next(r for r in doc2["results"] if r["candidate"] == slow)
    assert not row["valid"] and "too slow" in row["error"]

    db = TuneDatabase(tmp_path / "db")
    added = db.import_timings(doc, path)
    assert added["records"] == len(ms_ids) - 1 and added["workloads"] == 1
    assert TuneDatabase(tmp_path / "db").import_timings(doc, path)["records"] == 0  # idempotent
    # a workload withheld (its records computed wrong outputs on a GPU) gets timings, no records
    held = TuneDatabase(tmp_path / "held")
    held.measured[task.workload_hash] = {"name": t.name, "candidates": {}, "withheld": "test"}
    got = held.import_timings(doc, path)
    assert got["records"] == 0 and got["measured"] == len(ms_ids)
    assert held.best(task.workload_hash) is None
    db = TuneDatabase(tmp_path / "db")  # from disk
    assert db.default_us(task.workload_hash) == pytest.approx(50.0)
    secs, trace = db.best(task.workload_hash)
    assert secs == pytest.approx(20e-6)
    lines = (tmp_path / "db" / "database_tuning_record.json").read_text().splitlines()
    assert len(lines) == len(ms_ids) - 1 and json.loads(lines[0])[0] == 0

    # TVM's own database, from our files: the schedule it replays is the fast candidate's
    tdb = db.to_tvm()
    spec = parse_target("cuda:sm_90")
    sch = tdb.query_schedule(task.mod, ms_target(spec), "main")
    assert sch is not None
    from tvm.s_tir.schedule import Schedule, Trace

    detail = json.loads((path / t.raw["detail"]).read_text())
    ref = Schedule(task.mod)
    Trace.apply_json_to_schedule(
        next(c["trace"] for c in detail["candidates"] if c["id"] == fast), ref
    )
    assert tvm_ffi.structural_equal(sch.mod, ref.mod)

    # the tuned PrimFunc still takes the preemption transform and builds
    import tvm

    from reef_rocm.compiler import transform
    from reef_rocm.compiler.codegen import codegen, compile_cuda
    from reef_rocm.compiler.kernels import PREEMPT_FLAG, lower_kernels

    transform.register_lowerings()
    pre = transform.preemptible_pass(16)(tvm.IRModule({"tuned": sch.mod["main"]}))
    assert PREEMPT_FLAG in [p.name for p in pre["tuned"].params]
    target = tvm.target.Target(spec.tvm_target_dict())
    build = lower_kernels(pre, target)
    co = codegen(build.device_mod, build.target, spec.arch, nvcc=False)
    assert compile_cuda(co.source, spec.arch)

    # resume: a second export draws no candidate the database has measured
    out2 = tmp_path / "round2"
    parents = db.parents_map()
    assert parents[task.workload_hash][0] == next(
        c["trace"] for c in detail["candidates"] if c["id"] == fast
    )
    export_bundle([task], spec, out2, trials=3, seed=1, skip=db.skip_map(), parents=parents,
                  progress=False)  # fmt: skip
    b2 = load_bundle(out2)
    assert b2.index["strategy"] == "evolve"
    keys2 = {c["key"] for c in b2.tasks[0].candidates if c["kind"] == "ms"}
    assert keys2 and not keys2 & db.measured_keys(task.workload_hash)
    # children keep most of a parent's decisions: some round-2 trace shares all but <= 2
    parent_decisions = [dict(map(tuple, [(i, json.dumps(d)) for i, d in p[1]]))
                        for p in parents[task.workload_hash]]  # fmt: skip
    detail2 = json.loads((out2 / "tasks" / "t0.json").read_text())
    kids = [dict((i, json.dumps(d)) for i, d in c["trace"][1])
            for c in detail2["candidates"] if c["trace"]]  # fmt: skip
    assert any(
        sum(k.get(i) != d for i, d in p.items()) <= 2 for k in kids for p in parent_decisions
    )


def test_measure_marks_missing_kernels(tiny_bundle):
    b = load_bundle(tiny_bundle[0])
    t = b.tasks[0]
    gone = t.candidates[1]["id"]
    doc = measure_bundle(b, _fake(b, missing={_kernel(t, gone)}), progress=False)
    row = next(r for r in doc["results"] if r["candidate"] == gone)
    assert not row["valid"] and "not found" in row["error"]
    # without a valid default nothing can be checked
    doc = measure_bundle(b, _fake(b, missing={_kernel(t, 0)}), progress=False)
    assert not any(r["valid"] for r in doc["results"])
    assert "no reference" in doc["results"][1]["error"]


def test_import_errors(tiny_bundle, tmp_path):
    b = load_bundle(tiny_bundle[0])
    doc = measure_bundle(b, _fake(b), progress=False)
    db = TuneDatabase(tmp_path / "db")
    bad = copy.deepcopy(doc)
    bad["results"][1]["candidate"] = 999
    with pytest.raises(PackageError, match="candidate 999 of task 0 is not in"):
        db.import_timings(bad, tiny_bundle[0])
    bad = copy.deepcopy(doc)
    bad["results"][0]["task"] = 7
    with pytest.raises(PackageError, match="task 7 is not in"):
        db.import_timings(bad, tiny_bundle[0])
    assert not (tmp_path / "db").exists()  # nothing written on a refused import
    p = tmp_path / "t.json"
    p.write_text('{"format": "reef-tune-timings", "results": [')
    with pytest.raises(PackageError, match="corrupt JSON"):
        db.import_timings(p, tiny_bundle[0])
    with pytest.raises(PackageError, match="no such timings file"):
        db.import_timings(tmp_path / "missing.json", tiny_bundle[0])
    (tmp_path / "db").mkdir()
    (tmp_path / "db" / "database_tuning_record.json").write_text("[0, [\n")
    with pytest.raises(PackageError, match="corrupt JSON"):
        TuneDatabase(tmp_path / "db")


BLOCK_TVM = """
import sys
class _NoTVM:
    def find_spec(self, name, path=None, target=None):
        if name == "tvm" or name.startswith(("tvm.", "tvm_ffi")):
            raise ImportError("TVM imported on the measurement path: " + name)
sys.meta_path.insert(0, _NoTVM())
from reef_rocm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_measure_cli_imports_no_tvm(tiny_bundle, tmp_path):
    """The GPU host has no TVM: ``reef tune measure`` must not import it (run here on the sim
    backend, which cannot load cubins: every candidate is then invalid, but the run
    completes and writes its result)."""
    out = tmp_path / "timings.json"
    r = subprocess.run(
        [
            sys.executable,
            "-c",
            BLOCK_TVM,
            "tune",
            "measure",
            str(tiny_bundle[0]),
            "--out",
            str(out),
            "--backend",
            "sim",
            "--quiet",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads(out.read_text())
    assert doc["format"] == "reef-tune-timings" and doc["git_commit"] and doc["card"]
    assert doc["results"] and all("module load failed" in x["error"] for x in doc["results"])


def test_cli_errors(tmp_path):
    from reef_rocm.cli import main

    assert main(["tune", "measure", str(tmp_path / "nope"), "--out", str(tmp_path / "x")]) == 1
    assert main(["tune", "import", str(tmp_path / "nope.json"), "--db", str(tmp_path)]) == 1
    assert main(["tune", "no_such_model", "--export-only"]) == 1


def test_tasks_filter(tmp_path, capsys):
    """--tasks keeps only the named kernels; a name that is not a tunable kernel of the
    model is an error naming it and listing the ones there are (nothing is written)."""
    from reef_rocm.cli import main

    bundle = tmp_path / "b"
    argv = ["tune", "tiny_cnn", "--export-only", "--bundle", str(bundle), "--db", str(tmp_path)]
    assert main([*argv, "--tasks", "fused_conv2d_nope"]) == 1
    err = capsys.readouterr().err
    assert "fused_conv2d_nope" in err and "fused_conv2d" in err.split("(")[-1]
    assert not bundle.exists()
    assert main([*argv, "--trials", "0", "--tasks", "fused_NT_matmul_add2"]) == 0
    index = json.loads((bundle / "index.json").read_text())
    assert [t["name"] for t in index["tasks"]] == ["fused_NT_matmul_add2"]


def test_cli_import_and_show(tiny_bundle, tmp_path, capsys):
    from reef_rocm.cli import main

    b = load_bundle(tiny_bundle[0])
    p = tmp_path / "timings.json"
    p.write_text(json.dumps(measure_bundle(b, _fake(b), progress=False)))
    db = tmp_path / "db"
    assert main(["tune", "import", str(p), "--bundle", str(tiny_bundle[0]), "--db", str(db)]) == 0
    assert (db / "database_tuning_record.json").is_file()
    capsys.readouterr()
    assert main(["tune", "show", "--db", str(db), "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "fused_NT_matmul_add" and row["default_us"] == pytest.approx(40.0)
    assert row["valid"] == row["measured"] == len(b.tasks[0].candidates) - 1


def test_forget_unbuildable(tiny_bundle, tmp_path, capsys):
    """`reef tune forget --unbuildable` drops exactly the candidates compat.py refused (of
    the named kernels), so a resumed export may draw them again; the others stay skipped."""
    from reef_rocm.cli import main
    from reef_rocm.compiler.tune.compat import UNBUILDABLE

    path, task = tiny_bundle
    b = load_bundle(path)
    db_dir = tmp_path / "db"
    db = TuneDatabase(db_dir)
    db.import_timings(measure_bundle(b, _fake(b), progress=False), path)
    cands = db.measured[task.workload_hash]["candidates"]
    refused, kept = sorted(cands)[:2]
    cands[refused].update(valid=False, error=f"{UNBUILDABLE}: preemptible: some reason")
    cands[kept].update(valid=False, error="output differs from the default schedule's")
    db.save()
    assert main(["tune", "forget", "--unbuildable", "--db", str(db_dir), "--tasks", "other"]) == 0
    assert "forgot 0 " in capsys.readouterr().out
    assert refused in TuneDatabase(db_dir).measured_keys(task.workload_hash)
    assert main(["tune", "forget", "--unbuildable", "--db", str(db_dir)]) == 0
    assert "forgot 1 " in capsys.readouterr().out
    left = TuneDatabase(db_dir).measured_keys(task.workload_hash)
    assert refused not in left and kept in left and len(left) == len(cands) - 1
    with pytest.raises(SystemExit):  # argparse: say what to forget
        main(["tune", "forget", "--db", str(db_dir)])
    assert "--unbuildable" in capsys.readouterr().err


@pytest.mark.slow
def test_apply_database_to_a_model():
    """A record for one of tiny_cnn's kernels replaces dlight's schedule of that kernel in
    the compiler's Relax pipeline (apply.py); the other kernels keep dlight."""
    import tvm
    import tvm.s_tir.meta_schedule as ms
    import tvm_ffi

    from reef_rocm.compiler.frontends import load_model
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.apply import apply_database
    from reef_rocm.compiler.tune.space import DesignSpace, ms_target
    from reef_rocm.compiler.tune.tasks import extract_tasks

    spec = parse_target("cuda:sm_90")
    tasks = extract_tasks(["tiny_cnn"], spec.name)
    task = min(tasks, key=lambda t: len(t.mod.script()))
    (cand,) = list(DesignSpace(task.mod, spec, seed=3).draw(attempts=2000))[:1]
    db = ms.database.MemoryDatabase()
    wl = db.commit_workload(task.mod)
    args = [ms.arg_info.TensorInfo(str(p.dtype), [int(s) for s in p.shape])
            for p in task.mod["main"].params]  # fmt: skip
    db.commit_tuning_record(
        ms.database.TuningRecord(_trace(cand, task), wl, [1e-6], ms_target(spec), args)  # fmt: skip
    )
    target = tvm.target.Target(spec.tvm_target_dict())
    lowered = apply_database(load_model("tiny_cnn").mod, target, db)
    # the same loops and blocks as the record (ApplyDatabase adds its own attributes)
    assert tvm_ffi.structural_equal(lowered[task.name].body, cand.mod["main"].body)
    from reef_rocm.compiler.tune.space import default_schedule

    dlight = default_schedule(tvm.IRModule({"main": task.mod["main"]}), target)
    assert not tvm_ffi.structural_equal(dlight["main"].body, cand.mod["main"].body)
    others = [t.name for t in tasks if t.name != task.name]
    assert others
    for name in others:  # scheduled by dlight, as without a database
        assert "tirx.is_scheduled" in lowered[name].attrs


def _trace(cand, task):
    from tvm.s_tir.schedule import Schedule, Trace

    sch = Schedule(task.mod)
    Trace.apply_json_to_schedule(cand.trace_json, sch)
    return sch.trace


def test_schedule_seeds_stay_in_tvms_range():
    """Round r seeds draws with 1000 * r + task: from round 3 on, seed * 1000003 left the
    range TVM's Schedule takes and the export died (ValueError)."""
    from reef_rocm.compiler.tune.space import _schedule_seed

    for seed in (0, 2011, 3000, 4151, 10**6):
        for i in (0, 1, 10**5):
            assert 1 <= _schedule_seed(seed, i) <= 2**31 - 1
    assert _schedule_seed(2011, 5) == 2011 * 1_000_003 + 5 + 1  # rounds 1-2 unchanged
