"""The hip backend against the real hip-python module, with the GPU calls recorded.

No machine here has an AMD GPU, so every HIP call the backend makes goes through
``RecordingHip``: a stand-in for ``hip.hip`` that

* hands out the real module's enums, constants and struct types (a renamed constant or
  enum member fails here exactly as it would on a GPU machine);
* refuses any function the real module does not have;
* checks every argument against the real function: C-typed parameters against the C
  type's range, enum parameters against the real enum class, and pointer/handle
  parameters by running them through the very hip-python wrapper type (``fromObj``) that
  the real function's docstring names - the same conversion the real call performs;
* answers in hip-python's return convention, ``(hipError_t.hipSuccess, *outputs)``, with
  the tuple size and output types the real docstring states, built from real hip-python
  types (``ihipStream_t``, ``hipDeviceProp_t``, ``DeviceArray``, ``CStr``...).

One test at the end is marked ``gpu`` and runs the real backend; it skips cleanly unless
``probe("hip")`` finds an AMD GPU.

The hip-python release line under test is whichever ``import hip`` finds. To run these tests
against another release, install its wheel into a directory of its own and name it in
``REEF_HIP_PYTHON`` (it goes first on sys.path), one release per pytest run:

    pip download --no-deps -d /tmp/wheels "hip-python==6.4.4.*"
    pip install --no-deps --target /tmp/hip644 /tmp/wheels/hip_python-6.4.4*.whl
    REEF_HIP_PYTHON=/tmp/hip644 python -m pytest -q tests/gpu/test_hip_backend.py
"""

from __future__ import annotations

import builtins
import ctypes
import enum
import importlib
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

_SELECTED = os.environ.get("REEF_HIP_PYTHON")
if _SELECTED:
    if "hip" in sys.modules:
        raise RuntimeError("REEF_HIP_PYTHON is set but hip was imported before this module")
    sys.path.insert(0, _SELECTED)

hip_mod = pytest.importorskip("hip", reason="hip-python not installed")
from hip import hip as real_hip  # noqa: E402

import reef_rocm.gpu.hip as hb  # noqa: E402
from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError  # noqa: E402
from reef_rocm.gpu import LaunchConfig, PreemptLevel, _hip_compat, probe  # noqa: E402
from reef_rocm.gpu.api import DevicePtr, Vendor  # noqa: E402
from reef_rocm.rocm import kfd  # noqa: E402

if _SELECTED and not Path(hip_mod.__file__).resolve().is_relative_to(Path(_SELECTED).resolve()):
    raise RuntimeError(f"REEF_HIP_PYTHON={_SELECTED} but hip came from {hip_mod.__file__}")

BINDINGS = _hip_compat.load()  # the real release line's wrapper types and conventions
hip_types = BINDINGS.types
_hip_helpers = importlib.import_module(BINDINGS.launch_extra_type.__module__)

SUCCESS = real_hip.hipError_t.hipSuccess
FA = real_hip.hipFunction_attribute

# C parameter types in the real signatures and the values Cython accepts for them.
_C_RANGES = {
    "int": (-(2**31), 2**31 - 1),
    "unsigned int": (0, 2**32 - 1),
    "uint32_t": (0, 2**32 - 1),
    "size_t": (0, 2**64 - 1),
    "unsigned long": (0, 2**64 - 1),  # 6.x/7.x spell size_t so
    "unsigned long long": (0, 2**64 - 1),
}

# A type reference in a docstring: 10.x writes :py:obj:`~.T`, 6.x/7.x write `~.T`.
_REF = r"(?::py:obj:)?`~\.([\w.]+)`"


# ---------------------------------------------------------------------------------------
# the recording stand-in


def _resolve(type_name: str) -> Any:
    """'ihipStream_t' / 'rocm.bindings.util.types.Pointer' / 'int' -> the real class."""
    if "." in type_name:
        mod, _, attr = type_name.rpartition(".")
        return getattr(importlib.import_module(mod), attr)
    if hasattr(builtins, type_name):
        return getattr(builtins, type_name)
    return getattr(real_hip, type_name)


def _returns_from_pyx(name: str) -> list[str]:
    """Return types of ``name`` as far as its shipped Cython source states them: only a
    status-only ``return (retval,)`` is accepted (anything else: read the docstring)."""
    pyx = Path(real_hip.__file__).with_name("hip.pyx")
    source = pyx.read_text()
    body = source.split(f"\ndef {name}(", 1)[1].split("\ndef ", 1)[0]
    returned = re.search(r"^    return \((.*)\)$", body, re.M).group(1)
    items = [x for x in returned.split(",") if x.strip()]
    assert len(items) == 1, f"{name}: undocumented return {returned!r}"
    return ["hipError_t"]


@dataclass
class Signature:
    name: str
    params: list[tuple[str, str | None]]  # (name, C type or None for object)
    arg_types: dict[str, str]  # name -> hip-python type named in the docstring
    returns: list[str]  # type names of the returned tuple, hipError_t first

    @classmethod
    def of(cls, fn: Any) -> Signature:
        doc = fn.__doc__
        head = doc.splitlines()[0]
        name, _, rest = head.partition("(")
        params: list[tuple[str, str | None]] = []
        for p in filter(None, (x.strip() for x in rest.rstrip(")").split(","))):
            *ctype, pname = p.split()
            params.append((pname, " ".join(ctype) or None))
        args_doc = doc.split("Args:", 1)[1].split("Returns:", 1)[0] if "Args:" in doc else ""
        arg_types = {
            m.group(1): m.group(2) for m in re.finditer(r"^\s+(\w+) \(" + _REF, args_doc, re.M)
        }
        if "Returns:" not in doc:
            # 6.x/7.x leave Returns out for some functions (hipGetDeviceProperties(prop, id)):
            # read the returned tuple off the .pyx source the wheel ships instead.
            return cls(name, params, arg_types, _returns_from_pyx(name))
        ret_doc = doc.split("Returns:", 1)[1].split(".. rubric", 1)[0]
        size = int(re.search(r"tuple` of size (\d+)", ret_doc).group(1))
        returns = re.findall(r"^\s+\* " + _REF, ret_doc, re.M)
        assert len(returns) == size, f"{name}: cannot read its return types"
        return cls(name, params, arg_types, returns)


@dataclass
class Call:
    name: str
    args: tuple[Any, ...]
    converted: dict[str, Any] = field(default_factory=dict)  # after hip-python conversion

    def addr(self, param: str) -> int:
        return int(self.converted[param])


