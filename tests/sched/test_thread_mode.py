"""submit()/close() from threads, with the engine on its scheduler thread (sim device) and
in-process (Future.result() drives it)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from reef_rocm.package.files import ModelPackage
from reef_rocm.sched import SchedOptions, Scheduler, SchedulerClosed, outputs_match


@pytest.mark.parametrize("threaded", [True, False])
def test_submit_from_threads(sim, packages, threaded):
    pr, pb = ModelPackage.load(packages["rt"]), ModelPackage.load(packages["be"])
    with Scheduler(sim(), SchedOptions(policy="reset+poll", threaded=threaded)) as s:
        assert s.threaded is threaded
        hr, hb = s.load(pr, "rt", "cam"), s.load(pb, "be", "bg")
        assert hr.input_specs[0].shape == tuple(pr.manifest.buffers[0].shape)
        results: dict[str, list] = {"rt": [], "be": []}

        def client(h, pkg, key):
            futs = [s.submit(h, pkg.reference_inputs()) for _ in range(4)]
            results[key] = [f.result(timeout=60) for f in futs]

        if threaded:
            ts = [threading.Thread(target=client, args=a)
                  for a in ((hr, pr, "rt"), (hb, pb, "be"))]  # fmt: skip
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
        else:
            client(hr, pr, "rt")
            client(hb, pb, "be")
        for key, pkg in (("rt", pr), ("be", pb)):
            assert len(results[key]) == 4
            for r in results[key]:
                assert outputs_match(r.outputs, pkg.reference_outputs())
                assert r.record.done_us >= r.record.arrival_us
        assert s.status().queue_depths["rt"] == 0


@pytest.mark.parametrize("threaded", [True, False])
def test_close_fails_pending_requests_clearly(sim, packages, threaded):
    pb = ModelPackage.load(packages["be"])
    s = Scheduler(sim(), SchedOptions(threaded=threaded))
    hb = s.load(pb, "be")
    futs = [s.submit(hb, pb.reference_inputs()) for _ in range(20)]
    s.close()
    done = [f for f in futs if f.exception() is None]
    failed = [f for f in futs if f.exception() is not None]
    assert failed and all(isinstance(f.exception(), SchedulerClosed) for f in failed)
    assert all(outputs_match(f.result().outputs, pb.reference_outputs()) for f in done)
    with pytest.raises(SchedulerClosed):
        s.submit(hb, pb.reference_inputs())
    s.close()  # twice is fine


def test_bad_requests_are_refused_clearly(sim, packages):
    pb = ModelPackage.load(packages["be"])
    with Scheduler(sim(), SchedOptions(policy="rt-only")) as s:
        hb = s.load(pb, "be")
        with pytest.raises(Exception, match="runs no best-effort"):
            s.submit(hb, pb.reference_inputs())
    with Scheduler(sim()) as s:
        hb = s.load(pb, "be")
        x = pb.reference_inputs()[0]
        with pytest.raises(ValueError, match="float32"):
            s.submit(hb, [x.astype(np.float64)])
        with pytest.raises(ValueError, match="takes 1 input"):
            s.submit(hb, [x, x])
        with pytest.raises(ValueError, match="priority"):
            s.load(pb, "urgent")
        s.unload(hb)
        with pytest.raises(ValueError, match="not loaded"):
            s.submit(hb, [x])
