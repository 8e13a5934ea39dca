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
