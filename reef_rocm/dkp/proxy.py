"""Proxy kernels: which code object of a DKP build runs a given pair of callees.

Every code object of a build is the same dispatcher compiled under one register budget (a
proxy class). Indirect calls give the dispatcher the register count of its largest possible
callee (within the budget), so one build for all budgets would either over-allocate (low
occupancy for small kernels) or spill big ones. The launch uses the smallest budget that
covers both callees' own register counts (from their code objects), which keeps the callees
at the registers they were compiled with and gives the highest occupancy that does.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

from reef_rocm.codeobj import KernelResources, occupancy
from reef_rocm.dkp.build import ProxyBuild
from reef_rocm.errors import UnsupportedError


def choose_proxy(proxies: Sequence[ProxyBuild], *callee_registers: int) -> ProxyBuild:
    """The proxy with the smallest budget >= every callee's register count."""
    if not proxies:
        raise ValueError("no proxy kernels in the build")
    need = max(callee_registers, default=0)
    fits = [p for p in proxies if p.budget >= need]
    if not fits:
        top = max(p.budget for p in proxies)
        raise UnsupportedError(f"callees need {need} registers; the largest proxy budget is {top}")
    return min(fits, key=lambda p: p.budget)


@lru_cache(maxsize=4096)
def proxy_blocks_per_cu(arch: str, dispatcher: KernelResources, threads: int, dyn_smem: int) -> int:
    """Resident dispatcher blocks per CU/SM for ``threads`` and ``dyn_smem`` (cached: the
    selection asks this per candidate pair)."""
    return occupancy(arch, dispatcher, threads, dyn_smem).blocks_per_cu
