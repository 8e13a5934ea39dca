"""``reef bench disb`` and ``reef bench plot`` (registered by reef_rocm.runtime.cli under
``reef bench``). Heavy imports happen in the handlers."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

from reef_rocm.errors import ReefError


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers a,b,c; got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"values must be > 0, got {text!r}")
    return vals


def _scale(text: str) -> str:
    if text == "auto":
        return text
    try:
        if float(text) > 0:
            return text
    except ValueError:
        pass
    raise argparse.ArgumentTypeError(f"--rt-scale takes 'auto' or a factor > 0, got {text!r}")


def add_disb_parser(sub: Any) -> None:
    p = sub.add_parser(
        "disb",
        help="DISB workloads A-E under every scheduling policy (tables, JSON, plots)",
        description="Run DISB workloads under every scheduling policy the device supports, "
        "one after another in one process, with the same seeded arrivals for each; print a "
        "table, write a results JSON and plots. See docs/reproducing.md.",
    )
    p.add_argument("workload", help="A, B, C, D, E, all, or a workload JSON file")
    p.add_argument(
        "--policies",
        default=None,
        help="comma-separated subset (default: every policy the device supports)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds measured per run (default: the workload's, 6 s for A-E; 0.5 s on sim)",
    )
    p.add_argument(
        "--warmup",
        type=float,
        default=None,
        help="seconds of warm-up before measuring (default: the workload's, 1 s; 0.1 s on sim)",
    )
    p.add_argument("--seed", type=int, default=None, help="override the workload's seed")
    p.add_argument("--backend", default="auto", choices=["auto", "cuda", "hip", "sim"])
    p.add_argument(
        "--packages",
        default=None,
        help="directory of compiled model packages (on sim: sim packages; "
        "default on sim: build them from --profiles)",
    )
    p.add_argument(
        "--profiles",
        default=None,
        help="sim only: per-kernel profiles directory (default docs/results/profiles/h200)",
    )
    p.add_argument("--sim-arch", default="sm_90", help="sim only: architecture model")
    p.add_argument(
        "--sim-compute-units",
        type=int,
        default=None,
        help="sim only: CUs of the simulated GPU (default 16: a coarse, fast replay)",
    )
    p.add_argument(
        "--sim-max-rounds",
        type=int,
        default=None,
        help="sim only: at most this many rounds of blocks per kernel (default 4)",
    )
    p.add_argument(
        "--sim-exact",
        action="store_true",
        help="sim only: replay the profiled grids on the profiled GPU's 132 SMs (slow)",
    )
    p.add_argument(
        "--sim-profile-compute-units",
        type=int,
        default=132,
        help="sim only: SMs/CUs of the GPU the profiles were measured on (H200: 132)",
    )
    p.add_argument("--out", default="disb-results", help="results directory")
    p.add_argument(
        "--cap",
        type=float,
        default=None,
        help="BE device-queue cap in us of queued work (default: the scheduler's)",
    )
    p.add_argument(
        "--sweep-cap",
        type=_floats,
        default=[],
        metavar="US,US,...",
        help="also run the capped policies at these device-queue caps (Fig. 14)",
    )
    p.add_argument(
        "--sweep-be-kernel-us",
        type=_floats,
        default=[],
        metavar="US,US,...",
        help="sim only: also run the RT clients against a synthetic BE model made of kernels "
        "of each length (Fig. 12)",
    )
    p.add_argument(
        "--sweep-policies",
        default=None,
        help="policies of the sweeps (default: cap sweep reset+poll, else reset; kernel "
        "sweep every capped policy)",
    )
    p.add_argument(
        "--rt-scale",
        type=_scale,
        default=None,
        help="also run each open-loop workload with RT rates x FACTOR; 'auto': "
        "only workloads whose RT load overloads the GPU, scaled to ~50%% RT busy",
    )
    p.add_argument(
        "--be-alone-policy",
        default="streams",
        help="policy of the BE-alone reference run (default streams)",
    )
    p.add_argument(
        "--inputs",
        choices=["preloaded", "per-request"],
        default="preloaded",
        help="preloaded (default, as REEF's evaluation): inputs uploaded once before a run, "
        "no transfer on a request's path; per-request: every request uploads its inputs",
    )
    p.add_argument(
        "--dkp-build",
        default=None,
        metavar="DIR",
        help="DKP build of the workload's models (reef_rocm.dkp.build; its dkp_profile-<arch>"
        ".json from tools/dkp_profile.py) for the +dkp policies; without it they are skipped",
    )
    p.add_argument(
        "--rt-graphs",
        action="store_true",
        help="launch each RT inference as one launch graph (CUDA; SchedOptions.rt_graphs)",
    )
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--no-progress-bar", action="store_true", help="plain progress lines")
    p.set_defaults(func=cmd_disb)  # fmt: skip


def add_plot_parser(sub: Any) -> None:
    p = sub.add_parser("plot", help="redraw the figures (and table) of a DISB results JSON")
    p.add_argument("results", help="results JSON written by reef bench disb")
    p.add_argument("--out", default=None, help="directory for the PNGs (default: beside it)")
    p.set_defaults(func=cmd_plot)


def add_compare_parser(sub: Any) -> None:
    p = sub.add_parser("compare", help="do two DISB results agree? (the stability check)")
    p.add_argument("first", help="results JSON of run 1")
    p.add_argument("second", help="results JSON of run 2 (same command)")
    p.add_argument("--tolerance", type=float, default=0.05, help="relative (default 0.05)")
    p.set_defaults(func=cmd_compare)


def _read_results(path: Path) -> dict[str, Any]:
    from reef_rocm.bench.disb.schema import ResultsError, validate_results

    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ReefError(f"{path}: cannot read results JSON: {e}") from None
    try:
        validate_results(doc)
    except ResultsError as e:
        raise ResultsError(f"{path}: not a DISB results file: {e}") from None
    return doc


def cmd_compare(args: argparse.Namespace) -> int:
    from reef_rocm.bench.disb.stability import compare_documents, format_comparison

    a, b = _read_results(Path(args.first)), _read_results(Path(args.second))
    rows, ok = compare_documents(a, b, args.tolerance)
    print(format_comparison(rows, args.tolerance, bool(a.get("simulated"))))
    return 0 if ok else 1


def _split(text: str | None) -> list[str] | None:
    return None if text is None else [x.strip() for x in text.split(",") if x.strip()]


def result_stem(doc: dict[str, Any], workload_spec: str) -> str:
    label = "all" if workload_spec.lower() == "all" else Path(workload_spec).stem
    dev = doc["device"]
    tag = f"{dev['backend']}_{dev['arch'] or 'unknown'}"
    return re.sub(r"[^A-Za-z0-9_.+-]", "_", f"disb_{label}_{tag}")


def _sim_model_options(args: argparse.Namespace) -> dict[str, Any]:
    from reef_rocm.bench.disb import runner

    if args.sim_exact:
        if args.sim_compute_units or args.sim_max_rounds:
            raise ReefError("--sim-exact replays the profiled grids; drop --sim-compute-units "
                            "and --sim-max-rounds")  # fmt: skip
        return {"sim_compute_units": args.sim_profile_compute_units, "sim_max_rounds": None,
                "sim_profile_compute_units": args.sim_profile_compute_units}  # fmt: skip
    return {
        "sim_compute_units": args.sim_compute_units or runner.SIM_COMPUTE_UNITS,
        "sim_max_rounds": args.sim_max_rounds or runner.SIM_MAX_ROUNDS,
        "sim_profile_compute_units": args.sim_profile_compute_units,
    }


def cmd_disb(args: argparse.Namespace) -> int:
    from reef_rocm.bench.disb.report import results_table
    from reef_rocm.bench.disb.runner import DisbBench, DisbOptions
    from reef_rocm.bench.meta import write_result

    opts = DisbOptions(
        workloads=args.workload,
        policies=_split(args.policies),
        duration_s=args.duration,
        warmup_s=args.warmup,
        seed=args.seed,
        backend=args.backend,
        packages=args.packages,
        profiles=args.profiles,
        out=args.out,
        cap_us=args.cap,
        sweep_cap=args.sweep_cap,
        sweep_policies=_split(args.sweep_policies),
        sweep_be_kernel_us=args.sweep_be_kernel_us,
        rt_scale=args.rt_scale,
        be_alone_policy=args.be_alone_policy,
        inputs=args.inputs,
        dkp_build=args.dkp_build,
        rt_graphs=args.rt_graphs,
        sim_arch=args.sim_arch,
        **_sim_model_options(args),
        plots=not args.no_plots,
        progress_bar=False if args.no_progress_bar else None,
    )
    bench = DisbBench(opts)
    try:
        doc = bench.run()
        stem = result_stem(doc, args.workload)
        path = write_result(Path(args.out) / f"{stem}.json", doc, bench._meta_device)
    finally:
        bench.close()
    prefix = "[simulated] " if doc["simulated"] else ""
    print("\n".join(prefix + line for line in results_table(doc).splitlines()))
    print(f"{prefix}results -> {path}")
    if opts.plots:
        _plots(doc, Path(args.out), stem, prefix)
    return 0


def _plots(doc: dict[str, Any], out: Path, stem: str, prefix: str) -> None:
    from reef_rocm.bench.disb.plots import plot_results

    try:
        files = plot_results(doc, out, stem)
    except ReefError as e:  # no matplotlib: the JSON is written, the plots can come later
        print(f"{prefix}plots skipped: {e}")
        return
    for f in files:
        print(f"{prefix}plot -> {f}")


def cmd_plot(args: argparse.Namespace) -> int:
    from reef_rocm.bench.disb.report import results_table

    path = Path(args.results)
    doc = _read_results(path)
    prefix = "[simulated] " if doc.get("simulated") else ""
    print("\n".join(prefix + line for line in results_table(doc).splitlines()))
    _plots(doc, Path(args.out) if args.out else path.parent, path.stem, prefix)
    return 0
