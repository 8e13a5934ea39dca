"""Preemptible and DKP-ready kernel variants on a real NVIDIA GPU.

Runs on a host without TVM: it loads the cubins and reference arrays that
``tools/build_transform_fixtures.py .carry/transform`` wrote (on a machine
with TVM and nvcc) and launches them through reef_rocm.gpu. Fixture folder: the
``REEF_TRANSFORM_FIXTURES`` environment variable, else ``<repo>/.carry/transform``.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from reef_rocm.gpu import LaunchConfig, open_device, probe

pytestmark = pytest.mark.gpu

FIXTURES = Path(
    os.environ.get(
        "REEF_TRANSFORM_FIXTURES", Path(__file__).resolve().parents[2] / ".carry" / "transform"
    )
)
POISON = 0x7FC00001  # a NaN payload no kernel produces
SMALL = ["matmul", "conv", "softmax", "ew2d", "ew3d", "one_block", "window_sum", "pred_tile"]


@pytest.fixture(scope="module")
def manifest() -> dict:
    path = FIXTURES / "manifest.json"
    if not path.is_file():
        pytest.skip(
            f"no transform fixtures at {FIXTURES} (build them with "
            "tools/build_transform_fixtures.py)"
        )
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def dev(manifest):
    report = probe("cuda")
    if not report.available:
        pytest.skip(f"no CUDA GPU: {report.reason}")
    d = open_device("cuda")
    if d.info.arch != manifest["arch"]:
        pytest.skip(f"fixtures are for {manifest['arch']}, GPU is {d.info.arch}")
    yield d
    d.close()


class Runner:
    """Loads one workload's variants and launches them with named arguments."""

    def __init__(self, dev, manifest: dict, name: str) -> None:
        self.dev, self.name = dev, name
        self.w = manifest["workloads"][name]
        (self.shape,) = self.w["kernels"]  # single-kernel workloads only
        self.bufs = {b["name"]: b for b in self.w["buffers"]}
        self.mem = {n: dev.alloc(int(np.prod(b["shape"])) * 4) for n, b in self.bufs.items()}
        self.flag, self.slot = dev.alloc(4), dev.alloc(4)
        self.modules: dict = {}
        rng = np.random.default_rng(0)
        for b in self.w["buffers"]:
            if b["role"] != "input":
                continue
            if "file" in b:
                data = np.load(FIXTURES / b["file"])
            else:  # not shipped (large): any finite data will do, variants are compared
                data = rng.standard_normal(b["shape"]).astype(b["dtype"])
            dev.copy_to_device(self.mem[b["name"]], np.ascontiguousarray(data))

    @property
    def outputs(self) -> list[str]:
        return [b["name"] for b in self.w["buffers"] if b["role"] == "output"]

    @property
    def num_blocks(self) -> int:
        return int(np.prod(self.shape["grid"]))

    def kernel(self, variant: str):
        v = self.w["variants"][variant]
        if variant not in self.modules:
            self.modules[variant] = self.dev.load_module((FIXTURES / v["cubin"]).read_bytes())
        (k,) = v["kernels"]
        return self.modules[variant].get_kernel(k["name"]), k["params"]

    def poll_defaults(self, variant: str) -> dict[str, int]:
        """The variant's reef_poll_every arguments at their compile-time default."""
        pre = self.w["variants"][variant].get("preempt", {})
        return {n: pre.get("poll_interval") or 0 for n in pre.get("poll_params", []) if n}

    def bind(self, variant: str, grid=None, **scalars):
        kern, params = self.kernel(variant)
        scalars = {**self.poll_defaults(variant), **scalars}
        args = []
        for p in params:
            if p["name"] == "reef_preempt_flag":
                args.append(self.flag)
            elif p["name"] == "reef_completion_slot":
                args.append(self.slot)
            elif p["kind"] == "buffer":
                args.append(self.mem[p["name"]])
            else:
                args.append(np.int32(scalars[p["name"]]))
        cfg = LaunchConfig(tuple(grid or self.shape["grid"]), tuple(self.shape["block"]))
        return kern.bind(cfg, args)

    def reset(self, flag: int = 0) -> None:
        self.dev.memset32(self.flag, flag, 1)
        self.dev.memset32(self.slot, 0, 1)
        for n in self.outputs:
            self.dev.memset32(self.mem[n], POISON, int(np.prod(self.bufs[n]["shape"])))

    def read(self, name: str) -> np.ndarray:
        b = self.bufs[name]
        out = np.empty(b["shape"], dtype=b["dtype"])
        self.dev.copy_to_host(out, self.mem[name])
        return out

    def slot_value(self) -> int:
        v = np.zeros(1, dtype=np.uint32)
        self.dev.copy_to_host(v, self.slot)
        return int(v[0])

    def run(self, variant: str, grid=None, flag: int = 0, **scalars) -> dict[str, np.ndarray]:
        self.reset(flag)
        s = self.dev.create_stream()
        self.bind(variant, grid, **scalars).launch(s)
        s.synchronize()
        return {n: self.read(n) for n in self.outputs}


