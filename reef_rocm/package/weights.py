"""Deterministic tensor contents from a seed, identical on every machine and numpy version.

Weights of the zoo models are not stored in packages (VGG-19 alone is 550 MB): they are
regenerated where they are needed (on the GPU host, and by the compiler for the CPU
reference). ``np.random`` streams are not guaranteed stable across numpy versions, so this
uses a counter-based generator, splitmix64, written with numpy uint64 arithmetic (wrapping
multiply, shifts and xors are exact everywhere). Element ``i`` of tensor ``name`` is
``splitmix64(key(seed, name) + (i + 1) * GOLDEN)``; the top 24 bits give a float in [0, 1)
that float32 represents exactly, and the scaling is done in float64 (IEEE, deterministic).

Init specs (the ``init`` field of a manifest buffer):
  {"kind": "uniform", "bound": b[, "center": c]}   c + U[-b, b)
  {"kind": "const", "value": v}
  {"kind": "randint", "high": n}                   integers in [0, n)
"""

from __future__ import annotations

from typing import Any

import numpy as np

GENERATOR = "splitmix64-v1"
GOLDEN = 0x9E3779B97F4A7C15
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_CHUNK = 1 << 22  # elements per step: bounds temporary memory to ~100 MB


def _key(seed: int, name: str) -> int:
    """FNV-1a 64 of "seed:name": a stable per-tensor stream key (no Python hash())."""
    h = 0xCBF29CE484222325
    for byte in f"{seed}:{name}".encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def _mix(z: np.ndarray) -> np.ndarray:
    z = (z ^ (z >> np.uint64(30))) * _M1
    z = (z ^ (z >> np.uint64(27))) * _M2
    return z ^ (z >> np.uint64(31))


def random_bits(seed: int, name: str, start: int, stop: int) -> np.ndarray:
    """uint64 words ``start..stop-1`` of the stream of tensor ``name``."""
    idx = np.arange(start + 1, stop + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return _mix(idx * np.uint64(GOLDEN) + np.uint64(_key(seed, name)))


def generate(
    seed: int, name: str, shape: tuple[int, ...] | list[int], dtype: str, init: dict[str, Any]
) -> np.ndarray:
    """The contents of one tensor, C-contiguous, of ``dtype``."""
    shape = tuple(int(s) for s in shape)
    n = int(np.prod(shape, dtype=np.int64)) if shape else 1
    out = np.empty(n, dtype=np.dtype(dtype))
    kind = init.get("kind")
    if kind == "const":
        out[...] = init["value"]
        return out.reshape(shape)
    if kind not in ("uniform", "randint"):
        raise ValueError(f"{name}: unknown init kind {kind!r}")
    for lo in range(0, n, _CHUNK):
        hi = min(n, lo + _CHUNK)
        bits = random_bits(seed, name, lo, hi)
        if kind == "randint":
            out[lo:hi] = (bits % np.uint64(int(init["high"]))).astype(out.dtype)
        else:
            u = (bits >> np.uint64(40)).astype(np.float64) * (1.0 / (1 << 24))  # [0, 1)
            out[lo:hi] = (u * 2.0 - 1.0) * float(init["bound"]) + float(init.get("center", 0.0))
    return out.reshape(shape)
