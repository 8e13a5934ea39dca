"""Idempotence by construction, for every zoo model, from the manifest alone.

For every kernel k, re-running any kernel j <= k after kernels 0..k ran must give the same
results. That holds iff every buffer is written by exactly one kernel, never an input or
parameter, and read only after its writer ran (reef_rocm.package.manifest.idempotence_violations).
The read/write sets come from the lowered TIR (which pointer parameters each device kernel
stores to), so this needs TVM's lowering but no code generation: ~1 s per model except
DenseNet-201 (~20 s on 2 cores), against minutes for a full compile.
"""

from __future__ import annotations

import pytest

pytest.importorskip("tvm")

from reef_rocm.compiler.build import plan_manifest  # noqa: E402
from reef_rocm.compiler.zoo import ZOO  # noqa: E402
from reef_rocm.package.manifest import (  # noqa: E402
    Buffer,
    LaunchRecord,
    Manifest,
    Variant,
    idempotence_violations,
)

SMALL = ("tiny_cnn", "resnet18")


@pytest.mark.parametrize(
    "model",
    [m if m in SMALL else pytest.param(m, marks=pytest.mark.slow) for m in ZOO],
)
def test_zoo_manifest_is_rerunnable(model):
    m = plan_manifest(model, "cuda:sm_90")
    kernels = m.variant("plain").kernels
    assert kernels and idempotence_violations(m) == []
    # every intermediate/output buffer is some kernel's output; no buffer is shared storage
    written = {b for k in kernels for b in k.writes}
    for b in m.buffers:
        if b.role in ("intermediate", "output"):
            assert b.id in written, b.name


def _toy(kernels: list[LaunchRecord]) -> Manifest:
    bufs = [
        Buffer(0, "x", "float32", [4], 16, "input"),
        Buffer(1, "w", "float32", [4], 16, "param", {"kind": "const", "value": 1.0}),
        Buffer(2, "a", "float32", [4], 16, "intermediate"),
        Buffer(3, "y", "float32", [4], 16, "output"),
    ]
    return Manifest(
        {}, {}, {}, bufs, [0], [3], {}, {"plain": Variant("plain", "", "", kernels)}, {}
    )


def _k(name: str, args: list[int], writes: list[int]) -> LaunchRecord:
    return LaunchRecord(
        name, name, [1, 1, 1], [1, 1, 1], 0, [{"kind": "buffer", "id": i} for i in args], writes
    )


def test_checker_catches_reuse():
    good = _toy([_k("k0", [0, 1, 2], [2]), _k("k1", [2, 3], [3])])
    assert idempotence_violations(good) == []
    # storage reuse: k2 overwrites a, which k1 reads; re-running k1 after k2 differs
    reuse = _toy([_k("k0", [0, 1, 2], [2]), _k("k1", [2, 3], [3]), _k("k2", [3, 2], [2])])
    assert any("again" in p for p in idempotence_violations(reuse))
    # in-place update of the input
    inplace = _toy([_k("k0", [0], [0]), _k("k1", [0, 3], [3])])
    assert any("writes input" in p for p in idempotence_violations(inplace))
    # read before any write
    early = _toy([_k("k0", [2, 3], [3]), _k("k1", [0, 2], [2])])
    assert any("before any write" in p for p in idempotence_violations(early))


def _lowered_records(func) -> list[LaunchRecord]:
    """Launch records of one PrimFunc f(x, y) bound to buffers 2 (x) and 3 (y) of _toy."""
    import tvm

    from reef_rocm.compiler.graph import PlanCall
    from reef_rocm.compiler.kernels import bind_kernels, lower_kernels, primfunc_param_names

    mod = tvm.IRModule({"f": func.with_attr("global_symbol", "f")})
    build = lower_kernels(mod, tvm.target.Target({"kind": "cuda", "arch": "sm_90"}))
    call = PlanCall("f", [{"kind": "buffer", "id": 2}, {"kind": "buffer", "id": 3}], [3])
    return bind_kernels([call], build, primfunc_param_names(mod))


def _kernels_for(body: str) -> list[LaunchRecord]:
    """Launch records of f(x, y), a 2 x 64-thread kernel with the TVMScript ``body``."""
    import tvm

    src = (
        "@T.prim_func\n"
        "def f(x: T.Buffer((128,), 'float32'), y: T.Buffer((128,), 'float32')):\n"
        "    T.func_attr({'tirx.noalias': True})\n"
        "    for bx in T.thread_binding(2, thread='blockIdx.x'):\n"
        "        for tx in T.thread_binding(64, thread='threadIdx.x'):\n"
        + "".join(f"            {line}\n" for line in body.splitlines())
    )
    return _lowered_records(tvm.script.from_source(src))


def test_in_place_update_is_flagged():
    """A kernel that reads and writes one buffer (y += x) is not re-runnable: a re-run
    starts from its first run's result. Seen from the lowered TIR, not from arguments."""
    (k,) = _kernels_for("y[bx * 64 + tx] = y[bx * 64 + tx] + x[bx * 64 + tx]")
    assert k.writes == [3] and k.loads == [2, 3]
    m = _toy([_k("k0", [0, 1, 2], [2]), k])
    assert any("reads and writes buffer 3" in p for p in idempotence_violations(m))


def test_atomic_update_is_flagged():
    (k,) = _kernels_for(
        "T.evaluate(T.call_intrin('float32', 'tirx.atomic_add', "
        "T.address_of(y[tx]), x[bx * 64 + tx]))"
    )
    assert 3 in k.writes and 3 in k.loads  # an atomic reads what it updates
    m = _toy([_k("k0", [0, 1, 2], [2]), k])
    assert any("reads and writes buffer 3" in p for p in idempotence_violations(m))


def test_init_then_accumulate_is_not_flagged():
    """dlight's fallback reductions initialise the output, then accumulate into it (e.g.
    max_pool2d): the kernel reads only what it wrote itself, so a re-run starts afresh."""
    (k,) = _kernels_for(
        "y[bx * 64 + tx] = T.float32(0)\n"
        "for j in range(4):\n"
        "    y[bx * 64 + tx] = T.max(y[bx * 64 + tx], x[bx * 64 + (tx + j) % 64])"
    )
    assert k.writes == [3] and k.loads == [2]
    assert idempotence_violations(_toy([_k("k0", [0, 1, 2], [2]), k])) == []
    # reading an element it did not write first is an in-place read
    (k2,) = _kernels_for(
        "y[bx * 64 + tx] = T.float32(0)\n"
        "y[bx * 64 + (tx + 1) % 64] = y[bx * 64 + (tx + 1) % 64] + x[tx]"
    )
    assert 3 in k2.loads
