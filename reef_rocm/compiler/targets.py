"""Compile targets named on the command line (``cuda:sm_90``, ``rocm:gfx90a``, ...)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from reef_rocm.errors import UnsupportedError

CUDA_ARCHS = ("sm_80", "sm_90")
ROCM_ARCHS = ("gfx906", "gfx908", "gfx90a", "gfx942")
TARGETS = tuple(f"cuda:{a}" for a in CUDA_ARCHS) + tuple(f"rocm:{a}" for a in ROCM_ARCHS)


@dataclass(frozen=True)
class TargetSpec:
    name: str  # "cuda:sm_90"
    kind: str  # "cuda" | "rocm" (TVM target kind)
    arch: str  # "sm_90" | "gfx90a"

    @property
    def backend(self) -> str:
        """The reef_rocm.gpu backend that loads this target's code objects."""
        return "cuda" if self.kind == "cuda" else "hip"

    @property
    def binary_ext(self) -> str:
        return ".cubin" if self.kind == "cuda" else ".hsaco"

    def tvm_target_dict(self) -> dict[str, Any]:
        if self.kind == "cuda":
            return {"kind": "cuda", "arch": self.arch}
        return {"kind": "rocm", "mcpu": self.arch}

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "arch": self.arch,
            "backend": self.backend,
            "tvm": self.tvm_target_dict(),
        }


def parse_target(name: str) -> TargetSpec:
    """``cuda:sm_90`` -> TargetSpec; anything not in TARGETS is an UnsupportedError."""
    kind, _, arch = name.strip().partition(":")
    if kind == "hip":
        kind = "rocm"
    if f"{kind}:{arch}" not in TARGETS:
        raise UnsupportedError(f"unsupported target {name!r}; supported: {', '.join(TARGETS)}")
    return TargetSpec(name=f"{kind}:{arch}", kind=kind, arch=arch)
