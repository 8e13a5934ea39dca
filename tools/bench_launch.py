#!/usr/bin/env python3
"""Launch cost: reef_rocm's pre-packed Python launch vs a C++ cuLaunchKernel loop, same run.

Both sides launch the same empty kernel (3 arguments, 1 block of 32 threads) from the same
cubin back to back on one non-blocking stream and divide the host time by the launch count.
The goal from the design: Python/C++ <= 1.1. Writes JSON with card, date and git commit.

Span mode (``--span-sizes``, on by default): N launches bound once, each with its own
parameter block as a model's kernels have, submitted as one C span call
(``gpu.fastlaunch.span``, what ``ModelInstance.launch_range`` makes) vs a Python loop over the
same bound launches (``launch_range`` without the span); per-kernel cost for each N, next to
the C++ loop. ``span_vs_cpp`` near 1 means Python adds nothing per kernel.

    python tools/bench_launch.py --out docs/results/launch_cost_h100.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from reef_rocm.bench.meta import run_metadata  # noqa: E402
from reef_rocm.gpu import LaunchConfig, open_device  # noqa: E402


def time_loop(fn, launches: int, repeats: int, sync) -> list[float]:
    for _ in range(1000):
        fn()
    sync()
    per = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(launches):
            fn()
        t1 = time.perf_counter()
        sync()
        per.append((t1 - t0) / launches * 1e6)
    return per


def launch_path_variants(kernel, bound, stream) -> dict:
    """Other ways to issue the same pre-packed launch, to show where Python time goes."""
    import ctypes

    from cuda.bindings import driver as cu

    p = bound.params
    g, b = bound.config.grid, bound.config.block
    h, sh = kernel.handle, stream.handle
    raw = cu.cuLaunchKernel
    out = {
        "bindings_objects": lambda: raw(h, *g, *b, 0, sh, p.pointer_array, 0),
    }
    ih, ish = int(h), int(sh)
    out["bindings_int_handles"] = lambda: raw(ih, *g, *b, 0, ish, p.pointer_array, 0)
    lib = ctypes.CDLL("libcuda.so.1")
    fn = lib.cuLaunchKernel
    fn.restype = ctypes.c_int
    fn.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    pa = p.pointer_array
    out["ctypes_libcuda"] = lambda: fn(ih, *g, *b, 0, ish, pa, None)
    return out


def summary(per: list[float]) -> dict:
    return {"median_us": statistics.median(per), "min_us": min(per), "max_us": max(per)}


def span_mode(kernel, buf, stream, sizes: list[int], launches: int, repeats: int) -> dict:
    """Per-kernel host cost of N pre-bound launches as one span call vs a Python loop."""
    from reef_rocm.gpu import fastlaunch

    cfg = LaunchConfig(1, 32)
    h = stream.raw_handle
    out: dict = {}
    for n in sizes:
        bounds = [kernel.bind(cfg, (buf, np.int32(i), np.float32(2.0))) for i in range(n)]
        span = fastlaunch.span([b.c_launcher for b in bounds])
        calls = max(1, launches // n)

        def loop(bounds=bounds) -> None:
            for b in bounds:
                b.launch(stream)

        row = {
            "kernels_per_call": n,
            "python_loop_per_kernel": summary(
                [t / n for t in time_loop(loop, calls, repeats, stream.synchronize)]
            ),
        }
        if span is not None:

            def one_span(span=span, n=n, bounds=bounds) -> None:
                status, i = span(h, 0, n)
                if status:
                    bounds[i].check_launch_status(status, f"span launch {i}")

            row["span_per_kernel"] = summary(
                [t / n for t in time_loop(one_span, calls, repeats, stream.synchronize)]
            )
        out[str(n)] = row
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--launches", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--span-sizes", default="1,8,64,256",
        help="kernels per span call to measure (comma-separated; empty: no span mode)",
    )  # fmt: skip
    args = ap.parse_args()

    dev = open_device("cuda")
    work = Path(tempfile.mkdtemp())
    cubin = work / "k.cubin"
    src = ROOT / "hip_kernels" / "reef_test_kernels.cu"
    subprocess.run(["nvcc", "-cubin", f"-arch={dev.info.arch}", "-o", cubin, src], check=True)
    exe = work / "launch_bench"
    subprocess.run(
        ["nvcc", "-O2", "-o", exe, ROOT / "tools" / "launch_bench.cu", "-lcuda"], check=True
    )

    # C++ first and last, Python in between, so drift shows up as a C++ spread.
    def cpp() -> dict:
        res = subprocess.run(
            [exe, cubin, str(args.launches), str(args.repeats)],
            check=True,
            capture_output=True,
            text=True,
        )
        return json.loads(res.stdout)

    cpp_before = cpp()
    module = dev.load_module(cubin.read_bytes())
    kernel = module.get_kernel("empty_kernel")
    buf = dev.alloc(4)
    stream = dev.create_stream()
    cfg = LaunchConfig(1, 32)
    bound = kernel.bind(cfg, (buf, np.int32(1), np.float32(2.0)))
    launch = bound.launch
    prepacked = summary(
        time_loop(lambda: launch(stream), args.launches, args.repeats, stream.synchronize)
    )
    repack = summary(
        time_loop(
            lambda: kernel.launch(stream, cfg, buf, np.int32(1), np.float32(2.0)),
            args.launches // 4,
            args.repeats,
            stream.synchronize,
        )
    )
    paths = launch_path_variants(kernel, bound, stream)
    variants = {
        name: summary(time_loop(fn, args.launches, args.repeats, stream.synchronize))
        for name, fn in paths.items()
    }
    sizes = [int(x) for x in args.span_sizes.split(",") if x.strip()]
    spans = span_mode(kernel, buf, stream, sizes, args.launches, args.repeats)
    cpp_after = cpp()
    cpp_med = statistics.median([cpp_before["median_us"], cpp_after["median_us"]])
    for row in spans.values():
        row["python_loop_vs_cpp"] = row["python_loop_per_kernel"]["median_us"] / cpp_med
        if "span_per_kernel" in row:
            row["span_vs_cpp"] = row["span_per_kernel"]["median_us"] / cpp_med
    result = {
        **run_metadata(dev),
        "benchmark": "launch_cost",
        "launches_per_repeat": args.launches,
        "repeats": args.repeats,
        "cpp_cuLaunchKernel": {"before": cpp_before, "after": cpp_after, "median_us": cpp_med},
        "python_prepacked": prepacked,
        "python_pack_every_launch": repack,
        "python_launch_path_variants": variants,
        "ratio_prepacked_vs_cpp": prepacked["median_us"] / cpp_med,
        "c_launcher_used": bound.c_launcher is not None,
        "span": {
            "used": any("span_per_kernel" in r for r in spans.values()),
            "what": "per-kernel host us: N bound launches as one C span call vs a Python loop",
            "sizes": spans,
        },
        "goal_ratio_max": 1.1,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"{'launch path':32s} {'median us':>10s}")
    print(f"{'C++ cuLaunchKernel':32s} {cpp_med:10.2f}")
    print(f"{'Python pre-packed (BoundLaunch)':32s} {prepacked['median_us']:10.2f}")
    print(f"{'Python packing every launch':32s} {repack['median_us']:10.2f}")
    for name, v in variants.items():
        print(f"  variant {name:24s} {v['median_us']:10.2f}")
    for n, row in spans.items():
        loop_us = row["python_loop_per_kernel"]["median_us"]
        span_us = row.get("span_per_kernel", {}).get("median_us", float("nan"))
        print(f"  N={n:>4s}: Python loop {loop_us:6.2f}  span {span_us:6.2f} us/kernel "
              f"(span / C++ = {span_us / cpp_med:.3f})")  # fmt: skip
    print(f"C launcher used: {bound.c_launcher is not None}")
    print(f"ratio pre-packed / C++ = {result['ratio_prepacked_vs_cpp']:.3f} (goal <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
