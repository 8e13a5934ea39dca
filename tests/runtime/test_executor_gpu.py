"""Every packaged model runs on the GPU kernel by kernel and matches its CPU reference.

Packages are built on a CPU machine (the GPU host has no TVM) and carried:
    reef compile --zoo --target cuda:sm_90 --out .carry/packages
and looked up in $REEF_PACKAGES (default .carry/packages).

Tolerance: |gpu - cpu| <= 1e-3 * max|cpu| + 1e-3 * |cpu| per element. Both sides are fp32
without TF32 (TVM's dlight schedules emit plain FMA loops, no tensor cores). They differ in
summation order (the GPU tiles and splits reductions; LLVM's CPU loops run them in order),
FMA contraction and libm (expf/erf/tanh in softmax, GELU, LayerNorm); each dot product of
length K is off by ~sqrt(K) ulp, ~1e-6 relative, compounding over up to ~150 layers. We
observe well under 1e-4 of the output scale; 1e-3 leaves a margin without hiding a wrong
kernel (a wrong argument or launch shape gives O(1) errors).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.package.files import ModelPackage, find_packages

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("REEF_PACKAGES", ROOT / ".carry" / "packages"))
TARGET = os.environ.get("REEF_TARGET", "cuda:sm_90")
ZOO = ("tiny_cnn", "resnet18", "vgg19", "resnet152", "densenet201", "inception_v3", "distilbert")
RTOL = 1e-3


def _paths() -> list[Path]:
    return find_packages(PACKAGES, TARGET) if PACKAGES.is_dir() else []


@pytest.fixture(scope="module")
def dev():
    from reef_rocm.gpu import open_device, probe

    backend = "cuda" if TARGET.startswith("cuda") else "hip"
    report = probe(backend)
    if not report.available:
        pytest.skip(f"no {backend} GPU: {report.reason}")
    d = open_device(backend)
    yield d
    d.close()


def assert_matches(out: np.ndarray, ref: np.ndarray, what: str) -> float:
    assert out.shape == ref.shape, what
    scale = float(np.abs(ref).max())
    err = float(np.abs(out.astype(np.float64) - ref).max())
    np.testing.assert_allclose(out, ref, rtol=RTOL, atol=RTOL * max(scale, 1e-6), err_msg=what)
    return err / max(scale, 1e-30)


def test_zoo_packages_present(dev):
    names = {ModelPackage.load(p).name for p in _paths()}
    missing = [m for m in ZOO if m not in names]
    assert not missing, (
        f"no {TARGET} package for {missing} in {PACKAGES}; build them on the CPU machine: "
        f"reef compile --zoo --target {TARGET} --out .carry/packages"
    )


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_matches_cpu_reference(dev, path):
    from reef_rocm.runtime.executor import ModelInstance

    pkg = ModelPackage.load(path)
    with ModelInstance(dev, pkg) as inst:
        outs = inst.run(pkg.reference_inputs())
        refs = pkg.reference_outputs()
        for i, (o, r) in enumerate(zip(outs, refs, strict=True)):
            rel = assert_matches(o, r, f"{pkg.name} output {i}")
            print(f"{pkg.name}: {inst.num_kernels} kernels, max error {rel:.2e} of output scale")
        # idempotence on the device: re-running any suffix j..n-1 after a full run
        s = dev.create_stream()
        for j in sorted({0, inst.num_kernels // 3, inst.num_kernels - 1}):
            inst.launch_range(s, j)
            assert_matches(inst.get_output(0, s), refs[0], f"{pkg.name} after re-running {j}..")
        s.close()


def _preemptible(dev, path):
    from reef_rocm.runtime.executor import ModelInstance

    pkg = ModelPackage.load(path)
    if "preemptible" not in pkg.manifest.variants:
        pytest.skip("package has no preemptible variant")
    if not dev.capabilities.stream_write_value:
        pytest.skip("device has no stream write-value (the flag is raised with one)")
    return pkg, ModelInstance(dev, pkg, variant="preemptible")


def _busy_wait_us(us: float) -> None:
    end = time.perf_counter() + us * 1e-6
    while time.perf_counter() < end:
        pass


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_preempt_and_restore(dev, path):
    """Half the kernels run, the rest are evicted by the flag, restore resumes exactly."""
    pkg, inst = _preemptible(dev, path)
    with inst:
        n, s, side = inst.num_kernels, dev.create_stream(), dev.create_stream()
        # with the flag clear the preemptible kernels compute what the plain ones do
        ref = pkg.reference_outputs()[0]
        assert_matches(inst.run(pkg.reference_inputs(), s)[0], ref, f"{pkg.name} preemptible")
        inst.read_slots_async(s)
        assert inst.first_incomplete() == n, "every block of every kernel counts itself"
        inst.begin(s)
        inst.launch_range(s, 0, n // 2)
        inst.read_slots_async(s)
        assert inst.first_incomplete() == n // 2
        side.write_value32(inst.preempt_flag, 1)  # evict everything still to come
        side.synchronize()
        inst.launch_range(s, n // 2)
        inst.read_slots_async(s).synchronize()
        assert not inst.completed()[n // 2 :].any(), "evicted kernels must not count"
        side.write_value32(inst.preempt_flag, 0)
        side.synchronize()
        start = inst.first_incomplete()
        assert start == n // 2
        inst.resume(s, start)
        inst.read_slots_async(s)
        assert inst.first_incomplete() == n
        assert_matches(inst.get_output(0, s), ref, f"{pkg.name} restored")
        inst.begin(s)
        inst.read_slots_async(s)
        assert inst.first_incomplete() == 0
        s.close()
        side.close()


@pytest.mark.parametrize("poll_every", [0, 1], ids=["no-poll", "poll-every-iteration"])
@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_preempt_mid_kernel_repeatedly(dev, path, poll_every):
    """Flag raised on a side stream while a kernel runs, the model's three longest kernels
    cut three times each, then one inference preempted at eight points; every restore goes
    through prepare_resume/first_incomplete and ends at the CPU reference (tests/runtime/
    scenarios.py says how). With poll points (packages whose kernels take reef_poll_every)
    running blocks leave at their next poll too, so cuts land inside blocks' loops."""
    from .scenarios import cut_longest_kernels, preempt_whole_inference

    pkg, inst = _preemptible(dev, path)
    with inst:
        polled = [k for k in range(inst.num_kernels) if inst.poll_param(k) is not None]
        if poll_every and not polled:
            pytest.skip("no kernel of this package has poll points")
        for k in polled:
            inst.set_poll_every(k, poll_every)
        r = cut_longest_kernels(inst, assert_matches)
        print(f"{pkg.name}: {r['partial']} of {r['cuts']} cuts left kernels {r['targets']} "
              f"partial (up to {r['max_waves']:.1f} waves)")  # fmt: skip
        if r["max_waves"] >= 4:
            assert r["partial"] > 0, "a kernel of >= 4 waves was never cut part way"
        starts = preempt_whole_inference(
            inst, assert_matches, lambda: time.perf_counter() * 1e6, _busy_wait_us
        )
        print(f"{pkg.name}: whole inference resumed at kernels {starts} of {inst.num_kernels}")


