"""DISB metrics from a scheduler run's records (pure functions; no device).

Measurement window: requests that *arrived* in ``[warmup_us, warmup_us + duration_us)`` count
for latency; requests that *finished* in it count for throughput (a closed-loop BE client's
inferences per second). Preemptions count when their RT request arrived in the window.

- RT latency: ``done_us - arrival_us`` (end to end, as the client sees it).
- Preemption latency: ``rt_start_us - rt_arrival_us``: RT arrival to the first RT block running
  (the scheduler issue's definition); the BE drain time ``be_drained_us - flag_raised_us`` is
  reported beside it.
- Ideal overall throughput for the GPU: RT rate + BE-alone throughput x (1 - RT-alone busy
  fraction), with the RT rate and busy fraction of the ``rt-only`` run and the BE-alone
  throughput of a run with the BE clients only.
- BE share kept: BE throughput / (BE-alone throughput x (1 - RT-alone busy fraction)).

Percentiles are numpy's default (linear interpolation between order statistics).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Window:
    start_us: float
    end_us: float

    @property
    def seconds(self) -> float:
        return (self.end_us - self.start_us) / 1e6

    def holds(self, t: float | None) -> bool:
        return t is not None and self.start_us <= t < self.end_us


def latency_stats(values_us: Iterable[float]) -> dict[str, float | int | None]:
    v = np.asarray(list(values_us), dtype=np.float64)
    if v.size == 0:
        return {"count": 0, "mean_us": None, "p50_us": None, "p95_us": None, "p99_us": None,
                "max_us": None}  # fmt: skip
    return {
        "count": int(v.size),
        "mean_us": float(v.mean()),
        "p50_us": float(np.percentile(v, 50)),
        "p95_us": float(np.percentile(v, 95)),
        "p99_us": float(np.percentile(v, 99)),
        "max_us": float(v.max()),
    }


def busy_fraction_from_intervals(intervals: Iterable[tuple[float, float]], window: Window) -> float:
    """Fraction of the window covered by the union of [start, end) intervals (an estimate of GPU
    busy time from RT service intervals when the scheduler reports none)."""
    clipped = sorted(
        (max(s, window.start_us), min(e, window.end_us))
        for s, e in intervals
        if e > window.start_us and s < window.end_us
    )
    covered, cur_s, cur_e = 0.0, None, None
    for s, e in clipped:
        if cur_e is None or s > cur_e:
            if cur_e is not None:
                covered += cur_e - cur_s
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    if cur_e is not None:
        covered += cur_e - cur_s
    span = window.end_us - window.start_us
    return covered / span if span > 0 else 0.0


def _priority_of(rec: Any, clients: Mapping[str, tuple[str, str]]) -> tuple[str, str]:
    """(priority, model) of a request: the workload's client table first, the record's own
    fields otherwise."""
    if rec.client in clients:
        return clients[rec.client]
    return str(rec.priority), str(rec.model)


def run_metrics(
    run: Any, window: Window, clients: Mapping[str, tuple[str, str]] | None = None
) -> dict[str, Any]:
    """Metrics of one policy's run. ``clients`` maps client name -> (priority, model)."""
    clients = clients or {}
    rt_lat: dict[str, list[float]] = {}
    rt_done: dict[str, int] = {}
    rt_unfinished: dict[str, int] = {}
    rt_intervals: list[tuple[float, float]] = []
    rt_service: dict[str, list[float]] = {}
    rt_arrivals: dict[float, str] = {}  # which RT model a preemption served
    be_done: dict[str, int] = {}
    be_preempted: dict[str, int] = {}
    for prio, model in clients.values():  # every client's model appears, even with no requests
        if prio == "rt":
            rt_lat.setdefault(model, [])
        else:
            be_done.setdefault(model, 0)
    for rec in run.requests:
        prio, model = _priority_of(rec, clients)
        finished = rec.done_us is not None
        if prio == "rt":
            rt_lat.setdefault(model, [])
            rt_arrivals[rec.arrival_us] = model
            if window.holds(rec.arrival_us):
                if finished:
                    rt_lat[model].append(rec.done_us - rec.arrival_us)
                    if rec.start_us is not None:
                        rt_service.setdefault(model, []).append(rec.done_us - rec.start_us)
                else:
                    rt_unfinished[model] = rt_unfinished.get(model, 0) + 1
            if finished and window.holds(rec.done_us):
                rt_done[model] = rt_done.get(model, 0) + 1
            if finished and rec.start_us is not None:
                rt_intervals.append((rec.start_us, rec.done_us))
        else:
            be_done.setdefault(model, 0)
            if finished and window.holds(rec.done_us):
                be_done[model] += 1
                be_preempted[model] = be_preempted.get(model, 0) + int(rec.preemptions or 0)
    secs = window.seconds
    rt = {}
    for model, lats in sorted(rt_lat.items()):
        rt[model] = {
            **latency_stats(lats),
            "unfinished": rt_unfinished.get(model, 0),
            "throughput_per_s": rt_done.get(model, 0) / secs,
            "service_mean_us": float(np.mean(rt_service[model])) if rt_service.get(model) else None,
        }
    be = {
        model: {
            "completed": n,
            "throughput_per_s": n / secs,
            "preemptions_of_completed": be_preempted.get(model, 0),
        }
        for model, n in sorted(be_done.items())
    }
    pre = [p for p in run.preemptions if window.holds(p.rt_arrival_us)]
    lat = [p.rt_start_us - p.rt_arrival_us for p in pre if p.rt_start_us is not None]
    drain = [
        p.be_drained_us - p.flag_raised_us
        for p in pre
        if p.be_drained_us is not None and p.flag_raised_us is not None
    ]
    by_model: dict[str, list[float]] = {}
    for p in pre:
        if p.rt_start_us is not None:
            m = rt_arrivals.get(p.rt_arrival_us, "?")
            by_model.setdefault(m, []).append(p.rt_start_us - p.rt_arrival_us)
    ps = latency_stats(lat)
    ds = latency_stats(drain)
    preemption = {
        **ps,
        "drain_p50_us": ds["p50_us"],
        "drain_p99_us": ds["p99_us"],
        "with_kill": sum(1 for p in pre if p.killed),
        "killed_blocks": int(sum(int(p.killed or 0) for p in pre)),
        "dropped_kernels_mean": float(np.mean([p.dropped_kernels for p in pre])) if pre else None,
        "by_rt_model": {
            m: {k: v for k, v in latency_stats(x).items() if k in ("count", "p50_us", "p99_us")}
            for m, x in sorted(by_model.items())
        },
        # (latency us, queued BE kernels dropped) per preemption: Fig. 13's scatter
        "samples": [
            [float(p.rt_start_us - p.rt_arrival_us), int(p.dropped_kernels or 0)]
            for p in pre
            if p.rt_start_us is not None
        ],
    }
    rt_tp = sum(v["throughput_per_s"] for v in rt.values())
    be_tp = sum(v["throughput_per_s"] for v in be.values())
    busy = getattr(run, "busy_fraction", None)
    return {
        "policy": run.policy,
        "rt": rt,
        "be": be,
        "preemption": preemption,
        "rt_throughput_per_s": rt_tp,
        "be_throughput_per_s": be_tp,
        "overall_throughput_per_s": rt_tp + be_tp,
        "busy_fraction": None if busy is None else float(busy),
        "rt_service_busy_fraction": busy_fraction_from_intervals(rt_intervals, window),
    }


