"""NVIDIA cubins: per-kernel resources from the ``.nv.info`` attribute sections.

NVIDIA does not publish the cubin layout; what is read here was checked field by field against
``cuobjdump --dump-resource-usage`` (tests/codeobj run that comparison wherever cuobjdump is
installed):

* ``.nv.info`` (global) and ``.nv.info.<kernel>`` hold attribute records: byte format, byte
  attribute id, then a 16-bit value (formats 1-3) or a 16-bit length and that many bytes (4);
* REG = attribute 0x2f (symbol index, count) in ``.nv.info``; older cubins keep the count in
  bits 24-31 of ``sh_info`` of ``.text.<kernel>``;
* STACK = attribute 0x11 (frame size: symbol index, bytes); LOCAL = ``.nv.local.<kernel>``;
* SHARED = size of ``.nv.shared.<kernel>``; CONSTANT[0] = size of ``.nv.constant0.<kernel>``;
* cubins with a ``.nv.shared.reserved.*`` section (nvcc 13 for sm_90) count the 1 KiB of
  shared memory the system reserves per block inside every ``.nv.shared.<kernel>``; the
  driver's CU_FUNC_ATTRIBUTE_SHARED_SIZE_BYTES leaves it out (checked on an H100, driver 580),
  so ``shared_bytes`` does too and ``details["shared_section"]`` keeps cuobjdump's number;
* kernel parameter bytes = attribute 0x19; ``__launch_bounds__`` max threads = 0x05 (x, y, z);
  ``__maxnreg__``/launch-bounds register cap = 0x1b.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

from reef_rocm.codeobj.elf import EM_CUDA, ElfIdent, open_elf, section_bytes
from reef_rocm.codeobj.model import CodeObject, KernelResources
from reef_rocm.errors import CodeObjectError

EIATTR_MAX_THREADS = 0x05
EIATTR_FRAME_SIZE = 0x11
EIATTR_MIN_STACK_SIZE = 0x12
EIATTR_CBANK_PARAM_SIZE = 0x19
EIATTR_MAXREG_COUNT = 0x1B
EIATTR_REGCOUNT = 0x2F
_EIFMT_SVAL = 4  # length-prefixed value; formats 1-3 carry a 16-bit value inline
RESERVED_SHARED = 1024  # system-reserved shared memory per block on sm_80/sm_90


def iter_attributes(blob: bytes, source: str, section: str) -> Iterator[tuple[int, int | bytes]]:
    pos = 0
    while pos + 4 <= len(blob):
        fmt, attr, val = struct.unpack_from("<BBH", blob, pos)
        pos += 4
        if fmt == _EIFMT_SVAL:
            if pos + val > len(blob):
                raise CodeObjectError(f"{source}: corrupt {section}: attribute runs past the end")
            yield attr, blob[pos : pos + val]
            pos += val
        elif 1 <= fmt <= 3:
            yield attr, val
        else:
            raise CodeObjectError(f"{source}: corrupt {section}: attribute format {fmt}")


def _sym_pairs(value: int | bytes) -> tuple[int, int] | None:
    if isinstance(value, bytes) and len(value) >= 8:
        return struct.unpack_from("<II", value, 0)
    return None


def sm_arch(ident: ElfIdent) -> int:
    """SM version from e_flags: bits 8-15 in the CUDA 12.8+ layout (ELF ABI version 8 and
    later), bits 0-7 before."""
    return (ident.flags >> 8) & 0xFF if ident.abi_version >= 8 else ident.flags & 0xFF


def read_cubin(data: bytes, ident: ElfIdent, source: str) -> CodeObject:
    if ident.machine != EM_CUDA:
        raise CodeObjectError(f"{source}: e_machine {ident.machine} is not EM_CUDA (190)")
    sm = sm_arch(ident)
    if sm < 30:
        raise CodeObjectError(
            f"{source}: cubin names no SM architecture (e_flags {ident.flags:#x})"
        )
    arch = f"sm_{sm}"
    elf = open_elf(data)
    co = CodeObject("cubin", "nvidia", arch, arch, ident.abi_version, source=source)

    symtab = elf.get_section_by_name(".symtab")
    if symtab is None:
        raise CodeObjectError(f"{source}: cubin has no symbol table")
    sym_index = {s.name: i for i, s in enumerate(symtab.iter_symbols())}

    regcount: dict[int, int] = {}
    frame: dict[int, int] = {}
    min_stack: dict[int, int] = {}
    info = elf.get_section_by_name(".nv.info")
    if info is not None:
        for attr, value in iter_attributes(section_bytes(data, info), source, ".nv.info"):
            pair = _sym_pairs(value)
            if pair is None:
                continue
            target = {EIATTR_REGCOUNT: regcount, EIATTR_FRAME_SIZE: frame,
                      EIATTR_MIN_STACK_SIZE: min_stack}.get(attr)
            if target is not None:
                target[pair[0]] = pair[1]

    sections = {s.name: s for s in elf.iter_sections()}
    reserved_in_section = any(n.startswith(".nv.shared.reserved.") for n in sections)
    # Kernels (entry functions) own a parameter constant bank; device functions do not.
    names = [n[len(".nv.constant0."):] for n in sections if n.startswith(".nv.constant0.")]
    for name in names:
        text = sections.get(f".text.{name}")
        if text is None or name not in sym_index:
            raise CodeObjectError(f"{source}: kernel {name!r} has no code section or symbol")
        idx = sym_index[name]
        regs = regcount.get(idx, (text["sh_info"] >> 24) & 0xFF)
        attrs: dict[int, int | bytes] = {}
        kinfo = sections.get(f".nv.info.{name}")
        if kinfo is not None:
            for attr, value in iter_attributes(section_bytes(data, kinfo), source, kinfo.name):
                attrs.setdefault(attr, value)
        max_threads = 1024
        mt = attrs.get(EIATTR_MAX_THREADS)
        if isinstance(mt, bytes) and len(mt) >= 12:
            x, y, z = struct.unpack_from("<III", mt, 0)
            max_threads = x * y * z
        param = attrs.get(EIATTR_CBANK_PARAM_SIZE, 0)
        maxreg = attrs.get(EIATTR_MAXREG_COUNT)
        shared = sections.get(f".nv.shared.{name}")
        local = sections.get(f".nv.local.{name}")
        shared_section = shared["sh_size"] if shared is not None else 0
        reserved = RESERVED_SHARED if reserved_in_section and shared_section >= RESERVED_SHARED \
            else 0
        stack = frame.get(idx, 0)
        local_bytes = local["sh_size"] if local is not None else 0
        details = {
            "stack": stack,
            "local": local_bytes,
            "min_stack": min_stack.get(idx, 0),
            "constant0": sections[f".nv.constant0.{name}"]["sh_size"],
            "shared_section": shared_section,
            "reserved_shared": reserved,
        }
        if isinstance(maxreg, int):
            details["maxreg"] = maxreg
        co.kernels[name] = KernelResources(
            name=name,
            vendor="nvidia",
            arch=arch,
            registers=regs,
            shared_bytes=shared_section - reserved,
            scratch_bytes=stack + local_bytes,
            wave_size=32,
            max_threads=max_threads,
            param_bytes=param if isinstance(param, int) else 0,
            details=details,
        )
    return co
