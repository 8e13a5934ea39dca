"""Entry points: read a code object from bytes or a file, or every code object in a package."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from reef_rocm.codeobj.elf import EM_AMDGPU, EM_CUDA, check_elf
from reef_rocm.codeobj.model import CodeObject
from reef_rocm.errors import CodeObjectError

BUNDLE_MAGIC = b"__CLANG_OFFLOAD_BUNDLE__"
COMPRESSED_BUNDLE_MAGIC = b"CCOB"
FATBIN_MAGIC = b"\x50\xed\x55\xba"
CODE_OBJECT_SUFFIXES = (".hsaco", ".cubin")


def _load(src: bytes | bytearray | memoryview | str | os.PathLike) -> tuple[bytes, str]:
    if isinstance(src, (bytes, bytearray, memoryview)):
        return bytes(src), "<bytes>"
    path = Path(src)
    try:
        return path.read_bytes(), str(path)
    except OSError as e:
        raise CodeObjectError(f"{path}: cannot read: {e.strerror or e}") from e


def split_offload_bundle(data: bytes, source: str) -> list[tuple[str, bytes]]:
    """(target triple, payload) entries of a clang offload bundle (what ``hipcc --genco``
    writes by default). Layout from clang's offload bundler documentation: magic, u64 entry
    count, then per entry u64 offset, u64 size, u64 id length, id."""
    try:
        (count,) = struct.unpack_from("<Q", data, len(BUNDLE_MAGIC))
        if count > 4096:
            raise CodeObjectError(f"{source}: corrupt offload bundle: {count} entries")
        pos = len(BUNDLE_MAGIC) + 8
        out = []
        for _ in range(count):
            off, size, idlen = struct.unpack_from("<QQQ", data, pos)
            pos += 24
            if idlen > 4096 or pos + idlen > len(data) or off + size > len(data):
                raise CodeObjectError(f"{source}: truncated or corrupt offload bundle")
            triple = data[pos : pos + idlen].decode("ascii", errors="replace")
            pos += idlen
            out.append((triple, data[off : off + size]))
        return out
    except struct.error as e:
        raise CodeObjectError(f"{source}: truncated offload bundle") from e


def _read_elf(data: bytes, source: str) -> CodeObject:
    ident = check_elf(data, source)
    if ident.machine == EM_AMDGPU:
        from reef_rocm.codeobj.amd import read_hsaco

        return read_hsaco(data, ident, source)
    if ident.machine == EM_CUDA:
        from reef_rocm.codeobj.nvidia import read_cubin

        return read_cubin(data, ident, source)
    raise CodeObjectError(
        f"{source}: ELF machine type {ident.machine} is neither AMDGPU (224) nor CUDA (190)"
    )


def _guarded(data: bytes, source: str) -> CodeObject:
    try:
        return _read_elf(data, source)
    except CodeObjectError:
        raise
    except RecursionError as e:
        raise CodeObjectError(f"{source}: corrupt code object (nesting too deep)") from e
    except Exception as e:
        # pyelftools and construct raise many unrelated types on corrupt input; the caller
        # asked for a code object, so any failure to parse one is the file's fault.
        raise CodeObjectError(
            f"{source}: corrupt code object ({type(e).__name__}: {e})"
        ) from e


def read_code_objects(src: bytes | str | os.PathLike) -> list[CodeObject]:
    """Every code object in ``src``: one for a plain HSACO/cubin, one per device target for a
    clang offload bundle (the host entry is skipped)."""
    data, source = _load(src)
    if data.startswith(BUNDLE_MAGIC):
        out = []
        for triple, payload in split_offload_bundle(data, source):
            if triple.startswith("host-") or not payload:
                continue
            out.append(_guarded(payload, f"{source}[{triple}]"))
        if not out:
            raise CodeObjectError(f"{source}: offload bundle holds no device code object")
        return out
    if data.startswith(COMPRESSED_BUNDLE_MAGIC):
        raise CodeObjectError(
            f"{source}: compressed offload bundle; unbundle it first "
            "(clang-offload-bundler --unbundle) or build with --no-gpu-bundle-output"
        )
    if data.startswith(FATBIN_MAGIC):
        raise CodeObjectError(
            f"{source}: CUDA fatbinary; extract the cubins first (cuobjdump -xelf all)"
        )
    return [_guarded(data, source)]


def read_code_object(src: bytes | str | os.PathLike) -> CodeObject:
    """The code object in ``src`` (bytes or a path to a .hsaco/.cubin).

    Raises CodeObjectError for anything that is not exactly one readable code object.
    """
    objs = read_code_objects(src)
    if len(objs) != 1:
        targets = ", ".join(o.target_id for o in objs)
        raise CodeObjectError(
            f"{objs[0].source.split('[')[0]}: offload bundle holds {len(objs)} code objects "
            f"({targets}); use read_code_objects"
        )
    return objs[0]


def find_code_objects(package: str | os.PathLike) -> list[Path]:
    """Code-object files under a package directory (by suffix), sorted for stable output."""
    root = Path(package)
    if not root.is_dir():
        raise CodeObjectError(f"{root}: not a directory")
    return sorted(p for p in root.rglob("*") if p.suffix in CODE_OBJECT_SUFFIXES and p.is_file())
