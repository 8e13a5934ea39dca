"""The weight generator must give the same numbers on every machine and numpy version."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from reef_rocm.package.weights import _key, generate, random_bits

MASK = (1 << 64) - 1


def _splitmix_py(key: int, i: int) -> int:
    """Pure-Python splitmix64 (arbitrary-precision ints): an independent implementation."""
    z = (key + (i + 1) * 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_bits_match_pure_python():
    key = _key(3, "layer.weight")
    got = random_bits(3, "layer.weight", 1000, 1010)
    assert [int(x) for x in got] == [_splitmix_py(key, i) for i in range(1000, 1010)]


def test_golden_values():
    # recorded once; a change here means every package's weights changed
    a = generate(0, "conv1.weight", (5,), "float32", {"kind": "uniform", "bound": 1.0})
    assert a.tolist() == [
        -0.5192272663116455, -0.8965753316879272, -0.5868947505950928,
        -0.658044695854187, 0.9579827785491943,
    ]  # fmt: skip
    ids = generate(7, "input:input_ids", (4,), "int32", {"kind": "randint", "high": 30522})
    assert ids.tolist() == [12921, 7551, 29120, 5375]


def test_chunking_does_not_change_values(monkeypatch):
    import reef_rocm.package.weights as w

    init = {"kind": "uniform", "bound": 0.5, "center": 0.25}
    whole = generate(1, "t", (3, 1000), "float32", init)
    monkeypatch.setattr(w, "_CHUNK", 7)
    assert np.array_equal(whole, generate(1, "t", (3, 1000), "float32", init))
    assert whole.min() >= -0.25 and whole.max() < 0.75


def test_streams_differ_and_consts():
    init = {"kind": "uniform", "bound": 1.0}
    assert not np.array_equal(
        generate(0, "a", (8,), "float32", init), generate(0, "b", (8,), "float32", init)
    )
    assert not np.array_equal(
        generate(0, "a", (8,), "float32", init), generate(1, "a", (8,), "float32", init)
    )
    assert np.all(generate(0, "g", (2, 3), "float32", {"kind": "const", "value": 1.0}) == 1.0)
    with pytest.raises(ValueError):
        generate(0, "x", (2,), "float32", {"kind": "normal"})


def test_runtime_does_not_import_tvm():
    # the GPU host has no TVM: the executor, package reader and weights must not need it
    code = (
        "import sys, reef_rocm.runtime.executor, reef_rocm.runtime.bench, "
        "reef_rocm.package.files; assert 'tvm' not in sys.modules, 'tvm imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_generated_weights_are_cached_read_only_and_equal(tmp_path, monkeypatch):
    """A second load of the same package reuses the generated tensor (benchmarks reload models
    for every policy) and cannot be corrupted through it."""
    import reef_rocm.package.files as files

    monkeypatch.setattr(files, "_CACHE", files.OrderedDict())
    init = {"kind": "uniform", "bound": 0.5}
    a = files._generated(3, "w", (64, 8), "float32", init)
    b = files._generated(3, "w", (64, 8), "float32", init)
    assert a is b and not a.flags.writeable
    assert np.array_equal(a, generate(3, "w", (64, 8), "float32", init))
    monkeypatch.setenv("REEF_WEIGHT_CACHE_MB", "0")
    c = files._generated(4, "w", (64, 8), "float32", init)
    assert c.flags.writeable and len(files._CACHE) == 1
