"""Two simulated GPUs, one scheduler each: the placement rule, per-client overrides, and a
failure on one GPU that only its clients see."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from reef_rocm.client import Client, RemoteError
from tests.server.helpers import sim_devices
from tests.server.simref import expected_output


def _where(c: Client) -> dict[str, int]:
    return {f"{m['client']}/{m['priority']}": g["info"]["index"]
            for g in c.status()["gpus"] for m in g["models"]}  # fmt: skip


def test_placement_on_two_gpus(serve):
    srv = serve(devices=sim_devices(2))
    with Client(srv.address, name="obstacle", workload="car") as rt, \
         Client(srv.address, name="fatigue", workload="car") as be, \
         Client(srv.address, name="other") as o, \
         Client(srv.address, name="pinned", gpu=0) as p:  # fmt: skip
        rt.load("chain", priority="rt")
        be.load("long", priority="be")
        o.load("chain", priority="be")
        p.load("chain", priority="be")
        where = _where(o)
        assert where["obstacle/rt"] == where["fatigue/be"] == 0  # one workload, one GPU
        assert where["other/be"] == 1  # least loaded
        assert where["pinned/be"] == 0  # the client's override
        m = o.load("chain", priority="rt", gpu=0)  # the per-load override
        assert m.gpu == 0
        with pytest.raises(RemoteError) as e:
            o.load("chain", priority="rt", gpu=5)
        assert e.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_load_error_on_one_gpu_is_reported_to_its_client_only(serve, packages):
    # GPU 1 is too small for the model: its client hears so, GPU 0 serves on
    devs = sim_devices(1) + [sim_devices(2, memory_bytes=20_000)[1]]
    srv = serve(devices=devs)
    with Client(srv.address, name="a", gpu=0) as a, Client(srv.address, name="b", gpu=1) as b:
        ma = a.load("long", priority="be")
        with pytest.raises(RemoteError) as e:
            b.load("long", priority="be")
        assert e.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "out of memory" in e.value.details
        x = np.ones(4096, np.float32)
        np.testing.assert_allclose(ma.infer(x)[0], expected_output(packages / "long", x),
                                   rtol=1e-5, atol=1e-5)  # fmt: skip
        st = a.status()
        assert [g["healthy"] for g in st["gpus"]] == [True, True]
        b.load("chain", priority="be")  # the GPU itself is fine


# the scheduler thread of the faulted GPU still raises while freeing on the closed device
# (reef_rocm.sched's engine close; reported to its owner): not this test's concern
@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_device_fault_on_one_gpu_stops_only_that_gpu(serve, packages):
    devs = sim_devices(2)
    srv = serve(devices=devs)
    with Client(srv.address, name="a", gpu=0) as a, Client(srv.address, name="b", gpu=1) as b:
        ma, mb = a.load("long", priority="be"), b.load("long", priority="be")
        x = np.ones(4096, np.float32)
        ref = expected_output(packages / "long", x)
        np.testing.assert_allclose(mb.infer(x)[0], ref, rtol=1e-5, atol=1e-5)
        devs[1].close()  # GPU 1 falls off the bus: every call on it fails from now on
        with pytest.raises(RemoteError) as e:
            mb.infer(x)
        assert e.value.code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL)
        with pytest.raises(RemoteError) as e:
            mb.infer(x)
        assert e.value.code == grpc.StatusCode.UNAVAILABLE and "GPU 1" in e.value.details
        with pytest.raises(RemoteError) as e:
            b.load("chain", priority="be")
        assert e.value.code == grpc.StatusCode.UNAVAILABLE
        for _ in range(3):  # GPU 0 and its client carry on
            np.testing.assert_allclose(ma.infer(x)[0], ref, rtol=1e-5, atol=1e-5)
        st = a.status()
        assert [g["healthy"] for g in st["gpus"]] == [True, False]
        assert st["gpus"][1]["error"]
        with Client(srv.address, name="late") as late:  # new clients go to the healthy GPU
            assert late.load("chain", priority="rt").gpu == 0
