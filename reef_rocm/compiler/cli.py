"""``reef compile``: a model (zoo name, ONNX, torch.export) -> a model package.

Heavy imports (TVM, GPU bindings) happen inside the handlers so ``reef --help`` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reef_rocm.bench.meta import write_result


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "compile",
        help="compile a model (zoo name, .onnx, torch.export .pt2) into a model package",
        description="Compile a model with stock TVM into a package of kernels over named "
        "buffers (docs/package_format.md). Packages are cached by content hash.",
    )
    p.add_argument(
        "models",
        nargs="*",
        metavar="MODEL",
        help="zoo model name (see --list), path to .onnx, or torch.export .pt2",
    )
    p.add_argument(
        "--target",
        default="cuda:sm_90",
        help="cuda:sm_90|cuda:sm_80|rocm:gfx906|rocm:gfx908|rocm:gfx90a|rocm:gfx942",
    )
    p.add_argument("--zoo", action="store_true", help="compile every zoo model")
    p.add_argument("--list", action="store_true", help="list the zoo models and exit")
    p.add_argument(
        "--variants",
        default="auto",
        help="comma list of plain,preemptible,dkp (default: all available)",
    )
    p.add_argument(
        "--out",
        default=None,
        help="package directory (default ${REEF_CACHE:-~/.cache/reef_rocm}/packages)",
    )
    p.add_argument("--seed", type=int, default=0, help="weight generator seed")
    p.add_argument(
        "--poll-interval",
        type=int,
        default=16,
        help="preemptible variants: give loops longer than N poll points; N is the default "
        "of the kernels' reef_poll_every launch argument (the scheduler passes its own per "
        "kernel, so one binary serves every interval); 0 = no poll points (default 16)",
    )
    p.add_argument(
        "--tuning-db",
        default=None,
        metavar="DIR",
        help="tuning database to apply (default: the one shipped for the target, "
        "reef_rocm/compiler/tune/db/; AMD targets have none)",
    )
    p.add_argument(
        "--untuned",
        action="store_true",
        help="apply no tuning database: dlight's default schedules for every kernel",
    )
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.add_argument("--no-reference", action="store_true", help="skip the CPU reference")
    p.add_argument(
        "--record",
        default=None,
        metavar="JSON",
        help="write per-model compile seconds and kernel counts to this file",
    )
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=cmd_compile)  # fmt: skip


def cmd_compile(args: argparse.Namespace) -> int:
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.zoo import ZOO
    from reef_rocm.errors import ModelError

    if args.list:
        for m in ZOO.values():
            print(f"{m.name:14s} {m.description}")
        return 0
    spec = parse_target(args.target)  # an unsupported target fails before anything else
    models = list(ZOO) if args.zoo else list(args.models)
    if not models:
        raise ModelError("no model given (name a zoo model, an .onnx/.pt2 file, or --zoo)")
    for m in models:  # unknown names and missing files fail before any compilation
        if m not in ZOO and not Path(m).is_file():
            if Path(m).suffix in (".onnx", ".pt2"):
                raise ModelError(f"{m}: no such file")
            raise ModelError(f"unknown model {m!r}; zoo models: {', '.join(ZOO)}")

    from reef_rocm.compiler.build import compile_model

    record: dict[str, Any] = {}
    for m in models:
        r = compile_model(
            m, spec.name, out_dir=args.out, variants=args.variants, seed=args.seed,
            poll_interval=args.poll_interval or None, force=args.force,
            progress=not args.quiet,
            reference=not args.no_reference, tuning_db=args.tuning_db, untuned=args.untuned,
        )  # fmt: skip
        kernels = {v: len(x.kernels) for v, x in r.manifest.variants.items()}
        state = "cached" if r.cached else f"built in {r.seconds:.1f} s"
        tuned = len(r.manifest.model.get("tuning", {}).get("tuned_kernels", []))
        print(f"{r.manifest.model['name']}: {r.path} ({state}; kernels {kernels}; tuned {tuned})")
        record[r.manifest.model["name"]] = {
            "seconds": round(r.seconds, 2), "cached": r.cached, "kernels": kernels,
            "steps_s": {k: round(v, 2) for k, v in r.steps.items()},
            "tuning": r.manifest.model.get("tuning"),
        }  # fmt: skip
    if args.record:
        import tvm

        doc = {
            "target": spec.name,
            "tvm": str(tvm.__version__),
            "command": "reef compile " + " ".join(sys.argv[2:]),
            "total_seconds": round(sum(v["seconds"] for v in record.values()), 1),
            "models": record,
        }
        write_result(args.record, doc)
    return 0
