"""Memory pools (device, kernarg, fine-grained host) and allocations from them."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import BackendUnavailable
from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.runtime import AgentProps, HsaRuntime


@dataclass(frozen=True)
class PoolInfo:
    handle: int
    agent: int  # the agent whose pool it is
    segment: int
    global_flags: int
    size: int
    alloc_allowed: bool
    granule: int

    @property
    def is_global(self) -> bool:
        return self.segment == _ffi.HSA_AMD_SEGMENT_GLOBAL

    @property
    def kernarg(self) -> bool:
        return self.is_global and bool(self.global_flags
                                       & _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_KERNARG_INIT)

    @property
    def fine_grained(self) -> bool:
        return self.is_global and bool(self.global_flags
                                       & _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_FINE_GRAINED)

    @property
    def coarse_grained(self) -> bool:
        return self.is_global and bool(self.global_flags
                                       & _ffi.HSA_AMD_MEMORY_POOL_GLOBAL_FLAG_COARSE_GRAINED)


def pools(runtime: HsaRuntime, agent: AgentProps) -> list[PoolInfo]:
    lib = runtime.lib
    handles: list[int] = []

    def collect(pool: _ffi.Handle, _data: Any) -> int:
        handles.append(pool.handle)
        return _ffi.HSA_STATUS_SUCCESS

    cb = _ffi.PoolCallback(collect)
    lib.check("hsa_amd_agent_iterate_memory_pools",
              lib.hsa_amd_agent_iterate_memory_pools(_ffi.Handle(agent.handle), cb, None))

    def info(h: int, attr: int, ctype: Any) -> int:
        v = ctype()
        lib.check("hsa_amd_memory_pool_get_info",
                  lib.hsa_amd_memory_pool_get_info(_ffi.Handle(h), attr, ctypes.byref(v)))
        return int(v.value)

    return [PoolInfo(
        handle=h, agent=agent.handle,
        segment=info(h, _ffi.HSA_AMD_MEMORY_POOL_INFO_SEGMENT, ctypes.c_uint32),
        global_flags=info(h, _ffi.HSA_AMD_MEMORY_POOL_INFO_GLOBAL_FLAGS, ctypes.c_uint32),
        size=info(h, _ffi.HSA_AMD_MEMORY_POOL_INFO_SIZE, ctypes.c_size_t),
        alloc_allowed=bool(info(h, _ffi.HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_ALLOWED,
                                ctypes.c_bool)),
        granule=info(h, _ffi.HSA_AMD_MEMORY_POOL_INFO_RUNTIME_ALLOC_GRANULE, ctypes.c_size_t),
    ) for h in handles]


@dataclass(frozen=True)
class PoolSet:
    """The three pools the queue manager allocates from."""

    device: PoolInfo  # GPU-local, coarse-grained: buffers
    kernarg: PoolInfo  # system memory with KERNARG_INIT: kernel argument segments
    fine_host: PoolInfo  # fine-grained system memory: flags the host and kernels share

    @classmethod
    def find(cls, runtime: HsaRuntime, gpu: AgentProps, cpu: AgentProps) -> PoolSet:
        gpu_pools = [p for p in pools(runtime, gpu) if p.alloc_allowed]
        cpu_pools = [p for p in pools(runtime, cpu) if p.alloc_allowed]
        device = next((p for p in gpu_pools if p.coarse_grained), None)
        kernarg = next((p for p in cpu_pools if p.kernarg), None)
        # ROCr's kernarg pool is fine-grained too; leave it to kernargs where another exists
        fine = next((p for p in cpu_pools if p.fine_grained and not p.kernarg),
                    next((p for p in cpu_pools if p.fine_grained), None))
        missing = [n for n, p in (("device (coarse-grained GPU)", device),
                                  ("kernarg", kernarg),
                                  ("fine-grained host", fine)) if p is None]
        if missing:
            raise BackendUnavailable(f"{gpu.name}: the HSA runtime offers no "
                                     f"{', '.join(missing)} memory pool")
        return cls(device, kernarg, fine)  # type: ignore[arg-type]


class PoolAllocation:
    """``nbytes`` from ``pool``, made accessible to ``agents``; ``close()`` frees it."""

    def __init__(self, runtime: HsaRuntime, pool: PoolInfo, nbytes: int,
                 agents: Sequence[AgentProps] = ()) -> None:
        if nbytes <= 0:
            raise ValueError(f"allocation size must be positive, got {nbytes}")
        self._lib = runtime.lib
        ptr = ctypes.c_void_p()
        self._lib.check("hsa_amd_memory_pool_allocate", self._lib.hsa_amd_memory_pool_allocate(
            _ffi.Handle(pool.handle), nbytes, 0, ctypes.byref(ptr)))
        self.ptr = int(ptr.value or 0)
        self.nbytes = nbytes
        if agents:
            handles = (_ffi.Handle * len(agents))(*[_ffi.Handle(a.handle) for a in agents])
            try:
                status = self._lib.hsa_amd_agents_allow_access(
                    len(agents), handles, None, ctypes.c_void_p(self.ptr))
                self._lib.check("hsa_amd_agents_allow_access", status)
            except Exception:
                self.close()
                raise

    def close(self) -> None:
        if self.ptr:
            ptr, self.ptr = self.ptr, 0
            self._lib.check("hsa_amd_memory_pool_free",
                            self._lib.hsa_amd_memory_pool_free(ctypes.c_void_p(ptr)))

    def __enter__(self) -> PoolAllocation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def copy(runtime: HsaRuntime, dst: int, src: int, nbytes: int) -> None:
    """Synchronous copy between any two addresses the runtime knows (hsa_memory_copy)."""
    runtime.lib.check("hsa_memory_copy", runtime.lib.hsa_memory_copy(
        ctypes.c_void_p(dst), ctypes.c_void_p(src), nbytes))
