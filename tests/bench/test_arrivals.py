"""Arrival generators: counts, spacing, seeding, and the Poisson process's statistics within
bounds derived from the distribution (not tuned numbers)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reef_rocm.bench.disb import arrivals as arr
from reef_rocm.bench.disb.workload import BUILTIN, Load

# Two-sided normal quantile for a false-alarm probability of 1e-6 per check: the bounds below
# are mean +- Z sigma of the statistic's own distribution.
Z = 4.89


def test_uniform_count_and_spacing():
    rng = arr.client_rng(0, "c")
    t = arr.uniform_arrivals(100.0, 7e6, rng)  # 7 s at 100 req/s
    assert len(t) == 700
    assert np.allclose(np.diff(t), 1e4)
    assert 0 <= t[0] < 1e4 and t[-1] < 7e6


@pytest.mark.parametrize("rate", [1.0, 20.0, 220.0, 333.3])
def test_uniform_count_is_rate_times_duration(rate):
    end = 2.5e6
    t = arr.uniform_arrivals(rate, end, arr.client_rng(3, "x"))
    period = 1e6 / rate
    assert math.floor(end / period) <= len(t) <= math.ceil(end / period)


def test_poisson_count_and_gaps_within_distribution_bounds():
    rate, secs = 100.0, 20.0
    mu = rate * secs  # N ~ Poisson(mu): mean mu, sd sqrt(mu)
    for seed in range(10):
        t = arr.poisson_arrivals(rate, secs * 1e6, arr.client_rng(seed, "p"))
        assert abs(len(t) - mu) <= Z * math.sqrt(mu), (seed, len(t))
        gaps = np.diff(np.concatenate([[0.0], t]))
        mean_gap = 1e6 / rate  # exponential: sd = mean, so the sample mean's sd = mean/sqrt(k)
        assert abs(gaps.mean() - mean_gap) <= Z * mean_gap / math.sqrt(len(gaps))
        # exponential: P(gap > mean) = 1/e; binomial bound on the fraction above the mean
        frac = float((gaps > mean_gap).mean())
        p = math.exp(-1)
        assert abs(frac - p) <= Z * math.sqrt(p * (1 - p) / len(gaps))
        assert np.all(np.diff(t) >= 0) and t[-1] < secs * 1e6


def test_same_seed_same_arrivals_other_seed_or_client_differs():
    a = arr.workload_arrivals(BUILTIN["E"])
    b = arr.workload_arrivals(BUILTIN["E"])
    assert a == b  # identical for every policy of a run, and across runs
    names = [c.name for c in BUILTIN["E"].rt_clients]
    assert a[names[0]] != a[names[1]]  # each client its own stream
    from dataclasses import replace

    c = arr.workload_arrivals(replace(BUILTIN["E"], seed=1))
    assert c[names[0]] != a[names[0]]
    assert all(a[cl.name] is None for cl in BUILTIN["E"].be_clients)  # closed loop


def test_workload_arrivals_cover_warmup_and_duration():
    w = BUILTIN["A"].with_timing(duration_s=3.0, warmup_s=0.5)
    a = arr.workload_arrivals(w)
    rt = a[w.rt_clients[0].name]
    assert len(rt) == 350 and max(rt) < 3.5e6


def test_trace_is_cut_at_run_end(tmp_path):
    f = tmp_path / "t.txt"
    f.write_text("0\n10\n2000000\n5000000\n")
    t = arr.client_arrivals(Load("trace", trace=str(f)), 3e6, arr.client_rng(0, "t"))
    assert t == [0.0, 10.0, 2e6]
    json_trace = tmp_path / "t.json"
    json_trace.write_text('{"arrivals_us": [1, 2, 3]}')
    assert list(arr.read_trace(json_trace)) == [1.0, 2.0, 3.0]


def test_offered_rate(tmp_path):
    from reef_rocm.bench.disb.workload import Client

    assert arr.offered_rate(BUILTIN["A"].rt_clients[0]) == 100.0
    assert arr.offered_rate(BUILTIN["B"].rt_clients[0]) is None
    f = tmp_path / "t.txt"
    f.write_text("0\n1000\n2000\n3000\n")  # 3 gaps of 1 ms: 1000 req/s
    assert arr.offered_rate(Client("x", "m", "rt", Load("trace", trace=str(f)))) == 1000.0
