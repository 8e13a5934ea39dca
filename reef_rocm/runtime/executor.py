"""Run a model package on a Device kernel by kernel (no TVM on the GPU host).

``ModelInstance`` owns one inference's device state: every manifest buffer (carved out of
one allocation), the loaded code object, one BoundLaunch per kernel with its arguments
packed once, and, for the preemptible variant, the preempt flag and one completion slot per
kernel. The dkp variant runs with the manifest's default launch (every virtual block once,
``LaunchRecord.dkp_defaults``), which computes what the plain variant does.

The scheduler drives it on its own streams, everything stream-ordered:

* a new inference: ``begin(s)`` (zero every slot), ``launch_range(s)``;
* preempted: ``read_slots_async(s)`` queues a slot read behind the evicted kernels; once its
  event completed, ``first_incomplete()`` says where to resume, and
  ``resume(s, start)`` = ``prepare_resume(s, start)`` (zero slots[start:]) + ``launch_range``.

Zeroing the slots of every kernel that is re-launched keeps restore exact: a slot counts the
blocks of the *latest* launch of its kernel, so a kernel cut short twice does not add its
blocks up to a false "complete". Re-running a partly-run kernel is safe because kernels are
idempotent by construction (reef_rocm.package.manifest.idempotence_violations).

``launch_range`` is one call into the C span launcher (``gpu.fastlaunch.span``) where every
bound launch has a C launcher, so Python adds nothing per kernel; elsewhere (sim, hsa, no
compiled extension) it loops over the bound launches. The span reads each launch's parameter
block through its fixed pointer array, so in-place edits (``set_reef_param``, the scheduler's
``use_flag``) are seen by the next span call as by the next single launch.

Housekeeping (weight uploads, slot and flag resets, input uploads, output reads) never uses
the legacy null stream, which is not ordered against non-blocking streams on CUDA and waits
behind CU-masked streams on HIP: it goes through the caller's stream or the instance's own
housekeeping stream (created once, destroyed by ``close()``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import PackageError, ReefError, UnsupportedError
from reef_rocm.gpu import fastlaunch
from reef_rocm.gpu.api import BoundLaunch, Device, DevicePtr, Event, Graph, LaunchConfig, Stream
from reef_rocm.package.files import ModelPackage
from reef_rocm.package.manifest import LaunchRecord

ALIGN = 256  # every buffer starts on a 256-byte boundary (vector loads, cache lines)
PROFILES_DIR = "profiles"


class CompletionCountError(ReefError):
    """A completion slot counts more blocks than its kernel has: blocks were counted twice
    (a re-launched kernel whose slot was not zeroed first) and restore would be wrong."""


@dataclass(frozen=True)
class BufferView:
    ptr: int
    nbytes: int


@dataclass(frozen=True)
class _ReefArg:
    position: int  # index in the kernel's argument list (= ParamBlock index)
    dtype: np.dtype


class ModelInstance:
    """A package loaded onto a device, ready to launch. Not thread-safe: one thread (the
    scheduler's) submits. Release with ``close()`` or use it as a context manager."""

    def __init__(
        self, device: Device, package: ModelPackage | str | Path, variant: str = "plain",
        seed: int | None = None,
    ) -> None:  # fmt: skip
        # everything close() releases exists (as None) before the first allocation, so a
        # failure part way through releases what was made and nothing else
        self.device = device
        self.arena: Any = None
        self._flag: Any = None
        self._slots: Any = None
        self.module: Any = None
        self._hk: Stream | None = None
        self._slot_event: Event | None = None
        self._out_events: dict[int, Event] = {}
        self._slot_pinned: Any = None
        self._closed = False
        self.launches: list[BoundLaunch] = []
        self._span: fastlaunch.SpanCall | None = None
        self.package = package if isinstance(package, ModelPackage) else ModelPackage.load(package)
        m = self.package.manifest
        self.variant = m.variant(variant)
        if m.target.get("backend") != device.info.backend and device.info.backend != "sim":
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
        self._reef_args = [
            {a["name"]: _ReefArg(i, np.dtype(a["dtype"]))
             for i, a in enumerate(k.args) if a["kind"] == "reef_param"}
            for k in self.kernels
        ]  # fmt: skip
        n = max(1, len(self.kernels))
        self._blocks = np.array(
            [k.grid[0] * k.grid[1] * k.grid[2] for k in self.kernels], np.uint32
        )
        try:
            self._hk = device.create_stream()
            self._slot_event = device.create_event(timing=False)
            self._alloc_buffers()
            self._flag = device.alloc(4)
            self._slots = device.alloc(4 * n)
            self._slot_ptrs = [self._slots.offset(4 * k) for k in range(n)]
            # The slot read lands here, preallocated (the restore path allocates nothing) and
            # pinned where the device has pinned host memory: a device-to-host copy into
            # pageable memory returns only once it is done (CUDA), which would stall the
            # scheduler until the preempted work drained.
            if device.capabilities.host_mapped_memory:
                self._slot_pinned = device.alloc_host_mapped(4 * n)
                self._slot_host = self._slot_pinned.host[: 4 * n].view(np.uint32)
            else:
                self._slot_host = np.zeros(n, dtype=np.uint32)
            self._slot_read_valid = False
            device.memset32(self._flag, 0, 1, self._hk)
            device.memset32(self._slots, 0, n, self._hk)
            self.load_params(seed)
            self.module = device.load_module(self.package.binary(variant))
            self.launches = [self._bind(i, k) for i, k in enumerate(self.kernels)]
            self._span = fastlaunch.span([b.c_launcher for b in self.launches])
            self._staged: list[np.ndarray | None] = [None] * len(m.inputs)
        except BaseException:
            self.close()
            raise

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
        """(Re)generate or read every param/const buffer and upload it (synchronous, on
        the housekeeping stream)."""
        keep = []  # host arrays stay alive until the stream has copied them
        for b in self.package.manifest.params():
            arr = np.ascontiguousarray(self.package.buffer_contents(b, seed))
            if arr.nbytes != b.bytes:
                raise PackageError(f"{b.name}: {arr.nbytes} bytes generated, {b.bytes} expected")
            self.device.copy_to_device(DevicePtr(self.buffers[b.id].ptr), arr, self._hk)
            keep.append(arr)
        self._hk.synchronize()  # type: ignore[union-attr]

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
        """uint32[num_kernels]: blocks of the latest launch of kernel k that ran to the end."""
        return self._slots

    @property
    def block_counts(self) -> np.ndarray:
        """uint32[num_kernels]: blocks per kernel launch (what a complete slot holds)."""
        return self._blocks

    @property
    def housekeeping_stream(self) -> Stream:
        """The instance's own stream for uploads and reads when the caller names none."""
        return self._hk  # type: ignore[return-value]

    # ---------------------------------------------------------------- I/O
    def _check_input(self, index: int, array: Any) -> tuple[int, np.ndarray]:
        ins = self.package.manifest.inputs
        if not 0 <= index < len(ins):
            raise ValueError(f"input {index}: the model has {len(ins)} input(s)")
        buf = self.package.manifest.buffers[ins[index]]
        want_dtype, want_shape = np.dtype(buf.dtype), tuple(buf.shape)
        if not isinstance(array, np.ndarray):
            raise ValueError(
                f"input {index} ({buf.name}): expected a numpy array "
                f"{want_dtype}{list(want_shape)}, got {type(array).__name__}"
            )
        if array.dtype != want_dtype or array.shape != want_shape:
            # no silent casts or reshapes: a float64 or transposed input is a caller's bug
            raise ValueError(
                f"input {index} ({buf.name}): expected {want_dtype}{list(want_shape)}, "
                f"got {array.dtype}{list(array.shape)}"
            )
        return ins[index], np.ascontiguousarray(array)

    def set_input(self, index: int, array: np.ndarray, stream: Stream | None = None) -> None:
        """Upload input ``index`` (exact dtype and shape, else ValueError). With ``stream``
        the copy is ordered in it (asynchronous: the instance keeps the host array alive
        until the next upload of this input); without, it is complete on return."""
        bid, arr = self._check_input(index, array)
        s = self._hk if stream is None else stream
        self.device.copy_to_device(DevicePtr(self.buffers[bid].ptr), arr, s)
        self._staged[index] = arr
        if stream is None:
            s.synchronize()  # type: ignore[union-attr]

    def _output(self, index: int) -> tuple[int, np.dtype, tuple[int, ...]]:
        outs = self.package.manifest.outputs
        if not 0 <= index < len(outs):
            raise ValueError(f"output {index}: the model has {len(outs)} output(s)")
        buf = self.package.manifest.buffers[outs[index]]
        return outs[index], np.dtype(buf.dtype), tuple(buf.shape)

    def get_output_async(self, index: int, stream: Stream, out: np.ndarray) -> Event:
        """Queue a copy of output ``index`` into ``out`` on ``stream``; ``out`` is valid once
        the returned event completed (the event is the instance's: it stays valid until the
        next read of this output or ``close()``)."""
        bid, dtype, shape = self._output(index)
        if (
            not isinstance(out, np.ndarray) or out.dtype != dtype or out.shape != shape
            or not out.flags.c_contiguous or not out.flags.writeable
        ):  # fmt: skip
            got = f"{out.dtype}{list(out.shape)}" if isinstance(out, np.ndarray) else type(out)
            raise ValueError(
                f"output {index}: out must be a writable C-contiguous {dtype}{list(shape)}, "
                f"got {got}"
            )
        self.device.copy_to_host(out, DevicePtr(self.buffers[bid].ptr), stream)
        ev = self._out_events.get(index)
        if ev is None:
            ev = self._out_events[index] = self.device.create_event(timing=False)
        ev.record(stream)
        return ev

    def get_output(self, index: int = 0, stream: Stream | None = None) -> np.ndarray:
        """Output ``index``, copied in ``stream`` order (after the kernels queued there);
        returns once the copy landed. Without a stream the copy goes on the housekeeping
        stream: synchronize the stream that computed the output first."""
        _, dtype, shape = self._output(index)
        out = np.empty(shape, dtype=dtype)
        s = self._hk if stream is None else stream
        self.get_output_async(index, s, out).synchronize()  # type: ignore[arg-type]
        return out

    # ---------------------------------------------------------------- launching
    def launch(self, index: int, stream: Stream) -> None:
        """Enqueue kernel ``index`` (hot path: one driver call, nothing allocated)."""
        self.launches[index].launch(stream)

    def launch_range(self, stream: Stream, start: int = 0, stop: int | None = None) -> None:
        """Enqueue kernels ``start .. stop-1`` on ``stream`` (asynchronous). Slots are not
        touched: use ``begin``/``resume`` when the slots matter."""
        launches = self.launches
        end = len(launches) if stop is None else stop
        span = self._span
        if span is not None:
            # one C call; kernels before a failing one stay queued, as in the loop below
            status, i = span(stream.raw_handle, start, end)  # type: ignore[attr-defined]
            if status:
                k = self.kernels[i]
                launches[i].check_launch_status(status, f"kernel {i} {k.name}")
            return
        for i in range(start, end):
            launches[i].launch(stream)

    def capture(self, stream: Stream, start: int = 0, stop: int | None = None) -> Graph:
        """Kernels ``start .. stop-1`` captured into a launch graph (``Device.capture_graph``,
        where ``capabilities.graphs``): ``graph.launch(stream)`` replays them with one call.
        Arguments are captured by value, so set poll intervals and flags before capturing;
        meant for RT inferences, which are never preempted (slots are not touched)."""
        n = self.num_kernels
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise ValueError(f"kernel range [{start}, {stop}) outside 0..{n}")
        return self.device.capture_graph(stream, lambda s: self.launch_range(s, start, stop))

    def begin(self, stream: Stream) -> None:
        """Start a new inference on ``stream``: zero every completion slot, in stream order
        (a kernel finished by the previous inference must not look complete)."""
        self.prepare_resume(stream, 0)

    def prepare_resume(self, stream: Stream, start: int) -> None:
        """Zero the slots of kernels ``start..`` in ``stream`` order, before they are
        re-launched there: each slot then counts only its kernel's new launch."""
        n = self.num_kernels
        if not 0 <= start <= n:
            raise ValueError(f"resume point {start} outside 0..{n}")
        if start < n:
            self.device.memset32(self._slot_ptrs[start], 0, n - start, stream)
        self._slot_read_valid = False  # a read queued before this reset is stale

    def resume(self, stream: Stream, start: int, stop: int | None = None) -> None:
        """``prepare_resume(stream, start)`` then ``launch_range(stream, start, stop)``."""
        self.prepare_resume(stream, start)
        self.launch_range(stream, start, stop)

    # ---------------------------------------------------------------- completion slots
    def read_slots_async(self, stream: Stream) -> Event:
        """Queue a copy of the slots into a preallocated host array on ``stream`` (behind the
        kernels queued there) and record the instance's slot event; ``first_incomplete()``
        and ``completed()`` use that copy once the event completed. Off the RT path: queue
        it on the preempted BE stream and ask later."""
        self.device.copy_to_host(self._slot_host, self._slots, stream)
        self._slot_event.record(stream)  # type: ignore[union-attr]
        self._slot_read_valid = True
        return self._slot_event  # type: ignore[return-value]

    def slots_ready(self) -> bool:
        """True once the last ``read_slots_async`` landed."""
        return self._slot_read_valid and self._slot_event.query()  # type: ignore[union-attr]

    def read_slots(self, stream: Stream | None = None) -> np.ndarray:
        """Synchronous slot read (tests, tools): queue it on ``stream`` (housekeeping stream
        by default), wait, return a copy of the counts."""
        s = self._hk if stream is None else stream
        self.read_slots_async(s).synchronize()  # type: ignore[arg-type]
        return self._checked_counts().copy()

    def _checked_counts(self) -> np.ndarray:
        if not self._slot_read_valid:
            raise RuntimeError(
                "no completion-slot read since the last slot reset: call read_slots_async(stream)"
                " (or read_slots()) first"
            )
        self._slot_event.synchronize()  # type: ignore[union-attr]  # a no-op once completed
        counts = self._slot_host[: self.num_kernels]
        over = np.flatnonzero(counts > self._blocks)
        if over.size:
            k = int(over[0])
            raise CompletionCountError(
                f"kernel {k} ({self.kernels[k].name}): completion slot {int(counts[k])} exceeds "
                f"its {int(self._blocks[k])} blocks; blocks were counted twice (a re-launch "
                "without prepare_resume)"
            )
        return counts

    def slot_counts(self) -> np.ndarray:
        """uint32[num_kernels] from the last slot read (a view: copy to keep it)."""
        return self._checked_counts()

    def completed(self) -> np.ndarray:
        """bool[num_kernels] from the last slot read: every block of kernel k's latest
        launch finished (``count == blocks``; more is a CompletionCountError)."""
        return self._checked_counts() == self._blocks

    def first_incomplete(self) -> int:
        """Where a preempted inference resumes (from the last slot read); num_kernels when
        every kernel completed."""
        bad = np.flatnonzero(~self.completed())
        return int(bad[0]) if bad.size else self.num_kernels

    # ---------------------------------------------------------------- launch arguments
    def reef_params(self, index: int) -> list[str]:
        """Names of kernel ``index``'s reef_ scalar parameters."""
        return list(self._reef_args[index])

    def set_reef_param(self, index: int, name: str, value: int) -> None:
        """Change reef_ scalar ``name`` of the bound launch of kernel ``index`` in place (the
        ParamBlock keeps its addresses; nothing is re-packed). Launches already queued keep
        the value they were launched with."""
        arg = self._reef_args[index].get(name)
        if arg is None:
            k = self.kernels[index]
            raise ValueError(
                f"kernel {index} ({k.name}) has no reef_ parameter {name!r} "
                f"(has: {', '.join(self._reef_args[index]) or 'none'})"
            )
        info = np.iinfo(arg.dtype) if arg.dtype.kind in "iu" else None
        if info is not None and not (isinstance(value, (int, np.integer)) and
                                     info.min <= value <= info.max):  # fmt: skip
            raise ValueError(f"{name}: {value!r} is not a {arg.dtype} value")
        self.launches[index].params.set(arg.position, arg.dtype.type(value))
        self._reef_values[index][name] = int(value)

    def poll_param(self, index: int) -> str | None:
        """The poll-interval parameter of kernel ``index`` (None: the kernel does not poll)."""
        return _poll_param_name(self.kernels[index])

    def set_poll_every(self, index: int, n: int) -> None:
        """Set kernel ``index``'s poll interval (the transform's ``reef_poll_every``)."""
        name = self.poll_param(index)
        if name is None:
            raise UnsupportedError(
                f"kernel {index} ({self.kernels[index].name}) of variant {self.variant.name!r} "
                "has no poll parameter"
            )
        if not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"poll interval must be a non-negative int, got {n!r}")
        self.set_reef_param(index, name, int(n))

    # ---------------------------------------------------------------- whole inferences
    def run(self, inputs: list[np.ndarray], stream: Stream | None = None) -> list[np.ndarray]:
        """Upload inputs, run every kernel, download outputs (synchronous), all on
        ``stream`` (the housekeeping stream by default)."""
        want = len(self.package.manifest.inputs)
        if len(inputs) != want:
            raise ValueError(f"{self.package.name} takes {want} input(s), got {len(inputs)}")
        s = self._hk if stream is None else stream
        checked = [self._check_input(i, a) for i, a in enumerate(inputs)]  # all, then upload
        self.begin(s)  # type: ignore[arg-type]
        for i, (bid, arr) in enumerate(checked):
            self.device.copy_to_device(DevicePtr(self.buffers[bid].ptr), arr, s)
            self._staged[i] = arr
        self.launch_range(s)  # type: ignore[arg-type]
        return [self.get_output(i, s) for i in range(len(self.package.manifest.outputs))]

    # ---------------------------------------------------------------- profiling
    def profile(self, repeats: int = 10, warmup: int = 2) -> dict[str, Any]:
        """Per-kernel durations (device events around every launch), median over repeats."""
        s = self.device.create_stream()
        events: list[Event] = []
        try:
            n = self.num_kernels
            events = [self.device.create_event() for _ in range(n + 1)]
            for _ in range(warmup):
                self.begin(s)  # slots stay valid counts (outside the timed span)
                self.launch_range(s)
            s.synchronize()
            per_kernel = np.zeros((repeats, n))
            totals = []
            for r in range(repeats):
                self.begin(s)
                events[0].record(s)
                for k, bound in enumerate(self.launches):
                    bound.launch(s)
                    events[k + 1].record(s)
                events[n].synchronize()
                per_kernel[r] = [events[k].elapsed_ms(events[k + 1]) * 1e3 for k in range(n)]
                totals.append(events[0].elapsed_ms(events[n]) * 1e3)
            s.synchronize()
        finally:
            for e in events:
                e.close()
            s.close()
        med = np.median(per_kernel, axis=0)
        return {
            "model": self.package.name,
            "variant": self.variant.name,
            "device": self.device.info.name,
            "arch": self.device.info.arch,
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

    # ---------------------------------------------------------------- release
    def close(self) -> None:
        """Release every device resource; safe to call twice, and after a failed init."""
        if self._closed:
            return
        self._closed = True
        if self._hk is not None:
            self._hk.synchronize()  # queued copies still read/write our memory
        for ev in (self._slot_event, *self._out_events.values()):
            if ev is not None:
                ev.close()
        self._out_events.clear()
        self._slot_event = None
        for name in ("arena", "_flag", "_slots", "_slot_pinned"):
            buf = getattr(self, name)
            if buf is not None:
                buf.close()
                setattr(self, name, None)
        if self.module is not None:
            self.module.close()
            self.module = None
        if self._hk is not None:
            self._hk.close()
            self._hk = None
        self._span = None
        self.launches = []

    def __enter__(self) -> ModelInstance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -------------------------------------------------------------------- poll parameter
def _poll_param_name(k: LaunchRecord) -> str | None:
    """The kernel's poll-interval parameter, as the manifest names it (None: no poll loop)."""
    return k.preempt.poll_param if k.preempt is not None else None


# -------------------------------------------------------------------- profiles
def profile_path(package: ModelPackage | str | Path, arch: str, variant: str = "plain") -> Path:
    """Where a package's profile for one device architecture and variant lives."""
    root = package.path if isinstance(package, ModelPackage) else Path(package)
    return root / PROFILES_DIR / f"{arch}-{variant}.json"


def write_profile(profile: dict[str, Any], path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    tmp.write_text(json.dumps(profile, indent=1) + "\n")
    tmp.replace(p)  # readers never see half a profile
    return p


def load_profile(
    package: ModelPackage | str | Path, arch: str, variant: str = "plain"
) -> dict[str, Any] | None:
    """The stored profile of ``package`` on ``arch`` for ``variant``, or None if there is
    none (the scheduler then caps device queues by kernel count)."""
    p = profile_path(package, arch, variant)
    if not p.is_file():
        return None
    try:
        prof = json.loads(p.read_text())
    except (OSError, ValueError) as e:
        raise PackageError(f"{p}: unreadable profile: {e}") from None
    if not isinstance(prof, dict) or not isinstance(prof.get("kernels"), list):
        raise PackageError(f"{p}: not a profile (no 'kernels' list)")
    return prof
