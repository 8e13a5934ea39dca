"""Access to the optional C launcher (``_fastlaunch.c``), shared by the cuda and hip backends.

``launcher(entry, func, config, params)`` returns a callable ``f(stream_handle_int) -> status``
or None when the extension is not built; callers then use their bindings' launch call.
``span(launchers)`` strings such callables into one ``f(stream, start, stop) -> (status,
index)`` that launches ``launchers[start:stop]`` in one C loop (``(0, stop)`` when all
launched, else the first nonzero status and its index), or None where any is missing.
Set REEF_NO_FASTLAUNCH=1 to force the bindings path (for comparisons).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from reef_rocm.gpu.api import LaunchConfig
from reef_rocm.gpu.params import ParamBlock

try:
    from reef_rocm.gpu import _fastlaunch as _ext
except ImportError:  # not compiled here (no C compiler at install time)
    _ext = None
_Launcher: Any = getattr(_ext, "Launcher", None)
_Span: Any = getattr(_ext, "Span", None)  # None in a build older than the span launcher

SpanCall = Callable[[int, int, int], tuple[int, int]]


def available() -> bool:
    return _Launcher is not None and not os.environ.get("REEF_NO_FASTLAUNCH")


def launcher(
    entry: int, func: int, config: LaunchConfig, params: ParamBlock
) -> Callable[[int], int] | None:
    """A C callable launching ``func`` with ``params`` through the driver entry point ``entry``
    (address of cuLaunchKernel or hipModuleLaunchKernel)."""
    if not available() or not entry:
        return None
    return _Launcher(  # type: ignore[misc]
        entry, func, config.grid, config.block, config.shared_mem, params.pointer_array, params
    )


def span(launchers: Sequence[Any]) -> SpanCall | None:
    """One C call launching ``launchers[start:stop]`` (each a ``launcher(...)`` result) in
    order, or None when the extension is absent, REEF_NO_FASTLAUNCH is set or any launch has
    no C launcher (callers then loop over their launches in Python)."""
    if not available() or _Span is None or any(f is None for f in launchers):
        return None
    return _Span(launchers)  # type: ignore[misc]
