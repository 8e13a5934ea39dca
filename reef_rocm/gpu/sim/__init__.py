"""The ``sim`` backend: a deterministic discrete-event model of a GPU behind the device
interface, for CPU-only tests of the scheduler and what-if runs. Everything it reports says it
is simulated. See docs/sim.md for the model's semantics.

    from reef_rocm.gpu import open_device
    dev = open_device("sim", arch="gfx90a", compute_units=8, trace=True, wave_kill=False)
"""

from __future__ import annotations

from typing import Any

from reef_rocm.gpu.api import BackendReport
from reef_rocm.gpu.sim.config import ARCHS, ArchModel, SimConfig, occupancy
from reef_rocm.gpu.sim.context import SimBlockContext
from reef_rocm.gpu.sim.device import (
    SimBoundLaunch,
    SimBuffer,
    SimDevice,
    SimEvent,
    SimHostMappedBuffer,
    SimKernel,
    SimModule,
    SimStream,
)
from reef_rocm.gpu.sim.labels import MODEL_NAME, MODEL_VERSION
from reef_rocm.gpu.sim.memory import SimMemory
from reef_rocm.gpu.sim.params import (
    PARAM_TYPES,
    ROLE_COMPLETION_SLOT,
    ROLE_POLL_EVERY,
    ROLE_POLL_INTERVAL,
    ROLE_PREEMPT_FLAG,
    SimParam,
)
from reef_rocm.gpu.sim.spec import SimKernelSpec, SimModuleSpec
from reef_rocm.gpu.sim.trace import SimTrace, TraceRecord

__all__ = [
    "ARCHS",
    "MODEL_NAME",
    "MODEL_VERSION",
    "PARAM_TYPES",
    "ROLE_COMPLETION_SLOT",
    "ROLE_POLL_EVERY",
    "ROLE_POLL_INTERVAL",
    "ROLE_PREEMPT_FLAG",
    "ArchModel",
    "SimBlockContext",
    "SimBoundLaunch",
    "SimBuffer",
    "SimConfig",
    "SimDevice",
    "SimEvent",
    "SimHostMappedBuffer",
    "SimKernel",
    "SimKernelSpec",
    "SimMemory",
    "SimModule",
    "SimModuleSpec",
    "SimParam",
    "SimStream",
    "SimTrace",
    "TraceRecord",
    "occupancy",
    "open_device",
    "probe",
]


def probe() -> BackendReport:
    """Always available: the model needs nothing from the machine."""
    dev = SimDevice(0, SimConfig())
    return BackendReport(
        backend="sim",
        available=True,
        reason=(
            f"{MODEL_NAME} discrete-event model of a GPU (simulated, not a real device); "
            "used only when asked for by name. Models: " + ", ".join(ARCHS)
        ),
        versions={"model": f"{MODEL_NAME} {MODEL_VERSION}", "simulated": "true"},
        devices=[dev.info],
        capabilities=[dev.capabilities],
    )


def open_device(ordinal: int = 0, **options: Any) -> SimDevice:
    """A fresh simulated device; ``options`` are SimConfig fields (plus ``capabilities``, a
    Capabilities or dict whose flags apply unless given one by one)."""
    if not isinstance(ordinal, int) or ordinal < 0:
        raise ValueError(f"sim device ordinal must be a non-negative int, got {ordinal!r}")
    return SimDevice(ordinal, SimConfig.from_options(dict(options)))
