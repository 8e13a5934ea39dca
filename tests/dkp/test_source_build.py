"""DKP bodies from DKP-ready CUDA source, and the nvcc/hipcc builds of bodies + dispatcher
(CPU only: compilers and code objects; skips cleanly when a compiler is missing)."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import dkp_fixture as fixture
import pytest

from reef_rocm.codeobj import read_code_object
from reef_rocm.dkp.build import (
    DISPATCH_KERNEL,
    HIP_KERNELS,
    INDIRECT_KERNEL,
    PROBE_KERNEL,
    build_packages,
    build_sources,
    find_nvcc,
    load_build,
)  # fmt: skip
from reef_rocm.dkp.source import ArgLayout, Param, package_bodies, split_kernels
from reef_rocm.errors import PackageError, UnsupportedError
from reef_rocm.package.files import ModelPackage

REPO = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("REEF_PACKAGES", REPO / ".carry" / "packages"))


def test_bodies_of_the_fixture():
    pb = package_bodies("t0", fixture.SOURCE.read_text(), fixture.kernels())
    scale, bsum = pb.bodies
    assert (scale.symbol, scale.block, scale.smem_bytes) == ("t0__fx_scale_kernel", (32, 4, 1), 0)
    # red_buf: 128 floats at 0; red_last aligned to 64 -> 512 + 4, rounded to 16
    assert bsum.smem_bytes == 528
    assert [(p.name, off) for p, off in scale.layout.fields] == [("y", 0), ("x", 8)]
    body = pb.code
    assert "__shared__" not in body and "blockIdx" not in body
    assert "reef_tid.y" in body  # threadIdx is remapped to the kernel's own block shape
    assert "reinterpret_cast<float*>(reef_smem + 512)" in body


def test_arg_layout_matches_the_c_abi(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    params = [Param("float*", "a"), Param("int", "b"), Param("int64_t", "c"),
              Param("float", "d"), Param("short", "e"), Param("double", "f"),
              Param("uchar", "g"), Param("int*", "h")]  # fmt: skip
    ctype = {"uchar": "unsigned char"}
    src = tmp_path / "probe.c"
    fields = "".join(f"  {ctype.get(p.ctype, p.ctype)} {p.name};\n" for p in params)
    prints = "".join(f'  printf("%zu\\n", offsetof(struct S, {p.name}));\n' for p in params)
    src.write_text("#include <stddef.h>\n#include <stdint.h>\n#include <stdio.h>\n"
                   f"struct S {{\n{fields}}};\nint main(void) {{\n{prints}"
                   '  printf("%zu\\n", sizeof(struct S));\n  return 0;\n}\n')  # fmt: skip
    exe = tmp_path / "probe"
    subprocess.run([cc, str(src), "-o", str(exe)], check=True)
    got = [int(v) for v in subprocess.run([str(exe)], capture_output=True, text=True,
                                          check=True).stdout.split()]  # fmt: skip
    lay = ArgLayout.of(params)
    assert [off for _, off in lay.fields] == got[:-1]
    assert lay.nbytes == got[-1]


@pytest.mark.parametrize(
    "bad, what",
    [("((int)blockDim.x)", "blockDim"), ("((int)blockIdx.y)", "blockIdx.y"),
     ("((int)gridDim.x)", "gridDim")],
)  # fmt: skip
def test_refuses_what_a_body_cannot_see(bad, what):
    src = fixture.SOURCE.read_text().replace(
        "((int)threadIdx.x)));\n      y[i]", f"{bad}));\n      y[i]"
    )
    assert bad in src
    with pytest.raises(UnsupportedError, match=what):
        package_bodies("t0", src, fixture.kernels())


def test_refuses_unknown_shared_type_and_mismatched_params():
    src = fixture.SOURCE.read_text()
    with pytest.raises(UnsupportedError, match="unknown type"):
        package_bodies("t0", src.replace("alignas(64) float red_buf", "alignas(64) mytype red_buf"),
                       fixture.kernels())  # fmt: skip
    ks = fixture.kernels()
    ks[0].args[-1]["name"] = "reef_other"
    with pytest.raises(UnsupportedError, match="do not match"):
        package_bodies("t0", src, ks)
    with pytest.raises(UnsupportedError, match="not defined"):
        package_bodies("t0", src.replace("fx_scale_kernel", "fx_other_kernel"), fixture.kernels())


def test_split_kernels_keeps_the_preamble():
    pre, defs = split_kernels(fixture.SOURCE.read_text())
    assert "#include <hip/hip_runtime.h>" in pre and "__global__ void" not in pre
    assert set(defs) == {"fx_scale_kernel", "fx_blocksum_kernel"}


@pytest.fixture(scope="module")
def nvcc():
    tool = find_nvcc()
    if tool is None:
        pytest.skip("nvcc not installed")
    return tool


def test_nvcc_build_per_budget(tmp_path, nvcc):
    b = build_sources([("fx", fixture.SOURCE.read_text(), fixture.kernels())], tmp_path,
                      vendor="nvidia", arch="sm_90", budgets=(64, 32), compiler=nvcc)  # fmt: skip
    assert [p.budget for p in b.proxies] == [32, 64]
    for p in b.proxies:
        co = read_code_object(tmp_path / p.path)
        assert {DISPATCH_KERNEL, PROBE_KERNEL, INDIRECT_KERNEL} <= set(co.kernels)
        assert co.arch == "sm_90"
        assert 0 < p.dispatcher.registers <= p.budget
    # the PTX reads %smid, hands BE blocks out by compare-and-swap and calls bodies indirectly
    tu = tmp_path / "tu.cu"
    tu.write_bytes(gzip.decompress((tmp_path / b.source).read_bytes()))
    subprocess.run([nvcc, "-ptx", "-arch=sm_90", "-w", f"-I{HIP_KERNELS}", str(tu), "-o",
                    str(tmp_path / "tu.ptx")], check=True)  # fmt: skip
    ptx = (tmp_path / "tu.ptx").read_text()
    assert "%smid" in ptx and "atom.global.cas" in ptx and ".callprototype" in ptx
    again = load_build(tmp_path)
    assert [e.body.symbol for e in again.bodies] == [e.body.symbol for e in b.bodies]
    assert again.bodies[1].body.smem_bytes == 528
    assert again.body_index("fx", 1) == 1


def _package(name: str, tmp_path: Path) -> Path:
    """A carried package if there is one (REEF_PACKAGES / .carry/packages), else compiled here
    with TVM (CI has it), so the test runs on a clean clone too."""
    for p in sorted(PACKAGES.glob(f"{name}-cuda_sm_90*")):
        return p
    pytest.importorskip("tvm", reason=f"no {name} package under {PACKAGES} and no TVM")
    from reef_rocm.compiler.build import compile_model

    mp = pytest.MonkeyPatch()
    mp.setenv("REEF_CACHE", str(tmp_path / "cache"))
    try:
        r = compile_model(name, "cuda:sm_90", out_dir=tmp_path / "pk", poll_interval=16,
                          progress=False, reference=False)  # fmt: skip
    finally:
        mp.undo()
    return r.path


def test_package_bodies_cover_their_static_shared_memory(tmp_path, nvcc):
    """Every kernel of a real package rewrites and builds; the carved shared memory of each
    body covers what the kernel's own code object declares as static shared memory."""
    pkg = _package("tiny_cnn", tmp_path / "pkg")
    b = build_packages([pkg], tmp_path / "build", budgets=(128,), nvcc=nvcc)
    # the build knows which kernels it compiled: a package with other dkp kernels is refused
    b.check_package(ModelPackage.load(pkg))
    copy = tmp_path / "copy"
    shutil.copytree(pkg, copy)
    src = copy / ModelPackage.load(pkg).manifest.variant("dkp").source
    text = gzip.decompress(src.read_bytes()) if src.suffix == ".gz" else src.read_bytes()
    text += b"\n// recompiled\n"
    src.write_bytes(gzip.compress(text) if src.suffix == ".gz" else text)
    with pytest.raises(PackageError, match="differ"):
        load_build(tmp_path / "build").check_package(ModelPackage.load(copy))
    own = read_code_object(pkg / "kernels" / "dkp.cubin").kernels
    assert len(b.bodies) == len(own)
    for e in b.bodies:
        k = own[e.body.kernel]
        assert e.body.smem_bytes >= k.shared_bytes, e.body.kernel
        assert e.body.smem_bytes - k.shared_bytes < 64 * 4, e.body.kernel  # alignment only


