"""Workloads, builders and GPU fixtures for the kernel transformer (transform.py).

Used three ways:

* tests import ``workloads()`` and the ``build_cuda`` / ``build_rocm`` helpers (CPU only:
  code generation, nvcc and ld.lld; no GPU needed);
* ``python -m reef_rocm.compiler.transform_fixtures OUTDIR`` (or
  tools/build_transform_fixtures.py) writes cubins plus ``manifest.json`` and reference
  arrays for the GPU tests (tests/compiler/test_transform_gpu.py) and the poll-interval
  benchmark (tools/bench_poll_interval.py), which run on a host without TVM;
* the same builders give HSACO for gfx90a so the ROCm path is linked and inspected.

Everything here needs apache-tvm; nothing in the GPU-side scripts imports this module.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tvm
import tvm_ffi
from tvm import te, tirx, topi
from tvm.s_tir import dlight as dl
from tvm.script import tirx as T

from reef_rocm.compiler import transform as tr

CUDA_TARGET = {"kind": "cuda", "arch": "sm_90"}
ROCM_TARGET = {"kind": "rocm", "mcpu": "gfx90a"}
DEFAULT_POLL_INTERVALS = (64, 16, 4, 1)

# ----------------------------------------------------------------------------- workloads


def _schedule(mod: tvm.IRModule, target: dict) -> tvm.IRModule:
    """dlight's default GPU rules, as the Relax default pipelines for cuda/rocm apply."""
    with tvm.target.Target(target):
        return dl.ApplyDefaultSchedule(
            dl.gpu.Matmul(),
            dl.gpu.GEMV(),
            dl.gpu.Reduction(),
            dl.gpu.GeneralReduction(),
            dl.gpu.Fallback(),
        )(mod)


def _te_func(name: str, tensors: list) -> tirx.PrimFunc:
    return te.create_prim_func(tensors).with_attr("global_symbol", name)


def te_matmul(m: int, n: int, k: int, name: str = "matmul") -> tirx.PrimFunc:
    a = te.placeholder((m, k), "float32", name="A")
    b = te.placeholder((k, n), "float32", name="B")
    r = te.reduce_axis((0, k), name="k")
    c = te.compute((m, n), lambda i, j: te.sum(a[i, r] * b[r, j], axis=r), name="C")
    return _te_func(name, [a, b, c])


def te_conv(n: int, c: int, hw: int, k: int, name: str = "conv") -> tirx.PrimFunc:
    x = te.placeholder((n, c, hw, hw), "float32", name="X")
    w = te.placeholder((k, c, 3, 3), "float32", name="W")
    y = topi.nn.conv2d_nchw(x, w, 1, 1, 1)
    return _te_func(name, [x, w, y])


def te_softmax(rows: int, cols: int, name: str = "softmax") -> tirx.PrimFunc:
    s = te.placeholder((rows, cols), "float32", name="S")
    return _te_func(name, [s, topi.nn.softmax(s)])


@T.prim_func(s_tir=True)
def ew2d(a: T.Buffer((96, 160), "float32"), b: T.Buffer((96, 160), "float32")):
    """2-D grid, 2-D blocks: b = 2a + 1."""
    T.func_attr({"global_symbol": "ew2d", "tirx.noalias": True})
    for by in T.thread_binding(6, thread="blockIdx.y"):
        for bx in T.thread_binding(5, thread="blockIdx.x"):
            for ty in T.thread_binding(16, thread="threadIdx.y"):
                for tx in T.thread_binding(32, thread="threadIdx.x"):
                    with T.sblock("ew"):
                        i = T.axis.spatial(96, by * 16 + ty)
                        j = T.axis.spatial(160, bx * 32 + tx)
                        b[i, j] = a[i, j] * T.float32(2) + T.float32(1)


@T.prim_func(s_tir=True)
def ew3d(a: T.Buffer((4, 6, 256), "float32"), b: T.Buffer((4, 6, 256), "float32")):
    """3-D grid: b = a - 3."""
    T.func_attr({"global_symbol": "ew3d", "tirx.noalias": True})
    for bz in T.thread_binding(4, thread="blockIdx.z"):
        for by in T.thread_binding(6, thread="blockIdx.y"):
            for bx in T.thread_binding(2, thread="blockIdx.x"):
                for tx in T.thread_binding(128, thread="threadIdx.x"):
                    with T.sblock("ew"):
                        i, j = T.axis.remap("SS", [bz, by])
                        k = T.axis.spatial(256, bx * 128 + tx)
                        b[i, j, k] = a[i, j, k] - T.float32(3)


