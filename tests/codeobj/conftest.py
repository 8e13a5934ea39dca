"""Session fixtures: code objects built from small sources by the real compilers.

Nothing binary is checked in. Each builder skips (with the reason) when its compiler is absent:
hipcc (ROCm 5.2 on Debian 12) for gfx906/gfx908/gfx90a code objects v4 and v5; Apache TVM
with ld.lld-16 for gfx942 and code object v6 (and its CUDA codegen for model-like cubins);
nvcc for sm_80/sm_90 cubins.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from codeobj_tools import Built, find_tool, parse_remarks

REPO = Path(__file__).resolve().parents[2]
HIP_SRC = REPO / "hip_kernels" / "codeobj_fixtures.hip"
CU_SRC = REPO / "hip_kernels" / "codeobj_fixtures.cu"
HIP_ARCHS = ("gfx906", "gfx908", "gfx90a")
SM_ARCHS = ("sm_80", "sm_90")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, **kw)


@pytest.fixture(scope="session")
def build_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("codeobj")


@pytest.fixture(scope="session")
def hip_objects(build_dir) -> list[Built]:
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc): no gfx906/908/90a fixtures")
    env = dict(os.environ, HIP_PLATFORM="amd")
    built = []
    for arch in HIP_ARCHS:
        for version in (4, 5):
            out = build_dir / f"fixtures_{arch}_v{version}.hsaco"
            r = _run(
                [hipcc, f"--offload-arch={arch}", "--genco", "--no-gpu-bundle-output",
                 f"-mcode-object-version={version}", "-Rpass-analysis=kernel-resource-usage",
                 str(HIP_SRC), "-o", str(out)],
                env=env,
            )
            assert r.returncode == 0, f"hipcc failed for {arch} v{version}:\n{r.stderr[-3000:]}"
            built.append(Built(out, arch, version, parse_remarks(r.stderr)))
    return built


@pytest.fixture(scope="session")
def hip_bundle(build_dir) -> Path:
    """A clang offload bundle (hipcc's default --genco output) with two device targets."""
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc)")
    out = build_dir / "fixtures_bundle.hsaco"
    r = _run([hipcc, "--offload-arch=gfx906", "--offload-arch=gfx90a", "--genco",
              str(HIP_SRC), "-o", str(out)], env=dict(os.environ, HIP_PLATFORM="amd"))
    assert r.returncode == 0, r.stderr[-3000:]
    return out


@pytest.fixture(scope="session")
def cuda_objects(build_dir) -> list[Built]:
    nvcc = find_tool("nvcc", extra=("/usr/local/cuda/bin/nvcc",))
    if not nvcc:
        pytest.skip("nvcc not installed: no sm_80/sm_90 cubin fixtures")
    built = []
    for arch in SM_ARCHS:
        out = build_dir / f"fixtures_{arch}.cubin"
        r = _run([nvcc, "-w", "-cubin", f"-arch={arch}", str(CU_SRC), "-o", str(out)])
        assert r.returncode == 0, f"nvcc failed for {arch}:\n{r.stderr[-3000:]}"
        built.append(Built(out, arch))
    return built


def _tvm_model():
    """A tiny MLP + softmax: matmuls with shared-memory tiles, elementwise and reductions."""
    from tvm.relax.frontend import nn

    class Tiny(nn.Module):
        def __init__(self) -> None:
            self.l1 = nn.Linear(64, 128)
            self.l2 = nn.Linear(128, 16)

        def forward(self, x):
            return nn.softmax(self.l2(nn.relu(self.l1(x))), axis=-1)

    mod, _ = Tiny().export_tvm({"forward": {"x": nn.spec.Tensor((8, 64), "float32")}})
    return mod


