"""Declarative functional effects of sim kernels: what a completed block writes.

A ``SimKernelSpec.effect`` is a plain dict (so it survives the module's JSON and lives in a
model package as a file), e.g.::

    {"op": "affine", "src": "x", "dst": "y", "n": 1024, "dtype": "float32",
     "scale": 0.5, "bias": 0.1, "weight": "w"}   # optional weight: y = x*scale + bias + w

It names kernel *parameters* (pointers), not addresses. When the module loads, the dict is
resolved by its ``op`` through :data:`EFFECTS` into an :class:`Effect` object. Every effect
splits its ``n`` elements into one contiguous slice per block (block b of B owns elements
``[b*c, min(n, (b+1)*c))`` with ``c = ceil(n / B)``), applies the op to that slice when the
block completes, and reports the byte ranges a block writes (``writes``) so the device can
poison them when a block leaves early or is killed.

Ops:

* ``affine``: ``dst[s] = src[s] * scale + bias (+ weight[s])`` - idempotent (re-running a block
  gives the same bytes), like every kernel the compiler emits.
* ``accumulate``: ``dst[s] += src[s] * scale`` - *not* idempotent (dst is read and written), for
  tests that a restore re-running a partial kernel is caught.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from reef_rocm.errors import CodeObjectError

if TYPE_CHECKING:
    from reef_rocm.gpu.sim.context import SimBlockContext
    from reef_rocm.gpu.sim.params import SimParam

DTYPES = ("float32", "float64", "float16", "int32", "uint32", "int64")


def block_slice(block_id: int, num_blocks: int, n: int) -> tuple[int, int]:
    """Element range ``[lo, hi)`` block ``block_id`` of ``num_blocks`` owns out of ``n``."""
    c = math.ceil(n / num_blocks) if num_blocks else n
    lo = min(n, block_id * c)
    return lo, min(n, lo + c)


@dataclass(frozen=True)
class Effect:
    """Base of the declarative effects: a per-block slice of ``n`` elements of ``dtype``."""

    kernel: str
    n: int
    dtype: str

    op: ClassVar[str] = ""
    #: parameter fields (names of pointer parameters) this op reads or writes
    pointer_fields: ClassVar[tuple[str, ...]] = ()
    #: which of them it writes
    output_fields: ClassVar[tuple[str, ...]] = ()

    def apply(self, ctx: SimBlockContext) -> None:
        raise NotImplementedError

    def _array(self, ctx: SimBlockContext, field_: str) -> np.ndarray:
        """The slice of the buffer named by ``field_`` this block owns, as a numpy view."""
        lo, hi = block_slice(ctx.block_id, ctx.num_blocks, self.n)
        if hi <= lo:  # more blocks than elements: this one owns nothing
            return np.empty(0, self.dtype)
        item = np.dtype(self.dtype).itemsize
        addr = int(ctx.arg(getattr(self, field_))) + lo * item
        what = f"{self.kernel} effect {self.op} {field_}"
        return ctx.memory.view(addr, (hi - lo) * item, what).view(self.dtype)

    def writes(self, ctx: SimBlockContext) -> list[tuple[int, int]]:
        """(address, bytes) this block writes: what a block that stops part-way corrupts."""
        lo, hi = block_slice(ctx.block_id, ctx.num_blocks, self.n)
        if hi <= lo:
            return []
        item = np.dtype(self.dtype).itemsize
        return [
            (int(ctx.arg(getattr(self, f))) + lo * item, (hi - lo) * item)
            for f in self.output_fields
        ]

    def check_params(self, params: Sequence[SimParam]) -> None:
        ptrs = {p.name for p in params if p.type == "ptr" and p.role is None}
        for f in self.pointer_fields:
            name = getattr(self, f)
            if name is not None and name not in ptrs:
                raise CodeObjectError(
                    f"sim kernel {self.kernel}: effect {self.op} {f}={name!r} is not one of its "
                    f"pointer parameters ({', '.join(sorted(ptrs)) or 'none'})"
                )


@dataclass(frozen=True)
class AffineEffect(Effect):
    src: str = ""
    dst: str = ""
    scale: float = 1.0
    bias: float = 0.0
    weight: str | None = None

    op = "affine"
    pointer_fields = ("src", "dst", "weight")
    output_fields = ("dst",)

    def apply(self, ctx: SimBlockContext) -> None:
        t = np.dtype(self.dtype).type
        src = self._array(ctx, "src")
        val = src * t(self.scale) + t(self.bias)
        if self.weight is not None:
            val = val + self._array(ctx, "weight")
        self._array(ctx, "dst")[:] = val


@dataclass(frozen=True)
class AccumulateEffect(Effect):
    src: str = ""
    dst: str = ""
    scale: float = 1.0

    op = "accumulate"
    pointer_fields = ("src", "dst")
    output_fields = ("dst",)

    def apply(self, ctx: SimBlockContext) -> None:
        t = np.dtype(self.dtype).type
        dst = self._array(ctx, "dst")
        dst[:] = dst + self._array(ctx, "src") * t(self.scale)


#: op name -> effect class; ``register_effect`` adds one
EFFECTS: dict[str, type[Effect]] = {"affine": AffineEffect, "accumulate": AccumulateEffect}


def register_effect(cls: type[Effect]) -> type[Effect]:
    """Register an Effect subclass under its ``op`` (usable as a class decorator)."""
    if not cls.op:
        raise ValueError(f"{cls.__name__} has no op name")
    EFFECTS[cls.op] = cls
    return cls


def resolve_effect(kernel: str, d: Mapping[str, Any], params: Sequence[SimParam]) -> Effect:
    """The Effect object for a kernel's effect dict; CodeObjectError naming what is wrong."""
    d = dict(d)
    op = d.pop("op", None)
    cls = EFFECTS.get(op)  # type: ignore[arg-type]
    if cls is None:
        raise CodeObjectError(
            f"sim kernel {kernel}: unknown effect op {op!r} (known: {', '.join(EFFECTS)})"
        )
    dtype = str(d.pop("dtype", "float32"))
    if dtype not in DTYPES:
        raise CodeObjectError(f"sim kernel {kernel}: effect dtype {dtype!r} not in {DTYPES}")
    n = d.pop("n", None)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise CodeObjectError(f"sim kernel {kernel}: effect needs an element count n >= 1")
    try:
        eff = cls(kernel=kernel, n=n, dtype=dtype, **d)
    except TypeError as e:
        raise CodeObjectError(f"sim kernel {kernel}: bad {op} effect fields: {e}") from None
    for f in cls.pointer_fields:
        if f not in ("weight",) and not getattr(eff, f):
            raise CodeObjectError(f"sim kernel {kernel}: {op} effect needs {f!r}")
    eff.check_params(params)
    return eff
