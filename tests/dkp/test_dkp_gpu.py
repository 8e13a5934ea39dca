"""Padded launches on a real NVIDIA GPU: RT and BE outputs bit-identical to unpadded runs.

Needs no TVM: the DKP builds come from ``.carry/dkp`` (``python tools/build_dkp_carry.py``
on a machine with nvcc and the zoo packages; folder: ``REEF_DKP_CARRY``), else they are
built here with nvcc if the host has it. Model packages: ``REEF_PACKAGES`` or
``.carry/packages``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dkp_fixture as fixture
import numpy as np
import pytest

from reef_rocm.dkp.build import build_packages, find_nvcc, load_build
from reef_rocm.dkp.launch import DkpRuntime
from reef_rocm.errors import PackageError
from reef_rocm.gpu import LaunchConfig, open_device, probe
from reef_rocm.gpu.api import DevicePtr
from reef_rocm.package.files import ModelPackage
from reef_rocm.runtime.executor import ModelInstance

pytestmark = pytest.mark.gpu

REPO = Path(__file__).resolve().parents[2]
CARRY = Path(os.environ.get("REEF_DKP_CARRY", REPO / ".carry" / "dkp"))
PACKAGES = Path(os.environ.get("REEF_PACKAGES", REPO / ".carry" / "packages"))
sys.path.insert(0, str(REPO / "tools"))
import build_dkp_carry  # noqa: E402

BLOCKS = 64  # virtual blocks of each fixture kernel


@pytest.fixture(scope="module")
def dev():
    report = probe("cuda")
    if not report.available:
        pytest.skip(f"no CUDA GPU: {report.reason}")
    d = open_device("cuda")
    yield d
    d.close()


def _build(name: str, make):
    d = CARRY / name
    if (d / "dkp_build.json").is_file():
        return load_build(d)
    if find_nvcc() is None:
        pytest.skip(f"no DKP build at {d} and no nvcc to make one")
    return make(d)


@pytest.fixture(scope="module")
def fx_build(dev):
    b = _build("fixture", lambda d: build_dkp_carry.build_fixture(d, dev.info.arch))
    if b.arch != dev.info.arch:
        pytest.skip(f"DKP fixture build is for {b.arch}, GPU is {dev.info.arch}")
    return b


def _packages() -> list[Path]:
    out = []
    for name in build_dkp_carry.TEST_MODELS:
        found = sorted(PACKAGES.glob(f"{name}-cuda_*"))
        if not found:
            pytest.skip(f"no {name} CUDA package under {PACKAGES}")
        out.append(found[0])
    return out


@pytest.fixture(scope="module")
def zoo_build(dev, tmp_path_factory):
    pkgs = _packages()
    b = _build("zoo", lambda d: build_packages(pkgs, d, budgets=build_dkp_carry.TEST_BUDGETS))
    try:
        for p in pkgs:
            b.check_package(ModelPackage.load(p))
    except PackageError as e:  # the carried build is from other packages: rebuild if we can
        if find_nvcc() is None:
            pytest.fail(f"{e}; run tools/build_dkp_carry.py against these packages")
        b = build_packages(pkgs, tmp_path_factory.mktemp("dkp_zoo"),
                           budgets=build_dkp_carry.TEST_BUDGETS)  # fmt: skip
    if b.arch != dev.info.arch:
        pytest.skip(f"DKP zoo build is for {b.arch}, GPU is {dev.info.arch}")
    return b, {p.name.split("-cuda_")[0]: p for p in pkgs}


# ----------------------------------------------------------------------------- fixture
class FixtureRun:
    """The two fixture kernels on device buffers: x (input), y (scale), s (blocksum)."""

    def __init__(self, dev, build, rt_fn: int, be_fn: int) -> None:
        self.dev = dev
        rng = np.random.default_rng(7)
        self.x = rng.standard_normal(BLOCKS * 128).astype(np.float32)
        self.bufs = [dev.alloc(self.x.nbytes), dev.alloc(self.x.nbytes), dev.alloc(BLOCKS * 4)]
        self.s = dev.create_stream()
        dev.copy_to_device(self.bufs[0], self.x, self.s)
        for b in self.bufs[1:]:
            dev.memset32(b, 0x7FC00001, b.nbytes // 4, self.s)
        self.rt_fn, self.be_fn = rt_fn, be_fn

    def outputs(self):
        y = np.empty(BLOCKS * 128, np.float32)
        s = np.empty(BLOCKS, np.float32)
        self.dev.copy_to_host(y, self.bufs[1], self.s)
        self.dev.copy_to_host(s, self.bufs[2], self.s)
        self.s.synchronize()
        return y, s

    def close(self):
        self.s.synchronize()
        for b in self.bufs:
            b.close()
        self.s.close()


def _fixture_args(run: FixtureRun, fn: int) -> np.ndarray:
    # struct {float* out; float* x;}: scale writes y (buffer 1), blocksum s (buffer 2)
    out = run.bufs[1] if fn == 0 else run.bufs[2]
    return np.array([out.ptr, run.bufs[0].ptr], np.uint64).view(np.uint8)


def _unpadded_fixture(dev, run: FixtureRun):
    """Reference: the fixture's own __global__ kernels (a plain nvcc build), every virtual
    block once."""
    image = (CARRY / "fixture" / "fixture.cubin").read_bytes() if (
        CARRY / "fixture" / "fixture.cubin").is_file() else build_dkp_carry.fixture_cubin(
        CARRY / "fixture", dev.info.arch)  # fmt: skip
    mod = dev.load_module(image)
    try:
        for name, out in (("fx_scale_kernel", run.bufs[1]), ("fx_blocksum_kernel", run.bufs[2])):
            block = (32, 4, 1) if name == "fx_scale_kernel" else (128, 1, 1)
            mod.get_kernel(name).launch(
                run.s, LaunchConfig((BLOCKS, 1, 1), block), DevicePtr(out.ptr),
                DevicePtr(run.bufs[0].ptr), np.int32(BLOCKS), np.int32(0), np.int32(BLOCKS),
            )  # fmt: skip
        return run.outputs()
    finally:
        run.s.synchronize()
        mod.close()


def _padded_fixture(dev, build, rt, run: FixtureRun, n_rt: int, budget: int, flag: int = 0):
    """scale as the RT kernel padded with blocksum as the BE kernel, raw dispatcher args;
    ``flag``: the preempt flag's value during the launch."""
    from reef_rocm.dkp.build import DISPATCH_KERNEL

    rt.set_split(n_rt, run.s)
    a_rt, a_be = _fixture_args(run, 0), _fixture_args(run, 1)
    bufs = [dev.alloc(16), dev.alloc(16), dev.alloc(8)]
    try:
        dev.copy_to_device(bufs[0], a_rt, run.s)
        dev.copy_to_device(bufs[1], a_be, run.s)
        dev.memset32(bufs[2], 0, 2, run.s)
        dev.memset32(rt._flag, flag, 1, run.s)
        proxy = rt.proxy(budget)
        grid = rt.blocks_for(proxy, 128, 528)
        k = rt.modules[budget].get_kernel(DISPATCH_KERNEL)
        k.launch(
            run.s, LaunchConfig((grid, 1, 1), (128, 1, 1), 528),
            np.int32(0), DevicePtr(bufs[0].ptr), np.int32(0), np.int32(BLOCKS),
            np.int32(1), DevicePtr(bufs[1].ptr), np.int32(0), np.int32(BLOCKS),
            DevicePtr(bufs[2].ptr), DevicePtr(bufs[2].ptr + 4), DevicePtr(rt._flag.ptr),
            DevicePtr(rt._work.ptr), DevicePtr(rt._table.ptr), np.int32(4096),
        )  # fmt: skip
        dev.memset32(rt._flag, 0, 1, run.s)
        y, s = run.outputs()
        counts = np.empty(2, np.uint32)
        dev.copy_to_host(counts, bufs[2], run.s)
        run.s.synchronize()
        return y, s, counts
    finally:
        for b in bufs:
            b.close()


