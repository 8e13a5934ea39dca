"""ModelInstance.launch_range through the C span launcher, on a fake CUDA device whose bound
launches are real C launchers calling a ctypes stand-in for cuLaunchKernel: every kernel of
the range reaches the "driver" in order with its own function, shape, stream and parameter
block, in-place parameter edits are seen, a failing launch raises the backend's error naming
the kernel, and without C launchers (sim, REEF_NO_FASTLAUNCH) the Python loop runs instead."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from fastlaunch_ext import LAUNCH_SIG, entry_of, extension, use_extension

from reef_rocm.errors import GpuError
from reef_rocm.gpu import open_device
from reef_rocm.gpu.api import DevicePtr, Kernel, Module, Stream
from reef_rocm.runtime import ModelInstance

from .fake_device import FakeBound, FakeDevice, FakeKernel, FakeModule, FakeStream
from .synthetic import make_input, write_package

N_KERNELS = 5


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    return extension(tmp_path_factory.mktemp("fastlaunch"))


@pytest.fixture
def fl(ext, monkeypatch):
    return use_extension(ext, monkeypatch)


@pytest.fixture
def fake_pkg(tmp_path):
    return write_package(tmp_path / "synthetic-cuda", n_kernels=N_KERNELS, blocks=8,
                         target="cuda:sm_90")  # fmt: skip


class CBound(FakeBound):
    """A bound launch through a C launcher, as CudaBoundLaunch makes it."""

    def __init__(self, dev: CDevice, kernel: CKernel, config: Any, args: list[Any]) -> None:
        super().__init__(dev, kernel, config, args)
        from reef_rocm.gpu import fastlaunch

        self._fast = fastlaunch.launcher(dev.entry, kernel.handle, config, self.params)

    def launch(self, stream: Stream) -> None:
        if self._fast is None:  # REEF_NO_FASTLAUNCH: the Python path
            super().launch(stream)
            return
        self.check_launch_status(self._fast(stream.raw_handle))  # type: ignore[attr-defined]

    @property
    def c_launcher(self) -> Any:
        return self._fast

    def check_launch_status(self, status: int, what: str = "") -> None:
        if status:
            raise GpuError(f"fakeLaunchKernel ({what})" if what else "fakeLaunchKernel", status)


class CKernel(FakeKernel):
    def __init__(self, dev: CDevice, name: str) -> None:
        super().__init__(dev, name)
        self.handle = 0x1000 + int(name.rsplit("_", 1)[1])  # axpb_<i>

    def bind(self, config: Any, args: Any) -> CBound:
        return CBound(self.dev, self, config, list(args))  # type: ignore[arg-type]


class CModule(FakeModule):
    def get_kernel(self, name: str) -> Kernel:
        super().get_kernel(name)  # the name is in the code object
        return CKernel(self.dev, name)  # type: ignore[arg-type]


class CDevice(FakeDevice):
    """The fake device, its launches going through the C launcher to a ctypes "driver" that
    records (kernel, grid, block, shared, stream, packed argument bytes) per call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple] = []
        self.fail: dict[int, int] = {}  # kernel handle -> status it returns
        self._cb = LAUNCH_SIG(self._launch)
        self.entry = entry_of(self._cb)
        self.handles: dict[int, FakeStream] = {}
        self.params_of: dict[int, Any] = {}  # pointer array -> ParamBlock

    def _launch(self, f, gx, gy, gz, bx, by, bz, shared, stream, params, extra):
        assert stream in self.handles and self.handles[stream] in self.live_streams
        raw = self.params_of[params].raw()  # the bytes the kernel would see now
        self.calls.append((f, (gx, gy, gz), (bx, by, bz), shared, stream, raw))
        return self.fail.get(f, 0)

    def create_stream(self, priority: int = 0, cu_mask: Any = None) -> Stream:
        s = FakeStream(self)
        s.raw_handle = 0x5000 + len(self.handles)  # type: ignore[attr-defined]
        self.handles[s.raw_handle] = s  # type: ignore[attr-defined]
        return s

    def load_module(self, image: bytes) -> Module:
        return CModule(self, image)

    def track(self, inst: ModelInstance) -> None:
        for b in inst.launches:
            self.params_of[b.params.pointer_array] = b.params


def _expected(inst: ModelInstance, stream: Any, start: int, stop: int) -> list[tuple]:
    """What the driver must see, from the manifest (not from the bound launches)."""
    out = []
    for i in range(start, stop):
        k = inst.kernels[i]
        out.append((0x1000 + i, tuple(k.grid), tuple(k.block), k.shared_mem, stream.raw_handle,
                    inst.launches[i].params.raw()))  # fmt: skip
    return out


