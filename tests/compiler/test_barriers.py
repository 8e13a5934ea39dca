"""The barrier checker (reef_rocm/compiler/transform/barriers.py) and the preemptible
rewrite's barriers on a MetaSchedule schedule that once raced.

The race: ResNet-18's ``fused_conv2d6_add5_relu3`` record (shipped database, round 2) fills
two shared tiles, then reduces over them in a loop the preemptible rewrite polls. ThreadSync
counted the poll's barriers (in a 0-or-1-trip loop, skipped for chunk 0) as always run and
left out the barrier between the tiles' stores and the reduction: on the H200 the
preemptible ResNet-18/152 computed wrong outputs with the flag never raised. The negative
control rebuilds that old form and the checker must find the race there."""

from __future__ import annotations

import functools

import pytest

pytest.importorskip("tvm")

from tvm import tirx  # noqa: E402

from reef_rocm.compiler.transform import barriers  # noqa: E402
from reef_rocm.compiler.transform.tir import _I32, _seq, _sync, _uniform_if  # noqa: E402

RACED = "fused_conv2d6_add5_relu3"  # ResNet-18's workload; ResNet-152's fused_conv2d16


def _shared(name: str) -> tirx.Buffer:
    return tirx.decl_buffer((4,), "float32", name=name, scope="shared")


def _func(body: tirx.Stmt) -> tirx.PrimFunc:
    return tirx.PrimFunc([], body)


def _store(buf: tirx.Buffer, value) -> tirx.Stmt:
    return tirx.BufferStore(buf, value, [0])


def test_checker_sees_raw_and_war_and_barriers():
    a, out = _shared("a"), tirx.decl_buffer((4,), "float32", name="out")
    one = tirx.FloatImm("float32", 1.0)
    raw = _seq([_store(a, one), _store(out, a[0])])
    assert barriers.shared_hazards(_func(raw)) == {("RAW", "a")}
    synced = _seq([_store(a, one), _sync(), _store(out, a[0])])
    assert barriers.shared_hazards(_func(synced)) == set()
    war = _seq([_store(out, a[0]), _store(a, one)])
    assert barriers.shared_hazards(_func(war)) == {("WAR", "a")}
    # loop-carried: trip 2 loads what trip 1 stored after its barrier
    i = tirx.Var("i", _I32)
    body = _seq([_store(out, a[0]), _sync(), _store(a, one)])
    loop = tirx.For(i, 0, 4, tirx.ForKind.SERIAL, body)
    assert barriers.shared_hazards(_func(loop)) == {("RAW", "a")}
    once = tirx.For(i, 0, 1, tirx.ForKind.SERIAL, body)
    assert barriers.shared_hazards(_func(once)) == set()


def test_barrier_in_a_loop_that_does_not_run_is_no_barrier():
    """What ThreadSync gets wrong: a barrier under ``for g in range(cond ? 1 : 0)``."""
    a, out = _shared("a"), tirx.decl_buffer((4,), "float32", name="out")
    chunk = tirx.Var("reef_chunk", _I32)
    body = _seq([_uniform_if(chunk != 0, _sync()), _store(out, a[0])])
    polled = tirx.For(chunk, 0, 3, tirx.ForKind.SERIAL, body)
    func = _func(_seq([_store(a, tirx.FloatImm("float32", 1.0)), polled]))
    assert barriers.shared_hazards(func) == {("RAW", "a")}  # chunk 0 skips the barrier
    func = _func(_seq([_store(a, tirx.FloatImm("float32", 1.0)), _sync(), polled]))
    assert barriers.shared_hazards(func) == set()
    # the running path: reef_stop* are 0, so a guard on them runs
    stop = tirx.Var("reef_stop", _I32)
    guarded = _seq([tirx.Bind(stop, tirx.IntImm(_I32, 7)), _uniform_if(stop == 0, _sync())])
    func = _func(_seq([_store(a, tirx.FloatImm("float32", 1.0)), guarded, _store(out, a[0])]))
    assert barriers.shared_hazards(func) == set()


@functools.lru_cache(maxsize=1)
def _raced_record():
    from reef_rocm.compiler.tune.apply import shipped_db_dir
    from reef_rocm.compiler.tune.compat import scheduled_func
    from reef_rocm.compiler.tune.database import TuneDatabase, _mean

    db = TuneDatabase(shipped_db_dir("cuda:sm_90"))
    for wi, (h, payload) in enumerate(db.workloads):
        if db.measured.get(h, {}).get("name") == RACED:
            rec = min((r for r in db.records if r[0] == wi), key=lambda r: _mean(r[1][1]))
            return scheduled_func(payload["tvmscript"], rec[1][0])
    pytest.fail(f"the shipped database has no record of {RACED}")


def _lowered(func, preemptible: bool):
    import tvm

    from reef_rocm.compiler import transform
    from reef_rocm.compiler.kernels import lower_kernels
    from reef_rocm.compiler.targets import parse_target

    spec = parse_target("cuda:sm_90")
    mod = tvm.IRModule({"main": func})
    if preemptible:
        mod = transform.make_preemptible(mod, 16)
    return lower_kernels(mod, tvm.target.Target(spec.tvm_target_dict())).device_mod


