#!/usr/bin/env python3
"""Preemption storm through the scheduler: RT requests of a small model arriving every 1-5 ms
(uniform, seeded) against closed-loop BE zoo models with poll points on, until at least
``--preemptions`` preemptions happened; every output (RT and BE) compared with its package's
CPU reference (rtol 1e-3 of the output's scale, as the executor GPU tests).

    # the lead's H200 run (packages built on the CPU machine, carried in .carry/packages)
    python tools/preempt_storm.py --backend cuda --packages .carry/packages \\
        --rt tiny_cnn --be resnet152,densenet201,inception_v3 --preemptions 10000 \\
        --out docs/results/preempt_storm_h200.json
    # here, on the sim (simulated packages with zoo-like timings; virtual time)
    python tools/preempt_storm.py --backend sim --preemptions 300 --out /tmp/storm_sim.json

Writes a JSON result (card, driver, date, git commit, command; counts, preemption latency
p50/p99, RT latency, every mismatch) with reef_rocm.bench.meta.write_result.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reef_rocm.bench.meta import write_result  # noqa: E402
from reef_rocm.gpu import open_device  # noqa: E402
from reef_rocm.package.files import ModelPackage, find_packages  # noqa: E402
from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler  # noqa: E402


def _pct(xs: list[float], q: float) -> float | None:
    return float(np.percentile(xs, q)) if xs else None


def sim_packages(root: Path, cus: int) -> tuple[Path, list[Path]]:
    """A small RT chain and two BE chains with zoo-like kernel mixes (short kernels, a few
    long multi-round ones with loop trips for poll points), for the sim."""
    from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package

    rt = build_sim_package(root / "rt", "sim_tiny", [
        SimKernelPlan(f"t{i}", grid=cus, block=64, duration_us=6.0, blocks_per_cu=1)
        for i in range(8)
    ], compute_units=cus, elements=4096)  # fmt: skip
    bes = []
    for b, (n, long_us) in enumerate(((40, 150.0), (60, 90.0))):
        plans = [
            SimKernelPlan(
                f"k{i}", grid=cus * (4 if i % 7 == 3 else 1), block=64, blocks_per_cu=1,
                duration_us=long_us if i % 7 == 3 else 4.0 + (i % 3), loop_trips=32,
            )
            for i in range(n)
        ]  # fmt: skip
        bes.append(build_sim_package(root / f"be{b}", f"sim_be{b}", plans, compute_units=cus,
                                     poll_arg=True, seed=b + 1, elements=4096))  # fmt: skip
    return rt, bes


def pick(packages: Path, target: str | None, names: list[str]) -> list[Path]:
    found = {ModelPackage.load(p).name: p for p in find_packages(packages, target)}
    missing = [n for n in names if n not in found]
    if missing:
        raise SystemExit(
            f"no {target or ''} package for {missing} under {packages} (has {sorted(found)})"
        )
    return [found[n] for n in names]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", default="auto", help="cuda, hip, sim or auto")
    ap.add_argument("--packages", type=Path, default=ROOT / ".carry" / "packages")
    ap.add_argument("--target", default=None, help="package target, e.g. cuda:sm_90 (default: "
                    "the device's)")  # fmt: skip
    ap.add_argument("--rt", default="tiny_cnn")
    ap.add_argument("--be", default="resnet152,densenet201,inception_v3")
    ap.add_argument("--policy", default="reset+poll")
    ap.add_argument("--preemptions", type=int, default=10_000)
    ap.add_argument("--min-ms", type=float, default=1.0)
    ap.add_argument("--max-ms", type=float, default=5.0)
    ap.add_argument("--chunk-s", type=float, default=2.0, help="run_load duration per chunk")
    ap.add_argument("--max-chunks", type=int, default=1000)
    ap.add_argument("--poll-target-us", type=float, default=10.0)
    ap.add_argument("--cap-us", type=float, default=100.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sim-cus", type=int, default=16)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "results" / "preempt_storm.json")
    args = ap.parse_args(argv)

    tmp = None
    if args.backend == "sim":
        dev = open_device("sim", compute_units=args.sim_cus)
        tmp = tempfile.TemporaryDirectory()
        rt_pkg, be_pkgs = sim_packages(Path(tmp.name), args.sim_cus)
    else:
        dev = open_device(args.backend)
        target = args.target or f"{dev.info.backend}:{dev.info.arch}"
        rt_pkg = pick(args.packages, target, [args.rt])[0]
        be_pkgs = pick(args.packages, target, [b for b in args.be.split(",") if b])
    opts = SchedOptions(policy=args.policy, poll_target_us=args.poll_target_us,
                        device_queue_cap_us=args.cap_us, threaded=False)  # fmt: skip
    rng = np.random.default_rng(args.seed)
    keys = ("rt_requests", "be_requests", "preemptions", "rt_correct", "be_correct",
            "be_preempted_requests", "killed", "dropped_kernels")  # fmt: skip
    totals = dict.fromkeys(keys, 0)
    mismatches: list[dict] = []
    unchecked = 0
    plat, rtlat, drain = [], [], []
    chunk_us = args.chunk_s * 1e6
    wall0 = time.perf_counter()
    with Scheduler(dev, opts) as s:
        h_rt = s.load(rt_pkg, "rt", "rt0")
        h_be = [s.load(p, "be", f"be{i}") for i, p in enumerate(be_pkgs)]
        info = {
            "rt": {"model": h_rt.name, "kernels": h_rt.num_kernels, "profile": h_rt.profile_source},
            "be": [{"model": h.name, "kernels": h.num_kernels, "profile": h.profile_source,
                    "poll_every": [p for p in s.engine.models[h.id][1].poll_every if p is not None]}
                   for h in h_be],
        }  # fmt: skip
        calib = s.engine.stamps.calibration.as_dict() if s.engine.stamps else None
        chunk = 0
        while totals["preemptions"] < args.preemptions and chunk < args.max_chunks:
            arrivals, t = [], float(rng.uniform(args.min_ms, args.max_ms)) * 1e3
            while t < chunk_us:
                arrivals.append(t)
                t += float(rng.uniform(args.min_ms, args.max_ms)) * 1e3
            run = s.run_load([LoadSpec(h_rt, arrivals), *(LoadSpec(h) for h in h_be)],
                             duration_us=chunk_us)  # fmt: skip
            chunk += 1
            for r in run.requests:
                key = "rt" if r.priority == "rt" else "be"
                totals[f"{key}_requests"] += 1
                if r.correct is True:
                    totals[f"{key}_correct"] += 1
                elif r.correct is False:
                    mismatches.append({"chunk": chunk, "client": r.client, "model": r.model,
                                       "seq": r.seq, "preemptions": r.preemptions})  # fmt: skip
                else:
                    unchecked += 1
                if key == "be" and r.preemptions:
                    totals["be_preempted_requests"] += 1
                if key == "rt" and r.latency_us is not None:
                    rtlat.append(r.latency_us)
            for p in run.preemptions:
                totals["preemptions"] += 1
                totals["killed"] += p.killed
                totals["dropped_kernels"] += p.dropped_kernels
                if p.latency_us is not None:
                    plat.append(p.latency_us)
                if p.be_drained_us is not None:
                    drain.append(p.be_drained_us - p.flag_raised_us)
            print(f"chunk {chunk}: {totals['preemptions']} preemptions, "
                  f"{totals['be_requests']} BE / {totals['rt_requests']} RT requests, "
                  f"{len(mismatches)} mismatches, preemption p50/p99 "
                  f"{_pct(plat, 50) or 0:.1f}/{_pct(plat, 99) or 0:.1f} us "
                  f"({time.perf_counter() - wall0:.0f} s)", flush=True)  # fmt: skip
    doc = {
        "benchmark": "preempt_storm",
        "simulated": dev.info.backend == "sim",
        "policy": args.policy,
        "options": dict(opts.__dict__),
        "models": info,
        "rt_interval_ms": [args.min_ms, args.max_ms],
        "chunks": chunk,
        "chunk_s": args.chunk_s,
        "clock": "virtual (simulated)" if dev.info.backend == "sim" else "host perf_counter",
        "timestamp_calibration": calib,
        "counts": {**totals, "mismatches": len(mismatches), "unchecked": unchecked},
        "preemption_latency_us": {
            "p50": _pct(plat, 50),
            "p99": _pct(plat, 99),
            "max": max(plat) if plat else None,
            "n": len(plat),
            "definition": "RT arrival -> first RT block running (device timestamp kernel)",
        },  # fmt: skip
        "be_drain_us": {"p50": _pct(drain, 50), "p99": _pct(drain, 99)},
        "rt_latency_us": {"p50": _pct(rtlat, 50), "p99": _pct(rtlat, 99)},
        "mismatch_list": mismatches[:200],
        "ok": not mismatches and totals["preemptions"] >= args.preemptions,
        "wall_s": time.perf_counter() - wall0,
    }
    out = write_result(args.out, doc, device=dev)
    print(
        f"{'OK' if doc['ok'] else 'FAILED'}: {totals['preemptions']} preemptions, "
        f"{len(mismatches)} mismatches -> {out}"
    )
    if tmp is not None:
        tmp.cleanup()
    return 0 if doc["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
