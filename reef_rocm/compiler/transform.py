"""Kernel variants for REEF-style preemption and dynamic kernel padding, as TIR passes.

Both passes run on *scheduled* TIR PrimFuncs (after dlight, before TIR lowering and the
host/device split), so one rewrite serves every backend: the CUDA source and the AMDGPU
LLVM output are generated from the same transformed TIR. docs/transform.md has the
reasoning; in short:

``make_preemptible(mod, poll_interval)``
    Every kernel-bearing PrimFunc gets two trailing buffer params, ``reef_preempt_flag``
    (int32[1]) and ``reef_completion_slot`` (uint32[1]). Each kernel (each outermost
    thread-binding loop nest) becomes, below its blockIdx loops::

        if tid == 0: stop[0] = atomic_add(flag, 0) != 0   # coherent read
        barrier                                           # -> block-uniform decision
        if stop[0] == 0: <body>
        barrier                                           # the whole block is done
        if tid == 0 and stop[0] == 0: atomic_add(slot, 1)

    ``stop`` is one int32 of shared memory per kernel. One thread reads the flag and
    publishes it between barriers, so every branch on it is uniform across the block even
    when the flag flips while the block starts (threads reading the flag themselves could
    disagree, deadlock on the body's barriers, or count a block that only partly ran).

    Before the final barrier every thread executes a device-scope fence, and thread 0
    fences again before the count, so a reader that sees the count sees the block's
    stores (``FENCE_OP``). ``make_preemptible`` refuses DKP-ready input: apply it first
    (``make_preemptible_dkp``), so that the check and the count sit per virtual block.

    With ``poll_interval=N`` the kernel's outer loops also poll: each outermost uniform
    serial loop with more than N trips runs in chunks of P iterations, P the kernel's
    int32 launch argument ``reef_poll_every`` (N its default; P = 0: one chunk)::

        if stop[0] == 0:
            for chunk in range(ceildiv(extent, N)):
                if stop[0] == 0 and chunk != 0:
                    barrier; if tid == 0: stop[0] = atomic_add(flag, 0) != 0; barrier
                if stop[0] == 0: <N iterations of the body>

    and every other statement of the block body is guarded by ``stop[0] == 0``, so a block
    that saw the flag does no more work, writes nothing more and does not count (kernels
    are idempotent: the whole kernel runs again on restore).

    The guards are written as loops of 0 or 1 trips, not as ``if``: TVM's ThreadSync
    refuses to place the barriers a body needs inside an IfThenElse, and TVM's AMDGPU
    codegen drops a TIR ``Return`` in a kernel (so "leave early" cannot be a return).

``make_dkp_ready(mod)``
    Each kernel's blockIdx loops become a grid-stride loop over *virtual* blocks::

        for pb in blockIdx.x(reef_grid_blocks):
            for it in range(ceildiv(reef_vblock_count, reef_grid_blocks)):
                vb = reef_vblock_begin + pb + it * reef_grid_blocks
                barrier
                if vb < reef_vblock_begin + reef_vblock_count:
                    bx, by, bz = vb % gx, vb // gx % gy, vb // (gx * gy)
                    <original block body>

    so the body is parameterised by a virtual block index; with ``begin=0``,
    ``count=gx*gy*gz`` it computes what the original kernel computes, for any physical
    grid. ``merge_dkp_kernels`` fuses two such bodies into one dispatcher PrimFunc (the
    first ``reef_split_blocks`` physical blocks run kernel A's virtual blocks, the rest
    kernel B's). Applied after ``make_preemptible`` (or merging preemptible kernels), the
    flag check and the completion count happen per virtual block.

Atomics: TIR's target-neutral ``tirx.atomic_add`` is lowered by the LLVM backends
(AMDGPU: ``atomicrmw``; an add of 0 whose result is used becomes an atomic load,
``global_load_dword ... glc``) but TVM's CUDA source generator does not know it; importing
this module registers a CUDA lowering: the flag read (an add of 0) becomes ``__ldcv``, the
count TVM's ``tirx.cuda.atomic_add`` (``atomicAdd``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import tvm
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

_THREAD_TAGS = ("threadIdx.x", "threadIdx.y", "threadIdx.z")
_BLOCK_TAGS = ("blockIdx.x", "blockIdx.y", "blockIdx.z")
_I32 = "int32"
_COMM_REDUCE = 2  # IterVar type of a reduction axis (kCommReduce)


# --------------------------------------------------------------------------- atomics


def _lower_atomic_add_cuda(op: tirx.Call) -> tirx.Call:
    """CUDA lowering of the generic ``tirx.atomic_add`` (TVM's CUDA source generator only
    knows its own ``tirx.cuda.atomic_add``, emitted as ``atomicAdd``).

    An add of constant 0 is a coherent *read* (the preempt flag): it becomes ``__ldcv``
    (``ld.global.cv``: fetched again from L2 every time; inline asm with a memory clobber,
    so nvcc neither caches nor hoists it). A real ``atomicAdd(flag, 0)`` is a
    read-modify-write that the L2 serialises per address: with every resident block
    polling one flag (measured on an H100: ~2 us per poll with ~2000 blocks), the polls
    queue behind each other and behind the flag write itself. LLVM does the same for
    AMDGPU on its own (an atomic load, ``global_load_dword ... glc``).
    """
    addr, value = op.args
    if isinstance(value, tirx.IntImm) and int(value.value) == 0:
        return tirx.call_extern(str(op.ty), "__ldcv", addr)
    return tirx.call_intrin(str(op.ty), "tirx.cuda.atomic_add", addr, value)


# The device-scope fence in the TIR is TVM's ``tirx.cuda.thread_fence`` (CUDA source:
# ``__threadfence()``, i.e. ``fence.sc.gpu``). TVM's AMDGPU codegen knows no fence, and TIR
# cannot write LLVM's ``fence`` instruction, so for ROCm targets it is lowered to the
# instruction sequence LLVM itself emits for ``fence syncscope("agent") release`` on gfx9
# up to gfx90a (one L2 per agent): ``s_waitcnt vmcnt(0) expcnt(0) lgkmcnt(0)``, i.e. every
# memory operation this wave issued has completed (stores acknowledged by the L2).
# gfx94x (MI300: one L2 per XCD) would also need ``buffer_wbl2 sc1``, which TVM cannot emit.
FENCE_OP = "tirx.cuda.thread_fence"
_WAITCNT_ALL = 0  # s_waitcnt immediate with every counter field 0


def _lower_fence_rocm(op: tirx.Call) -> tirx.Call:
    return tirx.call_llvm_intrin("", "llvm.amdgcn.s.waitcnt", tirx.IntImm(_I32, _WAITCNT_ALL))


_codegen_ready = False


def ensure_codegen_support() -> None:
    """Register the lowerings the transformed kernels need (idempotent, process-wide):
    ``tirx.atomic_add`` for CUDA (TVM's CUDA source generator does not know it) and the
    device-scope fence for ROCm. Every build of transformed kernels calls this first
    (reef_rocm.compiler.build does); a build in another process must call it too.
    """
    global _codegen_ready
    if _codegen_ready:
        return
    tirx.op.register_intrin_lowering("tirx.atomic_add", "cuda", f=_lower_atomic_add_cuda, level=99)
    tirx.op.register_intrin_lowering(FENCE_OP, "rocm", f=_lower_fence_rocm, level=99)
    _codegen_ready = True


ensure_codegen_support()


def _fence() -> tirx.Stmt:
    """Device-scope fence: this thread's earlier stores are visible device-wide before its
    later memory operations (see FENCE_OP)."""
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


def _children(stmt: tirx.Stmt) -> list[tirx.Stmt]:
    if isinstance(stmt, tirx.SeqStmt):
        return list(stmt.seq)
    if isinstance(stmt, (tirx.For, tirx.While, tirx.AttrStmt)):
        return [stmt.body]
    if isinstance(stmt, tirx.IfThenElse):
        return [stmt.then_case] + ([stmt.else_case] if stmt.else_case is not None else [])
    if isinstance(stmt, s_tir.SBlockRealize):
        blk = stmt.block
        return [blk.body] + ([blk.init] if blk.init is not None else [])
    return []


def _walk(stmt: tirx.Stmt, fvisit: Callable[[tirx.Stmt], None]) -> None:
    fvisit(stmt)
    for c in _children(stmt):
        _walk(c, fvisit)


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
    """Rebuild ``stmt`` with every kernel root (outermost thread-binding loop) replaced."""
    if _thread_tag(stmt) is not None:
        return fkernel(stmt)
    if isinstance(stmt, tirx.SeqStmt):
        new = [_map_kernels(c, fkernel) for c in stmt.seq]
        return (
            tirx.SeqStmt(new)
            if any(not a.same_as(b) for a, b in zip(new, stmt.seq, strict=True))
            else stmt
        )
    if isinstance(stmt, tirx.IfThenElse):
        t = _map_kernels(stmt.then_case, fkernel)
        e = None if stmt.else_case is None else _map_kernels(stmt.else_case, fkernel)
        return tirx.IfThenElse(stmt.condition, t, e)
    if isinstance(stmt, (tirx.For, tirx.While, tirx.AttrStmt, s_tir.SBlockRealize)):
        if isinstance(stmt, s_tir.SBlockRealize) and stmt.block.init is not None:
            return stmt  # an init block never holds a kernel launch
        body = stmt.block.body if isinstance(stmt, s_tir.SBlockRealize) else stmt.body
        new_body = _map_kernels(body, fkernel)
        return stmt if new_body.same_as(body) else _replace_body(stmt, new_body)
    return stmt


def kernel_roots(func: tirx.PrimFunc) -> list[tirx.For]:
    """The kernels of ``func``: its outermost thread-binding loops, in program order."""
    roots: list[tirx.For] = []

    def add(k: tirx.For) -> tirx.Stmt:
        roots.append(k)
        return k

    _map_kernels(_func_body(func), add)
    return roots


def _count_kernels(func: tirx.PrimFunc) -> int:
    n = [0]

    def count(k: tirx.For) -> tirx.Stmt:
        n[0] += 1
        return k

    _map_kernels(func.body, count)
    return n[0]


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


# --------------------------------------------------------------------------- preemptible


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


@dataclass
class _PollCtx:
    stop: tvm.ir.expr.Var  # shared int32[1] of this kernel: 0 = run, 1 = stop
    flag: tvm.ir.expr.Var
    shape: KernelShape
    interval: int | None  # compile time: loops with more trips than this get poll points
    every: tvm.ir.expr.Var | None = None  # launch argument: poll every N iterations (0: never)
    thread_vars: list = field(default_factory=list)  # vars whose value differs per thread
    polls: int = 0
    # iterations per block of the polled loops (None: a symbolic extent somewhere)
    trips: int | None = 0
    _outer_trips: list = field(default_factory=list)  # extents of the short loops around us

    def read_flag(self) -> tirx.Stmt:
        """Thread 0 reads the flag into shared memory. ``atomic_add(flag, 0)`` is a
        coherent read on both vendors (LLVM turns it into an atomic load, ``global_load
        ... glc`` on gfx9; the CUDA lowering above makes it ``__ldcv``): a plain load of a
        read-only noalias argument may be served from a non-coherent cache and miss a flag
        raised while the kernel runs."""
        raised = _atomic_add(self.flag, tirx.IntImm(_I32, 0), _I32) != 0
        value = tirx.Select(raised, tirx.IntImm(_I32, 1), tirx.IntImm(_I32, 0))
        return _one_thread(self.shape, tirx.BufferStore(self.stop, value, [0]))

    def count_trips(self, loop: tirx.For) -> None:
        """Add the iterations per block of a newly polled ``loop`` to ``trips``."""
        n = _const_int(loop.extent)
        for t in self._outer_trips:
            n = None if n is None or t is None else n * t
        self.trips = None if n is None or self.trips is None else self.trips + n

    def when_running(self, stmt: tirx.Stmt) -> tirx.Stmt:
        """``stmt`` if the block has not seen the flag. The shared value is bound to a
        scalar first (ThreadSync rejects shared loads in loop extents and conditions);
        all threads read it after the same barrier, so the guard is block-uniform."""
        v = tirx.Var("reef_stop", _I32)
        return _seq([tirx.Bind(v, self.stop[0]), _uniform_if(v == 0, stmt)])


def _uniform(expr: tvm.ir.PrimExpr, ctx: _PollCtx) -> bool:
    """True if ``expr`` has the same value in every thread of the block: it reads no
    memory and uses no thread-dependent variable."""
    for v in tirx.analysis.undefined_vars(expr):
        # buffers (and their data pointers, printed "name.data"/"name.source") mean a load
        if isinstance(v.ty, tirx.BufferType) or "." in str(v):
            return False
        if any(v.same_as(t) for t in ctx.thread_vars):
            return False
    return True


def _is_definition(stmt: tirx.Stmt) -> bool:
    # Flat statements whose scope is the rest of their SeqStmt: wrapping them in a guard
    # would end that scope. They compute nothing observable, so they stay unguarded.
    return isinstance(stmt, (tirx.Bind, tirx.AllocBuffer, tirx.DeclBuffer))


def _reduces_over(stmt: tirx.Stmt, var: tvm.ir.expr.Var) -> bool:
    """Does ``stmt`` hold a reduction sblock with a reduce axis bound through ``var``?"""
    found = [False]

    def visit(s: tirx.Stmt) -> None:
        if found[0] or not isinstance(s, s_tir.SBlockRealize):
            return
        for iv, value in zip(s.block.iter_vars, s.iter_values, strict=True):
            if int(iv.iter_type) == _COMM_REDUCE and var in tirx.analysis.undefined_vars(value):
                found[0] = True

    _walk(stmt, visit)
    return found[0]


def _pollable(loop: tirx.For, ctx: _PollCtx) -> bool:
    if loop.kind != tirx.ForKind.SERIAL or ctx.interval is None:
        return False
    if loop.step is not None and _const_int(loop.step) != 1:
        return False
    ext = _const_int(loop.extent)
    return ext is None or ext > ctx.interval


def _descendable(stmt: tirx.Stmt, ctx: _PollCtx) -> bool:
    """May polls (which contain barriers) go inside ``stmt``? Only where every thread of
    the block executes the same control path."""
    if isinstance(stmt, tirx.For):
        if any("software_pipeline" in str(k) for k in stmt.annotations):
            return False  # InjectSoftwarePipeline reorders the body; keep it intact
        tag = _thread_tag(stmt)
        if tag is not None:
            # threadIdx/vthread loops: every thread runs the body (vthreads are unrolled or
            # serialised by InjectVirtualThread; a poll copied per vthread stays uniform).
            # Not below a thread loop that a cross-thread reduction reduces over: the
            # LowerCrossThreadReduction pass must see that loop nest untouched (it leaves
            # reductions it does not recognise unlowered, i.e. racy, without an error).
            return not tag.startswith("blockIdx") and not _reduces_over(stmt.body, stmt.loop_var)
        if stmt.kind != tirx.ForKind.SERIAL:
            return False
        return _uniform(stmt.min, ctx) and _uniform(stmt.extent, ctx)
    if isinstance(stmt, tirx.IfThenElse):
        # polls would put barriers inside a condition, which ThreadSync rejects
        return False
    if isinstance(stmt, tirx.SeqStmt):
        return True
    if isinstance(stmt, tirx.AttrStmt):
        return str(stmt.attr_key) not in ("thread_extent", "virtual_thread")
    # sblocks: their predicates/bindings are usually thread-dependent and their bodies
    # are leaf computations; While: data-dependent trip counts.
    return False


def _poll_rewrite(stmt: tirx.Stmt, ctx: _PollCtx) -> tirx.Stmt | None:
    """Insert polls into ``stmt``; None if there was no place for one (the caller guards
    ``stmt`` whole). Where polls are inserted, every other statement is guarded."""
    if ctx.interval is None or not _descendable(stmt, ctx):
        return None
    if isinstance(stmt, tirx.SeqStmt):
        parts = [_poll_rewrite(c, ctx) for c in stmt.seq]
        if all(p is None for p in parts):
            return None
        return _seq(
            [
                p if p is not None else (c if _is_definition(c) else ctx.when_running(c))
                for p, c in zip(parts, stmt.seq, strict=True)
            ]
        )
    if isinstance(stmt, tirx.AttrStmt):
        b = _poll_rewrite(stmt.body, ctx)
        return None if b is None else _replace_body(stmt, b)
    assert isinstance(stmt, tirx.For)
    if _thread_tag(stmt) is not None:
        ctx.thread_vars.append(stmt.loop_var)
        try:
            b = _poll_rewrite(stmt.body, ctx)
        finally:
            ctx.thread_vars.pop()
        return None if b is None else _replace_body(stmt, b)
    if _pollable(stmt, ctx):
        ctx.polls += 1
        ctx.count_trips(stmt)
        return _chunked_poll_loop(stmt, ctx)
    ctx._outer_trips.append(_const_int(stmt.extent))  # a short loop: look inside
    try:
        b = _poll_rewrite(stmt.body, ctx)
    finally:
        ctx._outer_trips.pop()
    return None if b is None else _replace_body(stmt, b)


def _chunked_poll_loop(loop: tirx.For, ctx: _PollCtx) -> tirx.Stmt:
    """``for k in range(min, min + extent): body`` polled every N iterations, N the kernel's
    ``reef_poll_every`` launch argument (N <= 0: one chunk, i.e. no poll)::

        if stop == 0:
            for chunk in range(ceildiv(extent, N)):
                if stop == 0 and chunk != 0:
                    barrier; if tid == 0: stop = flag read; barrier
                if stop == 0:
                    for k in range(min + chunk * N, +min(N, extent - chunk * N)): body

    Barrier 1 keeps thread 0 from overwriting ``stop`` while others still read the old
    value, barrier 2 publishes the new one. The loop is split into chunks of N rather than
    guarded per iteration so that a block that stopped (or never started the loop) skips
    the rest in extent / N steps: TIR has no portable ``break`` (TVM's AMDGPU codegen
    rejects ``Break``), and iterating a guarded loop to its end cost as much as the work
    in a kernel whose iterations are short (measured on ``rows``). N is a scalar argument,
    uniform over the block, so the chunk loop stays a uniform loop (barriers legal).
    """
    assert ctx.every is not None
    dt = _dtype(loop.loop_var)
    every = ctx.every if dt == _I32 else tirx.Cast(dt, ctx.every)
    # chunk length: min(N, extent), and extent (one chunk, no poll) for N <= 0. Min/Max
    # arithmetic, not a Select: with a Select TVM's buffer compaction lost the bound of the
    # tile a chunk iteration touches and sized matmul's shared tiles for the whole K loop
    # (190 KB in the DKP form).
    one = tirx.IntImm(dt, 1)
    e = tirx.Max(every, tirx.IntImm(dt, 0))
    nn = tirx.Max(tirx.Min(e + loop.extent * (one - tirx.Min(e, one)), loop.extent), one)
    chunk = tirx.Var("reef_chunk", dt)
    # operands are >= 0 here, where C division is floor division (and prints plainly)
    chunks = tirx.op.truncdiv(loop.extent + nn - 1, nn)
    inner = tirx.For(
        loop.loop_var,
        loop.min + chunk * nn,
        tirx.Min(nn, loop.extent - chunk * nn),
        loop.kind,
        loop.body,
        None,
        loop.annotations,
    )
    poll = ctx.when_running(_uniform_if(chunk != 0, _seq([_sync(), ctx.read_flag(), _sync()])))
    outer = tirx.For(chunk, 0, chunks, tirx.ForKind.SERIAL, _seq([poll, ctx.when_running(inner)]))
    return ctx.when_running(outer)


@dataclass
class KernelPreempt:
    """What the preemptible rewrite did to one kernel (the ``reef.preemptible`` record)."""

    poll_loops: int  # loops that got poll points
    poll_param: str | None  # the kernel's reef_poll_every parameter; None without poll loops
    loop_trips: int | None  # iterations of the polled loops per block (None: symbolic)


def _preempt_kernel(
    root: tirx.For,
    index: int,
    flag: tvm.ir.expr.Var,
    slot: tvm.ir.expr.Var,
    interval: int | None,
    allocs: list,
) -> tuple[tirx.Stmt, KernelPreempt, tvm.ir.expr.Var | None]:
    shape = kernel_shape(root)
    inner = _block_level_body(root, shape)
    stop = tirx.decl_buffer((1,), _I32, name=f"reef_stop_{index}", scope="shared", layout=None)
    allocs.append(stop)
    every = tirx.Var(POLL_PARAM + ("" if index == 0 else f"_{index}"), _I32)
    ctx = _PollCtx(stop=stop, flag=flag, shape=shape, interval=interval, every=every)
    if not shape.block_chain:
        ctx.thread_vars.append(root.loop_var)
    body = _poll_rewrite(inner, ctx)
    if body is None:
        body = ctx.when_running(inner)
    # Completion count. Every thread fences its own stores (on AMDGPU the fence waits for
    # this wave's stores to reach the L2; a barrier alone does not), the barrier then says
    # every thread of the block is done, and thread 0 fences again (the CUDA pattern of
    # cooperative groups' grid sync: barrier, fence, atomic) and counts the block unless it
    # stopped. So a reader that sees the count also sees the block's outputs. `stop` is only
    # written between barriers that all threads pass, so thread 0's view is the block's.
    v = tirx.Var("reef_stop", _I32)
    count = _one_thread(
        shape,
        _seq(
            [
                tirx.Bind(v, stop[0]),
                tirx.IfThenElse(
                    v == 0,
                    _seq(
                        [
                            _fence(),
                            tirx.Evaluate(_atomic_add(slot, tirx.IntImm("uint32", 1), "uint32")),
                        ]
                    ),
                    None,
                ),
            ]
        ),
    )
    new_inner = _seq([ctx.read_flag(), _sync(), body, _fence(), _sync(), count])
    info = KernelPreempt(
        poll_loops=ctx.polls,
        poll_param=every.name if ctx.polls else None,
        loop_trips=ctx.trips if ctx.polls else 0,
    )
    return _rebuild_chain(root, shape, new_inner), info, every if ctx.polls else None


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


def preemptible_func(func: tirx.PrimFunc, poll_interval: int | None = None) -> tirx.PrimFunc:
    """The preemptible variant of one PrimFunc (unchanged if it launches no kernel)."""
    if poll_interval is not None and (
        not isinstance(poll_interval, int) or isinstance(poll_interval, bool) or poll_interval < 1
    ):
        raise ValueError(f"poll_interval must be None or an int >= 1, got {poll_interval!r}")
    attrs = func.attrs if func.attrs is not None else {}
    if ATTR_PREEMPTIBLE in attrs:
        raise ValueError("PrimFunc is already preemptible")
    if ATTR_DKP in attrs or ATTR_DISPATCH in attrs:
        # the flag check and the count would sit outside the virtual-block loop: a persistent
        # block would check the flag once, and count once for many virtual blocks
        raise ValueError(
            "make_preemptible on a DKP-ready PrimFunc: persistent blocks would miss the flag "
            "and never complete their count; apply make_preemptible first, then "
            "make_dkp_ready (make_preemptible_dkp does both)"
        )
    if _count_kernels(func) == 0:
        return func
    flag = tirx.decl_buffer((1,), _I32, name=FLAG_PARAM, layout=None)
    slot = tirx.decl_buffer((1,), "uint32", name=SLOT_PARAM, layout=None)
    allocs: list = []
    kernels: list[KernelPreempt] = []
    poll_params: list[tvm.ir.expr.Var] = []

    def rewrite(root: tirx.For) -> tirx.Stmt:
        out, info, every = _preempt_kernel(root, len(kernels), flag, slot, poll_interval, allocs)
        kernels.append(info)
        if every is not None:
            poll_params.append(every)
        return out

    body = _map_kernels(_func_body(func), rewrite)
    new_body = _with_root_allocs(func, body, allocs)
    info = {
        "poll_interval": poll_interval,
        "kernels": len(kernels),
        "poll_loops": [k.poll_loops for k in kernels],
        "poll_params": [k.poll_param for k in kernels],
        "loop_trips": [k.loop_trips for k in kernels],
    }
    params = list(func.params) + [flag, slot] + poll_params
    out = tirx.PrimFunc(params, new_body, func.ret_type, func.attrs)
    return out.with_attr(ATTR_PREEMPTIBLE, json.dumps(info))


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


def make_preemptible(mod: tvm.IRModule, poll_interval: int | None = None) -> tvm.IRModule:
    """Preemptible variant of every kernel-bearing PrimFunc in ``mod`` (see module doc).

    ``poll_interval``: None = check the flag at block start only; N >= 1 = also give each
    kernel's outermost long (extent > N) uniform serial loops poll points. A kernel with
    such loops takes an int32 launch argument ``reef_poll_every`` (``_i`` for kernel i >= 1
    of a PrimFunc): poll every that many iterations, 0 = only at block start; N is its
    default value. Functions without a kernel, and non-TIR functions, are returned
    unchanged. A DKP-ready or dispatcher PrimFunc is refused (ValueError): use
    ``make_preemptible_dkp``.
    """
    return _map_funcs(mod, lambda f: preemptible_func(f, poll_interval))


def make_preemptible_dkp(mod: tvm.IRModule, poll_interval: int | None = None) -> tvm.IRModule:
    """The preemptible DKP variant: DKP-ready kernels that take the flag, the completion
    slot and (with polls) ``reef_poll_every``; the flag is checked, polled and the slot
    counted per *virtual* block, so BE work launched through DKP can be preempted."""
    return make_dkp_ready(make_preemptible(mod, poll_interval))


# --------------------------------------------------------------------------- DKP


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
        # The block indices are let-bound from the virtual index. (One-trip loops starting
        # at the index would keep them loop variables, but then bindings such as
        # bx // 784 stop being affine and LowerCrossThreadReduction skips the reduction.)
        binds: list[tirx.Stmt] = [
            tirx.Bind(v, val) for v, val in _linear_block_decomposition(vb, shape)
        ]
        body = _seq([*binds, shape.block_chain[-1].body])
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
    extent: tvm.ir.PrimExpr, fbody: Callable[[tvm.ir.expr.Var], tirx.Stmt]
) -> tirx.For:
    pb = tirx.Var("reef_pblock", _I32)
    iv = tirx.IterVar(Range(0, extent), pb, 1, "blockIdx.x")
    return tirx.For(pb, 0, extent, tirx.ForKind.THREAD_BINDING, fbody(pb), iv)


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
        return _block_x_loop(grid, lambda pb: _vblock_loop(d, pb, grid, begin, count))

    body = _map_kernels(_func_body(func), rewrite)
    if isinstance(func.body, s_tir.SBlockRealize):
        new_body = _with_root_allocs(func, body, [])
    else:
        new_body = body
    out = tirx.PrimFunc(list(func.params) + new_params, new_body, func.ret_type, func.attrs)
    return out.with_attr(ATTR_DKP, json.dumps(infos))


def make_dkp_ready(mod: tvm.IRModule) -> tvm.IRModule:
    """DKP-ready variant of every kernel-bearing PrimFunc in ``mod`` (see module doc).

    Per kernel ``i`` of a PrimFunc, three int32 params are appended: ``reef_vblock_begin``,
    ``reef_vblock_count``, ``reef_grid_blocks`` (suffixed ``_i`` for i >= 1). The kernel
    is launched with grid (reef_grid_blocks, 1, 1) and the original block shape; the
    PrimFunc attribute ``reef.dkp`` (JSON) lists each kernel's original grid/block.
    """
    return _map_funcs(mod, dkp_func)


def dkp_info(func: tirx.PrimFunc) -> list[dict]:
    """The ``reef.dkp`` attribute of a DKP-ready PrimFunc, decoded."""
    return json.loads(str(func.attrs[ATTR_DKP]))


def preempt_info(func: tirx.PrimFunc) -> dict:
    """The ``reef.preemptible`` attribute of a preemptible PrimFunc, decoded."""
    return json.loads(str(func.attrs[ATTR_PREEMPTIBLE]))


# --------------------------------------------------------------------------- dispatcher

DISPATCH_SPLIT = "reef_split_blocks"
ATTR_DISPATCH = "reef.dispatch"


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
