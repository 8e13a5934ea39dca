"""Build DKP code objects: kernel bodies + the dispatcher, one code object per proxy class.

One translation unit holds the bodies of every kernel of the given packages (the package's
dkp-variant CUDA source, rewritten by ``reef_rocm.dkp.source``), the dispatcher
(``hip_kernels/reef_dkp_dispatch.cuh``) and the table of body pointers. It is compiled once
per register budget (``-maxrregcount`` on NVIDIA, ``amdgpu_num_vgpr`` on AMD, see
``hip_cmd``): each code object is a *proxy kernel* (REEF's term) whose dispatcher and bodies
share one register allocation; the padded launch picks the smallest budget that covers both
callees (``reef_rocm.dkp.proxy``). Resource usage of each build is read back from the code
object with ``reef_rocm.codeobj``.

Whole-program compilation (one TU, no ``-rdc``): the indirect calls stay indirect (the body
index is a launch argument) and the compiler sees every possible callee, so the kernel's
register count covers them; relocatable device code would give the same calls with a device
link step and nothing more.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reef_rocm.codeobj import KernelResources, read_code_object
from reef_rocm.dkp.source import ArgLayout, KernelBody, PackageBodies, Param, package_bodies
from reef_rocm.errors import PackageError, ReefError, UnsupportedError
from reef_rocm.package.files import ModelPackage
from reef_rocm.package.manifest import LaunchRecord

HIP_KERNELS = Path(__file__).resolve().parents[2] / "hip_kernels"
DISPATCH_HEADER = "reef_dkp_dispatch.cuh"
DISPATCH_KERNEL = "reef_dkp_dispatch_kernel"
PROBE_KERNEL = "reef_dkp_probe_hw_ids"
INDIRECT_KERNEL = "reef_dkp_indirect_kernel"
# register budgets (per thread) of the proxy classes; on sm_90 with 128-thread blocks they
# are 16, 12, 10, 9, 8, 7, 6, 5, 4, 3 and 2 resident blocks per SM
NVIDIA_BUDGETS = (32, 40, 48, 56, 64, 72, 80, 96, 128, 168, 255)
BUILD_FILE = "dkp_build.json"


class BuildError(ReefError):
    """A compiler run failed; the message has its command and the end of its output."""


@dataclass
class ProxyBuild:
    """One code object of a build: the dispatcher compiled under one register budget."""

    budget: int  # registers per thread the compiler was allowed
    path: str  # relative to the build directory
    dispatcher: KernelResources  # what the code object says the dispatcher uses

    def as_dict(self) -> dict[str, Any]:
        return {"budget": self.budget, "path": self.path, "dispatcher": self.dispatcher.as_dict()}


@dataclass
class BodyEntry:
    package: str  # package (model) name
    kernel_index: int  # index in the package's dkp variant
    body: KernelBody


@dataclass
class DkpBuild:
    """What a padded launch needs to know about a build (saved as ``dkp_build.json``)."""

    directory: Path
    vendor: str  # "nvidia" | "amd"
    arch: str
    source: str  # the generated translation unit (relative)
    bodies: list[BodyEntry]
    proxies: list[ProxyBuild]
    tools: dict[str, str] = field(default_factory=dict)
    # model name -> sha256 of the kernel source its bodies came from: a package with other
    # kernels (recompiled, another reef_rocm) must not run with these bodies
    sources: dict[str, str] = field(default_factory=dict)

    def check_package(self, package: ModelPackage) -> None:
        """Refuse a package whose dkp-variant source is not the one this build compiled."""
        want = self.sources.get(package.name)
        if want is None:
            raise PackageError(f"{package.name}: not in this DKP build ({self.directory})")
        got = source_digest(source_text(package, "dkp"))
        if got != want:
            raise PackageError(
                f"{package.name} at {package.path}: its dkp kernels differ from the ones the "
                f"DKP build at {self.directory} compiled (rebuild it from this package)"
            )

    def body_index(self, package: str, kernel_index: int) -> int:
        for i, e in enumerate(self.bodies):
            if e.package == package and e.kernel_index == kernel_index:
                return i
        raise KeyError(f"no DKP body for kernel {kernel_index} of {package!r} in this build")

    def binary(self, proxy: ProxyBuild) -> bytes:
        return (self.directory / proxy.path).read_bytes()

    def save(self) -> Path:
        doc = {
            "vendor": self.vendor, "arch": self.arch, "source": self.source, "tools": self.tools,
            "sources": self.sources,
            "proxies": [p.as_dict() for p in self.proxies],
            "bodies": [
                {"package": e.package, "kernel_index": e.kernel_index, "kernel": e.body.kernel,
                 "symbol": e.body.symbol, "block": list(e.body.block),
                 "smem_bytes": e.body.smem_bytes, "args_bytes": e.body.layout.nbytes,
                 "dkp_roles": e.body.dkp_roles,
                 "params": [[p.ctype, p.name] for p in e.body.params],
                 "fields": [[p.ctype, p.name, off] for p, off in e.body.layout.fields]}
                for e in self.bodies
            ],
        }  # fmt: skip
        path = self.directory / BUILD_FILE
        path.write_text(json.dumps(doc, indent=1) + "\n")
        return path


def find_nvcc() -> str | None:
    for p in (shutil.which("nvcc"), "/usr/local/bin/nvcc", "/usr/local/cuda/bin/nvcc"):
        if p and os.access(p, os.X_OK):
            return p
    return None


def _run(cmd: list[str], env: dict[str, str] | None = None) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise BuildError(
            f"{' '.join(cmd)} failed ({r.returncode}):\n{(r.stderr or r.stdout)[-4000:]}"
        )
    return r.stderr


def source_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def source_text(package: ModelPackage, variant: str) -> str:
    """The kernel source a package's variant was compiled from (``.cu`` or ``.cu.gz``)."""
    path = package.path / package.manifest.variant(variant).source
    raw = path.read_bytes()
    return (gzip.decompress(raw) if path.suffix == ".gz" else raw).decode()


