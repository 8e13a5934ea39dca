"""Plain data the scheduler hands out: results, per-request and per-preemption records, runs.

Times are microseconds on the scheduler's clock (the sim's virtual clock, or the host's
``perf_counter_ns``), relative to the run's origin (``run_load``'s start, or the scheduler's
start for ``submit``). Device timestamps are mapped onto that clock by the calibration in
``reef_rocm.sched.devclock`` (docs/scheduler.md, "Timestamps").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: str


@dataclass
class RequestRecord:
    """One inference. ``start_us``: RT - first block running (device timestamp), BE - first
    kernel handed to the GPU (host). ``done_us``: the host saw the outputs land.
    ``padded_kernels`` (RT, ``+dkp`` policies): RT kernels launched padded with BE work;
    ``pad_be_blocks``: BE virtual blocks that ran in those launches (from the slot reads)."""

    client: str
    model: str
    priority: str  # "rt" | "be"
    arrival_us: float
    start_us: float | None = None
    done_us: float | None = None
    launched_us: float | None = None  # host time of the first launch
    submitted_us: float | None = None  # host time the engine took the request in
    preemptions: int = 0
    correct: bool | None = None
    error: str | None = None
    seq: int = 0
    padded_kernels: int = 0
    pad_be_blocks: int = 0

    @property
    def latency_us(self) -> float | None:
        return None if self.done_us is None else self.done_us - self.arrival_us

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["latency_us"] = self.latency_us
        return d


@dataclass
class PreemptionRecord:
    """One preemption of BE work by an RT arrival.

    ``be_drained_us``: when the last BE device queue was empty (device timestamp of a marker
    queued behind the BE work; host-observed where the backend has no timestamp kernel).
    ``rt_start_us``: the first RT block running. ``killed``: blocks/waves the kill reported.
    ``dropped_kernels``: kernels dropped from device queues by queue resets.
    """

    rt_arrival_us: float
    flag_raised_us: float
    rt_start_us: float | None = None
    be_drained_us: float | None = None
    flag_cleared_us: float | None = None
    killed: int = 0
    dropped_kernels: int = 0
    be_queues: int = 0
    mechanisms: tuple[str, ...] = ()

    @property
    def latency_us(self) -> float | None:
        """RT arrival to the first RT block running (the paper's preemption latency)."""
        return None if self.rt_start_us is None else self.rt_start_us - self.rt_arrival_us

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mechanisms"] = list(self.mechanisms)
        d["latency_us"] = self.latency_us
        return d


@dataclass
class InferenceResult:
    outputs: list[np.ndarray]
    record: RequestRecord


@dataclass
class LoadSpec:
    """One client of ``run_load``: ``arrivals_us`` (relative to the run's start) for an
    open-loop client, or None for a closed loop (a new request the moment one finishes).
    ``inputs``: the inputs every request uses (default: the package's reference inputs, so
    outputs are checked against its CPU reference). ``preload``: upload them once before the
    run, so requests carry none (REEF's evaluation: no input transfer on the RT path)."""

    handle: Any  # ModelHandle
    arrivals_us: list[float] | None = None
    inputs: list[np.ndarray] | None = None
    preload: bool = False


@dataclass
class RunResult:
    policy: str
    duration_us: float
    warmup_us: float
    requests: list[RequestRecord]
    preemptions: list[PreemptionRecord]
    busy_fraction: float | None = None
    clock: str = "host"  # "virtual (simulated)" on the sim
    device: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def of(self, priority: str | None = None, client: str | None = None) -> list[RequestRecord]:
        return [
            r
            for r in self.requests
            if (priority is None or r.priority == priority)
            and (client is None or r.client == client)
        ]

    def as_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "duration_us": self.duration_us,
            "warmup_us": self.warmup_us,
            "busy_fraction": self.busy_fraction,
            "clock": self.clock,
            "device": self.device,
            "options": self.options,
            "requests": [r.as_dict() for r in self.requests],
            "preemptions": [p.as_dict() for p in self.preemptions],
        }


@dataclass
class SchedStatus:
    policy: str
    models: list[dict[str, Any]]
    queue_depths: dict[str, int]
    preemptions: int
    state: str
    clock_us: float
    capabilities: dict[str, Any] = field(default_factory=dict)