@pytest.fixture(scope="module")
def hipcc():
    tool = shutil.which("hipcc")
    if tool is None:
        pytest.skip("hipcc not installed (apt-get install hipcc)")
    return tool


@pytest.mark.parametrize("arch", ["gfx906", "gfx90a"])
def test_hipcc_build_reads_back(tmp_path, hipcc, arch):
    """The same dispatcher + bodies for AMD: compiled, resources read back, the hardware-id
    read present. Never run on AMD hardware (docs/dkp.md)."""
    b = build_sources([("fx", fixture.SOURCE.read_text(), fixture.kernels())], tmp_path,
                      vendor="amd", arch=arch, budgets=(64, 128), compiler=hipcc)  # fmt: skip
    for p in b.proxies:
        co = read_code_object(tmp_path / p.path)
        assert co.arch == arch and {DISPATCH_KERNEL, PROBE_KERNEL} <= set(co.kernels)
        d = p.dispatcher
        assert d.vendor == "amd" and 0 < d.registers <= p.budget
        assert d.shared_bytes >= 8  # the dispatcher's own broadcast words
        # scratch sized from the bodies' real stack (second pass), not LLVM's 16 KiB guess
        assert d.scratch_bytes < 16384
    objdump = shutil.which("llvm-objdump-16") or shutil.which("llvm-objdump")
    if objdump:
        asm = subprocess.run([objdump, "-d", f"--mcpu={arch}", str(tmp_path / b.proxies[0].path)],
                             capture_output=True, text=True).stdout  # fmt: skip
        assert "s_getreg_b32" in asm and "HW_REG_HW_ID" in asm
        assert "s_swappc_b64" in asm or "s_setpc_b64" in asm  # indirect calls stay indirect
