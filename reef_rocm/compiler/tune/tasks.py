"""Tuning tasks: the distinct unscheduled PrimFuncs of a model, weighted by what they cost.

The PrimFuncs come from the compiler's own Relax pipeline (``graph.relax_passes``) with the
dlight step left out, so a task is exactly the function ``reef compile`` would schedule with
dlight. Tasks are keyed by TVM's structural hash of ``IRModule({"main": func})`` (the key
MetaSchedule's database uses), so one conv shape shared by several layers or models is one
task. A task's weight is its profiled time summed over its calls (per-kernel H200 profiles in
docs/results/profiles/) where a profile exists, else its calls times its FLOPs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reef_rocm.errors import ModelError

PROFILE_DIR = Path(__file__).resolve().parents[3] / "docs" / "results" / "profiles" / "h200"
DLIGHT_PASS = "ApplyDefaultSchedule"
# only kernels with a reduction are worth a search; elementwise/pool kernels stay on dlight
TUNABLE_PREFIXES = (
    "fused_conv2d",
    "conv2d",
    "fused_NT_matmul",
    "NT_matmul",
    "fused_matmul",
    "matmul",
    "fused_dense",
    "dense",
    # dlight schedules average pooling as one block per output element (Inception-v3: 352,800
    # blocks of 256 threads reducing 9 values, 282 us): worth a search too
    "avg_pool2d",
)


@dataclass
class TuneTask:
    """One distinct kernel to tune: ``mod`` is ``IRModule({"main": unscheduled PrimFunc})``."""

    workload_hash: str  # structural hash of ``mod`` (MetaSchedule's workload key)
    name: str  # the PrimFunc's name in the first model that has it
    mod: Any
    calls: int = 0
    profiled_us: float | None = None  # summed over calls, from the profiles
    flops: float = 0.0
    models: dict[str, int] = field(default_factory=dict)  # model -> calls
    output_params: list[int] = field(default_factory=list)  # indices of the outputs

    @property
    def weight(self) -> float:
        """What a speed-up of this task is worth: profiled us where known, else FLOPs."""
        if self.profiled_us is not None:
            return self.profiled_us
        return self.flops * max(self.calls, 1) * 1e-6


def unscheduled_module(mod: Any, target: Any) -> Any:
    """The model after the compiler's Relax passes up to (not including) dlight."""
    import tvm

    from reef_rocm.compiler.graph import relax_passes

    passes = [p for p in relax_passes(target) if p.info.name != DLIGHT_PASS]
    with target:
        return tvm.transform.Sequential(passes)(mod)


def _calls(lowered: Any) -> list[tuple[str, int]]:
    """(PrimFunc name, number of outputs) per call_tir of the entry function, in order."""
    import tvm
    from tvm import relax

    call_tir = tvm.ir.Op.get("relax.call_tir")
    out: list[tuple[str, int]] = []

    def visit(e: Any) -> None:
        if isinstance(e, relax.Call) and e.op.same_as(call_tir):
            tys = list(e.ty_args)
            n = len(tys[0].fields) if len(tys) == 1 and hasattr(tys[0], "fields") else len(tys)
            out.append((e.args[0].name_hint, n))

    relax.analysis.post_order_visit(lowered["main"].body, visit)
    return out


def load_profile(model: str, target_name: str, profile_dir: Path = PROFILE_DIR) -> dict[str, float]:
    """PrimFunc name -> summed median us of its kernels in the model's profile ({} if none)."""
    path = profile_dir / f"{model}-{target_name.replace(':', '_')}.profile.json"
    if not path.is_file():
        return {}
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON ({e})") from None
    out: dict[str, float] = {}
    for k in doc.get("kernels", []):
        func = str(k["name"]).split("_kernel")[0]  # "<func>_kernel" or "<func>_kernel_1"
        out[func] = out.get(func, 0.0) + float(k["us_median"])
    return out


def _flops(func: Any) -> float:
    try:
        from tvm.s_tir.analysis import estimate_tir_flops
    except ImportError:
        return 0.0
    try:
        return float(estimate_tir_flops(func))
    except Exception:  # an op TVM's counter does not know: weight by calls only
        return 0.0


def extract_tasks(
    models: list[str],
    target_name: str,
    all_kernels: bool = False,
    profile_dir: Path = PROFILE_DIR,
) -> list[TuneTask]:
    """Distinct tasks of ``models`` for ``target_name``, heaviest first.

    ``all_kernels`` keeps elementwise and pooling kernels too (default: only the
    conv/matmul families, where schedules matter)."""
    import tvm
    import tvm_ffi

    from reef_rocm.compiler.frontends import load_model
    from reef_rocm.compiler.targets import parse_target

    spec = parse_target(target_name)
    target = tvm.target.Target(spec.tvm_target_dict())
    tasks: dict[str, TuneTask] = {}
    for model in models:
        src = load_model(model)
        lowered = unscheduled_module(src.mod, target)
        profile = load_profile(src.name, spec.name, profile_dir)
        counts: dict[str, int] = {}
        outputs: dict[str, int] = {}
        for func, n_out in _calls(lowered):
            counts[func] = counts.get(func, 0) + 1
            outputs[func] = n_out
        for func, n in counts.items():
            if not all_kernels and not func.startswith(TUNABLE_PREFIXES):
                continue
            f = lowered[func].with_attr("global_symbol", "main")
            mod = tvm.IRModule({"main": f})
            key = str(tvm_ffi.structural_hash(mod))
            t = tasks.get(key)
            if t is None:
                n_params = len(f.params)
                t = tasks[key] = TuneTask(
                    key,
                    func,
                    mod,
                    flops=_flops(f),
                    output_params=list(range(n_params - outputs[func], n_params)),
                )
            t.calls += n
            t.models[src.name] = t.models.get(src.name, 0) + n
            if func in profile:
                t.profiled_us = (t.profiled_us or 0.0) + profile[func]
    return sorted(tasks.values(), key=lambda t: -t.weight)


def select_tasks(
    tasks: list[TuneTask], coverage: float = 1.0, max_tasks: int | None = None
) -> list[TuneTask]:
    """The heaviest tasks that together carry ``coverage`` of the total weight."""
    total = sum(t.weight for t in tasks) or 1.0
    out, acc = [], 0.0
    for t in tasks:
        if acc >= coverage * total or (max_tasks is not None and len(out) >= max_tasks):
            break
        out.append(t)
        acc += t.weight
    return out
