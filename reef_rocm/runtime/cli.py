"""``reef profile`` and ``reef bench`` (models, disb, plot): model packages on a GPU, through the
runtime and the scheduler.

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

    register_bench(subparsers)


def register_bench(subparsers: Any) -> None:
    """``reef bench`` is a group: ``models`` (the zoo benchmark, runtime.bench), ``disb``
    (DISB workloads under every policy), ``plot`` (figures of a DISB results file) and
    ``compare`` (do two DISB results agree)."""
    from reef_rocm.bench.disb.cli import add_compare_parser, add_disb_parser, add_plot_parser

    bench = subparsers.add_parser("bench", help="benchmarks: models, disb, plot, compare")
    bench.set_defaults(func=lambda _args: bench.print_help() or 2)
    sub = bench.add_subparsers(dest="bench_command", metavar="BENCHMARK")
    # every argument, --options and --help included, goes to runtime.bench's own parser
    # (prefix "+" so argparse leaves "-..." words alone)
    p = sub.add_parser(
        "models",
        help="benchmark packages on a GPU (runtime.bench)",
        prefix_chars="+",
        add_help=False,
    )
    p.add_argument("bench_args", nargs=argparse.REMAINDER,
                   help="arguments of python -m reef_rocm.runtime.bench")  # fmt: skip
    p.set_defaults(func=cmd_bench)
    add_disb_parser(sub)
    add_plot_parser(sub)
    add_compare_parser(sub)


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
