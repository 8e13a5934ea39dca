"""Access to the optional C launcher (``_fastlaunch.c``), shared by the cuda and hip backends.

``launcher(entry, func, config, params)`` returns a callable ``f(stream_handle_int) -> status``
or None when the extension is not built; callers then use their bindings' launch call.
Set REEF_NO_FASTLAUNCH=1 to force the bindings path (for comparisons).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from reef_rocm.gpu.api import LaunchConfig
from reef_rocm.gpu.params import ParamBlock

try:
    from reef_rocm.gpu._fastlaunch import Launcher as _Launcher
except ImportError:  # not compiled here (no C compiler at install time)
    _Launcher = None


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
