"""Kernarg segments built from the code object's metadata: explicit arguments at the offsets
hipcc's metadata gives, hidden v5 arguments from the launch shape. Compiles
hip_kernels/hsa_kernels.hip with hipcc (skips without it)."""

from __future__ import annotations

import ctypes
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.gpu.api import DevicePtr, LaunchConfig
from reef_rocm.gpu.params import ParamBlock
from reef_rocm.rocm.hsa import kernargs

SRC = Path(__file__).resolve().parents[2] / "hip_kernels" / "hsa_kernels.hip"


@pytest.fixture(scope="module", params=[4, 5], ids=["cov4", "cov5"])
def image(request, tmp_path_factory) -> tuple[int, bytes]:
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc): no HSACO to read")
    out = tmp_path_factory.mktemp("hsak") / f"k{request.param}.hsaco"
    r = subprocess.run(["nice", "-n", "10", hipcc, "--offload-arch=gfx90a", "--genco",
                        "--no-gpu-bundle-output", f"-mcode-object-version={request.param}",
                        str(SRC), "-o", str(out)], capture_output=True, text=True,
                       env=dict(os.environ, HIP_PLATFORM="amd"), timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return request.param, out.read_bytes()


def axpb_params():
    return ParamBlock([np.float32(2.5), DevicePtr(0x1111_0000), np.float32(-1.0),
                       DevicePtr(0x2222_0000), np.int32(1000)])


def test_explicit_offsets_are_the_c_abi_ones(image):
    _, data = image
    lay = kernargs.layouts(data)["hsa_axpb"]
    p = axpb_params()
    assert [o for o, _ in lay.explicit] == list(p.offsets)
    assert [n for _, n in lay.explicit] == list(p.sizes)


def test_plan_writes_explicit_and_hidden_arguments(image):
    version, data = image
    lay = kernargs.layouts(data)["hsa_axpb"]
    p = axpb_params()
    plan = lay.plan(p, LaunchConfig(grid=4, block=256, shared_mem=0))
    buf = ctypes.create_string_buffer(b"\xee" * lay.segment_size)
    plan.write(ctypes.addressof(buf), queue_ptr=0xDEAD_B000)
    raw = buf.raw
    assert raw[:len(p.raw())][:36] == p.raw()[:36]
    hidden = {kind: off for off, _, kind in lay.hidden}
    if version >= 5:
        assert struct.unpack_from("<3I", raw, hidden["hidden_block_count_x"]) == (4, 1, 1)
        assert struct.unpack_from("<3H", raw, hidden["hidden_group_size_x"]) == (256, 1, 1)
        assert struct.unpack_from("<H", raw, hidden["hidden_grid_dims"])[0] == 1
        assert struct.unpack_from("<q", raw, hidden["hidden_global_offset_x"])[0] == 0
    else:  # v4 kernels read the work-group size from the dispatch packet
        assert "hidden_group_size_x" not in hidden
    if "hidden_queue_ptr" in hidden:
        assert struct.unpack_from("<Q", raw, hidden["hidden_queue_ptr"])[0] == 0xDEAD_B000
    # bytes no argument covers are zero, not left over
    covered = set()
    for off, n in lay.explicit:
        covered.update(range(off, off + n))
    for off, n, _ in lay.hidden:
        covered.update(range(off, off + n))
    assert all(raw[i] == 0 for i in range(lay.segment_size) if i not in covered
               and i >= 36)
    # a later params.set is what the next write copies
    p.set(4, np.int32(7))
    plan.write(ctypes.addressof(buf))
    assert struct.unpack_from("<i", buf.raw, 32)[0] == 7


def test_wrong_arguments_are_named(image):
    _, data = image
    lay = kernargs.layouts(data)["hsa_axpb"]
    with pytest.raises(ValueError, match="takes 5 arguments, got 1"):
        lay.plan(ParamBlock([np.float32(1)]), LaunchConfig(1, 64))
    bad = ParamBlock([np.float64(2.5), DevicePtr(1), np.float32(1), DevicePtr(2), np.int32(3)])
    with pytest.raises(ValueError, match="argument 0 is 4 bytes"):
        lay.plan(bad, LaunchConfig(1, 64))
