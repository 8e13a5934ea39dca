"""Applying a tuning database when compiling (``reef compile``, graph.build_plan).

``tuned_relax_passes(target)`` is ``graph.relax_passes(target)`` with MetaSchedule's
``MetaScheduleApplyDatabase`` right before dlight: functions with a record in the current
database (``with tvm_db:``) get the recorded schedule and the ``tirx.is_scheduled`` mark,
which dlight's ApplyDefaultSchedule skips; the others keep dlight. The transform passes
(preemptible, DKP) then run on the scheduled PrimFuncs, so every variant comes from the
tuned kernels.

Which database: ``--tuning-db DIR``, else the one shipped for the target
(``reef_rocm/compiler/tune/db/<target>/``, none for AMD), else none; ``--untuned``: none.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef_rocm.compiler.tune.database import RECORD_FILE, WORKLOAD_FILE, TuneDatabase
from reef_rocm.compiler.tune.tasks import DLIGHT_PASS
from reef_rocm.errors import PackageError

SHIPPED_DB_ROOT = Path(__file__).resolve().with_name("db")


def shipped_db_dir(target_name: str) -> Path:
    return SHIPPED_DB_ROOT / target_name.replace(":", "_")


@dataclass(frozen=True)
class Tuning:
    """The tuning database one compile applies: where it is, what it holds (digest)."""

    db: TuneDatabase
    source: str  # "shipped" | "user"
    digest: str

    def describe(self) -> dict[str, Any]:
        """For the manifest (tuned kernels are added by build.py)."""
        where = f"shipped:{self.db.path.name}" if self.source == "shipped" else str(self.db.path)
        return {"database": where, "digest": self.digest}


def resolve_tuning(target_name: str, tuning_db: str | Path | None, untuned: bool) -> Tuning | None:
    """The database to apply (None: dlight everywhere). A ``tuning_db`` that is missing,
    holds no database files or cannot be parsed is a PackageError naming it."""
    if untuned:
        if tuning_db is not None:
            raise PackageError("--untuned and --tuning-db contradict each other: give one")
        return None
    if tuning_db is None:
        path, source = shipped_db_dir(target_name), "shipped"
        if not (path / WORKLOAD_FILE).is_file():
            return None
    else:
        path, source = Path(tuning_db), "user"
        if not path.is_dir():
            raise PackageError(f"--tuning-db {path}: no such directory")
        if not (path / WORKLOAD_FILE).is_file() or not (path / RECORD_FILE).is_file():
            raise PackageError(
                f"--tuning-db {path}: not a tuning database (needs {WORKLOAD_FILE} and "
                f"{RECORD_FILE}; `reef tune` writes them)"
            )
    try:
        db = TuneDatabase(path)
    except OSError as e:
        raise PackageError(f"tuning database {path}: cannot read ({e})") from None
    return Tuning(db, source, db.digest())


def tuned_relax_passes(target: Any) -> list[Any]:
    from tvm import relax

    from reef_rocm.compiler.graph import relax_passes

    passes = relax_passes(target)
    i = next(i for i, p in enumerate(passes) if p.info.name == DLIGHT_PASS)
    return [*passes[:i], relax.transform.MetaScheduleApplyDatabase(), *passes[i:]]


def apply_database(mod: Any, target: Any, tvm_db: Any) -> Any:
    """``mod`` through the compiler's Relax passes with ``tvm_db``'s schedules applied."""
    import tvm

    with target, tvm_db:
        return tvm.transform.Sequential(tuned_relax_passes(target))(mod)


def workload_hash(func: Any) -> str:
    """MetaSchedule's workload key of one PrimFunc (as tune/tasks.py computes it)."""
    import tvm
    import tvm_ffi

    return str(
        tvm_ffi.structural_hash(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}))
    )


def lower_tuned(mod: Any, target: Any, tuning: Tuning) -> tuple[Any, list[str]]:
    """``mod`` lowered with ``tuning``'s schedules, and the names of the PrimFuncs that got
    one (a workload of the database: the others keep dlight). Only the database's
    workloads that occur in ``mod`` are parsed into TVM."""
    import tvm

    from reef_rocm.compiler.graph import relax_passes

    with target:
        passes = relax_passes(target)
        i = next(i for i, p in enumerate(passes) if p.info.name == DLIGHT_PASS)
        pre = tvm.transform.Sequential(passes[:i])(mod)
    applied = tuning.db.applied()
    hashes = {
        gv.name_hint: workload_hash(f)
        for gv, f in pre.functions.items()
        if isinstance(f, tvm.tirx.PrimFunc)
    }
    tuned = sorted(n for n, h in hashes.items() if h in applied)
    if not tuned:
        with target:
            return tvm.transform.Sequential(passes[i:])(pre), []
    try:
        tvm_db = tuning.db.to_tvm(workloads={hashes[n] for n in tuned})
    except Exception as e:  # a workload's TVMScript or a record TVM cannot parse
        msg = str(e).strip().splitlines()[-1][:200] if str(e).strip() else type(e).__name__
        raise PackageError(f"tuning database {tuning.db.path}: unusable record ({msg})") from None
    with target, tvm_db:
        from tvm import relax

        apply = relax.transform.MetaScheduleApplyDatabase()  # needs the target context
        lowered = tvm.transform.Sequential([apply, *passes[i:]])(pre)
    return lowered, tuned
