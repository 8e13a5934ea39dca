"""AMD HSA code objects (HSACO, code object v4-v6): metadata note and kernel descriptors.

Layouts follow LLVM's AMDGPUUsage document: the ``NT_AMDGPU_METADATA`` note is a msgpack map
(``amdhsa.kernels``, ``amdhsa.target``, ``amdhsa.version``) and every kernel has a 64-byte
kernel descriptor at symbol ``<name>.kd``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

from reef_rocm.codeobj.elf import (
    EM_AMDGPU,
    ElfIdent,
    iter_notes,
    open_elf,
    read_symbol_bytes,
    section_bytes,
)
from reef_rocm.codeobj.model import CodeObject, KernelResources
from reef_rocm.errors import CodeObjectError

ELFOSABI_AMDGPU_HSA = 64
_OTHER_OSABI = {65: "AMDGPU PAL (graphics)", 66: "AMDGPU Mesa3D (graphics)"}
#: EI_ABIVERSION -> code object version (v2/v3 predate what the ROCm releases we target load).
ABI_VERSION_TO_CODE_OBJECT = {2: 4, 3: 5, 4: 6}
NT_AMDGPU_METADATA = 32
KD_SIZE = 64

#: EF_AMDGPU_MACH (e_flags bits 0-7) for the processors this project knows; the metadata's
#: target string is authoritative, this is a cross-check.
MACH_NAMES = {
    0x02C: "gfx900",
    0x02F: "gfx906",
    0x030: "gfx908",
    0x03F: "gfx90a",
    0x040: "gfx940",
    0x04B: "gfx941",
    0x04C: "gfx942",
    0x04F: "gfx950",
    0x051: "gfx9-generic",
    0x05F: "gfx9-4-generic",
}

# (field, word, shift, width). Words: rsrc1/rsrc2/rsrc3 are COMPUTE_PGM_RSRC1..3 as stored in
# the descriptor, "props" the 16-bit kernel code properties. Names are AMDGPUUsage's.
_RSRC1 = (
    ("GRANULATED_WORKITEM_VGPR_COUNT", 0, 6),
    ("GRANULATED_WAVEFRONT_SGPR_COUNT", 6, 4),
    ("PRIORITY", 10, 2),
    ("FLOAT_ROUND_MODE_32", 12, 2),
    ("FLOAT_ROUND_MODE_16_64", 14, 2),
    ("FLOAT_DENORM_MODE_32", 16, 2),
    ("FLOAT_DENORM_MODE_16_64", 18, 2),
    ("PRIV", 20, 1),
    ("ENABLE_DX10_CLAMP", 21, 1),
    ("DEBUG_MODE", 22, 1),
    ("ENABLE_IEEE_MODE", 23, 1),
    ("BULKY", 24, 1),
    ("CDBG_USER", 25, 1),
    ("FP16_OVFL", 26, 1),
    ("WGP_MODE", 29, 1),
    ("MEM_ORDERED", 30, 1),
    ("FWD_PROGRESS", 31, 1),
)
_RSRC2 = (
    ("ENABLE_PRIVATE_SEGMENT", 0, 1),
    ("USER_SGPR_COUNT", 1, 5),
    ("ENABLE_TRAP_HANDLER", 6, 1),
    ("ENABLE_SGPR_WORKGROUP_ID_X", 7, 1),
    ("ENABLE_SGPR_WORKGROUP_ID_Y", 8, 1),
    ("ENABLE_SGPR_WORKGROUP_ID_Z", 9, 1),
    ("ENABLE_SGPR_WORKGROUP_INFO", 10, 1),
    ("ENABLE_VGPR_WORKITEM_ID", 11, 2),
    ("ENABLE_EXCEPTION_ADDRESS_WATCH", 13, 1),
    ("ENABLE_EXCEPTION_MEMORY", 14, 1),
    ("GRANULATED_LDS_SIZE", 15, 9),
    ("ENABLE_EXCEPTION_IEEE_754_FP_INVALID_OPERATION", 24, 1),
    ("ENABLE_EXCEPTION_FP_DENORMAL_SOURCE", 25, 1),
    ("ENABLE_EXCEPTION_IEEE_754_FP_DIVISION_BY_ZERO", 26, 1),
    ("ENABLE_EXCEPTION_IEEE_754_FP_OVERFLOW", 27, 1),
    ("ENABLE_EXCEPTION_IEEE_754_FP_UNDERFLOW", 28, 1),
    ("ENABLE_EXCEPTION_IEEE_754_FP_INEXACT", 29, 1),
    ("ENABLE_EXCEPTION_INT_DIVIDE_BY_ZERO", 30, 1),
)
# gfx90a and the gfx94x/gfx950 family only; other gfx9 keep RSRC3 zero.
_RSRC3_GFX90A = (("ACCUM_OFFSET", 0, 6), ("TG_SPLIT", 16, 1))
_PROPS = (
    ("ENABLE_SGPR_PRIVATE_SEGMENT_BUFFER", 0, 1),
    ("ENABLE_SGPR_DISPATCH_PTR", 1, 1),
    ("ENABLE_SGPR_QUEUE_PTR", 2, 1),
    ("ENABLE_SGPR_KERNARG_SEGMENT_PTR", 3, 1),
    ("ENABLE_SGPR_DISPATCH_ID", 4, 1),
    ("ENABLE_SGPR_FLAT_SCRATCH_INIT", 5, 1),
    ("ENABLE_SGPR_PRIVATE_SEGMENT_SIZE", 6, 1),
    ("ENABLE_WAVEFRONT_SIZE32", 10, 1),
    ("USES_DYNAMIC_STACK", 11, 1),
)
_PRELOAD = (("KERNARG_PRELOAD_SPEC_LENGTH", 0, 7), ("KERNARG_PRELOAD_SPEC_OFFSET", 7, 9))


def has_unified_vgprs(arch: str) -> bool:
    """gfx90a and later CDNA parts share one 512-entry file between VGPRs and AGPRs."""
    return arch == "gfx90a" or arch.startswith(("gfx94", "gfx95", "gfx9-4"))


def vgpr_granule(arch: str, wave_size: int = 64) -> int:
    """VGPR allocation granule per work-item (wave64 gfx9: 4; unified-file CDNA: 8)."""
    if has_unified_vgprs(arch):
        return 8
    if arch.startswith("gfx9"):
        return 4
    return 8 if wave_size == 32 else 4  # gfx10+ wave32/wave64 (not a project target)


@dataclass(frozen=True)
class KernelDescriptor:
    """The 64-byte AMDHSA kernel descriptor, raw words plus named bit fields."""

    raw: bytes
    group_segment_fixed_size: int
    private_segment_fixed_size: int
    kernarg_size: int
    kernel_code_entry_byte_offset: int
    compute_pgm_rsrc3: int
    compute_pgm_rsrc1: int
    compute_pgm_rsrc2: int
    kernel_code_properties: int
    kernarg_preload: int
    fields: dict[str, int] = field(default_factory=dict)

    @classmethod
    def decode(cls, raw: bytes, arch: str) -> KernelDescriptor:
        if len(raw) != KD_SIZE:
            raise CodeObjectError(f"kernel descriptor is {len(raw)} bytes, expected {KD_SIZE}")
        group, private, kernarg, _r0, entry = struct.unpack_from("<IIIIq", raw, 0)
        rsrc3, rsrc1, rsrc2, props, preload = struct.unpack_from("<IIIHH", raw, 44)
        fields: dict[str, int] = {}
        for table, word in ((_RSRC1, rsrc1), (_RSRC2, rsrc2), (_PROPS, props),
                            (_PRELOAD, preload)):
            for name, shift, width in table:
                fields[name] = (word >> shift) & ((1 << width) - 1)
        if has_unified_vgprs(arch):
            for name, shift, width in _RSRC3_GFX90A:
                fields[name] = (rsrc3 >> shift) & ((1 << width) - 1)
        return cls(bytes(raw), group, private, kernarg, entry, rsrc3, rsrc1, rsrc2, props,
                   preload, fields)

    def allocated_vgprs(self, arch: str) -> int:
        """VGPRs the hardware reserves per work-item (granule-rounded, incl. AGPRs on gfx90a)."""
        wave = 32 if self.fields.get("ENABLE_WAVEFRONT_SIZE32") else 64
        return (self.fields["GRANULATED_WORKITEM_VGPR_COUNT"] + 1) * vgpr_granule(arch, wave)

    def arch_vgprs(self) -> int | None:
        """Architected VGPRs on unified-file parts: AGPRs start at ACCUM_OFFSET."""
        if "ACCUM_OFFSET" not in self.fields:
            return None
        return (self.fields["ACCUM_OFFSET"] + 1) * 4

    def as_dict(self) -> dict[str, Any]:
        return {
            "raw": self.raw.hex(),
            "group_segment_fixed_size": self.group_segment_fixed_size,
            "private_segment_fixed_size": self.private_segment_fixed_size,
            "kernarg_size": self.kernarg_size,
            "kernel_code_entry_byte_offset": self.kernel_code_entry_byte_offset,
            "compute_pgm_rsrc1": self.compute_pgm_rsrc1,
            "compute_pgm_rsrc2": self.compute_pgm_rsrc2,
            "compute_pgm_rsrc3": self.compute_pgm_rsrc3,
            "kernel_code_properties": self.kernel_code_properties,
            "kernarg_preload": self.kernarg_preload,
            "fields": dict(self.fields),
        }


def _int_field(kern: dict, key: str, kname: str, source: str, default: int | None = None) -> int:
    v = kern.get(key, default)
    if v is None:
        raise CodeObjectError(f"{source}: kernel {kname!r}: metadata lacks {key}")
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise CodeObjectError(f"{source}: kernel {kname!r}: metadata {key} is {v!r}, not a count")
    return v


def parse_target(target: str, source: str) -> tuple[str, str]:
    """``amdgcn-amd-amdhsa--gfx90a:xnack-`` -> (``gfx90a``, ``gfx90a:xnack-``)."""
    parts = target.split("-", 4)
    if len(parts) != 5 or parts[0] != "amdgcn" or not parts[4]:
        raise CodeObjectError(f"{source}: unrecognised amdhsa.target {target!r}")
    target_id = parts[4]
    return target_id.split(":", 1)[0], target_id


def read_metadata(data: bytes, elf, source: str) -> dict:
    import msgpack

    for sec in elf.iter_sections():
        if sec["sh_type"] != "SHT_NOTE":
            continue
        for note in iter_notes(section_bytes(data, sec), source):
            if note.name == "AMDGPU" and note.type == NT_AMDGPU_METADATA:
                try:
                    meta = msgpack.unpackb(note.desc, raw=False, strict_map_key=False)
                except Exception as e:  # msgpack raises several unrelated types
                    raise CodeObjectError(
                        f"{source}: AMDGPU metadata note is not valid msgpack ({e})"
                    ) from e
                if not isinstance(meta, dict):
                    raise CodeObjectError(f"{source}: AMDGPU metadata is not a map")
                return meta
    raise CodeObjectError(
        f"{source}: no NT_AMDGPU_METADATA note; not a code object v3+ (or its notes were "
        "stripped)"
    )


def read_hsaco(data: bytes, ident: ElfIdent, source: str) -> CodeObject:
    if ident.machine != EM_AMDGPU:
        raise CodeObjectError(f"{source}: e_machine {ident.machine} is not EM_AMDGPU (224)")
    if ident.osabi != ELFOSABI_AMDGPU_HSA:
        what = _OTHER_OSABI.get(ident.osabi, f"OS/ABI {ident.osabi}")
        raise CodeObjectError(f"{source}: {what} code object, expected AMDGPU HSA (OS/ABI 64)")
    version = ABI_VERSION_TO_CODE_OBJECT.get(ident.abi_version)
    if version is None:
        known = ", ".join(f"v{v}" for v in ABI_VERSION_TO_CODE_OBJECT.values())
        raise CodeObjectError(
            f"{source}: unknown code object version (ELF ABI version {ident.abi_version}); "
            f"supported: {known}"
        )
    elf = open_elf(data)
    meta = read_metadata(data, elf, source)
    target = meta.get("amdhsa.target")
    if not isinstance(target, str):
        raise CodeObjectError(f"{source}: AMDGPU metadata lacks amdhsa.target")
    arch, target_id = parse_target(target, source)
    co = CodeObject("hsaco", "amd", arch, target_id, version, source=source)
    mach = MACH_NAMES.get(ident.flags & 0xFF)
    if mach is not None and mach != arch:
        co.warnings.append(f"e_flags say {mach}, metadata says {arch}")

    kernels = meta.get("amdhsa.kernels", [])
    if not isinstance(kernels, list) or not all(isinstance(k, dict) for k in kernels):
        raise CodeObjectError(f"{source}: amdhsa.kernels is not a list of maps")
    symbols = _kd_symbols(elf)
    for kern in kernels:
        name = kern.get(".name")
        symbol = kern.get(".symbol", f"{name}.kd")
        if not isinstance(name, str) or not isinstance(symbol, str):
            raise CodeObjectError(f"{source}: kernel entry without a .name/.symbol string")
        res = _kernel(data, elf, kern, name, symbol, arch, symbols, co, source)
        co.kernels[name] = res
    return co


def _kd_symbols(elf) -> dict[str, Any]:
    syms: dict[str, Any] = {}
    for tab in (".dynsym", ".symtab"):  # .symtab wins: it has every symbol when present
        sec = elf.get_section_by_name(tab)
        if sec is None:
            continue
        for s in sec.iter_symbols():
            if s.name.endswith(".kd"):
                syms[s.name] = s
    return syms


def _kernel(data, elf, kern, name, symbol, arch, symbols, co, source) -> KernelResources:
    f = {
        key: _int_field(kern, key, name, source)
        for key in (".vgpr_count", ".sgpr_count", ".group_segment_fixed_size",
                    ".private_segment_fixed_size", ".wavefront_size",
                    ".max_flat_workgroup_size", ".kernarg_segment_size")
    }
    agprs = _int_field(kern, ".agpr_count", name, source, default=0)
    if f[".wavefront_size"] not in (32, 64):
        raise CodeObjectError(
            f"{source}: kernel {name!r}: wavefront size {f['.wavefront_size']} is not 32 or 64"
        )
    sym = symbols.get(symbol)
    if sym is None:
        raise CodeObjectError(f"{source}: kernel {name!r}: descriptor symbol {symbol} missing")
    raw = read_symbol_bytes(data, elf, sym, KD_SIZE)
    if raw is None:
        raise CodeObjectError(
            f"{source}: kernel {name!r}: descriptor {symbol} lies outside its section"
        )
    kd = KernelDescriptor.decode(raw, arch)
    for what, meta_v, kd_v in (
        ("group segment", f[".group_segment_fixed_size"], kd.group_segment_fixed_size),
        ("private segment", f[".private_segment_fixed_size"], kd.private_segment_fixed_size),
    ):
        if meta_v != kd_v:
            co.warnings.append(f"{name}: {what} size {meta_v} in metadata, {kd_v} in descriptor")
    if kd.allocated_vgprs(arch) < f[".vgpr_count"]:
        co.warnings.append(
            f"{name}: descriptor allocates {kd.allocated_vgprs(arch)} VGPRs, metadata says "
            f"{f['.vgpr_count']}"
        )
    details = {
        k.lstrip("."): kern[k]
        for k in (".sgpr_spill_count", ".vgpr_spill_count", ".uses_dynamic_stack",
                  ".kernarg_segment_align", ".symbol")
        if k in kern
    }
    arch_vgprs = kd.arch_vgprs()
    if arch_vgprs is not None:
        details["arch_vgprs"] = arch_vgprs
    return KernelResources(
        name=name,
        vendor="amd",
        arch=arch,
        registers=f[".vgpr_count"],
        agprs=agprs,
        sgprs=f[".sgpr_count"],
        shared_bytes=f[".group_segment_fixed_size"],
        scratch_bytes=f[".private_segment_fixed_size"],
        wave_size=f[".wavefront_size"],
        max_threads=f[".max_flat_workgroup_size"],
        param_bytes=f[".kernarg_segment_size"],
        details=details,
        descriptor=kd,
    )
