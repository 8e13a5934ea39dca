#!/usr/bin/env python3
"""Where preemption latency goes: the same RT arrivals with and without BE work.

RT requests of a small model arrive uniformly (default every 2 ms) for ``--duration`` s, once
under ``rt-only`` (an idle GPU: what the host side alone costs from arrival to the first RT
block) and once under the chosen preemptive policy against closed-loop BE models. For the
preemptive run it splits each preemption into arrival -> flag raised (host: the engine noticing
the arrival and issuing the write), flag raised -> first RT block (device timestamps), and flag
raised -> BE device queues empty. Writes a JSON result (card, driver, date, commit, command).

    python3 tools/preempt_breakdown.py --packages .carry/packages --rt tiny_cnn --be resnet152
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from reef_rocm.bench.meta import write_result  # noqa: E402
from reef_rocm.gpu import open_device  # noqa: E402
from reef_rocm.package.files import find_packages  # noqa: E402
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler  # noqa: E402


def _pct(xs: list[float]) -> dict[str, float | int]:
    a = np.asarray([x for x in xs if x is not None], dtype=float)
    if a.size == 0:
        return {"n": 0}
    return {"n": int(a.size), "p50": float(np.percentile(a, 50)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}  # fmt: skip


def _package(root: str, model: str, target: str) -> str:
    for p in find_packages(root, target):
        if p.name.startswith(model + "-"):
            return str(p)
    raise SystemExit(f"no package for {model} ({target}) under {root}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--packages", required=True)
    ap.add_argument("--rt", default="tiny_cnn")
    ap.add_argument("--be", default="resnet152", help="comma-separated BE models")
    ap.add_argument("--policy", default="reset+poll")
    ap.add_argument("--interval-ms", type=float, default=2.0)
    ap.add_argument("--poll-target-us", type=float, default=None,
                    help="SchedOptions.poll_target_us (default: the scheduler's)")
    ap.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    ap.add_argument(
        "--inputs", default="preloaded,per-request",
        help="input modes to run: preloaded (uploaded once, REEF's registered blobs) and/or "
        "per-request (each RT request uploads its input before its first kernel)",
    )  # fmt: skip
    ap.add_argument("--out", required=True)
    a = ap.parse_args(argv)

    dev = open_device(a.backend)
    target = f"{dev.info.backend}:{dev.info.arch}"
    arrivals = list(np.arange(1000.0, a.duration * 1e6, a.interval_ms * 1e3))
    result: dict = {"benchmark": "preempt_breakdown", "rt": a.rt, "be": a.be.split(","),
                    "interval_ms": a.interval_ms, "duration_s": a.duration,
                    "poll_target_us": a.poll_target_us, "runs": {}}  # fmt: skip
    modes = a.inputs.split(",")
    bad = [m for m in modes if m not in ("preloaded", "per-request")]
    if bad:
        raise SystemExit(f"unknown input mode {bad[0]!r} (preloaded, per-request)")
    for mode, policy in [(m, p) for m in modes for p in ("rt-only", a.policy)]:
        pre_load = mode == "preloaded"
        opts = {"policy": policy}
        if a.poll_target_us is not None:
            opts["poll_target_us"] = a.poll_target_us
        with Scheduler(dev, SchedOptions(**opts)) as s:
            h_rt = s.load(_package(a.packages, a.rt, target), "rt", "rt0")
            loads = [LoadSpec(h_rt, arrivals, preload=pre_load)]
            if policy != "rt-only":
                for i, m in enumerate(a.be.split(",")):
                    h = s.load(_package(a.packages, m, target), "be", f"be{i}")
                    loads.append(LoadSpec(h, preload=pre_load))
            run = s.run_load(loads, duration_us=a.duration * 1e6,
                             warmup_us=min(200e3, a.duration * 1e5))
        rt = [r for r in run.requests if r.priority == "rt"]
        pre = run.preemptions
        entry = {
            "rt_arrival_to_first_block_us": _pct([
                None if r.start_us is None else r.start_us - r.arrival_us for r in rt]),
            "rt_arrival_to_submitted_us": _pct([
                None if r.submitted_us is None else r.submitted_us - r.arrival_us for r in rt]),
            "rt_arrival_to_launched_us": _pct([
                None if r.launched_us is None else r.launched_us - r.arrival_us for r in rt]),
            "rt_latency_us": _pct([r.latency_us for r in rt]),
            "preemptions": len(pre),
        }  # fmt: skip
        if pre:
            entry.update({
                "arrival_to_flag_raised_us": _pct([p.flag_raised_us - p.rt_arrival_us
                                                   for p in pre]),
                "flag_raised_to_rt_start_us": _pct([
                    None if p.rt_start_us is None else p.rt_start_us - p.flag_raised_us
                    for p in pre]),
                "flag_raised_to_be_drained_us": _pct([
                    None if p.be_drained_us is None else p.be_drained_us - p.flag_raised_us
                    for p in pre]),
            })  # fmt: skip
        result["runs"][f"{policy} {mode}"] = entry
        print(policy, mode, {k: (v if not isinstance(v, dict) else
                           {kk: round(vv, 1) for kk, vv in v.items()})
                       for k, v in entry.items()})  # fmt: skip
    write_result(a.out, result, dev)
    print(f"-> {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
