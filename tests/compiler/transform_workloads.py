"""Workloads and builders for the kernel transformer's tests (reef_rocm.compiler.transform).

* the tests import ``workloads()`` and the ``build_cuda`` / ``build_rocm`` helpers (CPU only:
  code generation, nvcc and ld.lld through reef_rocm.compiler.codegen; no GPU needed);
* tools/build_transform_fixtures.py writes, from the same workloads, the cubins plus
  ``manifest.json`` and reference arrays for the GPU tests
  (tests/compiler/test_transform_gpu.py) and the poll-interval benchmark
  (tools/bench_poll_interval.py), which run on a host without TVM;
* ``build_rocm`` gives HSACO for gfx90a so the ROCm path is linked and inspected.

Everything here needs apache-tvm; nothing in the GPU-side scripts imports this module.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tvm
from tvm import te, tirx, topi
from tvm.s_tir import dlight as dl
from tvm.script import tirx as T

from reef_rocm.compiler import codegen
from reef_rocm.compiler import transform as tr
from reef_rocm.compiler.codegen import compile_cuda, one_linked, rocm_toolchain

if TYPE_CHECKING:
    from build_cache import BuildCache

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


@T.prim_func(s_tir=True)
def window_sum(a: T.Buffer((64, 48), "float32"), out: T.Buffer((64, 40), "float32")):
    """out[r, j] = mean of a[r, j:j+9]: a cross-thread reduction (9 of 32 threads) inside
    a long serial loop over j, as MetaSchedule schedules Inception-v3's average pools.
    Polling the j loop would hide the reduction from LowerCrossThreadReduction."""
    T.func_attr({"global_symbol": "window_sum", "tirx.noalias": True})
    acc = T.sblock_alloc_buffer((64, 40), "float32", scope="shared")
    for r in T.thread_binding(64, thread="blockIdx.x"):
        for j in range(40):
            for t in T.thread_binding(32, thread="threadIdx.x"):
                with T.sblock("acc"):
                    vr = T.axis.spatial(64, r)
                    vj = T.axis.spatial(40, j)
                    vk = T.axis.reduce(9, t)
                    T.where(t < 9)
                    T.reads(a[vr, vj + vk])
                    T.writes(acc[vr, vj])
                    with T.init():
                        acc[vr, vj] = T.float32(0.0)
                    acc[vr, vj] = acc[vr, vj] + a[vr, vj + vk]
        for j0 in range(2):
            for t in T.thread_binding(32, thread="threadIdx.x"):
                with T.sblock("mean"):
                    vr = T.axis.spatial(64, r)
                    vj = T.axis.spatial(40, j0 * 32 + t)
                    T.where(j0 * 32 + t < 40)
                    T.reads(acc[vr, vj])
                    T.writes(out[vr, vj])
                    out[vr, vj] = acc[vr, vj] / T.float32(9.0)


@T.prim_func(s_tir=True)
def pred_tile(a: T.Buffer((8, 80), "float32"), out: T.Buffer((8, 80), "float32")):
    """out[b, j] = a[b, 79 - j] + 1 through a shared tile filled by a predicated,
    vectorized copy (2 x 16 threads x 4 lanes for 80 elements), as MetaSchedule writes
    cooperative fetches. The predicate, not the tile's declared 8 rows, bounds the tile
    to 5 rows: TVM's buffer compaction uses it in the plain kernel, and so must the DKP
    form (a let-bound block index once made it size the tile without it)."""
    T.func_attr({"global_symbol": "pred_tile", "tirx.noalias": True})
    tile = T.sblock_alloc_buffer((8, 8, 16), "float32", scope="shared")
    for b in T.thread_binding(8, thread="blockIdx.x"):
        for i in range(2):
            for t in T.thread_binding(16, thread="threadIdx.x"):
                for v in T.vectorized(4):
                    with T.sblock("load"):
                        vb = T.axis.spatial(8, b)
                        vr = T.axis.spatial(8, ((i * 16 + t) * 4 + v) // 16)
                        vc = T.axis.spatial(16, ((i * 16 + t) * 4 + v) % 16)
                        T.where((i * 16 + t) * 4 + v < 80)
                        T.reads(a[vb, vr * 16 + vc])
                        T.writes(tile[vb, vr, vc])
                        tile[vb, vr, vc] = a[vb, vr * 16 + vc]
        for i in range(5):
            for t in T.thread_binding(16, thread="threadIdx.x"):
                with T.sblock("store"):
                    vb = T.axis.spatial(8, b)
                    vj = T.axis.spatial(80, i * 16 + t)
                    T.reads(tile[vb, (79 - vj) // 16, (79 - vj) % 16])
                    T.writes(out[vb, vj])
                    out[vb, vj] = tile[vb, (79 - vj) // 16, (79 - vj) % 16] + T.float32(1.0)


def _np_window_mean(a: np.ndarray) -> np.ndarray:
    return (sum(a[:, k : k + 40] for k in range(9)) / np.float32(9.0)).astype(np.float32)


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
        Workload("window_sum", window_sum, reference=lambda x: [_np_window_mean(x[0])]),
        Workload("pred_tile", pred_tile, reference=lambda x: [x[0][:, ::-1] + 1]),
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


# ----------------------------------------------------------------------------- cached builds

_cache: BuildCache | None = None  # set by tests/compiler/conftest.py for the session


def use_build_cache(cache: BuildCache | None) -> None:
    """Keep builds in ``cache`` (None: build every time, as the fixture tool does)."""
    global _cache
    _cache = cache


def _toolchain_key(*tools: str) -> list[str]:
    """What a build's output depends on besides its input: TVM, the toolchain code, tools."""
    from build_cache import file_digest, tool_version

    return [str(tvm.__version__), file_digest(codegen.__file__)] + [tool_version(t) for t in tools]


