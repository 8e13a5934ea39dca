#!/usr/bin/env python3
"""Launch cost: reef_rocm's pre-packed Python launch vs a C++ cuLaunchKernel loop, same run.

Both sides launch the same empty kernel (3 arguments, 1 block of 32 threads) from the same
cubin back to back on one non-blocking stream and divide the host time by the launch count.
The goal from the design: Python/C++ <= 1.1. Writes JSON with card, date and git commit.

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


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--launches", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--out", type=Path, required=True)
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
    cpp_after = cpp()
    cpp_med = statistics.median([cpp_before["median_us"], cpp_after["median_us"]])
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
        "c_launcher_used": bound._fast is not None,
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
    print(f"C launcher used: {bound._fast is not None}")
    print(f"ratio pre-packed / C++ = {result['ratio_prepacked_vs_cpp']:.3f} (goal <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