@T.prim_func(s_tir=True)
def two_kernels(
    a: T.Buffer((1024,), "float32"),
    b: T.Buffer((1024,), "float32"),
    c: T.Buffer((1024,), "float32"),
):
    """One PrimFunc, two kernels (different launch shapes): b = a + 1; c = 3 b."""
    T.func_attr({"global_symbol": "two_kernels", "tirx.noalias": True})
    for bx in T.thread_binding(8, thread="blockIdx.x"):
        for tx in T.thread_binding(128, thread="threadIdx.x"):
            with T.sblock("k1"):
                i = T.axis.spatial(1024, bx * 128 + tx)
                b[i] = a[i] + T.float32(1)
    for bx in T.thread_binding(4, thread="blockIdx.x"):
        for tx in T.thread_binding(256, thread="threadIdx.x"):
            with T.sblock("k2"):
                i = T.axis.spatial(1024, bx * 256 + tx)
                c[i] = b[i] * T.float32(3)


@T.prim_func(s_tir=True)
def one_block(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")):
    """A kernel without blockIdx (grid of one block): b = a * a."""
    T.func_attr({"global_symbol": "one_block", "tirx.noalias": True})
    for tx in T.thread_binding(64, thread="threadIdx.x"):
        with T.sblock("sq"):
            i = T.axis.spatial(64, tx)
            b[i] = a[i] * a[i]


ROWS_BLOCKS = 16384
ROWS_THREADS = 128
ROWS_STEPS = 65536


@T.prim_func(s_tir=True)
def rows(a: T.Buffer((16384, 128), "float32"), out: T.Buffer((16384, 128), "float32")):
    """A long-running kernel whose block b writes exactly row b of ``out`` (at the end),
    for the mid-kernel preemption test: a dependent chain of 65536 FMAs per thread."""
    T.func_attr({"global_symbol": "rows", "tirx.noalias": True})
    acc = T.sblock_alloc_buffer((16384, 128), "float32", scope="local")
    for b in T.thread_binding(16384, thread="blockIdx.x"):
        for t in T.thread_binding(128, thread="threadIdx.x"):
            with T.sblock("init"):
                vb, vt = T.axis.remap("SS", [b, t])
                acc[vb, vt] = a[vb, vt]
            for k in range(65536):
                with T.sblock("step"):
                    vb, vt, vk = T.axis.remap("SSR", [b, t, k])
                    acc[vb, vt] = acc[vb, vt] * T.float32(0.999) + T.float32(0.001)
            with T.sblock("write"):
                vb, vt = T.axis.remap("SS", [b, t])
                out[vb, vt] = acc[vb, vt]


@dataclass
class Workload:
    """One scheduled PrimFunc plus how to feed it: inputs are the leading params, the
    trailing ``n_outputs`` params are outputs (TE/TVMScript convention)."""

    name: str
    func: tirx.PrimFunc  # scheduled (thread-bound), with global_symbol
    n_outputs: int = 1
    reference: object = None  # callable(list of numpy inputs) -> list of numpy outputs
    gpu_test: bool = True  # small enough to ship inputs and references
    notes: str = ""


def _np_conv(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    n, c, h, wd = x.shape
    k = w.shape[0]
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    out = np.zeros((n, k, h, wd), np.float64)
    for dy in range(3):
        for dx in range(3):
            patch = xp[:, :, dy : dy + h, dx : dx + wd].astype(np.float64)
            out += np.einsum("nchw,kc->nkhw", patch, w[:, :, dy, dx].astype(np.float64))
    return out.astype(np.float32)


def _np_softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def workloads(target: dict = CUDA_TARGET, bench: bool = False) -> list[Workload]:
    """The transformer's test workloads, scheduled for ``target``.

    Covers what model kernels look like after dlight: a tiled matmul and a conv (implicit
    GEMM) with shared memory and barriers, a softmax with cross-thread (warp shuffle)
    reductions, 2-D and 3-D grids, two kernels in one PrimFunc, and a long-running kernel
    with a known block-to-output mapping. ``bench`` adds large compute-heavy kernels.
    """
    te_mod = tvm.IRModule(
        {
            "matmul": te_matmul(256, 384, 512),
            "conv": te_conv(2, 64, 28, 64),
            "softmax": te_softmax(64, 1000),
        }
    )
    if bench:
        te_mod["bench_matmul"] = te_matmul(4096, 4096, 4096, name="bench_matmul")
        te_mod["bench_conv"] = te_conv(8, 256, 56, 256, name="bench_conv")
    sched = _schedule(te_mod, target)
    out = [
        Workload("matmul", sched["matmul"], reference=lambda x: [x[0] @ x[1]]),
        Workload("conv", sched["conv"], reference=lambda x: [_np_conv(x[0], x[1])]),
        Workload("softmax", sched["softmax"], reference=lambda x: [_np_softmax(x[0])]),
        Workload("ew2d", ew2d, reference=lambda x: [x[0] * 2 + 1]),
        Workload("ew3d", ew3d, reference=lambda x: [x[0] - 3]),
        Workload("one_block", one_block, reference=lambda x: [x[0] * x[0]]),
        Workload(
            "two_kernels",
            two_kernels,
            n_outputs=2,
            reference=lambda x: [x[0] + 1, (x[0] + 1) * 3],
            notes="two device kernels; the GPU tests skip it (launch order is the host's)",
        ),
        # no shipped arrays (16 MiB): the GPU side fills inputs from a seed and compares
        # variants with the plain kernel
        Workload("rows", rows, notes="inputs generated on the GPU host"),
    ]
    if bench:
        out.append(Workload("bench_matmul", sched["bench_matmul"], gpu_test=False))
        out.append(Workload("bench_conv", sched["bench_conv"], gpu_test=False))
    return out


# ----------------------------------------------------------------------------- builders


@dataclass
class KernelSig:
    """A device kernel as the generated CUDA source declares it."""

    name: str
    params: list[dict] = field(default_factory=list)  # {name, ctype, kind: buffer|scalar}
    max_threads: int | None = None


_SIG = re.compile(
    r'extern "C" __global__ void (?:__launch_bounds__\((\d+)\) )?(\w+)\(([^)]*)\)\s*\{'
)


def parse_cuda_kernels(source: str) -> list[KernelSig]:
    """Kernel names and parameters, in device order, from TVM's CUDA source. TVM orders a
    kernel's parameters its own way (not the PrimFunc's), so launchers must use this."""
    sigs = []
    for m in _SIG.finditer(source):
        params = []
        for raw in filter(None, (p.strip() for p in m.group(3).split(","))):
            name = raw.split()[-1]
            if "*" in raw:
                # TVM names a buffer's pointer <buffer>_ptr, and <buffer>_ptr_<n> for the
                # n-th other buffer of the same name (e.g. both halves of a dispatcher)
                m2 = re.fullmatch(r"(.*)_ptr(?:_(\d+))?", name)
                base, dup = (m2.group(1), int(m2.group(2) or 0)) if m2 else (name, 0)
                ctype = raw.split("*")[0].strip() + "*"
                params.append({"name": base, "ctype": ctype, "kind": "buffer", "dup": dup})
            else:
                params.append({"name": name, "ctype": raw.rsplit(" ", 1)[0], "kind": "scalar"})
        sigs.append(KernelSig(m.group(2), params, int(m.group(1)) if m.group(1) else None))
    return sigs


@dataclass
class CudaBuild:
    source: str
    kernels: list[KernelSig]
    cubin: bytes | None = None


def build_cuda(mod: tvm.IRModule, arch: str = "sm_90", cubin: bool = True) -> CudaBuild:
    """CUDA source from TVM and, with ``cubin``, nvcc's cubin for ``arch``."""
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "cuda", "arch": arch}))
    source = ex.mod.imports[0].inspect_source()
    out = CudaBuild(source, parse_cuda_kernels(source))
    if cubin:
        out.cubin = nvcc_cubin(source, arch)
    return out


