"""Shared ELF plumbing: up-front sanity checks and small readers over pyelftools.

The checks run before pyelftools sees the file so that truncated or corrupt input fails with a
message naming the problem instead of a parser exception, and so that a corrupt section size
cannot make us walk millions of bogus symbols.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from reef_rocm.errors import CodeObjectError

EM_AMDGPU = 224
EM_CUDA = 190
ELF_MAGIC = b"\x7fELF"
SHT_NOBITS = 8
SHT_NOTE = 7


@dataclass(frozen=True)
class ElfIdent:
    machine: int
    osabi: int
    abi_version: int
    flags: int
    elf_type: int


def check_elf(data: bytes, source: str) -> ElfIdent:
    """Validate the ELF64 little-endian header and that every table lies inside the file."""
    if len(data) < 64:
        raise CodeObjectError(f"{source}: truncated: {len(data)} bytes, an ELF64 header needs 64")
    if data[:4] != ELF_MAGIC:
        raise CodeObjectError(f"{source}: not an ELF file (magic {data[:4]!r})")
    if data[4] != 2 or data[5] != 1:
        raise CodeObjectError(
            f"{source}: not a 64-bit little-endian ELF (class {data[4]}, data {data[5]})"
        )
    (e_type, e_machine, _ver, _entry, e_phoff, e_shoff, e_flags, _ehsize, e_phentsize,
     e_phnum, e_shentsize, e_shnum, e_shstrndx) = struct.unpack_from("<HHIQQQIHHHHHH", data, 16)
    ident = ElfIdent(e_machine, data[7], data[8], e_flags, e_type)
    size = len(data)
    if e_shnum == 0 or e_shoff == 0:
        raise CodeObjectError(f"{source}: ELF file has no section headers")
    if e_shentsize != 64:
        raise CodeObjectError(f"{source}: corrupt ELF: section header size {e_shentsize}, not 64")
    end = e_shoff + e_shnum * e_shentsize
    if end > size:
        raise CodeObjectError(
            f"{source}: truncated: section headers end at byte {end}, file has {size}"
        )
    if e_shstrndx >= e_shnum:
        raise CodeObjectError(f"{source}: corrupt ELF: section name table index {e_shstrndx}")
    if e_phnum and (e_phentsize != 56 or e_phoff + e_phnum * e_phentsize > size):
        raise CodeObjectError(f"{source}: truncated or corrupt program header table")
    for i in range(e_shnum):
        (_n, sh_type, _fl, _addr, sh_off, sh_size, _link, _info, _al, sh_entsize) = (
            struct.unpack_from("<IIQQQQIIQQ", data, e_shoff + i * 64)
        )
        if sh_type != SHT_NOBITS and i != 0 and sh_off + sh_size > size:
            raise CodeObjectError(
                f"{source}: truncated: section {i} ends at byte {sh_off + sh_size}, "
                f"file has {size}"
            )
        if sh_entsize and sh_entsize > sh_size and sh_type != SHT_NOBITS and sh_size:
            raise CodeObjectError(f"{source}: corrupt ELF: section {i} entry size {sh_entsize}")
    return ident


def open_elf(data: bytes):
    """pyelftools view of ``data`` (imported here: only readers of code objects pay for it)."""
    from elftools.elf.elffile import ELFFile

    return ELFFile(io.BytesIO(data))


def section_bytes(data: bytes, section) -> bytes:
    if section["sh_type"] == "SHT_NOBITS":
        return b""
    off, size = section["sh_offset"], section["sh_size"]
    return data[off : off + size]


@dataclass(frozen=True)
class Note:
    name: str
    type: int
    desc: bytes


def iter_notes(blob: bytes, source: str) -> Iterator[Note]:
    """ELF notes in a SHT_NOTE section (4-byte aligned name and descriptor)."""
    pos = 0
    while pos + 12 <= len(blob):
        namesz, descsz, ntype = struct.unpack_from("<III", blob, pos)
        pos += 12
        name_end = pos + namesz
        desc_start = pos + ((namesz + 3) & ~3)
        desc_end = desc_start + descsz
        if desc_end > len(blob):
            raise CodeObjectError(f"{source}: corrupt note: runs past the end of its section")
        name = blob[pos:name_end].rstrip(b"\0").decode("ascii", errors="replace")
        yield Note(name, ntype, blob[desc_start:desc_end])
        pos = desc_start + ((descsz + 3) & ~3)


def read_symbol_bytes(data: bytes, elf, sym, size: int) -> bytes | None:
    """``size`` bytes at symbol ``sym`` inside its section, or None if they are not there.

    Works for linked objects (value = virtual address) and relocatable ones (value = offset
    in the section, whose address is 0).
    """
    shndx = sym["st_shndx"]
    if not isinstance(shndx, int) or not 0 < shndx < elf.num_sections():
        return None
    sec = elf.get_section(shndx)
    if sec["sh_type"] == "SHT_NOBITS":
        return None
    rel = sym["st_value"] - sec["sh_addr"]
    if rel < 0 or rel + size > sec["sh_size"]:
        return None
    off = sec["sh_offset"] + rel
    return data[off : off + size]
