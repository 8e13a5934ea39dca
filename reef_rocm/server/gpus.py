"""One GPU of the server: its device and its scheduler (thread, preempt flag, streams).

The service talks to GPUs only through ``GpuWorker`` (load, submit, unload, status), so the
scheduler's in-process API is the one contract between them. A worker that hits a device
fault stops serving and says why; the server's other GPUs carry on.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from typing import Any

from reef_rocm.errors import GpuError, ReefError

log = logging.getLogger("reef.serve")


class GpuFailed(ReefError):
    """The GPU this model lives on stopped serving (device fault, scheduler error)."""


class LoadFailed(ReefError):
    """The driver refused this model (the GPU itself still serves)."""


def memory_in_use(device: Any) -> int:
    """Device bytes allocated through this process's allocator, or -1 where the backend has
    no such accounting (the sim keeps exact books: docs/sim.md, Memory)."""
    mem = getattr(device, "memory", None)
    live = getattr(mem, "live_bytes", None)
    return int(live) if isinstance(live, int) else -1


class GpuWorker:
    """``index``: the server's GPU number (position in --gpus)."""

    def __init__(self, index: int, device: Any, options: Any) -> None:
        from reef_rocm.sched import Scheduler

        self.index = index
        self.device = device
        self.options = options
        self.error: str = ""
        self._lock = threading.Lock()
        self.sched = Scheduler(device, options)

    # ------------------------------------------------------------------ state
    @property
    def healthy(self) -> bool:
        return not self.error

    def fail(self, exc: BaseException | str) -> None:
        with self._lock:
            if not self.error:
                self.error = str(exc) or type(exc).__name__
                log.error("GPU %d (%s) stopped serving: %s", self.index, self.name, self.error)

    @property
    def name(self) -> str:
        return self.device.info.name

    def check(self) -> None:
        if self.error:
            raise GpuFailed(f"GPU {self.index} ({self.name}) stopped serving: {self.error}")

    # ------------------------------------------------------------------ scheduler calls
    def load(self, package: Any, priority: str, client: str) -> Any:
        self.check()
        try:
            return self.sched.load(package, priority=priority, client=client)
        except GpuError as e:
            if _out_of_memory(e):
                raise  # the GPU is fine; this model does not fit
            try:  # a driver error at load is the package's, unless the scheduler died of it
                self.sched.status()
            except Exception:  # noqa: BLE001
                self.fail(e)
                raise GpuFailed(f"GPU {self.index} ({self.name}) failed loading: {e}") from e
            raise LoadFailed(f"GPU {self.index} could not load {package.name}: {e}") from e

    def submit(self, handle: Any, inputs: list[Any]) -> Future:
        self.check()
        fut = self.sched.submit(handle, inputs)
        fut.add_done_callback(self._watch)
        return fut

    def _watch(self, fut: Future) -> None:
        # a request fails through its future only when the scheduler itself failed (bad
        # inputs are refused by submit() before they are queued): the GPU stops serving
        if fut.cancelled() or self._closing:
            return
        exc = fut.exception()
        if exc is not None:
            self.fail(exc)

    _closing = False

    def unload(self, handle: Any) -> None:
        if self.error:
            return  # the scheduler is gone; close() frees what it held
        self.sched.unload(handle)

    def status(self) -> Any | None:
        if self.error:
            return None
        try:
            return self.sched.status()
        except ReefError as e:
            self.fail(e)
            return None

    def memory_in_use(self) -> int:
        return memory_in_use(self.device)

    def close(self) -> None:
        """Finish or cancel in-flight work (their futures get an exception), free every model
        instance, close the device."""
        self._closing = True
        try:
            self.sched.close()
        except Exception as e:  # noqa: BLE001 - a failed GPU must not stop the others' shutdown
            log.warning("GPU %d: scheduler close: %s", self.index, e)
        try:
            self.device.close()
        except Exception as e:  # noqa: BLE001
            log.warning("GPU %d: device close: %s", self.index, e)


def _out_of_memory(e: GpuError) -> bool:
    text = str(e).lower()
    return "out of memory" in text or e.code == 2  # CUDA_ERROR_OUT_OF_MEMORY, hipErrorOutOfMemory