def translation_unit(parts: Sequence[PackageBodies], entries: Sequence[str]) -> str:
    """The generated source: TVM preambles (each distinct one once), the bodies, the dispatcher
    header and the body table in ``entries`` order (qualified wrapper names)."""
    pre: list[str] = []
    for p in parts:
        if p.preamble not in pre:
            pre.append(p.preamble)
    table = ",\n  ".join(f"&{e}" for e in entries)
    return (
        "// generated by reef_rocm.dkp.build: DKP bodies + dispatcher (do not edit)\n"
        + "\n".join(pre) + "\n" + "\n".join(p.code for p in parts)
        + f"\n#define REEF_DKP_NUM_BODIES {len(entries)}\n#include \"{DISPATCH_HEADER}\"\n"
        + 'extern "C" __device__ reef_dkp_body_t reef_dkp_bodies[REEF_DKP_NUM_BODIES] = {\n  '
        + table + "\n};\n"
    )  # fmt: skip


def nvcc_cmd(nvcc: str, src: Path, out: Path, arch: str, budget: int) -> list[str]:
    return [nvcc, "-cubin", f"-arch={arch}", "-O3", f"-maxrregcount={budget}", "-w",
            f"-I{HIP_KERNELS}", str(src), "-o", str(out)]  # fmt: skip


def hip_cmd(
    hipcc: str, src: Path, out: Path, arch: str, budget: int, stack: int | None = None
) -> list[str]:
    """AMD has no -maxrregcount: the header puts amdgpu_num_vgpr(REEF_DKP_VGPRS) on the
    kernels. ``stack=None``: the first pass, which records every function's stack size
    (``-fstack-size-section``); then ``stack`` = the largest body's, so the kernel reserves
    that much scratch per lane for its indirect calls instead of LLVM's assumed 16 KiB."""
    cmd = [hipcc, f"--offload-arch={arch}", "--genco", "--no-gpu-bundle-output", "-O3",
           f"-DREEF_DKP_VGPRS={budget}", f"-I{HIP_KERNELS}", "-x", "hip", str(src),
           "-o", str(out)]  # fmt: skip
    if stack is None:
        return [*cmd, "-fstack-size-section"]
    return [*cmd, "-mllvm", f"-amdgpu-assume-external-call-stack-size={stack}"]


