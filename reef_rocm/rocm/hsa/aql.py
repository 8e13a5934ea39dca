"""The AQL packet writer: kernel dispatch and barrier-AND packets built in place in a ring,
exact accounting from the read and write indices, and the user-space half of a queue reset.

Publishing one packet (``AqlWriter.dispatch`` / ``barrier_and``), under the writer's lock:

1. the slot at write index ``W`` is free only while ``W - read_index < size``; the writer
   also refuses past its device-queue cap (``QueueFull``), so "how many packets wait in the
   device queue" is exactly ``W - read_index``;
2. the slot's header is set INVALID (a wrapped slot still holds the old packet's valid
   header), then the body (bytes 4..63) is copied from a template packed once;
3. the write index becomes ``W + 1`` (release store), then the 32-bit header+setup word is
   stored with release ordering (see ``_ffi``), then the doorbell is rung with ``W``.

Reserving and publishing happen in one locked call, so no slot is ever reserved and left
unpublished while the lock is free: the state the reset contract requires.

The reset (``AqlWriter.reset``) follows the reef KFD patch's user-space contract:
before the ioctl every producer of the queue is stopped (the writer's lock is held and the
runtime's write index must equal the writer's) and no slot is reserved-unpublished; the
driver returns the read index ``R`` the queue restarts at (write index := ``R``). After it,
for every dropped index in ``[R, W)``: the header is set INVALID, the packet's completion
signal gets the error value ``signals.DROPPED``; a barrier-AND packet that is still live in
any writer of the same ``DependencyRegistry`` and waits on a dropped signal is resolved:
the command processor releases a barrier-AND only when every dependency reads 0, so such a
signal is stored 0 instead and the report lists it as ``released`` (the drop is known from
the report, not from the value). Packets below ``R`` whose completion signal has not reached
0 are reported ``in_flight``: they may still complete, and their signals are left alone.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from reef_rocm.errors import GpuError, ReefError
from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.signals import DROPPED

PACKET = _ffi.AQL_PACKET_SIZE
KIND_NONE, KIND_DISPATCH, KIND_BARRIER = 0, 1, 2
KIND_NAMES = {KIND_DISPATCH: "dispatch", KIND_BARRIER: "barrier_and"}


class QueueFull(ReefError):
    """The ring (or the writer's device-queue cap) has no free slot now."""


class ResetMismatch(GpuError):
    """The driver's reset result contradicts the writer's indices; nothing was changed."""


def header(packet_type: int, barrier: bool = False,
           acquire: int = _ffi.HSA_FENCE_SCOPE_SYSTEM,
           release: int = _ffi.HSA_FENCE_SCOPE_SYSTEM) -> int:
    """The 16-bit AQL header: type, barrier bit, acquire and release fence scopes."""
    return ((packet_type << _ffi.HSA_PACKET_HEADER_TYPE)
            | (int(barrier) << _ffi.HSA_PACKET_HEADER_BARRIER)
            | (acquire << _ffi.HSA_PACKET_HEADER_SCACQUIRE_FENCE_SCOPE)
            | (release << _ffi.HSA_PACKET_HEADER_SCRELEASE_FENCE_SCOPE))


INVALID_HEADER = header(_ffi.HSA_PACKET_TYPE_INVALID, acquire=0, release=0)


class RingPort(Protocol):
    """What the writer needs of a queue: ``HsaQueue`` on hardware, a simulation in tests."""

    ring_base: int  # address of slot 0 (what RESET_QUEUE names the queue by)
    size: int  # packets, a power of two

    def load_read_index(self) -> int: ...
    def load_write_index(self) -> int: ...
    def store_write_index(self, value: int) -> None: ...
    def ring_doorbell(self, index: int) -> None: ...


class SignalPort(Protocol):
    def load(self, handle: int) -> int: ...
    def store_release(self, handle: int, value: int) -> None: ...


class DispatchTemplate:
    """A kernel dispatch packet packed once: launch shape, segment sizes, kernel object and
    kernarg address. ``dims`` is the grid's dimension count (1-3); ``grid`` is in
    work-items, as AQL wants (blocks * block size)."""

    __slots__ = ("packet", "word0", "_body")

    def __init__(self, kernel_object: int, kernarg_address: int, grid: Sequence[int],
                 workgroup: Sequence[int], group_segment_size: int = 0,
                 private_segment_size: int = 0, dims: int | None = None,
                 barrier: bool = False, acquire: int = _ffi.HSA_FENCE_SCOPE_SYSTEM,
                 release: int = _ffi.HSA_FENCE_SCOPE_SYSTEM) -> None:
        g, w = _dim3("grid", grid), _dim3("workgroup", workgroup)
        if any(wi > 0xFFFF for wi in w):
            raise ValueError(f"workgroup {w}: each dimension must fit 16 bits")
        if any(gi > 0xFFFFFFFF for gi in g):
            raise ValueError(f"grid {g}: each dimension must fit 32 bits (work-items)")
        if any(gi < wi for gi, wi in zip(g, w, strict=True)):
            raise ValueError(f"grid {g} smaller than workgroup {w} in some dimension")
        if dims is None:
            dims = 3 if g[2] > 1 or w[2] > 1 else 2 if g[1] > 1 or w[1] > 1 else 1
        if dims not in (1, 2, 3):
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        if not kernel_object:
            raise ValueError("kernel_object is 0")
        p = _ffi.KernelDispatchPacket()
        p.header = INVALID_HEADER
        p.setup = dims << _ffi.HSA_KERNEL_DISPATCH_PACKET_SETUP_DIMENSIONS
        p.workgroup_size_x, p.workgroup_size_y, p.workgroup_size_z = w
        p.grid_size_x, p.grid_size_y, p.grid_size_z = g
        p.private_segment_size = private_segment_size
        p.group_segment_size = group_segment_size
        p.kernel_object = kernel_object
        p.kernarg_address = kernarg_address
        self.packet = p
        self.word0 = (header(_ffi.HSA_PACKET_TYPE_KERNEL_DISPATCH, barrier, acquire, release)
                      | p.setup << 16)
        self._body = ctypes.addressof(p) + 4

    def set_kernarg(self, address: int) -> None:
        self.packet.kernarg_address = address


def _dim3(what: str, v: Sequence[int]) -> tuple[int, int, int]:
    dims = tuple(int(x) for x in v)
    if not 1 <= len(dims) <= 3 or any(x < 1 for x in dims):
        raise ValueError(f"{what} must be 1-3 positive ints, got {v!r}")
    return (*dims, *(1,) * (3 - len(dims)))  # type: ignore[return-value]


@dataclass(frozen=True)
class DroppedPacket:
    index: int
    kind: str  # "dispatch" | "barrier_and"
    tag: Any  # what the caller passed with the packet
    signal: int  # completion signal handle (0: none)


@dataclass(frozen=True)
class ResetReport:
    ring_base: int
    read_index: int  # where the queue restarts; the write index now equals it
    write_index_before: int
    driver_dropped: int  # what the driver counted
    dropped: tuple[DroppedPacket, ...]
    in_flight: tuple[int, ...]  # indices below read_index not known complete: may complete
    errored_signals: tuple[int, ...]  # completion signals now holding DROPPED
    released_signals: tuple[int, ...]  # dropped signals stored 0 to release live barriers
    resolved_barriers: tuple[tuple[Hashable, int], ...]  # (writer name, index) released

    @property
    def dropped_tags(self) -> list[Any]:
        return [d.tag for d in self.dropped]


class DependencyRegistry:
    """Which live barrier-AND packets wait on which signals, across the writers of one
    device, so a reset of one queue can resolve barriers in the others."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # signal -> {(writer name, index): barrier completion signal}
        self._waiters: dict[int, dict[tuple[Hashable, int], int]] = {}
        # barrier completion signal -> the barriers it belongs to
        self._by_completion: dict[int, set[tuple[Hashable, int]]] = {}

    def add(self, writer: Hashable, index: int, deps: Sequence[int], completion: int) -> None:
        key = (writer, index)
        with self._lock:
            for dep in deps:
                if dep:
                    self._waiters.setdefault(dep, {})[key] = completion
            if completion:
                self._by_completion.setdefault(completion, set()).add(key)

    def forget(self, writer: Hashable, index: int) -> None:
        key = (writer, index)
        with self._lock:
            for waiters in self._waiters.values():
                waiters.pop(key, None)

    def retire(self, completion: int) -> None:
        """``completion`` is being given to a new packet, so every barrier that used it as
        its completion signal is finished: they wait on nothing any more."""
        if completion not in self._by_completion:
            return
        with self._lock:
            for key in self._by_completion.pop(completion, ()):
                for waiters in self._waiters.values():
                    waiters.pop(key, None)

    def live_waiters(self, signal: int, signals: SignalPort,
                     exclude: set[tuple[Hashable, int]]) -> list[tuple[Hashable, int]]:
        """Barriers waiting on ``signal`` that have not completed (a barrier without a
        completion signal counts as live: releasing a passed barrier is harmless)."""
        with self._lock:
            waiters = self._waiters.get(signal, {})
            done = [k for k, c in waiters.items() if c and signals.load(c) <= 0]
            for k in done:
                del waiters[k]
            return [k for k in waiters if k not in exclude]


class AqlWriter:
    """The only producer of one AQL queue (``port``); see the module docstring."""

    def __init__(self, port: RingPort, signals: SignalPort, cap: int | None = None,
                 name: Hashable = None, registry: DependencyRegistry | None = None) -> None:
        _ffi.check_store_ordering()
        size = int(port.size)
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring size must be a power of two, got {size}")
        self.port = port
        self.signals = signals
        self.size = size
        self.cap = size if cap is None else cap
        if not 1 <= self.cap <= size:
            raise ValueError(f"device-queue cap must be 1..{size}, got {cap}")
        self.name = name if name is not None else port.ring_base
        self.registry = registry if registry is not None else DependencyRegistry()
        self.ring_base = int(port.ring_base)
        self._lock = threading.RLock()  # a batch holds it across its packets
        self._write = int(port.load_write_index())
        # the read index only grows between resets: a cached value that already shows room
        # proves room, so the hardware index is re-read only when the cache says full
        self._read_seen = int(port.load_read_index())
        # per-slot bookkeeping, preallocated: which index the record is for, kind, signal,
        # caller tag
        self._index = [-1] * size
        self._kind = [KIND_NONE] * size
        self._signal = [0] * size
        self._tag: list[Any] = [None] * size
        self._barrier_tpl = _ffi.BarrierAndPacket()
        self._barrier_body = ctypes.addressof(self._barrier_tpl) + 4

    # --- accounting ----------------------------------------------------------------------
    @property
    def write_index(self) -> int:
        """Packets published so far (64-bit, never wraps)."""
        return self._write

    def read_index(self) -> int:
        """Packets the command processor has consumed."""
        return int(self.port.load_read_index())

    def waiting(self) -> int:
        """Packets published and not yet consumed: exactly what sits in the device queue."""
        return self._write - self.read_index()

    def free(self) -> int:
        """Packets that may be published now without passing the cap."""
        return self.cap - self.waiting()

    def tag_of(self, index: int) -> Any:
        slot = index & (self.size - 1)
        return self._tag[slot] if self._index[slot] == index else None

    def signal_of(self, index: int) -> int:
        """Completion signal of packet ``index`` while the writer still knows it, else 0."""
        slot = index & (self.size - 1)
        return self._signal[slot] if index >= 0 and self._index[slot] == index else 0

    # --- publishing -----------------------------------------------------------------------
    def _reserve(self) -> int:
        w = self._write
        if w - self._read_seen >= self.cap:
            self._read_seen = int(self.port.load_read_index())
        if w - self._read_seen >= self.cap:
            raise QueueFull(f"queue at {self.ring_base:#x}: {self.cap} packets already wait "
                            f"(cap {self.cap}, ring {self.size})")
        return w

    def _publish(self, w: int, slot_addr: int, word0: int, ring: bool) -> None:
        self.port.store_write_index(w + 1)
        _ffi.store_release_u32(slot_addr, word0)
        self._write = w + 1
        if ring:
            self.port.ring_doorbell(w)

    def dispatch(self, tpl: DispatchTemplate, signal: int = 0, tag: Any = None,
                 ring: bool = True) -> int:
        """Publish one kernel dispatch; ``signal`` (a handle, 0 for none) is decremented by
        the command processor when it completes. Returns the packet's index."""
        with self._lock:
            w = self._reserve()
            slot = w & (self.size - 1)
            addr = self.ring_base + slot * PACKET
            ctypes.c_uint32.from_address(addr).value = INVALID_HEADER
            ctypes.memmove(addr + 4, tpl._body, PACKET - 4)
            ctypes.c_uint64.from_address(addr + 56).value = signal
            self._record(slot, w, KIND_DISPATCH, signal, tag)
            self._publish(w, addr, tpl.word0, ring)
            return w

    def dispatch_batch(self, tpls: Sequence[DispatchTemplate], signal: int = 0,
                       tags: Sequence[Any] | None = None) -> list[int]:
        """Publish several dispatches and ring once. With one completion signal for the
        batch, it must start at ``len(tpls)``: every packet decrements it."""
        if tags is not None and len(tags) != len(tpls):
            raise ValueError("tags and templates differ in length")
        with self._lock:
            if self.waiting() + len(tpls) > self.cap:
                raise QueueFull(f"queue at {self.ring_base:#x}: batch of {len(tpls)} does not "
                                f"fit ({self.free()} free under cap {self.cap})")
            out = [self.dispatch(t, signal, tags[i] if tags else None, ring=False)
                   for i, t in enumerate(tpls)]
            if out:
                self.port.ring_doorbell(out[-1])
            return out

    def barrier_and(self, deps: Sequence[int], signal: int = 0, tag: Any = None,
                    barrier: bool = False, ring: bool = True) -> int:
        """Publish a barrier-AND packet waiting until every signal in ``deps`` (up to 5
        handles) reads 0; ``barrier`` also waits for this queue's earlier packets."""
        if len(deps) > 5:
            raise ValueError(f"a barrier-AND packet takes at most 5 signals, got {len(deps)}")
        with self._lock:
            w = self._reserve()
            slot = w & (self.size - 1)
            addr = self.ring_base + slot * PACKET
            b = self._barrier_tpl
            for i in range(5):
                b.dep_signal[i].handle = deps[i] if i < len(deps) else 0
            b.completion_signal.handle = signal
            ctypes.c_uint32.from_address(addr).value = INVALID_HEADER
            ctypes.memmove(addr + 4, self._barrier_body, PACKET - 4)
            self._record(slot, w, KIND_BARRIER, signal, tag)
            self.registry.add(self.name, w, deps, signal)
            self._publish(w, addr, header(_ffi.HSA_PACKET_TYPE_BARRIER_AND, barrier), ring)
            return w

    def _record(self, slot: int, index: int, kind: int, signal: int, tag: Any) -> None:
        if signal:
            self.registry.retire(signal)
        old = self._index[slot]
        if old >= 0 and self._kind[slot] == KIND_BARRIER:
            self.registry.forget(self.name, old)
        self._index[slot] = index
        self._kind[slot] = kind
        self._signal[slot] = signal
        self._tag[slot] = tag

    # --- reset --------------------------------------------------------------------------
    def reset(self, driver_reset: Callable[[int], Any]) -> ResetReport:
        """Drop what the queue has not consumed through ``driver_reset(ring_base)`` (the
        reef KFD patch's RESET_QUEUE: returns ``read_index`` and ``dropped``), then apply
        the user-space half of the contract. See the module docstring."""
        with self._lock:  # every producer of this queue goes through this lock: stopped
            w = self._write
            runtime_w = int(self.port.load_write_index())
            if runtime_w != w:
                raise ResetMismatch(
                    "reset", 0, f"queue at {self.ring_base:#x}: the runtime's write index "
                    f"{runtime_w} differs from the writer's {w}: another producer is "
                    "active; not resetting")
            result = driver_reset(self.ring_base)
            r, driver_dropped = int(result.read_index), int(result.dropped)
            if not w - self.size <= r <= w:
                raise ResetMismatch(
                    "reset", 0, f"driver restarted the queue at read index {r}, outside the "
                    f"last ring's worth of published packets ({w - self.size}..{w})")
            if int(self.port.load_write_index()) != r:
                self.port.store_write_index(r)  # the contract: write index := read index
            dropped = []
            dropped_keys = set()
            for index in range(r, w):
                slot = index & (self.size - 1)
                addr = self.ring_base + slot * PACKET
                _ffi.store_release_u32(addr, INVALID_HEADER)
                kind = self._kind[slot] if self._index[slot] == index else KIND_NONE
                dropped.append(DroppedPacket(index, KIND_NAMES.get(kind, "unknown"),
                                             self._tag[slot], self._signal[slot]))
                if kind == KIND_BARRIER:
                    dropped_keys.add((self.name, index))
                    self.registry.forget(self.name, index)
                self._index[slot], self._kind[slot] = -1, KIND_NONE
                self._signal[slot], self._tag[slot] = 0, None
            errored, released, resolved = [], [], []
            for sig in dict.fromkeys(d.signal for d in dropped if d.signal):
                waiters = self.registry.live_waiters(sig, self.signals, dropped_keys)
                if waiters:
                    self.signals.store_release(sig, 0)
                    released.append(sig)
                    resolved.extend(waiters)
                else:
                    self.signals.store_release(sig, DROPPED)
                    errored.append(sig)
            in_flight = tuple(
                i for i in range(max(0, r - self.size), r)
                if self._index[i & (self.size - 1)] == i
                and self._signal[i & (self.size - 1)]
                and self.signals.load(self._signal[i & (self.size - 1)]) > 0)
            self._write = r
            self._read_seen = r
            return ResetReport(self.ring_base, r, w, driver_dropped, tuple(dropped), in_flight,
                               tuple(errored), tuple(released), tuple(dict.fromkeys(resolved)))