@pytest.mark.parametrize("n_rt_frac", [0.0, 0.1, 0.5, 1.0])
def test_fixture_padded_matches_unpadded(dev, fx_build, n_rt_frac):
    with DkpRuntime(dev, fx_build) as rt:
        ref = FixtureRun(dev, fx_build, 0, 1)
        try:
            y0, s0 = _unpadded_fixture(dev, ref)
        finally:
            ref.close()
        # sanity against NumPy (not bit-exact: nvcc may contract to FMA, which moves results
        # near zero by an ulp of the operands: absolute tolerance at the output's scale)
        ry, rs = fixture.reference(ref.x, BLOCKS)
        np.testing.assert_allclose(y0, ry, rtol=1e-5, atol=1e-6 * float(np.abs(ry).max()))
        np.testing.assert_allclose(s0, rs, rtol=1e-5, atol=1e-5)
        n_rt = round(n_rt_frac * rt.compute_units)
        for p in fx_build.proxies:
            run = FixtureRun(dev, fx_build, 0, 1)
            try:
                y, s, counts = _padded_fixture(dev, fx_build, rt, run, n_rt, p.budget)
            finally:
                run.close()
            assert np.array_equal(y.view(np.uint32), y0.view(np.uint32)), (n_rt, p.budget)
            # BE: the dispatcher stops BE work when RT is done; what ran is a prefix, counted
            done = int(counts[1])
            assert 0 <= done <= BLOCKS and int(counts[0]) == done  # the cursor is exact
            assert np.array_equal(s[:done].view(np.uint32), s0[:done].view(np.uint32))
            assert np.all(s[done:].view(np.uint32) == 0x7FC00001)


