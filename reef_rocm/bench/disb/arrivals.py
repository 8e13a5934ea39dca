"""Arrival times of every client of a workload, generated once and replayed for every policy.

Times are microseconds on the run's clock: 0 is the start of warm-up, measurement covers
``[warmup, warmup + duration)``. Each client draws from its own generator seeded by
(workload seed, client name), so adding a client does not change the others' arrivals and the
same workload gives the same arrivals in every run and for every policy.

- uniform: one request every ``1/rate`` s, starting at a random phase in ``[0, 1/rate)`` (so
  five 20 req/s clients do not all arrive at the same instant);
- poisson: exponential gaps of mean ``1/rate`` s from time 0;
- closed: ``None`` (the scheduler issues the next request when the last one finished);
- trace: the file's times (microseconds from the start of warm-up), cut at the run's end.

Generated times are rounded to whole microseconds (finer than any latency reported; it keeps
arrival instants exact on the sim's integer-nanosecond clock).
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from reef_rocm.bench.disb.workload import Client, Load, Workload, WorkloadError


def client_rng(seed: int, client_name: str) -> np.random.Generator:
    key = zlib.crc32(client_name.encode())
    return np.random.default_rng(np.random.SeedSequence(entropy=seed, spawn_key=(key,)))


def uniform_arrivals(rate_per_s: float, end_us: float, rng: np.random.Generator) -> np.ndarray:
    period = 1e6 / rate_per_s
    phase = rng.uniform(0.0, period)
    n = max(0, int(np.ceil((end_us - phase) / period)))
    t = phase + period * np.arange(n, dtype=np.float64)
    return t[t < end_us]


def poisson_arrivals(rate_per_s: float, end_us: float, rng: np.random.Generator) -> np.ndarray:
    mean_gap = 1e6 / rate_per_s
    out: list[np.ndarray] = []
    t = 0.0
    chunk = max(16, int(end_us / mean_gap * 1.1) + 16)
    while t < end_us:
        gaps = rng.exponential(mean_gap, chunk)
        times = t + np.cumsum(gaps)
        out.append(times)
        t = float(times[-1])
    times = np.concatenate(out) if out else np.zeros(0)
    return times[times < end_us]


def read_trace(path: str | Path) -> np.ndarray:
    """Arrival times in microseconds: a text file with one number per line (``#`` starts a
    comment) or a JSON list / ``{"arrivals_us": [...]}``. Times must be >= 0 and
    non-decreasing."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as e:
        raise WorkloadError(f"cannot read trace {p}: {e}") from None
    values: list[float] = []
    if text.lstrip().startswith(("[", "{")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise WorkloadError(f"trace {p}: not JSON: {e}") from None
        raw = doc.get("arrivals_us") if isinstance(doc, dict) else doc
        if not isinstance(raw, list):
            raise WorkloadError(f"trace {p}: expected a list of times or {{'arrivals_us': [...]}}")
        for i, v in enumerate(raw):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise WorkloadError(f"trace {p}: entry {i} is not a number: {v!r}")
            values.append(float(v))
        where = [f"entry {i}" for i in range(len(values))]
    else:
        where = []
        for n, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            try:
                values.append(float(line))
            except ValueError:
                raise WorkloadError(f"trace {p}: line {n} is not a number: {line!r}") from None
            where.append(f"line {n}")
    if not values:
        raise WorkloadError(f"trace {p}: no arrival times")
    arr = np.asarray(values)
    bad = np.flatnonzero(arr < 0)
    if bad.size:
        raise WorkloadError(f"trace {p}: {where[bad[0]]}: negative time {arr[bad[0]]}")
    back = np.flatnonzero(np.diff(arr) < 0)
    if back.size:
        raise WorkloadError(f"trace {p}: {where[back[0] + 1]}: time goes backwards")
    return arr


def client_arrivals(load: Load, end_us: float, rng: np.random.Generator) -> list[float] | None:
    if load.kind == "closed":
        return None
    if load.kind == "uniform":
        t = np.round(uniform_arrivals(float(load.rate_per_s or 0), end_us, rng))
    elif load.kind == "poisson":
        t = np.round(poisson_arrivals(float(load.rate_per_s or 0), end_us, rng))
    elif load.kind == "trace":
        t = read_trace(load.trace or "")
    else:
        raise WorkloadError(f"unknown load kind {load.kind!r}")
    return [float(x) for x in t[t < end_us]]


def workload_arrivals(workload: Workload) -> dict[str, list[float] | None]:
    """Client name -> arrival times (us) or None for closed loop, over warm-up + duration."""
    end_us = (workload.warmup_s + workload.duration_s) * 1e6
    return {
        c.name: client_arrivals(c.load, end_us, client_rng(workload.seed, c.name))
        for c in workload.clients
    }


def offered_rate(client: Client) -> float | None:
    """Requests per second the client offers (None for closed loop; a trace's mean rate)."""
    if client.load.kind in ("uniform", "poisson"):
        return client.load.rate_per_s
    if client.load.kind == "trace":
        t = read_trace(client.load.trace or "")
        span = float(t[-1] - t[0]) if len(t) > 1 else 0.0
        return (len(t) - 1) / span * 1e6 if span > 0 else None
    return None
