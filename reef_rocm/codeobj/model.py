"""Vendor-neutral description of what a kernel needs from the GPU.

The scheduler's kernel padding (DKP) picks kernels by their resource use and occupancy; it reads
these dataclasses and never the ELF files themselves.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class KernelResources:
    """Per-kernel resource use as recorded in one code object.

    Register counts are per work-item (thread); memory sizes are bytes.
    """

    name: str
    vendor: str  # "amd" | "nvidia"
    arch: str  # "gfx90a", "sm_90", ...
    #: AMD: ``.vgpr_count`` (on gfx90a/gfx942 the unified file: arch VGPRs rounded to 4 plus
    #: AGPRs; on gfx908 max(VGPR, AGPR)). NVIDIA: registers per thread.
    registers: int
    agprs: int = 0  # AMD accumulation registers (gfx908 and later); 0 on NVIDIA
    sgprs: int = 0  # AMD scalar registers per wave incl. VCC/FLAT_SCRATCH/XNACK; 0 on NVIDIA
    #: AMD: group segment (LDS) fixed size; NVIDIA: static shared memory (cuobjdump SHARED).
    shared_bytes: int = 0
    #: AMD: private segment fixed size per work-item; NVIDIA: stack frame + local memory.
    scratch_bytes: int = 0
    wave_size: int = 64  # wavefront (AMD) / warp (NVIDIA) width
    #: Largest block the kernel was compiled for: ``.max_flat_workgroup_size`` (AMD), the
    #: ``__launch_bounds__``/``maxntid`` product (NVIDIA, 1024 when the kernel has none).
    max_threads: int = 1024
    param_bytes: int = 0  # kernarg segment size (AMD) / parameter bank size (NVIDIA)
    #: Vendor-specific extras (spill counts, cuobjdump's STACK/LOCAL/CONSTANT[0], ...).
    details: dict[str, Any] = field(default_factory=dict, compare=False)
    #: AMD only: the decoded 64-byte kernel descriptor.
    descriptor: Any = field(default=None, compare=False)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "descriptor"}
        d["details"] = dict(self.details)
        if self.descriptor is not None:
            d["descriptor"] = self.descriptor.as_dict()
        return d


@dataclass
class CodeObject:
    """One GPU code object (an AMD HSACO or an NVIDIA cubin) and its kernels."""

    format: str  # "hsaco" | "cubin"
    vendor: str  # "amd" | "nvidia"
    arch: str  # processor: "gfx90a", "sm_90"
    target_id: str  # full target: "gfx90a:sramecc+:xnack-", "sm_90"
    #: AMD code object version (4, 5, 6); NVIDIA: the ELF ABI version byte of the cubin.
    version: int
    kernels: dict[str, KernelResources] = field(default_factory=dict)
    source: str = ""  # path or "<bytes>", for messages
    #: Inconsistencies that do not stop reading (e.g. descriptor vs metadata disagree).
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["kernels"] = {k: v.as_dict() for k, v in self.kernels.items()}
        return d
