"""Code-object tooling: per-kernel resources from AMD HSACOs (code object v4-v6) and NVIDIA
cubins, and occupancy calculators for gfx906/gfx908/gfx90a/gfx942 and sm_80/sm_90.

    from reef_rocm.codeobj import read_code_object, occupancy
    co = read_code_object("model.hsaco")
    occ = occupancy(co.arch, co.kernels["saxpy"], block_threads=256)
    occ.blocks_per_cu, occ.limiter

pyelftools and msgpack are imported only when a file is read.
"""

from reef_rocm.codeobj.model import CodeObject, KernelResources
from reef_rocm.codeobj.occupancy import ARCHS, AmdArch, NvidiaArch, Occupancy, occupancy
from reef_rocm.codeobj.reader import find_code_objects, read_code_object, read_code_objects

__all__ = [
    "ARCHS",
    "AmdArch",
    "CodeObject",
    "KernelResources",
    "NvidiaArch",
    "Occupancy",
    "find_code_objects",
    "occupancy",
    "read_code_object",
    "read_code_objects",
]
