"""The kernel transformer (reef_rocm.compiler.transform) without a GPU: structure of the
rewritten TIR, the generated CUDA source (compiled with nvcc for sm_90) and the AMDGPU
assembly / HSACO for gfx90a. Behaviour on a GPU: tests/compiler/test_transform_gpu.py."""

from __future__ import annotations

import functools
import json
import re
import shutil
import subprocess

import pytest

tvm = pytest.importorskip("tvm")

import transform_workloads as fx  # noqa: E402
import tvm_ffi  # noqa: E402
from tvm import s_tir, tirx  # noqa: E402

from reef_rocm.compiler import transform as tr  # noqa: E402
from reef_rocm.compiler.codegen import find_nvcc, have_rocm_toolchain  # noqa: E402

HAVE_NVCC = find_nvcc() is not None
HAVE_ROCM = have_rocm_toolchain()
needs_nvcc = pytest.mark.skipif(not HAVE_NVCC, reason="nvcc not installed")
needs_rocm = pytest.mark.skipif(not HAVE_ROCM, reason="ld.lld / rocm-device-libs not installed")

ALL = [
    "matmul", "conv", "softmax", "ew2d", "ew3d", "one_block", "window_sum", "pred_tile", "rows",
    "two_kernels",
]  # fmt: skip
FLAG_READ = "__ldcv((&(reef_preempt_flag_ptr[0])))"
SLOT_ADD = "tvm_builtin_cuda_atomic_add((&(reef_completion_slot_ptr[0])), (uint)1)"


@pytest.fixture(scope="module")
def wls() -> dict[str, fx.Workload]:
    return {w.name: w for w in fx.workloads(fx.CUDA_TARGET)}


@pytest.fixture(scope="module")
def wls_rocm() -> dict[str, fx.Workload]:
    return {w.name: w for w in fx.workloads(fx.ROCM_TARGET)}


def _mod(w: fx.Workload) -> tvm.IRModule:
    return tvm.IRModule({w.name: w.func})


def _shuffles(source: str) -> int:
    """Warp shuffles in kernel code (not the macro preamble): lowered allreduces."""
    return len(re.findall(r"=\s*__shfl\w*\(", source))


def _kernel_sources(source: str) -> dict[str, str]:
    """Kernel name -> its body text in TVM's CUDA source."""
    out = {}
    for m in re.finditer(r'extern "C" __global__ void[^{;]*?(\w+)\([^)]*\)\s*\{', source):
        depth, i = 1, m.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(source[i], 0)
            i += 1
        out[m.group(1)] = source[m.end() : i]
    return out


# ------------------------------------------------------------------ TIR structure


def test_params_appended_and_attrs(wls):
    for name in ALL:
        f = wls[name].func
        p = tr.make_preemptible(_mod(wls[name]))[name]
        assert len(p.params) == len(f.params) + 2
        flag, slot = p.params[-2:]
        assert (flag.name, slot.name) == (tr.FLAG_PARAM, tr.SLOT_PARAM)
        assert str(flag.ty.dtype) == "int32" and [int(s) for s in flag.ty.shape] == [1]
        assert str(slot.ty.dtype) == "uint32" and [int(s) for s in slot.ty.shape] == [1]
        info = tr.preempt_info(p)
        assert info["poll_interval"] is None
        assert info["kernels"] == (2 if name == "two_kernels" else 1)


def test_input_module_not_modified(wls):
    mod = _mod(wls["matmul"])
    before = mod["matmul"].script()
    tr.make_preemptible(mod, 4)
    tr.make_dkp_ready(mod)
    assert mod["matmul"].script() == before


def test_functions_without_kernels_untouched():
    te = tvm.te
    a = te.placeholder((16,), "float32", name="a")
    b = te.compute((16,), lambda i: a[i] + 1, name="b")
    host = te.create_prim_func([a, b]).with_attr("global_symbol", "host_only")
    mod = tvm.IRModule({"host_only": host})
    assert tr.make_preemptible(mod).same_as(mod)
    assert tr.make_dkp_ready(mod).same_as(mod)
    # and it still builds and runs on the CPU
    ex = tvm.compile(mod, target="llvm")
    import numpy as np

    x = tvm.runtime.tensor(np.arange(16, dtype="float32"))
    y = tvm.runtime.tensor(np.zeros(16, dtype="float32"))
    ex["host_only"](x, y)
    assert (y.numpy() == np.arange(16) + 1).all()


def test_relax_functions_untouched():
    from tvm.relax.frontend import nn

    class Net(nn.Module):
        def __init__(self) -> None:
            self.fc = nn.Linear(64, 32)

        def forward(self, x):
            return nn.softmax(self.fc(x), axis=-1)

    mod, _ = Net().export_tvm(spec={"forward": {"x": nn.spec.Tensor((2, 64), "float32")}})
    target = tvm.target.Target(fx.CUDA_TARGET)
    from tvm.relax.backend.cuda import pipeline as cp

    with target:
        mod = tvm.transform.Sequential(cp.legalize_passes(target))(mod)
    out = tr.make_preemptible(mod, 4)
    for gv, f in mod.functions.items():
        if isinstance(f, tvm.relax.Function):
            assert out[gv.name_hint].same_as(f)
        else:
            assert tr.FLAG_PARAM in [p.name for p in out[gv.name_hint].params]


