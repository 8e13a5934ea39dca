"""Session fixtures: code objects built from small sources by the real compilers.

Nothing binary is checked in; builds are kept in the session's build cache (tests/conftest.py)
by content hash, so a second run reuses them. Each builder skips (with the reason) when its
compiler is absent: hipcc (ROCm 5.2 on Debian 12) for gfx906/gfx908/gfx90a code objects v4
and v5; Apache TVM with ld.lld-16 for gfx942 and code object v6 (and its CUDA codegen for
model-like cubins); nvcc for sm_80/sm_90 cubins."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from build_cache import BuildCache, file_digest, tool_version
from codeobj_tools import Built, parse_remarks

from reef_rocm.compiler.codegen import find_nvcc, have_rocm_toolchain, one_linked, rocm_toolchain

REPO = Path(__file__).resolve().parents[2]
HIP_SRC = REPO / "hip_kernels" / "codeobj_fixtures.hip"
CU_SRC = REPO / "hip_kernels" / "codeobj_fixtures.cu"
HIP_ARCHS = ("gfx906", "gfx908", "gfx90a")
SM_ARCHS = ("sm_80", "sm_90")


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["nice", "-n", "10", *cmd], capture_output=True, text=True, **kw)


def _hipcc(build_cache: BuildCache, hipcc: str, args: list[str], out_name: str) -> Path:
    """hipcc ``args`` on HIP_SRC -> the cache entry holding ``out_name`` and hipcc's stderr
    (its resource-usage remarks)."""

    def build(d: Path) -> None:
        r = _run([hipcc, *args, str(HIP_SRC), "-o", str(d / out_name)],
                 env=dict(os.environ, HIP_PLATFORM="amd"))  # fmt: skip
        assert r.returncode == 0, f"hipcc {' '.join(args)} failed:\n{r.stderr[-3000:]}"
        (d / "stderr.txt").write_text(r.stderr)

    key = build_cache.key("hipcc", *args, HIP_SRC.read_bytes(), tool_version(hipcc))
    return build_cache.entry(key, build)


@pytest.fixture(scope="session")
def hip_objects(build_cache) -> list[Built]:
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc): no gfx906/908/90a fixtures")
    built = []
    for arch in HIP_ARCHS:
        for version in (4, 5):
            name = f"fixtures_{arch}_v{version}.hsaco"
            d = _hipcc(
                build_cache, hipcc,
                [f"--offload-arch={arch}", "--genco", "--no-gpu-bundle-output",
                 f"-mcode-object-version={version}", "-Rpass-analysis=kernel-resource-usage"],
                name,
            )  # fmt: skip
            remarks = parse_remarks((d / "stderr.txt").read_text())
            built.append(Built(d / name, arch, version, remarks))
    return built


@pytest.fixture(scope="session")
def hip_bundle(build_cache) -> Path:
    """A clang offload bundle (hipcc's default --genco output) with two device targets."""
    hipcc = shutil.which("hipcc")
    if not hipcc:
        pytest.skip("hipcc not installed (apt-get install hipcc)")
    name = "fixtures_bundle.hsaco"
    args = ["--offload-arch=gfx906", "--offload-arch=gfx90a", "--genco"]
    return _hipcc(build_cache, hipcc, args, name) / name


def _nvcc(build_cache: BuildCache, nvcc: str, src: str | Path, arch: str, name: str) -> Path:
    """nvcc's cubin of ``src`` (CUDA C text, or a file) for ``arch``, through the cache."""
    text = Path(src).read_text() if isinstance(src, Path) else src

    def build(d: Path) -> None:
        (d / "k.cu").write_text(text)
        r = _run([nvcc, "-w", "-cubin", f"-arch={arch}", str(d / "k.cu"), "-o", str(d / name)])
        assert r.returncode == 0, f"nvcc failed for {arch}:\n{r.stderr[-3000:]}"

    key = build_cache.key("nvcc-w", arch, text, tool_version(nvcc))
    return build_cache.entry(key, build) / name


@pytest.fixture(scope="session")
def cuda_objects(build_cache) -> list[Built]:
    nvcc = find_nvcc()
    if not nvcc:
        pytest.skip("nvcc not installed: no sm_80/sm_90 cubin fixtures")
    return [
        Built(_nvcc(build_cache, nvcc, CU_SRC, arch, f"fixtures_{arch}.cubin"), arch)
        for arch in SM_ARCHS
    ]


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
def tvm_objects(build_cache) -> list[Built]:
    """TVM (LLVM 22) builds: gfx942 and gfx90a with code object v6; cubins for sm_80/sm_90."""
    if importlib.util.find_spec("tvm") is None:
        pytest.skip("apache-tvm not installed (pip install apache-tvm): no gfx942/v6 fixtures")
    if not have_rocm_toolchain():
        pytest.skip("ld.lld / rocm-device-libs not installed (apt-get install lld-16 "
                    "rocm-device-libs): TVM cannot link HSACOs")  # fmt: skip
    import tvm
    from tvm import relax

    from reef_rocm.compiler import codegen

    mod = _tvm_model()
    toolchain = [str(tvm.__version__), file_digest(codegen.__file__), mod.script()]
    built = []
    for mcpu in ("gfx942", "gfx90a"):
        name = f"tvm_tiny_{mcpu}.hsaco"

        def build(d: Path, mcpu: str = mcpu, name: str = name) -> None:
            target = tvm.target.Target({"kind": "rocm", "mcpu": mcpu})
            with target:
                lowered = relax.get_default_pipeline(target)(mod)
            # the compiler's own link; the v6 version byte is kept, since these fixtures
            # are what the code object readers are checked on for v6
            with rocm_toolchain(mcpu, keep_code_object_version=True) as linked:
                tvm.compile(lowered, target=target)
            (d / name).write_bytes(one_linked(linked))

        lld = tool_version(codegen.lld_path())
        d = build_cache.entry(build_cache.key("tvm-rocm", mcpu, lld, *toolchain), build)
        built.append(Built(d / name, mcpu, 6))
    nvcc = find_nvcc()
    if nvcc:
        for arch in SM_ARCHS:

            def source(d: Path, arch: str = arch) -> None:
                target = tvm.target.Target({"kind": "cuda", "arch": arch})
                with target:
                    lowered = relax.get_default_pipeline(target)(mod)
                ex = tvm.compile(lowered, target=target)
                host = ex.mod.imports[0]
                dev = host.imports[0] if host.kind == "llvm" else host
                (d / "k.cu").write_text(dev.inspect_source("cuda"))

            d = build_cache.entry(build_cache.key("tvm-cuda", arch, *toolchain), source)
            cubin = _nvcc(build_cache, nvcc, (d / "k.cu").read_text(), arch,
                          f"tvm_tiny_{arch}.cubin")  # fmt: skip
            built.append(Built(cubin, arch))
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
