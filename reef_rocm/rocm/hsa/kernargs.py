"""Kernel argument segments for AQL dispatches: explicit arguments where the code object's
metadata puts them, hidden arguments (code object v5 block counts, group sizes, grid
dimensions, dynamic LDS size) computed from the launch shape.

HIP fills the hidden arguments for ``hipModuleLaunchKernel``; a dispatch written by us must
do it too, or a v5 kernel reading ``blockDim`` gets garbage. Offsets come from the
``amdhsa.kernels[].args`` metadata (``.offset``, ``.size``, ``.value_kind``); hidden
arguments with no launch-derived value (printf/hostcall buffers, heap, default queue,
multigrid sync) are left 0: kernels that use them (printf, device malloc) are not
supported by this path. ``hidden_queue_ptr`` gets the address of the ``hsa_queue_t`` the
packet goes to, written at launch.
"""

from __future__ import annotations

import ctypes
import struct
from collections.abc import Callable
from dataclasses import dataclass

from reef_rocm.errors import CodeObjectError
from reef_rocm.gpu.api import LaunchConfig
from reef_rocm.gpu.params import ParamBlock

#: hidden value_kind -> (struct format, value from the launch)
_HIDDEN: dict[str, tuple[str, Callable[[LaunchConfig], int]]] = {
    "hidden_block_count_x": ("<I", lambda c: c.grid[0]),
    "hidden_block_count_y": ("<I", lambda c: c.grid[1]),
    "hidden_block_count_z": ("<I", lambda c: c.grid[2]),
    "hidden_group_size_x": ("<H", lambda c: c.block[0]),
    "hidden_group_size_y": ("<H", lambda c: c.block[1]),
    "hidden_group_size_z": ("<H", lambda c: c.block[2]),
    # LaunchConfig grids are whole blocks: no partial last work-group
    "hidden_remainder_x": ("<H", lambda c: 0),
    "hidden_remainder_y": ("<H", lambda c: 0),
    "hidden_remainder_z": ("<H", lambda c: 0),
    "hidden_global_offset_x": ("<q", lambda c: 0),
    "hidden_global_offset_y": ("<q", lambda c: 0),
    "hidden_global_offset_z": ("<q", lambda c: 0),
    "hidden_grid_dims": ("<H", lambda c: 3 if c.grid[2] > 1 or c.block[2] > 1
                         else 2 if c.grid[1] > 1 or c.block[1] > 1 else 1),
    "hidden_dynamic_lds_size": ("<I", lambda c: c.shared_mem),
}


@dataclass(frozen=True)
class KernargLayout:
    kernel: str
    segment_size: int
    alignment: int
    explicit: tuple[tuple[int, int], ...]  # (offset, size) per explicit argument
    hidden: tuple[tuple[int, int, str], ...]  # (offset, size, value_kind)

    @classmethod
    def from_metadata(cls, kern: dict) -> KernargLayout:
        name = str(kern.get(".name", "?"))
        try:
            size = int(kern[".kernarg_segment_size"])
            align = int(kern.get(".kernarg_segment_align", 16))
            explicit, hidden = [], []
            for a in kern.get(".args", []):
                off, n, kind = int(a[".offset"]), int(a[".size"]), str(a[".value_kind"])
                if off + n > size:
                    raise CodeObjectError(f"kernel {name!r}: argument at {off}+{n} past the "
                                          f"{size}-byte kernarg segment")
                (hidden if kind.startswith("hidden_") else explicit).append(
                    (off, n, kind) if kind.startswith("hidden_") else (off, n))
        except (KeyError, TypeError, ValueError) as e:
            raise CodeObjectError(f"kernel {name!r}: malformed argument metadata ({e})") from e
        return cls(name, size, align, tuple(explicit), tuple(hidden))  # type: ignore[arg-type]

    def plan(self, params: ParamBlock, config: LaunchConfig) -> KernargPlan:
        """Check ``params`` against the layout and precompute the copies a launch does."""
        if len(params) != len(self.explicit):
            raise ValueError(f"kernel {self.kernel!r} takes {len(self.explicit)} arguments, "
                             f"got {len(params)}")
        copies = []
        for i, ((off, n), poff, psize) in enumerate(
                zip(self.explicit, params.offsets, params.sizes, strict=True)):
            if n != psize:
                raise ValueError(f"kernel {self.kernel!r} argument {i} is {n} bytes, the value "
                                 f"passed is {psize}")
            copies.append((off, params.buffer + poff, n))
        hidden = bytearray(self.segment_size)
        queue_ptr_offset = -1
        for off, n, kind in self.hidden:
            if kind == "hidden_queue_ptr" and n == 8:
                queue_ptr_offset = off
                continue
            spec = _HIDDEN.get(kind)
            if spec is None:
                continue
            fmt, value = spec
            if struct.calcsize(fmt) != n:
                raise CodeObjectError(f"kernel {self.kernel!r}: {kind} is {n} bytes, expected "
                                      f"{struct.calcsize(fmt)}")
            struct.pack_into(fmt, hidden, off, value(config))
        return KernargPlan(self.segment_size, tuple(copies), bytes(hidden), params,
                           queue_ptr_offset)


class KernargPlan:
    """The copies that fill one launch's kernarg segment: the hidden arguments (fixed by the
    launch shape, packed once) and each explicit argument from the ParamBlock, read at launch
    time so ``params.set`` between launches takes effect. Allocates nothing per write."""

    __slots__ = ("size", "copies", "queue_ptr_offset", "_hidden", "_params")

    def __init__(self, size: int, copies: tuple[tuple[int, int, int], ...], hidden: bytes,
                 params: ParamBlock, queue_ptr_offset: int = -1) -> None:
        self.size = size
        self.copies = copies
        self.queue_ptr_offset = queue_ptr_offset
        self._hidden = ctypes.create_string_buffer(hidden, max(size, 1))
        self._params = params  # keeps the source buffer alive

    def write(self, address: int, queue_ptr: int = 0) -> None:
        ctypes.memmove(address, self._hidden, self.size)
        for off, src, n in self.copies:
            ctypes.memmove(address + off, src, n)
        if self.queue_ptr_offset >= 0:
            ctypes.c_uint64.from_address(address + self.queue_ptr_offset).value = queue_ptr


def layouts(image: bytes, source: str = "<hsaco>") -> dict[str, KernargLayout]:
    """The kernarg layout of every kernel of an HSACO (code object v3+)."""
    from reef_rocm.codeobj.amd import read_metadata
    from reef_rocm.codeobj.elf import check_elf, open_elf

    check_elf(image, source)
    meta = read_metadata(image, open_elf(image), source)
    kernels = meta.get("amdhsa.kernels", [])
    if not isinstance(kernels, list):
        raise CodeObjectError(f"{source}: amdhsa.kernels is not a list")
    return {str(k.get(".name")): KernargLayout.from_metadata(k) for k in kernels}
