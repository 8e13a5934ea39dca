"""CUDA backend: NVIDIA GPUs through the cuda-bindings driver API.

REEF-N's mechanisms map onto the driver like this: the preempt flag is written with
``cuStreamWriteValue32`` on a side stream (visible to the GPU in ~6 us on an H100), BE
kernels read it at block start, and nothing can kill running blocks (capability level
DEVICE_QUEUE). The launch path packs arguments once (ParamBlock) and then costs one
``cuLaunchKernel`` call with pre-built Python arguments.
"""

from __future__ import annotations

import ctypes
import importlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError
from reef_rocm.gpu import fastlaunch
from reef_rocm.gpu.api import (
    BackendReport,
    BoundLaunch,
    Capabilities,
    Device,
    DeviceBuffer,
    DeviceInfo,
    DevicePtr,
    Event,
    Graph,
    HostMappedBuffer,
    Kernel,
    LaunchConfig,
    Module,
    Stream,
    Vendor,
    device_address,
    u32,
)
from reef_rocm.gpu.params import ParamBlock

_driver: Any = None


def _cu() -> Any:
    """The cuda.bindings.driver module, imported on first use (one seam for tests)."""
    global _driver
    if _driver is None:
        try:
            _driver = importlib.import_module("cuda.bindings.driver")
        except ImportError as e:
            raise BackendUnavailable(
                "cuda-bindings is not installed (pip install 'reef_rocm[cuda]')"
            ) from e
    return _driver


def _check(call: str, result: Any) -> Any:
    """Unpack a cuda-bindings ``(CUresult, *values)`` tuple, raising GpuError on failure."""
    err, *values = result
    if err != 0:
        cu = _cu()
        _, msg = cu.cuGetErrorString(err)
        raise GpuError(call, int(err), msg.decode() if msg else str(err))
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


# ---------------------------------------------------------------------------------------
# memory


