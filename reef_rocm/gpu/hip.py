"""HIP backend: AMD GPUs through hip-python (``from hip import hip``).

REEF's mechanisms map onto HIP like this: the preempt flag is written with
``hipStreamWriteValue32`` on a side stream; BE kernels read it at block start; CU masks
(``hipExtStreamCreateWithCUMask``) partition compute units; killing running waves needs the
reef KFD patch (``reef_rocm.rocm.kfd``), so ``wave_kill`` is only reported where that patch
answers for this GPU's KFD node. ``queue_reset`` is never reported: the patch's RESET_QUEUE
names a queue by its ring address, which HIP streams hide.

The launch path packs arguments once (ParamBlock) and every launch is then one
``hipModuleLaunchKernel`` call whose pointer arguments are hip-python wrapper objects built
at bind time: hip-python hands an argument that already has the wrapper type straight
through (``fromPyobj`` returns it), so nothing is converted or allocated by us per launch.

hip-python returns ``(hipError_t, *outputs)`` tuples; every status is checked and a failure
raises ``GpuError(call, code, message)``. hip-python dlopens libamdhip64 on the first call
and raises RuntimeError when the library or one symbol is missing; ``probe`` turns that
into ``available=False`` with the reason. What differs between hip-python's release lines
(6.x/7.x and 10.x) lives in ``_hip_compat``. See docs/hip_backend.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError
from reef_rocm.gpu import _hip_compat
from reef_rocm.gpu.api import (
    BackendReport,
    BoundLaunch,
    Capabilities,
    Device,
    DeviceBuffer,
    DeviceInfo,
    DevicePtr,
    Event,
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

LAUNCH_FORMS = ("params", "extra")


def _hip() -> Any:
    """hip-python's function module (``hip.hip``), loaded on first use."""
    return _hip_compat.bindings().hip


def _text(s: Any) -> str:
    """hip-python hands C strings back as CStr (str() decodes) or, per its docs, bytes."""
    if isinstance(s, (bytes, bytearray)):
        return bytes(s).split(b"\0", 1)[0].decode(errors="replace")
    return str(s)


def _error_text(err: Any) -> str:
    """'hipErrorX: description' for a status; never raises (used while raising)."""
    hip = _hip()
    parts = []
    for fn in (hip.hipGetErrorName, hip.hipGetErrorString):
        try:
            _, s = fn(err)
            if s is not None and _text(s) not in parts:
                parts.append(_text(s))
        except Exception:  # a broken runtime must not hide the original error
            pass
    return ": ".join(parts)


def _check(call: str, result: Any) -> Any:
    """Unpack a hip-python ``(hipError_t, *values)`` tuple; GpuError on any non-success."""
    err = result[0]
    if err != 0:  # hipError_t is an IntEnum; hipSuccess == 0
        raise GpuError(call, int(err), _error_text(err))
    if len(result) == 1:
        return None
    return result[1] if len(result) == 2 else tuple(result[1:])


def _i32(value: int) -> int:
    """A 32-bit pattern as a signed int (hipMemsetD32 takes ``int value``)."""
    v = u32(value)
    return v - 2**32 if v >= 2**31 else v


