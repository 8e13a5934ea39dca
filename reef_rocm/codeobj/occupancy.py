"""Occupancy: how many blocks (workgroups) of a kernel fit on one CU/SM at once.

AMD rules (gfx9 CDNA; LLVM AMDGPUUsage and the CDNA ISA guides): 4 SIMDs per CU; each SIMD
holds up to 10 waves (gfx906/gfx908) or 8 (gfx90a, gfx942); VGPRs are allocated per wave in
granules (4 on gfx906/gfx908 from a 256-entry file per lane, with gfx908's AGPRs in a second
256-entry file; 8 on gfx90a/gfx942 from one 512-entry file shared by VGPRs and AGPRs); SGPRs
come from an 800-entry file per SIMD and cost waves as in LLVM's table (<=80: 10, <=88: 9,
<=100: 8, else 7); LDS is 64 KiB per CU allocated in 512-byte granules; a workgroup of more
than one wave takes one of 16 barrier slots per CU. Waves of a workgroup are spread over the
CU's SIMDs, so a CU holds ``floor(SIMDs * waves_per_SIMD / waves_per_workgroup)`` workgroups.

NVIDIA rules (CUDA occupancy calculator, compute capability 8.0 and 9.0): registers are
allocated per warp in 256-register units from four 16K-register sub-partitions; shared memory
per block is static + dynamic + 1 KiB reserved by the system, rounded to 128 bytes, against
the SM's shared-memory carve-out (the largest one when the kernel states no preference); at
most 64 warps, 2048 threads and 32 blocks per SM.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from reef_rocm.codeobj.model import KernelResources
from reef_rocm.errors import UnsupportedError

UNLIMITED = 1 << 30


@dataclass(frozen=True)
class AmdArch:
    name: str
    max_waves_per_simd: int
    vgprs_per_simd: int  # per lane: 256, or 512 where VGPRs and AGPRs share one file
    vgpr_granule: int
    simds_per_cu: int = 4
    sgprs_per_simd: int = 800
    lds_per_cu: int = 64 * 1024
    lds_granule: int = 512
    max_lds_per_workgroup: int = 64 * 1024
    max_workgroup_size: int = 1024
    barrier_slots_per_cu: int = 16
    wave_size: int = 64
    vendor: str = "amd"

    @property
    def max_waves_per_cu(self) -> int:
        return self.simds_per_cu * self.max_waves_per_simd


@dataclass(frozen=True)
class NvidiaArch:
    name: str
    smem_per_sm: int  # largest carve-out
    smem_per_block_optin: int
    carveouts_kib: tuple[int, ...]  # shared-memory sizes the SM can be configured for
    max_threads_per_sm: int = 2048
    max_warps_per_sm: int = 64
    max_blocks_per_sm: int = 32
    regs_per_sm: int = 65536
    regs_per_block: int = 65536
    max_regs_per_thread: int = 255
    reg_alloc_unit: int = 256  # registers, per warp
    subpartitions: int = 4
    smem_reserved_per_block: int = 1024
    smem_alloc_unit: int = 128
    max_threads_per_block: int = 1024
    wave_size: int = 32
    vendor: str = "nvidia"

    @property
    def max_waves_per_cu(self) -> int:
        return self.max_warps_per_sm


ARCHS: dict[str, AmdArch | NvidiaArch] = {
    "gfx906": AmdArch("gfx906", max_waves_per_simd=10, vgprs_per_simd=256, vgpr_granule=4),
    "gfx908": AmdArch("gfx908", max_waves_per_simd=10, vgprs_per_simd=256, vgpr_granule=4),
    "gfx90a": AmdArch("gfx90a", max_waves_per_simd=8, vgprs_per_simd=512, vgpr_granule=8),
    "gfx942": AmdArch("gfx942", max_waves_per_simd=8, vgprs_per_simd=512, vgpr_granule=8),
    "sm_80": NvidiaArch(
        "sm_80", smem_per_sm=164 * 1024, smem_per_block_optin=163 * 1024,
        carveouts_kib=(0, 8, 16, 32, 64, 100, 132, 164),
    ),
    "sm_90": NvidiaArch(
        "sm_90", smem_per_sm=228 * 1024, smem_per_block_optin=227 * 1024,
        carveouts_kib=(0, 8, 16, 32, 64, 100, 132, 164, 196, 228),
    ),
}

#: Order in which ties are reported: a resource the kernel could use less of comes first.
LIMITERS = ("block_size", "registers", "sgprs", "shared_memory", "warp_slots", "block_slots")


@dataclass(frozen=True)
class Occupancy:
    arch: str
    block_threads: int
    dynamic_shared: int
    blocks_per_cu: int  # resident blocks per CU (AMD) / SM (NVIDIA)
    warps_per_block: int  # waves on AMD
    active_warps: int  # per CU/SM
    max_warps: int  # per CU/SM
    limiter: str  # one of LIMITERS: what stops one more block from fitting
    limits: dict[str, int] = field(default_factory=dict)  # blocks each resource alone allows
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def occupancy(self) -> float:
        """Fraction of the CU's/SM's wave slots in use."""
        return self.active_warps / self.max_warps

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["occupancy"] = self.occupancy
        return d


def get_arch(arch: str | AmdArch | NvidiaArch) -> AmdArch | NvidiaArch:
    if isinstance(arch, (AmdArch, NvidiaArch)):
        return arch
    base = arch.split(":", 1)[0]
    if base.startswith("sm_") and base.endswith("a"):  # sm_90a: same limits as sm_90
        base = base[:-1]
    spec = ARCHS.get(base)
    if spec is None:
        raise UnsupportedError(
            f"no occupancy model for {arch!r}; known: {', '.join(sorted(ARCHS))}"
        )
    return spec


def _round_up(x: int, unit: int) -> int:
    return -(-x // unit) * unit


def _result(spec, res_limits: dict[str, int], block_threads, dynamic_shared, wpb, details):
    blocks = min(res_limits.values())
    limiter = next(k for k in LIMITERS if k in res_limits and res_limits[k] == blocks)
    return Occupancy(
        arch=spec.name,
        block_threads=block_threads,
        dynamic_shared=dynamic_shared,
        blocks_per_cu=blocks,
        warps_per_block=wpb,
        active_warps=blocks * wpb,
        max_warps=spec.max_waves_per_cu,
        limiter=limiter,
        limits={k: min(v, UNLIMITED) for k, v in res_limits.items()},
        details=details,
    )


def sgpr_waves_gfx9(sgprs: int) -> int:
    """Waves per SIMD an SGPR count allows on GFX8/GFX9 (800 SGPRs per SIMD)."""
    if sgprs <= 80:
        return 10
    if sgprs <= 88:
        return 9
    if sgprs <= 100:
        return 8
    return 7


def _amd(spec: AmdArch, res: KernelResources, bt: int, dyn: int) -> Occupancy:
    wpb = -(-bt // spec.wave_size)
    lim: dict[str, int] = {}
    details: dict[str, Any] = {}
    if bt > min(spec.max_workgroup_size, res.max_threads):
        lim["block_size"] = 0
    vgprs = _round_up(max(res.registers, 1), spec.vgpr_granule)
    # Not capped at the wave slots, so a tie means the registers really are at the limit.
    vgpr_waves = spec.vgprs_per_simd // vgprs
    sgpr_table = sgpr_waves_gfx9(res.sgprs)
    # The SGPR table tops out at 10 waves, which is no limit at all on a 10-slot SIMD.
    sgpr_waves = sgpr_table if sgpr_table < spec.max_waves_per_simd else UNLIMITED
    details.update(
        allocated_vgprs=vgprs,
        # Waves per SIMD the registers allow: what LLVM's "Occupancy [waves/SIMD]" remark
        # reports for kernels without LDS.
        gpr_waves_per_simd=min(spec.max_waves_per_simd, vgpr_waves, sgpr_table),
    )
    lim["registers"] = spec.simds_per_cu * vgpr_waves // wpb
    lim["sgprs"] = min(UNLIMITED, spec.simds_per_cu * sgpr_waves // wpb)
    lim["warp_slots"] = spec.max_waves_per_cu // wpb
    # Single-wave workgroups need no barrier, so only multi-wave ones take a barrier slot.
    lim["block_slots"] = spec.barrier_slots_per_cu if wpb > 1 else UNLIMITED
    lds = res.shared_bytes + dyn
    if lds > spec.max_lds_per_workgroup:
        lim["shared_memory"] = 0
    elif lds:
        details["allocated_lds"] = _round_up(lds, spec.lds_granule)
        lim["shared_memory"] = spec.lds_per_cu // details["allocated_lds"]
    else:
        lim["shared_memory"] = UNLIMITED
    occ = _result(spec, lim, bt, dyn, wpb, details)
    occ.details["waves_per_simd"] = min(
        spec.max_waves_per_simd, -(-occ.active_warps // spec.simds_per_cu)
    )
    return occ


def carveout_bytes(spec: NvidiaArch, carveout: int | None) -> int:
    """Shared memory per SM for a carve-out preference in percent (None: no preference, which
    the occupancy calculator treats as the largest configuration), rounded up to the next
    configuration the SM supports."""
    if carveout is None or carveout < 0:
        return spec.smem_per_sm
    if carveout > 100:
        raise ValueError(f"carveout is a percentage 0-100 (or None), got {carveout}")
    want = carveout * spec.smem_per_sm // 100
    for kib in spec.carveouts_kib:
        if kib * 1024 >= want:
            return kib * 1024
    return spec.smem_per_sm


def _nvidia(spec: NvidiaArch, res: KernelResources, bt: int, dyn: int,
            carveout: int | None) -> Occupancy:
    wpb = -(-bt // spec.wave_size)
    lim: dict[str, int] = {}
    details: dict[str, Any] = {}
    if bt > min(spec.max_threads_per_block, res.max_threads):
        lim["block_size"] = 0
    if res.registers:
        per_warp = _round_up(res.registers * spec.wave_size, spec.reg_alloc_unit)
        # The hardware check assumes a block's warps are spread over all sub-partitions.
        per_block = per_warp * _round_up(wpb, spec.subpartitions)
        if res.registers > spec.max_regs_per_thread or per_block > spec.regs_per_block:
            lim["registers"] = 0
        else:
            warps = (spec.regs_per_sm // spec.subpartitions // per_warp) * spec.subpartitions
            lim["registers"] = warps // wpb
        details["registers_per_warp"] = per_warp
    else:
        lim["registers"] = UNLIMITED
    lim["warp_slots"] = spec.max_warps_per_sm // wpb  # 64 warps = 2048 threads
    lim["block_slots"] = spec.max_blocks_per_sm
    smem_sm = carveout_bytes(spec, carveout)
    per_block = _round_up(res.shared_bytes + dyn + spec.smem_reserved_per_block,
                          spec.smem_alloc_unit)
    details.update(smem_per_sm=smem_sm, smem_per_block=per_block)
    if res.shared_bytes + dyn > spec.smem_per_block_optin or per_block > smem_sm:
        lim["shared_memory"] = 0
    else:
        lim["shared_memory"] = smem_sm // per_block
    return _result(spec, lim, bt, dyn, wpb, details)


def occupancy(
    arch: str | AmdArch | NvidiaArch,
    resources: KernelResources,
    block_threads: int,
    dynamic_shared: int = 0,
    *,
    carveout: int | None = None,
) -> Occupancy:
    """Resident blocks per CU/SM for ``resources`` launched with ``block_threads`` threads and
    ``dynamic_shared`` bytes of dynamic shared memory/LDS, and the factor that limits it.

    ``carveout`` (NVIDIA only) is the preferred shared-memory carve-out in percent. A block
    larger than the kernel or the device allows gives 0 blocks with limiter ``block_size``.
    """
    spec = get_arch(arch)
    if not isinstance(block_threads, int) or block_threads < 1:
        raise ValueError(f"block_threads must be a positive int, got {block_threads!r}")
    if not isinstance(dynamic_shared, int) or dynamic_shared < 0:
        raise ValueError(f"dynamic_shared must be a non-negative int, got {dynamic_shared!r}")
    if resources.vendor != spec.vendor:
        raise ValueError(
            f"kernel {resources.name!r} is {resources.vendor} code, {spec.name} is {spec.vendor}"
        )
    if isinstance(spec, AmdArch):
        if resources.wave_size != spec.wave_size:
            raise UnsupportedError(f"{spec.name} runs wave64; kernel {resources.name!r} is "
                                   f"wave{resources.wave_size}")
        return _amd(spec, resources, block_threads, dynamic_shared)
    return _nvidia(spec, resources, block_threads, dynamic_shared, carveout)
