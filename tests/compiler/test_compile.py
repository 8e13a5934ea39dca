"""Compiling zoo models into packages (tiny CNN end to end; manifests for the rest)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")

from reef_rocm.compiler.build import compile_model  # noqa: E402
from reef_rocm.compiler.codegen import find_lld, find_nvcc  # noqa: E402
from reef_rocm.compiler.targets import parse_target  # noqa: E402
from reef_rocm.errors import ModelError, PackageError, UnsupportedError  # noqa: E402
from reef_rocm.package.manifest import (  # noqa: E402
    DKP_ROLES,
    SCHEMA_VERSION,
    Manifest,
    idempotence_violations,
)

HAVE_NVCC = find_nvcc() is not None
HAVE_LLD = find_lld() is not None


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("reef-cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("REEF_CACHE", str(d))
    yield d
    mp.undo()


def _check_package(path: Path, m: Manifest, ext: str) -> None:
    assert (path / "manifest.json").is_file()
    plain = m.variant("plain")
    assert plain.binary.endswith(ext) and (path / plain.binary).stat().st_size > 0
    assert gzip.decompress((path / plain.source).read_bytes())
    names = {k.name for k in plain.kernels}
    assert len(plain.kernels) >= 5
    assert idempotence_violations(m) == []
    ref_in = [np.load(path / p) for p in m.reference["inputs"]]
    ref_out = [np.load(path / p) for p in m.reference["outputs"]]
    assert ref_in[0].shape == (1, 3, 32, 32) and ref_out[0].shape == (1, 10)
    assert np.isfinite(ref_out[0]).all() and np.abs(ref_out[0]).max() > 1e-3
    # every param is generated, nothing stored
    assert m.weights["file"] is None and all(b.init for b in m.params())
    # the manifest names only kernels the code object defines
    blob = (path / plain.binary).read_bytes()
    assert all(n.encode() in blob for n in names)
    json.loads((path / "manifest.json").read_text())  # plain JSON


@pytest.mark.skipif(not HAVE_NVCC, reason="nvcc not installed")
def test_tiny_cnn_cuda(cache, tmp_path):
    r = compile_model("tiny_cnn", "cuda:sm_90", out_dir=tmp_path, variants="plain", progress=False)
    assert not r.cached
    _check_package(r.path, r.manifest, ".cubin")
    k0 = r.manifest.variant().kernels[0]
    assert k0.block[0] * k0.block[1] * k0.block[2] <= 1024
    # warm: same content hash, returns without compiling
    again = compile_model("tiny_cnn", "cuda:sm_90", out_dir=tmp_path, variants="plain")
    assert again.cached and again.seconds < 5
    assert Manifest.load(r.path).to_json() == r.manifest.to_json()


@pytest.mark.skipif(not HAVE_LLD, reason="ld.lld not installed")
def test_tiny_cnn_rocm(cache, tmp_path):
    try:
        r = compile_model(
            "tiny_cnn", "rocm:gfx90a", out_dir=tmp_path, variants="plain", progress=False
        )
    except UnsupportedError as e:
        if "bitcode" in str(e) or "device libraries" in str(e):
            pytest.skip(str(e))
        raise
    _check_package(r.path, r.manifest, ".hsaco")
    blob = (r.path / r.manifest.variant().binary).read_bytes()
    assert blob[:4] == b"\x7fELF" and blob[18] == 224  # EM_AMDGPU
    assert r.manifest.target["backend"] == "hip"
    readelf = shutil.which("llvm-readelf-16")
    if readelf:
        syms = subprocess.run(
            [readelf, "-s", str(r.path / r.manifest.variant().binary)],
            capture_output=True,
            text=True,
        ).stdout
        for k in r.manifest.variant().kernels:
            assert f"{k.name}.kd" in syms


def test_variants_have_preemption_args(cache, tmp_path):
    from reef_rocm.compiler.build import available_variants, plan_manifest

    if "preemptible" not in available_variants():
        pytest.skip("reef_rocm.compiler.transform not available")
    m = plan_manifest("tiny_cnn", "cuda:sm_90", "plain,preemptible")
    plain, pre = m.variant("plain"), m.variant("preemptible")
    assert len(plain.kernels) == len(pre.kernels)
    for a, b in zip(plain.kernels, pre.kernels, strict=True):
        kinds = [x["kind"] for x in b.args]
        assert kinds.count("preempt_flag") == 1 and kinds.count("completion_slot") == 1
        assert [x for x in b.args if x["kind"] == "buffer"] == [
            x for x in a.args if x["kind"] == "buffer"
        ]
        assert (a.grid, a.block) == (b.grid, b.block)


def _check_dkp_kernel(k, plain) -> None:
    """One dkp-variant kernel: a launchable default grid and roles for its reef_ params."""
    d = k.dkp
    assert d is not None and d.virtual_blocks > 0
    assert d.virtual_blocks == d.grid[0] * d.grid[1] * d.grid[2]
    # the virtual grid is the plain kernel's launch; the default launch is it, flattened
    assert (d.grid, d.block) == (plain.grid, plain.block) and k.block == plain.block
    assert k.grid == [d.virtual_blocks, 1, 1] and k.name == plain.name
    assert sorted(d.params.values()) == sorted(DKP_ROLES)
    assert k.launch_params == {"blockIdx.x": d.param("grid_blocks")}
    reef = {a["name"]: a for a in k.args if a["kind"] == "reef_param"}
    assert set(reef) <= set(d.params) and all(a["dtype"] == "int32" for a in reef.values())
    assert k.dkp_defaults() == {
        d.param("vblock_begin"): 0,
        d.param("vblock_count"): d.virtual_blocks,
        d.param("grid_blocks"): d.virtual_blocks,
    }
    # buffers are bound as in plain
    assert [a for a in k.args if a["kind"] == "buffer"] == [
        a for a in plain.args if a["kind"] == "buffer"
    ]


@pytest.mark.parametrize("target", ["cuda:sm_90", "rocm:gfx90a"])
def test_dkp_manifest(cache, target):
    from reef_rocm.compiler.build import available_variants, plan_manifest

    if "dkp" not in available_variants():
        pytest.skip("reef_rocm.compiler.transform not available")
    m = plan_manifest("tiny_cnn", target, "plain,preemptible,dkp")
    plain, dkp = m.variant("plain"), m.variant("dkp")
    assert len(plain.kernels) == len(dkp.kernels) >= 5
    for p, k in zip(plain.kernels, dkp.kernels, strict=True):
        assert p.dkp is None
        _check_dkp_kernel(k, p)
    assert all(k.dkp is None for k in m.variant("preemptible").kernels)
    # what the reader gets back is what the compiler wrote
    again = Manifest.from_json(json.loads(json.dumps(m.to_json())))
    assert again.to_json() == m.to_json()
    assert again.variant("dkp").kernels[0].dkp == dkp.kernels[0].dkp


@pytest.mark.parametrize("target", ["cuda:sm_90", "rocm:gfx90a"])
def test_dkp_kernels_of_one_primfunc(target):
    """Kernel i >= 1 of a PrimFunc takes the ``_i``-suffixed params; a 3-D grid flattens."""
    import transform_workloads as fx

    from reef_rocm.compiler.build import available_variants
    from reef_rocm.compiler.graph import PlanCall
    from reef_rocm.compiler.kernels import (
        bind_kernels,
        lower_kernels,
        primfunc_param_dtypes,
        primfunc_param_names,
    )

    if "dkp" not in available_variants():
        pytest.skip("reef_rocm.compiler.transform not available")
    import tvm

    from reef_rocm.compiler import transform as tr
    from reef_rocm.compiler.build import _dkp_infos

    mod = tvm.IRModule({"two_kernels": fx.two_kernels, "ew3d": fx.ew3d})
    dmod = tr.make_dkp_ready(mod)
    build = lower_kernels(dmod, tvm.target.Target(parse_target(target).tvm_target_dict()))
    calls = [
        PlanCall("two_kernels", [{"kind": "buffer", "id": i} for i in range(3)], [1, 2]),
        PlanCall("ew3d", [{"kind": "buffer", "id": i} for i in (3, 4)], [4]),
    ]
    ks = bind_kernels(
        calls, build, primfunc_param_names(dmod), primfunc_param_dtypes(dmod), _dkp_infos(dmod)
    )
    assert [(k.grid, k.block, k.dkp.grid) for k in ks] == [
        ([8, 1, 1], [128, 1, 1], [8, 1, 1]),
        ([4, 1, 1], [256, 1, 1], [4, 1, 1]),
        ([48, 1, 1], [128, 1, 1], [2, 6, 4]),
    ]
    assert ks[1].dkp.params == {
        "reef_vblock_begin_1": "vblock_begin",
        "reef_vblock_count_1": "vblock_count",
        "reef_grid_blocks_1": "grid_blocks",
    }
    assert ks[1].launch_params == {"blockIdx.x": "reef_grid_blocks_1"}
    assert ks[1].dkp_defaults() == {
        "reef_vblock_begin_1": 0, "reef_vblock_count_1": 4, "reef_grid_blocks_1": 4
    }  # fmt: skip
    assert {a["name"] for a in ks[1].args if a["kind"] == "reef_param"} <= set(ks[1].dkp.params)
    assert ks[2].dkp.virtual_blocks == 48 and ks[0].dkp.param("vblock_count") == (
        "reef_vblock_count"
    )


def _dkp_manifest_json() -> dict:
    """A minimal valid manifest with a plain and a dkp kernel (no TVM needed to read it)."""
    buf = {"id": 0, "name": "x", "dtype": "float32", "shape": [4], "bytes": 16,
           "role": "output", "init": None}  # fmt: skip
    plain = {"name": "k", "func": "f", "grid": [2, 3, 1], "block": [64, 1, 1], "shared_mem": 0,
             "args": [{"kind": "buffer", "id": 0}], "writes": [0]}  # fmt: skip
    reef = [{"kind": "reef_param", "name": n, "dtype": "int32"}
            for n in ("reef_grid_blocks", "reef_vblock_begin", "reef_vblock_count")]  # fmt: skip
    dkp = {**plain, "grid": [6, 1, 1], "args": plain["args"] + reef,
           "launch_params": {"blockIdx.x": "reef_grid_blocks"},
           "dkp": {"virtual_blocks": 6, "grid": [2, 3, 1], "block": [64, 1, 1],
                   "params": {"reef_vblock_begin": "vblock_begin",
                              "reef_vblock_count": "vblock_count",
                              "reef_grid_blocks": "grid_blocks"}}}  # fmt: skip
    variant = {"binary": "b", "source": "s"}
    return {
        "schema": "reef-model-package", "version": SCHEMA_VERSION, "model": {}, "target": {},
        "tools": {}, "buffers": [buf], "inputs": [], "outputs": [0], "weights": {},
        "reference": {},
        "variants": {"plain": {"name": "plain", **variant, "kernels": [plain]},
                     "dkp": {"name": "dkp", **variant, "kernels": [dkp]}},
    }  # fmt: skip


def test_dkp_manifest_validation():
    good = _dkp_manifest_json()
    k = Manifest.from_json(good).variant("dkp").kernels[0]
    assert k.dkp_defaults() == {
        "reef_vblock_begin": 0, "reef_vblock_count": 6, "reef_grid_blocks": 6
    }  # fmt: skip

    def broken(edit) -> dict:
        d = json.loads(json.dumps(good))
        edit(d["variants"]["dkp"]["kernels"][0])
        return d

    cases = [
        (lambda k: k.pop("dkp"), "no dkp entry"),
        (lambda k: k["dkp"].pop("params"), "malformed dkp entry"),
        (lambda k: k["dkp"].update(virtual_blocks=5), "virtual_blocks"),
        (lambda k: k["dkp"].update(grid=[2, 0, 1]), "positive"),
        (lambda k: k.update(grid=[0, 1, 1]), "positive"),
        (lambda k: k["dkp"]["params"].update(reef_vblock_count="vblock_begin"), "once"),
        (lambda k: k["args"].append({"kind": "reef_param", "name": "reef_x", "dtype": "int32"}),
         "no role"),
        (lambda k: k["args"][1].pop("dtype"), "dtype"),
        (lambda k: k.update(launch_params={}), "launch_params"),
        (lambda k: k["dkp"].update(grid=[3, 2, 1]), "plain kernel 0"),
    ]  # fmt: skip
    for edit, msg in cases:
        with pytest.raises(PackageError, match=msg):
            Manifest.from_json(broken(edit))
    bad = json.loads(json.dumps(good))
    bad["variants"]["plain"]["kernels"][0]["dkp"] = good["variants"]["dkp"]["kernels"][0]["dkp"]
    with pytest.raises(PackageError, match="only dkp-variant"):
        Manifest.from_json(bad)
    old = {**good, "version": 1}
    with pytest.raises(PackageError, match="recompile"):
        Manifest.from_json(old)


def test_bad_inputs_fail_clearly(tmp_path):
    with pytest.raises(UnsupportedError, match="supported"):
        parse_target("cuda:sm_75")
    with pytest.raises(UnsupportedError):
        compile_model("tiny_cnn", "opencl:foo", out_dir=tmp_path)
    with pytest.raises(ModelError, match="unknown model"):
        compile_model("alexnet", "cuda:sm_90", out_dir=tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07garbage that is not a protobuf")
    with pytest.raises(ModelError, match="ONNX"):
        compile_model(str(bad), "cuda:sm_90", out_dir=tmp_path)
    with pytest.raises(ModelError, match="no such file"):
        compile_model(str(tmp_path / "missing.onnx"), "cuda:sm_90", out_dir=tmp_path)
    assert not list(tmp_path.glob("*/manifest.json"))


def test_cli_compile_errors(capsys):
    from reef_rocm.cli import main

    assert main(["compile", "tiny_cnn", "--target", "rocm:gfx1100"]) == 1
    assert "unsupported target" in capsys.readouterr().err
    assert main(["compile", "nosuchnet"]) == 1
    assert "unknown model" in capsys.readouterr().err
    assert main(["compile", "--list"]) == 0
    assert "distilbert" in capsys.readouterr().out
