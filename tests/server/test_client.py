"""The Python client end to end against the real scheduler on a simulated GPU: correct outputs
through shared memory and inline, async completions, and context managers that release every
server-side resource (device memory back to where it was)."""

from __future__ import annotations

import numpy as np
import pytest

from reef_rocm.client import Client
from reef_rocm.errors import ReefError
from tests.server.simref import expected_output


def _mem(c: Client) -> int:
    mem = c.status()["gpus"][0]["memory_in_use_bytes"]
    assert isinstance(mem, int) and mem >= 0  # the sim allocator's books, as a plain int
    return mem


@pytest.mark.parametrize("transport", ["shm", "inline"])
def test_infer_and_infer_async_are_correct(serve, packages, transport):
    srv = serve()
    rng = np.random.default_rng(1)
    with Client(srv.address, name="cam0", transport=transport) as c:
        assert c.gpus[0]["simulated"] is True and c.policy == "reset+poll"
        with c.load("chain", priority="rt") as rt, c.load(zoo="long", priority="be") as be:
            assert rt.inputs[0].shape == (256,) and be.outputs[0].shape == (4096,)
            for _ in range(5):
                x = rng.standard_normal(256).astype(np.float32)
                np.testing.assert_allclose(rt.infer(x)[0], expected_output(packages / "chain", x),
                                           rtol=1e-5, atol=1e-5)  # fmt: skip
            xs = [rng.standard_normal(4096).astype(np.float32) for _ in range(12)]
            futs = [be.infer_async([x]) for x in xs] + [rt.infer_async(xs[0][:256])]
            outs = [f.result(timeout=60) for f in futs]
            for x, o in zip(xs, outs[:-1], strict=True):
                np.testing.assert_allclose(o[0], expected_output(packages / "long", x),
                                           rtol=1e-5, atol=1e-5)  # fmt: skip
            np.testing.assert_allclose(outs[-1][0],
                                       expected_output(packages / "chain", xs[0][:256]),
                                       rtol=1e-5, atol=1e-5)  # fmt: skip
            with pytest.raises(ValueError, match="must be float32"):
                rt.infer(np.zeros(256, np.float64))  # refused before it is sent


def test_context_managers_release_server_state(serve):
    srv = serve()
    with Client(srv.address, name="watcher") as w:
        base = _mem(w)
        with Client(srv.address, name="user") as c:
            m = c.load("long", priority="be")
            futs = [m.infer_async(np.ones(4096, np.float32)) for _ in range(4)]
            assert _mem(w) > base
            [f.result(timeout=60) for f in futs]
            with c.load("chain", priority="rt") as rt:
                rt.infer(np.ones(256, np.float32))
            st = w.status()
            assert [x["name"] for x in st["gpus"][0]["models"]] == ["long"]
            assert st["shm_regions"] >= 1
        st = w.status()
        assert st["sessions"] == 1 and st["shm_regions"] == 0 and st["gpus"][0]["models"] == []
        assert _mem(w) == base
        with pytest.raises(ReefError, match="closed"):
            m.infer_async(np.ones(4096, np.float32))


def test_async_completions_arrive_once_each(serve):
    srv = serve()
    with Client(srv.address) as c, c.load("chain", priority="be") as m:
        xs = [np.full(256, i, np.float32) for i in range(64)]
        futs = [m.infer_async(x) for x in xs]
        outs = [f.result(timeout=60)[0] for f in futs]
        # a constant input gives a constant-offset output: each completion matches its request
        firsts = [o[0] - outs[0][0] for o in outs]
        assert len(set(np.round(firsts, 4))) == 64
        assert not c._waiting
