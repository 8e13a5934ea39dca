"""``reef profile`` and ``reef bench``: model packages on a GPU, through the runtime.

Heavy imports (GPU bindings) happen inside the handlers so ``reef --help`` stays fast.
"""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("profile", help="per-kernel timing profile of a package (GPU)")
    p.add_argument("package", help="package directory")
    p.add_argument(
        "--out", default=None,
        help="profile JSON to write (default: PACKAGE/profiles/<device arch>-<variant>.json, "
        "where the scheduler's load_profile finds it)",
    )  # fmt: skip
    p.add_argument("--variant", default="plain")
    p.add_argument("--backend", default="auto")
    p.add_argument("--repeats", type=int, default=10)
    p.set_defaults(func=cmd_profile)

    p = subparsers.add_parser("bench", help="benchmark packages on a GPU (runtime.bench)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="arguments of python -m reef_rocm.runtime.bench")  # fmt: skip
    p.set_defaults(func=cmd_bench)


def cmd_profile(args: argparse.Namespace) -> int:
    from reef_rocm.gpu import open_device
    from reef_rocm.package.files import ModelPackage
    from reef_rocm.runtime.executor import ModelInstance, profile_path, write_profile

    pkg = ModelPackage.load(args.package)  # a bad package fails before the GPU is touched
    dev = open_device(args.backend)
    with ModelInstance(dev, pkg, variant=args.variant) as inst:
        for i, a in enumerate(pkg.reference_inputs()):
            inst.set_input(i, a)
        prof = inst.profile(repeats=args.repeats)
    out = args.out or profile_path(pkg, dev.info.arch, args.variant)
    write_profile(prof, out)
    print(f"{pkg.name}: {len(prof['kernels'])} kernels, {prof['total_us_median']:.1f} us -> {out}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from reef_rocm.runtime.bench import main

    rest = [a for a in args.bench_args if a != "--"]
    return main(rest)