def nvcc_cubin(source: str, arch: str = "sm_90") -> bytes:
    nvcc = shutil.which("nvcc") or "/usr/local/cuda/bin/nvcc"
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d, "k.cu"), Path(d, "k.cubin")
        src.write_text(source)
        proc = subprocess.run(
            ["nice", nvcc, "-cubin", f"-arch={arch}", "-O3", "-o", str(out), str(src)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"nvcc failed:\n{proc.stderr[-4000:]}")
        return out.read_bytes()


_rocm_links: list[bytes] = []


def _find_lld() -> str:
    for cand in ("ld.lld-16", "ld.lld-15", "ld.lld"):
        path = shutil.which(cand)
        if path:
            return path
    raise RuntimeError("no ld.lld found (apt-get install lld-16)")


def _rocm_link(obj: bytes) -> bytearray:
    """TVM's LLVM 22 emits code object v6 (ELF EI_ABIVERSION 4), which Debian's ld.lld
    14-16 reject; marking it v5 (3) links, and llvm-readelf/objdump accept the result (see
    REFERENCE.md 6). Not yet loaded on an AMD GPU: this is for inspection and link checks."""
    data = bytearray(bytes(obj))
    if data[8] == 4:
        data[8] = 3
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d, "k.o"), Path(d, "k.hsaco")
        src.write_bytes(bytes(data))
        proc = subprocess.run(
            [_find_lld(), "--no-undefined", "-shared", str(src), "-o", str(out)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"ld.lld failed:\n{proc.stdout}{proc.stderr}")
        hsaco = out.read_bytes()
    _rocm_links.append(hsaco)
    return bytearray(hsaco)


def install_rocm_toolchain() -> None:
    """Point TVM's ROCm build at Debian's device libraries and a linker that works here.
    Process-wide; only build tooling and tests call it."""
    os.environ.setdefault("ROCM_PATH", "/usr/lib/x86_64-linux-gnu")
    tvm_ffi.register_global_func("tvm_callback_rocm_link", _rocm_link, override=True)


@dataclass
class RocmBuild:
    asm: str  # AMDGPU assembly
    llvm_ir: str  # optimised LLVM IR
    hsaco: bytes


def build_rocm(mod: tvm.IRModule, mcpu: str = "gfx90a") -> RocmBuild:
    install_rocm_toolchain()
    before = len(_rocm_links)
    ex = tvm.compile(mod, target=tvm.target.Target({"kind": "rocm", "mcpu": mcpu}))
    dev = ex.mod.imports[0]
    if len(_rocm_links) == before:
        raise RuntimeError("TVM did not call tvm_callback_rocm_link")
    return RocmBuild(dev.inspect_source("asm"), dev.inspect_source("llvm"), _rocm_links[-1])


def cuda_kernel_bodies(source: str) -> dict[str, str]:
    """Kernel name -> the text of its body in TVM's CUDA source (definitions only)."""
    out = {}
    for m in _SIG.finditer(source):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        out[m.group(2)] = source[m.end() : i]
    return out


def cuda_barriers(source: str) -> dict[str, int]:
    """Kernel name -> number of ``__syncthreads()`` in its body (CUDA source)."""
    return {k: b.count("__syncthreads()") for k, b in cuda_kernel_bodies(source).items()}


def rocm_barriers(asm: str) -> dict[str, int]:
    """Kernel name -> number of ``s_barrier`` instructions in its AMDGPU assembly (kernels
    only, not the library functions the module also holds)."""
    kernels = set(re.findall(r"^\s*\.amdhsa_kernel\s+(\w+)", asm, re.M))
    out = {}
    for m in re.finditer(r"^(\w+):[^\n]*\n(.*?)^\.Lfunc_end\d*", asm, re.M | re.S):
        if m.group(1) in kernels:
            out[m.group(1)] = len(re.findall(r"^\s*s_barrier\b", m.group(2), re.M))
    return out


# ----------------------------------------------------------------------------- variants


def variants(func: tirx.PrimFunc, intervals: tuple[int, ...] = DEFAULT_POLL_INTERVALS) -> dict:
    """name -> one-function IRModule: plain, pre (block-start check), pre_p{N}, dkp,
    dkp_pre and dkp_pre_p{N} (DKP of the preemptible variants)."""
    name = str(func.attrs["global_symbol"])
    base = tvm.IRModule({name: func})
    out = {"plain": base, "pre": tr.make_preemptible(base)}
    for n in intervals:
        out[f"pre_p{n}"] = tr.make_preemptible(base, n)
    out["dkp"] = tr.make_dkp_ready(base)
    out["dkp_pre"] = tr.make_dkp_ready(out["pre"])
    for n in intervals:
        # persistent form with polls: no queued blocks left to drain after the flag
        out[f"dkp_pre_p{n}"] = tr.make_dkp_ready(out[f"pre_p{n}"])
    return out


# ----------------------------------------------------------------------------- fixtures


def _buffer_params(func: tirx.PrimFunc) -> list[dict]:
    out = []
    for p in func.params:
        ty = p.ty
        if isinstance(ty, tirx.BufferType):
            out.append(
                {
                    "name": str(p.name),
                    "shape": [int(s) for s in ty.shape],
                    "dtype": str(ty.dtype),
                }
            )
    return out


def build_fixtures(
    outdir: str | Path,
    names: list[str] | None = None,
    intervals: tuple[int, ...] = DEFAULT_POLL_INTERVALS,
    bench: bool = True,
    seed: int = 0,
) -> dict:
    """Write cubins, inputs/references (.npy) and manifest.json under ``outdir``."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    manifest: dict = {
        "format": 1,
        "arch": CUDA_TARGET["arch"],
        "tvm": tvm.__version__,
        "flag_param": tr.FLAG_PARAM,
        "slot_param": tr.SLOT_PARAM,
        "poll_intervals": list(intervals),
        "workloads": {},
    }
    for wl in workloads(CUDA_TARGET, bench=bench):
        if names and wl.name not in names:
            continue
        print(f"[fixtures] {wl.name}", file=sys.stderr, flush=True)
        shapes = [tr.kernel_shape(r).as_json() for r in tr.kernel_roots(wl.func)]
        bufs = _buffer_params(wl.func)
        n_in = len(bufs) - wl.n_outputs
        for i, b in enumerate(bufs):
            b["role"] = "input" if i < n_in else "output"
        entry: dict = {
            "kernels": shapes,
            "buffers": bufs,
            "gpu_test": wl.gpu_test,
            "notes": wl.notes,
            "variants": {},
        }
        if wl.gpu_test and wl.reference is not None:
            inputs = [rng.standard_normal(b["shape"]).astype(b["dtype"]) for b in bufs[:n_in]]
            refs = wl.reference(inputs)
            for b, arr in zip(bufs, list(inputs) + list(refs), strict=True):
                fname = f"{wl.name}.{b['name']}.npy"
                np.save(outdir / fname, np.ascontiguousarray(arr, dtype=b["dtype"]))
                b["file"] = fname
        for vname, vmod in variants(wl.func, intervals).items():
            build = build_cuda(vmod)
            fname = f"{wl.name}.{vname}.cubin"
            (outdir / fname).write_bytes(build.cubin or b"")
            func = vmod[str(wl.func.attrs["global_symbol"])]
            info: dict = {
                "cubin": fname,
                "kernels": [{"name": k.name, "params": k.params} for k in build.kernels],
            }
            if tr.ATTR_PREEMPTIBLE in func.attrs:
                info["preempt"] = tr.preempt_info(func)
            if tr.ATTR_DKP in func.attrs:
                info["dkp"] = tr.dkp_info(func)
            entry["variants"][vname] = info
        manifest["workloads"][wl.name] = entry
    if not names or "dispatch" in names:
        manifest["dispatch"] = _dispatch_fixtures(outdir)
    manifest["rows"] = {"blocks": ROWS_BLOCKS, "threads": ROWS_THREADS, "steps": ROWS_STEPS}
    (outdir / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def _dispatch_fixtures(outdir: Path) -> dict:
    """matmul (first) and conv (second) fused into one dispatcher launch, plain and
    preemptible; the GPU test checks both outputs against the plain kernels'."""
    wl = {w.name: w for w in workloads(CUDA_TARGET)}
    first, second = wl["matmul"].func, wl["conv"].func
    out: dict = {"first": "matmul", "second": "conv", "variants": {}}
    pre = {n: tr.make_preemptible(tvm.IRModule({n: wl[n].func}))[n] for n in ("matmul", "conv")}
    for vname, (a, b) in {
        "plain": (first, second),
        "pre": (pre["matmul"], pre["conv"]),
    }.items():
        merged = tr.merge_dkp_kernels(a, b, name="reef_dispatch")
        build = build_cuda(tvm.IRModule({"reef_dispatch": merged}))
        fname = f"dispatch.{vname}.cubin"
        (outdir / fname).write_bytes(build.cubin or b"")
        out["variants"][vname] = {
            "cubin": fname,
            "kernels": [{"name": k.name, "params": k.params} for k in build.kernels],
            "info": json.loads(str(merged.attrs[tr.ATTR_DISPATCH])),
        }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", nargs="?", default=".carry/transform")
    ap.add_argument("--only", nargs="*", help="workload names (default: all)")
    ap.add_argument("--no-bench", action="store_true", help="skip the large bench kernels")
    ap.add_argument(
        "--intervals",
        default=",".join(map(str, DEFAULT_POLL_INTERVALS)),
        help="poll intervals to build (comma separated)",
    )
    args = ap.parse_args(argv)
    intervals = tuple(int(x) for x in args.intervals.split(",") if x)
    m = build_fixtures(args.outdir, args.only, intervals, bench=not args.no_bench)
    print(f"wrote {len(m['workloads'])} workloads to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
