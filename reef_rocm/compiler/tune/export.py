"""Tasks -> a measurement bundle (bundle.py describes the layout).

Per task: the default (dlight) schedule plus random MetaSchedule candidates
(space.DesignSpace), each renamed ``t<task>_c<cand>`` and lowered with the compiler's own
``kernels.lower_kernels`` (so launch shapes and argument order are the ones ``reef compile``
would record), then all of one task's candidates go through codegen and one nvcc call. A
candidate that fails to lower, needs more than 1024 threads a block, or that ptxas rejects
(too much shared memory, registers) is dropped with a note; the others stay.
"""

from __future__ import annotations

import datetime
import gzip
import itertools
import json
import re
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reef_rocm.compiler.targets import TargetSpec
from reef_rocm.compiler.tune.bundle import FORMAT, INDEX_FILE, VERSION
from reef_rocm.compiler.tune.space import (
    Candidate,
    DesignSpace,
    default_schedule,
    ms_target,
    to_plain,
)
from reef_rocm.compiler.tune.tasks import TuneTask
from reef_rocm.errors import ToolchainError, UnsupportedError
from reef_rocm.package.manifest import DTYPE_BYTES

_DIMS = (("blockIdx.x", "blockIdx.y", "blockIdx.z"), ("threadIdx.x", "threadIdx.y", "threadIdx.z"))
_DYN = "tirx.use_dyn_shared_memory"
MAX_THREADS = 1024
MAX_STATIC_SHARED = 48 * 1024  # CUDA's static __shared__ limit per block
# what the preemptible variant adds: its int32 stop flag, 64-byte aligned. A candidate with
# less headroom than this builds as a plain kernel but not in every package variant, so
# tune/compat.py would drop its record after it was measured (round 5 lost a 91.6 us one)
VARIANT_SHARED_BYTES = 64


@dataclass
class ExportStats:
    tasks: int = 0
    candidates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    def drop(self, why: str) -> None:
        self.dropped[why] = self.dropped.get(why, 0) + 1


def param_table(task: TuneTask) -> list[dict[str, Any]]:
    f = task.mod["main"]
    out = []
    for i, p in enumerate(f.params):
        if getattr(p, "shape", None) is None:  # parameters are buffers in TVM 0.27's TIR
            raise UnsupportedError(f"{task.name}: scalar parameter {p.name} (static shapes only)")
        shape = [int(s) for s in p.shape]
        dtype = str(p.dtype)
        n = 1
        for s in shape:
            n *= s
        out.append(
            {
                "name": p.name,
                "dtype": dtype,
                "shape": shape,
                "nbytes": max(1, n * DTYPE_BYTES[dtype]),
                "output": i in task.output_params,
            }
        )
    return out


