"""Keep a kernel variant's occupancy at the plain kernel's (issue 9: polling must not cost
resident blocks).

The preemptible variants add a flag read, a barrier or two and, with polls, a chunked loop;
the compiler may spend a few more registers on that, and on NVIDIA a few registers can cost
a resident block per SM. CUDA's ``__launch_bounds__(max_threads, min_blocks_per_sm)`` makes
nvcc fit ``min_blocks_per_sm`` blocks (spilling if it must), so we give each variant kernel
the plain kernel's blocks per SM, computed by reef_rocm.codeobj from the plain cubin. TVM
already writes ``__launch_bounds__(max_threads)``; we add the second argument.

AMD: TVM's LLVM codegen sets ``amdgpu-flat-work-group-size`` but offers no way to set
``amdgpu-waves-per-eu`` per kernel, so the AMD variants are left as compiled; measured
register counts are in docs/transform.md ("Launch bounds").
"""

from __future__ import annotations

import re

from reef_rocm.codeobj import occupancy, read_code_object

_SIG = re.compile(r'(extern "C" __global__ void )__launch_bounds__\((\d+)\) (\w+)\(')


def plain_blocks_per_sm(plain_cubin: bytes, arch: str, plain_source: str) -> dict[str, int]:
    """Kernel name -> resident blocks per SM of the plain kernel (its static shared memory
    and registers, launched with the block size of its ``__launch_bounds__``)."""
    co = read_code_object(plain_cubin)
    out = {}
    for m in _SIG.finditer(plain_source):
        threads, name = int(m.group(2)), m.group(3)
        res = co.kernels.get(name)
        if res is not None:
            out[name] = occupancy(arch, res, threads).blocks_per_cu
    return out


def with_min_blocks(source: str, min_blocks: dict[str, int]) -> str:
    """``source`` with ``__launch_bounds__(T)`` of each kernel named in ``min_blocks``
    turned into ``__launch_bounds__(T, min_blocks[name])``."""

    def sub(m: re.Match[str]) -> str:
        blocks = min_blocks.get(m.group(3), 0)
        if blocks < 1:
            return m.group(0)
        return f"{m.group(1)}__launch_bounds__({m.group(2)}, {blocks}) {m.group(3)}("

    return _SIG.sub(sub, source)
