"""Kernel selection: which BE kernel (and how much of it) pads an RT kernel.

REEF's two rules, per RT kernel:

1. the BE work's expected time on the CUs the RT kernel leaves idle must not exceed the RT
   kernel's time (padding must not make the launch longer than the RT kernel);
2. padding must not lower the RT kernel's occupancy: the proxy kernel that runs both callees
   (its register budget, the larger dynamic shared memory, the common block size) must fit at
   least as many blocks per CU as the RT kernel alone.

Because DKP-ready kernels run any range of their virtual blocks, rule 1 picks a *count*: the
largest number of the BE kernel's next virtual blocks that fits in the RT kernel's time (0:
the BE kernel is not eligible). The dispatcher also stops taking BE work when the RT kernel
finished, so an estimate that was too optimistic costs at most one BE virtual block.

Time model (from one profile per kernel: its time alone on the whole device, grid, block):
a kernel of G blocks at b resident blocks per CU on S CUs runs ceil(G / (S*b)) waves; one
wave lasts ``us / waves``; BE blocks on S' CUs at the proxy's b' blocks per CU take
ceil(g / (S'*b')) waves of that length. The wave length is taken as independent of the
occupancy and of the RT kernel running next to it (REEF measured latency per occupancy level;
the zoo profiles have one level per kernel: docs/dkp.md says what is left).

Everything a selection needs is precomputed into small objects, so ``select`` is a loop over
the few BE candidates with integer arithmetic (timed by tools/bench_dkp.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reef_rocm.dkp.build import DkpBuild, ProxyBuild
from reef_rocm.dkp.proxy import choose_proxy, proxy_blocks_per_cu
from reef_rocm.dkp.split import cus_needed
from reef_rocm.errors import PackageError, UnsupportedError
from reef_rocm.package.files import ModelPackage


@dataclass(frozen=True)
class KernelProfile:
    """What selection knows about one kernel (from its profile and code objects)."""

    name: str
    blocks: int  # virtual blocks (the plain grid's blocks)
    threads: int  # threads per block
    us: float  # time alone on the whole device (profile us_median)
    blocks_per_cu: int  # resident blocks per CU of the kernel alone (its plain code object)
    body_registers: int  # registers of its DKP-ready code (dkp variant code object)
    body_smem: int  # dynamic shared memory its DKP body needs

    def wave_us(self, compute_units: int) -> float:
        waves = math.ceil(self.blocks / (compute_units * self.blocks_per_cu))
        return self.us / waves


@dataclass(slots=True)  # not frozen: built on the selection path, where that costs
class Padding:
    """A selected padding: run ``be_count`` virtual blocks of BE candidate ``be`` from its
    cursor next to the RT kernel, on ``rt_cus`` RT CUs, with ``proxy``."""

    be: int  # index into the candidates passed to select
    be_count: int
    rt_cus: int
    proxy: ProxyBuild
    blocks_per_cu: int  # the proxy's occupancy for this pair
    est_be_us: float


@dataclass(frozen=True)
class BeCandidate:
    """A BE task's next kernel and how many of its virtual blocks are left."""

    kernel: KernelProfile
    remaining: int