def test_poll_sites_follow_interval(wls):
    # rows: one 65536-trip loop per thread; matmul: a 32-trip K loop (512 / 16)
    for n, expect in ((None, 0), (64, 1), (16, 1), (4, 1), (1, 1)):
        info = tr.preempt_info(tr.make_preemptible(_mod(wls["rows"]), n)["rows"])
        assert info["poll_loops"] == [expect], n
    polls = {
        n: tr.preempt_info(tr.make_preemptible(_mod(wls["matmul"]), n)["matmul"])["poll_loops"]
        for n in (64, 32, 16)
    }
    assert polls == {64: [0], 32: [0], 16: [1]}


def test_bad_interval_and_double_application(wls):
    mod = _mod(wls["ew2d"])
    for bad in (0, -3, 2.5):
        with pytest.raises(ValueError):
            tr.make_preemptible(mod, bad)
    with pytest.raises(ValueError):
        tr.make_preemptible(tr.make_preemptible(mod))
    with pytest.raises(ValueError):
        tr.make_dkp_ready(tr.make_dkp_ready(mod))


def test_no_poll_below_cross_thread_reduction(wls):
    # softmax's reduction loops run under the threadIdx loop they reduce over; polls there
    # would hide the reduction from LowerCrossThreadReduction
    p = tr.make_preemptible(_mod(wls["softmax"]), 1)["softmax"]
    assert tr.preempt_info(p)["poll_loops"] == [1]  # only the normalisation loop


def test_no_poll_around_cross_thread_reduction(wls, monkeypatch):
    """A long serial loop around a cross-thread reduction is not polled: chunking it hid
    the reduction from LowerCrossThreadReduction, which then left it unlowered (racy)."""
    from reef_rocm.compiler.transform import preemptible
    from reef_rocm.errors import UnsupportedError

    mod = _mod(wls["window_sum"])
    plain = fx.build_cuda(mod, cubin=False).source
    for every in (16, 4):
        p = tr.make_preemptible(mod, every)
        assert tr.preempt_info(p["window_sum"])["poll_loops"] == [0]
        assert _shuffles(fx.build_cuda(p, cubin=False).source) == _shuffles(plain) > 0
        d = tr.make_dkp_ready(p)
        assert _shuffles(fx.build_cuda(d, cubin=False).source) == _shuffles(plain)
    # negative control: poll that loop anyway, and the rewrite's own check refuses it
    # (called directly: through the module pass, TVM's FFI turns it into a RuntimeError)
    # (its tile is also read after the loop, which _uses_outer_tile refuses too: off as well)
    monkeypatch.setattr(preemptible, "_holds_cross_thread_reduction", lambda stmt: False)
    monkeypatch.setattr(preemptible, "_uses_outer_tile", lambda loop, kernel_tiles: False)
    with pytest.raises(UnsupportedError, match="lowers 0 of its 1 cross-thread reductions"):
        preemptible.preemptible_func(mod["window_sum"], 16)


def _compacted_shared(mod: tvm.IRModule) -> dict[str, tuple[int, ...]]:
    """Shared buffer -> its shape after TVM's CompactBufferAllocation in the CUDA pipeline."""
    from reef_rocm.compiler.kernels import _strip

    mod = tvm.tirx.transform.BindTarget(tvm.target.Target(fx.CUDA_TARGET).with_host("llvm"))(
        _strip(mod)
    )
    got: dict[str, tuple[int, ...]] = {}

    @tvm.instrument.pass_instrument
    class AfterCompaction:
        def run_after_pass(self, m: tvm.IRModule, info) -> None:
            if info.name.endswith("CompactBufferAllocation"):
                for f in m.functions.values():

                    def visit(b) -> None:
                        for buf in b.alloc_buffers:
                            if buf.scope().startswith("shared"):
                                got[buf.name] = tuple(int(d) for d in buf.shape)

                    tvm_ffi.structural_walk(f.body, (tvm.s_tir.SBlock, visit), order="pre")

    pipeline, _, _ = tvm.tirx.get_tir_pipeline("default")
    with tvm.transform.PassContext(instruments=[AfterCompaction()]):
        pipeline(mod)
    return got


