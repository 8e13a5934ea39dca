"""A tiny tuning task (a 16x32 by 32x24 NT-matmul plus bias, like a dense layer) and its
exported bundle, shared by the tune tests."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

M, N, K = 16, 24, 32


def dense_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> list[np.ndarray]:
    return [(x.astype(np.float64) @ w.astype(np.float64).T + b).astype(np.float32)]


def tiny_task():
    tvm = pytest.importorskip("tvm")
    import tvm_ffi
    from tvm import te

    from reef_rocm.compiler.tune.tasks import TuneTask

    x = te.placeholder((M, K), name="x")
    w = te.placeholder((N, K), name="w")
    b = te.placeholder((N,), name="b")
    k = te.reduce_axis((0, K), name="k")
    mm = te.compute((M, N), lambda i, j: te.sum(x[i, k] * w[j, k], axis=k), name="NT_matmul")
    out = te.compute((M, N), lambda i, j: mm[i, j] + b[j], name="T_add")
    f = te.create_prim_func([x, w, b, out]).with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": f})
    return TuneTask(
        str(tvm_ffi.structural_hash(mod)),
        "fused_NT_matmul_add",
        mod,
        calls=2,
        profiled_us=30.0,
        models={"tiny": 2},
        output_params=[3],
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory):
    """A bundle of the tiny task: the default schedule plus 3 random candidates."""
    from reef_rocm.compiler.codegen import find_nvcc

    if find_nvcc() is None:
        pytest.skip("nvcc not found")
    from reef_rocm.compiler.targets import parse_target
    from reef_rocm.compiler.tune.export import export_bundle

    task = tiny_task()
    out = tmp_path_factory.mktemp("bundle") / "round1"
    stats = export_bundle([task], parse_target("cuda:sm_90"), out, trials=3, seed=1, progress=False)
    assert stats.tasks == 1
    return out, task
