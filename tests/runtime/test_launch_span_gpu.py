"""On the GPU, ``launch_range`` through the C span launcher computes bit for bit what launching
kernel by kernel computes: through the same C launchers one call each, and through the
cuda-bindings path (REEF_NO_FASTLAUNCH, a second instance); all match the CPU reference.
Packages as in test_executor_gpu.py ($REEF_PACKAGES, default .carry/packages). The extension
is the installed build or one compiled here (tests/fastlaunch_ext.py)."""

from __future__ import annotations

import numpy as np
import pytest
from fastlaunch_ext import extension, use_extension

from reef_rocm.gpu.api import DevicePtr
from reef_rocm.package.files import ModelPackage

from .test_executor_gpu import _paths, assert_matches, dev  # noqa: F401  (dev: the fixture)

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def ext(tmp_path_factory):
    return extension(tmp_path_factory.mktemp("fastlaunch"))


def _outputs(inst, s) -> list[np.ndarray]:
    return [inst.get_output(k, s) for k in range(len(inst.package.manifest.outputs))]


def _zero_outputs(inst, s) -> None:
    """So a path that launched nothing cannot pass on the previous run's results."""
    for b in inst.package.manifest.outputs:
        view = inst.buffers[b]
        inst.device.memset32(DevicePtr(view.ptr), 0, view.nbytes // 4, s)


def _variants(path) -> list[str]:
    m = ModelPackage.load(path).manifest
    return [v for v in ("plain", "preemptible") if v in m.variants]


@pytest.mark.parametrize(
    "path,variant",
    [(p, v) for p in _paths() for v in _variants(p)],
    ids=lambda x: x if isinstance(x, str) else x.name,
)
def test_span_is_bit_identical_to_per_launch(dev, ext, monkeypatch, path, variant):  # noqa: F811
    from reef_rocm.runtime.executor import ModelInstance

    fl = use_extension(ext, monkeypatch)
    pkg = ModelPackage.load(path)
    inputs = pkg.reference_inputs()
    with ModelInstance(dev, pkg, variant=variant) as inst:
        assert inst._span is not None, "every CUDA launch has a C launcher: one span"
        s = dev.create_stream()
        span_out = inst.run(inputs, s)
        for o, r in zip(span_out, pkg.reference_outputs(), strict=True):
            assert_matches(o, r, f"{pkg.name} {variant} through the span")
        # kernel by kernel, through the same C launchers
        _zero_outputs(inst, s)
        for i in range(inst.num_kernels):
            inst.launch(i, s)
        for a, b in zip(span_out, _outputs(inst, s), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{pkg.name}: span vs per launch")
        # two spans split at every third of the model, as the scheduler's BE runs between marks
        n = inst.num_kernels
        for j in sorted({1, n // 3, 2 * n // 3, n - 1}):
            _zero_outputs(inst, s)
            inst.launch_range(s, 0, j)
            inst.launch_range(s, j)
            for a, b in zip(span_out, _outputs(inst, s), strict=True):
                np.testing.assert_array_equal(a, b, err_msg=f"{pkg.name}: spans split at {j}")
        s.close()
    monkeypatch.setenv("REEF_NO_FASTLAUNCH", "1")  # the bindings path, loop in Python
    assert not fl.available()
    with ModelInstance(dev, pkg, variant=variant) as loop:
        assert loop._span is None
        s = dev.create_stream()
        for a, b in zip(span_out, loop.run(inputs, s), strict=True):
            np.testing.assert_array_equal(a, b, err_msg=f"{pkg.name}: span vs bindings loop")
        s.close()
