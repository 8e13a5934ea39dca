"""Benchmark model packages on a GPU: kernel count, inference latency, kernel durations.

    python -m reef_rocm.runtime.bench --packages .carry/packages --out docs/results/models_h100.json

Latency: one inference = every kernel launched back to back on one stream (how REEF runs a
model), timed by events around the whole sequence; median of ``--repeats`` after warm-up.
Host latency: from the first launch call to the host seeing the end event (what a request
waits; it includes the launch calls when the GPU outruns them). Where the device can capture
launch graphs (CUDA), the same inference replayed as one graph launch, both ways.
Kernel durations: every kernel between two events (``ModelInstance.profile``), which adds
~1-2 us of event overhead to each, so min/median are upper bounds for short kernels.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.bench.meta import write_result

# REEF's VGG kernels ran 10-255 us on an MI50; a kernel that cannot be killed bounds
# preemption latency by its length, so we flag the ones far above that.
LONG_KERNEL_US = 255.0


def bench_package(dev: Any, path: Path, repeats: int, profile_dir: Path | None) -> dict[str, Any]:
    from reef_rocm.package.files import ModelPackage
    from reef_rocm.runtime.executor import ModelInstance, write_profile

    pkg = ModelPackage.load(path)
    with ModelInstance(dev, pkg) as inst:
        for i, a in enumerate(pkg.reference_inputs()):
            inst.set_input(i, a)
        s = dev.create_stream()
        start, end = dev.create_event(), dev.create_event()
        graph = None
        try:
            lat, host = _time(inst.launch_range, s, start, end, repeats)
            if dev.capabilities.graphs:
                graph = inst.capture(s)
                g_lat, g_host = _time(graph.launch, s, start, end, repeats)
        finally:
            if graph is not None:
                graph.close()
            start.close()
            end.close()
            s.close()
        prof = inst.profile(repeats=max(3, repeats // 5))
        if profile_dir is not None:
            write_profile(prof, profile_dir / f"{path.name}.profile.json")
    us = np.array([k["us_median"] for k in prof["kernels"]])
    order = np.argsort(us)[::-1]
    out = {
        "package": path.name,
        "kernels": len(us),
        "latency_ms_median": float(np.median(lat)),
        "latency_ms_min": float(np.min(lat)),
        "host_latency_ms_median": float(np.median(host)),
        "kernel_us": {
            "min": float(us.min()),
            "median": float(np.median(us)),
            "max": float(us.max()),
            "p90": float(np.percentile(us, 90)),
            "sum": float(us.sum()),
        },  # fmt: skip
        "kernels_over_255us": int((us > LONG_KERNEL_US).sum()),
        "longest": [
            {
                "name": prof["kernels"][i]["name"],
                "us": float(us[i]),
                "grid": prof["kernels"][i]["grid"],
                "block": prof["kernels"][i]["block"],
            }
            for i in order[:3]
        ],  # fmt: skip
    }
    if graph is not None:
        out["graph_latency_ms_median"] = float(np.median(g_lat))
        out["graph_host_latency_ms_median"] = float(np.median(g_host))
    return out


def _time(launch: Any, s: Any, start: Any, end: Any, repeats: int) -> tuple[list, list]:
    """Device ms (events) and host ms (first launch call -> end event seen) per inference."""
    for _ in range(3):
        launch(s)
    s.synchronize()
    lat, host = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        start.record(s)
        launch(s)
        end.record(s)
        end.synchronize()
        host.append((time.perf_counter() - t0) * 1e3)
        lat.append(start.elapsed_ms(end))
    return lat, host


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m reef_rocm.runtime.bench", description=__doc__)
    ap.add_argument("--packages", required=True, help="directory holding model packages")
    ap.add_argument("--out", help="write results JSON here")
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--target", default=None, help="only packages for this target (cuda:sm_90)")
    ap.add_argument("--models", default=None, help="comma-separated package name prefixes")
    ap.add_argument("--repeats", type=int, default=50)
    ap.add_argument("--profile-dir", default=None, help="also write per-kernel profiles here")
    args = ap.parse_args(argv)

    from reef_rocm.gpu import open_device
    from reef_rocm.package.files import find_packages

    paths = find_packages(args.packages, args.target)
    if args.models:
        wanted = tuple(f"{m}-" for m in args.models.split(","))
        paths = [p for p in paths if p.name.startswith(wanted)]
    if not paths:
        print(f"no packages in {args.packages}", file=sys.stderr)
        return 1
    dev = open_device(args.backend)
    results = []
    for p in paths:
        r = bench_package(
            dev, p, args.repeats, Path(args.profile_dir) if args.profile_dir else None
        )
        results.append(r)
        graph = r.get("graph_latency_ms_median")
        print(
            f"{p.name:32s} kernels {r['kernels']:4d}  latency {r['latency_ms_median']:8.3f} ms  "
            f"host {r['host_latency_ms_median']:8.3f} ms  "
            + (f"graph {graph:8.3f} ms  " if graph is not None else "")
            + f"kernel us min/med/max {r['kernel_us']['min']:.1f}/{r['kernel_us']['median']:.1f}/"
            f"{r['kernel_us']['max']:.1f}  >255us: {r['kernels_over_255us']}",
            flush=True,
        )
    doc = {
        "command": "python -m reef_rocm.runtime.bench " + " ".join(argv or sys.argv[1:]),
        "method": __doc__.strip().splitlines()[-4:],
        "long_kernel_threshold_us": LONG_KERNEL_US,
        "models": results,
    }
    if args.out:
        write_result(args.out, doc, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