@pytest.mark.parametrize("name", ["pred_tile", "matmul", "conv", "softmax"])
def test_variants_compact_shared_tiles_as_plain(wls, name):
    """Every variant's shared tiles compact to the plain kernel's shapes. With a let-bound
    block index, CompactBufferAllocation ignored pred_tile's copy predicate in the DKP form
    (8 rows, not 5); in a tuned Inception-v3 conv the larger tile changed a software
    pipeline's stage stride and its float4 accesses faulted ("misaligned address")."""
    mod = _mod(wls[name])
    plain = _compacted_shared(mod)
    assert plain, "the workload has shared tiles"
    if name == "pred_tile":
        assert plain == {"tile": (1, 5, 16)}  # the predicate bounds it, not its 8 rows
    for vname, vmod in fx.variants(wls[name].func, intervals=(16, 1)).items():
        got = {k: v for k, v in _compacted_shared(vmod).items() if not k.startswith("reef_")}
        assert got == plain, vname


def test_dkp_params_and_info(wls):
    d = tr.make_dkp_ready(_mod(wls["ew3d"]))["ew3d"]
    names = [p.name for p in d.params]
    assert names[-3:] == [tr.DKP_BEGIN, tr.DKP_COUNT, tr.DKP_GRID]
    assert all(str(p.ty) == "int32" for p in d.params[-3:])
    (info,) = tr.dkp_info(d)
    assert info["num_vblocks"] == 48 and info["grid"] == [2, 6, 4] and info["block"][0] == 128
    two = tr.make_dkp_ready(_mod(wls["two_kernels"]))["two_kernels"]
    assert [p.name for p in two.params][-6:] == [
        "reef_vblock_begin", "reef_vblock_count", "reef_grid_blocks",
        "reef_vblock_begin_1", "reef_vblock_count_1", "reef_grid_blocks_1",
    ]  # fmt: skip
    assert [i["num_vblocks"] for i in tr.dkp_info(two)] == [8, 4]


def test_dkp_body_has_no_block_index(wls):
    d = tr.make_dkp_ready(_mod(wls["ew2d"]))["ew2d"]
    tags = []
    fx_walk = tr._walk

    def visit(s):
        tag = tr._thread_tag(s)
        if tag:
            tags.append((tag, s.extent))

    fx_walk(d.body, visit)
    blocks = [(t, e) for t, e in tags if t.startswith("blockIdx")]
    assert len(blocks) == 1 and blocks[0][0] == "blockIdx.x"
    assert isinstance(blocks[0][1], tirx.Var) and blocks[0][1].name == tr.DKP_GRID


# ------------------------------------------------------------------ CUDA source


@pytest.mark.parametrize("name", ALL)
def test_cuda_preemptible_source(wls, name):
    src = fx.build_cuda(tr.make_preemptible(_mod(wls[name])), cubin=False).source
    plain = fx.build_cuda(_mod(wls[name]), cubin=False).source
    kernels = _kernel_sources(src)
    assert len(kernels) == len(_kernel_sources(plain)) >= 1
    for kname, body in kernels.items():
        sig = next(k for k in fx.parse_cuda_kernels(src) if k.name == kname)
        assert {p["name"] for p in sig.params} >= {tr.FLAG_PARAM, tr.SLOT_PARAM}
        # block start: thread 0 reads the flag before anything else, then a barrier
        first = body.index(FLAG_READ)
        assert body.index("__syncthreads();", first) < body.index("reef_stop =", first)
        for store in re.finditer(r"_ptr\[[^\]]*\] = |\*\(float\d?\*\)\(\w+_ptr", body):
            assert store.start() > first or "reef_stop_" in body[store.start() - 20 : store.end()]
        # exactly one completion count, after a barrier, by thread 0 only
        assert body.count(SLOT_ADD) == 1
        tail = body[body.rindex("__syncthreads();") :]
        assert SLOT_ADD in tail and "threadIdx.x) == 0" in tail
        assert body.count(FLAG_READ) == 1  # no polls without an interval
    # warp-level reductions survive unchanged
    assert _shuffles(src) == _shuffles(plain)


@pytest.mark.parametrize("name,n", [("rows", 16), ("matmul", 4), ("conv", 4), ("rows", 1)])
def test_cuda_poll_points(wls, name, n):
    mod = tr.make_preemptible(_mod(wls[name]), n)
    polls = sum(tr.preempt_info(mod[name])["poll_loops"])
    src = fx.build_cuda(mod, cubin=False).source
    (body,) = _kernel_sources(src).values()
    assert polls >= 1
    assert body.count(FLAG_READ) == 1 + polls
    # the polled loop runs in chunks of n iterations, polling before every chunk but the
    # first; a stopped block skips whole chunks
    assert body.count("for (int reef_chunk") == polls
    assert "(0 < reef_chunk)" in body
    # a barrier follows every flag read; polls are also preceded by one (only the
    # thread-0 condition in between)
    lines = [ln.strip() for ln in body.splitlines()]
    reads = [i for i, ln in enumerate(lines) if FLAG_READ in ln]
    assert len(reads) == 1 + polls
    for i in reads:
        j = i - 1
        while lines[j].startswith("if (") and lines[j].endswith("{"):
            j -= 1
        k = i + 1
        while lines[k] == "}":
            k += 1
        assert lines[k] == "__syncthreads();", (i, k)
        assert i == reads[0] or lines[j] == "__syncthreads();", (i, j)