class RecordingHip:
    """Stands in for ``hip.hip``; see the module docstring."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.handlers: dict[str, Any] = {}
        self.fail: dict[str, Any] = {}  # name -> hipError_t to return instead
        self.raise_: dict[str, Exception] = {}  # name -> exception (dlopen/dlsym failures)
        self._signatures: dict[str, Signature] = {}
        self._keep: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(real_hip, name)  # AttributeError for anything the module lacks
        if isinstance(real, (type, int, float, str)) or not callable(real):
            return real
        if name not in self._signatures:
            self._signatures[name] = Signature.of(real)
        return lambda *args, **kw: self._call(name, args, kw)

    def _check_args(self, sig: Signature, args: tuple[Any, ...], kw: dict) -> dict[str, Any]:
        if kw:
            raise TypeError(f"{sig.name}: the backend passes arguments positionally, got {kw}")
        if len(args) != len(sig.params):
            raise TypeError(f"{sig.name} takes {len(sig.params)} arguments, got {len(args)}")
        converted: dict[str, Any] = {}
        for (pname, ctype), value in zip(sig.params, args, strict=True):
            if ctype is not None:
                lo, hi = _C_RANGES[ctype]
                if not isinstance(value, int) or not lo <= value <= hi:
                    raise TypeError(f"{sig.name}: {pname} must be a C {ctype}, got {value!r}")
                converted[pname] = value
                continue
            t = _resolve(sig.arg_types[pname])
            if isinstance(t, type) and issubclass(t, enum.Enum):
                if not isinstance(value, t):  # hip-python checks the enum type too
                    raise TypeError(f"{sig.name}: {pname} must be {t.__name__}, got {value!r}")
                converted[pname] = value
            elif hasattr(t, "fromObj"):
                converted[pname] = t.fromObj(value)  # the real function's own conversion
            else:
                if not isinstance(value, t):
                    raise TypeError(f"{sig.name}: {pname} must be {t.__name__}, got {value!r}")
                converted[pname] = value
        return converted

    def _call(self, name: str, args: tuple[Any, ...], kw: dict) -> tuple[Any, ...]:
        sig = self._signatures[name]
        call = Call(name, args, self._check_args(sig, args, kw))
        self.calls.append(call)
        if name in self.raise_:
            raise self.raise_[name]
        n_out = len(sig.returns) - 1
        if name in self.fail:
            return (self.fail[name], *([None] * n_out))
        handler = self.handlers.get(name)
        outputs = handler(call) if handler else None
        if n_out == 0:
            assert outputs is None, f"{name} returns only a status"
            return (SUCCESS,)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        assert len(outputs) == n_out, f"{name}: fake gave {len(outputs)} outputs, real {n_out}"
        for value, tname in zip(outputs, sig.returns[1:], strict=True):
            t = hip_types.CStr if tname == "bytes" else _resolve(tname)  # CStr in reality
            assert value is None or isinstance(value, t), f"{name}: {value!r} is not {tname}"
        return (SUCCESS, *outputs)

    # helpers for tests
    def names(self) -> list[str]:
        return [c.name for c in self.calls]

    def last(self, name: str) -> Call:
        return [c for c in self.calls if c.name == name][-1]

    def keep(self, obj: Any) -> Any:
        self._keep.append(obj)
        return obj


def _set_prop_string(props: Any, field_name: str, value: bytes) -> None:
    """Write a char[] field of a real hipDeviceProp_t (hip-python exposes them read-only).

    The field's offset is found by probing the struct's memory, so nothing about the
    layout of hipDeviceProp_tR0600 is hard-coded here.
    """
    base = props.as_c_void_p().value
    for off in range(props.c_sizeof()):  # stay inside the struct
        saved = ctypes.string_at(base + off, 1)
        ctypes.memset(base + off, ord("Q"), 1)
        hit = hb._text(getattr(props, field_name)) == "Q"  # str on 10.x, bytes on 6.x/7.x
        ctypes.memmove(base + off, saved, 1)
        if hit:
            ctypes.memmove(base + off, value + b"\0", len(value) + 1)
            assert hb._text(getattr(props, field_name)) == value.decode()
            return
    raise AssertionError(f"field {field_name} not found")


HANDLE_BASE = 0x7F00_0000_0000


def default_handlers(fake: RecordingHip, devices: int = 1, cus: int = 80) -> None:
    counter = iter(range(1, 10**6))

    def new_addr() -> int:
        return HANDLE_BASE + 0x1000 * next(counter)

    def props(call: Call) -> Any:
        # 10.x returns a new struct; 6.x/7.x fill the one passed as the first argument
        p = call.args[0] if BINDINGS.props_out_param else real_hip.hipDeviceProp_t()
        _set_prop_string(p, "name", b"AMD Instinct MI210")
        _set_prop_string(p, "gcnArchName", b"gfx90a:sramecc+:xnack-")
        p.multiProcessorCount = cus
        p.totalGlobalMem = 64 * 2**30
        p.warpSize = 64
        p.maxThreadsPerBlock = 1024
        p.sharedMemPerBlock = 64 * 1024
        p.maxSharedMemoryPerMultiProcessor = 64 * 1024
        p.maxThreadsPerMultiProcessor = 2048
        p.regsPerBlock = 65536
        p.clockRate = 1_700_000
        p.pciDomainID = 0
        p.pciBusID = 0xC3
        p.pciDeviceID = 0
        fake.keep(p)
        return None if BINDINGS.props_out_param else p

    def host_malloc(call: Call) -> Any:
        buf = fake.keep(ctypes.create_string_buffer(call.args[0]))
        return hip_types.Pointer(ctypes.addressof(buf))

    def error_name(call: Call) -> Any:
        return hip_types.CStr(call.args[0].name.encode())

    def error_string(call: Call) -> Any:
        return hip_types.CStr(b"description of " + call.args[0].name.encode())

    attrs = {
        FA.HIP_FUNC_ATTRIBUTE_NUM_REGS: 48,
        FA.HIP_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES: 4096,
        FA.HIP_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES: 16,
        FA.HIP_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK: 1024,
    }
    fake.handlers.update(
        {
            "hipRuntimeGetVersion": lambda c: 60_241_134,  # HIP 6.2.41134
            "hipDriverGetVersion": lambda c: 60_241_134,
            "hipGetDeviceCount": lambda c: devices,
            "hipGetDeviceProperties": props,
            "hipDeviceGetStreamPriorityRange": lambda c: (1, -1),
            "hipStreamCreateWithPriority": lambda c: real_hip.ihipStream_t(new_addr()),
            "hipExtStreamCreateWithCUMask": lambda c: real_hip.ihipStream_t(new_addr()),
            "hipStreamGetPriority": lambda c: 0,
            "hipModuleLoadData": lambda c: real_hip.ihipModule_t(new_addr()),
            "hipModuleGetFunction": lambda c: real_hip.ihipModuleSymbol_t(new_addr()),
            "hipFuncGetAttribute": lambda c: attrs[c.args[0]],
            "hipModuleOccupancyMaxActiveBlocksPerMultiprocessor": lambda c: 8,
            "hipMalloc": lambda c: hip_types.DeviceArray(new_addr()),
            "hipHostMalloc": host_malloc,
            "hipHostGetDevicePointer": lambda c: hip_types.Pointer(new_addr()),
            "hipEventCreateWithFlags": lambda c: real_hip.ihipEvent_t(new_addr()),
            "hipEventElapsedTime": lambda c: 1.25,
            "hipGetErrorName": error_name,
            "hipGetErrorString": error_string,
        }
    )


@pytest.fixture
def hip_fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> RecordingHip:
    fake = RecordingHip()
    default_handlers(fake)
    monkeypatch.setattr(_hip_compat, "_loaded", BINDINGS.with_function_module(fake))
    # No KFD on the test host unless a test builds one; never read the real sysfs.
    real_topology = kfd.topology_gpus
    monkeypatch.setattr(kfd, "topology_gpus", lambda: real_topology(tmp_path / "no-kfd"))
    return fake


@pytest.fixture
def hip_device(hip_fake: RecordingHip) -> hb.HipDevice:
    dev = hb.open_device(0)
    hip_fake.calls.clear()
    return dev


# ---------------------------------------------------------------------------------------
# the stand-in itself is strict


def test_fake_refuses_what_the_real_module_refuses(hip_fake: RecordingHip) -> None:
    with pytest.raises(AttributeError):
        hip_fake.hipNoSuchFunction  # noqa: B018
    with pytest.raises(TypeError, match="hipFunction_attribute"):
        hip_fake.hipFuncGetAttribute(1, real_hip.ihipModuleSymbol_t(HANDLE_BASE))
    with pytest.raises(TypeError, match="C int"):
        hip_fake.hipMemsetD32(HANDLE_BASE, 0xFFFFFFFF, 1)  # 'int value' overflows
    with pytest.raises(TypeError, match="takes 2 arguments"):
        hip_fake.hipStreamCreateWithPriority(0)
    with pytest.raises(TypeError):
        hip_fake.hipStreamQuery("not a stream")  # the real ihipStream_t conversion refuses


def test_real_return_conventions() -> None:
    """Facts the fake relies on, read off the real module (no GPU needed)."""
    assert Signature.of(real_hip.hipMalloc).returns == [
        "hipError_t",
        f"{hip_types.__name__}.DeviceArray",
    ]
    assert Signature.of(real_hip.hipModuleLaunchKernel).returns == ["hipError_t"]
    assert [p for p, _ in Signature.of(real_hip.hipModuleLaunchKernel).params][-2:] == [
        "kernelParams",
        "extra",
    ]
    # hip-python passes an argument already of its wrapper type straight through.
    lp = BINDINGS.kernel_params_type(0x1000)
    assert BINDINGS.kernel_params_type.fromObj(lp) is lp
    ex = _hip_helpers.HipModuleLaunchKernel_extra(0x2000)
    assert _hip_helpers.HipModuleLaunchKernel_extra.fromObj(ex) is ex
    s = real_hip.ihipStream_t(0x3000)
    assert real_hip.ihipStream_t.fromObj(s) is s
    assert (
        real_hip.HIP_LAUNCH_PARAM_BUFFER_POINTER,
        real_hip.HIP_LAUNCH_PARAM_BUFFER_SIZE,
        real_hip.HIP_LAUNCH_PARAM_END,
    ) == (1, 2, 3)


def test_compat_seam_matches_the_installed_release() -> None:
    """What _hip_compat says about this release line, against the real module's own
    docstrings (the types the functions convert through, the argument lists)."""
    from importlib.metadata import version

    major = int(version("hip-python").split(".")[0])
    assert BINDINGS.line == ("10.x" if major >= 10 else "6.x/7.x")
    assert BINDINGS.version == f"hip-python {version('hip-python')}"
    assert BINDINGS.hip_version.split(".")[0] == str(major if major < 10 else 7)
    launch = Signature.of(real_hip.hipModuleLaunchKernel)
    kp, extra = BINDINGS.kernel_params_type, BINDINGS.launch_extra_type
    assert launch.arg_types["kernelParams"] == f"{kp.__module__}.{kp.__name__}"
    assert launch.arg_types["extra"] == f"{extra.__module__}.{extra.__name__}"
    props = Signature.of(real_hip.hipGetDeviceProperties)
    if BINDINGS.props_out_param:
        assert [p for p, _ in props.params] == ["prop", "deviceId"]
        assert props.returns == ["hipError_t"]
    else:
        assert [p for p, _ in props.params] == ["deviceId"]
        assert props.returns == ["hipError_t", "hipDeviceProp_t"]


# ---------------------------------------------------------------------------------------
# probe


def test_probe_without_hip_python(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_hip_compat, "_loaded", None)
    monkeypatch.setitem(sys.modules, "hip", None)  # what `import hip` meets when absent
    report = hb.probe()
    assert not report.available and "hip-python is not installed" in report.reason
    with pytest.raises(BackendUnavailable, match="pip install"):
        hb.open_device(0)


def test_probe_without_libamdhip64(hip_fake: RecordingHip) -> None:
    # What hip-python raises when dlopen fails (posixloader.open_library).
    hip_fake.raise_["hipRuntimeGetVersion"] = RuntimeError(
        "failed to dlopen 'b'libamdhip64.so'': libamdhip64.so: cannot open shared object file"
    )
    report = hb.probe()
    assert not report.available
    assert report.reason.startswith("libamdhip64 not found")
    assert report.devices == []


def test_probe_no_gpu_hipinit_fails(hip_fake: RecordingHip) -> None:
    # ROCm 5.2 on this (GPU-less) machine answers hipInit with hipErrorInvalidDevice.
    hip_fake.fail["hipInit"] = real_hip.hipError_t.hipErrorInvalidDevice
    report = hb.probe()
    assert not report.available
    assert "no AMD GPU" in report.reason and "hipErrorInvalidDevice" in report.reason
    assert hip_fake.names()[:2] == ["hipRuntimeGetVersion", "hipInit"]
    assert hip_fake.last("hipInit").args == (0,)


def test_probe_zero_devices(hip_fake: RecordingHip) -> None:
    hip_fake.handlers["hipGetDeviceCount"] = lambda c: 0
    report = hb.probe()
    assert not report.available
    assert "0 devices" in report.reason
    assert hip_fake.names() == ["hipRuntimeGetVersion", "hipInit", "hipGetDeviceCount"]
    assert report.versions["runtime"] == "6.2.41134"


def test_probe_one_device(hip_fake: RecordingHip) -> None:
    report = hb.probe()
    assert report.available, report.reason
    assert [d.arch for d in report.devices] == ["gfx90a"]
    assert report.capabilities[0] == hb.HIP_CAPABILITIES
    assert report.capabilities[0].level is PreemptLevel.DEVICE_QUEUE
    assert report.versions["driver"] == "6.2.41134"
    asked = hip_fake.last("hipGetDeviceProperties").args
    if BINDINGS.props_out_param:  # 6.x/7.x: (prop, deviceId), a real hipDeviceProp_t
        assert isinstance(asked[0], real_hip.hipDeviceProp_t) and asked[1:] == (0,)
    else:
        assert asked == (0,)
    # bindings built for another HIP major (7.2, 7.15) than the 6.2 runtime: said, not hidden
    mismatch = not BINDINGS.hip_version.startswith("6.")
    assert ("install the hip-python release matching your ROCm" in report.reason) is mismatch
    assert report.reason == "" or mismatch


def test_probe_never_raises_on_a_binding_surprise(hip_fake: RecordingHip) -> None:
    """A hip-python whose call convention the seam does not know (what 7.2 met before the
    seam: hipGetDeviceProperties with the wrong arity) is reported, not raised."""
    hip_fake.raise_["hipGetDeviceProperties"] = TypeError(
        "hipGetDeviceProperties() takes exactly 2 positional arguments (1 given)"
    )
    report = hb.probe()
    assert not report.available and report.devices == [] and report.capabilities == []
    assert "TypeError" in report.reason and "hipGetDeviceProperties" in report.reason


def test_probe_runtime_lacks_symbol(hip_fake: RecordingHip) -> None:
    # What hip-python 10 does against ROCm 5.2's libamdhip64 (measured on this machine).
    hip_fake.raise_["hipGetDeviceProperties"] = RuntimeError(
        "failed to dlsym 'b'hipGetDevicePropertiesR0600'': undefined symbol"
    )
    report = hb.probe()
    assert not report.available and report.devices == []
    assert "hipGetDevicePropertiesR0600" in report.reason


# ---------------------------------------------------------------------------------------
# device


def test_open_device_info(hip_fake: RecordingHip) -> None:
    dev = hb.open_device(0)
    assert hip_fake.names() == [
        "hipInit",
        "hipGetDeviceCount",
        "hipSetDevice",
        "hipGetDeviceProperties",
        "hipDriverGetVersion",
        "hipRuntimeGetVersion",
    ]
    assert hip_fake.last("hipSetDevice").args == (0,)
    info = dev.info
    assert info.backend == "hip" and info.vendor is Vendor.AMD
    assert info.name == "AMD Instinct MI210"
    assert info.arch == "gfx90a"
    assert info.extra["gcn_arch_name"] == "gfx90a:sramecc+:xnack-"
    assert (info.compute_units, info.warp_size) == (80, 64)
    assert info.memory_bytes == 64 * 2**30
    assert (info.max_threads_per_block, info.max_shared_memory_per_block) == (1024, 65536)
    assert info.runtime_version == "6.2.41134"
    assert info.extra["pci_bus_id"] == 0xC3 and info.kfd_gpu_id is None
    assert "kfd_gpu_id" not in info.extra
    assert dev.capabilities == hb.HIP_CAPABILITIES


def test_open_device_out_of_range_and_options(hip_fake: RecordingHip) -> None:
    with pytest.raises(BackendUnavailable, match="device 3 requested, 1 present"):
        hb.open_device(3)
    with pytest.raises(TypeError, match="launch_form"):
        hb.open_device(0, colour="red")
    with pytest.raises(ValueError, match="launch_form"):
        hb.open_device(0, launch_form="tuple")


def test_open_device_no_gpu_is_backend_unavailable(hip_fake: RecordingHip) -> None:
    hip_fake.fail["hipInit"] = real_hip.hipError_t.hipErrorNoDevice
    with pytest.raises(BackendUnavailable, match="hipErrorNoDevice"):
        hb.open_device(0)


def test_priority_range_and_synchronize(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    assert hip_device.stream_priority_range() == (1, -1)
    hip_device.synchronize()
    assert hip_fake.names() == [
        "hipSetDevice",
        "hipDeviceGetStreamPriorityRange",
        "hipSetDevice",
        "hipDeviceSynchronize",
    ]


# ---------------------------------------------------------------------------------------
# streams


def test_stream_with_priority(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    s = hip_device.create_stream(priority=-1)
    call = hip_fake.last("hipStreamCreateWithPriority")
    assert call.args == (real_hip.hipStreamNonBlocking, -1)
    assert s.priority == -1 and isinstance(s.handle, real_hip.ihipStream_t)
    s.synchronize()
    assert hip_fake.last("hipStreamSynchronize").args[0] is s.handle
    handle = s.handle
    s.close()
    assert hip_fake.last("hipStreamDestroy").args == (handle,) and s.handle is None


def test_stream_with_cu_mask(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    cus = [0, 1, 2, 40, 63, 64, 79]
    s = hip_device.create_stream(cu_mask=cus)
    call = hip_fake.last("hipExtStreamCreateWithCUMask")
    n_words = call.args[0]
    assert n_words == 3  # 80 CUs -> 3 words of 32
    # Read the words back from the array hip-python's own ListOfUnsigned conversion built.
    words = list((ctypes.c_uint32 * n_words).from_address(call.addr("cuMask")))
    assert words == [0b111, (1 << 8) | (1 << 31), (1 << 0) | (1 << 15)]
    assert s.cu_mask == tuple(cus)
    assert hip_fake.last("hipStreamGetPriority").args[0] is s.handle
    assert s.priority == 0


def test_cu_mask_errors(hip_device: hb.HipDevice) -> None:
    with pytest.raises(ValueError, match="outside 0..79"):
        hip_device.create_stream(cu_mask=[80])
    with pytest.raises(ValueError, match="empty"):
        hip_device.create_stream(cu_mask=[])
    with pytest.raises(UnsupportedError, match="CU mask and a priority"):
        hip_device.create_stream(priority=-1, cu_mask=[0])
    assert hb.cu_mask_words([31, 32], 33) == [1 << 31, 1]


def test_stream_query_write_value_wait(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    s = hip_device.create_stream()
    flag = hip_device.alloc(4)
    hip_fake.fail["hipStreamQuery"] = real_hip.hipError_t.hipErrorNotReady
    assert s.query() is False
    del hip_fake.fail["hipStreamQuery"]
    assert s.query() is True
    s.write_value32(flag, 1)
    call = hip_fake.last("hipStreamWriteValue32")
    assert call.args[0] is s.handle and call.addr("ptr") == flag.ptr
    assert call.args[2:] == (1, 0)
    s.write_value32(flag.offset(0), -1)  # a DevicePtr; -1 is the pattern 0xFFFFFFFF
    assert hip_fake.last("hipStreamWriteValue32").args[2] == 0xFFFFFFFF
    with pytest.raises(ValueError):
        s.write_value32(flag, 2**32)
    ev = hip_device.create_event(timing=False)
    s.wait_event(ev)
    assert hip_fake.last("hipStreamWaitEvent").args == (s.handle, ev.handle, 0)


# ---------------------------------------------------------------------------------------
# events


def test_events(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    s = hip_device.create_stream()
    a = hip_device.create_event()
    assert hip_fake.last("hipEventCreateWithFlags").args == (real_hip.hipEventDefault,)
    b = hip_device.create_event(timing=True)
    a.record(s)
    b.record(s)
    assert hip_fake.last("hipEventRecord").args == (b.handle, s.handle)
    b.synchronize()
    assert hip_fake.last("hipEventSynchronize").args == (b.handle,)
    assert a.elapsed_ms(b) == 1.25
    assert hip_fake.last("hipEventElapsedTime").args == (a.handle, b.handle)
    hip_fake.fail["hipEventQuery"] = real_hip.hipError_t.hipErrorNotReady
    assert b.query() is False
    del hip_fake.fail["hipEventQuery"]
    assert b.query() is True
    untimed = hip_device.create_event(timing=False)
    assert hip_fake.last("hipEventCreateWithFlags").args == (real_hip.hipEventDisableTiming,)
    with pytest.raises(UnsupportedError):
        a.elapsed_ms(untimed)
    handle = untimed.handle
    untimed.close()
    assert hip_fake.last("hipEventDestroy").args == (handle,) and untimed.handle is None


# ---------------------------------------------------------------------------------------
# modules, kernels, launches


@pytest.fixture
def hip_kernel(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> hb.HipKernel:
    mod = hip_device.load_module(b"\x7fELF fake hsaco")
    k = mod.get_kernel("vadd")
    hip_fake.calls.clear()
    return k


def test_module_load_and_kernel(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    image = b"\x7fELF fake hsaco"
    mod = hip_device.load_module(image)
    load = hip_fake.last("hipModuleLoadData")
    assert bytes(ctypes.string_at(load.addr("image"), len(image))) == image
    k = mod.get_kernel("vadd")
    assert mod.get_kernel("vadd") is k  # looked up once
    get = hip_fake.last("hipModuleGetFunction")
    assert get.args[0] is mod.handle and get.args[1] == b"vadd"
    assert str(get.converted["kname"]) == "vadd"
    assert hip_fake.names().count("hipModuleGetFunction") == 1
    hip_fake.fail["hipModuleGetFunction"] = real_hip.hipError_t.hipErrorNotFound
    with pytest.raises(GpuError, match="'nope' not found") as ei:
        mod.get_kernel("nope")
    assert ei.value.call == "hipModuleGetFunction"
    assert ei.value.code == int(real_hip.hipError_t.hipErrorNotFound)
    handle = mod.handle
    mod.close()
    assert hip_fake.last("hipModuleUnload").args == (handle,) and mod.handle is None


def test_kernel_attributes_and_occupancy(hip_kernel: hb.HipKernel, hip_fake: RecordingHip) -> None:
    assert hip_kernel.attributes == {
        "registers": 48,
        "shared_bytes": 4096,
        "local_bytes": 16,
        "max_threads_per_block": 1024,
    }
    asked = [c.args[0] for c in hip_fake.calls if c.name == "hipFuncGetAttribute"]
    assert asked == [
        FA.HIP_FUNC_ATTRIBUTE_NUM_REGS,
        FA.HIP_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES,
        FA.HIP_FUNC_ATTRIBUTE_LOCAL_SIZE_BYTES,
        FA.HIP_FUNC_ATTRIBUTE_MAX_THREADS_PER_BLOCK,
    ]
    assert hip_kernel.max_active_blocks_per_cu(256, 1024) == 8
    occ = hip_fake.last("hipModuleOccupancyMaxActiveBlocksPerMultiprocessor")
    assert occ.args == (hip_kernel.handle, 256, 1024)


def _count_param_blocks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    made: list[int] = []

    class CountingParamBlock(hb.ParamBlock):
        def __init__(self, args: Any) -> None:
            made.append(1)
            super().__init__(args)

    monkeypatch.setattr(hb, "ParamBlock", CountingParamBlock)
    return made


def test_launch_params_form(
    hip_device: hb.HipDevice,
    hip_kernel: hb.HipKernel,
    hip_fake: RecordingHip,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made = _count_param_blocks(monkeypatch)
    s = hip_device.create_stream()
    a, out = hip_device.alloc(1024), hip_device.alloc(1024)
    cfg = LaunchConfig(grid=(4, 2), block=256, shared_mem=512)
    bound = hip_kernel.bind(cfg, [a, out, np.int32(256)])
    assert made == [1]
    bound.launch(s)
    bound.launch(s)
    first, second = [c for c in hip_fake.calls if c.name == "hipModuleLaunchKernel"]
    assert first.args[:9] == (hip_kernel.handle, 4, 2, 1, 256, 1, 1, 512, s.handle)
    assert first.addr("kernelParams") == bound.params.pointer_array
    assert first.addr("extra") == 0
    # the pointer array really points at the packed values
    ptrs = (ctypes.c_void_p * 3).from_address(first.addr("kernelParams"))
    assert ctypes.c_uint64.from_address(ptrs[0]).value == a.ptr
    assert ctypes.c_int32.from_address(ptrs[2]).value == 256
    # the second launch passes the very same pre-built objects: nothing packed again
    assert all(x is y for x, y in zip(first.args, second.args, strict=True))
    assert made == [1]
    # editing the block in place keeps its addresses
    bound.params.set(2, np.int32(7))
    bound.launch(s)
    third = hip_fake.last("hipModuleLaunchKernel")
    assert third.args[9] is first.args[9]
    assert ctypes.c_int32.from_address(ptrs[2]).value == 7


def test_launch_extra_form(hip_fake: RecordingHip) -> None:
    dev = hb.open_device(0, launch_form="extra")
    k = dev.load_module(b"\x7fELF").get_kernel("k")
    s = dev.create_stream()
    buf = dev.alloc(64)
    bound = k.bind(LaunchConfig(1, 64), [np.float32(2.0), buf])
    bound.launch(s)
    call = hip_fake.last("hipModuleLaunchKernel")
    assert call.addr("kernelParams") == 0
    config = list((ctypes.c_void_p * 5).from_address(call.addr("extra")))
    assert config == [
        real_hip.HIP_LAUNCH_PARAM_BUFFER_POINTER,
        bound.params.buffer,
        real_hip.HIP_LAUNCH_PARAM_BUFFER_SIZE,
        bound.params.size_address,
        real_hip.HIP_LAUNCH_PARAM_END,
    ]
    assert ctypes.c_size_t.from_address(config[3]).value == bound.params.nbytes == 16
    assert ctypes.c_uint64.from_address(config[1] + 8).value == buf.ptr  # float, pad, ptr
    bound.launch(s)
    assert hip_fake.last("hipModuleLaunchKernel").args[10] is call.args[10]


def test_launch_failure_and_bind_limit(
    hip_device: hb.HipDevice, hip_kernel: hb.HipKernel, hip_fake: RecordingHip
) -> None:
    s = hip_device.create_stream()
    bound = hip_kernel.bind(LaunchConfig(1, 64), [])
    hip_fake.fail["hipModuleLaunchKernel"] = real_hip.hipError_t.hipErrorLaunchFailure
    with pytest.raises(GpuError) as ei:
        bound.launch(s)
    assert ei.value.call == "hipModuleLaunchKernel"
    assert "hipErrorLaunchFailure" in str(ei.value)
    with pytest.raises(UnsupportedError, match="exceeds"):
        hip_kernel.bind(LaunchConfig(1, (32, 33)), [])


# ---------------------------------------------------------------------------------------
# memory and copies


def test_device_buffer(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    buf = hip_device.alloc(4096)
    assert hip_fake.names() == ["hipSetDevice", "hipMalloc"]
    assert hip_fake.last("hipMalloc").args == (4096,)
    assert buf.ptr >= HANDLE_BASE and buf.nbytes == 4096
    handle = buf._handle
    buf.close()
    assert hip_fake.last("hipFree").args == (handle,)
    assert hip_fake.last("hipFree").addr("ptr") == int(handle)
    buf.close()  # idempotent
    assert hip_fake.names().count("hipFree") == 1
    with pytest.raises(ValueError):
        hip_device.alloc(0)


def test_host_mapped_buffer(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    hm = hip_device.alloc_host_mapped(64)
    size, flags = hip_fake.last("hipHostMalloc").args
    assert size == 64
    assert flags & real_hip.hipHostMallocMapped
    assert flags & real_hip.hipHostMallocCoherent
    get = hip_fake.last("hipHostGetDevicePointer")
    assert get.addr("hstPtr") == hm._host_ptr and get.args[1] == 0
    assert hm.ptr >= HANDLE_BASE  # the device address, not the host one
    hm.host[:4] = [1, 2, 3, 4]  # the numpy view is the host allocation itself
    assert ctypes.string_at(hm._host_ptr, 4) == b"\x01\x02\x03\x04"
    host_ptr = hm._host_ptr
    hm.close()
    assert hip_fake.last("hipHostFree").addr("ptr") == host_ptr
    assert hm.host.size == 0


def test_copies_and_memset(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    buf = hip_device.alloc(64)
    src = np.arange(16, dtype=np.int32)
    hip_device.copy_to_device(buf, src)
    c = hip_fake.last("hipMemcpyHtoD")
    assert (c.addr("dst"), c.addr("src"), c.args[2]) == (buf.ptr, src.ctypes.data, 64)
    s = hip_device.create_stream()
    hip_device.copy_to_device(buf.offset(16), src[:4], stream=s)
    c = hip_fake.last("hipMemcpyHtoDAsync")
    assert (c.addr("dst"), c.args[2], c.args[3]) == (buf.ptr + 16, 16, s.handle)
    dst = np.empty(16, dtype=np.int32)
    hip_device.copy_to_host(dst, buf)
    c = hip_fake.last("hipMemcpyDtoH")
    assert (c.addr("dst"), c.addr("src"), c.args[2]) == (dst.ctypes.data, buf.ptr, 64)
    hip_device.copy_to_host(dst, buf, stream=s)
    assert hip_fake.last("hipMemcpyDtoHAsync").args[3] is s.handle
    with pytest.raises(ValueError, match="64 bytes"):
        hip_device.copy_to_device(buf, np.zeros(17, dtype=np.int32))
    with pytest.raises(TypeError):
        hip_device.copy_to_host(b"immutable", buf)
    hip_device.memset32(buf, 0xFFFFFFFF, 16)
    c = hip_fake.last("hipMemsetD32")
    # hipMemsetD32 takes a C int: the backend passes the same bit pattern as -1
    assert (c.addr("dest"), c.args[1], c.args[2]) == (buf.ptr, -1, 16)
    with pytest.raises(ValueError):
        hip_device.memset32(buf, 0, 17)
    hip_device.memset32(DevicePtr(buf.ptr + 4), 5, 1)
    assert hip_fake.last("hipMemsetD32").args[1:] == (5, 1)
    # stream-ordered: the scheduler's slot resets and flag clears never use the null stream
    hip_device.memset32(buf, 7, 4, stream=s)
    c = hip_fake.last("hipMemsetD32Async")
    assert (c.addr("dst"), c.args[1], c.args[2], c.args[3]) == (buf.ptr, 7, 4, s.handle)


def test_error_names_call_and_status(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    hip_fake.fail["hipMalloc"] = real_hip.hipError_t.hipErrorOutOfMemory
    with pytest.raises(GpuError) as ei:
        hip_device.alloc(1 << 40)
    err = ei.value
    assert err.call == "hipMalloc"
    assert err.code == int(real_hip.hipError_t.hipErrorOutOfMemory)
    assert "hipErrorOutOfMemory" in str(err) and "description of" in str(err)
    # the error text came from the runtime's own calls, with the real enum member
    assert hip_fake.last("hipGetErrorString").args == (real_hip.hipError_t.hipErrorOutOfMemory,)


# ---------------------------------------------------------------------------------------
# KFD node and capabilities


@dataclass(frozen=True)
class Node:
    """A KFD GPU node with the PCI fields the join needs (what the topology reader gives)."""

    gpu_id: int
    domain: int
    location_id: int
    unique_id: int = 0


def test_kfd_gpu_id_by_pci_address() -> None:
    nodes = [
        Node(4242, 0, 0xC300, 1),
        Node(777, 0, 0x8300, 2),
        Node(999, 1, 0xC300, 3),
        Node(555, 0, 0xC308, 4),  # bus 0xC3, device 1
    ]
    assert hb.kfd_gpu_id(0, 0xC3, 0, nodes=nodes) == 4242
    assert hb.kfd_gpu_id(0, 0x83, 0, nodes=nodes) == 777
    assert hb.kfd_gpu_id(1, 0xC3, 0, nodes=nodes) == 999
    assert hb.kfd_gpu_id(0, 0xC3, 1, nodes=nodes) == 555
    assert hb.kfd_gpu_id(0, 0x11, 0, nodes=nodes) is None
    assert hb.kfd_gpu_id(0, 0xC3, 0, nodes=[]) is None


def test_kfd_gpu_id_partitioned_needs_uuid() -> None:
    # Two partitions of one GPU: same PCI address, partition number in location_id[31:28].
    nodes = [
        Node(11, 0, 0xC300, 0x1234ABCD00000001),
        Node(12, 0, (1 << 28) | 0xC300, 0x1234ABCD00000002),
    ]
    assert hb.kfd_gpu_id(0, 0xC3, 0, nodes=nodes) is None  # never guess
    assert hb.kfd_gpu_id(0, 0xC3, 0, uuid=b"1234abcd00000002", nodes=nodes) == 12
    assert hb.kfd_gpu_id(0, 0xC3, 0, uuid=b"not-hex-at-all!!", nodes=nodes) is None
    assert hb.kfd_gpu_id(0, 0xC3, 0, uuid=b"1234abcd000000ff", nodes=nodes) is None


def test_kfd_node_without_pci_fields_never_matches() -> None:
    """A node whose properties gave no PCI location must turn the kill off, not aim it at the
    only GPU it sees."""
    plain = kfd.KfdNode(node=1, gpu_id=4242, name="gfx90a", gfx_target_version=90010)
    assert plain.location_id is None
    assert hb.kfd_gpu_id(0, 0xC3, 0, nodes=[plain]) is None


def _kfd_sysfs(root: Path, nodes: list[tuple[int, dict[str, int]]]) -> Path:
    """A KFD sysfs tree as amdkfd lays it out: <root>/topology/nodes/<n>/{gpu_id,properties}."""
    for i, (gpu_id, props) in enumerate(nodes):
        d = root / "topology" / "nodes" / str(i)
        d.mkdir(parents=True)
        (d / "gpu_id").write_text(f"{gpu_id}\n")
        (d / "name").write_text("gfx90a\n" if gpu_id else "\n")
        (d / "properties").write_text("".join(f"{k} {v}\n" for k, v in props.items()))
    return root


def test_kfd_gpu_id_through_the_real_topology_reader(tmp_path: Path) -> None:
    root = _kfd_sysfs(
        tmp_path,
        [
            (0, {"cpu_cores_count": 64, "location_id": 0, "domain": 0}),
            (4242, {"simd_count": 440, "location_id": 0xC300, "domain": 0, "unique_id": 7}),
            (777, {"simd_count": 440, "location_id": 0x8300, "domain": 0, "unique_id": 8}),
        ],
    )
    nodes = kfd.topology_gpus(root)
    assert hb.kfd_gpu_id(0, 0x83, 0, nodes=nodes) == 777
    assert hb.kfd_gpu_id(0, 0xC3, 0, nodes=nodes) == 4242


def _patched_kfd(monkeypatch: pytest.MonkeyPatch, ops: list[str]) -> list[int]:
    """The reef KFD patch answering for gpu_id 4242 with ``ops``; returns the kill log."""
    patched = kfd.KfdStatus(
        dev_kfd=True,
        patch_loaded=True,
        patch_version="1.0",
        gpus={4242: kfd.GpuKfdStatus(4242, "gfx90a", 90010, ops)},
    )
    monkeypatch.setattr(kfd, "kfd_status", lambda: patched)
    killed: list[int] = []

    class FakeKfdDevice:
        vmid_mask = 0b100

        def __init__(self, gpu_id: int) -> None:
            self.gpu_id = gpu_id

        def kill_waves(self) -> Any:
            killed.append(self.gpu_id)
            return kfd.KillResult(vmid_mask=FakeKfdDevice.vmid_mask, xcc_mask=1)

        def close(self) -> None:
            killed.append(-1)

    monkeypatch.setattr(kfd, "KfdDevice", FakeKfdDevice)
    return killed


def test_device_finds_kfd_node_and_patch(
    hip_fake: RecordingHip, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kfd, "topology_gpus", lambda: [Node(4242, 0, 0xC300)])
    killed = _patched_kfd(monkeypatch, ["kill_waves", "reset_queue"])
    dev = hb.open_device(0)
    assert dev.info.kfd_gpu_id == 4242
    assert dev.capabilities.wave_kill
    # the patch offers RESET_QUEUE, but a HIP stream's ring is hidden: not implemented here
    assert not dev.capabilities.queue_reset
    with pytest.raises(UnsupportedError, match="queue_reset"):
        dev.clear_queue(dev.create_stream())
    assert dev.capabilities.level is PreemptLevel.RUNNING
    assert dev.capabilities.cu_mask and dev.capabilities.stream_write_value
    # Device.kill_running_waves: -1 = killed, count unknown (KFD names VMIDs, not waves)
    assert dev.kill_running_waves() == -1 and killed == [4242]
    kfd.KfdDevice.vmid_mask = 0  # type: ignore[attr-defined]
    assert dev.kill_running_waves() == 0  # no VMID of ours was running: nothing killed
    assert "hipDeviceGetUuid" not in hip_fake.names()  # the PCI address was enough
    dev.close()
    assert killed[-1] == -1  # the KFD descriptor is closed with the device
    # a patch that does not list the op for this GPU turns the capability off
    _patched_kfd(monkeypatch, [])
    dev = hb.open_device(0)
    assert not dev.capabilities.wave_kill
    with pytest.raises(UnsupportedError, match="wave_kill"):
        dev.kill_running_waves()


def test_kfd_capabilities_without_kfd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No matched KFD node, or no /dev/kfd (the real binding's answer here): no kill."""
    assert hb._kfd_wave_kill(None) is False
    real_status = kfd.kfd_status
    absent = str(tmp_path / "kfd")
    monkeypatch.setattr(kfd, "kfd_status", lambda: real_status(dev_path=absent))
    assert hb._kfd_wave_kill(1) is False


