"""The DKP-ready variant (``make_dkp_ready``): each kernel's blocks become virtual blocks
that a 1-D grid of physical blocks grid-strides over. docs/transform.md, "DKP-ready
variant"."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

import tvm
from tvm import s_tir, tirx
from tvm.ir import Range
from tvm.sym.analyzer import Analyzer

from reef_rocm.compiler.transform.tir import (
    _BLOCK_TAGS,
    _I32,
    ATTR_DKP,
    DKP_BEGIN,
    DKP_COUNT,
    DKP_GRID,
    KernelShape,
    _const_int,
    _count_kernels,
    _dtype,
    _func_body,
    _map_funcs,
    _map_kernels,
    _seq,
    _sync,
    _uniform_if,
    _with_root_allocs,
    check_reductions_kept,
    kernel_shape,
)


def _linear_block_decomposition(
    vb: tvm.ir.PrimExpr, shape: KernelShape
) -> list[tuple[tvm.ir.expr.Var, tvm.ir.PrimExpr]]:
    """(original blockIdx loop var, its value for virtual block ``vb``); x varies fastest,
    as in the hardware's linear block order."""
    out = []
    stride: tvm.ir.PrimExpr = tirx.IntImm(_I32, 1)
    by_tag = {str(f.thread_binding.thread_tag): f for f in shape.block_chain}
    for tag in _BLOCK_TAGS:
        loop = by_tag.get(tag)
        if loop is None:
            continue
        ext = loop.extent
        ext32 = tirx.Cast(_I32, ext) if _dtype(ext) != _I32 else ext
        val = tirx.op.floormod(tirx.op.floordiv(vb, stride), ext32)
        v = loop.loop_var
        out.append((v, tirx.Cast(_dtype(v), val) if _dtype(v) != _I32 else val))
        stride = stride * ext32
    return out


def _grid_size(shape: KernelShape) -> tvm.ir.PrimExpr:
    total: tvm.ir.PrimExpr = tirx.IntImm(_I32, 1)
    for f in shape.block_chain:
        ext = f.extent
        total = total * (tirx.Cast(_I32, ext) if _dtype(ext) != _I32 else ext)
    return Analyzer().simplify(total)


@dataclass
class DkpBody:
    """One kernel as a body parameterised by a virtual block index ``vblock``."""

    vblock: tvm.ir.expr.Var
    body: tirx.Stmt  # uses ``vblock``; contains the kernel's thread loops
    shape: KernelShape
    num_vblocks: tvm.ir.PrimExpr


def dkp_body(root: tirx.For) -> DkpBody:
    """Split a kernel root into its per-block body, with the block index passed in."""
    shape = kernel_shape(root)
    vb = tirx.Var("reef_vblock", _I32)
    if shape.block_chain:
        # The block indices are replaced by their values from the virtual index, everywhere
        # in the body (PrimFunc.specialize substitutes them, sblock bindings and predicates
        # included). Not let-bound: with a block index bound by a Let whose value is not
        # constant, TVM's CompactBufferAllocation stops using the sblocks' T.where
        # predicates and sizes shared tiles larger than in the plain kernel; a software-
        # pipelined tile's stage stride then changed (Inception-v3's conv2d30: 64 -> 66
        # channels, stride 16320 -> 16830 floats) and its float4 accesses faulted with
        # "misaligned address" on the H200. Not one-trip loops at the index either: then
        # bindings such as bx // 784 stop being affine and LowerCrossThreadReduction
        # skips the reduction.
        dec = _linear_block_decomposition(vb, shape)
        body = shape.block_chain[-1].body
        body = tirx.PrimFunc([v for v, _ in dec], body).specialize(dict(dec)).body
    else:
        body = root  # one block: the whole thread-loop nest is the block body
    return DkpBody(vblock=vb, body=body, shape=shape, num_vblocks=_grid_size(shape))