class Selector:
    """Selection on one device for one DKP build."""

    def __init__(
        self, arch: str, compute_units: int, proxies: Sequence[ProxyBuild], *,
        allow_spill: bool = True,
    ) -> None:  # fmt: skip
        if compute_units < 1:
            raise ValueError(f"compute_units={compute_units}")
        if not proxies:
            raise ValueError("a DKP build without proxy kernels")
        self.arch = arch
        self.compute_units = compute_units
        self.proxies = list(proxies)
        self.allow_spill = allow_spill
        self._pairs: dict[tuple[KernelProfile, KernelProfile], tuple[ProxyBuild, int] | None] = {}
        self._plans: dict[tuple[int, int], tuple] = {}

    def rt_cus(self, rt: KernelProfile) -> int:
        return cus_needed(rt.blocks, rt.blocks_per_cu, self.compute_units)

    def pair(self, rt: KernelProfile, be: KernelProfile) -> tuple[ProxyBuild, int] | None:
        """Rule 2 for one pair: the proxy and its blocks per CU, or None (no proxy keeps the
        RT kernel's occupancy, or the block sizes differ: one launch has one block size).

        First choice: the smallest budget that covers both callees (no spills). If that proxy
        holds fewer blocks per CU than the RT kernel alone, REEF's occupancy-class choice: the
        largest budget whose proxy still holds as many (the callees are then compiled into
        fewer registers than they had; ``allow_spill=False`` forbids this). Cached per pair.
        """
        key = (rt, be)
        if key in self._pairs:
            return self._pairs[key]
        self._pairs[key] = out = self._pair(rt, be)
        return out

    def _pair(self, rt: KernelProfile, be: KernelProfile) -> tuple[ProxyBuild, int] | None:
        if rt.threads != be.threads:
            return None
        smem = max(rt.body_smem, be.body_smem)

        def occ(p: ProxyBuild) -> int:
            return proxy_blocks_per_cu(self.arch, p.dispatcher, rt.threads, smem)

        try:
            proxy = choose_proxy(self.proxies, rt.body_registers, be.body_registers)
            if occ(proxy) >= rt.blocks_per_cu:
                return proxy, occ(proxy)
        except UnsupportedError:
            pass
        if not self.allow_spill:
            return None
        fits = [p for p in self.proxies if occ(p) >= rt.blocks_per_cu]
        if not fits:
            return None
        best = max(fits, key=lambda p: p.budget)
        return best, occ(best)

    def _plan(self, rt: KernelProfile, be: KernelProfile) -> tuple | None:
        """Everything about a pair that does not depend on the BE task's progress, cached:
        (proxy, blocks per CU, RT CUs, BE blocks per wave on the free CUs, BE wave us, BE
        blocks that fit within the RT time)."""
        # keyed by identity: hashing two dataclasses costs more than the whole decision; the
        # cache entry holds both profiles, so their ids stay unique while it exists
        hit = self._plans.get((id(rt), id(be)))
        if hit is not None:
            return hit[2]
        plan = None
        n_rt = self.rt_cus(rt)
        free = self.compute_units - n_rt
        ok = self.pair(rt, be) if free > 0 else None
        if ok is not None:
            proxy, occ = ok
            wave = be.wave_us(self.compute_units)
            per_wave = free * occ
            fit = int(rt.us // wave) * per_wave if wave > 0 else 0  # rule 1: whole waves
            if fit > 0:
                plan = (proxy, occ, n_rt, per_wave, wave, fit)
        self._plans[(id(rt), id(be))] = (rt, be, plan)
        return plan

    def select(self, rt: KernelProfile, candidates: Sequence[BeCandidate]) -> Padding | None:
        """The candidate that keeps the leftover CUs busiest within the RT kernel's time
        (rules 1 and 2); None when none qualifies or the RT kernel leaves no CU idle."""
        best = None
        best_est = -1.0
        for i, c in enumerate(candidates):
            if c.remaining <= 0:
                continue
            plan = self._plan(rt, c.kernel)
            if plan is None:
                continue
            count = c.remaining if c.remaining < plan[5] else plan[5]
            est = -(-count // plan[3]) * plan[4]
            if est > best_est:
                best, best_est = (i, count, plan), est
        if best is None:
            return None
        i, count, (proxy, occ, n_rt, _, _, _) = best
        return Padding(i, count, n_rt, proxy, occ, best_est)


def package_profiles(
    package: ModelPackage, profile: dict[str, Any], build: DkpBuild
) -> list[KernelProfile]:
    """A KernelProfile per launch of ``package``: time and grid from ``profile`` (a ``reef
    profile`` result of the plain variant on the target device), occupancy of the plain
    kernel and registers of the DKP-ready kernel from the package's code objects, body
    shared memory from ``build``."""
    from reef_rocm.codeobj import occupancy, read_code_object

    m = package.manifest
    plain, dkp = m.variant("plain"), m.variant("dkp")
    kernels = profile.get("kernels", [])
    if len(kernels) != len(plain.kernels):
        raise PackageError(f"{package.name}: profile has {len(kernels)} kernels, the package "
                           f"{len(plain.kernels)}")  # fmt: skip
    arch = m.target["arch"]
    plain_co = read_code_object(package.path / plain.binary).kernels
    dkp_co = read_code_object(package.path / dkp.binary).kernels
    out = []
    for i, (k, pk) in enumerate(zip(plain.kernels, kernels, strict=True)):
        if pk.get("name") != k.name:
            raise PackageError(f"{package.name}: profile kernel {i} is {pk.get('name')}, "
                               f"the package's {k.name}")  # fmt: skip
        threads = k.block[0] * k.block[1] * k.block[2]
        occ = occupancy(arch, plain_co[k.name], threads, k.shared_mem).blocks_per_cu
        body = build.bodies[build.body_index(package.name, i)].body
        out.append(KernelProfile(
            k.name, k.grid[0] * k.grid[1] * k.grid[2], threads, float(pk["us_median"]),
            max(1, occ), dkp_co[dkp.kernels[i].name].registers, body.smem_bytes,
        ))  # fmt: skip
    return out