@needs_nvcc
@pytest.mark.parametrize("name", ALL)
def test_cuda_variants_compile_with_nvcc(wls, name):
    for vname, vmod in fx.variants(wls[name].func, intervals=(4,)).items():
        build = fx.build_cuda(vmod, cubin=True)
        assert build.cubin and build.cubin[:4] == b"\x7fELF", vname


# ------------------------------------------------------------------ DKP source


def test_cuda_dkp_source(wls):
    src = fx.build_cuda(tr.make_dkp_ready(_mod(wls["softmax"])), cubin=False).source
    plain = fx.build_cuda(_mod(wls["softmax"]), cubin=False).source
    (sig,) = fx.parse_cuda_kernels(src)
    scalars = [p["name"] for p in sig.params if p["kind"] == "scalar"]
    assert sorted(scalars) == sorted([tr.DKP_BEGIN, tr.DKP_COUNT, tr.DKP_GRID])
    (body,) = _kernel_sources(src).values()
    assert "for (int reef_vblock_iter = 0;" in body
    # the cross-thread reductions were lowered (not left as racy shared-memory updates)
    assert _shuffles(src) == _shuffles(plain) > 0


# ------------------------------------------------------------------ ROCm


@needs_rocm
@pytest.mark.parametrize("name", ["matmul", "softmax", "ew2d", "one_block", "two_kernels"])
def test_rocm_variants_link(wls_rocm, name, tmp_path):
    w = wls_rocm[name]
    plain = fx.build_rocm(_mod(w))
    for vname in ("pre", "pre_p4", "dkp", "dkp_pre"):
        vmod = fx.variants(w.func, intervals=(4,))[vname]
        b = fx.build_rocm(vmod)
        assert b.hsaco[:4] == b"\x7fELF"
        nk = 2 if name == "two_kernels" else 1
        assert len(re.findall(r"^\s*\.amdhsa_kernel\s+\w+", b.asm, re.M)) == nk
        if vname != "dkp":
            # coherent flag read (LLVM turns atomic_add(flag, 0) into an atomic load) and
            # one completion atomic per kernel
            assert b.asm.count("global_atomic_add") == nk, vname
            assert len(re.findall(r"global_load_dword\s.*\bglc\b", b.asm)) >= nk, vname
            assert "s_barrier" in b.asm
            ir = b.llvm_ir
            assert "reef_preempt_flag" in ir and ("atomicrmw" in ir or "load atomic" in ir)
        # warp-level reductions survive (DPP / ds_swizzle / permute on AMDGPU)
        red = r"ds_bpermute|ds_swizzle|row_shr|row_bcast|quad_perm|ds_permute"
        assert len(re.findall(red, b.asm)) == len(re.findall(red, plain.asm)), vname
        hsaco = tmp_path / f"{name}.{vname}.hsaco"
        hsaco.write_bytes(b.hsaco)
        readelf = shutil.which("llvm-readelf-16") or shutil.which("llvm-readelf")
        if readelf and vname.startswith("pre"):
            notes = subprocess.run([readelf, "--notes", str(hsaco)], capture_output=True, text=True)
            assert "reef_completion_slot" in notes.stdout


# ------------------------------------------------------------------ fixtures


def test_parse_cuda_kernels():
    src = (
        'extern "C" __global__ void __launch_bounds__(128) k_kernel(float* __restrict__ A_ptr, '
        "int* __restrict__ reef_preempt_flag_ptr, int reef_grid_blocks) {\n}\n"
    )
    (k,) = fx.parse_cuda_kernels(src)
    assert k.name == "k_kernel" and k.max_threads == 128
    assert [(p["name"], p["kind"]) for p in k.params] == [
        ("A", "buffer"), ("reef_preempt_flag", "buffer"), ("reef_grid_blocks", "scalar"),
    ]  # fmt: skip


@needs_nvcc
def test_fixture_manifest(tmp_path, fixture_builder):
    m = fixture_builder.build_fixtures(tmp_path, names=["ew2d"], intervals=(4,), bench=False)
    w = m["workloads"]["ew2d"]
    assert set(w["variants"]) == {"plain", "pre", "pre_p4", "dkp", "dkp_pre", "dkp_pre_p4"}
    assert w["kernels"] == [{"grid": [5, 6, 1], "block": [32, 16, 1]}]
    for v in w["variants"].values():
        assert (tmp_path / v["cubin"]).stat().st_size > 0
    assert [b["role"] for b in w["buffers"]] == ["input", "output"]
    assert json.loads((tmp_path / "manifest.json").read_text())["workloads"]["ew2d"]


