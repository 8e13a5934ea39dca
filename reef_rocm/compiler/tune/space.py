"""Candidate schedules of one task: MetaSchedule's CUDA design space, sampled at random.

MetaSchedule's post-order-apply space generator with the CUDA schedule rules and
postprocessors gives a few design-space traces (a schedule with its sampling instructions,
e.g. tile sizes, unroll depth); replaying a trace without its decisions on a fresh
``Schedule(seed=s)`` draws new ones, which is what MetaSchedule's ``ReplayTrace`` strategy
does. We do that loop ourselves: in this TVM build (0.27.0.post1 with tvm-ffi 0.1.15) the
search strategies' ``pre_tuning`` and the ``MutateThreadBinding`` mutator crash in tvm-ffi's
JSON graph serializer (it segfaults on any ``PrimType``/``IntImm``), so ``ReplayTrace`` and
``EvolutionarySearch`` cannot run here. Traces are turned into plain JSON by
``trace_to_json`` for the same reason (``tvm.ir.save_json`` crashes too).

The baseline candidate (id 0 of every task) is the default schedule ``reef compile`` uses
today: dlight's rules, as graph.relax_passes applies them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from reef_rocm.compiler.targets import TargetSpec

# what VerifyGPUCode checks candidates against (per-block limits of sm_80/sm_90; TVM's
# "nvidia/nvidia-h100" tag has the same values)
CUDA_LIMITS = {
    "max_threads_per_block": 1024,
    "max_num_threads": 1024,
    "max_shared_memory_per_block": 49152,
    "thread_warp_size": 32,
    "registers_per_block": 65536,
}


@dataclass
class Candidate:
    """One schedule of a task: ``mod`` (scheduled IRModule, function "main"), its trace as
    plain JSON (None for the default schedule) and a stable id of that trace."""

    kind: str  # "default" | "ms"
    mod: Any
    trace_json: Any | None
    key: str  # sha256 of the trace JSON ("default" for the dlight schedule)


def ms_target(spec: TargetSpec) -> Any:
    import tvm

    if spec.kind == "cuda":
        return tvm.target.Target({**spec.tvm_target_dict(), **CUDA_LIMITS})
    return tvm.target.Target(spec.tvm_target_dict())


def to_plain(x: Any) -> Any:
    """tvm-ffi containers and IR immediates -> Python lists, ints, floats, strings."""
    if isinstance(x, (bool, int, float, str)) or x is None:
        return x
    if hasattr(x, "items"):
        return {str(k): to_plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)) or type(x).__name__ == "Array":
        return [to_plain(v) for v in x]
    if hasattr(x, "value"):  # IntImm / FloatImm / StringImm
        return x.value
    return str(x)


def trace_to_json(trace: Any) -> Any:
    return to_plain(trace.as_json())


def trace_key(trace_json: Any) -> str:
    return hashlib.sha256(json.dumps(trace_json, sort_keys=True).encode()).hexdigest()[:24]


def default_schedule(mod: Any, target: Any) -> Any:
    """``mod`` scheduled the way the compiler does it now (dlight, graph.relax_passes)."""
    from tvm.s_tir import dlight as dl

    from reef_rocm.compiler.graph import relax_passes
    from reef_rocm.compiler.tune.tasks import DLIGHT_PASS

    (dlight,) = [p for p in relax_passes(target) if p.info.name == DLIGHT_PASS]
    del dl
    with target:
        return dlight(mod)


# MetaSchedule's design space samples thread extents uniformly: most draws launch a handful
# of threads (2 threads for a 1 GFLOP conv: seconds a launch) and are pointless to build or
# time on a GPU with 132 SMs. A draw is kept when its blocks have at least a warp and the
# grid has at least a warp per SM (H200: 132 SMs). MetaSchedule's own evolutionary search
# leaves such draws to its cost model; random replay has none.
MIN_BLOCK_THREADS = 32
MIN_TOTAL_THREADS = 132 * 32


def launch_extents(func: Any) -> dict[str, int]:
    """Thread tag -> extent of the first loop bound to it (the compute nest's binding; later
    loops with the same tag are cooperative fetches over the same threads)."""
    import tvm
    import tvm_ffi

    ext: dict[str, int] = {}

    def visit(loop: Any) -> None:
        tb = loop.thread_binding
        if tb is not None:
            try:
                ext.setdefault(str(tb.thread_tag), int(loop.extent))
            except (TypeError, ValueError):
                pass

    tvm_ffi.structural_walk(func.body, (tvm.tirx.For, visit), order="pre")
    return ext


def plausible_launch(func: Any) -> bool:
    """Enough threads for the GPU, or for the output (the last parameter) if it is small."""
    n_out = 1
    for d in func.params[-1].shape:
        n_out *= int(d)
    ext = launch_extents(func)
    block = ext.get("threadIdx.x", 1) * ext.get("threadIdx.y", 1) * ext.get("threadIdx.z", 1)
    grid = ext.get("blockIdx.x", 1) * ext.get("blockIdx.y", 1) * ext.get("blockIdx.z", 1)
    return min(MIN_BLOCK_THREADS, n_out) <= block <= 1024 and block * grid >= min(
        MIN_TOTAL_THREADS, max(1, n_out // 8)
    )


def _schedule_seed(seed: int, i: int) -> int:
    """The i-th draw's seed, in the range TVM's Schedule takes ([1, 2**31 - 1]); the same
    value as before the fold for the seeds rounds 1 and 2 used."""
    return (seed * 1_000_003 + i) % 2_147_483_646 + 1


class DesignSpace:
    """MetaSchedule's design space of one task, and random samples from it."""

    def __init__(
        self, mod: Any, spec: TargetSpec, seed: int = 0, filter_launch: bool = True
    ) -> None:
        import tvm.s_tir.meta_schedule as ms

        self.mod = mod
        self.target = ms_target(spec)
        self._ms = ms
        # mutators stay empty: random replay needs none, and MutateThreadBinding crashes
        gen = ms.space_generator.PostOrderApply(
            sch_rules=ms.ScheduleRule.create(spec.kind),
            postprocs=ms.Postproc.create(spec.kind),
            mutator_probs={},
        )
        self.ctx = ms.TuneContext(
            mod=mod,
            target=self.target,
            space_generator=gen,
            task_name="reef",
            num_threads=1,
            rand_state=seed,
        )
        self.spaces = list(self.ctx.generate_design_space())
        # VerifyGPUCode rejects every sample in this build (also the design space's own
        # decisions), so it is left out; the export checks block size and shared memory from
        # the lowered launch records instead, and nvcc and the measurement catch the rest
        self.postprocs = [
            p for p in self.ctx.space_generator.postprocs if "VerifyGPUCode" not in type(p).__name__
        ]
        self.seed = seed
        self.filter_launch = filter_launch

    def draw(self, skip: set[str] = frozenset(), attempts: int = 1000) -> Iterator[Candidate]:
        """Distinct random candidates whose keys are not in ``skip``, up to ``attempts``
        replays (a replay that breaks a primitive's checks or a postprocessor is skipped)."""
        from tvm.s_tir.schedule import Schedule, Trace

        seen = set(skip)
        for i in range(attempts):
            if not self.spaces:
                return
            space = self.spaces[i % len(self.spaces)]
            bare = Trace(space.trace.insts, {})  # no decisions: the replay samples new ones
            sch = Schedule(self.mod, seed=_schedule_seed(self.seed, i))
            try:
                bare.apply_to_schedule(sch, remove_postproc=True)
                # the compute nest's thread binding is in the trace: check it before the
                # (slower) postprocessors
                if self.filter_launch and not plausible_launch(sch.mod["main"]):
                    continue
                sch.enter_postproc()  # as MetaSchedule does: replays can drop what follows
                if not all(p.apply(sch) for p in self.postprocs):
                    continue
            except Exception:  # a draw that violates a schedule primitive's checks
                continue
            tj = trace_to_json(sch.trace)
            key = trace_key(tj)
            if key in seen:
                continue
            seen.add(key)
            yield Candidate("ms", sch.mod, tj, key)

    def mutate(
        self, parents: list[Any], skip: set[str] = frozenset(), attempts: int = 1000, seed: int = 0
    ) -> Iterator[Candidate]:
        """Children of measured traces (plain JSON, fastest first): each child redraws one
        or two of its parent's sampled decisions (tile sizes, unroll depth, thread counts)
        and keeps the rest - the evolutionary step without MetaSchedule's mutators
        (MutateThreadBinding crashes here) or its cost model (no xgboost). The fastest
        parent is used twice as often as the others.

        A parent's decisions are put back on the design-space trace it was drawn from: a
        replay keeps the design space's instructions 1:1 and postprocessors sample nothing,
        so decision ``[index, value]`` of the parent's trace JSON belongs to instruction
        ``index`` of that design space (the one whose instruction kinds match)."""
        import random

        from tvm.s_tir.schedule import Schedule, Trace

        rng = random.Random(seed)
        bases = []  # (design-space trace, {instruction index: decision})
        for tj in parents:
            insts, decisions = tj[0], tj[1]
            for space in self.spaces:
                sinsts = list(space.trace.insts)
                if all(
                    i < len(sinsts) and sinsts[i].kind.name == insts[i][0] for i, _ in decisions
                ):
                    bases.append((space.trace, {int(i): d for i, d in decisions}))
                    break
        if not bases:
            return
        order = [bases[0], *bases]
        seen = set(skip)
        for n in range(attempts):
            trace, decisions = order[n % len(order)]
            idx = sorted(decisions)
            drop = set(rng.sample(idx, min(len(idx), rng.choice((1, 1, 2)))))
            insts = list(trace.insts)
            kept = {insts[i]: d for i, d in decisions.items() if i not in drop}
            sch = Schedule(self.mod, seed=_schedule_seed(seed, n))
            try:
                Trace(trace.insts, kept).apply_to_schedule(sch, remove_postproc=True)
                if self.filter_launch and not plausible_launch(sch.mod["main"]):
                    continue
                sch.enter_postproc()
                if not all(p.apply(sch) for p in self.postprocs):
                    continue
            except Exception:  # the kept decisions no longer fit the redrawn ones
                continue
            tj = trace_to_json(sch.trace)
            key = trace_key(tj)
            if key in seen:
                continue
            seen.add(key)
            yield Candidate("ms", sch.mod, tj, key)
