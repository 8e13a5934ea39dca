"""The preemptible variant (``make_preemptible``): a flag check at block start, poll
points in long loops every ``reef_poll_every`` iterations, and a fenced completion count.
docs/transform.md, "Preemptible variant"."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import tvm
import tvm_ffi
from tvm import s_tir, tirx

from reef_rocm.compiler.transform.lowering import register_lowerings
from reef_rocm.compiler.transform.tir import (
    _COMM_REDUCE,
    _I32,
    ATTR_DISPATCH,
    ATTR_DKP,
    ATTR_PREEMPTIBLE,
    FLAG_PARAM,
    POLL_PARAM,
    SLOT_PARAM,
    KernelShape,
    _atomic_add,
    _block_level_body,
    _const_int,
    _count_kernels,
    _dtype,
    _fence,
    _func_body,
    _map_funcs,
    _map_kernels,
    _one_thread,
    _rebuild_chain,
    _replace_body,
    _seq,
    _sync,
    _thread_tag,
    _uniform_if,
    _with_root_allocs,
    check_reductions_kept,
    kernel_shape,
)


@dataclass
class _PollCtx:
    stop: tvm.ir.expr.Var  # shared int32[1] of this kernel: 0 = run, 1 = stop
    flag: tvm.ir.expr.Var
    shape: KernelShape
    interval: int | None  # compile time: loops with more trips than this get poll points
    every: tvm.ir.expr.Var | None = None  # launch argument: poll every N iterations (0: never)
    thread_vars: list = field(default_factory=list)  # vars whose value differs per thread
    kernel_tiles: list = field(default_factory=list)  # _tile_buffers of the whole kernel
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

    def visit(s: s_tir.SBlockRealize) -> tvm_ffi.VisitInterrupt | None:
        for iv, value in zip(s.block.iter_vars, s.iter_values, strict=True):
            if int(iv.iter_type) == _COMM_REDUCE and var in tirx.analysis.undefined_vars(value):
                return tvm_ffi.VisitInterrupt(True)
        return None

    return tvm_ffi.structural_walk(stmt, (s_tir.SBlockRealize, visit), order="pre") is not None


def _holds_cross_thread_reduction(stmt: tirx.Stmt) -> bool:
    """Does ``stmt`` hold a thread loop that a reduction sblock reduces over?"""

    def visit(s: tirx.For) -> tvm_ffi.VisitInterrupt | None:
        tag = _thread_tag(s)
        if tag is not None and tag.startswith("threadIdx") and _reduces_over(s.body, s.loop_var):
            return tvm_ffi.VisitInterrupt(True)
        return None

    return tvm_ffi.structural_walk(stmt, (tirx.For, visit), order="pre") is not None


def _tile_buffers(stmt: tirx.Stmt) -> list[tvm.ir.Object]:
    """The shared/local buffer of every region an sblock in ``stmt`` reads or writes (one
    entry per region, so counts compare)."""
    out: list[tvm.ir.Object] = []

    def visit(b: s_tir.SBlock) -> None:
        for r in (*b.reads, *b.writes):
            if str(r.source.scope()).startswith(("shared", "local")):
                out.append(r.source)

    tvm_ffi.structural_walk(stmt, (s_tir.SBlock, visit), order="pre")
    return out


def _uses_outer_tile(loop: tirx.For, kernel_tiles: list[tvm.ir.Object]) -> bool:
    """Does ``loop`` access a shared/local tile at places that depend on its variable, a
    tile the kernel also uses outside the loop? A cooperative-fetch copy loop does (the
    compute after it reads the tile), and so does a loop reading back a tile filled
    before it. ``kernel_tiles``: ``_tile_buffers`` of the whole kernel."""
    touched: list = []

    def visit(r: s_tir.SBlockRealize) -> None:
        dep = [loop.loop_var] + [
            iv.var
            for iv, value in zip(r.block.iter_vars, r.iter_values, strict=True)
            if loop.loop_var in tirx.analysis.undefined_vars(value)
        ]
        for region in (*r.block.reads, *r.block.writes):
            if not str(region.source.scope()).startswith(("shared", "local")):
                continue
            used = [v for rng in region.region for v in tirx.analysis.undefined_vars(rng.min)]
            if any(v.same_as(d) for v in used for d in dep):
                touched.append(region.source)

    tvm_ffi.structural_walk(loop.body, (s_tir.SBlockRealize, visit), order="pre")
    if not touched:
        return False
    inside = _tile_buffers(loop.body)
    for buf in touched:
        n_in = sum(1 for b in inside if b.same_as(buf))
        if sum(1 for b in kernel_tiles if b.same_as(buf)) > n_in:
            return True
    return False


def _pollable(loop: tirx.For, ctx: _PollCtx) -> bool:
    if loop.kind != tirx.ForKind.SERIAL or ctx.interval is None:
        return False
    if loop.step is not None and _const_int(loop.step) != 1:
        return False
    ext = _const_int(loop.extent)
    if ext is not None and ext <= ctx.interval:
        return False
    if _uses_outer_tile(loop, ctx.kernel_tiles):
        # TVM allocates such a tile above the loop and sizes it from the loop's range;
        # chunked, that range depends on reef_poll_every, and the build failed ("Can only
        # handle constant size stack allocation") or sized the tile for the whole loop
        # (hundreds of KB of shared memory). Seen: MetaSchedule convs' copy loops (26 and
        # 72 trips in Inception-v3's conv2d30), pred_tile's read-back loop. Looked into
        # instead, like a short loop; a loop that holds the tile's whole life (the K loop
        # over tiles refilled each iteration) stays pollable.
        return False
    # Chunking gives the loop a launch-argument-dependent range. LowerCrossThreadReduction
    # then cannot prove the sblock's bindings affine, takes it for no reduction and leaves
    # it unlowered: every thread adds into the result unsynchronised (seen: MetaSchedule's
    # average pools, `for ow: for tx: sum over the window`). Such a loop is looked into
    # instead, like a short one.
    return not _holds_cross_thread_reduction(loop.body)


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
            barrier
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
    # ThreadSync takes a loop of 0 or 1 trips for one that runs, so it counts the poll's
    # barriers as run before every chunk, also chunk 0, and leaves out a barrier the body
    # needs after shared stores ahead of the loop (seen: MetaSchedule conv schedules that
    # fill a shared tile, then reduce over it in a polled loop, raced on the H200). This
    # barrier makes that assumption true for chunk 0.
    return ctx.when_running(_seq([_sync(), outer]))


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
    ctx = _PollCtx(
        stop=stop, flag=flag, shape=shape, interval=interval, every=every,
        kernel_tiles=_tile_buffers(inner),
    )  # fmt: skip
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
    check_reductions_kept(func, out, "the preemptible rewrite")
    return out.with_attr(ATTR_PREEMPTIBLE, json.dumps(info))


def preemptible_pass(poll_interval: int | None = None) -> tvm.transform.Pass:
    """The preemptible rewrite as a TVM module pass (``reef.MakePreemptible``): every
    kernel-bearing PrimFunc becomes ``preemptible_func(f, poll_interval)``; a module in
    which nothing changes is returned as is."""
    if poll_interval is not None and (
        not isinstance(poll_interval, int) or isinstance(poll_interval, bool) or poll_interval < 1
    ):
        raise ValueError(f"poll_interval must be None or an int >= 1, got {poll_interval!r}")

    @tvm.transform.module_pass(opt_level=0, name="reef.MakePreemptible")
    def run(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        register_lowerings()  # its atomics and fences must compile wherever the result goes
        return _map_funcs(mod, lambda f: preemptible_func(f, poll_interval))

    return run


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
    return preemptible_pass(poll_interval)(mod)


def preempt_info(func: tirx.PrimFunc) -> dict:
    """The ``reef.preemptible`` attribute of a preemptible PrimFunc, decoded."""
    return json.loads(str(func.attrs[ATTR_PREEMPTIBLE]))