def _poisoned(a: np.ndarray) -> np.ndarray:
    return a.view(np.uint32) == POISON


def _preempt_variants(w: dict) -> list[str]:
    return [v for v in w["variants"] if v.startswith("pre")]


@pytest.mark.parametrize("name", SMALL)
def test_flag_clear_identical_to_plain(dev, manifest, name):
    r = Runner(dev, manifest, name)
    plain = r.run("plain")
    for b in r.w["buffers"]:
        if b["role"] == "output" and "file" in b:
            ref = np.load(FIXTURES / b["file"])
            np.testing.assert_allclose(plain[b["name"]], ref, rtol=2e-3, atol=2e-3)
    for v in _preempt_variants(r.w):
        got = r.run(v)
        for n in r.outputs:
            assert np.array_equal(got[n].view(np.uint32), plain[n].view(np.uint32)), (v, n)
        assert r.slot_value() == r.num_blocks, v


@pytest.mark.parametrize("name", SMALL + ["rows"])
def test_flag_set_skips_everything(dev, manifest, name):
    r = Runner(dev, manifest, name)
    for v in _preempt_variants(r.w):
        got = r.run(v, flag=1)
        for n in r.outputs:
            assert _poisoned(got[n]).all(), (v, n)
        assert r.slot_value() == 0, v


@pytest.mark.parametrize("name", SMALL)
def test_dkp_matches_plain_for_any_grid(dev, manifest, name):
    r = Runner(dev, manifest, name)
    plain = r.run("plain")
    n = r.num_blocks
    for grid in (1, 3, n, n + 5, 132):
        got = r.run("dkp", grid=(grid, 1, 1), reef_vblock_begin=0, reef_vblock_count=n,
                    reef_grid_blocks=grid)  # fmt: skip
        for o in r.outputs:
            assert np.array_equal(got[o].view(np.uint32), plain[o].view(np.uint32)), (grid, o)
    # two launches covering [0, k) and [k, n): the virtual-block range is honoured
    k = n // 3
    r.reset()
    s = dev.create_stream()
    r.bind("dkp", (2, 1, 1), reef_vblock_begin=0, reef_vblock_count=k, reef_grid_blocks=2).launch(s)
    s.synchronize()
    half = {o: r.read(o) for o in r.outputs}
    assert any(_poisoned(a).any() for a in half.values()) or k == 0
    r.bind("dkp", (5, 1, 1), reef_vblock_begin=k, reef_vblock_count=n - k,
           reef_grid_blocks=5).launch(s)  # fmt: skip
    s.synchronize()
    for o in r.outputs:
        assert np.array_equal(r.read(o).view(np.uint32), plain[o].view(np.uint32)), o
    # the preemptible DKP variant counts virtual blocks, and skips them all when flagged
    r.run("dkp_pre", grid=(7, 1, 1), reef_vblock_begin=0, reef_vblock_count=n, reef_grid_blocks=7)
    assert r.slot_value() == n
    got = r.run("dkp_pre", grid=(7, 1, 1), flag=1, reef_vblock_begin=0, reef_vblock_count=n,
                reef_grid_blocks=7)  # fmt: skip
    assert r.slot_value() == 0 and all(_poisoned(a).all() for a in got.values())


