"""Only records every package variant can be built from are applied.

A tuned schedule must survive the transforms that make the other variants (preemptible,
DKP; build.VARIANT_RECIPES) and TVM's CUDA/ROCm codegen. Some MetaSchedule schedules do
not: VGG-19's fused_conv2d1 and conv2d3 records cache their input in shared memory with a
copy loop the preemptible transform splits into poll chunks of ``reef_poll_every`` trips,
and the shared buffer's compacted size then depends on that launch argument ("Can only
handle constant size stack allocation"); and a record at exactly 48 KB of shared memory is
over CUDA's static limit once the preemptible transform adds its 4-byte stop flag. A
variant whose kernel has an unsynchronised shared-memory access the plain kernel has not
(``transform/barriers.py``) fails too.
``drop_unbuildable`` removes such records from a
database, fastest first, until the fastest left builds in every variant, and marks them in
``reef_measured.json`` so they are not measured again. ``reef compile`` then never meets one.
"""

from __future__ import annotations

from typing import Any

from reef_rocm.compiler.targets import TargetSpec

# the error reef_measured.json gives a dropped record (``reef tune forget --unbuildable``)
UNBUILDABLE = "not buildable as a package variant"


def scheduled_func(tvmscript: str, trace_json: Any) -> Any:
    """The PrimFunc a record's trace makes of its workload (what ApplyDatabase makes)."""
    import tvm
    from tvm.s_tir.schedule import Schedule, Trace

    sch = Schedule(tvm.script.from_source(tvmscript))
    Trace.apply_json_to_schedule(trace_json, sch)
    return sch.mod["main"].with_attr("tirx.is_scheduled", True)


def variant_failures(func: Any, spec: TargetSpec, poll: int | None = 16) -> dict[str, str]:
    """variant -> why it cannot be built from ``func`` (transform, lowering or codegen)."""
    import tvm

    from reef_rocm.compiler.build import VARIANT_RECIPES, _transform_module, available_variants
    from reef_rocm.compiler.codegen import codegen
    from reef_rocm.compiler.kernels import lower_kernels
    from reef_rocm.compiler.transform.barriers import added_hazards
    from reef_rocm.compiler.tune.export import MAX_STATIC_SHARED, static_shared_bytes

    target = tvm.target.Target(spec.tvm_target_dict())
    t = _transform_module()
    if t is not None:
        t.register_lowerings()
    mods: dict[str, Any] = {}
    out: dict[str, str] = {}
    plain_dev = None
    for name in available_variants():
        recipe = VARIANT_RECIPES[name]
        try:
            base = tvm.IRModule({"main": func}) if recipe.after is None else mods[recipe.after]
            mods[name] = base if recipe.make_pass is None else recipe.make_pass(t, poll)(base)
            b = lower_kernels(mods[name], target)
            codegen(b.device_mod, b.target, spec.arch, nvcc=False)
            shared = max(static_shared_bytes(f) for f in b.device_mod.functions.values())
            if spec.kind == "cuda" and shared > MAX_STATIC_SHARED:  # ptxas would refuse it
                raise ValueError(f"{shared} bytes of static shared memory (max 48 KB)")
            if recipe.make_pass is None:
                plain_dev = b.device_mod
            elif plain_dev is not None:
                # a transform must not race where the plain kernel does not (barriers.py)
                added = added_hazards(plain_dev, b.device_mod, poll or 0)
                if added:
                    raise ValueError(f"unsynchronised shared access added: {sorted(added.items())}")
        except Exception as e:  # noqa: BLE001 - any failure makes the record unusable
            msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
            out[name] = msg
    return out


def drop_unbuildable(db: Any, spec: TargetSpec, poll: int | None = 16) -> list[str]:
    """Drop each workload's fastest records until the fastest left builds in every variant;
    returns one line per dropped record. The caller saves ``db``."""
    from reef_rocm.compiler.tune.database import _mean
    from reef_rocm.compiler.tune.space import trace_key

    lines: list[str] = []
    for wi, (h, payload) in enumerate(db.workloads):
        name = db.measured.get(h, {}).get("name", h)
        for rec in sorted((r for r in db.records if r[0] == wi), key=lambda r: _mean(r[1][1])):
            bad = variant_failures(scheduled_func(payload["tvmscript"], rec[1][0]), spec, poll)
            if not bad:
                break
            db.records.remove(rec)
            why = "; ".join(f"{v}: {m}" for v, m in bad.items())
            cand = db.measured.get(h, {}).get("candidates", {}).get(trace_key(rec[1][0]))
            if cand is not None:
                cand.update(valid=False, error=f"{UNBUILDABLE}: {why}")
            lines.append(f"{name}: dropped a {_mean(rec[1][1]) * 1e6:.1f} us record ({why})")
    return lines