# ---------------------------------------------------------------------------------------
# the real module, no fake


def test_real_probe_never_raises() -> None:
    """On machines without an AMD GPU (all of ours) the real probe reports, never raises."""
    report = hb.probe()
    if not report.available:
        assert report.reason
        assert report.devices == []


@pytest.mark.gpu
def test_real_amd_gpu_roundtrip() -> None:
    report = probe("hip")
    if not report.available:
        pytest.skip(f"no AMD GPU through HIP: {report.reason}")
    dev = hb.open_device(0)
    assert dev.info.arch.startswith("gfx")
    buf = dev.alloc(64)
    src = np.arange(16, dtype=np.uint32)
    dev.copy_to_device(buf, src)
    dev.memset32(buf.offset(60), 0xDEADBEEF, 1)
    s = dev.create_stream()
    start, end = dev.create_event(), dev.create_event()
    start.record(s)
    s.write_value32(buf, 99)
    end.record(s)
    s.synchronize()
    out = np.empty(16, dtype=np.uint32)
    dev.copy_to_host(out, buf)
    assert out[0] == 99 and list(out[1:15]) == list(range(1, 15)) and out[15] == 0xDEADBEEF
    assert end.query() and start.elapsed_ms(end) >= 0.0
    lo, hi = dev.stream_priority_range()
    dev.create_stream(priority=hi).synchronize()
    dev.create_stream(cu_mask=[0]).synchronize()
    buf.close()