def stack_sizes(path: Path) -> dict[str, int]:
    """Per-function stack bytes from a code object's ``.stack_sizes`` section (entries of an
    8-byte function address and a ULEB128 size)."""
    from reef_rocm.codeobj.elf import open_elf, section_bytes

    data = path.read_bytes()
    elf = open_elf(data)
    sec = elf.get_section_by_name(".stack_sizes")
    symtab = elf.get_section_by_name(".symtab")
    if sec is None or symtab is None:
        raise BuildError(f"{path}: no .stack_sizes/.symtab section (built without "
                         "-fstack-size-section?)")  # fmt: skip
    by_addr = {sym["st_value"]: sym.name for sym in symtab.iter_symbols()
               if sym["st_info"]["type"] == "STT_FUNC"}  # fmt: skip
    raw, i, out = section_bytes(data, sec), 0, {}
    while i + 8 <= len(raw):
        addr = int.from_bytes(raw[i : i + 8], "little")
        i += 8
        size = shift = 0
        while True:
            b = raw[i]
            i += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        out[by_addr.get(addr, hex(addr))] = size
    return out


def compile_proxies(
    src: Path, out_dir: Path, vendor: str, arch: str, budgets: Sequence[int],
    compiler: str | None = None,
) -> list[ProxyBuild]:  # fmt: skip
    """Compile ``src`` once per budget; read the dispatcher's resources back from each."""
    proxies = []
    if vendor == "nvidia":
        tool = compiler or find_nvcc()
        if tool is None:
            raise UnsupportedError("nvcc not found: cannot build NVIDIA DKP code objects")
        ext, env = "cubin", None
    elif vendor == "amd":
        tool = compiler or shutil.which("hipcc")
        if tool is None:
            raise UnsupportedError("hipcc not found: cannot build AMD DKP code objects")
        ext, env = "hsaco", dict(os.environ, HIP_PLATFORM="amd")
    else:
        raise ValueError(f"vendor must be nvidia or amd, got {vendor!r}")
    order = sorted(set(budgets))
    outs = [out_dir / f"dkp_{arch}_r{b}.{ext}" for b in order]
    cmds = [
        nvcc_cmd(tool, src, o, arch, b) if vendor == "nvidia" else hip_cmd(tool, src, o, arch, b)
        for b, o in zip(order, outs, strict=True)
    ]
    # one compiler per budget in parallel (REEF_DKP_JOBS, default: the CPUs this process may use)
    jobs = int(os.environ.get("REEF_DKP_JOBS", len(os.sched_getaffinity(0))))
    with ThreadPoolExecutor(max(1, min(jobs, len(cmds)))) as pool:
        list(pool.map(lambda c: _run(c, env), cmds))
        if vendor == "amd":  # second pass: scratch sized by the largest body's stack
            stacks = [max((v for k, v in stack_sizes(o).items() if not k.startswith("reef_dkp_")),
                          default=0) for o in outs]  # fmt: skip
            cmds = [hip_cmd(tool, src, o, arch, b, st)
                    for b, o, st in zip(order, outs, stacks, strict=True)]  # fmt: skip
            list(pool.map(lambda c: _run(c, env), cmds))
    for b, out in zip(order, outs, strict=True):
        co = read_code_object(out)
        if DISPATCH_KERNEL not in co.kernels:
            raise BuildError(f"{out}: no {DISPATCH_KERNEL} kernel in the code object")
        proxies.append(ProxyBuild(b, out.name, co.kernels[DISPATCH_KERNEL]))
    return proxies


