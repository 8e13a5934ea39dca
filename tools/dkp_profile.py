#!/usr/bin/env python3
"""Measure the DKP profile of a build on this GPU: per kernel of every model in the build
(found in --packages), its plain time and its time through the DKP dispatcher with each proxy
kernel, on the RT/BE split the selection gives it (``reef_rocm.dkp.profile``). The
scheduler's ``+dkp`` policies pad an RT kernel only where that time is within
``SchedOptions.dkp_tolerance`` of plain, and take the kernel times for rule 1 from it.

    python tools/dkp_profile.py --build .carry/dkp/bench --packages .carry/packages
        [--models vgg19,resnet152] [--repeats 15] [--out FILE]

Default output: BUILD/dkp_profile-<arch>.json (where the scheduler looks); a summary (per
model: kernels within 2 % / 10 % with their best proxy) is printed and, with --result, also
written as a result JSON (reef_rocm.bench.meta.write_result).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from reef_rocm.bench.disb.packages import find_model_package  # noqa: E402
from reef_rocm.bench.meta import write_result  # noqa: E402
from reef_rocm.dkp.build import load_build  # noqa: E402
from reef_rocm.dkp.profile import measure_build  # noqa: E402
from reef_rocm.gpu import open_device  # noqa: E402
from reef_rocm.package.files import ModelPackage  # noqa: E402


def summary(doc: dict) -> dict:
    out = {}
    for model, rows in doc["models"].items():
        best = []
        for k in rows:
            vals = [v for v in k["padded_us"].values() if v is not None]
            best.append(min(vals) / k["plain_us"] if vals and k["plain_us"] > 0 else None)
        ok = [b for b in best if b is not None]
        out[model] = {"kernels": len(rows), "within_2pct": sum(b <= 1.02 for b in ok),
                      "within_10pct": sum(b <= 1.10 for b in ok),
                      "best_ratio_median": sorted(ok)[len(ok) // 2] if ok else None,
                      "plain_us_total": sum(k["plain_us"] for k in rows)}  # fmt: skip
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", type=Path, default=REPO / ".carry" / "dkp" / "bench")
    ap.add_argument("--packages", type=Path, default=REPO / ".carry" / "packages")
    ap.add_argument("--models", default=None, help="comma-separated (default: the build's)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--backend", default="cuda")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--result", type=Path, default=None, help="also write the summary here")
    a = ap.parse_args()
    build = load_build(a.build)
    models = a.models.split(",") if a.models else list(build.sources)
    dev = open_device(a.backend)
    try:
        pkgs = [ModelPackage.load(find_model_package(a.packages, m, dev.info.backend,
                                                     dev.info.arch)) for m in models]  # fmt: skip

        def progress(name: str, i: int, n: int) -> None:
            if i + 1 == n or (i + 1) % 20 == 0:
                print(f"{name}: {i + 1}/{n} kernels", flush=True)

        path = measure_build(dev, build, pkgs, a.repeats, a.out, progress)
        s = summary(json.loads(path.read_text()))
        print(json.dumps(s, indent=1))
        print(f"DKP profile -> {path}")
        if a.result is not None:
            doc = {"benchmark": "dkp_profile", "build": str(a.build), "profile": str(path),
                   "summary": s}  # fmt: skip
            print(f"wrote {write_result(a.result, doc, dev, ' '.join(sys.argv))}")
    finally:
        dev.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
