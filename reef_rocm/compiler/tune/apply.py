"""Applying a tuning database when compiling (for compiler/build.py; phase 2 wires it in).

``tuned_relax_passes(target)`` is ``graph.relax_passes(target)`` with MetaSchedule's
``MetaScheduleApplyDatabase`` right before dlight: functions with a record in the current
database (``with tvm_db:``) get the recorded schedule and the ``tirx.is_scheduled`` mark,
which dlight's ApplyDefaultSchedule skips; the others keep dlight. The transform passes then
run on the scheduled PrimFuncs as before. In build.py::

    db = TuneDatabase(path).to_tvm()       # only records that beat the default schedule
    with target, db:
        lowered = tvm.transform.Sequential(tuned_relax_passes(target))(mod)
"""

from __future__ import annotations

from typing import Any

from reef_rocm.compiler.tune.tasks import DLIGHT_PASS


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
