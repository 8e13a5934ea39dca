#!/usr/bin/env python3
"""Build, on a machine with nvcc, the DKP code objects the GPU tests and tools/bench_dkp.py
use, into ``.carry/dkp/`` (the GPU host has nvcc too, but builds are kept reproducible
from here and cost it no device time):

    fixture/   tests/dkp/dkp_fixture.cu as DKP bodies (every budget) + its plain cubin
    zoo/       tiny_cnn + resnet18 (from .carry/packages) for the bit-identity test
    bench/     DISB A's models (RT vgg19, BE resnet152) for tools/bench_dkp.py (--bench;
               slow: ~5 min per budget on one core; REEF_DKP_JOBS compiles in parallel)

    python tools/build_dkp_carry.py [--out .carry/dkp] [--packages .carry/packages] [--bench]

Then carry ``.carry/dkp`` (plus .carry/packages and .carry/wheels) and run, on the GPU host,
``python -m pytest -m gpu tests/dkp -q`` and ``python tools/bench_dkp.py``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "dkp"))

from reef_rocm.dkp.build import DkpBuild, build_packages, build_sources, find_nvcc  # noqa: E402

TEST_MODELS = ("tiny_cnn", "resnet18")
TEST_BUDGETS = (32, 64, 128, 255)
BENCH_MODELS = ("vgg19", "resnet152")
# the zoo's plain kernels keep 7-9 blocks of 128 threads per SM (56-72 registers) while their
# DKP-ready bodies use 72-80: these are the occupancy classes that matter, plus the top
BENCH_BUDGETS = (56, 64, 72, 80, 255)


def fixture_cubin(out: Path, arch: str) -> bytes:
    """The fixture's own kernels, compiled as plain kernels (the unpadded reference)."""
    import dkp_fixture as fixture

    nvcc = find_nvcc()
    if nvcc is None:
        raise SystemExit("nvcc not found")
    out.mkdir(parents=True, exist_ok=True)
    dst = out / "fixture.cubin"
    subprocess.run([nvcc, "-cubin", f"-arch={arch}", "-O3", "-w", str(fixture.SOURCE),
                    "-o", str(dst)], check=True)  # fmt: skip
    return dst.read_bytes()


def build_fixture(out: Path, arch: str = "sm_90") -> DkpBuild:
    import dkp_fixture as fixture

    b = build_sources([("fx", fixture.SOURCE.read_text(), fixture.kernels())], out,
                      vendor="nvidia", arch=arch, budgets=TEST_BUDGETS)  # fmt: skip
    fixture_cubin(out, arch)
    return b


def _find(packages: Path, names: tuple[str, ...], arch: str) -> list[Path]:
    found = []
    for n in names:
        p = packages / f"{n}-cuda_{arch}"
        if not (p / "manifest.json").is_file():
            raise SystemExit(f"{p}: no package (build it with `reef compile {n} --target "
                             f"cuda:{arch}` or tools/prepare_gpu_carry.sh)")  # fmt: skip
        found.append(p)
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / ".carry" / "dkp")
    ap.add_argument("--packages", type=Path, default=REPO / ".carry" / "packages")
    ap.add_argument("--arch", default="sm_90")
    ap.add_argument("--bench", action="store_true", help="also the DISB models (slow)")
    a = ap.parse_args()
    t = time.time()
    build_fixture(a.out / "fixture", a.arch)
    print(f"fixture: {time.time() - t:.0f} s", flush=True)
    t = time.time()
    build_packages(_find(a.packages, TEST_MODELS, a.arch), a.out / "zoo", budgets=TEST_BUDGETS)
    print(f"zoo ({', '.join(TEST_MODELS)}): {time.time() - t:.0f} s", flush=True)
    if a.bench:
        t = time.time()
        build_packages(_find(a.packages, BENCH_MODELS, a.arch), a.out / "bench",
                       budgets=BENCH_BUDGETS)  # fmt: skip
        print(f"bench ({', '.join(BENCH_MODELS)}): {time.time() - t:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
