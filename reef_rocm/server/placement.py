"""Which GPU a model goes to. A rule, nothing else: it reads loads and never touches a device.

1. An explicit GPU wins: the load request's ``gpu``, else the session's (``Client(gpu=...)``).
2. Otherwise a GPU already holding a model of the same workload: the RT and BE models of one
   workload share one GPU (and so one scheduler, which is what REEF's preemption needs).
   A workload is the ``workload`` name a client connects with; without one, each session is
   its own workload.
3. Otherwise the least loaded healthy GPU: fewest workloads, then fewest models, then the
   lowest index.
Failed GPUs are never chosen; pinning to one is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class PlacementError(Exception):
    """No GPU can take the model. ``code`` is the gRPC status it maps to."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class GpuLoad:
    index: int
    healthy: bool
    workloads: frozenset[str]
    models: int
    error: str = ""


def place(gpus: Sequence[GpuLoad], workload: str, pinned: int | None = None) -> int:
    """The index of the GPU the next model of ``workload`` goes to (see the module doc)."""
    by_index = {g.index: g for g in gpus}
    if pinned is not None:
        g = by_index.get(pinned)
        if g is None:
            raise PlacementError(
                f"no GPU {pinned}: this server runs GPUs {sorted(by_index)}", "INVALID_ARGUMENT"
            )
        if not g.healthy:
            raise PlacementError(f"GPU {pinned} stopped serving: {g.error}", "UNAVAILABLE")
        return pinned
    healthy = [g for g in gpus if g.healthy]
    if not healthy:
        raise PlacementError("no GPU of this server is serving", "UNAVAILABLE")
    for g in healthy:
        if workload in g.workloads:
            return g.index
    return min(healthy, key=lambda g: (len(g.workloads), g.models, g.index)).index
