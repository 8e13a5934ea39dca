"""Kernel argument packing, done once per (kernel, arguments) and reused for every launch.

A ParamBlock holds the argument values in one contiguous buffer laid out as the C ABI lays
out a kernel's parameters (each at its natural alignment), plus an array of pointers to each
value. CUDA's ``kernelParams`` and HIP's ``kernelParams`` take the pointer array; HIP's
``extra`` (HIP_LAUNCH_PARAM_BUFFER_POINTER) takes the contiguous buffer. Both stay valid, at
fixed addresses, for the life of the block, so a launch passes two integers.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import numpy as np

POINTER_SIZE = 8


def _encode(index: int, value: Any) -> tuple[bytes, int]:
    """(raw bytes, alignment) of one kernel argument."""
    if isinstance(value, np.generic):
        raw = value.tobytes()
        return raw, value.dtype.alignment
    ptr = getattr(value, "ptr", None)
    if ptr is not None and not isinstance(value, (bool, int, float)):
        return int(ptr).to_bytes(POINTER_SIZE, "little", signed=False), POINTER_SIZE
    if isinstance(value, (bool, int, float)):
        raise TypeError(
            f"kernel argument {index} is a Python {type(value).__name__} ({value!r}); its width "
            "is ambiguous - pass a numpy scalar such as np.int32(...) or np.float32(...), "
            "or a buffer/DevicePtr for pointers"
        )
    raise TypeError(
        f"kernel argument {index} has unsupported type {type(value).__name__}; expected a "
        "device buffer, DevicePtr or numpy scalar"
    )


class ParamBlock:
    """Packed kernel arguments at stable addresses."""

    __slots__ = ("_buf", "_ptrs", "offsets", "sizes", "nbytes", "_size_t")

    def __init__(self, args: Sequence[Any]) -> None:
        encoded = [_encode(i, a) for i, a in enumerate(args)]
        offsets: list[int] = []
        end = 0
        for raw, align in encoded:
            end = (end + align - 1) // align * align
            offsets.append(end)
            end += len(raw)
        self.nbytes = (end + POINTER_SIZE - 1) // POINTER_SIZE * POINTER_SIZE
        self._buf = ctypes.create_string_buffer(max(self.nbytes, 1))
        for (raw, _), off in zip(encoded, offsets, strict=True):
            ctypes.memmove(ctypes.addressof(self._buf) + off, raw, len(raw))
        self.offsets = tuple(offsets)
        self.sizes = tuple(len(raw) for raw, _ in encoded)
        base = ctypes.addressof(self._buf)
        self._ptrs = (ctypes.c_void_p * max(len(args), 1))(*(base + o for o in offsets))
        self._size_t = ctypes.c_size_t(self.nbytes)

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def pointer_array(self) -> int:
        """Address of the ``void*[n]`` array (CUDA/HIP ``kernelParams``)."""
        return ctypes.addressof(self._ptrs)

    @property
    def buffer(self) -> int:
        """Address of the contiguous argument buffer (HIP ``extra`` launch form)."""
        return ctypes.addressof(self._buf)

    @property
    def size_address(self) -> int:
        """Address of a size_t holding ``nbytes`` (for the ``extra`` launch form)."""
        return ctypes.addressof(self._size_t)

    def raw(self) -> bytes:
        return self._buf.raw[: self.nbytes]

    def set(self, index: int, value: Any) -> None:
        """Replace argument ``index`` in place; the new value must have the same size."""
        raw, _ = _encode(index, value)
        if len(raw) != self.sizes[index]:
            raise ValueError(
                f"argument {index} is {self.sizes[index]} bytes, new value is {len(raw)}"
            )
        ctypes.memmove(ctypes.addressof(self._buf) + self.offsets[index], raw, len(raw))
