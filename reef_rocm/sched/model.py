"""A loaded model as the scheduler drives it: one ModelInstance, its per-kernel costs, its
poll intervals, and preallocated (pinned where the device has it) host staging for inputs,
outputs and completion-slot reads, so launching and restoring allocate nothing.

The executor calls it makes are the exact-restore ones: launch kernel i on a stream, zero the
slots of kernels it re-launches in stream order, read the slots asynchronously.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import UnsupportedError
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.package.files import ModelPackage
from reef_rocm.runtime.executor import ModelInstance
from reef_rocm.sched.records import TensorSpec

PRIORITIES = ("rt", "be")
_ids = itertools.count()


@dataclass(eq=False)
class ModelHandle:
    """What ``Scheduler.load`` returns; pass it to ``submit``."""

    name: str
    priority: str
    client: str
    input_specs: list[TensorSpec]
    output_specs: list[TensorSpec]
    variant: str
    num_kernels: int
    profile_source: str  # "stored", "measured at load", "none (kernel-count cap)"
    id: int = field(default_factory=lambda: next(_ids))

    def __repr__(self) -> str:
        return f"<ModelHandle {self.name} {self.priority} client={self.client!r} {self.variant}>"


def stored_profile(package: ModelPackage, arch: str, variant: str) -> list[float] | None:
    """Per-kernel microseconds from the profile stored beside the package (``reef profile``)."""
    from reef_rocm.runtime.executor import load_profile

    prof = load_profile(package, arch, variant)
    if not prof:
        return None
    return [float(k["us_median"]) for k in prof["kernels"]]


def choose_poll_every(block_us: float, loop_trips: int, target_us: float) -> int:
    """``reef_poll_every`` (loop trips between flag polls; 0 = block-start check only) so a
    running block leaves within ~target_us of the flag: a block no longer than the target
    needs no poll points, a longer one polls every ``target / trip time`` trips."""
    if block_us <= target_us:
        return 0
    trip_us = block_us / max(1, loop_trips)
    return int(min(max(1, loop_trips), max(1, math.floor(target_us / trip_us))))


def loop_trips_of(record: Any, kernel: Any) -> int:
    """Loop trips per block: ``LaunchRecord.preempt`` (the transformer's) where the manifest
    has it, else what the kernel object reports (sim kernel models carry it), else 1."""
    pre = getattr(record, "preempt", None)
    if pre:
        v = pre.get("loop_trips") if isinstance(pre, dict) else getattr(pre, "loop_trips", None)
        if v:
            return int(v)
    spec = getattr(kernel, "spec", None)
    return int(getattr(spec, "loop_trips", 1) or 1)


def _pinned_like(device: Any, shape: tuple[int, ...], dtype: np.dtype, keep: list) -> np.ndarray:
    n = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if device.capabilities.host_mapped_memory and n:
        buf = device.alloc_host_mapped(n)
        keep.append(buf)
        return buf.host[:n].view(dtype).reshape(shape)
    return np.zeros(shape, dtype)


class LoadedModel:
    """Scheduler-side state of one loaded model (one client's instance)."""

    def __init__(
        self, device: Any, package: ModelPackage | str | Path, priority: str, client: str,
        variant: str, cap_fallback_us: float, poll_target_us: float, profile_on_load: bool,
        poll: bool,
    ) -> None:  # fmt: skip
        if priority not in PRIORITIES:
            raise ValueError(f"priority must be 'rt' or 'be', got {priority!r}")
        pkg = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        if variant not in pkg.manifest.variants:
            raise UnsupportedError(
                f"package {pkg.name} has no {variant!r} variant (has "
                f"{', '.join(pkg.manifest.variants)}); this policy runs {priority.upper()} work "
                f"through it - recompile with --variants plain,{variant}"
            )
        self.device = device
        self.package = pkg
        self.priority = priority
        self.client = client
        self._keep: list[Any] = []
        self.preloaded = False  # the device input buffers hold inputs set by preload()
        self.graph: Any = None  # every kernel as one launch graph (RT with rt_graphs)
        self.inst = ModelInstance(device, pkg, variant=variant)
        try:
            self._setup(variant, cap_fallback_us, poll_target_us, profile_on_load, poll)
        except BaseException:
            self.close()
            raise

    def _setup(self, variant, cap_fallback_us, poll_target_us, profile_on_load, poll) -> None:
        inst, m, dev = self.inst, self.package.manifest, self.device
        self.n = inst.num_kernels
        self.launches = list(inst.launches)
        self.blocks = inst.block_counts.astype(np.int64)
        specs = []
        for ids in (m.inputs, m.outputs):
            specs.append([
                TensorSpec(m.buffers[b].name, tuple(m.buffers[b].shape), m.buffers[b].dtype)
                for b in ids
            ])  # fmt: skip
        self.input_specs, self.output_specs = specs
        self._in_ptrs = [DevicePtr(inst.buffers[b].ptr) for b in m.inputs]
        self._out_ptrs = [DevicePtr(inst.buffers[b].ptr) for b in m.outputs]
        self.in_stage = [
            _pinned_like(dev, s.shape, np.dtype(s.dtype), self._keep) for s in self.input_specs
        ]
        self.out_stage = [
            _pinned_like(dev, s.shape, np.dtype(s.dtype), self._keep) for s in self.output_specs
        ]
        self.preemptible = any(a["kind"] == "completion_slot" for k in inst.kernels for a in k.args)
        # per-kernel cost (us) for the device-queue cap
        us = stored_profile(self.package, dev.info.arch, variant)
        if us is not None and len(us) == self.n:
            self.profile_source = "stored"
        elif profile_on_load and self.n:
            prof = inst.profile(repeats=3, warmup=1)
            us = [k["us_median"] for k in prof["kernels"]]
            self.profile_source = "measured at load"
        else:
            us = None
            self.profile_source = "none (kernel-count cap)"
        self.kernel_us = (
            np.array(us, np.float64) if us is not None else np.full(self.n, cap_fallback_us)
        )
        self.cost = [float(c) for c in self.kernel_us]  # python floats: cheap in the hot loop
        self.total_us = float(self.kernel_us.sum())
        self.cum = [0.0]  # prefix sums of cost: the feed finds how many kernels fit by bisect
        for c in self.cost:
            self.cum.append(self.cum[-1] + c)
        self.poll_every: list[int | None] = [None] * self.n
        self._set_poll_points(poll_target_us if poll else None)

    # ---------------------------------------------------------------- poll points
    def _set_poll_points(self, target_us: float | None) -> None:
        """Per kernel, the poll interval that meets ``target_us`` (None: polls off, the
        block-start check only - policies without poll points must not pay for them)."""
        inst = self.inst
        cus = self.device.info.compute_units
        for i, k in enumerate(inst.kernels):
            if inst.poll_param(i) is None:
                continue
            if target_us is None:
                inst.set_poll_every(i, 0)
                self.poll_every[i] = 0
                continue
            kern, cfg = self.launches[i].kernel, self.launches[i].config
            occ = max(1, kern.max_active_blocks_per_cu(cfg.threads_per_block, cfg.shared_mem))
            rounds = max(1, math.ceil(int(self.blocks[i]) / (cus * occ)))
            n = choose_poll_every(self.cost[i] / rounds, loop_trips_of(k, kern), target_us)
            inst.set_poll_every(i, n)
            self.poll_every[i] = n

    def capture_graph(self, stream: Any) -> None:
        """Capture every kernel into one launch graph (arguments by value: call after the
        parameters are final)."""
        self.graph = self.inst.capture(stream)

    def use_flag(self, flag: Any) -> None:
        """Point every kernel's preempt-flag argument at ``flag`` (the scheduler's one flag,
        so a preemption is one write whatever the number of BE clients). In place, at load."""
        for bound, k in zip(self.launches, self.inst.kernels, strict=True):
            for pos, a in enumerate(k.args):
                if a["kind"] == "preempt_flag":
                    bound.params.set(pos, DevicePtr(flag.ptr))

    # ---------------------------------------------------------------- inputs
    def preload(self, arrays: list[np.ndarray], stream: Any) -> None:
        """Upload ``arrays`` into the device input buffers and wait: requests without inputs
        then run on them."""
        self.set_inputs(arrays)
        self.upload_inputs(stream)
        stream.synchronize()
        self.preloaded = True

    # ---------------------------------------------------------------- hot path
    def set_inputs(self, arrays: list[np.ndarray]) -> None:
        """Copy one request's inputs into the pinned staging (host memcpy, no device call);
        the device buffers no longer hold the preloaded inputs once they are uploaded."""
        for st, a in zip(self.in_stage, arrays, strict=True):
            np.copyto(st, a, casting="no")
        self.preloaded = False

    def upload_inputs(self, stream: Any) -> None:
        cp = self.device.copy_to_device
        for st, p in zip(self.in_stage, self._in_ptrs, strict=True):
            cp(p, st, stream)

    def download_outputs(self, stream: Any) -> None:
        cp = self.device.copy_to_host
        for st, p in zip(self.out_stage, self._out_ptrs, strict=True):
            cp(st, p, stream)

    def take_outputs(self) -> list[np.ndarray]:
        return [st.copy() for st in self.out_stage]

    def zero_slots(self, stream: Any, start: int = 0) -> None:
        """Zero the completion slots of kernels ``start..n-1`` in stream order (before they
        are launched again: exact restore, no double counting)."""
        if self.preemptible and start < self.n:
            self.inst.prepare_resume(stream, start)

    def read_slots_async(self, stream: Any) -> None:
        """Queue the executor's slot read (pinned host memory, so it is asynchronous) behind
        every BE kernel queued on ``stream``; ``first_incomplete()`` once the stream passed it."""
        if self.preemptible and self.n:
            self.inst.read_slots_async(stream)

    def first_incomplete(self) -> int:
        """The first kernel whose completion count is short (``count == blocks`` is complete;
        more raises CompletionCountError: a double count)."""
        return self.inst.first_incomplete()

    def check_inputs(self, inputs: Any) -> list[np.ndarray]:
        if not isinstance(inputs, (list, tuple)):
            inputs = [inputs]
        if len(inputs) != len(self.input_specs):
            raise ValueError(
                f"{self.package.name} takes {len(self.input_specs)} input(s) "
                f"({', '.join(s.name for s in self.input_specs)}), got {len(inputs)}"
            )
        out = []
        for i, (a, s) in enumerate(zip(inputs, self.input_specs, strict=True)):
            a = np.asarray(a)
            if tuple(a.shape) != s.shape or a.dtype != np.dtype(s.dtype):
                raise ValueError(
                    f"{self.package.name} input {i} ({s.name}) must be {s.dtype}{list(s.shape)}, "
                    f"got {a.dtype}{list(a.shape)}"
                )
            out.append(a)
        return out

    def close(self) -> None:
        graph, self.graph = getattr(self, "graph", None), None
        if graph is not None:
            graph.close()
        inst, self.inst = getattr(self, "inst", None), None
        if inst is not None:
            inst.close()
        for b in self._keep:
            b.close()
        self._keep = []
