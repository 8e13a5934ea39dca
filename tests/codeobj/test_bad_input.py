"""Corrupt, truncated and foreign input must end in CodeObjectError naming the problem, and
nothing else may escape (fuzzed with mutations of real code objects)."""

from __future__ import annotations

import random
import struct

import pytest

from reef_rocm.codeobj import read_code_object, read_code_objects
from reef_rocm.errors import CodeObjectError


@pytest.fixture(scope="session")
def samples(request) -> list[bytes]:
    out = []
    for name in ("all_hsaco", "all_cubin"):
        try:
            out += [b.path.read_bytes() for b in request.getfixturevalue(name)[:3]]
        except pytest.skip.Exception:
            pass
    if not out:
        pytest.skip("no compiler available to build code objects")
    return out


@pytest.fixture(scope="session")
def hsaco(all_hsaco) -> bytes:
    return all_hsaco[0].path.read_bytes()


def _set(data: bytes, offset: int, fmt: str, value: int) -> bytes:
    b = bytearray(data)
    struct.pack_into(fmt, b, offset, value)
    return bytes(b)


@pytest.mark.parametrize(
    "data,message",
    [
        (b"", "truncated"),
        (b"\x7fELF", "truncated"),
        (b"#include <hip/hip_runtime.h>\n" * 4, "not an ELF file"),
        (b"\x7fELF\x01\x01" + bytes(58), "not a 64-bit little-endian ELF"),
        (b"__CLANG_OFFLOAD_BUNDLE__\x01", "truncated offload bundle"),
        (b"CCOB" + bytes(60), "compressed offload bundle"),
        (b"\x50\xed\x55\xba" + bytes(60), "CUDA fatbinary"),
    ],
)
def test_not_a_code_object(data, message):
    with pytest.raises(CodeObjectError, match=message):
        read_code_object(data)


def test_missing_file(tmp_path):
    with pytest.raises(CodeObjectError, match="cannot read"):
        read_code_object(tmp_path / "nope.hsaco")


def test_truncated(samples):
    for data in samples:
        for cut in (63, len(data) // 2, len(data) - 1):
            with pytest.raises(CodeObjectError, match="truncated|corrupt"):
                read_code_object(data[:cut])


def test_wrong_machine(samples):
    for data in samples:
        with pytest.raises(CodeObjectError, match="machine type 62"):
            read_code_object(_set(data, 18, "<H", 62))  # EM_X86_64


def test_unknown_code_object_version(hsaco):
    for abi in (0, 1, 5, 200):
        with pytest.raises(CodeObjectError, match="unknown code object version.*v4, v5, v6"):
            read_code_object(_set(hsaco, 8, "<B", abi))


def test_graphics_code_object(hsaco):
    with pytest.raises(CodeObjectError, match="PAL"):
        read_code_object(_set(hsaco, 7, "<B", 65))


def test_missing_metadata_note(hsaco):
    from reef_rocm.codeobj.elf import open_elf

    note = open_elf(hsaco).get_section_by_name(".note")
    # Change the note's type word (namesz, descsz, type): no NT_AMDGPU_METADATA left.
    broken = _set(hsaco, note["sh_offset"] + 8, "<I", 999)
    with pytest.raises(CodeObjectError, match="no NT_AMDGPU_METADATA note"):
        read_code_object(broken)


def test_bundle(hip_bundle):
    objs = read_code_objects(hip_bundle)
    assert sorted(o.arch for o in objs) == ["gfx906", "gfx90a"]
    assert all("co_saxpy" in o.kernels for o in objs)
    with pytest.raises(CodeObjectError, match="holds 2 code objects"):
        read_code_object(hip_bundle)


def _mutations(data: bytes, rng: random.Random, count: int):
    n = len(data)
    for i in range(count):
        b = bytearray(data)
        kind = i % 5
        if kind == 0:  # random bytes anywhere
            for _ in range(rng.randint(1, 8)):
                b[rng.randrange(n)] = rng.randrange(256)
        elif kind == 1:  # the ELF and section headers, where sizes and offsets live
            shoff = struct.unpack_from("<Q", data, 40)[0]
            for _ in range(rng.randint(1, 4)):
                pos = rng.choice([rng.randrange(64), rng.randrange(shoff, n)])
                b[pos] = rng.randrange(256)
        elif kind == 2:  # truncate
            b = b[: rng.randrange(n)]
        elif kind == 3:  # overwrite a 64-bit word with an extreme value
            pos = rng.randrange(0, n - 8)
            struct.pack_into("<Q", b, pos, rng.choice([0, 2**63 - 1, 2**64 - 1, n, n + 1]))
        else:  # a block of zeros or 0xff
            pos = rng.randrange(n)
            b[pos : pos + rng.randint(4, 256)] = bytes([rng.choice([0, 255])]) * 64
        yield bytes(b)


def test_fuzz_mutated_real_files(samples):
    rng = random.Random(20261124)
    outcomes = {"ok": 0, "error": 0}
    for data in samples:
        for mutated in _mutations(data, rng, 400):
            try:
                read_code_objects(mutated)
                outcomes["ok"] += 1
            except CodeObjectError as e:
                assert str(e), "empty error message"
                outcomes["error"] += 1
    assert outcomes["error"] > 0