# ------------------------------------------------------------------ zoo


@functools.lru_cache(maxsize=4)  # the zoo tests ask for tiny_cnn and resnet18 more than once
def _zoo_prims(model: str, target_kind: str) -> tvm.IRModule:
    """The zoo model's scheduled PrimFuncs, for ``target_kind`` "cuda" or "rocm"."""
    from reef_rocm.compiler.graph import relax_passes
    from reef_rocm.compiler.zoo import zoo_model

    mod, _, _ = zoo_model(model).build()
    t = tvm.target.Target(fx.CUDA_TARGET if target_kind == "cuda" else fx.ROCM_TARGET)
    with t:
        lowered = tvm.transform.Sequential(relax_passes(t))(mod)
    return tvm.IRModule(
        {
            gv: f.with_attr("global_symbol", gv.name_hint)
            for gv, f in lowered.functions.items()
            if isinstance(f, tirx.PrimFunc)
        }
    )


# Barriers the transform itself adds to every kernel (at least; polls add more): the
# preemptible variant's flag barrier and end barrier, the DKP loop's barrier between two
# virtual blocks.
OWN_BARRIERS = {"pre": 2, "dkp": 1, "dkp_pre": 3}


def _zoo_variants(prims: tvm.IRModule) -> dict[str, tvm.IRModule]:
    return {
        "pre": tr.make_preemptible(prims, 16),
        "dkp": tr.make_dkp_ready(prims),
        "dkp_pre": tr.make_dkp_ready(tr.make_preemptible(prims)),
    }


def _check_barriers(plain: dict[str, int], variants: dict[str, dict[str, int]]) -> None:
    """Every variant of every kernel has the plain kernel's barriers plus its own.

    TVM's ThreadSync plans the body's barriers again for each variant; a rewrite that
    changes what it sees (e.g. the nesting order of the thread launches) can make it drop
    one the plain kernel has (tiny_cnn's fused_NT_matmul_add2 did: wrong output on GPU).
    """
    assert plain
    for vname, counts in variants.items():
        assert set(counts) == set(plain), vname
        low = {k: n + OWN_BARRIERS[vname] for k, n in plain.items()}
        missing = {k: (counts[k], low[k]) for k in plain if counts[k] < low[k]}
        assert not missing, (vname, missing)


def _check_zoo(model: str, rocm: bool) -> None:
    for target in [fx.CUDA_TARGET] + ([fx.ROCM_TARGET] if rocm else []):
        prims = _zoo_prims(model, target["kind"])
        vmods = _zoo_variants(prims)
        pre, dkp = vmods["pre"], vmods["dkp"]
        for gv, f in prims.functions.items():
            if tr._count_kernels(f):
                assert tr.FLAG_PARAM in [p.name for p in pre[gv.name_hint].params]
                assert tr.ATTR_DKP in dkp[gv.name_hint].attrs
        if target["kind"] == "cuda":
            plain = fx.build_cuda(prims, cubin=False).source
            n_plain, shfl = len(fx.parse_cuda_kernels(plain)), _shuffles(plain)
            srcs = {v: fx.build_cuda(m, cubin=False).source for v, m in vmods.items()}
            for src in srcs.values():
                assert len(fx.parse_cuda_kernels(src)) == n_plain and _shuffles(src) == shfl
            _check_barriers(
                fx.cuda_barriers(plain), {v: fx.cuda_barriers(s) for v, s in srcs.items()}
            )
            if HAVE_NVCC:
                fx.cuda_cubin(srcs["pre"], target["arch"])
                fx.cuda_cubin(srcs["dkp"], target["arch"])
        else:
            builds = {v: fx.build_rocm(m) for v, m in vmods.items()}
            for b in builds.values():
                assert b.hsaco[:4] == b"\x7fELF"
            _check_barriers(
                fx.rocm_barriers(fx.build_rocm(prims).asm),
                {v: fx.rocm_barriers(b.asm) for v, b in builds.items()},
            )


def _barrier_between(body: str, first: str, then: str) -> bool:
    """Is there a ``__syncthreads()`` between the first match of regex ``first`` in
    ``body`` and the next match of regex ``then`` after it?"""
    m = re.search(first, body)
    assert m, first
    n = re.compile(then).search(body, m.end())
    assert n, then
    return "__syncthreads()" in body[m.end() : n.start()]


def test_zoo_tiny_cnn_shared_store_barrier():
    """The regression seen on an H100: in tiny_cnn's fc kernel the threads with
    threadIdx.y < 1 stage lv8 in shared memory and all threads read it; the preemptible
    variant had lost the barrier between the two (TVM's ThreadSync takes same-index
    accesses as race-free when the index uses the innermost launched thread index, and
    the transform's flag-read loops had swapped the launch order of threadIdx.x/y)."""
    prims = _zoo_prims("tiny_cnn", "cuda")
    mods = {"plain": prims, **_zoo_variants(prims)}
    for vname, mod in mods.items():
        bodies = fx.cuda_kernel_bodies(fx.build_cuda(mod, cubin=False).source)
        body = bodies["fused_NT_matmul_add2_kernel"]
        store = r"lv8_shared_ptr\[[^;]*\] = lv8_ptr\["
        read = r"=[^;]*lv8_shared_ptr\["
        assert _barrier_between(body, store, read), vname


