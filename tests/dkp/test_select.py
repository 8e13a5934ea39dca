"""Kernel selection (REEF's rules 1 and 2) and proxy choice, on hand-made profiles and real
code-object resources (an sm_90 occupancy model from reef_rocm.codeobj)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from reef_rocm.codeobj import KernelResources, occupancy
from reef_rocm.dkp.build import ProxyBuild
from reef_rocm.dkp.proxy import choose_proxy
from reef_rocm.dkp.select import BeCandidate, KernelProfile, Selector
from reef_rocm.errors import UnsupportedError

SMS = 132


def proxy(budget: int, regs: int | None = None) -> ProxyBuild:
    res = KernelResources("reef_dkp_dispatch_kernel", "nvidia", "sm_90", regs or budget,
                          shared_bytes=16)  # fmt: skip
    return ProxyBuild(budget, f"r{budget}.cubin", res)


PROXIES = [proxy(b) for b in (32, 40, 48, 64, 96, 128, 255)]


def kern(name, blocks, us, regs, threads=128, smem=0) -> KernelProfile:
    res = KernelResources(name, "nvidia", "sm_90", regs, shared_bytes=smem)
    per_cu = occupancy("sm_90", res, threads).blocks_per_cu
    return KernelProfile(name, blocks, threads, us, per_cu, regs, smem)


def test_choose_proxy_smallest_covering_budget():
    assert choose_proxy(PROXIES, 33, 20).budget == 40
    assert choose_proxy(PROXIES, 64, 64).budget == 64
    assert choose_proxy(PROXIES, 1).budget == 32
    with pytest.raises(UnsupportedError, match="largest proxy budget"):
        choose_proxy(PROXIES[:3], 64)


def test_rule2_rejects_a_pair_that_lowers_rt_occupancy():
    sel = Selector("sm_90", SMS, PROXIES)
    rt = kern("rt", 98, 60.0, 32)  # 16 blocks of 128 threads per SM at 32 registers
    heavy = kern("be", 10000, 2000.0, 90)  # needs the 96 proxy: 5 blocks per SM
    assert rt.blocks_per_cu == 16
    strict = Selector("sm_90", SMS, PROXIES, allow_spill=False)
    assert strict.pair(rt, heavy) is None
    assert strict.select(rt, [BeCandidate(heavy, 10000)]) is None
    # REEF's occupancy class instead: the largest budget that keeps 16 blocks (32 registers;
    # the BE body is squeezed from 90 into 32 registers)
    p, occ = sel.pair(rt, heavy)
    assert (p.budget, occ) == (32, 16)
    rt48 = kern("rt48", 98, 60.0, 48)  # 10 blocks per SM
    assert sel.pair(rt48, heavy)[0].budget == 48
    light = kern("be2", 10000, 2000.0, 30)
    p, occ = sel.pair(rt, light)
    assert p.budget == 32 and occ == 16
    # big shared memory in the BE body lowers the pair's occupancy below the RT kernel's
    fat = dataclasses.replace(light, body_smem=48 * 1024)
    assert sel.pair(rt, fat) is None  # no register budget fixes shared memory


def test_rule2_uses_the_proxys_real_registers_not_its_budget():
    # a build where indirect calls made the 64 proxy use 72 registers: 7 instead of 8 blocks
    sel = Selector("sm_90", SMS, [proxy(64, regs=72)], allow_spill=False)
    rt = kern("rt", 98, 60.0, 64)
    assert rt.blocks_per_cu == 8
    assert sel.pair(rt, kern("be", 1000, 100.0, 60)) is None


def test_rule1_count_fits_the_rt_time():
    sel = Selector("sm_90", SMS, PROXIES)
    rt = kern("rt", 98, 60.0, 40)  # 40 regs -> 12 blocks/SM -> 9 SMs busy
    be = kern("be", 200000, 4000.0, 40)  # 12 blocks/SM: 127 waves of ~31.5 us
    n_rt = sel.rt_cus(rt)
    assert n_rt == math.ceil(98 / 12) == 9
    pad = sel.select(rt, [BeCandidate(be, 200000)])
    free, occ = SMS - n_rt, pad.blocks_per_cu
    wave = be.us / math.ceil(200000 / (SMS * be.blocks_per_cu))
    assert pad.be_count == int(60.0 // wave) * free * occ
    assert pad.est_be_us <= rt.us
    # fewer blocks left than fit: all of them
    assert sel.select(rt, [BeCandidate(be, 50)]).be_count == 50
    # a BE wave longer than the RT kernel: not eligible
    slow = kern("slow", 1000, 10000.0, 40)
    assert sel.select(rt, [BeCandidate(slow, 1000)]) is None


def test_select_prefers_the_busiest_fit_and_skips_mismatched_blocks():
    sel = Selector("sm_90", SMS, PROXIES)
    rt = kern("rt", 98, 100.0, 40)
    small = kern("small", 300, 5.0, 40)  # all 300 blocks in one 5 us wave
    big = kern("big", 100000, 5000.0, 40)
    other_shape = kern("wide", 100000, 5000.0, 40, threads=256)
    c = [BeCandidate(other_shape, 100000), BeCandidate(small, 300), BeCandidate(big, 100000)]
    pad = sel.select(rt, c)
    assert pad.be == 2  # keeps the leftover SMs busy longest within 100 us
    assert sel.select(rt, c[:1]) is None
    assert sel.select(rt, [BeCandidate(big, 0)]) is None


def test_no_padding_when_the_rt_kernel_fills_the_device():
    sel = Selector("sm_90", SMS, PROXIES)
    rt = kern("rt", 100000, 5000.0, 40)
    assert sel.rt_cus(rt) == SMS
    assert sel.select(rt, [BeCandidate(kern("be", 10, 1.0, 32), 10)]) is None


def test_selector_refuses_nonsense():
    with pytest.raises(ValueError):
        Selector("sm_90", 0, PROXIES)
    with pytest.raises(ValueError):
        Selector("sm_90", SMS, [])
