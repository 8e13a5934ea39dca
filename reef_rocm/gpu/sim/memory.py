"""The simulated address space: real bytes behind fake device addresses.

Every allocation is a zero-filled numpy uint8 array at an address of its own; addresses are
never reused, so a stale pointer faults instead of silently hitting a newer buffer. Kernels,
write-values, copies and memsets all go through ``read``/``write`` here, so preempt flags and
completion slots are ordinary memory, exactly as on a GPU.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

import numpy as np

from reef_rocm.errors import GpuError

DEVICE_BASE = 0x7F00_0000_0000  # device allocations
HOST_MAPPED_BASE = 0x7E00_0000_0000  # pinned host memory mapped for the GPU
ALIGN = 256  # hipMalloc/cuMemAlloc alignment
GUARD = 4096  # gap between allocations so an overrun of one never lands in the next


@dataclass(eq=False)
class Allocation:
    start: int
    nbytes: int
    kind: str  # "device" | "host_mapped"
    data: np.ndarray = field(repr=False)
    freed: bool = False

    @property
    def end(self) -> int:
        return self.start + self.nbytes


class SimMemory:
    """Byte-addressable simulated memory with a cap on live device bytes."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.live_bytes = 0
        self._next = {"device": DEVICE_BASE, "host_mapped": HOST_MAPPED_BASE}
        self._starts: list[int] = []  # sorted; the map is append-only (addresses not reused)
        self._allocs: list[Allocation] = []

    def allocate(self, nbytes: int, kind: str = "device") -> Allocation:
        if not isinstance(nbytes, int) or nbytes <= 0:
            raise ValueError(f"allocation size must be a positive int, got {nbytes!r}")
        if kind == "device" and self.live_bytes + nbytes > self.capacity:
            raise GpuError(
                "sim.alloc",
                2,
                f"out of memory (simulated): {nbytes} bytes requested, "
                f"{self.capacity - self.live_bytes} of {self.capacity} free",
            )
        start = self._next[kind]
        self._next[kind] = (start + nbytes + GUARD + ALIGN - 1) // ALIGN * ALIGN
        a = Allocation(start, nbytes, kind, np.zeros(nbytes, dtype=np.uint8))
        i = bisect.bisect(self._starts, start)
        self._starts.insert(i, start)
        self._allocs.insert(i, a)
        if kind == "device":
            self.live_bytes += nbytes
        return a

    def free(self, a: Allocation) -> None:
        if a.freed:
            return
        a.freed = True
        if a.kind == "device":
            self.live_bytes -= a.nbytes

    def find(self, addr: int) -> Allocation | None:
        """The live allocation containing ``addr``, or None."""
        i = bisect.bisect(self._starts, addr) - 1
        if i < 0:
            return None
        a = self._allocs[i]
        if a.freed or not a.start <= addr < a.end:
            return None
        return a

    def resolve(self, addr: int, nbytes: int, what: str = "access") -> tuple[Allocation, int]:
        a = self.find(addr)
        if a is None:
            raise GpuError(
                "sim.memory",
                700,
                f"memory fault (simulated): {what} of {nbytes} bytes at {addr:#x} is not inside "
                "any live allocation",
            )
        off = addr - a.start
        if off + nbytes > a.nbytes:
            raise GpuError(
                "sim.memory",
                700,
                f"memory fault (simulated): {what} of {nbytes} bytes at {addr:#x} runs past the "
                f"end of a {a.nbytes}-byte allocation at {a.start:#x}",
            )
        return a, off

    def view(self, addr: int, nbytes: int, what: str = "access") -> np.ndarray:
        a, off = self.resolve(addr, nbytes, what)
        return a.data[off : off + nbytes]

    def read(self, addr: int, nbytes: int) -> bytes:
        return self.view(addr, nbytes, "read").tobytes()

    def write(self, addr: int, data: bytes | bytearray | memoryview | np.ndarray) -> None:
        src = np.frombuffer(memoryview(data).cast("B"), dtype=np.uint8)
        self.view(addr, src.size, "write")[:] = src

    def read_u32(self, addr: int) -> int:
        return int(self.view(addr, 4, "read").view("<u4")[0])

    def write_u32(self, addr: int, value: int) -> None:
        self.view(addr, 4, "write").view("<u4")[0] = value & 0xFFFFFFFF

    def add_u32(self, addr: int, delta: int = 1) -> int:
        """Atomic add (atomic because the model is single-threaded); returns the old value."""
        v = self.view(addr, 4, "atomic add").view("<u4")
        old = int(v[0])
        v[0] = (old + delta) & 0xFFFFFFFF
        return old