def _without_entry_barrier(stmt):
    """The chunked poll loop as it was before the fix: its leading barrier removed."""
    loop = stmt.seq[1]  # Bind(reef_stop), For(reef_run) ...
    inner = loop.body
    assert barriers._is_barrier(inner.seq[0]), "the chunk loop starts with a barrier"
    body = inner.seq[1]
    return _seq([stmt.seq[0], tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, body)])


@pytest.mark.parametrize("poll_tile_readers", [False, True])
def test_preemptible_rewrite_adds_no_race_on_the_raced_record(monkeypatch, poll_tile_readers):
    """No race, also with the raced loop polled as before (_uses_outer_tile now leaves a
    loop that reads tiles filled before it unpolled): the entry barrier alone is the fix."""
    from reef_rocm.compiler.transform import preemptible

    if poll_tile_readers:
        monkeypatch.setattr(preemptible, "_uses_outer_tile", lambda loop, kernel_tiles: False)
    func = _raced_record()
    plain = _lowered(func, preemptible=False)
    assert all(not barriers.shared_hazards(f) for f in plain.functions.values())
    for every in (0, 1, 16):
        assert barriers.added_hazards(plain, _lowered(func, preemptible=True), every) == {}


def test_negative_control_old_poll_loop_races(monkeypatch):
    from reef_rocm.compiler.transform import preemptible

    real = preemptible._chunked_poll_loop
    monkeypatch.setattr(
        preemptible, "_chunked_poll_loop", lambda loop, ctx: _without_entry_barrier(real(loop, ctx))
    )
    # the old rewrite also polled loops that read tiles filled before them (_uses_outer_tile)
    monkeypatch.setattr(preemptible, "_uses_outer_tile", lambda loop, kernel_tiles: False)
    func = _raced_record()
    added = barriers.added_hazards(_lowered(func, False), _lowered(func, True), 16)
    assert added, "the checker must find the race of the old rewrite"
    (hazards,) = added.values()
    assert {kind for kind, _ in hazards} == {"RAW"}
    assert {buf for _, buf in hazards} == {"pad_temp_shared", "layer3_1_conv1_weight_shared"}


def test_compat_refuses_a_racing_variant(monkeypatch):
    """tune/compat.py drops a record whose preemptible variant races (old rewrite)."""
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.transform import preemptible
    from reef_rocm.compiler.tune.compat import variant_failures

    func = _raced_record()
    assert variant_failures(func, parse_target("cuda:sm_90")) == {}
    real = preemptible._chunked_poll_loop
    monkeypatch.setattr(
        preemptible, "_chunked_poll_loop", lambda loop, ctx: _without_entry_barrier(real(loop, ctx))
    )
    # the old rewrite also polled loops that read tiles filled before them (_uses_outer_tile)
    monkeypatch.setattr(preemptible, "_uses_outer_tile", lambda loop, kernel_tiles: False)
    bad = variant_failures(func, parse_target("cuda:sm_90"))
    assert "unsynchronised shared access" in bad["preemptible"]


@pytest.mark.slow
@pytest.mark.parametrize(
    "model",
    ["tiny_cnn", "resnet18", "vgg19", "resnet152", "densenet201", "inception_v3", "distilbert"],
)
def test_no_variant_adds_a_race_zoo(model):
    """Every kernel of every zoo model, scheduled as `reef compile` schedules it (shipped
    database + dlight): the preemptible, DKP and DKP-BE variants have no unsynchronised
    shared access the plain kernel has not, and the plain kernels have none at all."""
    import tvm

    from reef_rocm.compiler import transform
    from reef_rocm.compiler.build import VARIANT_RECIPES
    from reef_rocm.compiler.frontends import load_model
    from reef_rocm.compiler.graph import build_plan
    from reef_rocm.compiler.kernels import lower_kernels
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.apply import resolve_tuning

    spec = parse_target("cuda:sm_90")
    target = tvm.target.Target(spec.tvm_target_dict())
    src = load_model(model)
    tuning = resolve_tuning(spec.name, None, False)
    plan = build_plan(src.mod, target, len(src.inputs), [p.name for p in src.params], tuning)
    transform.register_lowerings()
    mods = {"plain": plan.kernels_mod}
    for name, recipe in VARIANT_RECIPES.items():
        if recipe.make_pass is not None:
            base = mods["plain"] if recipe.after is None else mods[recipe.after]
            mods[name] = recipe.make_pass(transform, 16)(base)
    devs = {name: lower_kernels(m, target).device_mod for name, m in mods.items()}
    racy = [str(gv.name_hint) for gv, f in devs["plain"].functions.items()
            if barriers.shared_hazards(f)]  # fmt: skip
    assert racy == []
    for name in mods:
        if name != "plain":
            assert barriers.added_hazards(devs["plain"], devs[name]) == {}, name
