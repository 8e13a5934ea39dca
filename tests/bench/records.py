"""Plain records with the scheduler contract's fields (RequestRecord, PreemptionRecord, the
run object), for metric tests that must not depend on the scheduler."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Req:
    client: str
    model: str
    priority: str
    arrival_us: float
    start_us: float | None
    done_us: float | None
    preemptions: int = 0


@dataclass
class Pre:
    rt_arrival_us: float
    flag_raised_us: float | None
    be_drained_us: float | None
    rt_start_us: float | None
    killed: int = 0  # blocks/waves the kill reported
    dropped_kernels: int = 0


@dataclass
class Run:
    policy: str
    requests: list[Req] = field(default_factory=list)
    preemptions: list[Pre] = field(default_factory=list)
    duration_us: float = 0.0
    busy_fraction: float | None = None
