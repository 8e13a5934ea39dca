"""The C launcher passes exactly the bound launch to the driver entry point. A ctypes callback
with cuLaunchKernel's signature stands in for the driver, so this runs without a GPU."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest

from reef_rocm.gpu import DevicePtr, LaunchConfig, ParamBlock, fastlaunch

pytestmark = pytest.mark.skipif(
    not fastlaunch.available(), reason="C launcher not built (pip install -e . builds it)"
)

LAUNCH_SIG = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, *[ctypes.c_uint] * 7, *[ctypes.c_void_p] * 3
)


def test_launcher_forwards_every_argument():
    calls = []

    def fake_launch(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        p = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        first = ctypes.c_uint64.from_address(p[0]).value
        second = ctypes.c_int32.from_address(p[1]).value
        calls.append((f, gx, gy, gz, bx, by, bz, shared, stream, first, second, extra))
        return 7

    cb = LAUNCH_SIG(fake_launch)
    entry = ctypes.cast(cb, ctypes.c_void_p).value
    params = ParamBlock([DevicePtr(0xDEADBEEF00), np.int32(-5)])
    run = fastlaunch.launcher(entry, 0x1234, LaunchConfig((3, 2), (64, 2, 1), 512), params)
    assert run(0x5678) == 7
    assert run(0) == 7  # the null (default) stream is a valid handle
    assert calls[0] == (0x1234, 3, 2, 1, 64, 2, 1, 512, 0x5678, 0xDEADBEEF00, -5, None)
    # in-place edits of the parameter block are seen by the next launch
    params.set(1, np.int32(11))
    run(1)
    assert calls[-1][10] == 11


def test_launcher_rejects_bad_calls():
    cb = LAUNCH_SIG(lambda *a: 0)
    entry = ctypes.cast(cb, ctypes.c_void_p).value
    run = fastlaunch.launcher(entry, 1, LaunchConfig(1, 1), ParamBlock([np.int32(1)]))
    with pytest.raises(TypeError, match="one argument"):
        run()
    with pytest.raises(TypeError):
        run("stream")
    with pytest.raises(ValueError, match="non-null"):
        fastlaunch._Launcher(entry, 0, (1, 1, 1), (1, 1, 1), 0, 1, None)
