"""Sim model packages and devices for the scheduler tests (all on the sim backend)."""

from __future__ import annotations

import pytest

from reef_rocm.gpu import open_device
from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package

CUS = 8


def be_plans(n: int = 8, blocks: int = 32, block_us: float = 20.0, trips: int = 10):
    return [
        SimKernelPlan(f"b{i}", grid=blocks, block=64, block_time_us=block_us, blocks_per_cu=1,
                      loop_trips=trips)
        for i in range(n)
    ]  # fmt: skip


def rt_plans(n: int = 4):
    return [
        SimKernelPlan(f"r{i}", grid=8, block=64, block_time_us=5.0, blocks_per_cu=1)
        for i in range(n)
    ]


@pytest.fixture(scope="session")
def packages(tmp_path_factory):
    """name -> package path: RT models and BE models (with a reef_poll_every argument)."""
    root = tmp_path_factory.mktemp("simpk")
    out = {}
    out["rt"] = build_sim_package(root / "rt", "rt_chain", rt_plans(), compute_units=CUS)
    out["rt2"] = build_sim_package(
        root / "rt2", "rt_chain2", rt_plans(3), compute_units=CUS, seed=3
    )
    out["be"] = build_sim_package(
        root / "be", "be_chain", be_plans(), compute_units=CUS, poll_arg=True
    )
    for k in range(4):
        out[f"be{k}"] = build_sim_package(
            root / f"be{k}", f"be_chain{k}", be_plans(4 + k, blocks=16 + 8 * k),
            compute_units=CUS, poll_arg=True, seed=10 + k,
        )  # fmt: skip
    # one long kernel of many blocks: partial runs of one kernel, again and again
    out["long"] = build_sim_package(
        root / "long", "long_chain",
        [SimKernelPlan("l0", grid=8, block=64, block_time_us=4.0, blocks_per_cu=1),
         SimKernelPlan("l1", grid=100, block=64, block_time_us=30.0, blocks_per_cu=1,
                       loop_trips=30),
         SimKernelPlan("l2", grid=8, block=64, block_time_us=4.0, blocks_per_cu=1)],
        compute_units=CUS, poll_arg=True, seed=7,
    )  # fmt: skip
    return out


@pytest.fixture
def sim():
    """A fresh simulated device factory (gfx90a model with CUS CUs; options pass through)."""

    def make(**kw):
        kw.setdefault("compute_units", CUS)
        return open_device("sim", **kw)

    return make
