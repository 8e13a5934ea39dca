"""The C launcher and the C span pass exactly the bound launches to the driver entry point. A
ctypes callback with cuLaunchKernel's signature stands in for the driver, so this runs without
a GPU; the extension is the installed build or one compiled for the test."""

from __future__ import annotations

import ctypes
import gc

import numpy as np
import pytest
from fastlaunch_ext import LAUNCH_SIG, entry_of, extension, use_extension

from reef_rocm.gpu import DevicePtr, LaunchConfig, ParamBlock


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    return extension(tmp_path_factory.mktemp("fastlaunch"))


@pytest.fixture
def fl(ext, monkeypatch):
    return use_extension(ext, monkeypatch)


def test_launcher_forwards_every_argument(fl):
    calls = []

    def fake_launch(f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        p = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        first = ctypes.c_uint64.from_address(p[0]).value
        second = ctypes.c_int32.from_address(p[1]).value
        calls.append((f, gx, gy, gz, bx, by, bz, shared, stream, first, second, extra))
        return 7

    cb = LAUNCH_SIG(fake_launch)
    params = ParamBlock([DevicePtr(0xDEADBEEF00), np.int32(-5)])
    run = fl.launcher(entry_of(cb), 0x1234, LaunchConfig((3, 2), (64, 2, 1), 512), params)
    assert run(0x5678) == 7
    assert run(0) == 7  # the null (default) stream is a valid handle
    assert calls[0] == (0x1234, 3, 2, 1, 64, 2, 1, 512, 0x5678, 0xDEADBEEF00, -5, None)
    # in-place edits of the parameter block are seen by the next launch
    params.set(1, np.int32(11))
    run(1)
    assert calls[-1][10] == 11


def test_launcher_rejects_bad_calls(fl):
    cb = LAUNCH_SIG(lambda *a: 0)
    run = fl.launcher(entry_of(cb), 1, LaunchConfig(1, 1), ParamBlock([np.int32(1)]))
    with pytest.raises(TypeError, match="one argument"):
        run()
    with pytest.raises(TypeError):
        run("stream")
    with pytest.raises(ValueError, match="non-null"):
        fl._Launcher(entry_of(cb), 0, (1, 1, 1), (1, 1, 1), 0, 1, None)


# ------------------------------------------------------------------ span
class FakeDriver:
    """cuLaunchKernel as a ctypes callback: records every call, fails the functions named in
    ``fail`` with their status."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: dict[int, int] = {}
        self.cb = LAUNCH_SIG(self._launch)
        self.entry = entry_of(self.cb)

    def _launch(self, f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        p = ctypes.cast(params, ctypes.POINTER(ctypes.c_void_p))
        value = ctypes.c_int32.from_address(p[1]).value  # the int32 argument, read at call time
        self.calls.append((f, (gx, gy, gz), (bx, by, bz), shared, stream, params, value, extra))
        return self.fail.get(f, 0)


N = 6


def _launches(fl, driver: FakeDriver):
    """N launches, all different: function 0x100+i, grid (i+1, 2, 1), block (32*(i+1), 1, 2),
    i*16 shared bytes, int32 argument 10*i."""
    blocks, runs = [], []
    for i in range(N):
        pb = ParamBlock([DevicePtr(0xA000 + i), np.int32(10 * i)])
        cfg = LaunchConfig((i + 1, 2), (32 * (i + 1), 1, 2), 16 * i)
        blocks.append(pb)
        runs.append(fl.launcher(driver.entry, 0x100 + i, cfg, pb))
    return blocks, runs


def _expected(blocks, i: int, stream: int) -> tuple:
    return (0x100 + i, (i + 1, 2, 1), (32 * (i + 1), 1, 2), 16 * i, stream,
            blocks[i].pointer_array, 10 * i, None)  # fmt: skip


@pytest.mark.parametrize("start,stop", [(0, N), (1, 4), (5, 6), (0, 1), (3, 3)])
def test_span_launches_each_bound_launch_in_order(fl, start, stop):
    driver = FakeDriver()
    blocks, runs = _launches(fl, driver)
    span = fl.span(runs)
    assert len(span) == N
    assert span(0xBEEF, start, stop) == (0, stop)
    assert driver.calls == [_expected(blocks, i, 0xBEEF) for i in range(start, stop)]


def test_span_stops_at_first_failure(fl):
    driver = FakeDriver()
    blocks, runs = _launches(fl, driver)
    span = fl.span(runs)
    driver.fail = {0x103: 700, 0x105: 2}
    assert span(1, 0, N) == (700, 3)
    assert [c[0] for c in driver.calls] == [0x100, 0x101, 0x102, 0x103]  # 4, 5 never called
    driver.calls.clear()
    assert span(1, 4, N) == (2, 5)
    assert span(1, 4, 5) == (0, 5)
    assert [c[0] for c in driver.calls] == [0x104, 0x105, 0x104]


def test_span_success_result_is_not_allocated(fl):
    driver = FakeDriver()
    _, runs = _launches(fl, driver)
    span = fl.span(runs)
    # the (0, stop) results are made once, at construction: a call returns the same object
    assert span(1, 0, N) is span(2, 0, N) and span(1, 2, 4) is span(1, 0, 4)


def test_span_sees_in_place_parameter_changes(fl):
    driver = FakeDriver()
    blocks, runs = _launches(fl, driver)
    span = fl.span(runs)
    span(1, 2, 3)
    blocks[2].set(1, np.int32(-42))
    span(1, 2, 3)
    assert [c[6] for c in driver.calls] == [20, -42]
    assert driver.calls[0][5] == driver.calls[1][5] == blocks[2].pointer_array


def test_span_keeps_its_launchers(fl):
    driver = FakeDriver()
    blocks, runs = _launches(fl, driver)
    ptr = blocks[1].pointer_array
    span = fl.span(runs)
    del blocks, runs
    gc.collect()
    assert span(3, 1, 2) == (0, 2)
    assert driver.calls[0][5] == ptr and driver.calls[0][6] == 10  # the block is still alive


def test_span_rejects_bad_calls(fl):
    driver = FakeDriver()
    _, runs = _launches(fl, driver)
    span = fl.span(runs)
    for start, stop in [(-1, 2), (0, N + 1), (N + 1, N + 1), (2, -1)]:
        with pytest.raises(IndexError, match=rf"span \[{start}, {stop}\) outside the {N} launches"):
            span(1, start, stop)
    assert span(1, 4, 2) == (0, 2)  # start > stop: nothing to launch, as range(4, 2)
    with pytest.raises(TypeError, match="three arguments"):
        span(1, 0)
    with pytest.raises(TypeError, match="three arguments"):
        span(1, 0, stop=2)
    with pytest.raises(TypeError, match="start must be an int, not float"):
        span(1, 0.0, 2)
    with pytest.raises(TypeError, match="stop must be an int, not NoneType"):
        span(1, 0, None)
    with pytest.raises(TypeError):
        span("stream", 0, 1)
    assert driver.calls == [], "a rejected call launches nothing"
    with pytest.raises(TypeError, match="span item 1 is object, not a Launcher"):
        fl._Span([runs[0], object()])
    with pytest.raises(TypeError):
        fl._Span(5)
    empty = fl._Span([])
    assert len(empty) == 0 and empty(1, 0, 0) == (0, 0)


def test_span_needs_every_c_launcher(fl, monkeypatch):
    driver = FakeDriver()
    _, runs = _launches(fl, driver)
    assert fl.span([runs[0], None]) is None  # one launch through Python: no span
    monkeypatch.setenv("REEF_NO_FASTLAUNCH", "1")
    assert fl.span(runs) is None
    monkeypatch.delenv("REEF_NO_FASTLAUNCH")
    monkeypatch.setattr(fl, "_Span", None)  # an extension built before the span launcher
    assert fl.span(runs) is None
