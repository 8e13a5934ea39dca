"""Kernel parameters of sim kernel models: C types, REEF roles and the kernarg layout."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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
