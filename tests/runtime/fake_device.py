"""A byte-addressed fake Device for executor tests: memory is real (host bytearrays), kernels
do not run; launches are recorded with their unpacked arguments and packed bytes. It counts
live buffers, streams and events (leak tests) and records every copy or memset made on the
legacy null stream (``null_stream_ops``), which the executor must never use."""

from __future__ import annotations

from typing import Any

import numpy as np

from reef_rocm.gpu.api import (
    BoundLaunch,
    Capabilities,
    Device,
    DeviceBuffer,
    DeviceInfo,
    Event,
    Kernel,
    Module,
    Stream,
    Vendor,
)  # fmt: skip
from reef_rocm.gpu.params import ParamBlock


class FakeBuffer(DeviceBuffer):
    def __init__(self, dev: FakeDevice, ptr: int, nbytes: int) -> None:
        self.dev, self.ptr, self.nbytes = dev, ptr, nbytes

    def close(self) -> None:
        assert self.ptr not in self.dev.freed, f"double free of {self.ptr:#x}"
        self.dev.freed.append(self.ptr)


class FakeStream(Stream):
    priority = 0

    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        dev.live_streams.add(self)

    def synchronize(self) -> None: ...
    def query(self) -> bool:
        return True

    def write_value32(self, target: Any, value: int) -> None:
        raise AssertionError("the executor never writes the flag itself (the scheduler does)")

    def wait_event(self, event: Event) -> None: ...

    def close(self) -> None:
        assert self in self.dev.live_streams, "stream destroyed twice"
        self.dev.live_streams.discard(self)


class FakeEvent(Event):
    def __init__(self, dev: FakeDevice) -> None:
        self.dev = dev
        self.recorded = 0
        dev.live_events.add(self)

    def record(self, stream: Stream) -> None:
        assert isinstance(stream, FakeStream) and stream in self.dev.live_streams
        self.recorded += 1

    def synchronize(self) -> None: ...

    def query(self) -> bool:
        return True

    def elapsed_ms(self, end: Event) -> float:
        return 0.001  # kernels do not run here: any positive time

    def close(self) -> None:
        assert self in self.dev.live_events, "event destroyed twice"
        self.dev.live_events.discard(self)


class FakeBound(BoundLaunch):
    def __init__(self, dev: FakeDevice, kernel: Kernel, config: Any, args: list[Any]) -> None:
        self.dev, self.kernel, self.config, self.args = dev, kernel, config, args
        self.params = ParamBlock(args)

    def launch(self, stream: Stream) -> None:
        assert isinstance(stream, FakeStream) and stream in self.dev.live_streams
        self.dev.launched.append((self.kernel.name, self.config, self.args))
        self.dev.launched_params.append(self.params.raw())


class FakeKernel(Kernel):
    def __init__(self, dev: FakeDevice, name: str) -> None:
        self.dev, self.name = dev, name

    def bind(self, config: Any, args: Any) -> FakeBound:
        return FakeBound(self.dev, self, config, list(args))

    @property
    def attributes(self) -> dict[str, int]:
        return {}

    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        return 1


class FakeModule(Module):
    def __init__(self, dev: FakeDevice, image: bytes) -> None:
        self.dev, self.image = dev, image

    def get_kernel(self, name: str) -> Kernel:
        assert name.encode() in self.image, f"{name} not in the code object"
        return FakeKernel(self.dev, name)

    def close(self) -> None: ...


class FakeDevice(Device):
    def __init__(
        self, backend: str = "cuda", arch: str = "sm_90", host_mapped: bool = False
    ) -> None:
        self.info = DeviceInfo(backend, Vendor.NVIDIA, 0, "fake", arch, 1, 1 << 34, 32)
        self.capabilities = Capabilities(host_mapped_memory=host_mapped)
        self.mem: dict[int, bytearray] = {}
        self.next = 1 << 20
        self.launched: list[Any] = []
        self.launched_params: list[bytes] = []  # packed argument bytes of each launch
        self.freed: list[int] = []
        self.live_streams: set[FakeStream] = set()
        self.live_events: set[FakeEvent] = set()
        self.null_stream_ops: list[str] = []
        self.fail_on_load = False  # load_module raises (an __init__ failing part way)

    def _locate(self, ptr: int) -> tuple[bytearray, int]:
        for base, buf in self.mem.items():
            if base <= ptr < base + len(buf):
                return buf, ptr - base
        raise AssertionError(f"wild pointer {ptr:#x}")

    def read(self, ptr: int, nbytes: int) -> bytes:
        buf, off = self._locate(ptr)
        assert off + nbytes <= len(buf)
        return bytes(buf[off : off + nbytes])

    def live_buffers(self) -> list[int]:
        return [p for p in self.mem if p not in self.freed]

    def _stream_op(self, what: str, stream: Any) -> None:
        if stream is None:
            self.null_stream_ops.append(what)
        else:
            assert stream in self.live_streams, f"{what} on a destroyed or foreign stream"

    def create_stream(self, priority: int = 0, cu_mask: Any = None) -> Stream:
        return FakeStream(self)

    def stream_priority_range(self) -> tuple[int, int]:
        return (0, 0)

    def load_module(self, image: bytes) -> Module:
        if self.fail_on_load:
            raise RuntimeError("fake: load_module failed")
        return FakeModule(self, image)

    def alloc(self, nbytes: int) -> DeviceBuffer:
        ptr = self.next
        self.mem[ptr] = bytearray(nbytes)
        self.next += (nbytes + 4095) // 4096 * 4096 + 4096
        return FakeBuffer(self, ptr, nbytes)

    def alloc_host_mapped(self, nbytes: int) -> Any:
        assert self.capabilities.host_mapped_memory, "host-mapped memory is off on this fake"
        buf = self.alloc(nbytes)  # one byte store, seen from both sides
        buf.host = np.frombuffer(self.mem[buf.ptr], dtype=np.uint8)
        return buf

    def copy_to_device(self, dst: Any, src: Any, stream: Any = None) -> None:
        self._stream_op("copy_to_device", stream)
        raw = src.tobytes() if isinstance(src, np.ndarray) else bytes(src)
        buf, off = self._locate(dst.ptr)
        assert off + len(raw) <= len(buf), "copy past the end of an allocation"
        buf[off : off + len(raw)] = raw

    def copy_to_host(self, dst: Any, src: Any, stream: Any = None) -> None:
        self._stream_op("copy_to_host", stream)
        dst.view(np.uint8).reshape(-1)[:] = np.frombuffer(self.read(src.ptr, dst.nbytes), np.uint8)

    def memset32(self, dst: Any, value: int, count: int, stream: Any = None) -> None:
        self._stream_op("memset32", stream)
        raw = np.full(count, value, dtype=np.uint32).tobytes()
        buf, off = self._locate(dst.ptr)
        assert off + len(raw) <= len(buf), "memset past the end of an allocation"
        buf[off : off + len(raw)] = raw

    def create_event(self, timing: bool = True) -> Event:
        return FakeEvent(self)

    def synchronize(self) -> None: ...