def _kernel_records(kernels: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for k in kernels:
        launch = k["launch"]
        if any(isinstance(v, dict) for v in launch.values()):
            raise UnsupportedError(f"{k['name']}: symbolic launch dimension")
        grid = [int(launch.get(d, 1)) for d in _DIMS[0]]
        block = [int(launch.get(d, 1)) for d in _DIMS[1]]
        if block[0] * block[1] * block[2] > MAX_THREADS:
            raise UnsupportedError(f"{k['name']}: {block} is over {MAX_THREADS} threads")
        out.append(
            {
                "name": k["name"],
                "grid": grid,
                "block": block,
                "shared_mem": int(launch.get(_DYN, 0)),
                "args": k["args"],
            }
        )
    return out


def static_shared_bytes(device_func: Any) -> int:
    """Bytes of static shared memory a lowered device function allocates."""
    import tvm
    import tvm_ffi

    from reef_rocm.package.manifest import DTYPE_BYTES as nb

    total = 0

    def visit(a: Any) -> None:
        nonlocal total
        b = a.buffer
        if b.scope() == "shared":
            n = 1
            for s in b.shape:
                n *= int(s)
            total += n * nb.get(str(b.dtype), 4)

    tvm_ffi.structural_walk(device_func.body, (tvm.tirx.AllocBuffer, visit), order="pre")
    return total


def _lower(funcs: dict[str, Any], target: Any) -> Any:
    import tvm

    from reef_rocm.compiler.kernels import lower_kernels

    return lower_kernels(tvm.IRModule(funcs), target)


def _compile(
    spec: TargetSpec, funcs: dict[str, Any], target: Any, stats: ExportStats
) -> tuple[bytes, Any, dict[str, Any]]:
    """One code object for ``funcs``; drops (and counts) the ones ptxas refuses."""
    from reef_rocm.compiler.codegen import codegen, compile_cuda

    funcs = dict(funcs)
    for _ in range(len(funcs) + 1):
        build = _lower(funcs, target)
        co = codegen(build.device_mod, build.target, spec.arch, nvcc=False)
        if co.binary:
            return co.binary, build, funcs
        try:
            return compile_cuda(co.source, spec.arch), build, funcs
        except ToolchainError as e:
            bad = set(re.findall(r"'(t\d+_c\d+)_kernel", str(e))) & set(funcs)
            bad.discard(next(iter(funcs)))  # the default schedule must build
            if not bad:
                raise
            for name in bad:
                stats.drop("ptxas: " + _ptxas_reason(str(e), name))
                del funcs[name]
    raise ToolchainError("nvcc kept failing")


def _why(e: Exception) -> str:
    msg = str(e)
    if "static shared memory" in msg:
        return "over 48 KB static shared memory"
    if f"is over {MAX_THREADS} threads" in msg:
        return f"over {MAX_THREADS} threads per block"
    if "host-allocated workspace" in msg:
        # an epilogue MetaSchedule could not inline (GELU reads the matmul twice) became a
        # second kernel over a global intermediate, which a package cannot hold
        return "needs a host-allocated workspace (epilogue as a second kernel)"
    return f"lowering failed ({type(e).__name__})"


def _ptxas_reason(err: str, name: str) -> str:
    for line in err.splitlines():
        if name in line and "ptxas" in line:
            return (
                re.sub(r"\(0x[0-9a-f]+ bytes, 0x[0-9a-f]+ max\)", "", line.split(":", 1)[-1])
                .split("'")[-1]
                .strip()
                or "error"
            )
    return "error"


def _interleave(a: Iterator[Any], b: Iterator[Any], ratio: int) -> Iterator[Any]:
    """``ratio`` items of ``a`` then one of ``b``, repeated; the rest of either when the
    other runs out. Keys are shared by both (one ``skip`` set each), so duplicates across
    the two are dropped here."""
    seen: set[str] = set()
    live = [a, b]
    n = 0
    while live:
        src = live[0] if (len(live) == 1 or n % (ratio + 1) < ratio) else live[1]
        n += 1
        try:
            c = next(src)
        except StopIteration:
            live.remove(src)
            continue
        if c.key not in seen:
            seen.add(c.key)
            yield c


def export_task(
    tid: int,
    task: TuneTask,
    spec: TargetSpec,
    out: Path,
    trials: int,
    seed: int,
    skip: set[str],
    stats: ExportStats,
    deadline: float | None = None,
    parents: list[Any] | None = None,
) -> dict[str, Any] | None:
    """Write task ``tid``'s binary and detail file; return its index entry."""
    import tvm

    target = tvm.target.Target(spec.tvm_target_dict())
    draws: Iterator[Candidate] = iter(())
    if trials > 0 and (deadline is None or time.monotonic() < deadline):
        space = DesignSpace(task.mod, spec, seed=seed + tid)
        draws = space.draw(skip, attempts=400 * trials + 100)
        if parents:  # evolutionary step: 3 children of measured schedules per random draw
            kids = space.mutate(parents, skip, attempts=100 * trials + 100, seed=seed + tid)
            draws = _interleave(kids, draws, 3)
    # dlight on its own module, after the design space: it may rewrite its input in place
    default = default_schedule(tvm.IRModule({"main": task.mod["main"]}), target)
    funcs: dict[str, Any] = {}
    by_name: dict[str, tuple[int, Candidate]] = {}
    cid = 0
    for c in itertools.chain([Candidate("default", default, None, "default")], draws):
        if len(funcs) > trials or (deadline is not None and cid and time.monotonic() > deadline):
            break
        name = f"t{tid}_c{cid}"
        f = c.mod["main"]
        try:  # lowering one candidate alone finds the ones TVM cannot lower or run
            b = _lower({name: f}, target)
            _kernel_records(b.kernels_by_func[name])
            shared = max(static_shared_bytes(df) for df in b.device_mod.functions.values())
            if shared > MAX_STATIC_SHARED - VARIANT_SHARED_BYTES:
                raise UnsupportedError(f"{shared} bytes of static shared memory")
        except Exception as e:
            if cid == 0:
                raise
            stats.drop(_why(e))
            continue
        funcs[name] = f
        by_name[name] = (cid, c)
        cid += 1
    binary, build, funcs = _compile(spec, funcs, target, stats)
    binary_name = f"t{tid}{spec.binary_ext}.gz"
    (out / binary_name).write_bytes(gzip.compress(binary, 9, mtime=0))
    entries, detail = [], []
    for name in funcs:
        cid, c = by_name[name]
        entries.append(
            {
                "id": cid,
                "kind": c.kind,
                "key": c.key,
                "kernels": _kernel_records(build.kernels_by_func[name]),
            }
        )
        detail.append({"id": cid, "key": c.key, "trace": c.trace_json})
    params = param_table(task)
    (out / "tasks").mkdir(exist_ok=True)
    (out / "tasks" / f"t{tid}.json").write_text(
        json.dumps(
            {
                "id": tid,
                "name": task.name,
                "workload_hash": task.workload_hash,
                "workload_tvmscript": task.mod.script(),
                "target": to_plain(ms_target(spec).export()),
                "args_info": [["TENSOR", p["dtype"], p["shape"]] for p in params],
                "candidates": detail,
            }
        )
        + "\n"
    )
    stats.tasks += 1
    stats.candidates += len(entries)
    return {
        "id": tid,
        "name": task.name,
        "workload_hash": task.workload_hash,
        "weight_us": round(task.weight, 3),
        "profiled": task.profiled_us is not None,
        "calls": task.calls,
        "models": task.models,
        "binary": binary_name,
        "detail": f"tasks/t{tid}.json",
        "params": params,
        "candidates": entries,
    }


def export_bundle(
    tasks: list[TuneTask],
    spec: TargetSpec,
    out: str | Path,
    trials: int,
    seed: int = 0,
    round_no: int = 1,
    skip: dict[str, set[str]] | None = None,
    minutes: float | None = None,
    progress: bool = True,
    parents: dict[str, list[Any]] | None = None,
) -> ExportStats:
    """Export ``tasks`` with up to ``trials`` new candidates each into bundle ``out``.

    ``skip[workload_hash]``: candidate keys already measured (the database's), not exported
    again. ``parents[workload_hash]``: measured traces, fastest first; with them a task's
    candidates are mostly their mutations (space.DesignSpace.mutate), one in four random.
    ``minutes``: after this much time the remaining tasks get only their default.
    The index is rewritten after every task, so an interrupted export is a valid bundle.
    """
    import tvm

    from reef_rocm.bench.meta import git_commit
    from reef_rocm.compiler.tune.progress import bar

    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    deadline = t0 + minutes * 60 if minutes else None
    stats = ExportStats()
    index = {
        "format": FORMAT,
        "version": VERSION,
        "target": spec.name,
        "backend": spec.backend,
        "round": round_no,
        "strategy": "evolve" if parents else "random",
        "seed": seed,
        "trials_per_task": trials,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "tvm": str(tvm.__version__),
        "command": " ".join(["reef", *sys.argv[1:]]),
        "tasks": [],
    }
    with bar(len(tasks), "export", progress) as pbar:
        for tid, task in enumerate(tasks):
            pbar.set_postfix_str(task.name[:32])
            entry = export_task(
                tid,
                task,
                spec,
                root,
                trials,
                seed,
                (skip or {}).get(task.workload_hash, set()),
                stats,
                deadline,
                (parents or {}).get(task.workload_hash),
            )
            if entry is not None:
                index["tasks"].append(entry)
            stats.seconds = time.monotonic() - t0
            index["export"] = {
                "seconds": round(stats.seconds, 1),
                "candidates": stats.candidates,
                "dropped": stats.dropped,
            }
            (root / INDEX_FILE).write_text(json.dumps(index, indent=1) + "\n")
            pbar.update(1)
    return stats
