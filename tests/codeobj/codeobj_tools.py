"""Helpers shared by the codeobj tests: locating the vendors' tools, compiler remarks."""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Built:
    """One compiled code object and what the compiler said about it."""

    path: Path
    arch: str
    version: int | None = None  # AMD code object version asked for
    remarks: dict[str, dict[str, int]] = field(default_factory=dict)  # LLVM resource remarks

    def __str__(self) -> str:  # readable test ids
        return self.path.name


def find_tool(*names: str, extra: tuple[str, ...] = ()) -> str | None:
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    for p in extra:
        if os.access(p, os.X_OK):
            return p
    return None


def llvm_readelf() -> str | None:
    return find_tool(
        "llvm-readelf-16", "llvm-readelf", extra=("/usr/lib/llvm-16/bin/llvm-readelf",)
    )


def cuobjdump() -> str | None:
    found = find_tool("cuobjdump")
    if found:
        return found
    # pip install nvidia-cuda-cuobjdump puts it under site-packages/nvidia/cu*/bin
    spec = importlib.util.find_spec("nvidia")
    for root in spec.submodule_search_locations if spec else ():
        for cand in sorted(Path(root).glob("*/bin/cuobjdump"), reverse=True):
            if os.access(cand, os.X_OK):
                return str(cand)
    return None


def parse_remarks(stderr: str) -> dict[str, dict[str, int]]:
    """LLVM ``-Rpass-analysis=kernel-resource-usage`` remarks, per function."""
    out: dict[str, dict[str, int]] = {}
    cur: dict[str, int] | None = None
    for line in stderr.splitlines():
        if "remark:" not in line or "kernel-resource-usage" not in line:
            continue
        text = line.split("remark:", 1)[1].rsplit("[-Rpass", 1)[0].strip()
        key, _, value = text.partition(":")
        if key == "Function Name":
            cur = out.setdefault(value.strip(), {})
        elif cur is not None:
            try:
                cur[key.strip()] = int(value)
            except ValueError:
                pass
    return out
