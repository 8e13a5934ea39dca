"""Code objects: an HSACO read from memory, loaded into a frozen executable for one agent;
kernel symbols with their kernel object and segment sizes."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import GpuError
from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.runtime import AgentProps, HsaRuntime


@dataclass(frozen=True)
class KernelSymbol:
    """What a dispatch packet needs from the code object for one kernel."""

    name: str
    kernel_object: int
    kernarg_size: int
    kernarg_alignment: int
    group_segment_size: int  # static LDS bytes per work-group
    private_segment_size: int  # scratch bytes per work-item
    dynamic_callstack: bool


class CodeObject:
    """``image`` (HSACO bytes) loaded for ``agent``; ``close()`` destroys the executable."""

    def __init__(self, runtime: HsaRuntime, agent: AgentProps, image: bytes) -> None:
        if not image:
            raise ValueError("empty code object image")
        self._lib = lib = runtime.lib
        self._image = ctypes.create_string_buffer(bytes(image), len(image))  # kept alive
        self._agent = _ffi.Handle(agent.handle)
        self._reader = _ffi.Handle()
        self._exe = _ffi.Handle()
        lib.check("hsa_code_object_reader_create_from_memory",
                  lib.hsa_code_object_reader_create_from_memory(
                      self._image, len(image), ctypes.byref(self._reader)))
        try:
            lib.check("hsa_executable_create_alt", lib.hsa_executable_create_alt(
                _ffi.HSA_PROFILE_FULL, _ffi.HSA_DEFAULT_FLOAT_ROUNDING_MODE_DEFAULT, None,
                ctypes.byref(self._exe)))
            lib.check("hsa_executable_load_agent_code_object",
                      lib.hsa_executable_load_agent_code_object(
                          self._exe, self._agent, self._reader, None, None))
            lib.check("hsa_executable_freeze", lib.hsa_executable_freeze(self._exe, None))
        except GpuError:
            self.close()
            raise
        self._symbols: dict[str, KernelSymbol] = {}

    def kernel(self, name: str) -> KernelSymbol:
        """The kernel ``name`` (code object v3+ names its descriptor ``name.kd``)."""
        sym = self._symbols.get(name)
        if sym is None:
            sym = self._symbols[name] = self._lookup(name)
        return sym

    def _lookup(self, name: str) -> KernelSymbol:
        lib = self._lib
        handle = _ffi.Handle()
        status = _ffi.HSA_STATUS_ERROR_INVALID_SYMBOL_NAME
        for candidate in (f"{name}.kd", name):
            status = lib.hsa_executable_get_symbol_by_name(
                self._exe, candidate.encode(), ctypes.byref(self._agent), ctypes.byref(handle))
            if status == _ffi.HSA_STATUS_SUCCESS:
                break
        lib.check(f"hsa_executable_get_symbol_by_name({name!r})", status)

        def info(attr: int, ctype: Any) -> int:
            v = ctype()
            lib.check("hsa_executable_symbol_get_info",
                      lib.hsa_executable_symbol_get_info(handle, attr, ctypes.byref(v)))
            return int(v.value)

        return KernelSymbol(
            name=name,
            kernel_object=info(_ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_OBJECT, ctypes.c_uint64),
            kernarg_size=info(_ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_SIZE,
                              ctypes.c_uint32),
            kernarg_alignment=info(
                _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_KERNARG_SEGMENT_ALIGNMENT,
                ctypes.c_uint32),
            group_segment_size=info(_ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_GROUP_SEGMENT_SIZE,
                                    ctypes.c_uint32),
            private_segment_size=info(
                _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_PRIVATE_SEGMENT_SIZE, ctypes.c_uint32),
            dynamic_callstack=bool(info(
                _ffi.HSA_EXECUTABLE_SYMBOL_INFO_KERNEL_DYNAMIC_CALLSTACK, ctypes.c_bool)),
        )

    def close(self) -> None:
        lib = self._lib
        if self._exe.handle:
            exe, self._exe = self._exe, _ffi.Handle()
            lib.check("hsa_executable_destroy", lib.hsa_executable_destroy(exe))
        if self._reader.handle:
            reader, self._reader = self._reader, _ffi.Handle()
            lib.check("hsa_code_object_reader_destroy", lib.hsa_code_object_reader_destroy(reader))
        self._symbols = {}

    def __enter__(self) -> CodeObject:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
