"""HSA signals: create, load, store, wait; and the signal operations the packet writer uses.

A completion signal starts at 1 (or at N for a batch of N packets); the command processor
decrements it when a packet completes, so 0 means done. The queue manager writes
:data:`DROPPED` (negative) into the signal of a packet that a queue reset dropped: a waiter
for "value < 1" wakes either way and tells done from dropped by the sign.
"""

from __future__ import annotations

import ctypes
from typing import Any

from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.runtime import HsaRuntime

#: The error value a dropped packet's completion signal is given.
DROPPED = -1


class SignalOps:
    """Load/store on signal handles through libhsa-runtime64 (what AqlWriter calls)."""

    def __init__(self, lib: Any) -> None:
        self._load = lib.hsa_signal_load_scacquire
        self._store = lib.hsa_signal_store_screlease
        self._relaxed = lib.hsa_signal_store_relaxed

    def load(self, handle: int) -> int:
        return int(self._load(_ffi.Handle(handle)))

    def store_release(self, handle: int, value: int) -> None:
        self._store(_ffi.Handle(handle), value)

    def store_relaxed(self, handle: int, value: int) -> None:
        self._relaxed(_ffi.Handle(handle), value)


class HsaSignal:
    """One signal; ``close()`` destroys it."""

    def __init__(self, runtime: HsaRuntime, initial: int = 1) -> None:
        self._lib = runtime.lib
        out = _ffi.Handle()
        self._lib.check("hsa_signal_create",
                        self._lib.hsa_signal_create(initial, 0, None, ctypes.byref(out)))
        self.handle = int(out.handle)

    @property
    def value(self) -> int:
        return int(self._lib.hsa_signal_load_scacquire(_ffi.Handle(self.handle)))

    def store(self, value: int) -> None:
        """Release store (what a producer uses to publish)."""
        self._lib.hsa_signal_store_screlease(_ffi.Handle(self.handle), value)

    def wait_below(self, value: int = 1, timeout_ns: int = 2**64 - 1,
                   active: bool = False) -> int:
        """Wait until the signal is below ``value`` (by default: done or dropped) or the
        timeout hint passes; returns the value observed."""
        state = _ffi.HSA_WAIT_STATE_ACTIVE if active else _ffi.HSA_WAIT_STATE_BLOCKED
        return int(self._lib.hsa_signal_wait_scacquire(
            _ffi.Handle(self.handle), _ffi.HSA_SIGNAL_CONDITION_LT, value, timeout_ns, state))

    def close(self) -> None:
        if self.handle:
            h, self.handle = self.handle, 0
            self._lib.check("hsa_signal_destroy", self._lib.hsa_signal_destroy(_ffi.Handle(h)))

    def __enter__(self) -> HsaSignal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