class CudaBuffer(DeviceBuffer):
    def __init__(self, device: CudaDevice, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        self._device = device
        self._handle = _check("cuMemAlloc", _cu().cuMemAlloc(nbytes))
        self.ptr = int(self._handle)
        self.nbytes = nbytes

    def close(self) -> None:
        if self._handle is not None:
            self._device.make_current()
            _check("cuMemFree", _cu().cuMemFree(self._handle))
            self._handle = None
            self.ptr = 0


class CudaHostMappedBuffer(HostMappedBuffer):
    def __init__(self, device: CudaDevice, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        cu = _cu()
        self._device = device
        flags = cu.CU_MEMHOSTALLOC_DEVICEMAP | cu.CU_MEMHOSTALLOC_PORTABLE
        self._host_ptr = int(_check("cuMemHostAlloc", cu.cuMemHostAlloc(nbytes, flags)))
        self.nbytes = nbytes
        self.ptr = int(
            _check("cuMemHostGetDevicePointer", cu.cuMemHostGetDevicePointer(self._host_ptr, 0))
        )
        raw = (ctypes.c_uint8 * nbytes).from_address(self._host_ptr)
        self.host = np.frombuffer(raw, dtype=np.uint8)

    def close(self) -> None:
        if self._host_ptr:
            self.host = np.empty(0, dtype=np.uint8)  # drop the view before the memory goes
            self._device.make_current()
            _check("cuMemFreeHost", _cu().cuMemFreeHost(self._host_ptr))
            self._host_ptr = 0
            self.ptr = 0


# ---------------------------------------------------------------------------------------
# streams and events


class CudaStream(Stream):
    def __init__(self, device: CudaDevice, priority: int) -> None:
        cu = _cu()
        self._device = device
        self.priority = priority
        # Non-blocking: BE and RT streams must never serialise on the legacy default stream.
        self.handle = _check(
            "cuStreamCreateWithPriority",
            cu.cuStreamCreateWithPriority(cu.CUstream_flags.CU_STREAM_NON_BLOCKING, priority),
        )
        self.raw_handle = int(self.handle)  # for the C launcher

    def synchronize(self) -> None:
        _check("cuStreamSynchronize", _cu().cuStreamSynchronize(self.handle))

    def query(self) -> bool:
        cu = _cu()
        (err,) = cu.cuStreamQuery(self.handle)
        if err == cu.CUresult.CUDA_ERROR_NOT_READY:
            return False
        _check("cuStreamQuery", (err,))
        return True

    def write_value32(
        self, target: DeviceBuffer | DevicePtr | HostMappedBuffer, value: int
    ) -> None:
        cu = _cu()
        _check(
            "cuStreamWriteValue32",
            cu.cuStreamWriteValue32(
                self.handle,
                device_address(target),
                u32(value),
                cu.CUstreamWriteValue_flags.CU_STREAM_WRITE_VALUE_DEFAULT,
            ),
        )

    def wait_event(self, event: Event) -> None:
        if not isinstance(event, CudaEvent):
            raise TypeError(f"expected a CudaEvent, got {type(event).__name__}")
        _check("cuStreamWaitEvent", _cu().cuStreamWaitEvent(self.handle, event.handle, 0))

    def close(self) -> None:
        if self.handle is not None:
            _check("cuStreamDestroy", _cu().cuStreamDestroy(self.handle))
            self.handle = None


class CudaGraph(Graph):
    """A stream capture (thread-local mode: other threads' launches are not captured and
    not disturbed) instantiated once; ``launch`` is one ``cuGraphLaunch``."""

    def __init__(self, stream: Stream, enqueue: Any) -> None:
        cu = _cu()
        if not isinstance(stream, CudaStream):
            raise TypeError(f"expected a CudaStream, got {type(stream).__name__}")
        self._graph = self._exec = None
        mode = cu.CUstreamCaptureMode.CU_STREAM_CAPTURE_MODE_THREAD_LOCAL
        _check("cuStreamBeginCapture", cu.cuStreamBeginCapture(stream.handle, mode))
        try:
            enqueue(stream)
        finally:
            # always end the capture: a stream left capturing fails every later call on it
            err, graph = cu.cuStreamEndCapture(stream.handle)
        _check("cuStreamEndCapture", (err,))
        self._graph = graph
        self._exec = _check("cuGraphInstantiate", cu.cuGraphInstantiate(graph, 0))
        self.nodes = int(_check("cuGraphGetNodes", cu.cuGraphGetNodes(graph, 0))[1])

    def launch(self, stream: Stream) -> None:
        _check("cuGraphLaunch", _cu().cuGraphLaunch(self._exec, _stream_handle(stream)))

    def close(self) -> None:
        cu = _cu()
        if self._exec is not None:
            _check("cuGraphExecDestroy", cu.cuGraphExecDestroy(self._exec))
            self._exec = None
        if self._graph is not None:
            _check("cuGraphDestroy", cu.cuGraphDestroy(self._graph))
            self._graph = None


class CudaEvent(Event):
    def __init__(self, timing: bool) -> None:
        cu = _cu()
        flags = (
            cu.CUevent_flags.CU_EVENT_DEFAULT
            if timing
            else cu.CUevent_flags.CU_EVENT_DISABLE_TIMING
        )
        self.handle = _check("cuEventCreate", cu.cuEventCreate(flags))

    def record(self, stream: Stream) -> None:
        _check("cuEventRecord", _cu().cuEventRecord(self.handle, _stream_handle(stream)))

    def synchronize(self) -> None:
        _check("cuEventSynchronize", _cu().cuEventSynchronize(self.handle))

    def query(self) -> bool:
        cu = _cu()
        (err,) = cu.cuEventQuery(self.handle)
        if err == cu.CUresult.CUDA_ERROR_NOT_READY:
            return False
        _check("cuEventQuery", (err,))
        return True

    def close(self) -> None:
        if self.handle is not None:
            _check("cuEventDestroy", _cu().cuEventDestroy(self.handle))
            self.handle = None

    def elapsed_ms(self, end: Event) -> float:
        if not isinstance(end, CudaEvent):
            raise TypeError(f"expected a CudaEvent, got {type(end).__name__}")
        return float(
            _check("cuEventElapsedTime", _cu().cuEventElapsedTime(self.handle, end.handle))
        )


# ---------------------------------------------------------------------------------------
# modules and kernels


class CudaBoundLaunch(BoundLaunch):
    """One kernel, shape and argument block, launched with one driver call per ``launch``.

    With the C launcher built (reef_rocm/gpu/_fastlaunch.c) the call goes straight to the
    driver's cuLaunchKernel entry point; otherwise through cuda-bindings, which re-converts
    all eleven arguments on each call (~0.7 us more on an H100 host).
    """

    __slots__ = ("kernel", "config", "params", "_fast", "_launch", "_head", "_tail")

    def __init__(self, kernel: CudaKernel, config: LaunchConfig, params: ParamBlock) -> None:
        self.kernel = kernel
        self.config = config
        self.params = params
        self._fast = fastlaunch.launcher(_launch_entry_point(), int(kernel.handle), config, params)
        self._launch = _cu().cuLaunchKernel
        # Everything but the stream is fixed: the bindings path only splices the stream in.
        self._head = (kernel.handle, *config.grid, *config.block, config.shared_mem)
        self._tail = (params.pointer_array, 0)

    def launch(self, stream: Stream) -> None:
        if self._fast is not None:
            err = self._fast(stream.raw_handle)  # type: ignore[attr-defined]
        else:
            (err,) = self._launch(*self._head, stream.handle, *self._tail)  # type: ignore[attr-defined]
        if err != 0:
            self.check_launch_status(int(err))

    @property
    def c_launcher(self) -> Any:
        return self._fast

    def check_launch_status(self, status: int, what: str = "") -> None:
        if status != 0:
            _check(f"cuLaunchKernel ({what})" if what else "cuLaunchKernel",
                   (_cu().CUresult(status),))  # fmt: skip


_entry_point: int | None = None


def _launch_entry_point() -> int:
    """Address of the driver's cuLaunchKernel, for the C launcher (0 if unavailable)."""
    global _entry_point
    if _entry_point is None:
        cu = _cu()
        version = int(_check("cuDriverGetVersion", cu.cuDriverGetVersion()))
        err, pfn, _status = cu.cuGetProcAddress(
            b"cuLaunchKernel", version, cu.CUdriverProcAddress_flags.CU_GET_PROC_ADDRESS_DEFAULT
        )
        _entry_point = int(pfn) if err == 0 and pfn else 0
    return _entry_point


class CudaKernel(Kernel):
    def __init__(self, module: CudaModule, name: str) -> None:
        self.name = name
        self.module = module
        self.handle = _check(
            "cuModuleGetFunction", _cu().cuModuleGetFunction(module.handle, name.encode())
        )

    def _attr(self, attr: Any) -> int:
        return int(_check("cuFuncGetAttribute", _cu().cuFuncGetAttribute(attr, self.handle)))

    @property
    def attributes(self) -> dict[str, int]:
        a = _cu().CUfunction_attribute
        return {
            "registers": self._attr(a.CU_FUNC_ATTRIBUTE_NUM_REGS),
            "shared_bytes": self._attr(a.CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES),
            "local_bytes": self._attr(a.CU_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
            "max_threads_per_block": self._attr(a.CU_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        }

    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        return int(
            _check(
                "cuOccupancyMaxActiveBlocksPerMultiprocessor",
                _cu().cuOccupancyMaxActiveBlocksPerMultiprocessor(
                    self.handle, block_threads, dynamic_shared
                ),
            )
        )

    def _bind(self, config: LaunchConfig, args: Sequence[Any]) -> CudaBoundLaunch:
        return CudaBoundLaunch(self, config, ParamBlock(args))


class CudaModule(Module):
    def __init__(self, device: CudaDevice, image: bytes) -> None:
        if not image:
            raise ValueError("empty module image")
        self.device: CudaDevice = device
        data = bytes(image)
        if not data.startswith(b"\x7fELF") and not data.endswith(b"\0"):
            data += b"\0"  # PTX text must be NUL-terminated for cuModuleLoadData
        self._image = data  # the driver may read it lazily; keep it alive
        self.handle = _check("cuModuleLoadData", _cu().cuModuleLoadData(data))

    def _load_kernel(self, name: str) -> CudaKernel:
        return CudaKernel(self, name)

    def close(self) -> None:
        if self.handle is not None:
            self.device.make_current()
            _check("cuModuleUnload", _cu().cuModuleUnload(self.handle))
            self.handle = None
            self._forget_kernels()


# ---------------------------------------------------------------------------------------
# device


def _device_info(ordinal: int) -> DeviceInfo:
    cu = _cu()
    dev = _check("cuDeviceGet", cu.cuDeviceGet(ordinal))
    a = cu.CUdevice_attribute

    def attr(x: Any) -> int:
        return int(_check("cuDeviceGetAttribute", cu.cuDeviceGetAttribute(x, dev)))

    name = _check("cuDeviceGetName", cu.cuDeviceGetName(256, dev))
    major = attr(a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)
    minor = attr(a.CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)
    driver = int(_check("cuDriverGetVersion", cu.cuDriverGetVersion()))
    bus = attr(a.CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)
    return DeviceInfo(
        backend="cuda",
        vendor=Vendor.NVIDIA,
        ordinal=ordinal,
        name=name.split(b"\0", 1)[0].decode(),
        arch=f"sm_{major}{minor}",
        compute_units=attr(a.CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT),
        memory_bytes=int(_check("cuDeviceTotalMem", cu.cuDeviceTotalMem(dev))),
        warp_size=attr(a.CU_DEVICE_ATTRIBUTE_WARP_SIZE),
        max_threads_per_block=attr(a.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        max_shared_memory_per_block=attr(a.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK),
        driver_version=f"{driver // 1000}.{driver % 1000 // 10}",
        runtime_version=_bindings_version(),
        extra={
            "pci_bus_id": bus,
            "max_shared_memory_per_block_optin": attr(
                a.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
            ),
            "max_shared_memory_per_sm": attr(
                a.CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR
            ),
            "registers_per_sm": attr(a.CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR),
            "max_threads_per_sm": attr(a.CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR),
            "max_blocks_per_sm": attr(a.CU_DEVICE_ATTRIBUTE_MAX_BLOCKS_PER_MULTIPROCESSOR),
        },
    )


# What the CUDA driver offers REEF: flag writes and priorities, no CU masks, no kill.
CUDA_CAPABILITIES = Capabilities(
    stream_write_value=True,
    stream_priorities=True,
    cu_mask=False,
    wave_kill=False,
    queue_reset=False,
    in_kernel_polling=True,
    host_mapped_memory=True,
    indirect_calls=True,
    graphs=True,
)


class CudaDevice(Device):
    def __init__(self, ordinal: int = 0) -> None:
        cu = _cu()
        _check("cuInit", cu.cuInit(0))
        count = int(_check("cuDeviceGetCount", cu.cuDeviceGetCount()))
        if not 0 <= ordinal < count:
            raise BackendUnavailable(f"CUDA device {ordinal} requested, {count} present")
        self._dev = _check("cuDeviceGet", cu.cuDeviceGet(ordinal))
        # The primary context is the one every CUDA library in the process shares.
        self._ctx = _check("cuDevicePrimaryCtxRetain", cu.cuDevicePrimaryCtxRetain(self._dev))
        self.make_current()
        self.info = _device_info(ordinal)
        self.capabilities = CUDA_CAPABILITIES

    def make_current(self) -> None:
        """Bind this device's primary context to the calling thread (once per new thread)."""
        if self._ctx is None:
            raise BackendUnavailable(f"CUDA device {self.info.ordinal} was closed")
        _check("cuCtxSetCurrent", _cu().cuCtxSetCurrent(self._ctx))

    def create_stream(self, priority: int = 0, cu_mask: Sequence[int] | None = None) -> CudaStream:
        if cu_mask is not None:
            raise UnsupportedError("CU masks are an AMD feature; the cuda backend has none")
        return CudaStream(self, priority)

    def stream_priority_range(self) -> tuple[int, int]:
        least, greatest = _check("cuCtxGetStreamPriorityRange", _cu().cuCtxGetStreamPriorityRange())
        return int(least), int(greatest)

    def load_module(self, image: bytes) -> CudaModule:
        return CudaModule(self, image)

    def alloc(self, nbytes: int) -> CudaBuffer:
        return CudaBuffer(self, nbytes)

    def alloc_host_mapped(self, nbytes: int) -> CudaHostMappedBuffer:
        return CudaHostMappedBuffer(self, nbytes)

    def _copy_to_device(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        cu = _cu()
        if stream is None:
            _check("cuMemcpyHtoD", cu.cuMemcpyHtoD(dst, src, nbytes))
        else:
            _check(
                "cuMemcpyHtoDAsync", cu.cuMemcpyHtoDAsync(dst, src, nbytes, _stream_handle(stream))
            )

    def _copy_to_host(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        cu = _cu()
        if stream is None:
            _check("cuMemcpyDtoH", cu.cuMemcpyDtoH(dst, src, nbytes))
        else:
            _check(
                "cuMemcpyDtoHAsync", cu.cuMemcpyDtoHAsync(dst, src, nbytes, _stream_handle(stream))
            )

    def _memset32(self, dst: int, pattern: int, count: int, stream: Stream | None) -> None:
        cu = _cu()
        if stream is None:
            _check("cuMemsetD32", cu.cuMemsetD32(dst, pattern, count))
        else:
            _check(
                "cuMemsetD32Async",
                cu.cuMemsetD32Async(dst, pattern, count, _stream_handle(stream)),
            )

    def create_event(self, timing: bool = True) -> CudaEvent:
        return CudaEvent(timing)

    def capture_graph(self, stream: Stream, enqueue: Any) -> CudaGraph:
        return CudaGraph(stream, enqueue)

    def synchronize(self) -> None:
        _check("cuCtxSynchronize", _cu().cuCtxSynchronize())

    def close(self) -> None:
        """Release this device's hold on the primary context (idempotent)."""
        if self._ctx is not None:
            _check("cuDevicePrimaryCtxRelease", _cu().cuDevicePrimaryCtxRelease(self._dev))
            self._ctx = None


def _stream_handle(stream: Stream) -> Any:
    if not isinstance(stream, CudaStream):
        raise TypeError(f"expected a CudaStream, got {type(stream).__name__}")
    return stream.handle


def _bindings_version() -> str:
    try:
        from importlib.metadata import version

        return "cuda-bindings " + version("cuda-bindings")
    except Exception:  # metadata missing in odd installs: version is informational only
        return "cuda-bindings (unknown version)"


def probe() -> BackendReport:
    report = BackendReport(backend="cuda", available=False)
    try:
        cu = _cu()
    except BackendUnavailable as e:
        report.reason = str(e)
        return report
    report.versions["bindings"] = _bindings_version()
    try:
        (err,) = cu.cuInit(0)
    except RuntimeError as e:  # cuda-bindings raises when libcuda.so cannot be loaded
        report.reason = f"NVIDIA driver not loadable: {e}"
        return report
    if err != 0:
        report.reason = f"cuInit failed ({err.name if hasattr(err, 'name') else err})"
        return report
    report.versions["driver"] = str(_check("cuDriverGetVersion", cu.cuDriverGetVersion()))
    count = int(_check("cuDeviceGetCount", cu.cuDeviceGetCount()))
    for i in range(count):
        report.devices.append(_device_info(i))
        report.capabilities.append(CUDA_CAPABILITIES)
    report.available = count > 0
    if not count:
        report.reason = "driver loaded but no NVIDIA GPU visible"
    return report


def open_device(ordinal: int = 0, **options: Any) -> CudaDevice:
    if options:
        raise TypeError(f"cuda backend takes no options, got {sorted(options)}")
    return CudaDevice(ordinal)