@pytest.mark.parametrize("model", ["tiny_cnn", "resnet18"])
def test_zoo_barriers_kept(model):
    """CUDA barriers per kernel of the fast zoo models (test_zoo_models covers the rest,
    and ROCm where the toolchain is installed)."""
    prims = _zoo_prims(model, "cuda")
    plain = fx.cuda_barriers(fx.build_cuda(prims, cubin=False).source)
    _check_barriers(
        plain,
        {
            v: fx.cuda_barriers(fx.build_cuda(m, cubin=False).source)
            for v, m in _zoo_variants(prims).items()
        },
    )


def test_zoo_tiny_cnn():
    _check_zoo("tiny_cnn", rocm=HAVE_ROCM)


@pytest.mark.slow
@pytest.mark.parametrize(
    "model", ["resnet18", "vgg19", "resnet152", "densenet201", "inception_v3", "distilbert"]
)
def test_zoo_models(model):
    _check_zoo(model, rocm=HAVE_ROCM)


def test_sblock_realize_root_is_kept(wls):
    p = tr.make_preemptible(_mod(wls["matmul"]))["matmul"]
    assert isinstance(p.body, s_tir.SBlockRealize)
    assert any(b.name == "reef_stop_0" for b in p.body.block.alloc_buffers)


# ------------------------------------------------------------------ dispatcher


def test_merge_dkp_kernels(wls):
    m = tr.merge_dkp_kernels(wls["matmul"].func, wls["conv"].func)
    names = [p.name for p in m.params]
    assert names[-6:] == [
        "reef_split_blocks", "reef_grid_blocks", "reef_a_vblock_begin", "reef_a_vblock_count",
        "reef_b_vblock_begin", "reef_b_vblock_count",
    ]  # fmt: skip
    info = json.loads(str(m.attrs[tr.ATTR_DISPATCH]))
    assert info["first"]["vblocks"] == 48 and info["second"]["vblocks"] == 49
    src = fx.build_cuda(tvm.IRModule({"reef_dispatch": m}), cubin=HAVE_NVCC)
    assert len(src.kernels) == 1
    # a kernel merged with itself (fresh variables), reductions intact
    same = tr.merge_dkp_kernels(wls["softmax"].func, wls["softmax"].func)
    s2 = fx.build_cuda(tvm.IRModule({"d": same.with_attr("global_symbol", "d")}), cubin=False)
    plain = fx.build_cuda(_mod(wls["softmax"]), cubin=False).source
    assert _shuffles(s2.source) == 2 * _shuffles(plain)
    with pytest.raises(ValueError, match="block shapes differ"):
        tr.merge_dkp_kernels(wls["matmul"].func, wls["softmax"].func)
    with pytest.raises(ValueError, match="exactly one kernel"):
        tr.merge_dkp_kernels(wls["two_kernels"].func, wls["matmul"].func)


def test_merge_preemptible_kernels(wls):
    pre = {n: tr.make_preemptible(_mod(wls[n]))[n] for n in ("matmul", "conv")}
    m = tr.merge_dkp_kernels(pre["matmul"], pre["conv"])
    build = fx.build_cuda(tvm.IRModule({"reef_dispatch": m}), cubin=HAVE_NVCC)
    (k,) = build.kernels
    flags = [p for p in k.params if p["name"] == tr.FLAG_PARAM]
    slots = [p for p in k.params if p["name"] == tr.SLOT_PARAM]
    assert sorted(p["dup"] for p in flags) == [0, 1] and sorted(p["dup"] for p in slots) == [0, 1]
    (body,) = _kernel_sources(build.source).values()
    assert body.count("tvm_builtin_cuda_atomic_add(") == 2  # one count per kernel
    assert body.count("__ldcv(") == 2  # one flag read per kernel


# ------------------------------------------------------------------ substrate (issue 9)

FENCE = "tvm_builtin_cuda_thread_fence();"


@pytest.mark.parametrize("name", ["ew2d", "matmul", "two_kernels"])
def test_cuda_completion_count_is_fenced(wls, name):
    """Every thread fences its stores before the final barrier, and thread 0 fences again
    before it counts: a reader that sees the count sees the block's outputs."""
    src = fx.build_cuda(tr.make_preemptible(_mod(wls[name]), 4), cubin=False).source
    assert "__threadfence();" in src  # what the fence op is on CUDA
    for body in _kernel_sources(src).values():
        end = body.rindex("__syncthreads();")
        last_store = max(m.start() for m in re.finditer(r"\w+_ptr\[[^\]]*\] = ", body[:end]))
        fence = body.rindex(FENCE, 0, end)
        assert last_store < fence < end
        # the one after the barrier, by thread 0, right before the atomic
        tail = body[end:]
        assert tail.index(FENCE) < tail.index(SLOT_ADD)
        assert body.count(FENCE) == 2