def test_partitioned_gpu_resolved_by_uuid(
    hip_fake: RecordingHip, monkeypatch: pytest.MonkeyPatch
) -> None:
    nodes = [
        Node(11, 0, 0xC300, 0x1234ABCD00000001),
        Node(12, 0, (1 << 28) | 0xC300, 0x1234ABCD00000002),
    ]
    monkeypatch.setattr(kfd, "topology_gpus", lambda: nodes)

    def uuid(call: Call) -> Any:
        u = hip_fake.keep(real_hip.hipUUID_t())
        ctypes.memmove(u.as_c_void_p().value, b"1234abcd00000002", 16)  # read-only in Python
        return u

    hip_fake.handlers["hipDeviceGetUuid"] = uuid
    dev = hb.open_device(0)
    assert hip_fake.last("hipDeviceGetUuid").args == (0,)
    assert dev.info.kfd_gpu_id == 12


def test_uuid_bytes_reads_all_sixteen() -> None:
    """6.x/7.x read hipUUID_t.bytes as a C string; the seam reads the struct's 16 bytes."""
    u = real_hip.hipUUID_t()
    ctypes.memmove(u.as_c_void_p().value, b"ab\0defghijklmnop", 16)
    assert _hip_compat.uuid_bytes(u) == b"ab\0defghijklmnop"


