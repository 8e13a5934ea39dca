"""Dispatcher merge (``merge_dkp_kernels``): two kernels' virtual blocks in one launch,
split by physical block index. docs/transform.md, "Dispatcher"."""

from __future__ import annotations

import json

import tvm
from tvm import s_tir, tirx
from tvm.sym.analyzer import Analyzer

from reef_rocm.compiler.transform.dkp import _block_x_loop, _vblock_loop, dkp_body
from reef_rocm.compiler.transform.tir import (
    _I32,
    ATTR_DISPATCH,
    DISPATCH_SPLIT,
    DKP_GRID,
    _const_int,
    _seq,
    _uniform_if,
    kernel_roots,
)


def _single_kernel(func: tirx.PrimFunc, what: str) -> tirx.For:
    roots = kernel_roots(func)
    if len(roots) != 1:
        raise ValueError(f"{what}: expected a PrimFunc with exactly one kernel, got {len(roots)}")
    return roots[0]


def _fresh_copy(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """The same function with new variables (printed and parsed back), so that it can sit
    beside itself in one dispatcher. Works for plain scheduled functions; TVMScript cannot
    parse back the atomics of a preemptible one (merge two separately built variants)."""
    return tvm.script.from_source(func.script())


def merge_dkp_kernels(
    first: tirx.PrimFunc, second: tirx.PrimFunc, name: str = "reef_dispatch"
) -> tirx.PrimFunc:
    """One dispatcher PrimFunc running the virtual blocks of two kernels in one launch.

    ``first`` and ``second`` are single-kernel PrimFuncs as the Relax pipeline schedules
    them, plain or preemptible (not DKP-ready: their bodies are taken from the original
    kernels). Physical blocks ``[0, reef_split_blocks)`` grid-stride over the first
    kernel's virtual blocks ``[reef_a_vblock_begin, +reef_a_vblock_count)``, blocks
    ``[reef_split_blocks, reef_grid_blocks)`` over the second's (``reef_b_*``). Launch with
    grid ``(reef_grid_blocks, 1, 1)`` and the kernels' common block shape. Params: the
    first's, the second's, then the six int32 scalars. Both kernels must bind the same
    threadIdx extents (one launch has one block shape); padding a smaller block is left to
    the padded-launch work, as is choosing which physical blocks go where (by CU).
    """
    if any(p.same_as(q) for p in first.params for q in second.params):
        second = _fresh_copy(second)
    a = dkp_body(_single_kernel(first, "first"))
    b = dkp_body(_single_kernel(second, "second"))
    ana = Analyzer()
    if set(a.shape.block) != set(b.shape.block) or not all(
        ana.can_prove_equal(a.shape.block[t], b.shape.block[t]) for t in a.shape.block
    ):
        raise ValueError(
            f"block shapes differ: {a.shape.as_json()['block']} vs {b.shape.as_json()['block']}"
        )
    split = tirx.Var(DISPATCH_SPLIT, _I32)
    grid = tirx.Var(DKP_GRID, _I32)
    scal = {k: tirx.Var(k, _I32) for k in (
        "reef_a_vblock_begin", "reef_a_vblock_count", "reef_b_vblock_begin", "reef_b_vblock_count"
    )}  # fmt: skip

    def dispatch(pb: tvm.ir.expr.Var) -> tirx.Stmt:
        # which kernel this block serves: uniform per block; bound to a scalar so loop
        # extents do not use the block index directly (see _vblock_loop)
        is_a = tirx.Var("reef_is_first", _I32)
        pick = tirx.Select(pb < split, tirx.IntImm(_I32, 1), tirx.IntImm(_I32, 0))
        run_a = _vblock_loop(a, pb, split, scal["reef_a_vblock_begin"], scal["reef_a_vblock_count"])
        run_b = _vblock_loop(
            b, pb - split, grid - split, scal["reef_b_vblock_begin"], scal["reef_b_vblock_count"]
        )
        return _seq(
            [tirx.Bind(is_a, pick), _uniform_if(is_a == 1, run_a), _uniform_if(is_a == 0, run_b)]
        )

    body = _block_x_loop(grid, dispatch)
    allocs = []
    for f in (first, second):
        if isinstance(f.body, s_tir.SBlockRealize):
            allocs.extend(f.body.block.alloc_buffers)
    root = s_tir.SBlock([], [], [], "root", body, None, allocs, [], {})
    new_body = s_tir.SBlockRealize([], True, root)
    params = list(first.params) + list(second.params) + [split, grid, *scal.values()]
    info = {
        "first": {"params": [p.name for p in first.params], "vblocks": _const_int(a.num_vblocks)},
        "second": {"params": [p.name for p in second.params], "vblocks": _const_int(b.num_vblocks)},
        "scalars": [split.name, grid.name, *scal],
        "block": a.shape.as_json()["block"],
    }
    attrs = {
        "global_symbol": name,
        "tirx.noalias": True,
        "tirx.is_scheduled": True,
        ATTR_DISPATCH: json.dumps(info),
    }
    return tirx.PrimFunc(
        params, new_body, first.ret_type, tvm.ir.make_node("ir.DictAttrs", **attrs)
    )
