"""ModelInstance against a fake device: buffers, weights, argument binding, slots."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.errors import PackageError, UnsupportedError
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.package.files import ModelPackage
from reef_rocm.package.weights import generate
from reef_rocm.runtime.executor import ModelInstance

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
    variants = ",".join(available_variants())  # plain, and preemptible/dkp when available
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
    s = dev.create_stream()
    inst.read_slots_async(s)
    assert inst.first_incomplete() == 0
    # pretend kernels 0..2 finished every block
    counts = np.zeros(n, np.uint32)
    counts[:3] = [np.prod(k.grid) for k in inst.kernels[:3]]
    dev.copy_to_device(inst.completion_slots, counts, s)
    inst.read_slots_async(s)
    assert inst.first_incomplete() == 3 and inst.completed()[:3].all()
    inst.begin(s)
    assert not inst.read_slots(s).any() and inst.first_incomplete() == 0


def test_dkp_default_launch(package):
    """The dkp variant launches every kernel with its default grid (one physical block per
    virtual block) and the reef_ scalars that make it compute what plain does."""
    if "dkp" not in package.manifest.variants:
        pytest.skip("no dkp variant")
    dev = FakeDevice()
    inst = ModelInstance(dev, package, variant="dkp")
    plain = package.manifest.variant("plain").kernels
    inst.run(package.reference_inputs())
    assert len(dev.launched) == len(plain) == inst.num_kernels
    for (name, cfg, args), k, p in zip(dev.launched, inst.kernels, plain, strict=True):
        n = p.grid[0] * p.grid[1] * p.grid[2]
        assert name == k.name == p.name and k.dkp.virtual_blocks == n
        assert tuple(cfg.grid) == (n, 1, 1) and tuple(cfg.block) == tuple(p.block)
        roles = {a["name"]: k.dkp.params[a["name"]] for a in k.args if a["kind"] == "reef_param"}
        assert sorted(roles.values()) == ["grid_blocks", "vblock_begin", "vblock_count"]
        want = {"vblock_begin": 0, "vblock_count": n, "grid_blocks": n}
        for a, spec in zip(args, k.args, strict=True):
            if spec["kind"] == "reef_param":
                assert isinstance(a, np.int32) and int(a) == want[roles[spec["name"]]]
            else:
                assert isinstance(a, DevicePtr) and a.ptr == inst.buffers[spec["id"]].ptr
    # a DKP runtime's launch: part of the virtual blocks on a smaller grid
    k = inst.kernels[0]
    dev.launched.clear()
    inst.bind_dkp(0, 1, 3, 2).launch(dev.create_stream())
    ((_, cfg, args),) = dev.launched
    assert tuple(cfg.grid) == (2, 1, 1) and tuple(cfg.block) == tuple(k.block)
    got = {k.dkp.params[s["name"]]: int(a) for a, s in zip(args, k.args, strict=True)
           if s["kind"] == "reef_param"}  # fmt: skip
    assert got == {"vblock_begin": 1, "vblock_count": 3, "grid_blocks": 2}
    with pytest.raises(ValueError, match="virtual blocks"):
        inst.bind_dkp(0, 1, k.dkp.virtual_blocks, 2)
    inst.close()
    with pytest.raises(UnsupportedError, match="not a dkp"):
        ModelInstance(dev, package).bind_dkp(0, 0, 1, 1)


def test_reef_param_without_default_is_refused(package):
    """A reef_ scalar the manifest gives no default for (e.g. a dispatcher's split) is for the
    DKP runtime; the executor says so instead of launching garbage."""
    if "dkp" not in package.manifest.variants:
        pytest.skip("no dkp variant")
    k = package.manifest.variant("dkp").kernels[0]
    saved = list(k.args)
    k.args.append({"kind": "reef_param", "name": "reef_split_blocks", "dtype": "int32"})
    try:
        with pytest.raises(UnsupportedError, match="reef_split_blocks"):
            ModelInstance(FakeDevice(), package, variant="dkp")
    finally:
        k.args[:] = saved


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
