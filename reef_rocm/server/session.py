"""What one client session owns on the server: its models, its shared-memory regions and its
in-flight inferences. Everything a request names is looked up here, in the caller's own
session, so ids of another session are simply unknown to it."""

from __future__ import annotations

import itertools
import queue
import secrets
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reef_rocm.server.gpus import GpuWorker
from reef_rocm.server.shm import ShmRegion

_model_ids = itertools.count(1)
_region_ids = itertools.count(1)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    # derived once: the request path compares against these on every inference
    nbytes: int = field(init=False)
    dtype_name: str = field(init=False)

    def __post_init__(self) -> None:
        n = int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize
        object.__setattr__(self, "nbytes", n)
        object.__setattr__(self, "dtype_name", self.dtype.name)


@dataclass(eq=False)
class ServedModel:
    handle: Any  # the scheduler's ModelHandle
    gpu: GpuWorker
    name: str
    priority: str
    variant: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    id: int = field(default_factory=lambda: next(_model_ids))
    in_flight: set[Future] = field(default_factory=set)


@dataclass(eq=False)
class Session:
    client: str
    workload: str
    gpu: int | None
    id: str = field(default_factory=lambda: secrets.token_hex(4))
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    models: dict[int, ServedModel] = field(default_factory=dict)
    regions: dict[int, ShmRegion] = field(default_factory=dict)
    in_flight: set[Future] = field(default_factory=set)
    async_tags: set[int] = field(default_factory=set)
    # async completions (tag, job, future) for the Connect stream; None ends it
    events: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    lock: threading.Lock = field(default_factory=threading.Lock)
    ended: bool = False

    def __post_init__(self) -> None:
        if not self.client:
            self.client = f"client-{self.id}"
        if not self.workload:
            self.workload = f"session-{self.id}"

    @property
    def label(self) -> str:
        """The scheduler's client name: unique per session, readable in its status."""
        return f"{self.client}@{self.id}"

    def new_region(self, name: str, size: int) -> ShmRegion:
        r = ShmRegion(next(_region_ids), name, size)
        self.regions[r.id] = r
        return r

    def add_model(self, m: ServedModel) -> None:
        self.models[m.id] = m