def cu_mask_words(cus: Sequence[int], compute_units: int) -> list[int]:
    """CU indices -> the uint32 words hipExtStreamCreateWithCUMask takes.

    Bit ``i % 32`` of word ``i // 32`` enables CU ``i``; one word per 32 CUs of the device.
    The indices are the runtime's logical CU numbering (KFD spreads mask bits over shader
    engines), not the physical CU id a kernel reads from HW_ID.
    """
    if compute_units <= 0:
        raise ValueError(f"device reports {compute_units} compute units")
    if not cus:
        raise ValueError("cu_mask is empty: a stream needs at least one CU")
    words = [0] * ((compute_units + 31) // 32)
    for cu in cus:
        if isinstance(cu, bool) or not isinstance(cu, (int, np.integer)):
            raise TypeError(f"CU index {cu!r} is not an int")
        if not 0 <= cu < compute_units:
            raise ValueError(f"CU index {cu} outside 0..{compute_units - 1}")
        words[int(cu) // 32] |= 1 << (int(cu) % 32)
    return words


def _format_version(v: int) -> str:
    """HIP_VERSION integer (major*10^7 + minor*10^5 + patch) -> 'major.minor.patch'."""
    return f"{v // 10_000_000}.{v // 100_000 % 100}.{v % 100_000}"


# ---------------------------------------------------------------------------------------
# KFD node of a HIP device, and what the reef KFD patch offers for it


def kfd_gpu_id(
    pci_domain: int,
    pci_bus: int,
    pci_device: int,
    uuid: bytes | None = None,
    nodes: Sequence[Any] | None = None,
) -> int | None:
    """KFD ``gpu_id`` of the GPU at PCI ``domain:bus:device``, or None if not known for sure.

    ``nodes`` are the GPU nodes of ``reef_rocm.rocm.kfd.topology_gpus()`` (read when not
    given). KFD's node properties carry ``domain`` and ``location_id`` = bus << 8 | device
    << 3 | function (bits 28+ hold the partition number on partitioned GPUs). HIP ordinals do
    not follow KFD node order (HIP_VISIBLE_DEVICES, CPU nodes first), so the PCI address is
    the join key. Where several nodes share it (a partitioned GPU), ``uuid``
    (hipDeviceGetUuid: the 16 hex digits ROCr prints after "GPU-") must match
    ``unique_id``; otherwise None, because a kill ioctl aimed at a guessed gpu_id would hit
    the wrong GPU. A node without PCI fields never matches.
    """
    if nodes is None:
        from reef_rocm.rocm import kfd

        nodes = kfd.topology_gpus()
    candidates = []
    for node in nodes:
        loc = getattr(node, "location_id", None)
        if loc is None:  # the topology reader did not give the PCI location
            continue
        if (
            getattr(node, "domain", None) == pci_domain
            and (loc >> 8) & 0xFF == pci_bus
            and (loc >> 3) & 0x1F == pci_device
        ):
            candidates.append(node)
    if len(candidates) == 1:
        return int(candidates[0].gpu_id)
    if len(candidates) > 1 and uuid:
        try:
            unique = int(uuid.rstrip(b"\0").decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            return None
        matches = [n for n in candidates if getattr(n, "unique_id", None) == unique]
        if len(matches) == 1:
            return int(matches[0].gpu_id)
    return None


def _kfd_wave_kill(gpu_id: int | None) -> bool:
    """Whether the reef KFD patch's QUERY offers KILL_WAVES for KFD node ``gpu_id``.

    ``kfd_status`` never raises; a GPU whose node could not be matched (``gpu_id`` None)
    gets no kill, so a kill is never aimed at a guessed GPU. RESET_QUEUE is not used here:
    it names a queue by its ring address, which HIP streams do not expose, so this backend
    never reports ``queue_reset`` (the HSA queue backend is where a reset can be aimed).
    """
    if gpu_id is None:
        return False
    from reef_rocm.rocm import kfd

    return kfd.kfd_status().supports(gpu_id, "kill_waves")


# ---------------------------------------------------------------------------------------
# memory


class HipBuffer(DeviceBuffer):
    def __init__(self, device: HipDevice, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        self._device = device
        device.make_current()
        self._handle = _check("hipMalloc", _hip().hipMalloc(nbytes))
        self.ptr = int(self._handle)
        self.nbytes = nbytes

    def close(self) -> None:
        if self._handle is not None:
            _check("hipFree", _hip().hipFree(self._handle))
            self._handle = None
            self.ptr = 0


class HipHostMappedBuffer(HostMappedBuffer):
    def __init__(self, device: HipDevice, nbytes: int) -> None:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        hip = _hip()
        device.make_current()
        # Coherent (fine-grained): a kernel polling a flag here must see host writes while it
        # runs, not at the next kernel boundary. Portable: usable from every device.
        flags = hip.hipHostMallocMapped | hip.hipHostMallocPortable | hip.hipHostMallocCoherent
        self._host = _check("hipHostMalloc", hip.hipHostMalloc(nbytes, flags))
        self._host_ptr = int(self._host)
        self.nbytes = nbytes
        dev_ptr = _check("hipHostGetDevicePointer", hip.hipHostGetDevicePointer(self._host, 0))
        self.ptr = int(dev_ptr)
        raw = (ctypes.c_uint8 * nbytes).from_address(self._host_ptr)
        self.host = np.frombuffer(raw, dtype=np.uint8)

    def close(self) -> None:
        if self._host is not None:
            self.host = np.empty(0, dtype=np.uint8)  # drop the view before the memory goes
            _check("hipHostFree", _hip().hipHostFree(self._host))
            self._host = None
            self._host_ptr = 0
            self.ptr = 0


# ---------------------------------------------------------------------------------------
# streams and events


class HipStream(Stream):
    def __init__(
        self, device: HipDevice, priority: int, cu_mask: Sequence[int] | None = None
    ) -> None:
        hip = _hip()
        self._device = device
        self.cu_mask: tuple[int, ...] | None = None
        device.make_current()
        if cu_mask is None:
            # Non-blocking: BE and RT streams must never serialise on the null stream.
            self.handle = _check(
                "hipStreamCreateWithPriority",
                hip.hipStreamCreateWithPriority(hip.hipStreamNonBlocking, priority),
            )
            self.priority = priority
            return
        if priority != 0:
            # hipExtStreamCreateWithCUMask has no priority (nor flags) argument.
            raise UnsupportedError(
                "HIP cannot create a stream with both a CU mask and a priority "
                f"(asked for priority {priority}); use priority=0 with cu_mask"
            )
        words = cu_mask_words(cu_mask, device.info.compute_units)
        self.handle = _check(
            "hipExtStreamCreateWithCUMask", hip.hipExtStreamCreateWithCUMask(len(words), words)
        )
        self.cu_mask = tuple(sorted({int(c) for c in cu_mask}))
        # The runtime picks the priority of a CU-masked stream; report what it chose.
        self.priority = int(_check("hipStreamGetPriority", hip.hipStreamGetPriority(self.handle)))

    def synchronize(self) -> None:
        _check("hipStreamSynchronize", _hip().hipStreamSynchronize(self.handle))

    def query(self) -> bool:
        hip = _hip()
        result = hip.hipStreamQuery(self.handle)
        if result[0] == hip.hipError_t.hipErrorNotReady:
            return False
        _check("hipStreamQuery", result)
        return True

    def write_value32(
        self, target: DeviceBuffer | DevicePtr | HostMappedBuffer, value: int
    ) -> None:
        _check(
            "hipStreamWriteValue32",
            _hip().hipStreamWriteValue32(self.handle, device_address(target), u32(value), 0),
        )

    def wait_event(self, event: Event) -> None:
        if not isinstance(event, HipEvent):
            raise TypeError(f"expected a HipEvent, got {type(event).__name__}")
        _check("hipStreamWaitEvent", _hip().hipStreamWaitEvent(self.handle, event.handle, 0))

    def close(self) -> None:
        if self.handle is not None:
            _check("hipStreamDestroy", _hip().hipStreamDestroy(self.handle))
            self.handle = None


class HipEvent(Event):
    def __init__(self, timing: bool) -> None:
        hip = _hip()
        flags = hip.hipEventDefault if timing else hip.hipEventDisableTiming
        self.timing = timing
        self.handle = _check("hipEventCreateWithFlags", hip.hipEventCreateWithFlags(flags))

    def record(self, stream: Stream) -> None:
        if not isinstance(stream, HipStream):
            raise TypeError(f"expected a HipStream, got {type(stream).__name__}")
        _check("hipEventRecord", _hip().hipEventRecord(self.handle, stream.handle))

    def synchronize(self) -> None:
        _check("hipEventSynchronize", _hip().hipEventSynchronize(self.handle))

    def query(self) -> bool:
        hip = _hip()
        result = hip.hipEventQuery(self.handle)
        if result[0] == hip.hipError_t.hipErrorNotReady:
            return False
        _check("hipEventQuery", result)
        return True

    def elapsed_ms(self, end: Event) -> float:
        if not isinstance(end, HipEvent):
            raise TypeError(f"expected a HipEvent, got {type(end).__name__}")
        if not (self.timing and end.timing):
            raise UnsupportedError("elapsed_ms needs two events created with timing=True")
        return float(
            _check("hipEventElapsedTime", _hip().hipEventElapsedTime(self.handle, end.handle))
        )

    def close(self) -> None:
        if self.handle is not None:
            _check("hipEventDestroy", _hip().hipEventDestroy(self.handle))
            self.handle = None


# ---------------------------------------------------------------------------------------
# modules and kernels


class HipBoundLaunch(BoundLaunch):
    """One kernel, shape and argument block, launched with one ``hipModuleLaunchKernel``.

    ``form="params"`` passes ``kernelParams`` = the ParamBlock's ``void*[n]`` array (the
    runtime copies each argument by the size the code object's metadata gives it);
    ``form="extra"`` passes ``extra`` = {BUFFER_POINTER, buffer, BUFFER_SIZE, &size, END}
    (the runtime copies the contiguous buffer as the kernarg segment). Both are addresses
    wrapped once in hip-python's own argument types, so a launch converts nothing.
    """

    __slots__ = ("kernel", "config", "params", "form", "_launch", "_head", "_tail", "_extra")

    def __init__(
        self, kernel: HipKernel, config: LaunchConfig, params: ParamBlock, form: str
    ) -> None:
        if form not in LAUNCH_FORMS:
            raise ValueError(f"launch form must be one of {LAUNCH_FORMS}, got {form!r}")
        bindings = _hip_compat.bindings()
        hip = bindings.hip
        # the wrapper types this hip-python release converts these two arguments through:
        # an argument already of that type passes straight through, unconverted
        list_of_pointer, launch_extra = bindings.kernel_params_type, bindings.launch_extra_type
        self.kernel = kernel
        self.config = config
        self.params = params
        self.form = form
        self._launch = hip.hipModuleLaunchKernel
        self._head = (kernel.handle, *config.grid, *config.block, config.shared_mem)
        if form == "params":
            self._extra = None
            self._tail = (list_of_pointer(params.pointer_array), launch_extra(None))
        else:
            # The five-slot config array HIP's extra form expects; kept alive with the launch.
            self._extra = (ctypes.c_void_p * 5)(
                hip.HIP_LAUNCH_PARAM_BUFFER_POINTER,
                params.buffer,
                hip.HIP_LAUNCH_PARAM_BUFFER_SIZE,
                params.size_address,
                hip.HIP_LAUNCH_PARAM_END,
            )
            self._tail = (list_of_pointer(None), launch_extra(ctypes.addressof(self._extra)))

    def launch(self, stream: Stream) -> None:
        result = self._launch(*self._head, stream.handle, *self._tail)  # type: ignore[attr-defined]
        if result[0] != 0:
            _check("hipModuleLaunchKernel", result)


class HipKernel(Kernel):
    def __init__(self, module: HipModule, name: str) -> None:
        self.name = name
        self.module = module
        self.handle = _check(
            "hipModuleGetFunction", _hip().hipModuleGetFunction(module.handle, name.encode())
        )

    def _attr(self, attr: Any) -> int:
        return int(_check("hipFuncGetAttribute", _hip().hipFuncGetAttribute(attr, self.handle)))

    @property
    def attributes(self) -> dict[str, int]:
        a = _hip().hipFunction_attribute
        return {
            # On AMD NUM_REGS is the kernel's VGPR count (per work-item), not SGPRs.
            "registers": self._attr(a.HIP_FUNC_ATTRIBUTE_NUM_REGS),
            "shared_bytes": self._attr(a.HIP_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES),
            "local_bytes": self._attr(a.HIP_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES),
            "max_threads_per_block": self._attr(a.HIP_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK),
        }

    def max_active_blocks_per_cu(self, block_threads: int, dynamic_shared: int = 0) -> int:
        return int(
            _check(
                "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor",
                _hip().hipModuleOccupancyMaxActiveBlocksPerMultiprocessor(
                    self.handle, block_threads, dynamic_shared
                ),
            )
        )

    def _bind(self, config: LaunchConfig, args: Sequence[Any]) -> HipBoundLaunch:
        return HipBoundLaunch(self, config, ParamBlock(args), self.module.device.launch_form)


class HipModule(Module):
    def __init__(self, device: HipDevice, image: bytes) -> None:
        if not image:
            raise ValueError("empty module image")
        self.device: HipDevice = device
        self._image = bytes(image)  # the runtime may read the image lazily; keep it alive
        device.make_current()
        self.handle = _check("hipModuleLoadData", _hip().hipModuleLoadData(self._image))

    def _load_kernel(self, name: str) -> HipKernel:
        return HipKernel(self, name)

    def close(self) -> None:
        if self.handle is not None:
            _check("hipModuleUnload", _hip().hipModuleUnload(self.handle))
            self.handle = None
            self._forget_kernels()


# ---------------------------------------------------------------------------------------
# device


#: What HIP offers REEF on any AMD GPU; wave_kill comes from the KFD patch. queue_reset stays
#: off: a HIP stream's ring address is hidden, so no reset can be aimed at one.
HIP_CAPABILITIES = Capabilities(
    stream_write_value=True,
    stream_priorities=True,
    cu_mask=True,
    wave_kill=False,
    queue_reset=False,
    in_kernel_polling=True,
    host_mapped_memory=True,
    indirect_calls=True,
)


def _device_info(ordinal: int) -> DeviceInfo:
    bindings = _hip_compat.bindings()
    hip = bindings.hip
    err, props = bindings.device_properties(ordinal)
    _check("hipGetDeviceProperties", (err,))
    driver = int(_check("hipDriverGetVersion", hip.hipDriverGetVersion()))
    runtime = int(_check("hipRuntimeGetVersion", hip.hipRuntimeGetVersion()))
    full_arch = _text(props.gcnArchName)
    return DeviceInfo(
        backend="hip",
        vendor=Vendor.AMD,
        ordinal=ordinal,
        name=_text(props.name),
        # "gfx90a:sramecc+:xnack-": code objects are compiled for the part before the
        # feature flags (the flags must also match, but they are not part of the target).
        arch=full_arch.split(":", 1)[0],
        compute_units=int(props.multiProcessorCount),
        memory_bytes=int(props.totalGlobalMem),
        warp_size=int(props.warpSize),
        max_threads_per_block=int(props.maxThreadsPerBlock),
        max_shared_memory_per_block=int(props.sharedMemPerBlock),
        driver_version=_format_version(driver),
        runtime_version=_format_version(runtime),
        kfd_gpu_id=_device_kfd_gpu_id(ordinal, props),
        extra={
            "gcn_arch_name": full_arch,
            "pci_domain_id": int(props.pciDomainID),
            "pci_bus_id": int(props.pciBusID),
            "pci_device_id": int(props.pciDeviceID),
            "max_shared_memory_per_cu": int(props.maxSharedMemoryPerMultiProcessor),
            "max_threads_per_cu": int(props.maxThreadsPerMultiProcessor),
            "registers_per_block": int(props.regsPerBlock),
            "clock_khz": int(props.clockRate),
            "bindings": bindings.version,
        },
    )


def _device_kfd_gpu_id(ordinal: int, props: Any) -> int | None:
    """The KFD node of HIP device ``ordinal``: by PCI address, then (several nodes at one
    address: a partitioned GPU) by the device UUID. None when unsure: only kill turns off."""
    from reef_rocm.rocm import kfd

    nodes = kfd.topology_gpus()
    if not nodes:
        return None
    pci = (int(props.pciDomainID), int(props.pciBusID), int(props.pciDeviceID))
    gpu_id = kfd_gpu_id(*pci, nodes=nodes)
    if gpu_id is not None:
        return gpu_id
    result = _hip().hipDeviceGetUuid(ordinal)
    if result[0] != 0:
        return None  # no UUID: the gpu_id stays unknown
    return kfd_gpu_id(*pci, uuid=_hip_compat.uuid_bytes(result[1]), nodes=nodes)


def _capabilities(info: DeviceInfo) -> Capabilities:
    return dataclasses.replace(HIP_CAPABILITIES, wave_kill=_kfd_wave_kill(info.kfd_gpu_id))


class HipDevice(Device):
    def __init__(self, ordinal: int = 0, launch_form: str = "params") -> None:
        if launch_form not in LAUNCH_FORMS:
            raise ValueError(f"launch_form must be one of {LAUNCH_FORMS}, got {launch_form!r}")
        hip = _hip()
        try:
            try:
                _check("hipInit", hip.hipInit(0))
                count = int(_check("hipGetDeviceCount", hip.hipGetDeviceCount()))
            except GpuError as e:  # hipErrorNoDevice/InvalidDevice: there is no AMD GPU
                raise BackendUnavailable(f"no usable AMD GPU ({e})") from e
            if not 0 <= ordinal < count:
                raise BackendUnavailable(f"HIP device {ordinal} requested, {count} present")
            self.ordinal = ordinal
            self.launch_form = launch_form
            self.make_current()
            self.info = _device_info(ordinal)
        except RuntimeError as e:  # hip-python: libamdhip64 or one of its symbols missing
            raise BackendUnavailable(f"HIP runtime not usable: {e}") from e
        self.capabilities = _capabilities(self.info)
        self._kfd: Any = None  # reef_rocm.rocm.kfd.KfdDevice, opened on the first kill

    def kill_running_waves(self) -> int:
        """Kill this process's running waves on this GPU through the reef KFD patch.

        The patch reports which VMIDs it hit, not how many waves: returns 0 when none of
        this process's waves was running (no VMID hit), else -1 (killed, count unknown), as
        ``Device.kill_running_waves`` defines.
        """
        if not self.capabilities.wave_kill or self.info.kfd_gpu_id is None:
            return super().kill_running_waves()
        if self._kfd is None:
            from reef_rocm.rocm.kfd import KfdDevice

            self._kfd = KfdDevice(self.info.kfd_gpu_id)
        return -1 if self._kfd.kill_waves().vmid_mask else 0

    def make_current(self) -> None:
        """Make this the calling thread's HIP device (HIP keeps one per host thread)."""
        _check("hipSetDevice", _hip().hipSetDevice(self.ordinal))

    def close(self) -> None:
        """Close the KFD descriptor the wave kill opened; HIP's primary context lives as long
        as the process (hipDeviceReset would destroy every other user's allocations)."""
        if self._kfd is not None:
            self._kfd.close()
            self._kfd = None

    def create_stream(self, priority: int = 0, cu_mask: Sequence[int] | None = None) -> HipStream:
        return HipStream(self, priority, cu_mask)

    def stream_priority_range(self) -> tuple[int, int]:
        self.make_current()
        least, greatest = _check(
            "hipDeviceGetStreamPriorityRange", _hip().hipDeviceGetStreamPriorityRange()
        )
        return int(least), int(greatest)

    def load_module(self, image: bytes) -> HipModule:
        return HipModule(self, image)

    def alloc(self, nbytes: int) -> HipBuffer:
        return HipBuffer(self, nbytes)

    def alloc_host_mapped(self, nbytes: int) -> HipHostMappedBuffer:
        return HipHostMappedBuffer(self, nbytes)

    def _copy_to_device(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        hip = _hip()
        if stream is None:
            _check("hipMemcpyHtoD", hip.hipMemcpyHtoD(dst, src, nbytes))
        else:
            _check(
                "hipMemcpyHtoDAsync",
                hip.hipMemcpyHtoDAsync(dst, src, nbytes, _stream_handle(stream)),
            )

    def _copy_to_host(self, dst: int, src: int, nbytes: int, stream: Stream | None) -> None:
        hip = _hip()
        if stream is None:
            _check("hipMemcpyDtoH", hip.hipMemcpyDtoH(dst, src, nbytes))
        else:
            _check(
                "hipMemcpyDtoHAsync",
                hip.hipMemcpyDtoHAsync(dst, src, nbytes, _stream_handle(stream)),
            )

    def _memset32(self, dst: int, pattern: int, count: int, stream: Stream | None) -> None:
        hip = _hip()
        value = _i32(pattern)  # hipMemsetD32 takes a C int: the same bits, signed
        if stream is None:
            _check("hipMemsetD32", hip.hipMemsetD32(dst, value, count))
        else:
            _check(
                "hipMemsetD32Async",
                hip.hipMemsetD32Async(dst, value, count, _stream_handle(stream)),
            )

    def create_event(self, timing: bool = True) -> HipEvent:
        self.make_current()
        return HipEvent(timing)

    def synchronize(self) -> None:
        self.make_current()
        _check("hipDeviceSynchronize", _hip().hipDeviceSynchronize())


def _stream_handle(stream: Stream) -> Any:
    if not isinstance(stream, HipStream):
        raise TypeError(f"expected a HipStream, got {type(stream).__name__}")
    return stream.handle


def probe() -> BackendReport:
    """What the HIP backend finds here. Never raises: a missing library or GPU, and any
    surprise from the bindings (a hip-python release whose calls differ from what
    ``_hip_compat`` knows), become ``available=False`` with the reason."""
    report = BackendReport(backend="hip", available=False)
    try:
        return _probe(report)
    except Exception as e:  # the promise is "never raises"; say what broke instead
        report.available = False
        report.devices.clear()
        report.capabilities.clear()
        report.reason = f"hip backend failed while probing ({type(e).__name__}: {e})"
        return report


def _probe(report: BackendReport) -> BackendReport:
    try:
        bindings = _hip_compat.bindings()
    except BackendUnavailable as e:
        report.reason = str(e)
        return report
    hip = bindings.hip
    report.versions["bindings"] = bindings.version
    report.versions["bindings_line"] = bindings.line
    bound = bindings.hip_version
    if bound:
        report.versions["bindings_hip"] = bound
    try:
        # The first call dlopens libamdhip64; hip-python raises RuntimeError if it cannot.
        runtime = int(_check("hipRuntimeGetVersion", hip.hipRuntimeGetVersion()))
    except RuntimeError as e:
        report.reason = f"libamdhip64 not found ({e})"
        return report
    except GpuError as e:
        report.reason = f"HIP runtime unusable: {e}"
        return report
    report.versions["runtime"] = _format_version(runtime)
    notes = []
    if bound and bound.split(".")[0] != str(runtime // 10_000_000):
        notes.append(
            f"hip-python was built for HIP {bound.split('-')[0]} but the runtime is "
            f"{_format_version(runtime)}: install the hip-python release matching your ROCm"
        )
    try:
        err = hip.hipInit(0)[0]
        if err != 0:
            report.reason = "; ".join([f"no AMD GPU (hipInit: {_error_text(err)})", *notes])
            return report
        count = int(_check("hipGetDeviceCount", hip.hipGetDeviceCount()))
        if count == 0:
            report.reason = "; ".join(["no AMD GPU (HIP runtime loaded, 0 devices)", *notes])
            return report
        report.versions["driver"] = _format_version(
            int(_check("hipDriverGetVersion", hip.hipDriverGetVersion()))
        )
        for i in range(count):
            info = _device_info(i)
            report.devices.append(info)
            report.capabilities.append(_capabilities(info))
    except RuntimeError as e:  # a symbol hip-python needs is missing: runtime too old
        report.devices.clear()
        report.capabilities.clear()
        report.reason = "; ".join([f"HIP runtime does not match hip-python ({e})", *notes])
        return report
    except GpuError as e:
        report.devices.clear()
        report.capabilities.clear()
        report.reason = "; ".join([f"HIP device query failed: {e}", *notes])
        return report
    report.available = True
    report.reason = "; ".join(notes)
    return report


def open_device(ordinal: int = 0, **options: Any) -> HipDevice:
    """Open AMD GPU ``ordinal``. Option ``launch_form``: "params" (default) or "extra"."""
    unknown = sorted(set(options) - {"launch_form"})
    if unknown:
        raise TypeError(f"hip backend takes only the launch_form option, got {unknown}")
    return HipDevice(ordinal, **options)
