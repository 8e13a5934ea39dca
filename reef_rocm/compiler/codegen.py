"""Device IRModule -> (kernel source, code object bytes) for CUDA and ROCm targets.

This is the one home of the toolchain: where nvcc, ld.lld and the ROCm device libraries are
found, how a cubin is made and how TVM's AMDGPU object is linked into an HSACO. The compiler,
the tests and the tools all go through it; a missing or failing tool raises ToolchainError.

TVM asks two process-wide globals for the ROCm link (``tvm_callback_rocm_link``,
``tvm_callback_rocm_bitcode_path``). Nothing registers them at import: ``rocm_toolchain()``
installs ours for one build, under a lock, and puts the previous ones back afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef_rocm.errors import ToolchainError, UnsupportedError

# Debian's rocm-device-libs (ROCm 5.2) put the bitcode in /usr/lib/x86_64-linux-gnu/amdgcn/
# bitcode; a ROCm install has it under /opt/rocm
ROCM_BITCODE_DIRS = (
    "/usr/lib/x86_64-linux-gnu/amdgcn/bitcode",
    "/opt/rocm/amdgcn/bitcode",
    "/opt/rocm/lib/amdgcn/bitcode",
)
LLD_CANDIDATES = ("ld.lld-16", "ld.lld-17", "ld.lld-18", "ld.lld", "/opt/rocm/llvm/bin/ld.lld")
NVCC_CANDIDATES = ("nvcc", "/usr/local/cuda/bin/nvcc", "/usr/local/bin/nvcc")


@dataclass
class CodeObject:
    source: str
    source_ext: str  # ".cu" | ".ll"
    binary: bytes
    binary_ext: str  # ".cubin" | ".hsaco"


# ----------------------------------------------------------------------------- finding tools


def _first_on_path(candidates: tuple[str | None, ...]) -> str | None:
    for cand in candidates:
        path = shutil.which(cand) if cand else None
        if path:
            return path
    return None


def find_nvcc() -> str | None:
    """nvcc: ``$NVCC``, then PATH, then the usual CUDA install places; None if absent."""
    return _first_on_path((os.environ.get("NVCC"), *NVCC_CANDIDATES))


def nvcc_path() -> str:
    path = find_nvcc()
    if path is None:
        raise ToolchainError("nvcc not found (set NVCC=/path/to/nvcc); needed for CUDA targets")
    return path


def nvcc_version() -> str:
    path = find_nvcc()
    if path is None:
        return "unavailable"
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "unavailable"
    return out.strip().splitlines()[-1] if out.strip() else "unknown"


def find_lld() -> str | None:
    """ld.lld for AMDGPU, newest Debian package first; None if absent."""
    return _first_on_path(LLD_CANDIDATES)


def lld_path() -> str:
    path = find_lld()
    if path is None:
        raise ToolchainError("ld.lld not found (apt install lld-16); needed for ROCm targets")
    return path


def find_rocm_bitcode_dir() -> Path | None:
    """The ROCm device-library directory (holding ocml.bc, ockl.bc, ...); None if absent."""
    return next((Path(p) for p in ROCM_BITCODE_DIRS if (Path(p) / "ocml.bc").exists()), None)


def have_rocm_toolchain() -> bool:
    """Can this machine link ROCm code objects (ld.lld and the device libraries)?"""
    return find_lld() is not None and find_rocm_bitcode_dir() is not None


# ----------------------------------------------------------------------------- CUDA


def compile_cuda(source: str, arch: str) -> bytes:
    """CUDA C -> cubin for ``arch`` with nvcc (-O3, as TVM's own nvcc helper uses)."""
    with tempfile.TemporaryDirectory(prefix="reef-nvcc-") as d:
        src, out = Path(d) / "kernels.cu", Path(d) / "kernels.cubin"
        src.write_text(source)
        cmd = [nvcc_path(), "--cubin", "-O3", f"-arch={arch}", "-o", str(out), str(src)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"nvcc failed ({' '.join(cmd)}):\n{proc.stderr[-4000:]}")
        return out.read_bytes()


# ----------------------------------------------------------------------------- ROCm

_ELF_ABI_VERSION = 8  # e_ident[EI_ABIVERSION]: AMDGPU code object version - 2
_CO_V6, _CO_V5 = 4, 3


def link_hsaco(obj: bytes, keep_code_object_version: bool = False) -> bytes:
    """Relocatable AMDGPU ELF (TVM's LLVM output) -> HSA code object, with ld.lld.

    TVM's LLVM 22 writes code object v6 (ELF EI_ABIVERSION 4), which Debian's ld.lld 14-16
    reject; the kernels use nothing v6-specific, so the object is marked v5 (3) for the link.
    The result stays v5 unless ``keep_code_object_version`` puts the v6 byte back (for tools
    that read v6 objects). Checked offline with llvm-readelf / llvm-objdump; not yet loaded
    on an AMD GPU.
    """
    data = bytearray(bytes(obj))
    if data[:4] != b"\x7fELF":
        raise ToolchainError("ld.lld input is not an ELF object (TVM's AMDGPU codegen output)")
    abi = data[_ELF_ABI_VERSION]
    if abi == _CO_V6:
        data[_ELF_ABI_VERSION] = _CO_V5
    with tempfile.TemporaryDirectory(prefix="reef-lld-") as d:
        o, co = Path(d) / "k.o", Path(d) / "k.hsaco"
        o.write_bytes(data)
        cmd = [lld_path(), "--no-undefined", "-shared", str(o), "-o", str(co)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise ToolchainError(f"ld.lld failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}")
        out = bytearray(co.read_bytes())
    if keep_code_object_version:
        out[_ELF_ABI_VERSION] = abi
    return bytes(out)


def rocm_bitcode(arch: str) -> list[str]:
    """Device-library bitcode for ``arch`` (TVM's default list names no gfx90a/gfx942 ISA)."""
    root = find_rocm_bitcode_dir()
    if root is None:
        raise ToolchainError(
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
        raise ToolchainError(f"missing ROCm bitcode: {', '.join(missing)}")
    return [str(f) for f in files]


_ROCM_LINK = "tvm_callback_rocm_link"
_ROCM_BITCODE = "tvm_callback_rocm_bitcode_path"
# the two globals are process-wide, so one ROCm build at a time
_rocm_lock = threading.Lock()


@contextmanager
def rocm_toolchain(arch: str, keep_code_object_version: bool = False) -> Iterator[list[bytes]]:
    """Install our ld.lld link and ``arch``'s device libraries as TVM's ROCm callbacks for
    the builds inside the block; yields the list each linked HSACO is appended to. The
    previous callbacks (TVM's own, by default) are restored on exit."""
    import tvm
    import tvm_ffi

    bitcode = rocm_bitcode(arch)
    linked: list[bytes] = []

    def link(obj: Any) -> bytearray:
        out = link_hsaco(bytes(obj), keep_code_object_version)
        linked.append(out)
        return bytearray(out)

    with _rocm_lock:
        previous = {
            name: tvm_ffi.get_global_func(name, allow_missing=True)
            for name in (_ROCM_LINK, _ROCM_BITCODE)
        }
        tvm_ffi.register_global_func(_ROCM_LINK, link, override=True)
        tvm_ffi.register_global_func(
            _ROCM_BITCODE, lambda *_: tvm.runtime.convert(bitcode), override=True
        )
        try:
            yield linked
        finally:
            for name, func in previous.items():
                if func is None:
                    tvm_ffi.remove_global_func(name)
                else:
                    tvm_ffi.register_global_func(name, func, override=True)


def one_linked(linked: list[bytes]) -> bytes:
    """The single HSACO one TVM build produced (a build links its device module once)."""
    if len(linked) != 1:
        raise ToolchainError(f"expected one linked code object, got {len(linked)}")
    return linked[0]


# ----------------------------------------------------------------------------- codegen


def codegen(device_mod: Any, target: Any, arch: str, nvcc: bool = True) -> CodeObject:
    """TVM codegen. For CUDA with ``nvcc=False`` the binary is left empty: the caller runs
    ``compile_cuda`` itself (in a worker, overlapping nvcc with the next TVM step)."""
    from tvm.tirx.build import codegen_build

    if target.kind.name == "cuda":
        rt = codegen_build(device_mod, target)
        source = str(rt.inspect_source())
        return CodeObject(source, ".cu", compile_cuda(source, arch) if nvcc else b"", ".cubin")
    if target.kind.name == "rocm":
        with rocm_toolchain(arch) as linked:
            rt = codegen_build(device_mod, target)
        return CodeObject(str(rt.inspect_source("")), ".ll", one_linked(linked), ".hsaco")
    raise UnsupportedError(f"no code generation for {target.kind.name}")
