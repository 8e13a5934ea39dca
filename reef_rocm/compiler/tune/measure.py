"""``reef tune measure``: time every candidate of a bundle on a GPU, check its output.

Runs where the GPU is, with only the project's runtime (reef_rocm.gpu; numpy): nothing here
or in what it imports touches TVM, so GPU hosts without TVM can measure bundles exported
elsewhere. Per task: random inputs (seeded per task), one buffer per parameter; per
candidate: load its kernels, fill the outputs with NaN, run once and compare the outputs
with candidate 0's (the default schedule) using the executor tests' tolerance (rtol 1e-3,
atol 1e-3 x the reference's largest magnitude), then warm up and time ``repeats`` launches
of its kernels between events on a non-default stream; the result is the median. A
candidate that fails to load, bind or launch, or whose output differs, is marked invalid
with the reason; a launch error that poisons the context ends the run with what was
measured so far written out.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.compiler.tune.bundle import Bundle, BundleTask, load_bundle
from reef_rocm.errors import GpuError, PackageError, ReefError
from reef_rocm.gpu.api import DevicePtr, LaunchConfig

TIMINGS_FORMAT = "reef-tune-timings"
TIMINGS_VERSION = 1
RTOL = 1e-3  # the executor GPU tests' tolerance (tests/runtime/test_executor_gpu.py)
NAN32 = 0x7FC00000


@dataclass(frozen=True)
class MeasureOptions:
    warmup: int = 3
    repeats: int = 15
    seed: int = 0
    rtol: float = RTOL
    tasks: tuple[int, ...] | None = None  # only these task ids (None: all)
    # a candidate whose checked run takes this many times the default's is not timed further
    slow_factor: float = 10.0
    minutes: float | None = None  # stop (and write what was measured) after this long


def _random_input(rng: np.random.Generator, p: dict[str, Any]) -> np.ndarray:
    shape, dtype = tuple(p["shape"]), np.dtype(p["dtype"])
    if dtype.kind == "f":
        return rng.uniform(-1.0, 1.0, size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    return rng.integers(0, 4, size=shape).astype(dtype)


def compare(out: np.ndarray, ref: np.ndarray, rtol: float) -> tuple[bool, float]:
    """(within tolerance, max error relative to the reference's largest magnitude)."""
    ref64 = ref.astype(np.float64)
    out64 = out.astype(np.float64)
    scale = float(np.abs(ref64).max()) if ref64.size else 0.0
    if not np.all(np.isfinite(out64[np.isfinite(ref64)])):
        return False, float("inf")
    err = np.abs(out64 - ref64)
    ok = bool(np.all(err <= rtol * max(scale, 1e-6) + rtol * np.abs(ref64)))
    return ok, float(err.max() / max(scale, 1e-30)) if err.size else 0.0


class _TaskRun:
    """Buffers and the loaded module of one task on one device."""

    def __init__(self, dev: Any, stream: Any, bundle: Bundle, task: BundleTask, seed: int) -> None:
        self.dev, self.stream, self.task = dev, stream, task
        self.buffers = [dev.alloc(p["nbytes"]) for p in task.params]
        rng = np.random.default_rng([seed, task.id])
        keep = []  # host arrays stay alive until the stream has copied them
        for i, p in enumerate(task.params):
            if not p["output"]:
                keep.append(_random_input(rng, p))
                dev.copy_to_device(self.buffers[i], keep[-1], stream)
        stream.synchronize()
        del keep
        self.module = None
        self.load_error: str | None = None
        try:
            self.module = dev.load_module(bundle.binary(task))
        except (ReefError, OSError, ValueError) as e:
            self.load_error = f"module load failed: {e}"

    def bind(self, cand: dict[str, Any]) -> list[Any]:
        launches = []
        for k in cand["kernels"]:
            args: list[Any] = []
            for a in k["args"]:
                if "param" in a:
                    args.append(DevicePtr(self.buffers[a["param"]].ptr))
                else:
                    args.append(np.dtype(a["dtype"]).type(a["scalar"]))
            fn = self.module.get_kernel(k["name"])
            cfg = LaunchConfig(tuple(k["grid"]), tuple(k["block"]), k["shared_mem"])
            launches.append(fn.bind(cfg, args))
        return launches

    def outputs(self, launches: list[Any]) -> tuple[list[np.ndarray], float]:
        """The outputs of one run (outputs NaN-filled first) and that run's time in us."""
        for i in self.task.outputs:
            n = self.task.params[i]["nbytes"]
            if n % 4 == 0:
                self.dev.memset32(self.buffers[i], NAN32, n // 4, self.stream)
        start, end = self.dev.create_event(), self.dev.create_event()
        try:
            start.record(self.stream)
            for b in launches:
                b.launch(self.stream)
            end.record(self.stream)
            self.stream.synchronize()
            us = 1000.0 * start.elapsed_ms(end)
        finally:
            start.close()
            end.close()
        outs = []
        for i in self.task.outputs:
            p = self.task.params[i]
            host = np.empty(tuple(p["shape"]), dtype=p["dtype"])
            self.dev.copy_to_host(host, self.buffers[i], self.stream)
            outs.append(host)
        self.stream.synchronize()
        return outs, us

    def time_us(self, launches: list[Any], opts: MeasureOptions) -> list[float]:
        for _ in range(opts.warmup):
            for b in launches:
                b.launch(self.stream)
        events = [(self.dev.create_event(), self.dev.create_event()) for _ in range(opts.repeats)]
        try:
            for start, end in events:
                start.record(self.stream)
                for b in launches:
                    b.launch(self.stream)
                end.record(self.stream)
            self.stream.synchronize()
            return [1000.0 * s.elapsed_ms(e) for s, e in events]
        finally:
            for s, e in events:
                s.close()
                e.close()

    def close(self) -> None:
        if self.module is not None:
            self.module.close()
        for b in self.buffers:
            b.close()


def measure_bundle(
    bundle: Bundle | str | Path,
    dev: Any,
    opts: MeasureOptions = MeasureOptions(),
    progress: bool = True,
) -> dict[str, Any]:
    """Measure ``bundle`` on device ``dev``; returns the timings document (no metadata)."""
    from reef_rocm.compiler.tune.progress import bar

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if dev.info.backend not in (b.index["backend"], "sim"):
        raise PackageError(
            f"{b.root}: bundle for {b.index['backend']} ({b.index['target']}), device is "
            f"{dev.info.backend}"
        )
    tasks = [t for t in b.tasks if opts.tasks is None or t.id in opts.tasks]
    results: list[dict[str, Any]] = []
    stopped: str | None = None
    t0 = time.monotonic()
    deadline = t0 + 60 * opts.minutes if opts.minutes else None
    stream = dev.create_stream()
    try:
        with bar(sum(len(t.candidates) for t in tasks), "measure", progress) as pbar:
            for task in tasks:
                pbar.set_postfix_str(task.name[:32])
                try:
                    stopped = _measure_task(dev, stream, b, task, opts, results, pbar, deadline)
                except GpuError as e:  # the task's buffers or inputs: its candidates untimed
                    done = {r["candidate"] for r in results if r["task"] == task.id}
                    for c in task.candidates:
                        if c["id"] not in done:
                            results.append(_row(task, c, error=f"task setup failed: {e}"))
                    stopped = f"context lost at task {task.id}: {e}" if _sticky(e) else None
                if stopped:
                    break
    finally:
        try:
            stream.close()
        except ReefError:  # a lost context cannot release its stream; the results stand
            pass
    return {
        "format": TIMINGS_FORMAT,
        "version": TIMINGS_VERSION,
        "bundle": {
            k: b.index.get(k)
            for k in ("target", "backend", "round", "created", "git_commit", "trials_per_task")
        },
        "bundle_path": str(b.root),
        "settings": {
            "warmup": opts.warmup,
            "repeats": opts.repeats,
            "seed": opts.seed,
            "rtol": opts.rtol,
        },
        "seconds": round(time.monotonic() - t0, 1),
        "stopped": stopped,
        "results": results,
    }


def _row(task: BundleTask, cand: dict[str, Any], error: str | None = None) -> dict[str, Any]:
    row: dict[str, Any] = {
        "task": task.id,
        "workload_hash": task.workload_hash,
        "name": task.name,
        "candidate": cand["id"],
        "key": cand["key"],
        "kind": cand["kind"],
        "valid": False,
    }
    if error:
        row["error"] = error
    return row


def _measure_task(
    dev: Any,
    stream: Any,
    b: Bundle,
    task: BundleTask,
    opts: MeasureOptions,
    results: list[dict[str, Any]],
    pbar: Any,
    deadline: float | None = None,
) -> str | None:
    run = _TaskRun(dev, stream, b, task, opts.seed)
    ref: list[np.ndarray] | None = None
    ref_us: float | None = None
    try:
        for cand in task.candidates:
            row = _row(task, cand)
            results.append(row)
            pbar.update(1)
            if run.load_error:
                row["error"] = run.load_error
                continue
            try:
                launches = run.bind(cand)
                outs, first_us = run.outputs(launches)
            except GpuError as e:
                row["error"] = f"load/launch failed: {e}"
                if _sticky(e):
                    return f"context lost at task {task.id} candidate {cand['id']}: {e}"
                continue
            if cand["kind"] == "default":
                ref, ref_us = outs, first_us
            if ref is None:
                row["error"] = "no reference (the default schedule failed)"
                continue
            worst = 0.0
            ok = True
            for o, r in zip(outs, ref, strict=True):
                good, rel = compare(o, r, opts.rtol)
                ok, worst = ok and good, max(worst, rel)
            row["max_rel_err"] = worst
            if not ok:
                row["error"] = f"output differs from the default schedule (max rel err {worst:.3g})"
                continue
            row["first_us"] = first_us
            if (
                ref_us is not None
                and cand["kind"] != "default"
                and (first_us > opts.slow_factor * max(ref_us, 1.0))
            ):
                row["error"] = f"too slow to time: {first_us:.0f} us, default {ref_us:.0f} us"
                continue
            if deadline is not None and time.monotonic() > deadline:
                row["error"] = "not timed: the measurement's time budget ran out"
                return f"time budget of {opts.minutes} min ran out at task {task.id}"
            try:
                us = run.time_us(launches, opts)
            except GpuError as e:
                row["error"] = f"timing launch failed: {e}"
                if _sticky(e):
                    return f"context lost at task {task.id} candidate {cand['id']}: {e}"
                continue
            row.update(valid=True, us_median=statistics.median(us), us_min=min(us), repeats=len(us))
    finally:
        try:
            run.close()
        except ReefError:
            pass
    return None


# CUDA (and HIP) status codes after which the context is unusable: illegal address, launch
# timeout, device assert, hardware stack error, illegal instruction, misaligned address,
# invalid address space, invalid PC, launch failure
STICKY_CODES = frozenset({700, 702, 710, 714, 715, 716, 717, 718, 719})


def _sticky(e: GpuError) -> bool:
    return e.code in STICKY_CODES
