"""HIP backend: AMD GPUs through hip-python (``from hip import hip``).

REEF's mechanisms map onto HIP like this: the preempt flag is written with
``hipStreamWriteValue32`` on a side stream; BE kernels read it at block start; CU masks
(``hipExtStreamCreateWithCUMask``) partition compute units; killing running waves and
resetting a device queue need the reef KFD patch (``reef_rocm.rocm.kfd``), so ``wave_kill``
and ``queue_reset`` are only reported where that patch answers for this GPU's KFD node.

The launch path packs arguments once (ParamBlock) and every launch is then one
``hipModuleLaunchKernel`` call whose pointer arguments are hip-python wrapper objects built
at bind time: hip-python hands an argument that already has the wrapper type straight
through (``fromPyobj`` returns it), so nothing is converted or allocated by us per launch.

hip-python returns ``(hipError_t, *outputs)`` tuples; every status is checked and a failure
raises ``GpuError(call, code, message)``. hip-python dlopens libamdhip64 on the first call
and raises RuntimeError when the library or one symbol is missing; ``probe`` turns that
into ``available=False`` with the reason. See docs/hip_backend.md.
"""

from __future__ import annotations

import ctypes
import dataclasses
import importlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError
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
    check_copy_size,
    device_address,
    host_address,
)
from reef_rocm.gpu.params import ParamBlock

#: Where KFD publishes its topology; one directory per node (CPUs and GPUs).
KFD_TOPOLOGY_NODES = "/sys/class/kfd/kfd/topology/nodes"

LAUNCH_FORMS = ("params", "extra")

_hip_mod: Any = None


def _hip() -> Any:
    """The hip-python ``hip`` module, imported on first use (the one seam tests replace)."""
    global _hip_mod
    if _hip_mod is None:
        try:
            _hip_mod = importlib.import_module("hip").hip
        except (ImportError, AttributeError) as e:
            raise BackendUnavailable(
                "hip-python is not installed (pip install 'reef_rocm[rocm]'; pick the "
                "hip-python release matching your ROCm, see docs/hip_backend.md)"
            ) from e
    return _hip_mod


def _pointer_types() -> tuple[Any, Any]:
    """hip-python's ``ListOfPointer`` and ``HipModuleLaunchKernel_extra`` wrapper classes.

    Taken from the module that defines them, not from ``_hip()``, so that a test's
    recording stand-in for the function module still gets the real wrapper types.
    """
    types = importlib.import_module("rocm.bindings.util.types")
    helpers = importlib.import_module("rocm.bindings._hip_helpers")
    return types.ListOfPointer, helpers.HipModuleLaunchKernel_extra


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


def _u32(value: int) -> int:
    """A 32-bit pattern as an unsigned int (hipStreamWriteValue32 takes uint32_t)."""
    if not -(2**31) <= value < 2**32:
        raise ValueError(f"value {value} does not fit in 32 bits")
    return value & 0xFFFFFFFF


def _i32(value: int) -> int:
    """A 32-bit pattern as a signed int (hipMemsetD32 takes ``int value``)."""
    v = _u32(value)
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


def _bindings_version() -> str:
    try:
        from importlib.metadata import version

        return "hip-python " + version("hip-python")
    except Exception:  # metadata missing in odd installs: version is informational only
        return "hip-python (unknown version)"


def _bindings_hip_version() -> str:
    """The HIP release hip-python was generated against ('7.15.26333-...')."""
    try:
        return str(importlib.import_module("rocm.version").HIP_VERSION_NAME)
    except Exception:  # older hip-python without rocm.version: informational only
        return ""


# ---------------------------------------------------------------------------------------
# KFD node of a HIP device, and what the reef KFD patch offers for it


def _read_properties(path: Path) -> dict[str, int]:
    props: dict[str, int] = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        try:
            props[key] = int(value)
        except ValueError:
            continue
    return props


