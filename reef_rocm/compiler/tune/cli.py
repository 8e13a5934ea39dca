"""``reef tune``: search kernel schedules and keep the fastest in a tuning database.

    reef tune MODEL... | --zoo [--target T]   in place: export, measure here, import
    reef tune MODEL... --export-only --bundle DIR   batch: write a bundle for a GPU host
    reef tune measure BUNDLE --out timings.json     on the GPU host (no TVM needed)
    reef tune import timings.json [--db DIR]        back on the compile host
    reef tune show [--db DIR]                       what the database holds
    reef tune forget --unbuildable [--tasks N,...]  re-admit candidates refused as unbuildable

Heavy imports (TVM, GPU bindings) happen in the handlers; ``measure`` never imports TVM.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from reef_rocm.errors import ModelError

ACTIONS = ("measure", "import", "show", "export", "forget")


def default_db(target: str) -> Path:
    import os

    root = Path(os.environ.get("REEF_CACHE", Path.home() / ".cache" / "reef_rocm"))
    return root / "tuning" / target.replace(":", "_")


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "tune",
        help="tune kernel schedules (in place, or export/measure/import bundles)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        # every word after "tune" is parsed here by the action's own parser (below), so this
        # one takes no options: "-" words are not its options
        prefix_chars="+",
        add_help=False,
    )
    p.add_argument("words", nargs="*")
    p.set_defaults(func=cmd_tune)


def _tune_parser(export_only: bool = False) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="reef tune" + (" export" if export_only else ""),
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("models", nargs="*", metavar="MODEL", help="zoo model, .onnx or .pt2")
    p.add_argument("--zoo", action="store_true", help="every zoo model")
    p.add_argument("--target", default="cuda:sm_90")
    p.add_argument("--db", default=None, help="tuning database directory (default: the cache's)")
    p.add_argument("--trials", type=int, default=32, help="new candidates per task (default 32)")
    p.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="export time budget: later tasks get only their default schedule",
    )
    p.add_argument(
        "--coverage",
        type=float,
        default=0.99,
        help="tune the heaviest tasks that carry this share of the weight (0.99)",
    )
    p.add_argument("--max-tasks", type=int, default=None)
    p.add_argument(
        "--tasks",
        default=None,
        help="comma list of kernel (PrimFunc) names: tune only these (after --coverage)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--strategy",
        choices=("auto", "random", "evolve"),
        default="auto",
        help="auto: mutate the database's best schedules where it has some, "
        "else random draws from the design space",
    )
    p.add_argument("--parents", type=int, default=8, help="evolve: best records per task")
    p.add_argument(
        "--untuned-first",
        action="store_true",
        help="tasks without a record that beats their default first (then heaviest first), "
        "so a --minutes budget goes to them before the tuned ones get children",
    )
    p.add_argument("--round", type=int, default=None, help="round number (default: next)")
    p.add_argument("--bundle", default=None, help="bundle directory to write")
    p.add_argument(
        "--export-only",
        action="store_true",
        default=export_only,
        help="batch mode: write the bundle and stop",
    )
    p.add_argument("--backend", default="auto", help="in-place measurement backend")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--quiet", action="store_true")
    return p


def cmd_tune(args: argparse.Namespace) -> int:
    words = list(args.words)
    if words and words[0] in ("-h", "--help"):
        _tune_parser().print_help()
        return 0
    if words and words[0] == "measure":
        return _measure(words[1:])
    if words and words[0] == "import":
        return _import(words[1:])
    if words and words[0] == "show":
        return _show(words[1:])
    if words and words[0] == "forget":
        return _forget(words[1:])
    if words and words[0] == "export":
        return _run(_tune_parser(export_only=True).parse_args(words[1:]))
    return _run(_tune_parser().parse_args(words))


def _run(a: argparse.Namespace) -> int:
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.zoo import ZOO

    spec = parse_target(a.target)
    models = list(ZOO) if a.zoo else list(a.models)
    if not models:
        raise ModelError("no model given (name a zoo model, an .onnx/.pt2 file, or --zoo)")
    for m in models:
        if m not in ZOO and not Path(m).is_file():
            raise ModelError(f"unknown model {m!r}; zoo models: {', '.join(ZOO)}")
    from reef_rocm.compiler.tune.database import TuneDatabase
    from reef_rocm.compiler.tune.export import export_bundle
    from reef_rocm.compiler.tune.tasks import extract_tasks, select_tasks

    db_dir = Path(a.db) if a.db else default_db(spec.name)
    db = TuneDatabase(db_dir)
    tasks = select_tasks(extract_tasks(models, spec.name), a.coverage, a.max_tasks)
    if a.tasks:
        wanted = {n.strip() for n in a.tasks.split(",") if n.strip()}
        unknown = wanted - {t.name for t in tasks}
        if unknown:
            raise ModelError(
                f"no tunable kernel {', '.join(sorted(unknown))} among the selected tasks of "
                f"{', '.join(models)} ({', '.join(t.name for t in tasks)})"
            )
        tasks = [t for t in tasks if t.name in wanted]
    if a.untuned_first:
        tasks.sort(key=lambda t: _is_tuned(db, t.workload_hash))  # stable: heaviest first
    rnd = a.round or 1 + len(list((db_dir / "bundles").glob("round*")))
    bundle = Path(a.bundle) if a.bundle else db_dir / "bundles" / f"round{rnd}"
    stats = export_bundle(
        tasks,
        spec,
        bundle,
        a.trials,
        seed=a.seed + 1000 * rnd,
        round_no=rnd,
        skip=db.skip_map(),
        parents=None if a.strategy == "random" else db.parents_map(a.parents),
        minutes=a.minutes,
        progress=not a.quiet,
    )
    print(
        f"bundle {bundle}: {stats.tasks} tasks, {stats.candidates} candidates "
        f"({stats.seconds:.0f} s; dropped {stats.dropped})"
    )
    if a.export_only:
        print(
            f"measure on the GPU host: python -m reef_rocm.cli tune measure {bundle} "
            f"--out timings.json\nthen: reef tune import timings.json --bundle {bundle} "
            f"--db {db_dir}"
        )
        return 0
    from reef_rocm.compiler.tune.measure import MeasureOptions, measure_bundle
    from reef_rocm.gpu import open_device

    with open_device(a.backend) as dev:
        doc = measure_bundle(bundle, dev, MeasureOptions(repeats=a.repeats), not a.quiet)
        _write_timings(bundle / "timings.json", doc, dev)
    added = db.import_timings(doc, bundle)
    print(f"database {db_dir}: {added}")
    _check_buildable(db, spec)
    _print_summary(db)
    return 0


def _check_buildable(db: Any, spec: Any, keep: int | None = None) -> None:
    """Drop records a package variant cannot be built from (compat.py), then prune."""
    from reef_rocm.compiler.tune.compat import drop_unbuildable

    for line in drop_unbuildable(db, spec):
        print(line)
    if keep is not None:
        print(f"pruned {db.prune(keep)} records (kept the {keep} fastest per workload)")
    db.save()


def _is_tuned(db: Any, workload_hash: str) -> bool:
    best, default = db.best(workload_hash), db.default_us(workload_hash)
    return best is not None and (default is None or best[0] * 1e6 < default)


def _write_timings(path: Path, doc: dict[str, Any], dev: Any) -> None:
    from reef_rocm.bench.meta import write_result

    write_result(path, doc, device=dev, command="reef tune " + " ".join(sys.argv[2:]))


def _measure(words: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="reef tune measure", description="time a bundle's candidates on this GPU (no TVM)"
    )
    p.add_argument("bundle")
    p.add_argument("--out", required=True, help="timings JSON to write")
    p.add_argument("--backend", default="auto", help="auto|cuda|hip")
    p.add_argument("--repeats", type=int, default=15)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tasks", default=None, help="comma list of task ids (default all)")
    p.add_argument(
        "--minutes", type=float, default=None, help="time budget: stop and write what was measured"
    )
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(words)
    from reef_rocm.compiler.tune.bundle import load_bundle
    from reef_rocm.compiler.tune.measure import MeasureOptions, measure_bundle
    from reef_rocm.gpu import open_device

    bundle = load_bundle(a.bundle)  # a bad bundle fails before the GPU is opened
    tasks = tuple(int(t) for t in a.tasks.split(",")) if a.tasks else None
    opts = MeasureOptions(
        warmup=a.warmup, repeats=a.repeats, seed=a.seed, tasks=tasks, minutes=a.minutes
    )
    with open_device(a.backend) as dev:
        doc = measure_bundle(bundle, dev, opts, not a.quiet)
        _write_timings(Path(a.out), doc, dev)
    valid = sum(1 for r in doc["results"] if r["valid"])
    print(
        f"{a.out}: {len(doc['results'])} candidates measured, {valid} valid"
        + (f"; stopped: {doc['stopped']}" if doc["stopped"] else "")
    )
    return 0


def _import(words: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="reef tune import", description="record measured timings in the tuning database"
    )
    p.add_argument("timings")
    p.add_argument("--bundle", default=None, help="bundle directory (default: the one it names)")
    p.add_argument("--db", default=None)
    p.add_argument(
        "--keep", type=int, default=None, help="keep only the K fastest records per workload"
    )
    a = p.parse_args(words)
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.database import TuneDatabase, _load_timings

    doc = _load_timings(a.timings)
    target = (doc.get("bundle") or {}).get("target") or "cuda:sm_90"
    db_dir = Path(a.db) if a.db else default_db(target)
    db = TuneDatabase(db_dir)
    added = db.import_timings(doc, a.bundle)
    print(f"database {db_dir}: {added}")
    _check_buildable(db, parse_target(target), a.keep)
    _print_summary(db)
    return 0


def _show(words: list[str]) -> int:
    p = argparse.ArgumentParser(prog="reef tune show")
    p.add_argument("--db", default=None)
    p.add_argument("--target", default="cuda:sm_90")
    p.add_argument("--json", action="store_true")
    a = p.parse_args(words)
    from reef_rocm.compiler.tune.database import TuneDatabase

    db = TuneDatabase(Path(a.db) if a.db else default_db(a.target))
    if a.json:
        print(json.dumps(db.summary(), indent=1))
    else:
        _print_summary(db)
    return 0


def _forget(words: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="reef tune forget",
        description="forget measured candidates so that the next export may draw them again",
    )
    p.add_argument(
        "--unbuildable",
        action="store_true",
        required=True,
        help="the candidates dropped because a package variant could not be built from them "
        "(after a fix to the transforms, they deserve another measurement)",
    )
    p.add_argument("--tasks", default=None, help="comma list of kernel names (default all)")
    p.add_argument("--db", default=None)
    p.add_argument("--target", default="cuda:sm_90")
    a = p.parse_args(words)
    from reef_rocm.compiler.tune.compat import UNBUILDABLE
    from reef_rocm.compiler.tune.database import TuneDatabase

    db_dir = Path(a.db) if a.db else default_db(a.target)
    db = TuneDatabase(db_dir)
    names = {n.strip() for n in a.tasks.split(",") if n.strip()} if a.tasks else None
    n = db.forget(UNBUILDABLE, names)
    db.save()
    print(f"database {db_dir}: forgot {n} unbuildable candidates")
    return 0


def _print_summary(db: Any) -> None:
    for s in db.summary():
        d, b = s["default_us"], s["best_us"]
        gain = f"{d / b:.2f}x" if d and b else "-"
        print(
            f"  {str(s['name'])[:34]:34s} default {d or float('nan'):9.1f} us  best "
            f"{b or float('nan'):9.1f} us  {gain:>6s}  ({s['valid']}/{s['measured']} valid)"
        )
