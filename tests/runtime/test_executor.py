"""ModelInstance against a fake device: buffers, weights, argument binding, slots."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.errors import PackageError, UnsupportedError
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.runtime.executor import ModelInstance
from reef_rocm.runtime.package import ModelPackage
from reef_rocm.runtime.weights import generate

from .fake_device import FakeDevice

pytest.importorskip("tvm")
HAVE_NVCC = shutil.which("nvcc") is not None or Path("/usr/local/bin/nvcc").exists()
pytestmark = pytest.mark.skipif(not HAVE_NVCC, reason="nvcc not installed")


@pytest.fixture(scope="module")
def package(tmp_path_factory):
    from reef_rocm.compiler.build import available_variants, compile_model

    d = tmp_path_factory.mktemp("pk")
    mp = pytest.MonkeyPatch()
    mp.setenv("REEF_CACHE", str(d / "cache"))
    variants = "plain,preemptible" if "preemptible" in available_variants() else "plain"
    r = compile_model("tiny_cnn", "cuda:sm_90", out_dir=d, variants=variants, progress=False)
    mp.undo()
    return ModelPackage.load(r.path)


def test_buffers_weights_and_arguments(package):
    dev = FakeDevice()
    inst = ModelInstance(dev, package)
    m = package.manifest
    assert inst.num_kernels == len(m.variant().kernels)
    # every param buffer holds the generator's values
    for b in m.params():
        want = generate(m.weights["seed"], b.name, b.shape, b.dtype, b.init)
        got = np.frombuffer(dev.read(inst.buffers[b.id].ptr, b.bytes), dtype=b.dtype)
        assert np.array_equal(got, want.reshape(-1))
    # buffers do not overlap
    spans = sorted((v.ptr, v.ptr + v.nbytes) for v in inst.buffers)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:], strict=False))
    # each launch passes the manifest's buffers, in order
    x = package.reference_inputs()[0]
    dev.launched.clear()
    out = inst.run([x])
    assert len(dev.launched) == inst.num_kernels
    for (name, cfg, args), k in zip(dev.launched, m.variant().kernels, strict=True):
        assert name == k.name and list(cfg.grid) == k.grid and list(cfg.block) == k.block
        for a, spec in zip(args, k.args, strict=True):
            assert isinstance(a, DevicePtr) and a.ptr == inst.buffers[spec["id"]].ptr
    # input uploaded; output downloaded from its buffer (kernels do not run: still zeros)
    bid = m.inputs[0]
    assert dev.read(inst.buffers[bid].ptr, x.nbytes) == x.tobytes()
    assert out[0].shape == tuple(m.buffers[m.outputs[0]].shape) and not out[0].any()
    inst.close()


def test_launch_range_and_slots(package):
    if "preemptible" not in package.manifest.variants:
        pytest.skip("no preemptible variant")
    dev = FakeDevice()
    inst = ModelInstance(dev, package, variant="preemptible")
    n = inst.num_kernels
    inst.launch_range(dev.create_stream(), 2, 4)
    assert [c[0] for c in dev.launched] == [k.name for k in inst.kernels[2:4]]
    for k, (_, _, args) in enumerate(dev.launched, start=2):
        kinds = [a["kind"] for a in inst.kernels[k].args]
        assert args[kinds.index("completion_slot")].ptr == inst.completion_slots.ptr + 4 * k
        assert args[kinds.index("preempt_flag")].ptr == inst.preempt_flag.ptr
    assert inst.first_incomplete() == 0
    # pretend kernels 0..2 finished every block
    counts = np.zeros(n, np.uint32)
    counts[:3] = [np.prod(k.grid) for k in inst.kernels[:3]]
    dev.copy_to_device(inst.completion_slots, counts)
    assert inst.first_incomplete() == 3 and inst.completed()[:3].all()
    inst.reset_slots()
    assert inst.first_incomplete() == 0 and not inst.slot_counts().any()


def test_wrong_device_and_bad_package(package, tmp_path):
    with pytest.raises(UnsupportedError, match="sm_80"):
        ModelInstance(FakeDevice(arch="sm_80"), package)
    with pytest.raises(UnsupportedError):
        ModelInstance(FakeDevice(backend="hip", arch="gfx90a"), package)
    with pytest.raises(PackageError, match="manifest"):
        ModelPackage.load(tmp_path)
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(PackageError, match="unreadable"):
        ModelPackage.load(tmp_path)
    broken = tmp_path / "broken"
    shutil.copytree(package.path, broken)
    (broken / package.manifest.variant().binary).unlink()
    with pytest.raises(PackageError, match="missing"):
        ModelPackage.load(broken)