def test_every_hip_call_in_the_backend_is_exercised(
    hip_fake: RecordingHip, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Runs one scenario touching every call and compares with the calls hip.py contains."""
    source = Path(hb.__file__).read_text() + Path(_hip_compat.__file__).read_text()
    in_backend = {
        name
        for name in re.findall(r"\b(?:hip|_hip\(\)|self\.hip)\.(hip[A-Z]\w+)", source)
        if callable(getattr(real_hip, name)) and not isinstance(getattr(real_hip, name), type)
    }
    assert {"hipModuleLaunchKernel", "hipGetErrorString", "hipDeviceGetUuid"} <= in_backend
    hb.probe()
    test_partitioned_gpu_resolved_by_uuid(hip_fake, monkeypatch)
    dev = hb.open_device(0)
    dev.stream_priority_range()
    dev.synchronize()
    s, masked = dev.create_stream(priority=-1), dev.create_stream(cu_mask=[0, 5])
    a, b = dev.create_event(), dev.create_event()
    a.record(s)
    b.record(s)
    a.synchronize()
    a.query()
    a.elapsed_ms(b)
    s.query()
    s.synchronize()
    s.wait_event(a)
    buf, hm = dev.alloc(64), dev.alloc_host_mapped(64)
    s.write_value32(hm, 1)
    host = np.zeros(16, dtype=np.uint32)
    for stream in (None, s):
        dev.copy_to_device(buf, host, stream)
        dev.copy_to_host(host, buf, stream)
        dev.memset32(buf, 0, 16, stream)
    mod = dev.load_module(b"\x7fELF")
    k = mod.get_kernel("k")
    _ = k.attributes
    k.max_active_blocks_per_cu(64)
    k.bind(LaunchConfig(1, 64), [buf]).launch(masked)
    hip_fake.fail["hipMalloc"] = real_hip.hipError_t.hipErrorOutOfMemory
    with pytest.raises(GpuError):
        dev.alloc(8)
    mod.close()
    a.close()
    s.close()
    buf.close()
    hm.close()
    assert in_backend - set(hip_fake.names()) == set()


# ---------------------------------------------------------------------------------------
# one release verb, context managers, limits from the device


def test_close_and_context_managers(hip_device: hb.HipDevice, hip_fake: RecordingHip) -> None:
    with hip_device.alloc(64) as buf:
        handle = buf._handle
    assert hip_fake.last("hipFree").args == (handle,) and buf.ptr == 0
    buf.close()  # idempotent
    with hip_device.alloc_host_mapped(64) as hm:
        host_ptr = hm._host_ptr
    assert hip_fake.last("hipHostFree").addr("ptr") == host_ptr
    with hip_device.create_stream() as s:
        stream_handle = s.handle
    assert hip_fake.last("hipStreamDestroy").args == (stream_handle,) and s.handle is None
    with hip_device.create_event() as ev:
        event_handle = ev.handle
    assert hip_fake.last("hipEventDestroy").args == (event_handle,)
    with hip_device.load_module(b"\x7fELF") as mod:
        k = mod.get_kernel("k")
        assert mod.get_kernel("k") is k
        module_handle = mod.handle
    assert hip_fake.last("hipModuleUnload").args == (module_handle,)
    # the old verbs are aliases of close(): one release, whichever is called
    b2 = hip_device.alloc(8)
    b2.close()
    b2.close()
    s2 = hip_device.create_stream()
    s2.close()
    s2.close()
    assert hip_fake.names().count("hipFree") == 2
    assert hip_fake.names().count("hipStreamDestroy") == 2
    with hb.open_device(0) as dev:
        assert dev.info.backend == "hip"


def test_bind_checks_the_device_limit_not_a_constant(
    hip_fake: RecordingHip, monkeypatch: pytest.MonkeyPatch
) -> None:
    props = hip_fake.handlers["hipGetDeviceProperties"]

    def small_blocks(call: Call) -> Any:
        p = props(call)
        (call.args[0] if BINDINGS.props_out_param else p).maxThreadsPerBlock = 256
        return p

    hip_fake.handlers["hipGetDeviceProperties"] = small_blocks
    dev = hb.open_device(0)
    assert dev.info.max_threads_per_block == 256
    k = dev.load_module(b"\x7fELF").get_kernel("k")
    k.bind(LaunchConfig(1, 256), [])
    with pytest.raises(
        UnsupportedError, match="512 threads per block exceeds the device limit of 256"
    ):
        k.bind(LaunchConfig(1, (16, 32)), [])


def test_memset_value_and_count_are_checked(hip_device: hb.HipDevice) -> None:
    buf = hip_device.alloc(16)
    for bad in (2**32, -(2**31) - 1, 1.5):
        with pytest.raises(ValueError, match="32"):
            hip_device.memset32(buf, bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="non-negative"):
        hip_device.memset32(buf, 0, -1)
    with pytest.raises(ValueError, match="16 bytes"):
        hip_device.memset32(buf, 0, 5)
    with pytest.raises(TypeError, match="HipStream"):
        hip_device.memset32(buf, 0, 1, stream=object())  # type: ignore[arg-type]


def test_make_current_per_thread(hip_fake: RecordingHip) -> None:
    """A scheduler or server thread binds the device before its first call."""
    import threading

    dev = hb.open_device(0)
    hip_fake.calls.clear()
    t = threading.Thread(target=dev.make_current)
    t.start()
    t.join()
    assert hip_fake.names() == ["hipSetDevice"] and hip_fake.last("hipSetDevice").args == (0,)
