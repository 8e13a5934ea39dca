"""Bad requests get a clear gRPC status and change nothing; sessions cannot touch each other's
models or tensors. Raw generated stubs, the real scheduler, simulated GPUs."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from reef_rocm.client import Client, RemoteError
from reef_rocm.client.shm import SharedRegion
from tests.server.helpers import Raw
from tests.server.simref import expected_output

C = grpc.StatusCode


def _code(call, *args) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call(*args)
    return e.value.code(), e.value.details()


def _snapshot(raw: Raw) -> tuple:
    st = raw.Status(raw.pb.StatusRequest())
    g = st.gpus[0]
    return (st.sessions, st.shm_regions, st.in_flight, g.memory_in_use_bytes,
            sorted((m.model_id, m.name) for m in g.models), g.healthy)  # fmt: skip


def _tensor(pb, a, **kw):
    return pb.Tensor(dtype=str(a.dtype), shape=a.shape, inline=a.tobytes(), **kw)


@pytest.fixture
def setup(serve, packages):
    srv = serve(max_inline_bytes=16 * 1024)
    raw = Raw(srv.address, client_name="raw")
    pb = raw.pb
    m = raw.Load(pb.LoadRequest(path="chain", priority="rt"))
    yield srv, raw, m, packages
    raw.close()


def test_good_inline_request_is_correct(setup):
    srv, raw, m, packages = setup
    x = np.random.default_rng(0).standard_normal(256).astype(np.float32)
    r = raw.Infer(raw.pb.InferRequest(model_id=m.model_id, inputs=[_tensor(raw.pb, x)]))
    out = np.frombuffer(r.outputs[0].inline, np.float32)
    np.testing.assert_allclose(out, expected_output(packages / "chain", x), rtol=1e-5, atol=1e-6)
    assert r.timing.server_us > 0


def test_bad_requests_are_refused_and_change_nothing(setup):
    srv, raw, m, _ = setup
    pb = raw.pb
    x = np.zeros(256, np.float32)
    before = _snapshot(raw)
    mid = m.model_id

    def infer(*tensors, outputs=(), model_id=mid):
        return raw.Infer(pb.InferRequest(model_id=model_id, inputs=list(tensors), outputs=outputs))

    cases = {
        "unknown zoo model": (lambda: raw.Load(pb.LoadRequest(zoo=pb.ZooModel(name="nosuch"),
                                                              priority="be")), C.NOT_FOUND,
                              "no package of model 'nosuch'"),
        "unknown path": (lambda: raw.Load(pb.LoadRequest(path="nosuch", priority="be")),
                         C.NOT_FOUND, "no package"),
        "path outside": (lambda: raw.Load(pb.LoadRequest(path="/etc", priority="be")),
                         C.PERMISSION_DENIED, "outside"),
        "invalid package": (lambda: raw.Load(pb.LoadRequest(path="broken", priority="be")),
                            C.INVALID_ARGUMENT, "missing sim/plain.simmod.json"),
        "other arch": (lambda: raw.Load(pb.LoadRequest(path="other_arch", priority="be")),
                       C.INVALID_ARGUMENT, "built for sim:sm_90"),
        "bad priority": (lambda: raw.Load(pb.LoadRequest(path="chain", priority="urgent")),
                         C.INVALID_ARGUMENT, "priority"),
        "no tensors": (lambda: infer(), C.INVALID_ARGUMENT, "takes 1 input(s)"),
        "two tensors": (lambda: infer(_tensor(pb, x), _tensor(pb, x)), C.INVALID_ARGUMENT,
                        "got 2"),
        "shape": (lambda: infer(_tensor(pb, np.zeros(255, np.float32))), C.INVALID_ARGUMENT,
                  "must be float32[256]"),
        "dtype": (lambda: infer(_tensor(pb, np.zeros(256, np.float64))), C.INVALID_ARGUMENT,
                  "got float64"),
        "unknown dtype": (lambda: infer(pb.Tensor(dtype="float99", shape=[256], inline=b"")),
                          C.INVALID_ARGUMENT, "unknown dtype"),
        "size": (lambda: infer(pb.Tensor(dtype="float32", shape=[256], inline=b"\0" * 1000)),
                 C.INVALID_ARGUMENT, "1000 bytes of data for a tensor of 1024"),
        "no data": (lambda: infer(pb.Tensor(dtype="float32", shape=[256])), C.INVALID_ARGUMENT,
                    "no data"),
        "unmapped region": (lambda: infer(pb.Tensor(dtype="float32", shape=[256],
                                                    shm=pb.ShmSlice(region_id=999, nbytes=1024))),
                            C.NOT_FOUND, "region 999 is not registered"),
        "unknown model": (lambda: infer(_tensor(pb, x), model_id=12345), C.NOT_FOUND,
                          "model 12345 is not loaded"),
        "output count": (lambda: infer(_tensor(pb, x), outputs=[pb.ShmSlice(), pb.ShmSlice()]),
                         C.INVALID_ARGUMENT, "has 1 output(s)"),
        "unregister unknown": (lambda: raw.UnregisterShm(pb.UnregisterShmRequest(region_id=77)),
                               C.NOT_FOUND, "not registered"),
        "shm that does not exist": (lambda: raw.RegisterShm(
            pb.RegisterShmRequest(name="/reef-nosuch-0", size=64)), C.NOT_FOUND, "does not exist"),
        "shm name with a path": (lambda: raw.RegisterShm(
            pb.RegisterShmRequest(name="/../etc/passwd", size=64)), C.INVALID_ARGUMENT,
            "not a plain POSIX shm name"),
    }  # fmt: skip
    for what, (call, code, text) in cases.items():
        got, details = _code(call)
        assert got == code, f"{what}: {got} {details}"
        assert text in details, f"{what}: {details!r}"
    assert _snapshot(raw) == before


def test_shm_region_too_small_and_slices_out_of_range(setup):
    srv, raw, m, packages = setup
    pb = raw.pb
    region = SharedRegion(4096)
    try:
        got, details = _code(raw.RegisterShm, pb.RegisterShmRequest(name=region.name, size=8192))
        assert got == C.INVALID_ARGUMENT and "smaller than the 8192 bytes" in details
        rid = raw.RegisterShm(pb.RegisterShmRequest(name=region.name, size=4096)).region_id
        before = _snapshot(raw)

        def tensor(off, n=1024):
            return pb.Tensor(dtype="float32", shape=[256],
                             shm=pb.ShmSlice(region_id=rid, offset=off, nbytes=n))  # fmt: skip

        req = pb.InferRequest
        for t, code, text in [
            (tensor(3584), C.OUT_OF_RANGE, "runs past the end"),
            (tensor(2), C.INVALID_ARGUMENT, "not aligned"),
            (tensor(0, 512), C.INVALID_ARGUMENT, "slice of 512 bytes"),
        ]:
            got, details = _code(raw.Infer, req(model_id=m.model_id, inputs=[t]))
            assert got == code and text in details, details
        out = pb.ShmSlice(region_id=rid, offset=3584, nbytes=1024)
        got, _ = _code(raw.Infer, req(model_id=m.model_id, inputs=[tensor(0)], outputs=[out]))
        assert got == C.OUT_OF_RANGE
        assert _snapshot(raw) == before
        # the same region used correctly: input at 0, output at 1024
        x = np.arange(256, dtype=np.float32) / 256
        region.view(0, np.dtype(np.float32), (256,))[:] = x
        out = pb.ShmSlice(region_id=rid, offset=1024, nbytes=1024)
        raw.Infer(req(model_id=m.model_id, inputs=[tensor(0)], outputs=[out]))
        got = region.view(1024, np.dtype(np.float32), (256,))
        ref = expected_output(packages / "chain", x)
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
        raw.UnregisterShm(pb.UnregisterShmRequest(region_id=rid))
        got, _ = _code(raw.Infer, req(model_id=m.model_id, inputs=[tensor(0)]))
        assert got == C.NOT_FOUND  # unregistered: unmapped for the server
    finally:
        region.close()


def test_oversized_inline_payload_and_unloaded_model(setup):
    srv, raw, m, _ = setup
    pb = raw.pb
    big = raw.Load(pb.LoadRequest(path="long", priority="be"))  # 4096 float32 in and out
    before = _snapshot(raw)
    x = np.zeros(4096, np.float32)
    got, details = _code(raw.Infer, pb.InferRequest(model_id=big.model_id, inputs=[_tensor(pb, x)]))
    assert got == C.RESOURCE_EXHAUSTED and "limit of 16384" in details, details
    huge = np.zeros(1 << 19, np.float32)  # 2 MiB: past the message limit itself
    got, _ = _code(raw.Infer, pb.InferRequest(model_id=big.model_id, inputs=[_tensor(pb, huge)]))
    assert got == C.RESOURCE_EXHAUSTED
    assert _snapshot(raw) == before
    raw.Unload(pb.UnloadRequest(model_id=big.model_id))
    got, details = _code(raw.Infer, pb.InferRequest(model_id=big.model_id, inputs=[_tensor(pb, x)]))
    assert got == C.NOT_FOUND and "unloaded" in details
    got, _ = _code(raw.Unload, pb.UnloadRequest(model_id=big.model_id))
    assert got == C.NOT_FOUND


def test_calls_without_a_session_are_unauthenticated(setup):
    srv, raw, m, _ = setup
    pb = raw.pb
    ch = grpc.insecure_channel(str(srv.address))
    try:
        from reef_rocm.proto import reef_pb2_grpc

        stub = reef_pb2_grpc.ReefStub(ch)
        got, _ = _code(stub.Status, pb.StatusRequest())
        assert got == C.UNAUTHENTICATED
        with pytest.raises(grpc.RpcError) as e:
            stub.Unload(pb.UnloadRequest(model_id=m.model_id), metadata=(("reef-session", "x"),))
        assert e.value.code() == C.UNAUTHENTICATED
    finally:
        ch.close()
    assert len(_snapshot(raw)[4]) == 1  # the model is still there


def test_one_client_cannot_touch_another_clients_models_or_tensors(serve, packages):
    srv = serve()
    with Client(srv.address, name="alice") as a, Client(srv.address, name="bob") as b:
        ma = a.load("chain", priority="rt")
        x = np.linspace(-1, 1, 256, dtype=np.float32)
        ref = expected_output(packages / "chain", x)
        np.testing.assert_allclose(ma.infer([x])[0], ref, rtol=1e-5, atol=1e-6)
        region_a = next(iter(a._regions))  # alice's input/output region
        # bob with alice's ids: unknown to his session
        mb = b.load("chain", priority="be")
        for call in (
            lambda: b._stub.Unload(a_pb(b).UnloadRequest(model_id=ma.id), metadata=b._md),
            lambda: b._stub.Infer(a_pb(b).InferRequest(model_id=ma.id, inputs=[
                a_pb(b).Tensor(dtype="float32", shape=[256], inline=x.tobytes())]),
                metadata=b._md),
            lambda: b._stub.Infer(a_pb(b).InferRequest(model_id=mb.id, inputs=[
                a_pb(b).Tensor(dtype="float32", shape=[256],   # read alice's tensor
                               shm=a_pb(b).ShmSlice(region_id=region_a, nbytes=1024))]),
                metadata=b._md),
            lambda: b._stub.Infer(a_pb(b).InferRequest(model_id=mb.id, inputs=[
                a_pb(b).Tensor(dtype="float32", shape=[256], inline=x.tobytes())],
                outputs=[a_pb(b).ShmSlice(region_id=region_a, offset=1024, nbytes=1024)]),
                metadata=b._md),  # overwrite alice's output
            lambda: b._stub.UnregisterShm(a_pb(b).UnregisterShmRequest(region_id=region_a),
                                          metadata=b._md),
        ):  # fmt: skip
            with pytest.raises(grpc.RpcError) as e:
                call()
            assert e.value.code() == C.NOT_FOUND, e.value.details()
        # alice's model and tensors are intact and still hers
        np.testing.assert_allclose(ma.infer([x])[0], ref, rtol=1e-5, atol=1e-6)
        st = b.status()
        mine = {m["client"]: m["mine"] for m in st["gpus"][0]["models"]}
        assert mine == {"alice": False, "bob": True}
        with pytest.raises(RemoteError) as e:  # the client's own error type, same status
            b.load("nosuch", priority="be")
        assert e.value.code == C.NOT_FOUND


def a_pb(_client):
    from reef_rocm.proto import reef_pb2

    return reef_pb2


def test_session_limits(serve):
    srv = serve(max_sessions=2)
    with Client(srv.address) as a, Client(srv.address) as b:
        assert a.session_id != b.session_id
        with pytest.raises(RemoteError) as e:
            Client(srv.address)
        assert e.value.code == C.RESOURCE_EXHAUSTED and "at most 2 sessions" in e.value.details
        with pytest.raises(RemoteError) as e:
            Client(srv.address, gpu=3)
        assert e.value.code in (C.INVALID_ARGUMENT, C.RESOURCE_EXHAUSTED)
    with Client(srv.address) as c:  # the ended sessions freed their places
        with pytest.raises(RemoteError) as e:
            Client(srv.address, gpu=3)
        assert e.value.code == C.INVALID_ARGUMENT and "no GPU 3" in e.value.details
        assert c.status()["sessions"] == 1