@pytest.fixture(scope="session")
def tvm_objects(build_dir) -> list[Built]:
    """TVM (LLVM 22) builds: gfx942 and gfx90a with code object v6; cubins for sm_80/sm_90."""
    if importlib.util.find_spec("tvm") is None:
        pytest.skip("apache-tvm not installed (pip install apache-tvm): no gfx942/v6 fixtures")
    lld = find_tool("ld.lld-16", "ld.lld")
    if lld is None:
        pytest.skip("ld.lld not installed (apt-get install lld-16): TVM cannot link HSACOs")
    import tvm
    import tvm_ffi
    from tvm import relax

    linked: list[bytes] = []

    def link(obj: bytes) -> bytearray:
        data = bytearray(bytes(obj))
        abi = data[8]
        # LLVM 22 writes code object v6 (ABI version 4), which ld.lld 14-16 refuse; they link
        # it fine as v5, and the version byte is put back afterwards.
        if abi == 4:
            data[8] = 3
        with tempfile.TemporaryDirectory() as d:
            src, dst = Path(d, "k.o"), Path(d, "k.co")
            src.write_bytes(data)
            r = subprocess.run([lld, "--no-undefined", "-shared", str(src), "-o", str(dst)],
                               capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"ld.lld failed: {r.stderr}")
            out = bytearray(dst.read_bytes())
        out[8] = abi
        linked.append(bytes(out))
        return out

    previous = tvm_ffi.get_global_func("tvm_callback_rocm_link", allow_missing=True)
    tvm_ffi.register_global_func("tvm_callback_rocm_link", link, override=True)
    # TVM finds the device bitcode through ROCM_PATH (Debian: /usr/lib/x86_64-linux-gnu); only
    # for this build, since hipcc reads the same variable to find its clang.
    old_rocm_path = os.environ.get("ROCM_PATH")
    if old_rocm_path is None and Path("/usr/lib/x86_64-linux-gnu/amdgcn/bitcode").is_dir():
        os.environ["ROCM_PATH"] = "/usr/lib/x86_64-linux-gnu"
    built = []
    try:
        mod = _tvm_model()
        for mcpu in ("gfx942", "gfx90a"):
            target = tvm.target.Target({"kind": "rocm", "mcpu": mcpu})
            with target:
                lowered = relax.get_default_pipeline(target)(mod)
            linked.clear()
            tvm.compile(lowered, target=target)
            assert len(linked) == 1, f"expected one linked HSACO for {mcpu}, got {len(linked)}"
            path = build_dir / f"tvm_tiny_{mcpu}.hsaco"
            path.write_bytes(linked[0])
            built.append(Built(path, mcpu, 6))
        nvcc = find_tool("nvcc", extra=("/usr/local/cuda/bin/nvcc",))
        if nvcc:
            for arch in SM_ARCHS:
                target = tvm.target.Target({"kind": "cuda", "arch": arch})
                with target:
                    lowered = relax.get_default_pipeline(target)(mod)
                ex = tvm.compile(lowered, target=target)
                host = ex.mod.imports[0]
                dev = host.imports[0] if host.kind == "llvm" else host
                cu = build_dir / f"tvm_tiny_{arch}.cu"
                cu.write_text(dev.inspect_source("cuda"))
                out = cu.with_suffix(".cubin")
                r = _run([nvcc, "-w", "-cubin", f"-arch={arch}", str(cu), "-o", str(out)])
                assert r.returncode == 0, r.stderr[-3000:]
                built.append(Built(out, arch))
    finally:
        if old_rocm_path is None:
            os.environ.pop("ROCM_PATH", None)
        if previous is not None:
            tvm_ffi.register_global_func("tvm_callback_rocm_link", previous, override=True)
    return built


def _available(request, *names: str) -> list[Built]:
    """Union of the named builder fixtures that could be built here; skip if none could."""
    out, reasons = [], []
    for name in names:
        try:
            out.extend(request.getfixturevalue(name))
        except pytest.skip.Exception as e:
            reasons.append(str(e))
    if not out:
        pytest.skip("; ".join(reasons))
    return out


@pytest.fixture(scope="session")
def all_hsaco(request) -> list[Built]:
    built = _available(request, "hip_objects", "tvm_objects")
    return [b for b in built if b.path.suffix == ".hsaco"]


@pytest.fixture(scope="session")
def all_cubin(request) -> list[Built]:
    built = _available(request, "cuda_objects", "tvm_objects")
    return [b for b in built if b.path.suffix == ".cubin"]


@pytest.fixture(scope="session")
def extra_objects() -> list[Path]:
    """Code objects of real model packages: REEF_CODEOBJ_DIRS=dir1:dir2 (e.g. the zoo's
    build output) adds every *.hsaco/*.cubin under those directories to the tool checks."""
    from reef_rocm.codeobj import find_code_objects

    dirs = [d for d in os.environ.get("REEF_CODEOBJ_DIRS", "").split(os.pathsep) if d]
    if not dirs:
        pytest.skip("REEF_CODEOBJ_DIRS not set: no model packages to check")
    files = [f for d in dirs for f in find_code_objects(d)]
    if not files:
        pytest.skip(f"no *.hsaco/*.cubin under {dirs}")
    return files
