"""A padded launch on the simulated GPU, approximated by two CU-masked streams.

The sim has no dispatcher kernel and no indirect calls: the RT kernel runs on a stream masked
to the RT CUs and the BE kernel's selected virtual blocks on a stream masked to the rest, both
at the occupancy the selection assumed for the proxy. That is the partition a padded launch
makes (blocks placed by CU id), not its mechanism. What it checks against an independent
placement model: the split from ``cus_needed`` leaves the RT kernel as fast as alone (rule
2's premise), and the BE count from rule 1 finishes within the RT kernel's time.
"""

from __future__ import annotations

import pytest

from reef_rocm.codeobj import KernelResources
from reef_rocm.dkp.build import ProxyBuild
from reef_rocm.dkp.select import BeCandidate, KernelProfile, Selector
from reef_rocm.gpu import LaunchConfig, open_device
from reef_rocm.gpu.sim import SimKernelSpec

ARCH, CUS = "gfx90a", 104
PROXY = ProxyBuild(
    64, "r64.hsaco",
    KernelResources("reef_dkp_dispatch_kernel", "amd", ARCH, 32, sgprs=32, shared_bytes=8),
)  # fmt: skip


def _alone(spec: SimKernelSpec, blocks: int, per_cu: int) -> float:
    dev = open_device("sim", arch=ARCH, compute_units=CUS, trace=True)
    try:
        k = dev.load_module(spec).get_kernel(spec.name)
        s = dev.create_stream()
        k.bind(LaunchConfig(blocks, 256), [dev.alloc(4) for _ in spec.params]).launch(s)
        dev.synchronize()
        (rec,) = dev.trace.kernels(spec.name)
        return rec.end_us - rec.start_us
    finally:
        dev.close()


@pytest.mark.parametrize("rt_blocks, rt_block_us, be_block_us", [(40, 50.0, 20.0),
                                                                  (150, 80.0, 7.0)])  # fmt: skip
def test_cu_masked_padding_keeps_rt_time_and_fits_be(rt_blocks, rt_block_us, be_block_us):
    rt_spec = SimKernelSpec("rt", rt_block_us, params=("out",), blocks_per_cu=2)
    be_spec = SimKernelSpec("be", be_block_us, params=("out", "slot:ptr:completion_slot"),
                            blocks_per_cu=2)  # fmt: skip
    be_blocks = 20000
    t_rt = _alone(rt_spec, rt_blocks, 2)
    t_be = _alone(be_spec, be_blocks, 2)
    sel = Selector(ARCH, CUS, [PROXY])
    rt = KernelProfile("rt", rt_blocks, 256, t_rt, 2, 32, 0)
    be = KernelProfile("be", be_blocks, 256, t_be, 2, 32, 0)
    pad = sel.select(rt, [BeCandidate(be, be_blocks)])
    assert pad is not None and pad.rt_cus == -(-rt_blocks // 2)
    assert pad.est_be_us <= t_rt

    dev = open_device("sim", arch=ARCH, compute_units=CUS, trace=True)
    try:
        rt_cus = list(range(pad.rt_cus))
        be_cus = list(range(pad.rt_cus, CUS))
        s_rt = dev.create_stream(cu_mask=rt_cus)
        # the BE side at the proxy's occupancy (what the padded launch runs it at)
        be_pad = SimKernelSpec("be", be_block_us, params=be_spec.params,
                               blocks_per_cu=pad.blocks_per_cu)  # fmt: skip
        s_be = dev.create_stream(cu_mask=be_cus)
        slot = dev.alloc(4)
        kr = dev.load_module(rt_spec).get_kernel("rt")
        kb = dev.load_module(be_pad).get_kernel("be")
        kb.bind(LaunchConfig(pad.be_count, 256), [dev.alloc(4), slot]).launch(s_be)
        kr.bind(LaunchConfig(rt_blocks, 256), [dev.alloc(4)]).launch(s_rt)
        dev.synchronize()
        (r,) = dev.trace.kernels("rt")
        (b,) = dev.trace.kernels("be")
        assert r.end_us - r.start_us == pytest.approx(t_rt)  # RT as fast as alone
        assert {x.cu for x in dev.trace.blocks("rt")} <= set(rt_cus)
        assert {x.cu for x in dev.trace.blocks("be")} <= set(be_cus)
        assert dev.peek_u32(slot) == pad.be_count
        # rule 1: the BE blocks are done by the time the RT kernel is (same start, +1 dispatch)
        assert b.end_us - b.start_us <= t_rt + 1e-6
    finally:
        dev.close()