@pytest.mark.parametrize("variant", ["pre", "pre_p16", "pre_p1"])
def test_flag_raised_mid_kernel_counts_exactly(dev, manifest, variant):
    """Raise the flag from a side stream while ``rows`` runs (block b writes row b, at its
    end). Blocks that finished count; blocks that saw the flag, at their start or at a
    poll, write nothing and do not count: slot == rows written, and no row is partial."""
    r = Runner(dev, manifest, "rows")
    if variant not in r.w["variants"]:
        pytest.skip(f"fixtures have no {variant}")
    nb = r.num_blocks
    plain = r.run("plain")["out"]
    outcomes = _cut_mid_kernel(dev, r, r.bind(variant), plain, nb)  # asserts per cut
    assert any(0 < done < nb for _, done, _ in outcomes), (
        f"flag never landed mid-kernel: {outcomes}"
    )
    assert all(done == rows for _, done, rows in outcomes), outcomes  # slot == rows written


def test_dispatcher_runs_two_kernels_in_one_launch(dev, manifest):
    """matmul and conv fused by merge_dkp_kernels: physical blocks [0, split) run matmul's
    virtual blocks, the rest conv's; both outputs equal the plain kernels'."""
    if "dispatch" not in manifest:
        pytest.skip("fixtures have no dispatcher")
    d = manifest["dispatch"]
    ra, rb = Runner(dev, manifest, d["first"]), Runner(dev, manifest, d["second"])
    plain_a, plain_b = ra.run("plain"), rb.run("plain")
    na, nb = ra.num_blocks, rb.num_blocks
    for vname, v in d["variants"].items():
        (k,) = v["kernels"]
        kern = dev.load_module((FIXTURES / v["cubin"]).read_bytes()).get_kernel(k["name"])
        for split, rest in ((5, 9), (1, 1), (na, nb)):
            scalars = {
                "reef_split_blocks": split, "reef_grid_blocks": split + rest,
                "reef_a_vblock_begin": 0, "reef_a_vblock_count": na,
                "reef_b_vblock_begin": 0, "reef_b_vblock_count": nb,
            }  # fmt: skip
            for flag in (0, 1):
                ra.reset(flag)
                rb.reset(flag)
                args = []
                for p in k["params"]:
                    r = ra if p.get("dup", 0) == 0 else rb
                    if p["name"] == "reef_preempt_flag":
                        args.append(ra.flag)  # one flag for both halves
                    elif p["name"] == "reef_completion_slot":
                        args.append(r.slot)
                    elif p["kind"] == "scalar":
                        args.append(np.int32(scalars[p["name"]]))
                    else:  # buffer names of the two kernels differ, dup == 0
                        args.append((ra if p["name"] in ra.mem else rb).mem[p["name"]])
                s = dev.create_stream()
                cfg = LaunchConfig((split + rest, 1, 1), tuple(ra.shape["block"]))
                kern.bind(cfg, args).launch(s)
                s.synchronize()
                for r, plain in ((ra, plain_a), (rb, plain_b)):
                    for o in r.outputs:
                        got = r.read(o)
                        if flag and vname == "pre":
                            assert _poisoned(got).all(), (vname, o)
                        elif not flag:
                            assert np.array_equal(got.view(np.uint32), plain[o].view(np.uint32))
                if vname == "pre":
                    assert (ra.slot_value(), rb.slot_value()) == ((0, 0) if flag else (na, nb))


