"""``reef compile`` with a tuning database: tiny_cnn with one fake record (a real
MetaSchedule draw for its smallest kernel, written through TuneDatabase the way `reef tune
import` writes it), against the same compile with ``--untuned``."""

from __future__ import annotations

import functools
import json

import pytest

pytest.importorskip("tvm")

from reef_rocm.compiler.build import plan_manifest  # noqa: E402
from reef_rocm.compiler.tune.apply import resolve_tuning, shipped_db_dir  # noqa: E402
from reef_rocm.compiler.tune.database import RECORD_FILE, WORKLOAD_FILE  # noqa: E402
from reef_rocm.errors import PackageError  # noqa: E402

TARGET = "cuda:sm_90"


@functools.lru_cache(maxsize=1)
def _record():
    """(task, candidate): one valid schedule of tiny_cnn's smallest tunable kernel."""
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.space import DesignSpace
    from reef_rocm.compiler.tune.tasks import extract_tasks

    spec = parse_target(TARGET)
    task = min(extract_tasks(["tiny_cnn"], spec.name), key=lambda t: len(t.mod.script()))
    (cand,) = list(DesignSpace(task.mod, spec, seed=3).draw(attempts=2000))[:1]
    return task, cand


@pytest.fixture
def fake_db(tmp_path):
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.database import TuneDatabase
    from reef_rocm.compiler.tune.space import ms_target, to_plain

    task, cand = _record()
    db = TuneDatabase(tmp_path / "db")
    db.workloads.append([task.workload_hash, {"tvmscript": task.mod.script()}])
    args = [["TENSOR", str(p.dtype), [int(s) for s in p.shape]] for p in task.mod["main"].params]
    target = to_plain(ms_target(parse_target(TARGET)).export())
    db.records.append([0, [cand.trace_json, [1e-6], target, args]])  # 1 us: beats the default
    db.measured[task.workload_hash] = {"name": task.name, "default_us": 50.0, "candidates": {}}
    db.save()
    return db.path


def _plans(tuning_db):
    import tvm

    from reef_rocm.compiler.frontends import load_model
    from reef_rocm.compiler.graph import build_plan
    from reef_rocm.compiler.targets import parse_target

    spec = parse_target(TARGET)
    target = tvm.target.Target(spec.tvm_target_dict())
    src = load_model("tiny_cnn")
    names = [p.name for p in src.params]
    tuning = resolve_tuning(TARGET, tuning_db, False)
    tuned = build_plan(src.mod, target, len(src.inputs), names, tuning)
    plain = build_plan(src.mod, target, len(src.inputs), names, None)
    return tuned, plain


@pytest.mark.slow
def test_tuned_plan_differs_only_in_the_tuned_kernel(fake_db):
    import tvm_ffi

    task, cand = _record()
    tuned, plain = _plans(fake_db)
    assert tuned.extra["tuned"] == [task.name]
    assert [c.func for c in tuned.calls] == [c.func for c in plain.calls]  # same graph
    for gv, f in tuned.kernels_mod.functions.items():
        base = plain.kernels_mod[gv.name_hint]
        same = tvm_ffi.structural_equal(f.body, base.body)
        if gv.name_hint == task.name:  # the record's loops, not dlight's
            assert not same
            assert tvm_ffi.structural_equal(f.body, cand.mod["main"].body)
        else:
            assert same, gv.name_hint

    # the manifest says how it was built; the preemptible variant comes from the tuned kernel
    m = plan_manifest("tiny_cnn", TARGET, "plain,preemptible", tuning_db=fake_db)
    u = plan_manifest("tiny_cnn", TARGET, "plain,preemptible", untuned=True)
    assert m.model["tuning"]["tuned_kernels"] == [task.name]
    assert m.model["tuning"]["database"] == str(fake_db)
    assert len(m.model["tuning"]["digest"]) == 64
    assert u.model["tuning"] == {"database": None, "tuned_kernels": []}
    for v in ("plain", "preemptible"):
        launch = {k.func: (k.grid, k.block) for k in m.variant(v).kernels}
        base = {k.func: (k.grid, k.block) for k in u.variant(v).kernels}
        assert set(launch) == set(base)
        diff = {f for f in launch if launch[f] != base[f]}
        assert diff <= {task.name}, v
    assert all(k.preempt is not None for k in m.variant("preemptible").kernels)


def test_untuned_ignores_the_shipped_database():
    assert (shipped_db_dir(TARGET) / WORKLOAD_FILE).is_file()
    t = resolve_tuning(TARGET, None, False)
    assert t is not None and t.describe()["database"] == "shipped:cuda_sm_90"
    assert resolve_tuning(TARGET, None, True) is None
    assert resolve_tuning("rocm:gfx90a", None, False) is None  # AMD: nothing shipped


def test_shipped_database_loads_into_tvm():
    """Every shipped record parses in TVM (TuningRecord.from_json, TVMScript workloads) and
    the records applied are those that beat dlight (71 workloads after rounds 1-9)."""
    t = resolve_tuning(TARGET, None, False)
    tvm_db = t.db.to_tvm()
    assert len(tvm_db.get_all_tuning_records()) == 71


def test_bad_tuning_database_is_a_clear_error(tmp_path, fake_db):
    with pytest.raises(PackageError, match="no such directory"):
        resolve_tuning(TARGET, tmp_path / "nope", False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(PackageError, match="not a tuning database"):
        resolve_tuning(TARGET, tmp_path / "empty", False)
    rec = (fake_db / RECORD_FILE).read_text()
    (fake_db / RECORD_FILE).write_text("{not json\n")
    with pytest.raises(PackageError, match="corrupt JSON"):
        resolve_tuning(TARGET, fake_db, False)
    (fake_db / RECORD_FILE).write_text(rec)
    # a workload of the model whose TVMScript TVM cannot parse
    (h, _), *_ = [json.loads(x) for x in (fake_db / WORKLOAD_FILE).read_text().splitlines()]
    (fake_db / WORKLOAD_FILE).write_text(json.dumps([h, {"tvmscript": "not tvmscript"}]) + "\n")
    with pytest.raises(PackageError, match="unusable record"):
        plan_manifest("tiny_cnn", TARGET, "plain", tuning_db=fake_db)
    with pytest.raises(PackageError, match="contradict"):
        resolve_tuning(TARGET, fake_db, True)


@pytest.mark.slow
def test_shipped_records_build_in_every_variant():
    """What reef compile applies from the shipped database survives the preemptible and DKP
    transforms and codegen (compat.drop_unbuildable removed the records that did not)."""
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.compat import scheduled_func, variant_failures

    spec = parse_target(TARGET)
    db = resolve_tuning(TARGET, None, False).db
    applied = 0
    for h, payload in db.workloads:
        best = db.best(h)
        if best is None or best[0] * 1e6 >= db.default_us(h):
            continue
        applied += 1
        assert variant_failures(scheduled_func(payload["tvmscript"], best[1]), spec) == {}, h
    assert applied == 71
