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
        fence                                             # device scope, every thread
        barrier                                           # the whole block is done
        if tid == 0 and stop[0] == 0: fence; atomic_add(slot, 1)

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
    kernel B's). Applied after ``make_preemptible`` (``make_preemptible_dkp``, the dkp_be
    variant) or merging preemptible kernels, the flag check, the polls and the completion
    count happen per virtual block; the other order is refused.

Atomics and the fence: TIR's target-neutral ``tirx.atomic_add`` is lowered by the LLVM
backends (AMDGPU: ``atomicrmw``; an add of 0 whose result is used becomes an atomic load,
``global_load_dword ... glc``) but TVM's CUDA source generator does not know it, and TVM's
AMDGPU codegen knows no fence: ``register_lowerings()`` (lowering.py) adds both. The build
calls it; the passes call it too, so whatever they return compiles.

One file per job: tir.py (shared TIR helpers), lowering.py, preemptible.py, dkp.py,
preemptible_dkp.py, dispatch.py. The rewrites are TVM module passes (``preemptible_pass``,
``dkp_pass``, ``preemptible_dkp_pass``); ``make_*`` apply them to one module.
"""

from reef_rocm.compiler.transform.dispatch import merge_dkp_kernels
from reef_rocm.compiler.transform.dkp import (
    DkpBody,
    dkp_body,
    dkp_func,
    dkp_info,
    dkp_pass,
    make_dkp_ready,
)
from reef_rocm.compiler.transform.lowering import register_lowerings
from reef_rocm.compiler.transform.preemptible import (
    KernelPreempt,
    make_preemptible,
    preempt_info,
    preemptible_func,
    preemptible_pass,
)
from reef_rocm.compiler.transform.preemptible_dkp import make_preemptible_dkp, preemptible_dkp_pass
from reef_rocm.compiler.transform.tir import (
    ATTR_DISPATCH,
    ATTR_DKP,
    ATTR_PREEMPTIBLE,
    DISPATCH_SPLIT,
    DKP_BEGIN,
    DKP_COUNT,
    DKP_GRID,
    FENCE_OP,
    FLAG_PARAM,
    POLL_PARAM,
    SLOT_PARAM,
    KernelShape,
    _count_kernels,
    _thread_tag,
    _walk,
    kernel_roots,
    kernel_shape,
)

__all__ = [
    "ATTR_DISPATCH", "ATTR_DKP", "ATTR_PREEMPTIBLE", "DISPATCH_SPLIT", "DKP_BEGIN", "DKP_COUNT",
    "DKP_GRID", "FENCE_OP", "FLAG_PARAM", "POLL_PARAM", "SLOT_PARAM", "DkpBody", "KernelPreempt",
    "KernelShape", "_count_kernels", "_thread_tag", "_walk", "dkp_body", "dkp_func", "dkp_info",
    "dkp_pass", "kernel_roots", "kernel_shape", "make_dkp_ready",
    "make_preemptible", "make_preemptible_dkp", "merge_dkp_kernels", "preempt_info",
    "preemptible_dkp_pass", "preemptible_func", "preemptible_pass", "register_lowerings",
]  # fmt: skip