def _cut_mid_kernel(dev, r: Runner, launch, plain: np.ndarray, nrows: int) -> list:
    """Raise the flag from a side stream at several points of ``launch`` (rows: block or
    virtual block b writes row b at its end). Checks what must hold wherever the flag
    lands: no row partly written, every written row complete, slot == rows written.
    Returns (fraction, slot, rows written) per try; stops after a cut mid-kernel."""
    be, side = dev.create_stream(), dev.create_stream(priority=dev.stream_priority_range()[1])
    r.reset()
    t0, t1 = dev.create_event(), dev.create_event()
    t0.record(be)
    launch.launch(be)
    t1.record(be)
    be.synchronize()
    kernel_s = t0.elapsed_ms(t1) / 1e3
    outcomes = []
    for frac in (0.5, 0.3, 0.7, 0.15, 0.85):
        r.reset()
        launch.launch(be)
        time.sleep(kernel_s * frac)
        side.write_value32(r.flag, 1)
        be.synchronize()
        side.synchronize()
        out, done = r.read("out"), r.slot_value()
        pois = _poisoned(out)
        written = ~pois.any(axis=1)
        partial = pois.any(axis=1) & ~pois.all(axis=1)
        outcomes.append((frac, done, int(written.sum())))
        assert not partial.any(), f"{int(partial.sum())} rows partly written"
        assert done == int(written.sum())
        assert np.array_equal(out[written].view(np.uint32), plain[written].view(np.uint32))
        if 0 < done < nrows:
            break
    return outcomes


@pytest.mark.parametrize("every", [0, 1, 16, 4096])
def test_poll_every_argument_mid_kernel(dev, manifest, every):
    """One preemptible binary (rows, polls compiled in for loops longer than 16) launched
    with reef_poll_every = 0 (block-start check only), 1, 16 and 4096: the flag raised
    mid-kernel leaves exact counts for every interval, and with the flag clear every
    interval computes what plain does."""
    r = Runner(dev, manifest, "rows")
    if "pre_p16" not in r.w["variants"] or not r.poll_defaults("pre_p16"):
        pytest.skip("fixtures have no pre_p16 with a poll interval argument")
    (pname,) = r.poll_defaults("pre_p16")
    plain = r.run("plain")["out"]
    got = r.run("pre_p16", **{pname: every})["out"]
    assert np.array_equal(got.view(np.uint32), plain.view(np.uint32))
    assert r.slot_value() == r.num_blocks
    outcomes = _cut_mid_kernel(dev, r, r.bind("pre_p16", **{pname: every}), plain, r.num_blocks)
    if every and not any(0 < d < r.num_blocks for _, d, _ in outcomes):
        pytest.fail(f"flag never landed mid-kernel: {outcomes}")


def test_preemptible_dkp_mid_kernel(dev, manifest):
    """dkp_be (dkp_pre_p16 here): a persistent grid of 8 physical blocks grid-strides over
    rows' virtual blocks, polls every 16 iterations; the flag raised mid-kernel leaves
    slot == virtual blocks whose row is complete, and no partial row."""
    r = Runner(dev, manifest, "rows")
    if "dkp_pre_p16" not in r.w["variants"]:
        pytest.skip("fixtures have no dkp_pre_p16")
    n = r.num_blocks
    plain = r.run("plain")["out"]
    dkp = {"reef_vblock_begin": 0, "reef_vblock_count": n, "reef_grid_blocks": 8}
    got = r.run("dkp_pre_p16", grid=(8, 1, 1), **dkp)["out"]
    assert np.array_equal(got.view(np.uint32), plain.view(np.uint32)) and r.slot_value() == n
    outcomes = _cut_mid_kernel(dev, r, r.bind("dkp_pre_p16", (8, 1, 1), **dkp), plain, n)
    if not any(0 < d < n for _, d, _ in outcomes):
        pytest.fail(f"flag never landed mid-kernel: {outcomes}")
