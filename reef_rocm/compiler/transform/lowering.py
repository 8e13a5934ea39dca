"""Lowerings for the ops the transform emits that TVM's code generators lack: the
generic ``tirx.atomic_add`` for CUDA source and the device-scope fence for AMDGPU.
Registered by ``register_lowerings()``, which the build calls (not on import)."""

from __future__ import annotations

from tvm import tirx

from reef_rocm.compiler.transform.tir import _I32, FENCE_OP


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


# The device-scope fence in the TIR (FENCE_OP) is TVM's ``tirx.cuda.thread_fence`` (CUDA source:
# ``__threadfence()``, i.e. ``fence.sc.gpu``). TVM's AMDGPU codegen knows no fence, and TIR
# cannot write LLVM's ``fence`` instruction, so for ROCm targets it is lowered to the
# instruction sequence LLVM itself emits for ``fence syncscope("agent") release`` on gfx9
# up to gfx90a (one L2 per agent): ``s_waitcnt vmcnt(0) expcnt(0) lgkmcnt(0)``, i.e. every
# memory operation this wave issued has completed (stores acknowledged by the L2).
# gfx94x (MI300: one L2 per XCD) would also need ``buffer_wbl2 sc1``, which TVM cannot emit.
_WAITCNT_ALL = 0  # s_waitcnt immediate with every counter field 0


def _lower_fence_rocm(op: tirx.Call) -> tirx.Call:
    return tirx.call_llvm_intrin("", "llvm.amdgcn.s.waitcnt", tirx.IntImm(_I32, _WAITCNT_ALL))


_registered = False


def register_lowerings() -> None:
    """Register the lowerings the transformed kernels need (idempotent, process-wide):
    ``tirx.atomic_add`` for CUDA (TVM's CUDA source generator does not know it) and the
    device-scope fence for ROCm. The build calls it before it compiles a variant; the
    passes that emit these ops call it too, so that whatever they return compiles."""
    global _registered
    if _registered:
        return
    tirx.op.register_intrin_lowering("tirx.atomic_add", "cuda", f=_lower_atomic_add_cuda, level=99)
    tirx.op.register_intrin_lowering(FENCE_OP, "rocm", f=_lower_fence_rocm, level=99)
    _registered = True
