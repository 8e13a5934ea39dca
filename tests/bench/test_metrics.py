"""DISB metrics against values computed by hand from a small set of records."""

from __future__ import annotations

import pytest

from reef_rocm.bench.disb import metrics as met

from .records import Pre, Req, Run

W = met.Window(1000.0, 11000.0)  # 10 ms
CLIENTS = {"rt0": ("rt", "vgg19"), "rt1": ("rt", "distilbert"), "be0": ("be", "resnet152")}


def hand_run(busy: float | None = None) -> Run:
    rt = [  # (arrival, start, done)
        (500, 510, 900),  # before the window: neither latency nor throughput
        (1000, 1010, 1200),  # latency 200
        (3000, 3050, 3400),  # 400
        (5000, 5005, 5100),  # 100
        (7000, 7100, 7900),  # 900
        (10900, 10950, 11100),  # 200, finishes after the window: latency yes, throughput no
        (10990, None, None),  # unfinished
    ]
    reqs = [Req("rt0", "pkg-name-ignored", "rt", a, s, d) for a, s, d in rt]
    reqs.append(Req("rt1", "x", "rt", 3100, 3300, 3600))  # latency 500, overlaps rt0's 3050-3400
    for done, n in [(800, 5), (2000, 1), (4000, 0), (6000, 2), (12000, 1)]:
        reqs.append(Req("be0", "y", "be", 0, 0, done, n))
    pre = [
        Pre(500, 501, 505, 510),  # RT arrived before the window
        Pre(3000, 3002, 3040, 3050, False, 2),  # latency 50, drain 38
        Pre(7000, 7003, 7090, 7100, 7, 4),  # latency 100, drain 87, 7 blocks killed
    ]
    return Run("reset+poll", reqs, pre, 10000.0, busy)


def test_rt_latency_and_throughput():
    m = met.run_metrics(hand_run(), W, CLIENTS)
    v = m["rt"]["vgg19"]  # latencies 100 200 200 400 900
    assert v["count"] == 5 and v["unfinished"] == 1
    assert v["mean_us"] == pytest.approx(360.0)
    assert v["p50_us"] == pytest.approx(200.0)
    assert v["p95_us"] == pytest.approx(400 + 0.8 * 500)  # rank 3.8 of 0..4
    assert v["p99_us"] == pytest.approx(400 + 0.96 * 500)
    assert v["max_us"] == 900.0
    assert v["throughput_per_s"] == pytest.approx(4 / 0.01)  # 4 finished inside the window
    assert v["service_mean_us"] == pytest.approx((190 + 350 + 95 + 800 + 150) / 5)
    assert m["rt"]["distilbert"]["p99_us"] == 500.0
    assert m["rt_throughput_per_s"] == pytest.approx(500.0)


def test_be_throughput_and_preemptions():
    m = met.run_metrics(hand_run(), W, CLIENTS)
    assert m["be"]["resnet152"] == {
        "completed": 3, "throughput_per_s": pytest.approx(300.0), "preemptions_of_completed": 3,
    }  # fmt: skip
    assert m["overall_throughput_per_s"] == pytest.approx(800.0)
    p = m["preemption"]
    assert p["count"] == 2
    assert p["p50_us"] == pytest.approx(75.0) and p["p99_us"] == pytest.approx(99.5)
    assert p["drain_p50_us"] == pytest.approx(62.5)
    assert (
        p["with_kill"] == 1
        and p["killed_blocks"] == 7
        and p["dropped_kernels_mean"] == pytest.approx(3.0)
    )
    assert p["by_rt_model"] == {"vgg19": {"count": 2, "p50_us": 75.0, "p99_us": 99.5}}
    assert sorted(p["samples"]) == [[50.0, 2], [100.0, 4]]


def test_busy_fraction_is_the_union_of_rt_service():
    m = met.run_metrics(hand_run(), W, CLIENTS)
    # 190 + (3050..3600 = 550) + 95 + 800 + (10950..11000 = 50) of 10000 us
    assert m["rt_service_busy_fraction"] == pytest.approx(1685 / 10000)
    assert m["busy_fraction"] is None
    assert met.busy_fraction_from_intervals([(0, 5), (1, 2), (4, 8)], met.Window(0, 10)) == 0.8


def test_references_ideal_and_share_kept():
    rt_only = met.run_metrics(hand_run(busy=0.25), W, CLIENTS)
    be_alone = met.run_metrics(
        Run("streams", [Req("be0", "y", "be", 0, 0, t) for t in range(1000, 11000, 100)]),
        W, CLIENTS,
    )  # fmt: skip
    assert be_alone["be_throughput_per_s"] == pytest.approx(10000.0)
    ref = met.references(rt_only, be_alone)
    assert ref.rt_busy_source == "scheduler" and ref.rt_busy_fraction == 0.25
    assert ref.ideal_overall_per_s == pytest.approx(500 + 10000 * 0.75)
    pol = met.run_metrics(hand_run(), W, CLIENTS)
    c = met.compare(pol, ref)
    assert c["overall_vs_rt_only"] == pytest.approx(800 / 800)  # rt-only's own overall is 800
    assert c["overall_vs_ideal"] == pytest.approx(800 / 8000)
    assert c["be_share_kept"] == pytest.approx(300 / 7500)
    assert c["rt_p99_vs_rt_only"]["vgg19"] == pytest.approx(1.0)


def test_references_without_scheduler_busy_use_rt_service_union():
    rt_only = met.run_metrics(hand_run(), W, {k: v for k, v in CLIENTS.items() if v[0] == "rt"})
    ref = met.references(rt_only, None)
    assert ref.rt_busy_fraction == pytest.approx(0.1685)
    assert "union" in ref.rt_busy_source
    assert ref.ideal_overall_per_s == pytest.approx(500.0)  # no BE clients: RT rate only
    assert met.compare(rt_only, ref)["be_share_kept"] is None


def test_empty_run_gives_counts_not_crashes():
    m = met.run_metrics(Run("sequential"), W, CLIENTS)
    assert m["rt"]["vgg19"]["count"] == 0 and m["rt"]["vgg19"]["p99_us"] is None
    assert m["be"]["resnet152"]["throughput_per_s"] == 0.0
    assert m["preemption"]["count"] == 0 and m["preemption"]["dropped_kernels_mean"] is None