@needs_rocm
@pytest.mark.parametrize("name", ["ew2d", "rows"])
def test_rocm_completion_count_is_fenced(wls_rocm, name):
    """gfx90a: store ... s_waitcnt vmcnt(0) ... s_barrier ... global_atomic_add (before the
    fence the output had store -> s_barrier -> atomic with no vmcnt wait)."""
    b = fx.build_rocm(tr.make_preemptible(_mod(wls_rocm[name]), 16))
    lines = [ln.strip() for ln in b.asm.splitlines()]
    atomic = max(i for i, ln in enumerate(lines) if ln.startswith("global_atomic_add"))
    barrier = max(i for i in range(atomic) if lines[i].startswith("s_barrier"))
    store = max(i for i in range(barrier) if lines[i].startswith("global_store"))
    waits = [i for i in range(store, barrier) if re.match(r"s_waitcnt .*vmcnt\(0\)", lines[i])]
    assert waits, lines[store : barrier + 1]
    assert any(re.match(r"s_waitcnt .*vmcnt\(0\)", lines[i]) for i in range(barrier, atomic))
    # the fence itself: every counter waited for (vmcnt, expcnt, lgkmcnt)
    assert "s_waitcnt vmcnt(0) expcnt(0) lgkmcnt(0)" in b.asm


def test_preemptible_of_dkp_is_refused(wls):
    mod = _mod(wls["ew2d"])
    with pytest.raises(ValueError, match="make_preemptible first"):
        tr.make_preemptible(tr.make_dkp_ready(mod))
    merged = tr.merge_dkp_kernels(wls["matmul"].func, wls["conv"].func)
    with pytest.raises(ValueError, match="DKP-ready"):
        tr.make_preemptible(tvm.IRModule({"reef_dispatch": merged}))


def test_poll_every_parameter(wls):
    p = tr.make_preemptible(_mod(wls["rows"]), 16)["rows"]
    assert [x.name for x in p.params][-3:] == [tr.FLAG_PARAM, tr.SLOT_PARAM, tr.POLL_PARAM]
    assert str(p.params[-1].ty) == "int32"
    info = tr.preempt_info(p)
    # rows: one 65536-trip loop per thread, the block's only loop
    assert info["poll_params"] == [tr.POLL_PARAM] and info["loop_trips"] == [65536]
    assert info["poll_interval"] == 16
    # no pollable loop, no parameter: block-start check only
    e = tr.make_preemptible(_mod(wls["ew2d"]), 16)["ew2d"]
    assert tr.preempt_info(e)["poll_params"] == [None]
    assert [x.name for x in e.params][-2:] == [tr.FLAG_PARAM, tr.SLOT_PARAM]
    # matmul: a 32-trip K loop below short outer loops
    m = tr.preempt_info(tr.make_preemptible(_mod(wls["matmul"]), 4)["matmul"])
    assert m["poll_params"] == [tr.POLL_PARAM] and m["loop_trips"][0] % 32 == 0


def test_poll_every_is_a_cuda_launch_argument(wls):
    src = fx.build_cuda(tr.make_preemptible(_mod(wls["rows"]), 16), cubin=HAVE_NVCC).source
    (sig,) = fx.parse_cuda_kernels(src)
    assert {"name": tr.POLL_PARAM, "ctype": "int", "kind": "scalar"} in sig.params
    (body,) = _kernel_sources(src).values()
    # the chunk length comes from the argument; no compile-time chunk is left
    (inner,) = re.findall(r"for \(int k = 0; k < ([^;]*);", body)
    assert "reef_poll_every" in inner and "16" not in inner


def test_preemptible_dkp_variant(wls):
    """dkp_be: DKP-ready kernels with the flag, the slot and the poll interval; flag check
    and count per virtual block (inside the virtual-block loop)."""
    two = tr.make_preemptible_dkp(_mod(wls["two_kernels"]), 4)["two_kernels"]
    names = [p.name for p in two.params]
    assert tr.FLAG_PARAM in names and tr.SLOT_PARAM in names
    assert names[-6:] == [
        "reef_vblock_begin", "reef_vblock_count", "reef_grid_blocks",
        "reef_vblock_begin_1", "reef_vblock_count_1", "reef_grid_blocks_1",
    ]  # fmt: skip
    assert tr.ATTR_PREEMPTIBLE in two.attrs and tr.ATTR_DKP in two.attrs
    rows = tr.make_preemptible_dkp(_mod(wls["rows"]), 16)
    src = fx.build_cuda(rows, cubin=HAVE_NVCC).source
    (body,) = _kernel_sources(src).values()
    (sig,) = fx.parse_cuda_kernels(src)
    assert tr.POLL_PARAM in {p["name"] for p in sig.params}
    loop = body.index("for (int reef_vblock_iter")
    assert loop < body.index(FLAG_READ) and loop < body.index(SLOT_ADD)
    assert body.count(SLOT_ADD) == 1