@pytest.mark.parametrize("start,stop", [(0, None), (1, 4), (4, 5), (2, 2)])
def test_launch_range_is_one_span_call(fl, fake_pkg, start, stop):
    dev = CDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        dev.track(inst)
        assert inst._span is not None and len(inst._span) == N_KERNELS
        s = dev.create_stream()
        end = N_KERNELS if stop is None else stop
        inst.launch_range(s, start, stop)
        assert dev.calls == _expected(inst, s, start, end)
        assert not dev.launched, "nothing went through the Python launch"
        # the per-launch loop makes the same driver calls
        dev.calls.clear()
        for i in range(start, end):
            inst.launch(i, s)
        assert dev.calls == _expected(inst, s, start, end)
        s.close()


def test_span_runs_the_model_arguments(fl, fake_pkg):
    """The arguments each kernel gets: input/weight/output buffer pointers of the chain."""
    dev = CDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        dev.track(inst)
        s = dev.create_stream()
        inst.launch_range(s)
        for i, call in enumerate(dev.calls):
            src = inst.buffers[0 if i == 0 else i + 1].ptr
            ptrs = np.frombuffer(call[5][:24], np.uint64)
            assert list(ptrs) == [src, inst.buffers[1].ptr, inst.buffers[i + 2].ptr]
        s.close()


def test_in_place_parameter_edits_reach_the_span(fl, fake_pkg):
    dev = CDevice()
    with ModelInstance(dev, fake_pkg, variant="preemptible") as inst:
        dev.track(inst)
        s = dev.create_stream()
        pos = [a["kind"] for a in inst.kernels[2].args].index("reef_param")
        off = inst.launches[2].params.offsets[pos]
        flag_pos = [a["kind"] for a in inst.kernels[2].args].index("preempt_flag")
        flag_off = inst.launches[2].params.offsets[flag_pos]

        def poll(call: tuple) -> int:
            return int(np.frombuffer(call[5][off : off + 4], np.int32)[0])

        inst.launch_range(s)
        inst.set_poll_every(2, 9)
        # what the scheduler's use_flag does: point the flag argument elsewhere, in place
        inst.launches[2].params.set(flag_pos, DevicePtr(0xF1A6))
        inst.launch_range(s, 1)
        first, second = dev.calls[2], dev.calls[N_KERNELS + 1]
        assert first[0] == second[0] == 0x1002
        assert poll(first) == 0 and poll(second) == 9
        assert int(np.frombuffer(second[5][flag_off : flag_off + 8], np.uint64)[0]) == 0xF1A6
        assert poll(dev.calls[N_KERNELS + 2]) == 0, "only kernel 2 changed"
        s.close()


def test_failing_launch_raises_naming_the_kernel(fl, fake_pkg):
    dev = CDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        dev.track(inst)
        s = dev.create_stream()
        dev.fail = {0x1003: 719}
        with pytest.raises(GpuError, match=r"fakeLaunchKernel \(kernel 3 axpb_3\) failed with 719"):
            inst.launch_range(s, 1)
        assert [c[0] for c in dev.calls] == [0x1001, 0x1002, 0x1003]  # 4 never launched
        with pytest.raises(GpuError, match=r"fakeLaunchKernel failed with 719"):
            inst.launch(3, s)  # the per-launch path raises the same error
        dev.fail = {}
        inst.launch_range(s, 4)
        with pytest.raises(IndexError, match="outside the 5 launches"):
            inst.launch_range(s, 0, N_KERNELS + 1)
        s.close()


def test_python_loop_without_c_launchers(fl, fake_pkg, monkeypatch, tmp_path):
    monkeypatch.setenv("REEF_NO_FASTLAUNCH", "1")
    dev = CDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        assert inst._span is None
        s = dev.create_stream()
        inst.launch_range(s, 1, 3)
        assert [name for name, _, _ in dev.launched] == ["axpb_1", "axpb_2"]
        assert not dev.calls
        s.close()
    # the plain fake device has no C launchers at all; the sim neither
    with ModelInstance(FakeDevice(), fake_pkg) as inst:
        assert inst._span is None
    monkeypatch.delenv("REEF_NO_FASTLAUNCH")
    pkg = write_package(tmp_path / "synthetic-sim", n_kernels=3, blocks=8)
    sim = open_device("sim", compute_units=4)
    with ModelInstance(sim, pkg) as inst:
        assert inst._span is None
        x = make_input(pkg)
        np.testing.assert_array_equal(inst.run([x])[0], pkg.reference(x))
    sim.close()


def test_close_drops_the_span(fl, fake_pkg):
    dev = CDevice()
    inst = ModelInstance(dev, fake_pkg)
    assert inst._span is not None
    inst.close()
    assert inst._span is None and not inst.launches
    s = dev.create_stream()
    inst.launch_range(s)  # nothing left to launch
    assert not dev.calls
    s.close()


def test_span_call_is_what_the_stream_handle_says(fl, fake_pkg):
    """Two streams: each span call carries its own stream handle."""
    dev = CDevice()
    with ModelInstance(dev, fake_pkg) as inst:
        dev.track(inst)
        a, b = dev.create_stream(), dev.create_stream()
        inst.launch_range(a, 0, 2)
        inst.launch_range(b, 2)
        assert [c[4] for c in dev.calls] == [a.raw_handle] * 2 + [b.raw_handle] * 3
        a.close()
        b.close()
