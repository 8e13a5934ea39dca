"""Device IRModule -> (kernel source, code object bytes) for CUDA and ROCm targets."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef_rocm.errors import UnsupportedError

# Debian's rocm-device-libs live here (REFERENCE.md section 6); /opt/rocm where ROCm is installed
ROCM_BITCODE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode",
    "/opt/rocm/amdgcn/bitcode",
    "/opt/rocm/lib/amdgcn/bitcode",
)
LLD_CANDIDATES = ("ld.lld-16", "ld.lld-17", "ld.lld-18", "ld.lld", "/opt/rocm/llvm/bin/ld.lld")


@dataclass
class CodeObject:
    source: str
    source_ext: str  # ".cu" | ".ll"
    binary: bytes
    binary_ext: str  # ".cubin" | ".hsaco"


def nvcc_path() -> str:
    for cand in (os.environ.get("NVCC"), "nvcc", "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc"):
        if cand and shutil.which(cand):
            return shutil.which(cand)  # type: ignore[return-value]
    raise UnsupportedError("nvcc not found (set NVCC=/path/to/nvcc); needed for CUDA targets")


def nvcc_version() -> str:
    try:
        out = subprocess.run([nvcc_path(), "--version"], capture_output=True, text=True).stdout
    except (UnsupportedError, OSError):
        return "unavailable"
    return out.strip().splitlines()[-1] if out.strip() else "unknown"


def lld_path() -> str:
    for cand in LLD_CANDIDATES:
        if shutil.which(cand):
            return shutil.which(cand)  # type: ignore[return-value]
    raise UnsupportedError("ld.lld not found (apt install lld-16); needed for ROCm targets")


def compile_cuda(source: str, arch: str) -> bytes:
    """CUDA C -> cubin for ``arch`` with nvcc (-O3, as TVM's own nvcc helper uses)."""
    with tempfile.TemporaryDirectory(prefix="reef-nvcc-") as d:
        src, out = Path(d) / "kernels.cu", Path(d) / "kernels.cubin"
        src.write_text(source)
        cmd = [nvcc_path(), "--cubin", "-O3", f"-arch={arch}", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise UnsupportedError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
        return out.read_bytes()


# TVM calls the global tvm_callback_rocm_link once per codegen; we capture its result there.
_link_lock = threading.Lock()
_linked: list[bytes] = []


def _rocm_link(obj: Any) -> bytearray:
    """Relocatable AMDGPU ELF -> HSA code object.

    TVM's LLVM 22 writes code object v6 (ELF EI_ABIVERSION 4) which ld.lld <= 16 rejects;
    the kernels use nothing v6-specific, so we mark the object v5 (3) before linking
    (REFERENCE.md section 6). Checked offline with llvm-readelf/objdump only.
    """
    data = bytearray(bytes(obj))
    if data[:4] == b"\x7fELF" and data[8] == 4:
        data[8] = 3
    with tempfile.TemporaryDirectory(prefix="reef-lld-") as d:
        o, co = Path(d) / "k.o", Path(d) / "k.hsaco"
        o.write_bytes(data)
        proc = subprocess.run(
            [lld_path(), "--no-undefined", "-shared", str(o), "-o", str(co)],
            capture_output=True, text=True,
        )  # fmt: skip
        if proc.returncode != 0:
            raise RuntimeError(f"ld.lld failed: {proc.stderr[-2000:]}")
        out = co.read_bytes()
    _linked.append(out)
    return bytearray(out)


def _rocm_bitcode(arch: str) -> list[str]:
    """Device-library bitcode for ``arch`` (TVM's default list names no gfx90a/gfx942 ISA)."""
    root = next((Path(p) for p in ROCM_BITCODE_DIRS if Path(p).is_dir()), None)
    if root is None:
        raise UnsupportedError(
            f"ROCm device libraries not found in {', '.join(ROCM_BITCODE_DIRS)} "
            "(apt install rocm-device-libs)"
        )
    isa = arch.removeprefix("gfx")
    if not (root / f"oclc_isa_version_{isa}.bc").exists() and arch == "gfx942":
        isa = "940"  # Debian's ROCm 5.2 libraries stop at gfx940, the same ISA family
    names = [
        "ocml", "oclc_daz_opt_off", "oclc_correctly_rounded_sqrt_on",
        "oclc_finite_only_off", "oclc_unsafe_math_off", "oclc_wavefrontsize64_on",
        f"oclc_isa_version_{isa}", "oclc_abi_version_500",
    ]  # fmt: skip
    files = [root / f"{n}.bc" for n in names]
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise UnsupportedError(f"missing ROCm bitcode: {', '.join(missing)}")
    return [str(f) for f in files]


def codegen(device_mod: Any, target: Any, arch: str, nvcc: bool = True) -> CodeObject:
    """TVM codegen. For CUDA with ``nvcc=False`` the binary is left empty: the caller runs
    ``compile_cuda`` itself (in a worker, overlapping nvcc with the next TVM step)."""
    import tvm
    import tvm_ffi
    from tvm.tirx.build import codegen_build

    if target.kind.name == "cuda":
        rt = codegen_build(device_mod, target)
        source = str(rt.inspect_source())
        return CodeObject(source, ".cu", compile_cuda(source, arch) if nvcc else b"", ".cubin")
    if target.kind.name == "rocm":
        bitcode = _rocm_bitcode(arch)
        with _link_lock:
            tvm_ffi.register_global_func("tvm_callback_rocm_link", _rocm_link, override=True)
            tvm_ffi.register_global_func(
                "tvm_callback_rocm_bitcode_path",
                lambda *_: tvm.runtime.convert(bitcode),
                override=True,
            )
            _linked.clear()
            rt = codegen_build(device_mod, target)
            if len(_linked) != 1:
                raise UnsupportedError(f"expected one linked code object, got {len(_linked)}")
            binary = _linked.pop()
        return CodeObject(str(rt.inspect_source("")), ".ll", binary, ".hsaco")
    raise UnsupportedError(f"no code generation for {target.kind.name}")
