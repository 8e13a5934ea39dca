"""Run a model package on a Device kernel by kernel (no TVM on the GPU host).

``ModelInstance`` owns one inference's device state: every manifest buffer (carved out of
one allocation), the loaded code object, one BoundLaunch per kernel with its arguments
packed once, and, for the preemptible variant, the preempt flag and one completion slot per
kernel. The dkp variant runs with the manifest's default launch (every virtual block once,
``LaunchRecord.dkp_defaults``), which computes what the plain variant does. The scheduler drives
it with ``launch_range(stream, start, stop)``: a preempted best-effort inference is restored
by ``launch_range(stream, first_incomplete(), n)``; kernels are idempotent by construction
(see reef_rocm.package.manifest.idempotence_violations), so re-running a partly-run kernel is safe.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import PackageError, UnsupportedError
from reef_rocm.gpu.api import BoundLaunch, Device, DevicePtr, LaunchConfig, Stream
from reef_rocm.package.files import ModelPackage
from reef_rocm.package.manifest import LaunchRecord

ALIGN = 256  # every buffer starts on a 256-byte boundary (vector loads, cache lines)


@dataclass(frozen=True)
class BufferView:
    ptr: int
    nbytes: int


class ModelInstance:
    """A package loaded onto a device, ready to launch. Not thread-safe."""

    def __init__(
        self, device: Device, package: ModelPackage | str | Path, variant: str = "plain",
        seed: int | None = None,
    ) -> None:  # fmt: skip
        self.device = device
        self.package = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        m = self.package.manifest
        self.variant = m.variant(variant)
        if self.package.manifest.target.get("backend") != device.info.backend and (
            device.info.backend != "sim"
        ):
            raise UnsupportedError(
                f"package {self.package.name} targets {m.target['name']}, device is "
                f"{device.info.backend}:{device.info.arch}"
            )
        arch = m.target.get("arch")
        if device.info.backend != "sim" and arch and device.info.arch and arch != device.info.arch:
            # a cubin for sm_90 will not load on sm_80; say so before the driver does
            raise UnsupportedError(f"package built for {arch}, device is {device.info.arch}")
        self.kernels: list[LaunchRecord] = self.variant.kernels
        # reef_ scalars get the manifest's default launch values (DKP variant: every virtual
        # block once, one physical block each); a scalar without one (say, a dispatcher's
        # split) can only be launched by the DKP runtime, so refuse before allocating
        self._reef_values = [k.reef_defaults() for k in self.kernels]
        for k, vals in zip(self.kernels, self._reef_values, strict=True):
            missing = [
                a["name"] for a in k.args if a["kind"] == "reef_param" and a["name"] not in vals
            ]
            if missing:
                raise UnsupportedError(
                    f"variant {variant!r}: {k.name} takes {missing} with no default launch "
                    "value; it is launched by the DKP runtime"
                )
        self._alloc_buffers()
        self._flag = device.alloc(4)
        self._slots = device.alloc(4 * max(1, len(self.kernels)))
        device.memset32(self._flag, 0, 1)
        device.memset32(self._slots, 0, max(1, len(self.kernels)))
        self.load_params(seed)
        self.module = device.load_module(self.package.binary(variant))
        self.launches: list[BoundLaunch] = [self._bind(i, k) for i, k in enumerate(self.kernels)]
        self._blocks = np.array(
            [k.grid[0] * k.grid[1] * k.grid[2] for k in self.kernels], np.uint32
        )

    # ---------------------------------------------------------------- setup
    def _alloc_buffers(self) -> None:
        offsets, total = [], 0
        for b in self.package.manifest.buffers:
            offsets.append(total)
            total += (b.bytes + ALIGN - 1) // ALIGN * ALIGN
        self.arena = self.device.alloc(max(total, ALIGN))
        self.buffers = [
            BufferView(self.arena.ptr + off, b.bytes)
            for off, b in zip(offsets, self.package.manifest.buffers, strict=True)
        ]

    def load_params(self, seed: int | None = None) -> None:
        """(Re)generate or read every param/const buffer and upload it."""
        for b in self.package.manifest.params():
            arr = np.ascontiguousarray(self.package.buffer_contents(b, seed))
            if arr.nbytes != b.bytes:
                raise PackageError(f"{b.name}: {arr.nbytes} bytes generated, {b.bytes} expected")
            self.device.copy_to_device(DevicePtr(self.buffers[b.id].ptr), arr)

    def _bind(
        self, index: int, k: LaunchRecord, reef_values: dict[str, int] | None = None,
        grid: tuple[int, int, int] | None = None,
    ) -> BoundLaunch:  # fmt: skip
        values = self._reef_values[index] if reef_values is None else reef_values
        args: list[Any] = []
        for a in k.args:
            kind = a["kind"]
            if kind == "buffer":
                args.append(DevicePtr(self.buffers[a["id"]].ptr))
            elif kind == "scalar":
                args.append(np.dtype(a["dtype"]).type(a["value"]))
            elif kind == "preempt_flag":
                args.append(DevicePtr(self._flag.ptr))
            elif kind == "completion_slot":
                args.append(DevicePtr(self._slots.ptr + 4 * index))
            elif kind == "reef_param":
                args.append(np.dtype(a["dtype"]).type(values[a["name"]]))
            else:
                raise UnsupportedError(f"{k.name}: argument kind {kind!r} not launchable here")
        fn = self.module.get_kernel(k.name)
        g = tuple(k.grid) if grid is None else grid
        return fn.bind(LaunchConfig(g, tuple(k.block), k.shared_mem), args)

    def bind_dkp(
        self, index: int, vblock_begin: int, vblock_count: int, grid_blocks: int
    ) -> BoundLaunch:
        """Kernel ``index`` of the dkp variant running virtual blocks ``[vblock_begin,
        vblock_begin + vblock_count)`` on ``grid_blocks`` physical blocks: the launch a DKP
        runtime makes (``launch_range`` uses the default, every virtual block once)."""
        k = self.kernels[index]
        if k.dkp is None:
            raise UnsupportedError(f"{k.name}: not a dkp-variant kernel")
        n = k.dkp.virtual_blocks
        if not (0 <= vblock_begin and 0 <= vblock_count and vblock_begin + vblock_count <= n):
            raise ValueError(f"{k.name}: virtual blocks [{vblock_begin}, +{vblock_count}) of {n}")
        if grid_blocks < 1:
            raise ValueError(f"{k.name}: grid_blocks {grid_blocks} < 1")
        d = k.dkp
        values = {
            d.param("vblock_begin"): vblock_begin,
            d.param("vblock_count"): vblock_count,
            d.param("grid_blocks"): grid_blocks,
        }
        # the physical grid is 1-D (manifest validation): blockIdx.x = grid_blocks
        return self._bind(index, k, values, (grid_blocks, 1, 1))

    # ---------------------------------------------------------------- queries
    @property
    def num_kernels(self) -> int:
        return len(self.kernels)

    @property
    def preempt_flag(self) -> Any:
        """The device int32 the preemptible kernels poll (write 1 to evict, 0 to resume)."""
        return self._flag

    @property
    def completion_slots(self) -> Any:
        """uint32[num_kernels]: blocks of kernel k that ran to completion."""
        return self._slots

    # ---------------------------------------------------------------- I/O
    def set_input(self, index: int, array: np.ndarray, stream: Stream | None = None) -> None:
        bid = self.package.manifest.inputs[index]
        buf = self.package.manifest.buffers[bid]
        arr = np.ascontiguousarray(array, dtype=np.dtype(buf.dtype))
        if arr.nbytes != buf.bytes:
            raise ValueError(f"input {index} ({buf.name}) needs {buf.shape} {buf.dtype}")
        self.device.copy_to_device(DevicePtr(self.buffers[bid].ptr), arr, stream)

    def get_output(self, index: int = 0, stream: Stream | None = None) -> np.ndarray:
        bid = self.package.manifest.outputs[index]
        buf = self.package.manifest.buffers[bid]
        out = np.empty(buf.shape, dtype=np.dtype(buf.dtype))
        self.device.copy_to_host(out, DevicePtr(self.buffers[bid].ptr), stream)
        return out

    # ---------------------------------------------------------------- launching
    def launch_range(self, stream: Stream, start: int = 0, stop: int | None = None) -> None:
        """Enqueue kernels ``start .. stop-1`` on ``stream`` (asynchronous)."""
        for bound in self.launches[start : self.num_kernels if stop is None else stop]:
            bound.launch(stream)

    def run(self, inputs: list[np.ndarray], stream: Stream | None = None) -> list[np.ndarray]:
        """Upload inputs, run every kernel, download outputs (synchronous)."""
        s = stream or self.device.create_stream()
        # Slots count finished blocks; a fresh inference must start from zero or a kernel
        # that ran in an earlier inference would look complete (wrong restore point).
        self.reset_slots()
        for i, a in enumerate(inputs):
            self.set_input(i, a, s)
        self.launch_range(s)
        s.synchronize()
        return [self.get_output(i) for i in range(len(self.package.manifest.outputs))]

    # ---------------------------------------------------------------- preemption state
    def reset_slots(self) -> None:
        """Zero every completion slot. ``run`` does this itself; callers driving
        ``launch_range`` (the scheduler) must do it when a new inference starts, never
        when a preempted one resumes, or the restore point is lost."""
        self.device.memset32(self._slots, 0, max(1, self.num_kernels))

    def slot_counts(self) -> np.ndarray:
        out = np.zeros(max(1, self.num_kernels), dtype=np.uint32)
        self.device.copy_to_host(out, self._slots)
        return out[: self.num_kernels]

    def completed(self) -> np.ndarray:
        """bool[num_kernels]: every block of kernel k finished (preemptible variant)."""
        return self.slot_counts() >= self._blocks

    def first_incomplete(self) -> int:
        """Where a preempted inference resumes; num_kernels when all completed."""
        done = self.completed()
        bad = np.flatnonzero(~done)
        return int(bad[0]) if bad.size else self.num_kernels

    # ---------------------------------------------------------------- profiling
    def profile(self, repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
        """Per-kernel durations (device events around every launch), median over repeats."""
        s = self.device.create_stream()
        n = self.num_kernels
        events = [self.device.create_event() for _ in range(n + 1)]
        for _ in range(warmup):
            self.launch_range(s)
        s.synchronize()
        per_kernel = np.zeros((repeats, n))
        totals = []
        for r in range(repeats):
            events[0].record(s)
            for k, bound in enumerate(self.launches):
                bound.launch(s)
                events[k + 1].record(s)
            events[n].synchronize()
            per_kernel[r] = [events[k].elapsed_ms(events[k + 1]) * 1e3 for k in range(n)]
            totals.append(events[0].elapsed_ms(events[n]) * 1e3)
        med = np.median(per_kernel, axis=0)
        return {
            "model": self.package.name,
            "variant": self.variant.name,
            "device": self.device.info.name,
            "repeats": repeats,
            "note": "event-timed: each kernel's time includes one event record (~1-2 us)",
            "total_us_median": float(np.median(totals)),
            "kernels": [
                {
                    "index": i,
                    "name": k.name,
                    "grid": k.grid,
                    "block": k.block,
                    "shared_mem": k.shared_mem,
                    "us_median": float(med[i]),
                    "us_min": float(per_kernel[:, i].min()),
                }  # fmt: skip
                for i, k in enumerate(self.kernels)
            ],
        }

    def close(self) -> None:
        for obj in (self.arena, self._flag, self._slots):
            obj.free()
        self.module.unload()

    def __enter__(self) -> ModelInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_profile(profile: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(profile, indent=1) + "\n")
    return p
