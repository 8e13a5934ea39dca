#!/usr/bin/env python3
"""Build the kernel-transformer GPU fixtures (needs apache-tvm and nvcc): cubins of the
plain / preemptible / DKP-ready variants of the transformer's test workloads
(tests/compiler/transform_workloads.py), their inputs and references, and manifest.json.

    tools/build_transform_fixtures.py [OUTDIR=.carry/transform] [--no-bench] [--only NAME ...]

The GPU tests (tests/compiler/test_transform_gpu.py) and the poll-interval benchmark
(tools/bench_poll_interval.py) read that folder on a host without TVM.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests" / "compiler")]

import transform_workloads as tw  # noqa: E402
import tvm  # noqa: E402
from tvm import tirx  # noqa: E402

from reef_rocm.compiler import transform as tr  # noqa: E402


def _buffer_params(func: tirx.PrimFunc) -> list[dict]:
    out = []
    for p in func.params:
        ty = p.ty
        if isinstance(ty, tirx.BufferType):
            out.append(
                {
                    "name": str(p.name),
                    "shape": [int(s) for s in ty.shape],
                    "dtype": str(ty.dtype),
                }
            )
    return out


def build_fixtures(
    outdir: str | Path,
    names: list[str] | None = None,
    intervals: tuple[int, ...] = tw.DEFAULT_POLL_INTERVALS,
    bench: bool = True,
    seed: int = 0,
) -> dict:
    """Write cubins, inputs/references (.npy) and manifest.json under ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "format": 1,
        "arch": tw.CUDA_TARGET["arch"],
        "tvm": tvm.__version__,
        "flag_param": tr.FLAG_PARAM,
        "slot_param": tr.SLOT_PARAM,
        "poll_intervals": list(intervals),
        "workloads": {},
    }
    for wl in tw.workloads(tw.CUDA_TARGET, bench=bench):
        if names and wl.name not in names:
            continue
        print(f"[fixtures] {wl.name}", file=sys.stderr, flush=True)
        shapes = [tr.kernel_shape(r).as_json() for r in tr.kernel_roots(wl.func)]
        bufs = _buffer_params(wl.func)
        n_in = len(bufs) - wl.n_outputs
        for i, b in enumerate(bufs):
            b["role"] = "input" if i < n_in else "output"
        entry: dict = {
            "kernels": shapes,
            "buffers": bufs,
            "gpu_test": wl.gpu_test,
            "notes": wl.notes,
            "variants": {},
        }
        if wl.gpu_test and wl.reference is not None:
            inputs = [rng.standard_normal(b["shape"]).astype(b["dtype"]) for b in bufs[:n_in]]
            refs = wl.reference(inputs)
            for b, arr in zip(bufs, list(inputs) + list(refs), strict=True):
                fname = f"{wl.name}.{b['name']}.npy"
                np.save(outdir / fname, np.ascontiguousarray(arr, dtype=b["dtype"]))
                b["file"] = fname
        for vname, vmod in tw.variants(wl.func, intervals).items():
            build = tw.build_cuda(vmod)
            fname = f"{wl.name}.{vname}.cubin"
            (outdir / fname).write_bytes(build.cubin or b"")
            func = vmod[str(wl.func.attrs["global_symbol"])]
            info: dict = {
                "cubin": fname,
                "kernels": [{"name": k.name, "params": k.params} for k in build.kernels],
            }
            if tr.ATTR_PREEMPTIBLE in func.attrs:
                info["preempt"] = tr.preempt_info(func)
            if tr.ATTR_DKP in func.attrs:
                info["dkp"] = tr.dkp_info(func)
            entry["variants"][vname] = info
        manifest["workloads"][wl.name] = entry
    if not names or "dispatch" in names:
        manifest["dispatch"] = _dispatch_fixtures(outdir)
    manifest["rows"] = {
        "blocks": tw.ROWS_BLOCKS,
        "threads": tw.ROWS_THREADS,
        "steps": tw.ROWS_STEPS,
    }
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _dispatch_fixtures(outdir: Path) -> dict:
    """matmul (first) and conv (second) fused into one dispatcher launch, plain and
    preemptible; the GPU test checks both outputs against the plain kernels'."""
    wl = {w.name: w for w in tw.workloads(tw.CUDA_TARGET)}
    first, second = wl["matmul"].func, wl["conv"].func
    out: dict = {"first": "matmul", "second": "conv", "variants": {}}
    pre = {n: tr.make_preemptible(tvm.IRModule({n: wl[n].func}))[n] for n in ("matmul", "conv")}
    for vname, (a, b) in {
        "plain": (first, second),
        "pre": (pre["matmul"], pre["conv"]),
    }.items():
        merged = tr.merge_dkp_kernels(a, b, name="reef_dispatch")
        build = tw.build_cuda(tvm.IRModule({"reef_dispatch": merged}))
        fname = f"dispatch.{vname}.cubin"
        (outdir / fname).write_bytes(build.cubin or b"")
        out["variants"][vname] = {
            "cubin": fname,
            "kernels": [{"name": k.name, "params": k.params} for k in build.kernels],
            "info": json.loads(str(merged.attrs[tr.ATTR_DISPATCH])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=".carry/transform")
    ap.add_argument("--only", nargs="*", help="workload names (default: all)")
    ap.add_argument("--no-bench", action="store_true", help="skip the large bench kernels")
    ap.add_argument(
        "--intervals",
        default=",".join(map(str, tw.DEFAULT_POLL_INTERVALS)),
        help="poll intervals to build (comma separated)",
    )
    args = ap.parse_args(argv)
    intervals = tuple(int(x) for x in args.intervals.split(",") if x)
    m = build_fixtures(args.outdir, args.only, intervals, bench=not args.no_bench)
    print(f"wrote {len(m['workloads'])} workloads to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