def test_fixture_preempt_flag_stops_be_not_rt(dev, fx_build):
    """With the flag up no BE virtual block runs; the RT kernel still completes exactly."""
    with DkpRuntime(dev, fx_build) as rt:
        ref = FixtureRun(dev, fx_build, 0, 1)
        try:
            y0, _ = _unpadded_fixture(dev, ref)
        finally:
            ref.close()
        run = FixtureRun(dev, fx_build, 0, 1)
        try:
            y, s, counts = _padded_fixture(dev, fx_build, rt, run, rt.compute_units // 2,
                                           fx_build.proxies[0].budget, flag=1)  # fmt: skip
        finally:
            run.close()
        assert np.array_equal(y.view(np.uint32), y0.view(np.uint32))
        assert counts.tolist() == [0, 0]
        assert np.all(s.view(np.uint32) == 0x7FC00001)


def test_probe_sees_every_sm_once(dev, fx_build):
    with DkpRuntime(dev, fx_build) as rt:
        s = dev.create_stream()
        try:
            ids = rt.probe_hw_ids(s)
        finally:
            s.close()
    # the table is built from what the probe saw; report it
    print(f"hardware ids: {len(ids)} distinct, min {min(ids)}, max {max(ids)}")
    assert len(ids) == dev.info.compute_units


# ----------------------------------------------------------------------------- models
def _run_unpadded(dev, pkg, stream):
    with ModelInstance(dev, pkg, "plain") as inst:
        return inst.run(inst.package.reference_inputs(), stream)


