"""Device-interface pieces that need no GPU: launch shapes, argument packing, capabilities and
backend selection."""

from __future__ import annotations

import ctypes
import struct

import numpy as np
import pytest

from reef_rocm.errors import BackendUnavailable
from reef_rocm.gpu import (
    Capabilities,
    DevicePtr,
    LaunchConfig,
    ParamBlock,
    PreemptLevel,
    open_device,
    probe,
)
from reef_rocm.gpu import api as gpu_api


def test_launch_config_normalises_and_validates():
    c = LaunchConfig(10, (32, 4))
    assert c.grid == (10, 1, 1) and c.block == (32, 4, 1) and c.num_blocks == 10
    assert c.threads_per_block == 128
    for bad in [0, (1, 2, 3, 4), (1, -1), 2.5]:
        with pytest.raises(ValueError, match="grid"):
            LaunchConfig(bad, 1)
    with pytest.raises(ValueError, match="shared_mem"):
        LaunchConfig(1, 1, shared_mem=-4)


def test_param_block_follows_c_abi_layout():
    p = ParamBlock(
        [np.int8(1), DevicePtr(0x1122334455667788), np.int16(-2), np.float64(3.5), np.int32(7)]
    )
    # char at 0, pointer aligned to 8, short at 16, double at 24, int at 32; size padded to 40
    assert p.offsets == (0, 8, 16, 24, 32)
    assert p.nbytes == 40
    raw = p.raw()
    assert raw[0] == 1
    assert struct.unpack_from("<Q", raw, 8)[0] == 0x1122334455667788
    assert struct.unpack_from("<h", raw, 16)[0] == -2
    assert struct.unpack_from("<d", raw, 24)[0] == 3.5
    # the pointer array points at each value inside the buffer
    ptrs = (ctypes.c_void_p * 5).from_address(p.pointer_array)
    assert [ptrs[i] - p.buffer for i in range(5)] == [0, 8, 16, 24, 32]
    assert ctypes.c_size_t.from_address(p.size_address).value == 40


def test_param_block_set_in_place_keeps_addresses():
    p = ParamBlock([DevicePtr(1), np.int32(2)])
    before = (p.pointer_array, p.buffer)
    p.set(1, np.int32(99))
    p.set(0, DevicePtr(0xABC))
    assert (p.pointer_array, p.buffer) == before
    assert struct.unpack_from("<Qi", p.raw(), 0) == (0xABC, 99)
    with pytest.raises(ValueError, match="4 bytes"):
        p.set(1, np.int64(1))


def test_param_block_rejects_ambiguous_python_scalars():
    with pytest.raises(TypeError, match="numpy scalar"):
        ParamBlock([3])
    with pytest.raises(TypeError, match="unsupported type"):
        ParamBlock(["x"])


def test_capability_levels():
    assert Capabilities().level == PreemptLevel.HOST_QUEUE
    assert Capabilities(stream_write_value=True).level == PreemptLevel.DEVICE_QUEUE
    assert Capabilities(stream_write_value=True, wave_kill=True).level == PreemptLevel.RUNNING
    assert Capabilities(wave_kill=True).as_dict()["level"] == "RUNNING"


def test_auto_never_picks_sim(monkeypatch):
    none = gpu_api.BackendReport(backend="x", available=False, reason="nothing here")
    monkeypatch.setattr("reef_rocm.gpu.probe", lambda name: none)
    with pytest.raises(BackendUnavailable, match="backend='sim'"):
        open_device("auto")


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        open_device("opencl")


def test_cuda_probe_without_gpu_reports_reason():
    r = probe("cuda")
    if r.available:
        pytest.skip("a CUDA GPU is present")
    assert r.reason and not r.devices


def test_close_is_the_one_release_verb():
    released = []

    class NewStyle(gpu_api.DeviceBuffer):
        ptr, nbytes = 0x1000, 64

        def close(self):
            released.append("close")

    class OldStyle(gpu_api.DeviceBuffer):  # a backend with only the old verb is incomplete
        ptr, nbytes = 0x2000, 64

        def free(self):
            released.append("free")

    with NewStyle() as b:
        assert b.offset(8).ptr == 0x1008
    NewStyle().close()
    assert released == ["close", "close"]
    with pytest.raises(TypeError, match="abstract"):
        OldStyle()
    for cls in (gpu_api.DeviceBuffer, gpu_api.HostMappedBuffer, gpu_api.Stream, gpu_api.Event,
                gpu_api.Module):  # fmt: skip
        assert not any(hasattr(cls, v) for v in ("free", "destroy", "unload")), cls


def test_thirty_two_bit_patterns_and_block_limit():
    from reef_rocm.errors import UnsupportedError

    assert gpu_api.u32(-1) == gpu_api.u32(0xFFFFFFFF) == 0xFFFFFFFF
    assert gpu_api.u32(np.int32(-2)) == 0xFFFFFFFE
    for bad in (2**32, -(2**31) - 1, True, 1.0):
        with pytest.raises(ValueError):
            gpu_api.u32(bad)
    gpu_api.check_block_size("k", LaunchConfig(1, (32, 32)), 1024)
    with pytest.raises(UnsupportedError, match="1056 threads per block exceeds the device limit"):
        gpu_api.check_block_size("k", LaunchConfig(1, (32, 33)), 1024)