def _vblock_loop(
    d: DkpBody,
    phys: tvm.ir.PrimExpr,
    nphys: tvm.ir.PrimExpr,
    begin: tvm.ir.PrimExpr,
    count: tvm.ir.PrimExpr,
) -> tirx.Stmt:
    """Grid-stride loop: physical block ``phys`` of ``nphys`` runs virtual blocks
    begin+phys, begin+phys+nphys, ... below begin+count. Uniform per block, so barriers in
    the body stay legal."""
    it = tirx.Var("reef_vblock_iter", _I32)
    # The trip count must not depend on the blockIdx variable: LowerCrossThreadReduction
    # leaves a reduction unlowered (silently wrong code) below a loop whose extent uses a
    # thread index. Every block runs ceil(count / nphys) trips; the last may be empty.
    trips = tirx.op.floordiv(count + nphys - 1, nphys)
    # Guarded through the let-bound index, which that pass does not trace either; the
    # condition is uniform per block, so barriers inside the body stay legal.
    run = _uniform_if(d.vblock < begin + count, d.body)
    # The barrier separates one virtual block's shared-memory use from the next one's.
    # ThreadSync would otherwise place that loop-carried barrier before the body's first
    # shared access, which may sit inside a condition (allreduce staging) and is refused.
    body = _seq([tirx.Bind(d.vblock, begin + phys + it * nphys), _sync(), run])
    return tirx.For(it, 0, trips, tirx.ForKind.SERIAL, body)


def _block_x_loop(
    extent: tvm.ir.PrimExpr,
    fbody: Callable[[tvm.ir.expr.Var], tirx.Stmt],
    annotations: dict | None = None,
) -> tirx.For:
    pb = tirx.Var("reef_pblock", _I32)
    iv = tirx.IterVar(Range(0, extent), pb, 1, "blockIdx.x")
    return tirx.For(pb, 0, extent, tirx.ForKind.THREAD_BINDING, fbody(pb), iv, annotations)


def _block_annotations(shape: KernelShape) -> dict:
    """The block loops' annotations (MetaSchedule puts ``pragma_auto_unroll_max_step`` on
    the outermost one; without it the DKP kernel's copy loops were not unrolled)."""
    out: dict = {}
    for loop in shape.block_chain:
        out.update({str(k): v for k, v in loop.annotations.items()})
    return out


def dkp_func(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """The DKP-ready variant of one PrimFunc (unchanged if it launches no kernel)."""
    if func.attrs is not None and ATTR_DKP in func.attrs:
        raise ValueError("PrimFunc is already DKP-ready")
    n = _count_kernels(func)
    if n == 0:
        return func
    new_params: list[tvm.ir.expr.Var] = []
    infos: list[dict] = []
    counter = [0]

    def rewrite(root: tirx.For) -> tirx.Stmt:
        i = counter[0]
        counter[0] += 1
        sfx = "" if i == 0 else f"_{i}"
        begin = tirx.Var(DKP_BEGIN + sfx, _I32)
        count = tirx.Var(DKP_COUNT + sfx, _I32)
        grid = tirx.Var(DKP_GRID + sfx, _I32)
        new_params.extend([begin, count, grid])
        d = dkp_body(root)
        infos.append(
            {
                "kernel": i,
                "params": [begin.name, count.name, grid.name],
                "num_vblocks": _const_int(d.num_vblocks) or str(d.num_vblocks),
                **d.shape.as_json(),
            }
        )
        return _block_x_loop(
            grid, lambda pb: _vblock_loop(d, pb, grid, begin, count), _block_annotations(d.shape)
        )

    body = _map_kernels(_func_body(func), rewrite)
    if isinstance(func.body, s_tir.SBlockRealize):
        new_body = _with_root_allocs(func, body, [])
    else:
        new_body = body
    out = tirx.PrimFunc(list(func.params) + new_params, new_body, func.ret_type, func.attrs)
    check_reductions_kept(func, out, "the DKP rewrite")
    return out.with_attr(ATTR_DKP, json.dumps(infos))


def dkp_pass() -> tvm.transform.Pass:
    """The DKP-ready rewrite as a TVM module pass (``reef.MakeDkpReady``)."""

    @tvm.transform.module_pass(opt_level=0, name="reef.MakeDkpReady")
    def run(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        return _map_funcs(mod, dkp_func)

    return run


def make_dkp_ready(mod: tvm.IRModule) -> tvm.IRModule:
    """DKP-ready variant of every kernel-bearing PrimFunc in ``mod`` (see module doc).

    Per kernel ``i`` of a PrimFunc, three int32 params are appended: ``reef_vblock_begin``,
    ``reef_vblock_count``, ``reef_grid_blocks`` (suffixed ``_i`` for i >= 1). The kernel
    is launched with grid (reef_grid_blocks, 1, 1) and the original block shape; the
    PrimFunc attribute ``reef.dkp`` (JSON) lists each kernel's original grid/block.
    """
    return dkp_pass()(mod)


def dkp_info(func: tirx.PrimFunc) -> list[dict]:
    """The ``reef.dkp`` attribute of a DKP-ready PrimFunc, decoded."""
    return json.loads(str(func.attrs[ATTR_DKP]))
