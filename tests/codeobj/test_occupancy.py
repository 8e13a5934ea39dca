"""Occupancy calculators against the vendors' documented limits, and (AMD) against the
occupancy LLVM reports when it compiles the fixtures."""

from __future__ import annotations

import pytest

from reef_rocm.codeobj import KernelResources, occupancy, read_code_object
from reef_rocm.errors import UnsupportedError


def amd(arch="gfx90a", vgprs=8, sgprs=16, lds=0, agprs=0, max_threads=1024):
    return KernelResources("k", "amd", arch, vgprs, agprs=agprs, sgprs=sgprs, shared_bytes=lds,
                           wave_size=64, max_threads=max_threads)


def nv(arch="sm_90", regs=32, smem=0, max_threads=1024):
    return KernelResources("k", "nvidia", arch, regs, shared_bytes=smem, wave_size=32,
                           max_threads=max_threads)


# (arch, kernel, block threads, dynamic LDS, blocks per CU, limiter). Facts used:
# 4 SIMDs/CU; 10 wave slots per SIMD on gfx906/gfx908, 8 on gfx90a/gfx942; 256 VGPRs per lane
# (granule 4) on gfx906/908, 512 unified (granule 8) on gfx90a/942; 800 SGPRs per SIMD;
# 64 KiB LDS per CU (512-byte granules); 16 workgroups per CU with barriers; 1024 threads max.
AMD_CASES = [
    ("gfx906", amd("gfx906"), 64, 0, 40, "warp_slots"),  # 10 waves x 4 SIMDs, 1-wave groups
    ("gfx906", amd("gfx906"), 256, 0, 10, "warp_slots"),
    ("gfx90a", amd(), 256, 0, 8, "warp_slots"),  # 8 waves x 4 SIMDs / 4 waves
    ("gfx942", amd("gfx942"), 64, 0, 32, "warp_slots"),
    ("gfx90a", amd(), 128, 0, 16, "warp_slots"),  # 32 waves / 2 = 16 = barrier slots too
    ("gfx906", amd("gfx906"), 128, 0, 16, "block_slots"),  # 40/2 = 20 > 16 barrier slots
    ("gfx906", amd("gfx906", vgprs=128), 64, 0, 8, "registers"),  # 256/128 = 2 waves/SIMD
    ("gfx906", amd("gfx906", vgprs=65), 64, 0, 12, "registers"),  # 68 -> 3 waves/SIMD
    ("gfx908", amd("gfx908", vgprs=256), 64, 0, 4, "registers"),
    ("gfx90a", amd(vgprs=128), 64, 0, 16, "registers"),  # 512/128 = 4 waves/SIMD
    ("gfx90a", amd(vgprs=257), 64, 0, 4, "registers"),  # 264 -> 1 wave/SIMD
    ("gfx942", amd("gfx942", vgprs=512), 256, 0, 1, "registers"),
    ("gfx90a", amd(vgprs=513), 64, 0, 0, "registers"),  # more than the file
    ("gfx906", amd("gfx906", sgprs=96), 64, 0, 32, "sgprs"),  # <=100 SGPRs: 8 waves/SIMD
    ("gfx906", amd("gfx906", sgprs=102), 64, 0, 28, "sgprs"),  # 7 waves/SIMD
    ("gfx90a", amd(sgprs=96), 64, 0, 32, "warp_slots"),  # 8 waves: the slot limit anyway
    ("gfx90a", amd(sgprs=102), 64, 0, 28, "sgprs"),
    ("gfx90a", amd(sgprs=80), 64, 0, 32, "warp_slots"),
    ("gfx90a", amd(lds=32768), 64, 0, 2, "shared_memory"),  # 64 KiB LDS per CU
    ("gfx90a", amd(lds=16384), 64, 16384, 2, "shared_memory"),  # static + dynamic
    ("gfx906", amd("gfx906", lds=100), 64, 0, 40, "warp_slots"),  # 512 B -> 128 groups
    ("gfx908", amd("gfx908", lds=4000), 64, 0, 16, "shared_memory"),  # 4096 granules
    ("gfx90a", amd(lds=65536), 64, 1, 0, "shared_memory"),  # over 64 KiB per workgroup
    ("gfx90a", amd(), 1024, 0, 2, "warp_slots"),  # 16 waves per group, 32 slots
    ("gfx90a", amd(), 1025, 0, 0, "block_size"),
    ("gfx90a", amd(max_threads=256), 512, 0, 0, "block_size"),  # above launch bounds
]


@pytest.mark.parametrize("arch,res,threads,dyn,blocks,limiter", AMD_CASES)
def test_amd_table(arch, res, threads, dyn, blocks, limiter):
    occ = occupancy(arch, res, threads, dyn)
    assert (occ.blocks_per_cu, occ.limiter) == (blocks, limiter), occ.limits


