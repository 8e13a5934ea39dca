"""The one ctypes module of the HSA queue manager: libhsa-runtime64's structs, constants and
function prototypes, and the release-ordered stores the packet writer needs.

Everything above this module takes a ``Library`` (or a stand-in with the same methods), so
tests replace it without the shared library. Layouts and values here are checked against
Debian's ``libhsa-runtime-dev`` headers by ``tests/rocm/test_hsa_abi.py`` (a compiled C probe
prints sizeof/offsetof/values; a mismatch fails the test).

Ordering of the 32-bit header store (why plain ctypes stores are enough, and where):
an AQL packet becomes visible to the command processor when its header word changes from
INVALID. The body must be globally visible before that, so the header needs a store with
release semantics. ``store_release_u32`` is an aligned 4-byte store through
``ctypes.c_uint32.from_address(...).value``: CPython's ctypes setter copies the 4 bytes with
one ``memcpy`` of constant size, which compilers emit as a single ``mov`` (aligned 32-bit
stores are single-copy atomic on x86-64, so the CP never sees a torn header). The ordering
comes from the architecture: x86-64 (TSO) never makes a store visible before an earlier
store of the same thread, so every earlier body store is visible first; and no compiler can
move the body stores past it, because each is a separate call into the interpreter. That
argument holds on x86-64 only; other machines (arm64: stores may be reordered) are refused
by ``check_store_ordering`` rather than given a weaker guarantee. The header and the setup
field are stored together as one 32-bit word, as ROCr does.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from typing import Any

from reef_rocm.errors import BackendUnavailable, GpuError, UnsupportedError

LIBRARY_NAMES = ("libhsa-runtime64.so.1", "libhsa-runtime64.so")
DEV_KFD = "/dev/kfd"

# --- hsa.h: status ------------------------------------------------------------------------
HSA_STATUS_SUCCESS = 0x0
HSA_STATUS_INFO_BREAK = 0x1
HSA_STATUS_ERROR = 0x1000
HSA_STATUS_ERROR_INVALID_ARGUMENT = 0x1001
HSA_STATUS_ERROR_INVALID_QUEUE_CREATION = 0x1002
HSA_STATUS_ERROR_INVALID_ALLOCATION = 0x1003
HSA_STATUS_ERROR_INVALID_AGENT = 0x1004
HSA_STATUS_ERROR_OUT_OF_RESOURCES = 0x1008
HSA_STATUS_ERROR_NOT_INITIALIZED = 0x100B
HSA_STATUS_ERROR_INVALID_CODE_OBJECT = 0x1010
HSA_STATUS_ERROR_INVALID_SYMBOL_NAME = 0x1013

# --- hsa.h: system, agents ------------------------------------------------------------------
HSA_SYSTEM_INFO_VERSION_MAJOR = 0
HSA_SYSTEM_INFO_VERSION_MINOR = 1
HSA_SYSTEM_INFO_TIMESTAMP_FREQUENCY = 3
HSA_DEVICE_TYPE_CPU = 0
HSA_DEVICE_TYPE_GPU = 1
HSA_AGENT_INFO_NAME = 0  # char[64]; the gfx target ("gfx90a") on ROCr GPU agents
HSA_AGENT_INFO_VENDOR_NAME = 1
HSA_AGENT_INFO_WAVEFRONT_SIZE = 6
HSA_AGENT_INFO_WORKGROUP_MAX_SIZE = 8
HSA_AGENT_INFO_QUEUES_MAX = 12
HSA_AGENT_INFO_QUEUE_MIN_SIZE = 13
HSA_AGENT_INFO_QUEUE_MAX_SIZE = 14
HSA_AGENT_INFO_NODE = 16
HSA_AGENT_INFO_DEVICE = 17
HSA_PROFILE_BASE = 0
HSA_PROFILE_FULL = 1
HSA_DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT = 0

# --- hsa_ext_amd.h: agents, pools, queues ---------------------------------------------------
HSA_AMD_AGENT_INFO_CHIP_ID = 0xA000
HSA_AMD_AGENT_INFO_COMPUTE_UNIT_COUNT = 0xA002
HSA_AMD_AGENT_INFO_DRIVER_NODE_ID = 0xA004
HSA_AMD_AGENT_INFO_BDFID = 0xA006
HSA_AMD_AGENT_INFO_PRODUCT_NAME = 0xA009
HSA_AMD_AGENT_INFO_NUM_SHADER_ENGINES = 0xA00C
HSA_AMD_AGENT_INFO_NUM_SHADER_ARRAYS_PER_SE = 0xA00D
HSA_AMD_AGENT_INFO_DOMAIN = 0xA00F
#: Number of XCCs of the agent. Newer than Debian's ROCm 5.2 header (ROCm 6.x's
#: hsa_ext_amd.h defines it); a runtime that does not know it answers an error, which
#: ``Agent.xcc_count`` turns into 1. The ABI test checks it only where the header has it.
HSA_AMD_AGENT_INFO_NUM_XCC = 0xA111
HSA_AMD_SEGMENT_GLOBAL = 0
HSA_AMD_SEGMENT_READONLY = 1
HSA_AMD_SEGMENT_PRIVATE = 2
HSA_AMD_SEGMENT_GROUP = 3
HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT = 1
HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED = 2
HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED = 4
HSA_AMD_MEMORY_POOL_INFO_SEGMENT = 0
HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS = 1
HSA_AMD_MEMORY_POOL_INFO_SIZE = 2
HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED = 5
HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_GRANULE = 6
HSA_AMD_QUEUE_PRIORITY_LOW = 0
HSA_AMD_QUEUE_PRIORITY_NORMAL = 1
HSA_AMD_QUEUE_PRIORITY_HIGH = 2

# --- hsa.h: queues, signals -------------------------------------------------------------------
HSA_QUEUE_TYPE_MULTI = 0
HSA_QUEUE_TYPE_SINGLE = 1
HSA_SIGNAL_CONDITION_EQ = 0
HSA_SIGNAL_CONDITION_NE = 1
HSA_SIGNAL_CONDITION_LT = 2
HSA_SIGNAL_CONDITION_GTE = 3
HSA_WAIT_STATE_BLOCKED = 0
HSA_WAIT_STATE_ACTIVE = 1

# --- hsa.h: AQL packets ---------------------------------------------------------------------
HSA_PACKET_TYPE_VENDOR_SPECIFIC = 0
HSA_PACKET_TYPE_INVALID = 1
HSA_PACKET_TYPE_KERNEL_DISPATCH = 2
HSA_PACKET_TYPE_BARRIER_AND = 3
HSA_PACKET_TYPE_AGENT_DISPATCH = 4
HSA_PACKET_TYPE_BARRIER_OR = 5
HSA_FENCE_SCOPE_NONE = 0
HSA_FENCE_SCOPE_AGENT = 1
HSA_FENCE_SCOPE_SYSTEM = 2
HSA_PACKET_HEADER_TYPE = 0
HSA_PACKET_HEADER_BARRIER = 8
HSA_PACKET_HEADER_SCACQUIRE_FENCE_SCOPE = 9
HSA_PACKET_HEADER_SCRELEASE_FENCE_SCOPE = 11
HSA_PACKET_HEADER_WIDTH_TYPE = 8
HSA_PACKET_HEADER_WIDTH_BARRIER = 1
HSA_PACKET_HEADER_WIDTH_SCACQUIRE_FENCE_SCOPE = 2
HSA_PACKET_HEADER_WIDTH_SCRELEASE_FENCE_SCOPE = 2
HSA_KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS = 0
HSA_KERNEL_DISPATCH_PACKET_SETUP_WIDTH_DIMENSIONS = 2

# --- hsa.h: code objects -----------------------------------------------------------------------
HSA_EXECUTABLE_SYMBOL_INFO_TYPE = 0
HSA_EXECUTABLE_SYMBOL_INFO_NAME_LENGTH = 1
HSA_EXECUTABLE_SYMBOL_INFO_NAME = 2
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE = 11
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_ALIGNMENT = 12
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE = 13
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE = 14
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_DYNAMIC_CALLSTACK = 15
HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT = 22

#: The size of every AQL packet slot.
AQL_PACKET_SIZE = 64


# --- structs -------------------------------------------------------------------------------------
class Handle(ctypes.Structure):
    """hsa_agent_t, hsa_signal_t, hsa_amd_memory_pool_t, ... : ``struct { uint64_t handle; }``."""

    _fields_ = [("handle", ctypes.c_uint64)]


Agent = Signal = MemoryPool = Executable = CodeObjectReader = ExecutableSymbol = Handle
LoadedCodeObject = Handle


class Queue(ctypes.Structure):
    """hsa_queue_t (the large model: 64-bit base_address)."""

    _fields_ = [
        ("type", ctypes.c_uint32),
        ("features", ctypes.c_uint32),
        ("base_address", ctypes.c_uint64),
        ("doorbell_signal", Handle),
        ("size", ctypes.c_uint32),
        ("reserved1", ctypes.c_uint32),
        ("id", ctypes.c_uint64),
    ]


class KernelDispatchPacket(ctypes.Structure):
    """hsa_kernel_dispatch_packet_t (64 bytes)."""

    _fields_ = [
        ("header", ctypes.c_uint16),
        ("setup", ctypes.c_uint16),
        ("workgroup_size_x", ctypes.c_uint16),
        ("workgroup_size_y", ctypes.c_uint16),
        ("workgroup_size_z", ctypes.c_uint16),
        ("reserved0", ctypes.c_uint16),
        ("grid_size_x", ctypes.c_uint32),
        ("grid_size_y", ctypes.c_uint32),
        ("grid_size_z", ctypes.c_uint32),
        ("private_segment_size", ctypes.c_uint32),
        ("group_segment_size", ctypes.c_uint32),
        ("kernel_object", ctypes.c_uint64),
        ("kernarg_address", ctypes.c_uint64),
        ("reserved2", ctypes.c_uint64),
        ("completion_signal", Handle),
    ]


class BarrierAndPacket(ctypes.Structure):
    """hsa_barrier_and_packet_t (64 bytes); a zero dep_signal handle counts as satisfied."""

    _fields_ = [
        ("header", ctypes.c_uint16),
        ("reserved0", ctypes.c_uint16),
        ("reserved1", ctypes.c_uint32),
        ("dep_signal", Handle * 5),
        ("reserved2", ctypes.c_uint64),
        ("completion_signal", Handle),
    ]


class ProfilingDispatchTime(ctypes.Structure):
    """hsa_amd_profiling_dispatch_time_t: packet start/end in the system clock domain."""

    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64)]


#: ctypes struct -> C type name, for the ABI probe.
STRUCTS = {
    "hsa_agent_t": Handle,
    "hsa_queue_t": Queue,
    "hsa_kernel_dispatch_packet_t": KernelDispatchPacket,
    "hsa_barrier_and_packet_t": BarrierAndPacket,
    "hsa_amd_profiling_dispatch_time_t": ProfilingDispatchTime,
}

#: Names of the constants above, for the ABI probe (each must be an enumerator or macro).
CONSTANT_PREFIXES = ("HSA_",)
#: Constants that Debian's headers may lack (newer ROCm); probed only where defined.
OPTIONAL_CONSTANTS = frozenset({"HSA_AMD_AGENT_INFO_NUM_XCC"})


def constants() -> dict[str, int]:
    """Every HSA_* constant defined here, by name."""
    return {k: v for k, v in globals().items() if k.startswith(CONSTANT_PREFIXES)
            and isinstance(v, int)}


# --- release-ordered stores ---------------------------------------------------------------------

_ORDERED_MACHINES = ("x86_64", "amd64")


def check_store_ordering(machine: str | None = None) -> None:
    """UnsupportedError unless plain aligned stores have release ordering here (x86-64)."""
    m = (machine or platform.machine()).lower()
    if m not in _ORDERED_MACHINES:
        raise UnsupportedError(
            f"the AQL packet writer publishes headers with plain stores, which are release-"
            f"ordered only on x86-64 (TSO); this machine is {m!r}"
        )


def store_release_u32(address: int, value: int) -> None:
    """Aligned 32-bit store, release-ordered after this thread's earlier stores (x86-64;
    see the module docstring)."""
    ctypes.c_uint32.from_address(address).value = value


def load_u32(address: int) -> int:
    return ctypes.c_uint32.from_address(address).value


# --- the library -------------------------------------------------------------------------------

_AGENT_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, Handle, ctypes.c_void_p)
_POOL_CB = ctypes.CFUNCTYPE(ctypes.c_uint32, Handle, ctypes.c_void_p)
_QUEUE_ERR_CB = ctypes.CFUNCTYPE(None, ctypes.c_uint32, ctypes.POINTER(Queue), ctypes.c_void_p)
_SIGNAL_HANDLER = ctypes.CFUNCTYPE(ctypes.c_bool, ctypes.c_int64, ctypes.c_void_p)

_u32, _u64, _i64, _vp = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_int64, ctypes.c_void_p
_size = ctypes.c_size_t
_QP = ctypes.POINTER(Queue)

#: name -> (restype, argtypes)
PROTOTYPES: dict[str, tuple[Any, list[Any]]] = {
    "hsa_init": (_u32, []),
    "hsa_shut_down": (_u32, []),
    "hsa_status_string": (_u32, [_u32, ctypes.POINTER(ctypes.c_char_p)]),
    "hsa_system_get_info": (_u32, [_u32, _vp]),
    "hsa_iterate_agents": (_u32, [_AGENT_CB, _vp]),
    "hsa_agent_get_info": (_u32, [Handle, _u32, _vp]),
    "hsa_amd_agent_iterate_memory_pools": (_u32, [Handle, _POOL_CB, _vp]),
    "hsa_amd_memory_pool_get_info": (_u32, [Handle, _u32, _vp]),
    "hsa_amd_memory_pool_allocate": (_u32, [Handle, _size, _u32, ctypes.POINTER(_vp)]),
    "hsa_amd_memory_pool_free": (_u32, [_vp]),
    "hsa_amd_agents_allow_access": (_u32, [_u32, ctypes.POINTER(Handle),
                                           ctypes.POINTER(_u32), _vp]),
    "hsa_memory_copy": (_u32, [_vp, _vp, _size]),
    "hsa_queue_create": (_u32, [Handle, _u32, _u32, _QUEUE_ERR_CB, _vp, _u32, _u32,
                                ctypes.POINTER(_QP)]),
    "hsa_queue_destroy": (_u32, [_QP]),
    "hsa_queue_load_read_index_scacquire": (_u64, [_QP]),
    "hsa_queue_load_write_index_relaxed": (_u64, [_QP]),
    "hsa_queue_store_write_index_screlease": (None, [_QP, _u64]),
    "hsa_amd_queue_cu_set_mask": (_u32, [_QP, _u32, ctypes.POINTER(_u32)]),
    "hsa_amd_queue_set_priority": (_u32, [_QP, _u32]),
    "hsa_signal_create": (_u32, [_i64, _u32, ctypes.POINTER(Handle), ctypes.POINTER(Handle)]),
    "hsa_signal_destroy": (_u32, [Handle]),
    "hsa_signal_load_scacquire": (_i64, [Handle]),
    "hsa_signal_store_relaxed": (None, [Handle, _i64]),
    "hsa_signal_store_screlease": (None, [Handle, _i64]),
    "hsa_signal_wait_scacquire": (_i64, [Handle, _u32, _i64, _u64, _u32]),
    "hsa_amd_signal_async_handler": (_u32, [Handle, _u32, _i64, _SIGNAL_HANDLER, _vp]),
    "hsa_amd_profiling_set_profiler_enabled": (_u32, [_QP, ctypes.c_int]),
    "hsa_amd_profiling_get_dispatch_time": (_u32, [Handle, Handle,
                                                   ctypes.POINTER(ProfilingDispatchTime)]),
    "hsa_code_object_reader_create_from_memory": (_u32, [_vp, _size,
                                                         ctypes.POINTER(Handle)]),
    "hsa_code_object_reader_destroy": (_u32, [Handle]),
    "hsa_executable_create_alt": (_u32, [_u32, _u32, ctypes.c_char_p, ctypes.POINTER(Handle)]),
    "hsa_executable_load_agent_code_object": (_u32, [Handle, Handle, Handle, ctypes.c_char_p,
                                                     ctypes.POINTER(Handle)]),
    "hsa_executable_freeze": (_u32, [Handle, ctypes.c_char_p]),
    "hsa_executable_destroy": (_u32, [Handle]),
    "hsa_executable_get_symbol_by_name": (_u32, [Handle, ctypes.c_char_p,
                                                 ctypes.POINTER(Handle),
                                                 ctypes.POINTER(Handle)]),
    "hsa_executable_symbol_get_info": (_u32, [Handle, _u32, _vp]),
}

AgentCallback = _AGENT_CB
PoolCallback = _POOL_CB
QueueErrorCallback = _QUEUE_ERR_CB
SignalHandler = _SIGNAL_HANDLER


class Library:
    """libhsa-runtime64 with prototypes set; ``check`` turns a status into GpuError."""

    def __init__(self, cdll: ctypes.CDLL, path: str) -> None:
        self.path = path
        self._cdll = cdll
        missing = []
        for name, (restype, argtypes) in PROTOTYPES.items():
            try:
                fn = getattr(cdll, name)
            except AttributeError:
                missing.append(name)
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            setattr(self, name, fn)
        if missing:
            raise BackendUnavailable(
                f"{path} lacks HSA functions this binding needs: {', '.join(missing)} "
                "(ROCm older than 5.0?)"
            )

    def status_text(self, status: int) -> str:
        text = ctypes.c_char_p()
        try:
            if self.hsa_status_string(status, ctypes.byref(text)) == 0 and text.value:
                return text.value.decode(errors="replace")
        except Exception:  # never hide the original error behind a failing lookup
            pass
        return f"status {status:#x}"

    def check(self, call: str, status: int) -> None:
        if status not in (HSA_STATUS_SUCCESS, HSA_STATUS_INFO_BREAK):
            raise GpuError(call, int(status), self.status_text(status))


def load(path: str | None = None) -> Library:
    """dlopen libhsa-runtime64; BackendUnavailable naming what is missing."""
    candidates = [path] if path else [*LIBRARY_NAMES]
    if not path:
        found = ctypes.util.find_library("hsa-runtime64")
        if found:
            candidates.append(found)
    errors = []
    for name in candidates:
        try:
            return Library(ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL), name)
        except OSError as e:
            errors.append(str(e))
    raise BackendUnavailable(
        "libhsa-runtime64 not found (" + "; ".join(errors) + "): install ROCm's HSA runtime "
        "(Debian/Ubuntu: apt install libhsa-runtime64-1; ROCm: hsa-rocr) or set "
        "LD_LIBRARY_PATH to /opt/rocm/lib"
    )


def missing_kfd_reason(dev_kfd: str = DEV_KFD) -> str | None:
    """Why the HSA runtime cannot initialise on this machine's kernel side, or None."""
    if not os.path.exists(dev_kfd):
        return (f"{dev_kfd} does not exist: no AMD GPU, or the amdgpu driver with KFD "
                "(CONFIG_HSA_AMD) is not loaded")
    if not os.access(dev_kfd, os.R_OK | os.W_OK):
        return f"{dev_kfd} is not readable and writable by this user (join the 'render' group)"
    return None


_loaded: Library | None = None


def library() -> Library:
    """The process's Library, loaded on first use (tests set ``_loaded`` to a stand-in)."""
    global _loaded
    if _loaded is None:
        _loaded = load()
    return _loaded
