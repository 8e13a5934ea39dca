"""One device interface, three backends: ``cuda`` (cuda-bindings), ``hip`` (hip-python) and
``sim`` (a discrete-event model of a GPU for CPU-only tests and what-if runs).

    from reef_rocm.gpu import open_device, LaunchConfig
    dev = open_device()            # hip on AMD, cuda on NVIDIA; refuses if neither
    dev = open_device("sim")       # the model, only when asked for by name
"""

from __future__ import annotations

import importlib

from reef_rocm.errors import BackendUnavailable
from reef_rocm.gpu.api import (
    BackendReport,
    BoundLaunch,
    Capabilities,
    Device,
    DeviceBuffer,
    DeviceInfo,
    DevicePtr,
    Event,
    HostMappedBuffer,
    Kernel,
    LaunchConfig,
    Module,
    PreemptLevel,
    Resource,
    Stream,
    Vendor,
)
from reef_rocm.gpu.params import ParamBlock

BACKENDS = ("hip", "cuda", "sim", "hsa")  # hsa: our own AQL queues; by name only
# auto-selection order: AMD first (the project's primary target), then NVIDIA. Never sim.
_AUTO_ORDER = ("hip", "cuda")

__all__ = [
    "BACKENDS",
    "BackendReport",
    "BoundLaunch",
    "Capabilities",
    "Device",
    "DeviceBuffer",
    "DeviceInfo",
    "DevicePtr",
    "Event",
    "HostMappedBuffer",
    "Kernel",
    "LaunchConfig",
    "Module",
    "ParamBlock",
    "PreemptLevel",
    "Resource",
    "Stream",
    "Vendor",
    "open_device",
    "probe",
    "probe_all",
]


def _backend_module(name: str):
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)} or auto")
    return importlib.import_module(f"reef_rocm.gpu.{name}")


def probe(name: str) -> BackendReport:
    """What backend ``name`` finds on this machine; never raises for a missing GPU."""
    return _backend_module(name).probe()


def probe_all() -> list[BackendReport]:
    return [probe(n) for n in BACKENDS]


def open_device(backend: str = "auto", ordinal: int = 0, **options) -> Device:
    """Open GPU ``ordinal`` through ``backend`` ("auto", "hip", "cuda" or "sim").

    ``auto`` picks hip when an AMD GPU and the HIP runtime are present, else cuda when an
    NVIDIA GPU and its driver are, else raises BackendUnavailable listing why each failed.
    The sim backend is only used when asked for by name (``options`` go to its model).
    """
    if backend != "auto":
        return _backend_module(backend).open_device(ordinal, **options)
    reasons = []
    for name in _AUTO_ORDER:
        report = probe(name)
        if report.available and report.devices:
            return _backend_module(name).open_device(ordinal, **options)
        reasons.append(f"{name}: {report.reason or 'no devices'}")
    raise BackendUnavailable(
        "no usable GPU found (" + "; ".join(reasons) + "). "
        "Use backend='sim' (reef ... --backend sim) for the simulated GPU."
    )