def kfd_gpu_id(
    pci_domain: int,
    pci_bus: int,
    pci_device: int,
    uuid: bytes | None = None,
    nodes_dir: str | os.PathLike[str] = KFD_TOPOLOGY_NODES,
) -> int | None:
    """KFD ``gpu_id`` of the GPU at PCI ``domain:bus:device``, or None if not known for sure.

    KFD's node properties carry ``domain`` and ``location_id`` = bus << 8 | device << 3 |
    function (bits 28+ hold the partition number on partitioned GPUs). HIP ordinals do not
    follow KFD node order (HIP_VISIBLE_DEVICES, CPU nodes first), so the PCI address is the
    join key. Where several nodes share it (a partitioned GPU), ``uuid`` (hipDeviceGetUuid:
    the 16 hex digits ROCr prints after "GPU-") must match ``unique_id``; otherwise None,
    because a kill ioctl aimed at a guessed gpu_id would hit the wrong GPU.
    """
    root = Path(nodes_dir)
    try:
        nodes = sorted(root.iterdir())
    except OSError:
        return None
    candidates: list[tuple[int, dict[str, int]]] = []
    for node in nodes:
        try:
            gpu_id = int((node / "gpu_id").read_text().strip() or 0)
            props = _read_properties(node / "properties")
        except (OSError, ValueError):
            continue
        if gpu_id == 0:  # CPU node
            continue
        loc = props.get("location_id", -1)
        if (
            props.get("domain", 0) == pci_domain
            and (loc >> 8) & 0xFF == pci_bus
            and (loc >> 3) & 0x1F == pci_device
        ):
            candidates.append((gpu_id, props))
    if len(candidates) == 1:
        return candidates[0][0]
    if len(candidates) > 1 and uuid:
        try:
            unique = int(uuid.rstrip(b"\0").decode("ascii"), 16)
        except (UnicodeDecodeError, ValueError):
            return None
        matches = [g for g, p in candidates if p.get("unique_id") == unique]
        if len(matches) == 1:
            return matches[0]
    return None


def _kfd_capabilities(gpu_id: int | None) -> tuple[bool, bool]:
    """(wave_kill, queue_reset) for KFD node ``gpu_id``, from the reef KFD patch's QUERY.

    ``kfd_status`` never raises; a GPU whose node could not be matched (``gpu_id`` None)
    gets neither, so a kill is never aimed at a guessed GPU. queue_reset is reported as
    the driver offers it; HIP streams do not expose their ring address, so using it needs
    the HSA queue manager (Device.clear_queue stays unsupported on plain HIP streams).
    """
    if gpu_id is None:
        return False, False
    from reef_rocm.rocm import kfd

    status = kfd.kfd_status()
    return status.supports(gpu_id, "kill_waves"), status.supports(gpu_id, "reset_queue")


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

    def free(self) -> None:
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

    def free(self) -> None:
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
            _hip().hipStreamWriteValue32(self.handle, device_address(target), _u32(value), 0),
        )

    def wait_event(self, event: Event) -> None:
        if not isinstance(event, HipEvent):
            raise TypeError(f"expected a HipEvent, got {type(event).__name__}")
        _check("hipStreamWaitEvent", _hip().hipStreamWaitEvent(self.handle, event.handle, 0))

    def destroy(self) -> None:
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

    def destroy(self) -> None:
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
        hip = _hip()
        list_of_pointer, launch_extra = _pointer_types()
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
        self._module = module
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

    def bind(self, config: LaunchConfig, args: Sequence[Any]) -> HipBoundLaunch:
        limit = self._module.device.info.max_threads_per_block
        if config.threads_per_block > limit:
            raise UnsupportedError(
                f"kernel {self.name}: {config.threads_per_block} threads per block exceeds "
                f"the device limit of {limit}"
            )
        return HipBoundLaunch(self, config, ParamBlock(args), self._module.device.launch_form)


class HipModule(Module):
    def __init__(self, device: HipDevice, image: bytes) -> None:
        if not image:
            raise ValueError("empty module image")
        self.device = device
        self._image = bytes(image)  # the runtime may read the image lazily; keep it alive
        device.make_current()
        self.handle = _check("hipModuleLoadData", _hip().hipModuleLoadData(self._image))
        self._kernels: dict[str, HipKernel] = {}

    def get_kernel(self, name: str) -> HipKernel:
        k = self._kernels.get(name)
        if k is None:
            try:
                k = self._kernels[name] = HipKernel(self, name)
            except GpuError as e:
                raise GpuError(e.call, e.code, f"kernel {name!r} not found in module") from e
        return k

    def unload(self) -> None:
        if self.handle is not None:
            _check("hipModuleUnload", _hip().hipModuleUnload(self.handle))
            self.handle = None
            self._kernels.clear()


# ---------------------------------------------------------------------------------------
# device


#: What HIP offers REEF on any AMD GPU; wave_kill/queue_reset come from the KFD patch.
HIP_CAPABILITIES = Capabilities(
    stream_write_value=True,
    stream_priorities=True,
    cu_mask=True,
    wave_kill=False,
    queue_reset=False,
    in_kernel_polling=True,
    host_mapped_memory=True,
)