def _cached(kind: str, parts: Callable[[], list[str]], build, names: tuple[str, ...]):
    """``build()`` -> one bytes value per name, through the session's cache if there is one
    (``parts()`` lists what the key hashes)."""
    if _cache is None:
        return list(build())

    def fill(d: Path) -> None:
        for name, data in zip(names, build(), strict=True):
            (d / name).write_bytes(data)

    d = _cache.entry(_cache.key(kind, *parts()), fill)
    return [(d / name).read_bytes() for name in names]


@dataclass
class CudaBuild:
    source: str
    kernels: list[KernelSig]
    cubin: bytes | None = None


def _lower(mod: tvm.IRModule, target: dict):
    """The compiler's own lowering (reef_rocm.compiler.kernels): the same device code as
    ``tvm.compile``, without building the host side (a third of the time on zoo models)."""
    from reef_rocm.compiler.kernels import lower_kernels

    return lower_kernels(mod, tvm.target.Target(target))


def cuda_source(mod: tvm.IRModule, arch: str = "sm_90") -> str:
    """TVM's CUDA source for ``mod`` (cached by the printed TIR)."""

    def build() -> list[bytes]:
        dev = _lower(mod, {"kind": "cuda", "arch": arch})
        return [codegen.codegen(dev.device_mod, dev.target, arch, nvcc=False).source.encode()]

    def parts() -> list[str]:
        return [arch, mod.script(), *_toolchain_key()]

    (src,) = _cached("cuda-source", parts, build, ("k.cu",))
    return src.decode()


def cuda_cubin(source: str, arch: str = "sm_90") -> bytes:
    """nvcc's cubin for ``source`` (reef_rocm.compiler.codegen.compile_cuda, cached)."""

    def parts() -> list[str]:
        return [arch, source, *_toolchain_key(codegen.nvcc_path())]

    (out,) = _cached("cubin", parts, lambda: [compile_cuda(source, arch)], ("k.cubin",))
    return out


def build_cuda(mod: tvm.IRModule, arch: str = "sm_90", cubin: bool = True) -> CudaBuild:
    """CUDA source from TVM and, with ``cubin``, nvcc's cubin for ``arch``."""
    source = cuda_source(mod, arch)
    out = CudaBuild(source, parse_cuda_kernels(source))
    if cubin:
        out.cubin = cuda_cubin(source, arch)
    return out


@dataclass
class RocmBuild:
    asm: str  # AMDGPU assembly
    llvm_ir: str  # optimised LLVM IR
    hsaco: bytes


def build_rocm(mod: tvm.IRModule, mcpu: str = "gfx90a") -> RocmBuild:
    """AMDGPU assembly, LLVM IR and the HSACO linked by the compiler's own toolchain."""

    def build() -> list[bytes]:
        from tvm.tirx.build import codegen_build

        dev = _lower(mod, {"kind": "rocm", "mcpu": mcpu})
        with rocm_toolchain(mcpu) as linked:
            rt = codegen_build(dev.device_mod, dev.target)
        asm, ir = rt.inspect_source("asm"), rt.inspect_source("llvm")
        return [asm.encode(), ir.encode(), one_linked(linked)]

    def parts() -> list[str]:
        bitcode = json.dumps(codegen.rocm_bitcode(mcpu))
        return [mcpu, mod.script(), bitcode, *_toolchain_key(codegen.lld_path())]

    asm, ir, hsaco = _cached("rocm", parts, build, ("k.s", "k.ll", "k.hsaco"))
    return RocmBuild(asm.decode(), ir.decode(), hsaco)


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
