"""The preemption state machine on the sim: back-to-back RT, RT arriving during a
preemption and while BE resumes, many BE clients, and device-timestamp measurement."""

from __future__ import annotations

import json

from reef_rocm.sched import LoadSpec, SchedOptions, Scheduler


def _sched(sim, policy="reset+poll", **kw):
    dev = sim(trace=True)
    return dev, Scheduler(dev, SchedOptions(policy=policy, **kw))


def test_back_to_back_rt_is_one_preemption_fifo(sim, packages):
    dev, s = _sched(sim)
    with s:
        h1, h2 = s.load(packages["rt"], "rt", "cam0"), s.load(packages["rt2"], "rt", "cam1")
        hb = s.load(packages["be"], "be", "bg")
        run = s.run_load(
            [LoadSpec(hb), LoadSpec(h1, [400.0]), LoadSpec(h2, [401.0])], duration_us=1500
        )
    rt = sorted(run.of("rt"), key=lambda r: r.arrival_us)
    assert [r.client for r in rt] == ["cam0", "cam1"]
    assert rt[0].launched_us <= rt[1].launched_us  # FIFO across RT clients
    assert len(run.preemptions) == 1  # the flag stays up from the first RT to the last
    p = run.preemptions[0]
    assert p.rt_arrival_us == 400.0 and p.flag_cleared_us >= rt[1].done_us - 1e-6
    assert all(r.correct for r in run.requests)


def test_rt_arriving_during_a_preemption_raises_no_second_flag(sim, packages):
    dev, s = _sched(sim)
    with s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        run = s.run_load([LoadSpec(hb), LoadSpec(hr, [400.0, 410.0])], duration_us=1500)
    a, b = sorted(run.of("rt"), key=lambda r: r.arrival_us)
    assert b.launched_us >= a.done_us - 1e-6  # same model: one request of it on the GPU
    assert len(run.preemptions) == 1
    writes = [w for w in dev.trace.of_kind("write_value32")]
    assert [w.outcome for w in writes] == ["value=1", "value=0"]
    assert all(r.correct for r in run.requests)


def _rt_done_time(sim, packages, t_rt):
    _, s = _sched(sim)
    with s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        run = s.run_load([LoadSpec(hb, [0.0]), LoadSpec(hr, [t_rt])], duration_us=t_rt + 1)
    return run.of("rt")[0].done_us


def test_rt_arriving_while_be_resumes(sim, packages):
    """A second RT request in the window where the flag is being lowered and BE restored:
    re-raise, evict the restored kernels, restore again - all exact."""
    t1 = 250.0
    done = _rt_done_time(sim, packages, t1)
    for d in [x * 1.5 for x in range(-2, 20)]:
        _, s = _sched(sim, policy="reset+kill" if d % 3 == 0 else "reset+poll")
        with s:
            hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
            run = s.run_load(
                [LoadSpec(hb, [0.0]), LoadSpec(hr, [t1, done + d])], duration_us=done + d + 1
            )
        assert all(r.correct is True for r in run.requests), d
        assert 1 <= len(run.preemptions) <= 2


def test_many_be_clients(sim, packages):
    dev, s = _sched(sim)
    with s:
        hr = s.load(packages["rt"], "rt", "cam")
        hbs = [s.load(packages[f"be{k}"], "be", f"bg{k}") for k in range(4)]
        arrivals = [200.0 + 450.0 * i for i in range(10)]
        run = s.run_load([LoadSpec(hr, arrivals), *(LoadSpec(h) for h in hbs)], 5000)
        st = s.status()
    assert all(r.correct is True for r in run.requests)
    for k in range(4):
        mine = run.of("be", f"bg{k}")
        assert mine and sum(r.preemptions for r in mine) > 0
    assert max(p.be_queues for p in run.preemptions) >= 2
    assert st.policy == "reset+poll" and len(st.models) == 5 and st.queue_depths["rt"] == 0


def test_rt_start_is_the_device_timestamp(sim, packages):
    """start_us comes from the timestamp kernel: at or before the first RT block in the sim's
    own trace, after the launch, and the preemption latency is arrival -> that start."""
    dev, s = _sched(sim)
    with s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        dev.trace.clear()
        t0 = dev.now_us
        run = s.run_load([LoadSpec(hb), LoadSpec(hr, [300.0])], duration_us=800)
        assert s.engine.stamps.calibration.exact
    rt = run.of("rt")[0]
    first = min(b.start_us for b in dev.trace.blocks("r0")) - t0
    stamp = (
        min(b.start_us for b in dev.trace.blocks("reef_timestamp") if b.start_us - t0 >= 300) - t0
    )
    assert abs(rt.start_us - stamp) < 1e-6 and rt.launched_us <= rt.start_us <= first
    p = run.preemptions[0]
    assert p.latency_us == rt.start_us - 300.0 and p.be_drained_us is not None


def test_trace_is_chrome_json(sim, packages, tmp_path):
    dev, s = _sched(sim, trace=True)
    with s:
        hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
        s.run_load([LoadSpec(hb), LoadSpec(hr, [300.0])], duration_us=800)
        path = s.trace.write(tmp_path / "t.json")
    doc = json.loads(path.read_text())
    ev = doc["traceEvents"]
    assert doc["otherData"]["simulated"] is True
    assert {e["ph"] for e in ev} >= {"M", "X", "i"}
    assert any(e["ph"] == "X" and e["cat"].startswith("rt") for e in ev)
    assert all("ts" in e for e in ev if e["ph"] in "Xi")


def test_deterministic_on_the_sim(sim, packages):
    def once():
        _, s = _sched(sim)
        with s:
            hr, hb = s.load(packages["rt"], "rt"), s.load(packages["be"], "be")
            run = s.run_load([LoadSpec(hb), LoadSpec(hr, [300.0, 900.0])], duration_us=1500)
        return [(r.arrival_us, r.start_us, r.done_us) for r in run.requests]

    assert once() == once()