def build_sources(
    sources: Sequence[tuple[str, str, Sequence[LaunchRecord]]], out_dir: str | Path, *,
    vendor: str, arch: str, budgets: Sequence[int], compiler: str | None = None,
) -> DkpBuild:  # fmt: skip
    """DKP code objects from ``(name, DKP-ready CUDA source, its dkp-variant kernels)`` per
    model: the generated TU is compiled once per budget."""
    if not sources:
        raise ValueError("no sources given")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts, entries, bodies = [], [], []
    for i, (name, text, kernels) in enumerate(sources):
        tag = f"reef_m{i}"
        pb = package_bodies(tag, text, list(kernels))
        parts.append(pb)
        for k, b in enumerate(pb.bodies):
            entries.append(f"{tag}::{b.symbol}")
            bodies.append(BodyEntry(name, k, b))
    src = out / f"dkp_{arch}.cu"
    src.write_text(translation_unit(parts, entries))
    proxies = compile_proxies(src, out, vendor, arch, budgets, compiler)
    # keep the generated source for inspection, compressed (a zoo TU is megabytes of C++)
    gz = src.with_name(src.name + ".gz")
    gz.write_bytes(gzip.compress(src.read_bytes()))
    src.unlink()
    digests = {name: source_digest(text) for name, text, _ in sources}
    build = DkpBuild(out, vendor, arch, gz.name, bodies, proxies, sources=digests)
    build.save()
    return build


def build_packages(
    packages: Sequence[ModelPackage | str | Path], out_dir: str | Path, *,
    budgets: Sequence[int] = NVIDIA_BUDGETS, nvcc: str | None = None,
) -> DkpBuild:  # fmt: skip
    """DKP code objects for every kernel of ``packages`` (CUDA packages of one arch)."""
    pkgs = [p if isinstance(p, ModelPackage) else ModelPackage.load(p) for p in packages]
    if not pkgs:
        raise ValueError("no packages given")
    arch = pkgs[0].manifest.target.get("arch")
    for p in pkgs:
        t = p.manifest.target
        if t.get("backend") != "cuda" or t.get("arch") != arch:
            raise UnsupportedError(
                f"{p.name}: target {t.get('name')}; DKP builds from package sources take CUDA "
                f"packages of one arch ({arch}); AMD packages carry LLVM IR (docs/dkp.md)"
            )
    names = [p.name for p in pkgs]
    if len(set(names)) != len(names):
        raise ValueError(f"packages with the same model name: {names}")
    srcs = [(p.name, source_text(p, "dkp"), p.manifest.variant("dkp").kernels) for p in pkgs]
    return build_sources(srcs, out_dir, vendor="nvidia", arch=str(arch), budgets=budgets,
                         compiler=nvcc)  # fmt: skip


def load_build(directory: str | Path) -> DkpBuild:
    """A build saved by ``build_sources``/``build_packages`` (its ``dkp_build.json``)."""
    d = Path(directory)
    try:
        doc = json.loads((d / BUILD_FILE).read_text())
    except (OSError, ValueError) as e:
        raise ReefError(f"{d}: no readable {BUILD_FILE}: {e}") from None
    bodies = []
    for e in doc["bodies"]:
        fields = [(Param(c, n), off) for c, n, off in e["fields"]]
        layout = ArgLayout(tuple(fields), e["args_bytes"])
        params = [Param(c, n) for c, n in e["params"]]
        body = KernelBody(e["kernel"], e["symbol"], tuple(e["block"]), params, layout,
                          e["smem_bytes"], dict(e.get("dkp_roles", {})))  # fmt: skip
        bodies.append(BodyEntry(e["package"], e["kernel_index"], body))
    proxies = []
    for p in doc["proxies"]:
        co = read_code_object(d / p["path"])
        proxies.append(ProxyBuild(p["budget"], p["path"], co.kernels[DISPATCH_KERNEL]))
    return DkpBuild(d, doc["vendor"], doc["arch"], doc["source"], bodies, proxies, doc["tools"],
                    dict(doc.get("sources", {})))  # fmt: skip