def _device_info(ordinal: int) -> DeviceInfo:
    hip = _hip()
    props = _check("hipGetDeviceProperties", hip.hipGetDeviceProperties(ordinal))
    driver = int(_check("hipDriverGetVersion", hip.hipDriverGetVersion()))
    runtime = int(_check("hipRuntimeGetVersion", hip.hipRuntimeGetVersion()))
    full_arch = _text(props.gcnArchName)
    gpu_id = kfd_gpu_id(props.pciDomainID, props.pciBusID, props.pciDeviceID)
    if gpu_id is None:
        gpu_id = _kfd_gpu_id_by_uuid(ordinal, props)
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
        extra={
            "gcn_arch_name": full_arch,
            "pci_domain_id": int(props.pciDomainID),
            "pci_bus_id": int(props.pciBusID),
            "pci_device_id": int(props.pciDeviceID),
            "kfd_gpu_id": gpu_id,
            "max_shared_memory_per_cu": int(props.maxSharedMemoryPerMultiProcessor),
            "max_threads_per_cu": int(props.maxThreadsPerMultiProcessor),
            "registers_per_block": int(props.regsPerBlock),
            "clock_khz": int(props.clockRate),
            "bindings": _bindings_version(),
        },
    )


def _kfd_gpu_id_by_uuid(ordinal: int, props: Any) -> int | None:
    """Second try for a partitioned GPU: several KFD nodes at one PCI address, told apart
    by the device UUID. Only asked when the PCI address alone was ambiguous or absent."""
    root = Path(KFD_TOPOLOGY_NODES)
    if not root.is_dir():
        return None
    hip = _hip()
    result = hip.hipDeviceGetUuid(ordinal)
    if result[0] != 0:
        return None  # no UUID: the gpu_id stays unknown, which only turns kill off
    return kfd_gpu_id(
        props.pciDomainID, props.pciBusID, props.pciDeviceID, bytes(result[1].bytes), root
    )


def _capabilities(info: DeviceInfo) -> Capabilities:
    wave_kill, queue_reset = _kfd_capabilities(info.extra.get("kfd_gpu_id"))
    return dataclasses.replace(HIP_CAPABILITIES, wave_kill=wave_kill, queue_reset=queue_reset)


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

        Returns the bit mask of VMIDs whose waves were killed (0: none of ours ran).
        """
        if not self.capabilities.wave_kill:
            return super().kill_running_waves()
        if self._kfd is None:
            from reef_rocm.rocm.kfd import KfdDevice

            self._kfd = KfdDevice(self.info.extra["kfd_gpu_id"])
        return self._kfd.kill_waves().vmid_mask

    def make_current(self) -> None:
        """Make this the calling thread's HIP device (HIP keeps one per host thread)."""
        _check("hipSetDevice", _hip().hipSetDevice(self.ordinal))

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

    def copy_to_device(self, dst: Any, src: Any, stream: Stream | None = None) -> None:
        addr, n = host_address(src)
        check_copy_size(dst, n)
        hip = _hip()
        if stream is None:
            _check("hipMemcpyHtoD", hip.hipMemcpyHtoD(device_address(dst), addr, n))
        else:
            _check(
                "hipMemcpyHtoDAsync",
                hip.hipMemcpyHtoDAsync(device_address(dst), addr, n, _stream_handle(stream)),
            )

    def copy_to_host(self, dst: Any, src: Any, stream: Stream | None = None) -> None:
        if not isinstance(dst, np.ndarray) or not dst.flags.writeable:
            raise TypeError("copy_to_host needs a writable numpy array")
        addr, n = host_address(dst)
        check_copy_size(src, n)
        hip = _hip()
        if stream is None:
            _check("hipMemcpyDtoH", hip.hipMemcpyDtoH(addr, device_address(src), n))
        else:
            _check(
                "hipMemcpyDtoHAsync",
                hip.hipMemcpyDtoHAsync(addr, device_address(src), n, _stream_handle(stream)),
            )

    def memset32(self, dst: Any, value: int, count: int, stream: Stream | None = None) -> None:
        if count < 0:
            raise ValueError(f"count must be non-negative, got {count}")
        check_copy_size(dst, 4 * count)
        hip = _hip()
        if stream is None:
            _check("hipMemsetD32", hip.hipMemsetD32(device_address(dst), _i32(value), count))
        else:
            _check(
                "hipMemsetD32Async",
                hip.hipMemsetD32Async(
                    device_address(dst), _i32(value), count, _stream_handle(stream)
                ),
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
    """What the HIP backend finds here. Never raises for a missing library or GPU."""
    report = BackendReport(backend="hip", available=False)
    try:
        hip = _hip()
    except BackendUnavailable as e:
        report.reason = str(e)
        return report
    report.versions["bindings"] = _bindings_version()
    bound = _bindings_hip_version()
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
