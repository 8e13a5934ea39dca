"""The simulated device the sim tests use: every modelled latency zeroed unless a test sets it,
so expected timelines are plain sums of block times."""

from __future__ import annotations

from reef_rocm.gpu import open_device
from reef_rocm.gpu.sim import SimDevice

EXACT = dict(
    launch_overhead_us=0,
    stream_op_overhead_us=0,
    query_overhead_us=0,
    sync_latency_us=0,
    dispatch_latency_us=0,
    flag_visibility_us=0,
    block_skip_us=0,
    ioctl_latency_us=0,
    copy_latency_us=0,
    trace=True,
)
BE_PARAMS = ("out", "flag:ptr:preempt_flag", "slot:ptr:completion_slot")


def exact_sim(default_compute_units: int, **kw) -> SimDevice:
    """The exact sim; ``compute_units`` (and any other option) may be overridden by ``kw``."""
    dev = open_device("sim", **{**EXACT, "compute_units": default_compute_units, **kw})
    assert isinstance(dev, SimDevice)
    return dev
