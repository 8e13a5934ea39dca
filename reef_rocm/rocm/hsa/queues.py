"""AQL queues created through the runtime: size, priority, CU mask; the ring port the packet
writer drives (read/write index, doorbell)."""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

from reef_rocm.errors import GpuError
from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.runtime import AgentProps, HsaRuntime

PRIORITIES = {
    "low": _ffi.HSA_AMD_QUEUE_PRIORITY_LOW,
    "normal": _ffi.HSA_AMD_QUEUE_PRIORITY_NORMAL,
    "high": _ffi.HSA_AMD_QUEUE_PRIORITY_HIGH,
}


class HsaQueue:
    """One hardware AQL queue of ``agent``: ``size`` packets (a power of two), a priority
    and optionally a CU mask (``hsa_amd_queue_cu_set_mask``: words of 32 logical CU bits,
    see ``cu_mask``). Implements the ring port ``AqlWriter`` needs; ``ring_base`` is the
    address the reef KFD patch's RESET_QUEUE names the queue by."""

    def __init__(self, runtime: HsaRuntime, agent: AgentProps, size: int = 4096,
                 priority: str = "normal", cu_mask_words: Sequence[int] | None = None) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"queue size must be a power of two, got {size}")
        if agent.queue_max_size and not agent.queue_min_size <= size <= agent.queue_max_size:
            raise ValueError(f"queue size {size} outside {agent.name}'s "
                             f"{agent.queue_min_size}..{agent.queue_max_size}")
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be one of {sorted(PRIORITIES)}, got {priority!r}")
        self._lib = lib = runtime.lib
        self.errors: list[int] = []  # statuses the runtime reported for this queue

        def on_error(status: int, _queue: Any, _data: Any) -> None:
            self.errors.append(int(status))

        self._on_error = _ffi.QueueErrorCallback(on_error)  # kept alive with the queue
        out = ctypes.POINTER(_ffi.Queue)()
        # SINGLE: one producer (the writer's lock), which lets the runtime skip atomics
        lib.check("hsa_queue_create", lib.hsa_queue_create(
            _ffi.Handle(agent.handle), size, _ffi.HSA_QUEUE_TYPE_SINGLE, self._on_error, None,
            2**32 - 1, 2**32 - 1, ctypes.byref(out)))  # UINT32_MAX: runtime-default segments
        self._q = out
        self.address = ctypes.addressof(out.contents)  # the hsa_queue_t* kernels may read
        self.size = int(out.contents.size)
        self.ring_base = int(out.contents.base_address)
        self.queue_id = int(out.contents.id)
        self._doorbell = _ffi.Handle(out.contents.doorbell_signal.handle)
        self._ring = lib.hsa_signal_store_screlease
        self._read = lib.hsa_queue_load_read_index_scacquire
        self._write = lib.hsa_queue_load_write_index_relaxed
        self._store_write = lib.hsa_queue_store_write_index_screlease
        self.priority = priority
        try:
            if priority != "normal":
                lib.check("hsa_amd_queue_set_priority",
                          lib.hsa_amd_queue_set_priority(out, PRIORITIES[priority]))
            self.cu_mask_words: tuple[int, ...] | None = None
            if cu_mask_words is not None:
                self.set_cu_mask(cu_mask_words)
        except GpuError:
            self.close()
            raise

    def set_cu_mask(self, words: Sequence[int]) -> None:
        arr = (ctypes.c_uint32 * len(words))(*words)
        self._lib.check("hsa_amd_queue_cu_set_mask",
                        self._lib.hsa_amd_queue_cu_set_mask(self._q, 32 * len(words), arr))
        self.cu_mask_words = tuple(words)

    def enable_profiling(self) -> None:
        """Make the runtime keep start/end timestamps in every packet's signal."""
        self._lib.check("hsa_amd_profiling_set_profiler_enabled",
                        self._lib.hsa_amd_profiling_set_profiler_enabled(self._q, 1))

    @property
    def is_open(self) -> bool:
        return bool(self._q)

    # --- the ring port ------------------------------------------------------------------
    def load_read_index(self) -> int:
        return int(self._read(self._q))

    def load_write_index(self) -> int:
        return int(self._write(self._q))

    def store_write_index(self, value: int) -> None:
        self._store_write(self._q, value)

    def ring_doorbell(self, index: int) -> None:
        self._ring(self._doorbell, index)

    def close(self) -> None:
        if self._q:
            q, self._q = self._q, None
            self._lib.check("hsa_queue_destroy", self._lib.hsa_queue_destroy(q))

    def __enter__(self) -> HsaQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