def test_poll_param_suffix_per_kernel():
    """Kernel i >= 1 of a PrimFunc takes reef_poll_every_i (like the DKP parameters)."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def two_loops(a: T.Buffer((1024,), "float32"), b: T.Buffer((1024,), "float32")):
        T.func_attr({"global_symbol": "two_loops", "tirx.noalias": True})
        for bx in T.thread_binding(4, thread="blockIdx.x"):
            for tx in T.thread_binding(256, thread="threadIdx.x"):
                with T.sblock("k0"):
                    i = T.axis.spatial(1024, bx * 256 + tx)
                    b[i] = a[i]
        for bx in T.thread_binding(4, thread="blockIdx.x"):
            for tx in T.thread_binding(16, thread="threadIdx.x"):
                for j in range(16):
                    with T.sblock("k1"):
                        i = T.axis.spatial(1024, bx * 256 + tx * 16 + j)
                        a[i] = b[i] * T.float32(2)

    p = tr.make_preemptible(tvm.IRModule({"two_loops": two_loops}), 4)["two_loops"]
    info = tr.preempt_info(p)
    assert info["poll_params"] == [None, tr.POLL_PARAM + "_1"]
    assert info["loop_trips"] == [0, 16]
    assert [x.name for x in p.params][-1] == tr.POLL_PARAM + "_1"


# ------------------------------------------------------------------ launch bounds


def _occupancy(binary: bytes, arch: str, threads: dict[str, int]) -> dict[str, tuple[int, int]]:
    """Kernel -> (registers, resident blocks per SM/CU) from the code object."""
    from reef_rocm.codeobj import occupancy, read_code_object

    co = read_code_object(binary)
    return {
        k: (co.kernels[k].registers, occupancy(arch, co.kernels[k], n).blocks_per_cu)
        for k, n in threads.items()
    }


@needs_nvcc
def test_cuda_variants_keep_plain_occupancy():
    """sm_90, tiny_cnn: with __launch_bounds__(T, plain blocks/SM) no preemptible or
    preemptible-DKP kernel has fewer resident blocks per SM than the plain kernel (without
    it the dkp_be form of fused_conv2d1_add1_relu1 took 72 registers instead of 64 and
    lost a block per SM). Registers themselves still differ either way."""
    from reef_rocm.compiler.launch_bounds import plain_blocks_per_sm, with_min_blocks

    prims = _zoo_prims("tiny_cnn", "cuda")
    plain = fx.build_cuda(prims, cubin=True)
    threads = {k.name: k.max_threads for k in plain.kernels}
    base = _occupancy(plain.cubin, "sm_90", threads)
    bounds = plain_blocks_per_sm(plain.cubin, "sm_90", plain.source)
    assert bounds == {k: b for k, (_, b) in base.items()}
    for vname, mod in {
        "preemptible": tr.make_preemptible(prims, 16),
        "dkp_be": tr.make_preemptible_dkp(prims, 16),
    }.items():
        src = with_min_blocks(fx.build_cuda(mod, cubin=False).source, bounds)
        bounded = set(re.findall(r"__launch_bounds__\(\d+, \d+\) (\w+)\(", src))
        assert bounded == set(threads)
        got = _occupancy(fx.cuda_cubin(src), "sm_90", threads)
        fewer = {k: (base[k], got[k]) for k in base if got[k][1] < base[k][1]}
        assert not fewer, (vname, fewer)


@needs_rocm
def test_rocm_preemptible_keeps_plain_occupancy():
    """gfx90a, tiny_cnn: the preemptible variant (polls every 16) needs at most a VGPR
    granule more, and no kernel loses a wave slot (measured; TVM cannot set
    amdgpu-waves-per-eu, so this is what the compiler gives). The dkp_be variant does
    lose occupancy on the first conv (151 -> 192 VGPRs): docs/transform.md."""
    prims = _zoo_prims("tiny_cnn", "rocm")
    plain = fx.build_rocm(prims)
    pre = fx.build_rocm(tr.make_preemptible(prims, 16))
    # every tiny_cnn kernel's block size, from its launch bound (TVM sets it to the block)
    from reef_rocm.codeobj import read_code_object

    threads = {k: r.max_threads for k, r in read_code_object(plain.hsaco).kernels.items()}
    base = _occupancy(plain.hsaco, "gfx90a", threads)
    got = _occupancy(pre.hsaco, "gfx90a", threads)
    assert {k: b for k, (_, b) in got.items()} == {k: b for k, (_, b) in base.items()}
