"""What the sim backend runs instead of code objects: kernel *models*.

A sim module is a set of :class:`SimKernelSpec`: per kernel, how long one block runs, its
parameter list (types, and which parameter is the preempt flag, the completion slot or the
poll interval), its resource use (for occupancy) and, optionally, a Python callable that gives
each completed block a functional effect on simulated memory.

``Device.load_module`` takes a :class:`SimModuleSpec` object, or its JSON form as bytes/str
(``spec.to_bytes()``; callables do not survive JSON). ``SimModuleSpec.from_profile`` builds
one from a per-kernel timing profile measured on a real GPU, so a model package plus its
profile runs on the sim.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reef_rocm.errors import CodeObjectError

if TYPE_CHECKING:
    from reef_rocm.gpu.sim.device import SimBlockContext

MODULE_FORMAT = "reef-sim-module"
MODULE_FORMAT_VERSION = 1

#: parameter type -> (size in bytes = C alignment, struct code)
PARAM_TYPES: dict[str, tuple[int, str]] = {
    "ptr": (8, "Q"),
    "i8": (1, "b"),
    "u8": (1, "B"),
    "i16": (2, "h"),
    "u16": (2, "H"),
    "f16": (2, "e"),
    "i32": (4, "i"),
    "u32": (4, "I"),
    "f32": (4, "f"),
    "i64": (8, "q"),
    "u64": (8, "Q"),
    "f64": (8, "d"),
}

#: roles a parameter may play in REEF's mechanisms
ROLE_PREEMPT_FLAG = "preempt_flag"  # u32 in device memory; nonzero -> blocks return early
ROLE_COMPLETION_SLOT = "completion_slot"  # u32 every completed block atomically increments
ROLE_POLL_INTERVAL = "poll_interval_us"  # numeric: in-kernel flag poll period (0 = none)
# integer: poll the flag every N iterations of the block's loop (``loop_trips`` per block);
# 0 = block-start check only. What the transformer's ``reef_poll_every`` argument means.
ROLE_POLL_EVERY = "poll_every"
ROLES = (ROLE_PREEMPT_FLAG, ROLE_COMPLETION_SLOT, ROLE_POLL_INTERVAL, ROLE_POLL_EVERY)
INT_TYPES = ("i8", "u8", "i16", "u16", "i32", "u32", "i64", "u64")


@dataclass(frozen=True)
class SimParam:
    """One kernel parameter: a name, a C type (see PARAM_TYPES) and an optional role."""

    name: str
    type: str = "ptr"
    role: str | None = None

    def __post_init__(self) -> None:
        if self.type not in PARAM_TYPES:
            raise ValueError(
                f"parameter {self.name!r}: unknown type {self.type!r}; "
                f"use one of {', '.join(PARAM_TYPES)}"
            )
        if self.role is not None and self.role not in ROLES:
            raise ValueError(f"parameter {self.name!r}: unknown role {self.role!r}")
        if self.role in (ROLE_PREEMPT_FLAG, ROLE_COMPLETION_SLOT) and self.type != "ptr":
            raise ValueError(f"parameter {self.name!r}: a {self.role} must be a pointer")
        if self.role == ROLE_POLL_INTERVAL and self.type == "ptr":
            raise ValueError(f"parameter {self.name!r}: a poll interval must be a number")
        if self.role == ROLE_POLL_EVERY and self.type not in INT_TYPES:
            raise ValueError(f"parameter {self.name!r}: poll_every must be an integer type")

    @property
    def size(self) -> int:
        return PARAM_TYPES[self.type][0]

    @staticmethod
    def coerce(p: SimParam | Mapping[str, Any] | str) -> SimParam:
        """Accept a SimParam, a dict ``{"name", "type", "role"}`` or ``"name[:type[:role]]"``."""
        if isinstance(p, SimParam):
            return p
        if isinstance(p, str):
            parts = p.split(":")
            if not 1 <= len(parts) <= 3 or not parts[0]:
                raise ValueError(f"bad parameter shorthand {p!r}; expected 'name[:type[:role]]'")
            return SimParam(parts[0], parts[1] if len(parts) > 1 else "ptr", *parts[2:])
        if isinstance(p, Mapping):
            return SimParam(str(p["name"]), str(p.get("type", "ptr")), p.get("role"))
        raise TypeError(f"cannot make a kernel parameter from {type(p).__name__}")

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.role:
            d["role"] = self.role
        return d


def param_layout(params: Sequence[SimParam]) -> tuple[tuple[int, ...], int]:
    """(offsets, total size) of ``params`` laid out as the C ABI lays out kernel arguments.

    Computed independently of ParamBlock on purpose: the sim decodes launches with this layout,
    so a packing bug in ParamBlock shows up as wrong argument values.
    """
    offsets = []
    end = 0
    for p in params:
        end = (end + p.size - 1) // p.size * p.size
        offsets.append(end)
        end += p.size
    return tuple(offsets), end


def decode_params(params: Sequence[SimParam], raw: bytes) -> tuple[int | float, ...]:
    offsets, size = param_layout(params)
    if len(raw) < size:
        raise ValueError(f"argument buffer has {len(raw)} bytes, kernel needs {size}")
    return tuple(
        struct.unpack_from("<" + PARAM_TYPES[p.type][1], raw, off)[0]
        for p, off in zip(params, offsets, strict=True)
    )


@dataclass(frozen=True)
class SimKernelSpec:
    """A model of one kernel.

    Timing: every block runs for ``block_time_us`` once it is on a CU; co-resident blocks do
    not slow each other down (occupancy is the only contention the model knows). A block of a
    kernel with a preempt-flag parameter reads the flag when it starts and, if it is nonzero,
    returns after ``skip_time_us`` (device default when None) without doing its work. With a
    poll interval (``poll_interval_us`` here or a parameter with that role, which wins) the
    block also re-reads the flag every interval of its work and returns at the first poll that
    sees it set. A block is ``loop_trips`` iterations of one loop: with ``poll_every`` N (here,
    or a parameter with that role, which wins) it polls every N iterations, i.e. every
    ``block_time_us / loop_trips * N`` us (N = 0: block-start check only). Only blocks that run
    to the end increment the completion slot and run ``on_block`` and ``effect``.

    ``effect``: a declarative functional effect (a dict naming an op of
    reef_rocm.gpu.sim.effects.EFFECTS and the parameters it reads/writes); unlike ``on_block``
    it survives JSON, so it can live in a model package.

    Occupancy: ``blocks_per_cu`` if given, else computed from ``registers`` (per thread),
    ``shared_bytes`` (static) plus the launch's dynamic shared memory, and the block size,
    under the device's architecture limits.
    """

    name: str
    block_time_us: float
    params: tuple[SimParam, ...] = ()
    registers: int = 32
    shared_bytes: int = 0
    local_bytes: int = 0
    max_threads_per_block: int = 1024
    blocks_per_cu: int | None = None
    poll_interval_us: float | None = None
    skip_time_us: float | None = None
    loop_trips: int = 1
    poll_every: int | None = None
    effect: Mapping[str, Any] | None = None
    on_block: Callable[[SimBlockContext], None] | None = field(default=None, compare=False)
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(SimParam.coerce(p) for p in self.params))
        if not self.name:
            raise ValueError("a sim kernel needs a name")
        if not (isinstance(self.block_time_us, (int, float)) and self.block_time_us > 0):
            raise ValueError(f"kernel {self.name}: block_time_us must be > 0")
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"kernel {self.name}: duplicate parameter names {names}")
        for role in ROLES:
            if sum(p.role == role for p in self.params) > 1:
                raise ValueError(f"kernel {self.name}: more than one {role} parameter")
        if self.blocks_per_cu is not None and self.blocks_per_cu < 1:
            raise ValueError(f"kernel {self.name}: blocks_per_cu must be >= 1")
        for what in ("poll_interval_us", "skip_time_us"):
            v = getattr(self, what)
            if v is not None and v < 0:
                raise ValueError(f"kernel {self.name}: {what} must be >= 0")
        if not isinstance(self.loop_trips, int) or self.loop_trips < 1:
            raise ValueError(f"kernel {self.name}: loop_trips must be an int >= 1")
        if self.poll_every is not None and (
            not isinstance(self.poll_every, int) or self.poll_every < 0
        ):
            raise ValueError(f"kernel {self.name}: poll_every must be an int >= 0")
        if self.effect is not None and not isinstance(self.effect, Mapping):
            raise ValueError(f"kernel {self.name}: effect must be a dict")
        polls = (
            self.poll_interval_us
            or self.poll_every
            or self.role_index(ROLE_POLL_INTERVAL) is not None
            or self.role_index(ROLE_POLL_EVERY) is not None
        )
        if polls and self.role_index(ROLE_PREEMPT_FLAG) is None:
            raise ValueError(f"kernel {self.name}: polling needs a preempt_flag parameter")
        for what in ("registers", "shared_bytes", "local_bytes"):
            if getattr(self, what) < 0:
                raise ValueError(f"kernel {self.name}: {what} must be >= 0")

    def role_index(self, role: str) -> int | None:
        for i, p in enumerate(self.params):
            if p.role == role:
                return i
        return None

    @property
    def preemptible(self) -> bool:
        return self.role_index(ROLE_PREEMPT_FLAG) is not None

    def signature(self) -> str:
        return f"{self.name}({', '.join(f'{p.type} {p.name}' for p in self.params)})"

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "block_time_us": self.block_time_us,
            "params": [p.as_dict() for p in self.params],
            "registers": self.registers,
            "shared_bytes": self.shared_bytes,
            "local_bytes": self.local_bytes,
            "max_threads_per_block": self.max_threads_per_block,
        }
        for k in ("blocks_per_cu", "poll_interval_us", "skip_time_us", "poll_every", "effect"):
            if getattr(self, k) is not None:
                d[k] = getattr(self, k) if k != "effect" else dict(self.effect)  # type: ignore
        if self.loop_trips != 1:
            d["loop_trips"] = self.loop_trips
        if self.meta:
            d["meta"] = dict(self.meta)
        # callables cannot be serialised; say that one was dropped rather than hide it
        if self.on_block is not None:
            d["on_block_dropped"] = True
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimKernelSpec:
        known = {
            "name", "block_time_us", "params", "registers", "shared_bytes", "local_bytes",
            "max_threads_per_block", "blocks_per_cu", "poll_interval_us", "skip_time_us", "meta",
            "loop_trips", "poll_every", "effect",
        }  # fmt: skip
        unknown = set(d) - known - {"on_block_dropped"}
        if unknown:
            raise ValueError(f"sim kernel {d.get('name')!r}: unknown fields {sorted(unknown)}")
        kw = {k: d[k] for k in known if k in d}
        kw["params"] = tuple(SimParam.coerce(p) for p in kw.get("params", ()))
        return cls(**kw)


@dataclass(frozen=True)
class SimModuleSpec:
    """A sim "code object": kernel models by name."""

    kernels: tuple[SimKernelSpec, ...]
    name: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kernels", tuple(self.kernels))
        names = [k.name for k in self.kernels]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"sim module {self.name!r}: duplicate kernel names {dup}")

    def kernel(self, name: str) -> SimKernelSpec:
        for k in self.kernels:
            if k.name == name:
                return k
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [k.name for k in self.kernels]

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": MODULE_FORMAT,
            "version": MODULE_FORMAT_VERSION,
            "simulated": True,
            "name": self.name,
            "kernels": [k.as_dict() for k in self.kernels],
        }

    def to_bytes(self) -> bytes:
        """The JSON image ``load_module`` accepts (``on_block`` callables are dropped)."""
        return json.dumps(self.as_dict(), indent=1, sort_keys=True).encode()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SimModuleSpec:
        if d.get("format") != MODULE_FORMAT:
            raise CodeObjectError(
                f"not a sim module (format {d.get('format')!r}, expected {MODULE_FORMAT!r})"
            )
        if d.get("version") != MODULE_FORMAT_VERSION:
            raise CodeObjectError(f"sim module version {d.get('version')!r} is not supported")
        return cls(tuple(SimKernelSpec.from_dict(k) for k in d["kernels"]), str(d.get("name", "")))

    @classmethod
    def from_image(cls, image: Any) -> SimModuleSpec:
        """Whatever ``load_module`` was given: a spec, one kernel spec, a dict or JSON bytes."""
        if isinstance(image, SimModuleSpec):
            return image
        if isinstance(image, SimKernelSpec):
            return cls((image,), image.name)
        if isinstance(image, Mapping):
            return cls.from_dict(image)
        if isinstance(image, (bytes, bytearray, memoryview, str)):
            raw = bytes(image) if not isinstance(image, str) else image.encode()
            if raw[:4] == b"\x7fELF":
                raise CodeObjectError(
                    "the sim backend runs kernel models (SimModuleSpec or its JSON), not real "
                    "code objects; this image is an ELF (HSACO/cubin) - build a sim module, e.g. "
                    "SimModuleSpec.from_profile(...), or open a real backend"
                )
            try:
                d = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise CodeObjectError(f"sim module image is not JSON: {e}") from None
            if not isinstance(d, dict):
                raise CodeObjectError("sim module image must be a JSON object")
            return cls.from_dict(d)
        raise TypeError(f"cannot load a sim module from {type(image).__name__}")

    @classmethod
    def from_profile(
        cls,
        profile: Mapping[str, Any] | str | bytes | os.PathLike[str],
        *,
        compute_units: int | None = None,
        be_variant: bool = False,
        poll_interval_us: float | None = None,
        effects: Mapping[str, Callable[[SimBlockContext], None]] | None = None,
        name: str = "",
    ) -> SimModuleSpec:
        """Kernel models from a per-kernel timing profile measured on a real GPU.

        Profile (a dict, JSON text/bytes or a path to a JSON file)::

            {"device": {"name": "NVIDIA H100 80GB HBM3", "compute_units": 132},
             "kernels": [{"name": "conv1", "duration_us": 12.5,
                          "grid": [64, 1, 1], "block": [256, 1, 1],
                          # optional:
                          "blocks_per_cu": 2, "registers": 64, "shared_bytes": 8192,
                          "params": ["ptr", ...] or [{"name": .., "type": ..}, ...],
                          "num_args": 3}, ...]}

        ``"kernels"`` may also be a mapping name -> record. A kernel's blocks ran in
        ``ceil(blocks / (compute_units * blocks_per_cu))`` rounds, so its block time is the
        duration divided by that count (``blocks_per_cu`` defaults to 1 and is pinned on the
        spec, so the sim replays the measured duration on a device with the same CU count).
        Repeated names (one kernel called several times) must share a launch shape; their
        durations are averaged. Params default to ``num_args`` pointers (0 if absent);
        ``be_variant`` appends REEF's extra BE arguments: a ``preempt_flag`` and a
        ``completion_slot`` pointer, in that order.
        """
        prof = _load_json(profile)
        cus = compute_units or int(prof.get("device", {}).get("compute_units", 0) or 0)
        if cus < 1:
            raise ValueError(
                "profile gives no device compute_units; pass compute_units= "
                "(the SM/CU count of the GPU it was measured on)"
            )
        records = prof.get("kernels")
        if isinstance(records, Mapping):
            records = [{"name": k, **v} for k, v in records.items()]
        if not isinstance(records, list) or not records:
            raise ValueError("profile has no 'kernels' list or mapping")
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        for r in records:
            grouped.setdefault(str(r["name"]), []).append(r)
        specs = []
        for kname, recs in grouped.items():
            shapes = {(tuple(r.get("grid", (1,))), tuple(r.get("block", (1,)))) for r in recs}
            if len(shapes) > 1:
                raise ValueError(f"profile kernel {kname!r} appears with launch shapes {shapes}")
            r0 = recs[0]
            duration = sum(float(r["duration_us"]) for r in recs) / len(recs)
            blocks = math.prod(int(x) for x in r0.get("grid", (1,)))
            per_cu = int(r0.get("blocks_per_cu", 1))
            rounds = math.ceil(blocks / (cus * per_cu))
            if "params" in r0:
                params = [
                    SimParam(f"arg{i}", p) if isinstance(p, str) and ":" not in p else p
                    for i, p in enumerate(r0["params"])
                ]
            else:
                params = [SimParam(f"arg{i}") for i in range(int(r0.get("num_args", 0)))]
            if be_variant:
                params += [
                    SimParam("preempt_flag", "ptr", ROLE_PREEMPT_FLAG),
                    SimParam("completion_slot", "ptr", ROLE_COMPLETION_SLOT),
                ]
            specs.append(
                SimKernelSpec(
                    name=kname,
                    block_time_us=max(duration / rounds, 1e-3),
                    params=tuple(params),
                    registers=int(r0.get("registers", 32)),
                    shared_bytes=int(r0.get("shared_bytes", 0)),
                    blocks_per_cu=per_cu,
                    poll_interval_us=poll_interval_us,
                    on_block=(effects or {}).get(kname),
                    meta={
                        "profile_duration_us": duration,
                        "profile_grid": list(r0.get("grid", (1,))),
                        "profile_block": list(r0.get("block", (1,))),
                        "profile_compute_units": cus,
                        "profile_calls": len(recs),
                    },
                )
            )
        return cls(tuple(specs), name or str(prof.get("name", "")))


def _load_json(src: Mapping[str, Any] | str | bytes | os.PathLike[str]) -> Mapping[str, Any]:
    if isinstance(src, Mapping):
        return src
    if isinstance(src, bytes):
        return json.loads(src)
    text = os.fspath(src)
    if text.lstrip().startswith("{"):
        return json.loads(text)
    with open(text, encoding="utf-8") as f:
        return json.load(f)