@dataclass(frozen=True)
class References:
    """What the comparisons divide by: the rt-only run and the BE-alone run of a workload."""

    rt_rate_per_s: float  # RT throughput of rt-only
    rt_busy_fraction: float  # GPU busy fraction of rt-only (reported, or RT service union)
    rt_busy_source: str
    be_alone_per_s: float | None  # total BE throughput with no RT clients (None: no BE clients)
    be_alone_by_model: dict[str, float]
    rt_only_p99_us: dict[str, float | None]
    rt_only_overall_per_s: float

    @property
    def ideal_overall_per_s(self) -> float:
        be = (self.be_alone_per_s or 0.0) * max(0.0, 1.0 - self.rt_busy_fraction)
        return self.rt_rate_per_s + be

    def as_dict(self) -> dict[str, Any]:
        return {
            "rt_rate_per_s": self.rt_rate_per_s,
            "rt_busy_fraction": self.rt_busy_fraction,
            "rt_busy_source": self.rt_busy_source,
            "be_alone_per_s": self.be_alone_per_s,
            "be_alone_by_model": self.be_alone_by_model,
            "rt_only_p99_us": self.rt_only_p99_us,
            "rt_only_overall_per_s": self.rt_only_overall_per_s,
            "ideal_overall_per_s": self.ideal_overall_per_s,
        }


def references(rt_only: Mapping[str, Any], be_alone: Mapping[str, Any] | None) -> References:
    busy = rt_only.get("busy_fraction")
    source = "scheduler"
    if busy is None:
        busy = rt_only["rt_service_busy_fraction"]
        source = "union of RT service intervals (scheduler gave no busy fraction)"
    return References(
        rt_rate_per_s=float(rt_only["rt_throughput_per_s"]),
        rt_busy_fraction=min(1.0, float(busy)),
        rt_busy_source=source,
        be_alone_per_s=None if be_alone is None else float(be_alone["be_throughput_per_s"]),
        be_alone_by_model={}
        if be_alone is None
        else {m: v["throughput_per_s"] for m, v in be_alone["be"].items()},
        rt_only_p99_us={m: v["p99_us"] for m, v in rt_only["rt"].items()},
        rt_only_overall_per_s=float(rt_only["overall_throughput_per_s"]),
    )


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return a / b


def compare(metrics: dict[str, Any], ref: References) -> dict[str, Any]:
    """The comparisons of one policy's metrics against the workload's references."""
    be_room = (ref.be_alone_per_s or 0.0) * (1.0 - ref.rt_busy_fraction)
    return {
        "overall_vs_rt_only": _ratio(
            metrics["overall_throughput_per_s"], ref.rt_only_overall_per_s
        ),
        "ideal_overall_per_s": ref.ideal_overall_per_s,
        "overall_vs_ideal": _ratio(metrics["overall_throughput_per_s"], ref.ideal_overall_per_s),
        "be_share_kept": _ratio(metrics["be_throughput_per_s"], be_room) if be_room > 0 else None,
        "rt_p99_vs_rt_only": {
            m: _ratio(v["p99_us"], ref.rt_only_p99_us.get(m)) for m, v in metrics["rt"].items()
        },
    }