# NVIDIA facts (CUDA programming guide, compute capability table; occupancy calculator):
# 64 warps / 2048 threads / 32 blocks per SM; 64K registers per SM and per block, allocated per
# warp in units of 256 over 4 sub-partitions; 255 registers per thread; shared memory per SM
# 164 KiB (8.0) / 228 KiB (9.0), per block up to 163 / 227 KiB, 1 KiB reserved per block,
# 128-byte allocation unit.
NV_CASES = [
    ("sm_90", nv(regs=32), 256, 0, None, 8, "registers"),  # 32x32=1024/warp -> 64 warps
    ("sm_90", nv(regs=16), 32, 0, None, 32, "block_slots"),
    ("sm_90", nv(regs=16), 1024, 0, None, 2, "warp_slots"),
    ("sm_80", nv("sm_80", regs=64), 256, 0, None, 4, "registers"),  # 2048/warp -> 32 warps
    ("sm_90", nv(regs=40), 256, 0, None, 6, "registers"),  # 1280/warp: 12 per partition
    ("sm_90", nv(regs=255), 128, 0, None, 2, "registers"),  # 8192/warp: 2 per partition
    ("sm_90", nv(regs=255), 512, 0, None, 0, "registers"),  # 16 warps x 8192 > 64K
    ("sm_90", nv(regs=72), 896, 0, None, 1, "registers"),  # 2304/warp -> 28 warps: exact
    ("sm_90", nv(regs=80), 832, 0, None, 0, "registers"),  # 26 warps x 2560 needs 28x -> 71680
    ("sm_90", nv(regs=16, smem=48 * 1024), 128, 0, None, 4, "shared_memory"),  # 49 KiB/block
    ("sm_80", nv("sm_80", regs=16, smem=48 * 1024), 128, 0, None, 3, "shared_memory"),
    ("sm_90", nv(regs=16), 128, 100 * 1024, None, 2, "shared_memory"),  # dynamic counts
    ("sm_90", nv(regs=16), 128, 227 * 1024, None, 1, "shared_memory"),  # opt-in maximum
    ("sm_90", nv(regs=16), 128, 227 * 1024 + 1, None, 0, "shared_memory"),
    ("sm_80", nv("sm_80", regs=16), 128, 163 * 1024 + 1, None, 0, "shared_memory"),
    ("sm_90", nv(regs=16, smem=7 * 1024), 64, 0, 0, 0, "shared_memory"),  # carve-out 0 KiB
    ("sm_90", nv(regs=16, smem=7 * 1024), 64, 0, 3, 1, "shared_memory"),  # 3% -> 8 KiB
    ("sm_90", nv(regs=16, smem=15 * 1024), 64, 0, 50, 8, "shared_memory"),  # 50% -> 132 KiB
    ("sm_90", nv(regs=16, max_threads=128), 256, 0, None, 0, "block_size"),
    ("sm_90", nv(regs=16), 2048, 0, None, 0, "block_size"),
]


@pytest.mark.parametrize("arch,res,threads,dyn,carveout,blocks,limiter", NV_CASES)
def test_nvidia_table(arch, res, threads, dyn, carveout, blocks, limiter):
    occ = occupancy(arch, res, threads, dyn, carveout=carveout)
    assert (occ.blocks_per_cu, occ.limiter) == (blocks, limiter), occ.limits


def test_occupancy_fields_and_errors():
    occ = occupancy("gfx90a:xnack-", amd(vgprs=128), 256)
    assert occ.warps_per_block == 4 and occ.active_warps == 16 and occ.max_warps == 32
    assert occ.occupancy == 0.5 and occ.details["waves_per_simd"] == 4
    assert occupancy("sm_90a", nv(), 64).arch == "sm_90"
    with pytest.raises(UnsupportedError, match="gfx1100"):
        occupancy("gfx1100", amd(), 64)
    with pytest.raises(ValueError, match="nvidia"):
        occupancy("gfx90a", nv(), 64)
    with pytest.raises(ValueError, match="block_threads"):
        occupancy("sm_90", nv(), 0)
    with pytest.raises(ValueError, match="dynamic_shared"):
        occupancy("sm_90", nv(), 32, -1)


def test_amd_matches_llvm_remarks(hip_objects):
    """LLVM's "Occupancy [waves/SIMD]" remark is the register-file limit for kernels without
    LDS (its LDS rule does not round to whole workgroups, so those are left out)."""
    checked = 0
    for built in hip_objects:
        co = read_code_object(built.path)
        for name, k in co.kernels.items():
            remark = built.remarks.get(name)
            assert remark, f"no resource remark for {name} ({built})"
            assert remark["SGPRs"] == k.sgprs and remark.get("AGPRs", 0) == k.agprs
            if k.shared_bytes:
                continue
            occ = occupancy(co.arch, k, k.max_threads)
            assert occ.details["gpr_waves_per_simd"] == remark["Occupancy [waves/SIMD]"], name
            checked += 1
    assert checked >= 12
