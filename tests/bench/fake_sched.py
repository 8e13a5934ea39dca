"""A stand-in with the scheduler contract's API (Scheduler, SchedOptions, LoadSpec,
available_policies) and a crude single-server timeline, so the DISB runner's orchestration,
JSON, table and plots are tested without reef_rocm.sched. It makes no claim about any policy;
test_disb_sim.py runs the real scheduler."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .records import Pre, Req, Run

POLICIES = ("rt-only", "sequential", "streams", "reset", "reset+poll")
PREEMPT_US = {"sequential": 800.0, "streams": 300.0, "reset": 60.0, "reset+poll": 20.0}


def available_policies(capabilities: Any) -> list[str]:
    return list(POLICIES)


@dataclass
class SchedOptions:
    policy: str = "reset+poll"
    device_queue_cap_us: float | None = None
    trace: bool = False
    rt_graphs: bool = False


@dataclass
class Handle:
    name: str
    priority: str
    client: str
    service_us: float


@dataclass
class LoadSpec:
    handle: Handle
    arrivals_us: list[float] | None = None
    preload: bool = False


@dataclass
class Scheduler:
    device: Any
    options: SchedOptions
    loaded: list[Handle] = field(default_factory=list)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def load(self, package: str, priority: str, client: str) -> Handle:
        manifest = json.loads((Path(package) / "manifest.json").read_text())
        n = len(manifest["variants"]["plain"]["kernels"])
        h = Handle(Path(package).name, priority, client, service_us=100.0 * n)
        self.loaded.append(h)
        return h

    def run_load(self, specs: list[LoadSpec], duration_us: float, warmup_us: float) -> Run:
        end = duration_us  # the contract: duration includes the warm-up
        pol = self.options.policy
        extra = PREEMPT_US.get(pol, 0.0) + (self.options.device_queue_cap_us or 0.0) / 10
        be = [s for s in specs if s.handle.priority == "be"]
        rt = sorted((a, s.handle) for s in specs if s.handle.priority == "rt"
                    for a in (s.arrivals_us or []))  # fmt: skip
        reqs, pres, free = [], [], 0.0
        for a, h in rt:
            start = max(a + (extra if be else 0.0), free)
            free = start + h.service_us
            reqs.append(Req(h.client, h.name, "rt", a, start, free if free < end else None))
            if be:
                pres.append(Pre(a, a + 1, a + extra * 0.8, start, False, int(a) % 3))
        busy = sum(h.service_us for _, h in rt)
        for i, s in enumerate(be):  # BE shares what RT leaves, round robin
            per = s.handle.service_us * len(be) / max(0.05, 1 - busy / end)
            t = per * (1 + i / len(be))
            while t < end:
                reqs.append(Req(s.handle.client, s.handle.name, "be", t - per, t - per, t, 0))
                t += per
        return Run(pol, reqs, pres, duration_us, None)
