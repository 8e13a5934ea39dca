"""Every struct layout and constant of reef_rocm.rocm.hsa._ffi equals Debian's
libhsa-runtime-dev headers: a C probe, compiled here with cc, prints sizeof/offsetof of each
field and the value of each constant, and the test compares them with the ctypes side."""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reef_rocm.rocm.hsa import _ffi

HEADER_DIR = Path("/usr/include/hsa")
HEADERS = ("hsa.h", "hsa_ext_amd.h")


def _compiler() -> str:
    for cc in ("cc", "gcc", "clang"):
        if shutil.which(cc):
            return cc
    pytest.skip("no C compiler (cc/gcc/clang) to build the HSA header probe")


def _header_text() -> str:
    if not all((HEADER_DIR / h).exists() for h in HEADERS):
        pytest.skip(f"HSA headers not installed in {HEADER_DIR} (apt install libhsa-runtime-dev)")
    return "".join((HEADER_DIR / h).read_text() for h in HEADERS)


def _fields(struct: type[ctypes.Structure], prefix: str = ""):
    """(C member name, ctypes offset, ctypes size) of every top-level field."""
    for name, _ctype in struct._fields_:
        field = getattr(struct, name)
        yield f"{prefix}{name}", field.offset, field.size


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict[str, int]:
    text = _header_text()
    cc = _compiler()
    lines = ['#include <stdio.h>', '#include <stddef.h>', '#include <hsa/hsa.h>',
             '#include <hsa/hsa_ext_amd.h>', 'int main(void) {']
    for cname, struct in _ffi.STRUCTS.items():
        lines.append(f'printf("sizeof.{cname} %zu\\n", sizeof({cname}));')
        for member, _, _ in _fields(struct):
            lines.append(f'printf("offsetof.{cname}.{member} %zu\\n", '
                         f'offsetof({cname}, {member}));')
            lines.append(f'printf("sizeof.{cname}.{member} %zu\\n", '
                         f'sizeof((({cname}*)0)->{member}));')
    lines.append('printf("sizeof.hsa_signal_t %zu\\n", sizeof(hsa_signal_t));')
    lines.append('printf("sizeof.hsa_signal_value_t %zu\\n", sizeof(hsa_signal_value_t));')
    for name in _ffi.constants():
        if name in _ffi.OPTIONAL_CONSTANTS and not re.search(rf"\b{name}\b", text):
            continue
        lines.append(f'printf("const.{name} %lld\\n", (long long)({name}));')
    lines += ["return 0;", "}"]
    d = tmp_path_factory.mktemp("hsa_probe")
    src, exe = d / "probe.c", d / "probe"
    src.write_text("\n".join(lines) + "\n")
    build = subprocess.run([cc, "-std=c11", "-Wall", "-Werror", "-o", str(exe), str(src)],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, f"probe failed to compile:\n{build.stderr}"
    out = subprocess.run([str(exe)], capture_output=True, text=True, timeout=30, check=True)
    values = {}
    for line in out.stdout.splitlines():
        key, value = line.split()
        values[key] = int(value)
    return values


@pytest.mark.parametrize("cname", sorted(_ffi.STRUCTS))
def test_struct_layout_matches_header(probe, cname):
    struct = _ffi.STRUCTS[cname]
    assert ctypes.sizeof(struct) == probe[f"sizeof.{cname}"]
    for member, offset, size in _fields(struct):
        assert (offset, size) == (probe[f"offsetof.{cname}.{member}"],
                                  probe[f"sizeof.{cname}.{member}"]), f"{cname}.{member}"


def test_packets_are_one_slot(probe):
    assert probe["sizeof.hsa_kernel_dispatch_packet_t"] == _ffi.AQL_PACKET_SIZE
    assert probe["sizeof.hsa_barrier_and_packet_t"] == _ffi.AQL_PACKET_SIZE
    assert probe["sizeof.hsa_signal_t"] == ctypes.sizeof(_ffi.Handle)
    assert probe["sizeof.hsa_signal_value_t"] == 8  # the large model: int64 signal values


def test_constants_match_header(probe):
    checked = 0
    for name, value in _ffi.constants().items():
        key = f"const.{name}"
        if key not in probe:
            assert name in _ffi.OPTIONAL_CONSTANTS, f"{name} not probed"
            continue
        assert value == probe[key], f"{name}: binding {value:#x}, header {probe[key]:#x}"
        checked += 1
    assert checked >= 80  # every constant but the optional ones was compared


def test_every_prototype_exists_in_header():
    text = _header_text()
    missing = [n for n in _ffi.PROTOTYPES if not re.search(rf"\b{n}\s*\(", text)]
    assert not missing, f"functions not declared in the headers: {missing}"