@pytest.mark.parametrize("path", _paths(), ids=lambda p: p.name)
def test_dkp_matches_cpu_reference(dev, path):
    """The dkp variant with the manifest's default launch (every virtual block once, one
    physical block each) computes what plain does; so does a DKP-style launch of each kernel
    as two ranges of virtual blocks on smaller grids (which also checks the manifest's
    parameter roles: swapping vblock_count and grid_blocks would go unnoticed by the
    default launch, where both are N)."""
    from reef_rocm.runtime.executor import ModelInstance

    pkg = ModelPackage.load(path)
    if "dkp" not in pkg.manifest.variants:
        pytest.skip("package has no dkp variant")
    ref = pkg.reference_outputs()[0]
    with ModelInstance(dev, pkg, variant="dkp") as inst:
        assert_matches(inst.run(pkg.reference_inputs())[0], ref, f"{pkg.name} dkp")
        s = dev.create_stream()
        dev.memset32(inst.arena, 0, inst.arena.nbytes // 4, s)  # forget the first run
        s.synchronize()
        inst.load_params()
        for i, x in enumerate(pkg.reference_inputs()):
            inst.set_input(i, x, s)
        keep = []  # bound launches stay alive until the stream has run them
        for i, k in enumerate(inst.kernels):
            n = k.dkp.virtual_blocks
            h = n // 2
            for begin, count in ((0, h), (h, n - h)):
                if count:  # grid-stride: fewer physical than virtual blocks
                    keep.append(inst.bind_dkp(i, begin, count, max(1, count // 3)))
                    keep[-1].launch(s)
        assert_matches(inst.get_output(0, s), ref, f"{pkg.name} dkp in split ranges")
        s.close()
        print(f"{pkg.name}: dkp variant, {inst.num_kernels} kernels match the CPU reference")


def test_profile_json(dev, tmp_path):
    from reef_rocm.cli import main

    paths = [p for p in _paths() if p.name.startswith("tiny_cnn-")]
    if not paths:
        pytest.skip("no tiny_cnn package")
    out = tmp_path / "profile.json"
    assert main(["profile", str(paths[0]), "--out", str(out), "--backend", dev.info.backend]) == 0
    prof = json.loads(out.read_text())
    assert len(prof["kernels"]) == len(ModelPackage.load(paths[0]).manifest.variant().kernels)
    assert all(k["us_median"] > 0 for k in prof["kernels"])
