"""The NVIDIA occupancy calculator against the driver (cuOccupancyMaxActiveBlocksPerMultiprocessor
through ``Kernel.max_active_blocks_per_cu``) and our cubin reader against the driver's function
attributes, on cubins with different register and shared-memory use. Needs an NVIDIA GPU."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from reef_rocm.codeobj import occupancy, read_code_object

pytestmark = pytest.mark.gpu

FIXTURES = Path(__file__).resolve().parents[2] / "hip_kernels" / "codeobj_fixtures.cu"

# Static shared memory from 0 to the 48 KiB static maximum, so shared memory limits some cases.
EXTRA = """
#define SMEM_KERNEL(NAME, BYTES)                                              \\
  extern "C" __global__ void NAME(float* out) {                               \\
    __shared__ float buf[(BYTES) / 4];                                        \\
    buf[threadIdx.x % ((BYTES) / 4)] = threadIdx.x;                           \\
    __syncthreads();                                                          \\
    out[threadIdx.x] = buf[(threadIdx.x + 1) % ((BYTES) / 4)];                \\
  }
SMEM_KERNEL(occ_smem_4k, 4096)
SMEM_KERNEL(occ_smem_12k, 12288)
SMEM_KERNEL(occ_smem_40k, 40960)
SMEM_KERNEL(occ_smem_48k, 49152)
"""
BLOCKS = (32, 64, 96, 128, 160, 192, 256, 320, 384, 512, 640, 768, 1024)
DYNAMIC = (0, 1024, 8 * 1024, 37 * 1024)


@pytest.fixture(scope="module")
def dev():
    from reef_rocm.gpu import probe

    try:
        report = probe("cuda")
    except ModuleNotFoundError as e:
        pytest.skip(f"cuda backend not importable: {e}")
    if not report.available:
        pytest.skip(f"no CUDA GPU: {report.reason}")
    from reef_rocm.gpu import open_device

    d = open_device("cuda")
    yield d
    d.close()


@pytest.fixture(scope="module")
def cubins(dev, tmp_path_factory) -> list[bytes]:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    if not Path(nvcc).exists():
        pytest.skip("nvcc not found")
    d = tmp_path_factory.mktemp("occ")
    src = d / "occ.cu"
    src.write_text(FIXTURES.read_text() + EXTRA)
    out = []
    # Same source three ways: default, registers capped low, registers forced high.
    for i, flags in enumerate(([], ["-maxrregcount=24"], ["-Xptxas", "-O0"])):
        cubin = d / f"occ{i}.cubin"
        subprocess.run([nvcc, "-w", "-cubin", f"-arch={dev.info.arch}", *flags, "-o",
                        str(cubin), str(src)], check=True)
        out.append(cubin.read_bytes())
    return out


def test_attributes_match_reader(dev, cubins):
    bad = []
    for image in cubins:
        co = read_code_object(image)
        mod = dev.load_module(image)
        for name, res in co.kernels.items():
            attrs = mod.get_kernel(name).attributes
            got = {"registers": attrs["registers"], "shared_bytes": attrs["shared_bytes"],
                   "local_bytes": attrs["local_bytes"]}
            want = {"registers": res.registers, "shared_bytes": res.shared_bytes,
                    "local_bytes": res.scratch_bytes}
            if got != want:
                bad.append(f"{name}: driver {got}, cubin {want}")
            assert attrs["max_threads_per_block"] <= res.max_threads
    assert not bad, "\n".join(bad)


def test_occupancy_matches_driver(dev, cubins):
    bad, checked = [], 0
    for image in cubins:
        co = read_code_object(image)
        mod = dev.load_module(image)
        for name, res in co.kernels.items():
            kernel = mod.get_kernel(name)
            limit = kernel.attributes["max_threads_per_block"]
            for threads in BLOCKS:
                if threads > limit:
                    continue
                for dyn in DYNAMIC:
                    if res.shared_bytes + dyn > 48 * 1024:  # more needs a per-kernel opt-in
                        continue
                    ours = occupancy(dev.info.arch, res, threads, dyn)
                    driver = kernel.max_active_blocks_per_cu(threads, dyn)
                    checked += 1
                    if ours.blocks_per_cu != driver:
                        bad.append(f"{name} regs={res.registers} smem={res.shared_bytes} "
                                   f"block={threads} dyn={dyn}: ours {ours.blocks_per_cu} "
                                   f"({ours.limiter}), driver {driver}")
    assert checked > 100
    assert not bad, f"{len(bad)}/{checked} differ:\n" + "\n".join(bad[:40])
