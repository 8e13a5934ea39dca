"""Shared TIR helpers of the kernel transformer: constants, kernel roots and shapes,
guards, barriers, fences, atomics, and the module map the passes use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir import Range
from tvm.sym.analyzer import Analyzer

from reef_rocm.errors import UnsupportedError

FLAG_PARAM = "reef_preempt_flag"
SLOT_PARAM = "reef_completion_slot"
DKP_BEGIN = "reef_vblock_begin"
DKP_COUNT = "reef_vblock_count"
DKP_GRID = "reef_grid_blocks"
POLL_PARAM = "reef_poll_every"
ATTR_PREEMPTIBLE = "reef.preemptible"
ATTR_DKP = "reef.dkp"
ATTR_DISPATCH = "reef.dispatch"
DISPATCH_SPLIT = "reef_split_blocks"
# the device-scope fence the completion count uses; lowering.py says what it becomes
FENCE_OP = "tirx.cuda.thread_fence"

_THREAD_TAGS = ("threadIdx.x", "threadIdx.y", "threadIdx.z")
_BLOCK_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
_I32 = "int32"
_COMM_REDUCE = 2  # IterVar type of a reduction axis (kCommReduce)


def _fence() -> tirx.Stmt:
    """Device-scope fence: this thread's earlier stores are visible device-wide before its
    later memory operations (``__threadfence()`` on CUDA; lowering.py for ROCm)."""
    return tirx.Evaluate(tirx.call_intrin("", FENCE_OP))


def _atomic_add(buf: tvm.ir.expr.Var, value: tvm.ir.PrimExpr, dtype: str) -> tvm.ir.PrimExpr:
    return tirx.call_intrin(dtype, "tirx.atomic_add", tirx.address_of(buf[0]), value)


def _sync() -> tirx.Stmt:
    # __syncthreads() on CUDA, s_barrier on AMDGPU. ThreadSync may add more; never fewer.
    return tirx.Evaluate(tirx.op.tvm_storage_sync("shared"))


def _dtype(e: tvm.ir.PrimExpr) -> str:
    return str(e.ty)


def _const_int(e: tvm.ir.PrimExpr) -> int | None:
    return int(e.value) if isinstance(e, tirx.IntImm) else None


def _seq(stmts: Sequence[tirx.Stmt]) -> tirx.Stmt:
    flat: list[tirx.Stmt] = []
    for s in stmts:
        if isinstance(s, tirx.SeqStmt):
            flat.extend(s.seq)
        else:
            flat.append(s)
    return flat[0] if len(flat) == 1 else tirx.SeqStmt(flat)


# --------------------------------------------------------------------------- traversal


def _walk(stmt: tirx.Stmt, fvisit: Callable[[tirx.Stmt], None]) -> None:
    """Call ``fvisit`` on every statement below (and including) ``stmt``, pre-order, in
    program order (TVM's structural walk)."""
    tvm_ffi.structural_walk(stmt, (tirx.Stmt, fvisit), order="pre")


def _replace_body(stmt: tirx.Stmt, body: tirx.Stmt) -> tirx.Stmt:
    if isinstance(stmt, tirx.For):
        return tirx.For(
            stmt.loop_var,
            stmt.min,
            stmt.extent,
            stmt.kind,
            body,
            stmt.thread_binding,
            stmt.annotations,
            stmt.step,
        )
    if isinstance(stmt, s_tir.SBlockRealize):
        b = stmt.block
        blk = s_tir.SBlock(
            b.iter_vars,
            b.reads,
            b.writes,
            b.name_hint,
            body,
            b.init,
            b.alloc_buffers,
            b.match_buffers,
            b.annotations,
        )
        return s_tir.SBlockRealize(stmt.iter_values, stmt.predicate, blk)
    if isinstance(stmt, tirx.AttrStmt):
        return tirx.AttrStmt(stmt.node, stmt.attr_key, stmt.value, body)
    if isinstance(stmt, tirx.While):
        return tirx.While(stmt.condition, body)
    raise TypeError(f"cannot replace the body of {type(stmt).__name__}")


def _thread_tag(stmt: tirx.Stmt) -> str | None:
    if isinstance(stmt, tirx.For) and stmt.kind == tirx.ForKind.THREAD_BINDING:
        return str(stmt.thread_binding.thread_tag)
    return None


def _map_kernels(stmt: tirx.Stmt, fkernel: Callable[[tirx.For], tirx.Stmt]) -> tirx.Stmt:
    """Rebuild ``stmt`` with every kernel root (outermost thread-binding loop) replaced by
    ``fkernel(root)`` (TVM's structural mutator: unchanged parts are kept as they are)."""

    def on_for(loop: tirx.For, mutator: tvm_ffi.StructuralMutator) -> tirx.Stmt:
        if _thread_tag(loop) is not None:
            return fkernel(loop)  # not descended: loops inside a kernel are its own
        return mutator.default_mutate(loop)

    return tvm_ffi.structural_mutate(stmt, (tirx.For, on_for))


def kernel_roots(func: tirx.PrimFunc) -> list[tirx.For]:
    """The kernels of ``func``: its outermost thread-binding loops, in program order."""
    roots: list[tirx.For] = []

    def visit(s: tirx.For) -> tvm_ffi.WalkResult | None:
        if _thread_tag(s) is None:
            return None
        roots.append(s)
        return tvm_ffi.WalkResult.SKIP  # loops inside a kernel are no kernels of their own

    tvm_ffi.structural_walk(_func_body(func), (tirx.For, visit), order="pre")
    return roots


def _count_kernels(func: tirx.PrimFunc) -> int:
    return len(kernel_roots(func))


def cross_thread_reductions(func: tirx.PrimFunc) -> int:
    """How many cross-thread reductions TVM's LowerCrossThreadReduction lowers in ``func``.

    That pass lowers a reduction over thread-bound loops only where it can prove the
    sblock's bindings affine; where it cannot, it leaves the sblock as it is, without an
    error, and every thread then updates the result unsynchronised. A rewrite that changes
    loop ranges compares this count before and after (``check_reductions_kept``)."""
    mod = s_tir.transform.LowerCrossThreadReduction()(tvm.IRModule({"main": func}))
    n = 0

    def visit(call: tvm.ir.expr.Call) -> None:
        nonlocal n
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "tirx.tvm_thread_allreduce":
            n += 1

    tvm_ffi.structural_walk(mod["main"].body, (tvm.ir.expr.Call, visit), order="pre")
    return n


def check_reductions_kept(before: tirx.PrimFunc, after: tirx.PrimFunc, rewrite: str) -> None:
    """Raise if ``rewrite`` left TVM unable to lower a cross-thread reduction of ``before``."""
    n0 = cross_thread_reductions(before)
    if n0 == 0:
        return  # nothing to lose (most kernels): spare lowering the rewritten function
    n1 = cross_thread_reductions(after)
    if n1 < n0:
        name = before.attrs.get("global_symbol", "main") if before.attrs is not None else "main"
        raise UnsupportedError(
            f"{rewrite} of {name}: TVM lowers {n1} of its {n0} cross-thread reductions "
            "afterwards (the others would race); this schedule is not supported"
        )


# --------------------------------------------------------------------------- kernel shape


@dataclass
class KernelShape:
    """Launch shape of one kernel as the scheduled TIR states it (extents may be symbolic)."""

    grid: dict[str, tvm.ir.PrimExpr] = field(default_factory=dict)  # blockIdx.* -> extent
    block: dict[str, tvm.ir.PrimExpr] = field(default_factory=dict)  # threadIdx.* -> extent
    block_chain: list[tirx.For] = field(default_factory=list)  # top blockIdx loops, outer first

    def as_json(self) -> dict[str, list[int | str]]:
        def dims(d: dict[str, tvm.ir.PrimExpr], tags: tuple[str, ...]) -> list[int | str]:
            out: list[int | str] = []
            for t in tags:
                e = d.get(t)
                c = 1 if e is None else _const_int(e)
                out.append(str(e) if c is None else c)
            return out

        return {"grid": dims(self.grid, _BLOCK_TAGS), "block": dims(self.block, _THREAD_TAGS)}


def kernel_shape(root: tirx.For) -> KernelShape:
    """Grid/block extents of the kernel rooted at ``root`` and its top chain of blockIdx
    loops (the loops the block-level code goes inside)."""
    shape = KernelShape()

    def visit(s: tirx.Stmt) -> None:
        tag = _thread_tag(s)
        if tag is None:
            return
        table = shape.grid if tag.startswith("blockIdx") else shape.block
        if tag.startswith("vthread"):
            return
        prev = table.get(tag)
        if prev is not None and not Analyzer().can_prove_equal(prev, s.extent):
            raise ValueError(f"kernel binds {tag} with extents {prev} and {s.extent}")
        table[tag] = s.extent

    _walk(root, visit)
    s: tirx.Stmt = root
    while (tag := _thread_tag(s)) is not None and tag.startswith("blockIdx"):
        shape.block_chain.append(s)
        s = s.body
    chain_tags = {str(f.thread_binding.thread_tag) for f in shape.block_chain}
    if set(shape.grid) - chain_tags:
        raise UnsupportedError(
            "blockIdx loops must form the outermost loop nest of a kernel; found "
            f"{sorted(set(shape.grid) - chain_tags)} deeper inside"
        )
    return shape


def _block_level_body(root: tirx.For, shape: KernelShape) -> tirx.Stmt:
    """The statement that runs once per block: below the blockIdx chain, or below the
    outermost thread loop for a kernel without blockIdx (its code must stay inside a
    thread-binding loop or the host/device split would make it a kernel of its own)."""
    if shape.block_chain:
        return shape.block_chain[-1].body
    if _thread_tag(root).startswith("vthread"):
        raise UnsupportedError("a kernel whose outermost loop is a vthread")
    return root.body


def _rebuild_chain(root: tirx.For, shape: KernelShape, new_inner: tirx.Stmt) -> tirx.Stmt:
    chain = shape.block_chain or [root]
    out = new_inner
    for loop in reversed(chain):
        out = _replace_body(loop, out)
    return out


def _one_thread(shape: KernelShape, stmt: tirx.Stmt) -> tirx.Stmt:
    """``stmt`` executed by thread (0,0,0) of the block only.

    Fresh loops bind the kernel's thread tags with the kernel's extents (UnifyThreadBinding
    merges same-tag loops, and requires equal extents), so the thread index is in scope
    wherever this is placed, also outside the body's own thread loops.

    The loops nest in the order in which the kernel itself first binds the tags
    (``shape.block`` is filled in pre-order), not in x, y, z order. These are the first
    thread loops of the rewritten kernel, and the first binding of each tag decides the
    order of the kernel's ``thread_extent`` launches after lowering. TVM's ThreadSync
    depends on that order: it takes a write and a read of the same shared index as
    race-free when the index uses the *innermost* launched thread variable (the same
    thread wrote it), so swapping threadIdx.x and threadIdx.y changes which barriers it
    plans. In tiny_cnn's ``fused_NT_matmul_add2`` the threads with ``threadIdx.y < 1``
    store ``lv8_shared[threadIdx.x]`` and every ``threadIdx.y`` reads it: with x
    launched inside y (as x-outer loops here produced) the barrier between them was
    dropped. Keeping the kernel's own order keeps the plain kernel's barriers.
    """
    loops = list(shape.block.items())  # the kernel's own nesting order, outermost first
    if not loops:
        return stmt
    # same dtype as the kernel's own loops for the tag (dlight uses int64 extents)
    vars_ = [tirx.Var(f"reef_t{t[-1]}", _dtype(e)) for t, e in loops]
    cond = vars_[0] == 0
    for v in vars_[1:]:
        cond = tirx.And(cond, v == 0)
    out: tirx.Stmt = tirx.IfThenElse(cond, stmt, None)
    for (tag, ext), v in reversed(list(zip(loops, vars_, strict=True))):
        iv = tirx.IterVar(Range(0, ext), v, 1, tag)  # 1 = kThreadIndex
        out = tirx.For(v, 0, ext, tirx.ForKind.THREAD_BINDING, out, iv)
    return out


def _uniform_if(cond: tvm.ir.PrimExpr, stmt: tirx.Stmt) -> tirx.Stmt:
    """``if cond: stmt`` for a block-uniform ``cond``, written as a loop of 0 or 1 trips.

    TVM's ThreadSync refuses to insert the barriers a body needs inside an IfThenElse (it
    cannot know the condition is uniform) but does insert them inside loops. A ``return``
    would avoid guards altogether, but TVM's LLVM (AMDGPU) codegen drops a TIR Return in a
    kernel (the CUDA codegen emits it), so guards it is, for both vendors alike.
    """
    g = tirx.Var("reef_run", _I32)
    trips = tirx.Select(cond, tirx.IntImm(_I32, 1), tirx.IntImm(_I32, 0))
    return tirx.For(g, 0, trips, tirx.ForKind.SERIAL, stmt)


def _with_root_allocs(func: tirx.PrimFunc, body: tirx.Stmt, allocs: list) -> tirx.Stmt:
    """Allocate the per-kernel shared buffers in the root sblock (PlanAndUpdateBuffer-
    AllocationLocation moves each to the lowest common ancestor of its uses, which is
    inside its kernel)."""
    if isinstance(func.body, s_tir.SBlockRealize):
        b = func.body.block
        blk = s_tir.SBlock(
            b.iter_vars,
            b.reads,
            b.writes,
            b.name_hint,
            body,
            b.init,
            list(b.alloc_buffers) + allocs,
            b.match_buffers,
            b.annotations,
        )
        return s_tir.SBlockRealize(func.body.iter_values, func.body.predicate, blk)
    raise UnsupportedError("expected a scheduled PrimFunc with a root sblock")


def _func_body(func: tirx.PrimFunc) -> tirx.Stmt:
    return func.body.block.body if isinstance(func.body, s_tir.SBlockRealize) else func.body


def _map_funcs(mod: tvm.IRModule, fmap: Callable[[tirx.PrimFunc], tirx.PrimFunc]) -> tvm.IRModule:
    updates = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tirx.PrimFunc):
            new = fmap(func)
            if not new.same_as(func):
                updates[gv] = new
    if not updates:
        return mod
    out = tvm.IRModule(dict(mod.functions.items()), attrs=mod.attrs)
    for gv, func in updates.items():
        out[gv] = func
    return out
