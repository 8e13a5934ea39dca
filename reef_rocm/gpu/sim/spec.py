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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reef_rocm.errors import CodeObjectError
from reef_rocm.gpu.sim.context import SimBlockContext
from reef_rocm.gpu.sim.params import (
    PARAM_TYPES,
    ROLE_COMPLETION_SLOT,
    ROLE_POLL_EVERY,
    ROLE_POLL_INTERVAL,
    ROLE_PREEMPT_FLAG,
    ROLES,
    SimParam,
    decode_params,
    param_layout,
)

__all__ = [
    "MODULE_FORMAT",
    "MODULE_FORMAT_VERSION",
    "PARAM_TYPES",
    "ROLES",
    "ROLE_COMPLETION_SLOT",
    "ROLE_POLL_EVERY",
    "ROLE_POLL_INTERVAL",
    "ROLE_PREEMPT_FLAG",
    "SimKernelSpec",
    "SimModuleSpec",
    "SimParam",
    "decode_params",
    "param_layout",
]

MODULE_FORMAT = "reef-sim-module"
MODULE_FORMAT_VERSION = 1


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

    Occupancy: ``blocks_per_cu`` if given, else reef_rocm.codeobj.occupancy's for
    ``registers`` (per thread), ``sgprs`` (AMD), ``shared_bytes`` (static) plus the launch's
    dynamic shared memory, and the block size, on the device's architecture.
    """

    name: str
    block_time_us: float
    params: tuple[SimParam, ...] = ()
    registers: int = 32
    sgprs: int = 0  # AMD scalar registers per wave (occupancy only; 0 = no SGPR limit)
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
        for what in ("registers", "sgprs", "shared_bytes", "local_bytes"):
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
        if self.sgprs:
            d["sgprs"] = self.sgprs
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
            "loop_trips", "poll_every", "effect", "sgprs",
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

        ``"kernels"`` may also be a mapping name -> record; ``us_median`` (what ``reef profile``
        writes) stands in for ``duration_us``. A kernel's blocks ran in
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
            duration = sum(_duration(r, kname) for r in recs) / len(recs)
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


def _duration(record: Mapping[str, Any], name: str) -> float:
    """A profiled kernel's time: ``duration_us``, or ``us_median`` as ``reef profile`` writes."""
    for key in ("duration_us", "us_median"):
        if key in record:
            return float(record[key])
    raise ValueError(f"profile kernel {name!r} has neither duration_us nor us_median")


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
