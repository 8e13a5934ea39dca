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
from reef_rocm.compiler.targets import parse_target  # noqa: E402
from reef_rocm.errors import ModelError, UnsupportedError  # noqa: E402
from reef_rocm.manifest import Manifest, idempotence_violations  # noqa: E402

HAVE_NVCC = shutil.which("nvcc") is not None or Path("/usr/local/bin/nvcc").exists()
HAVE_LLD = any(shutil.which(x) for x in ("ld.lld-16", "ld.lld-17", "ld.lld"))


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