def _pairs(build, pkgs, threads=128, limit=6):
    """(rt model, rt kernel, be model, be kernel) pairs of equal block size: the two RT
    kernels with the fewest blocks (they leave most SMs idle) against three BE kernels of
    each model."""
    from reef_rocm.package.files import ModelPackage

    names = list(pkgs)
    blocks = {m: [k.dkp.virtual_blocks for k in ModelPackage.load(pkgs[m]).manifest.variant(
        "dkp").kernels] for m in names}  # fmt: skip
    by_model: dict[str, list[int]] = {}
    for e in build.bodies:
        if e.body.threads == threads:
            by_model.setdefault(e.package, []).append(e.kernel_index)
    rt_model = names[-1]
    rts = sorted(by_model[rt_model], key=lambda k: blocks[rt_model][k])[:2]
    out = []
    for i in rts:
        for m in names:
            ks = by_model[m]
            for j in ks[:: max(1, len(ks) // 3)][:3]:
                out.append((rt_model, i, m, j))
    return out[:limit]


def test_models_padded_bit_identical(dev, zoo_build):
    """Each pair: the RT model with kernel i padded gives the unpadded output bit for bit; the
    BE model with kernel j run only through padded launches (as many as it takes) and the
    rest unpadded gives its unpadded output bit for bit."""
    build, pkgs = zoo_build
    names = list(pkgs)
    s = dev.create_stream()
    try:
        ref = {m: _run_unpadded(dev, pkgs[m], s) for m in names}
        with DkpRuntime(dev, build) as rt:
            for rt_model, i, be_model, j in _pairs(build, pkgs):
                for n_rt in (rt.compute_units // 4, rt.compute_units // 2):
                    _check_pair(dev, rt, build, pkgs, ref, s, rt_model, i, be_model, j, n_rt)
    finally:
        s.close()


def _check_pair(dev, rt, build, pkgs, ref, s, rt_model, i, be_model, j, n_rt):
    from reef_rocm.dkp.proxy import choose_proxy

    rt.set_split(n_rt, s)
    with (
        ModelInstance(dev, pkgs[rt_model], "plain") as a,
        ModelInstance(dev, pkgs[be_model], "plain") as b,
        rt.cursor(b) as cur,
    ):
        regs = [
            _body_regs(pkgs[rt_model], build.bodies[build.body_index(rt_model, i)].body.kernel),
            _body_regs(pkgs[be_model], build.bodies[build.body_index(be_model, j)].body.kernel),
        ]
        proxy = choose_proxy(build.proxies, *regs)
        # BE: kernels < j unpadded, kernel j only inside padded launches
        b.begin(s)
        for k, x in enumerate(b.package.reference_inputs()):
            b.set_input(k, x, s)
        b.launch_range(s, 0, j)
        cur.reset(s)
        a.begin(s)
        for k, x in enumerate(a.package.reference_inputs()):
            a.set_input(k, x, s)
        pad = rt.bind(a, i, b, j, cur, proxy, s)
        n_be = pad.be_count
        rounds = 0
        while True:
            # one RT inference with kernel i padded
            a.launch_range(s, 0, i)
            pad.launch(s)
            a.launch_range(s, i + 1)
            out = a.get_output(0, s)
            assert np.array_equal(out.view(np.uint8), ref[rt_model][0].view(np.uint8)), (
                f"RT {rt_model}[{i}] padded with {be_model}[{j}] on {n_rt} SMs differs"
            )
            cur.read_async(s).synchronize()
            rounds += 1
            if cur.done(j) >= n_be or rounds > 10000:
                break
        assert cur.done(j) == n_be, f"BE {be_model}[{j}]: {cur.done(j)} of {n_be} after {rounds}"
        b.launch_range(s, j + 1)
        out = b.get_output(0, s)
        rt.forget(a)
        rt.forget(b)
        assert np.array_equal(out.view(np.uint8), ref[be_model][0].view(np.uint8)), (
            f"BE {be_model}[{j}] through {rounds} padded launches differs"
        )


_REGS: dict = {}


def _body_regs(pkg: Path, kernel: str) -> int:
    from reef_rocm.codeobj import read_code_object

    if pkg not in _REGS:
        _REGS[pkg] = read_code_object(pkg / "kernels" / "dkp.cubin").kernels
    return _REGS[pkg][kernel].registers
