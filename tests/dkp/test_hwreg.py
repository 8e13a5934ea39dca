"""The dispatcher's AMD hardware-register reads, checked against LLVM's own register tables:
the s_getreg immediates written in hip_kernels/reef_dkp_dispatch.cuh, assembled by llvm-mc
for the target they are compiled for, must name HW_ID bits [15:8] (gfx906: [14:8]) and, on
gfx940, XCC_ID bits [3:0]. (Which HW_ID bits hold CU/SH/SE is the ISA guides' and ROCm's
device libraries' layout, not in LLVM's tables; docs/dkp.md.)"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from reef_rocm.dkp.build import DISPATCH_HEADER, HIP_KERNELS

MC = shutil.which("llvm-mc-16") or shutil.which("llvm-mc")


def _immediates() -> list[int]:
    text = (HIP_KERNELS / DISPATCH_HEADER).read_text()
    exprs = []
    for m in re.finditer(r"__builtin_amdgcn_s_getreg\(", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        exprs.append(text[m.end() : i - 1])
    out = []
    for e in exprs:
        assert re.fullmatch(r"[0-9 |<>()+\-]+", e), e  # plain integer arithmetic only
        out.append(eval(e))  # noqa: S307 - checked above: digits and operators
    return out


@pytest.mark.skipif(MC is None, reason="llvm-mc not installed")
@pytest.mark.parametrize(
    "mcpu, index, want",
    [("gfx906", 0, "hwreg(HW_REG_HW_ID, 8, 7)"), ("gfx90a", 1, "hwreg(HW_REG_HW_ID, 8, 8)"),
     ("gfx940", 1, "hwreg(HW_REG_HW_ID, 8, 8)"), ("gfx940", 2, "hwreg(HW_REG_XCC_ID, 0, 4)")],
)  # fmt: skip
def test_getreg_immediates_name_the_registers(mcpu, index, want):
    imms = _immediates()
    assert len(imms) == 3  # gfx906 HW_ID, gfx9 HW_ID, gfx940+ XCC_ID
    r = subprocess.run([MC, "-arch=amdgcn", f"-mcpu={mcpu}", "-show-encoding"],
                       input=f"s_getreg_b32 s0, {imms[index]:#x}\n", capture_output=True,
                       text=True)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert want in r.stdout, r.stdout
