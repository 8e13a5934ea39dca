"""A test double of a GPU for ``reef tune measure``: the reef_rocm.gpu Device calls the
measurement makes, with kernels that compute a known function in numpy.

Each "kernel" of a loaded module computes ``compute(inputs)`` into the output buffers (what
every correct schedule of the task does); kernels named in ``wrong`` write something else,
those in ``missing`` are absent from the module (GpuError on lookup). Event times advance
by ``us[kernel name]`` (default 40) per launch, so medians are known exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from reef_rocm.errors import GpuError
from reef_rocm.gpu.api import DeviceInfo, DevicePtr, Vendor


class FakeBuffer:
    def __init__(self, dev: FakeDevice, nbytes: int) -> None:
        self.data = np.zeros(nbytes, dtype=np.uint8)
        self.ptr = dev.register(self)
        self.nbytes = nbytes

    def close(self) -> None:
        pass


class FakeEvent:
    def __init__(self, dev: FakeDevice) -> None:
        self.dev, self.t = dev, None

    def record(self, stream: Any) -> None:
        self.t = self.dev.clock_us

    def elapsed_ms(self, end: FakeEvent) -> float:
        return (end.t - self.t) / 1000.0

    def close(self) -> None:
        pass


class FakeStream:
    def synchronize(self) -> None:
        pass

    def close(self) -> None:
        pass


class FakeLaunch:
    def __init__(self, dev: FakeDevice, name: str, args: list[Any]) -> None:
        self.dev, self.name, self.args = dev, name, args

    def launch(self, stream: Any) -> None:
        self.dev.run(self.name, self.args)


class FakeKernel:
    def __init__(self, dev: FakeDevice, name: str) -> None:
        self.dev, self.name = dev, name

    def bind(self, config: Any, args: list[Any]) -> FakeLaunch:
        return FakeLaunch(self.dev, self.name, list(args))


class FakeModule:
    def __init__(self, dev: FakeDevice, image: bytes) -> None:
        self.dev, self.image = dev, image

    def get_kernel(self, name: str) -> FakeKernel:
        if name in self.dev.missing or name.encode() not in self.image:
            raise GpuError("cuModuleGetFunction", 500, f"kernel {name!r} not found in module")
        return FakeKernel(self.dev, name)

    def close(self) -> None:
        pass


class FakeDevice:
    def __init__(
        self,
        params: list[dict[str, Any]],
        compute: Callable[..., list[np.ndarray]],
        us: dict[str, float],
        wrong: set[str] = frozenset(),
        missing: set[str] = frozenset(),
    ) -> None:
        self.params, self.compute, self.us = params, compute, us
        self.wrong, self.missing = set(wrong), set(missing)
        self.clock_us = 0.0
        self.buffers: dict[int, FakeBuffer] = {}
        self.info = DeviceInfo(
            backend="cuda",
            vendor=Vendor.NVIDIA,
            ordinal=0,
            name="fake H200",
            arch="sm_90",
            compute_units=132,
            memory_bytes=1 << 30,
            warp_size=32,
            driver_version="fake",
            runtime_version="fake",
            extra={"simulated": True},
        )

    def register(self, b: FakeBuffer) -> int:
        ptr = 0x1000 * (len(self.buffers) + 1) << 20
        self.buffers[ptr] = b
        return ptr

    def alloc(self, nbytes: int) -> FakeBuffer:
        return FakeBuffer(self, nbytes)

    def _buf(self, x: Any) -> FakeBuffer:
        return self.buffers[x.ptr if isinstance(x, (FakeBuffer, DevicePtr)) else x]

    def copy_to_device(self, dst: Any, src: np.ndarray, stream: Any = None) -> None:
        self._buf(dst).data[: src.nbytes] = np.frombuffer(src.tobytes(), dtype=np.uint8)

    def copy_to_host(self, dst: np.ndarray, src: Any, stream: Any = None) -> None:
        dst.view(np.uint8).reshape(-1)[:] = self._buf(src).data[: dst.nbytes]

    def memset32(self, dst: Any, value: int, count: int, stream: Any = None) -> None:
        self._buf(dst).data[: 4 * count].view(np.uint32)[:] = value

    def create_stream(self) -> FakeStream:
        return FakeStream()

    def create_event(self, timing: bool = True) -> FakeEvent:
        return FakeEvent(self)

    def load_module(self, image: bytes) -> FakeModule:
        return FakeModule(self, image)

    def run(self, name: str, args: list[Any]) -> None:
        """A kernel computes the task from the buffers it is given: the measurement allocates
        one buffer per parameter in parameter order, so address order is parameter order
        (kernels take them in their own order)."""
        ptrs = sorted({a.ptr for a in args if isinstance(a, (FakeBuffer, DevicePtr))})
        if len(ptrs) != len(self.params):
            raise GpuError("cuLaunchKernel", 1, f"{name}: takes {len(ptrs)} buffers")
        arrays = [self._array(i, p) for i, p in enumerate(ptrs)]
        outs = self.compute(
            *[a for a, p in zip(arrays, self.params, strict=True) if not p["output"]]
        )
        for a, o in zip(
            [a for a, p in zip(arrays, self.params, strict=True) if p["output"]], outs, strict=True
        ):
            a[...] = o + (1.0 if name in self.wrong else 0.0)
        self.clock_us += self.us.get(name, 40.0)

    def _array(self, i: int, ptr: Any) -> np.ndarray:
        p = self.params[i]
        return self.buffers[ptr].data.view(p["dtype"]).reshape(p["shape"])

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeDevice:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
