"""A host-memory AQL ring and a simulated command processor for the packet-writer tests.

The consumer reads packets from raw ring memory with ``struct`` at the byte offsets of
Debian's hsa.h (checked by test_hsa_abi.py), not through the binding's ctypes classes, so a
packing error in the writer shows up as a wrong field here.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

PACKET = 64
TYPE_INVALID, TYPE_DISPATCH, TYPE_BARRIER_AND = 1, 2, 3


class SimSignals:
    """Signal handles are ints; values live in a dict (what SignalPort needs)."""

    def __init__(self) -> None:
        self.values: dict[int, int] = {}
        self._next = 0x1000

    def create(self, initial: int = 1) -> int:
        self._next += 0x40
        self.values[self._next] = initial
        return self._next

    def load(self, handle: int) -> int:
        return self.values[handle]

    def store_release(self, handle: int, value: int) -> None:
        self.values[handle] = value

    def decrement(self, handle: int) -> None:
        if handle:
            self.values[handle] -= 1


class SimRing:
    """The ring port: a zeroed host buffer whose headers start INVALID, as ROCr leaves
    them, and 64-bit read/write indices."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._mem = np.zeros(size * PACKET + PACKET, dtype=np.uint8)
        base = self._mem.ctypes.data
        self.ring_base = (base + PACKET - 1) // PACKET * PACKET  # 64-byte aligned
        self.view = np.frombuffer(self._mem.data, dtype=np.uint8,
                                  count=size * PACKET, offset=self.ring_base - base)
        for slot in range(size):
            struct.pack_into("<H", self.view, slot * PACKET, TYPE_INVALID)
        self.read = 0
        self.write = 0
        self.doorbell = -1
        self.doorbells = 0

    def load_read_index(self) -> int:
        return self.read

    def load_write_index(self) -> int:
        return self.write

    def store_write_index(self, value: int) -> None:
        self.write = value

    def ring_doorbell(self, index: int) -> None:
        self.doorbell = index
        self.doorbells += 1

    def header_type(self, index: int) -> int:
        return struct.unpack_from("<H", self.view, (index % self.size) * PACKET)[0] & 0xFF


@dataclass
class Packet:
    index: int
    type: int
    barrier: bool
    acquire: int
    release: int
    dims: int = 0
    workgroup: tuple[int, int, int] = (0, 0, 0)
    grid: tuple[int, int, int] = (0, 0, 0)
    private: int = 0
    group: int = 0
    kernel_object: int = 0
    kernarg: int = 0
    deps: tuple[int, ...] = ()
    signal: int = 0


@dataclass
class SimCommandProcessor:
    """Consumes packets in order: a dispatch is fetched (read index + 1) and runs until
    ``complete``; a barrier-AND at the head waits until all its dependencies read 0."""

    ring: SimRing
    signals: SimSignals
    seen: list[Packet] = field(default_factory=list)
    running: dict[int, Packet] = field(default_factory=dict)

    def parse(self, index: int) -> Packet:
        off = (index % self.ring.size) * PACKET
        v = self.ring.view
        hdr = struct.unpack_from("<H", v, off)[0]
        p = Packet(index, hdr & 0xFF, bool(hdr >> 8 & 1), hdr >> 9 & 3, hdr >> 11 & 3)
        if p.type == TYPE_DISPATCH:
            setup, wx, wy, wz, res0 = struct.unpack_from("<5H", v, off + 2)
            assert res0 == 0
            p.dims = setup & 3
            p.workgroup = (wx, wy, wz)
            p.grid = struct.unpack_from("<3I", v, off + 12)
            p.private, p.group = struct.unpack_from("<2I", v, off + 24)
            p.kernel_object, p.kernarg, res2, p.signal = struct.unpack_from("<4Q", v, off + 32)
            assert res2 == 0
        elif p.type == TYPE_BARRIER_AND:
            p.deps = struct.unpack_from("<5Q", v, off + 8)
            p.signal = struct.unpack_from("<Q", v, off + 56)[0]
        return p

    def fetch(self, limit: int = 1 << 30) -> int:
        """Consume up to ``limit`` packets; stop at an INVALID header or an unmet barrier."""
        n = 0
        while n < limit and self.ring.read < self.ring.write:
            p = self.parse(self.ring.read)
            if p.type == TYPE_INVALID:
                break
            if p.type == TYPE_BARRIER_AND:
                if any(d and self.signals.load(d) != 0 for d in p.deps):
                    break
                if p.barrier and self.running:
                    break
                self.signals.decrement(p.signal)
            elif p.type == TYPE_DISPATCH:
                if p.barrier and self.running:
                    break
                self.running[p.index] = p
            else:
                raise AssertionError(f"unexpected packet type {p.type} at {p.index}")
            self.seen.append(p)
            self.ring.read += 1
            n += 1
        return n

    def complete(self, index: int | None = None) -> None:
        """Finish one running dispatch (the oldest by default) or all with index=-1."""
        if index == -1:
            for i in sorted(self.running):
                self.complete(i)
            return
        i = min(self.running) if index is None else index
        self.signals.decrement(self.running.pop(i).signal)

    def driver_reset(self, ring_base: int) -> SimpleNamespace:
        """What RESET_QUEUE does to the queue: stop at the read index, write index := it."""
        assert ring_base == self.ring.ring_base
        r = self.ring.read
        dropped = self.ring.write - r
        self.ring.write = r
        return SimpleNamespace(read_index=r, dropped=dropped)
