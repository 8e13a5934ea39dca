"""User models (ONNX exported from PyTorch, torch.export programs) take the zoo's path."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tvm")
torch = pytest.importorskip("torch")

from reef_rocm.compiler.build import compile_model  # noqa: E402

HAVE_NVCC = shutil.which("nvcc") is not None or Path("/usr/local/bin/nvcc").exists()
pytestmark = pytest.mark.skipif(not HAVE_NVCC, reason="nvcc not installed")


class SmallNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8 * 8 * 8, 10)

    def forward(self, x):
        y = torch.nn.functional.max_pool2d(torch.relu(self.bn(self.conv(x))), 2)
        return torch.softmax(self.fc(y.flatten(1)), dim=-1)


def make_onnx(path: Path) -> tuple[torch.nn.Module, torch.Tensor]:
    """A small PyTorch CNN exported to ONNX (also used to build the GPU test's package)."""
    torch.manual_seed(0)
    net = SmallNet().eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        net.bn.running_mean.uniform_(-0.1, 0.1)
        net.bn.running_var.uniform_(0.5, 1.5)
    x = torch.rand(1, 3, 16, 16)
    torch.onnx.export(net, (x,), str(path), input_names=["x"], output_names=["y"], dynamo=False)
    return net, x


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("REEF_CACHE", str(tmp_path / "cache"))


def test_onnx_from_pytorch(tmp_path):
    onnx_path = tmp_path / "small_net.onnx"
    net, _ = make_onnx(onnx_path)
    r = compile_model(str(onnx_path), "cuda:sm_90", out_dir=tmp_path / "pk", variants="plain",
                      progress=False)  # fmt: skip
    m = r.manifest
    assert m.model["kind"] == "onnx" and m.weights["file"] == "weights.bin"
    assert len(m.variant().kernels) >= 3
    # the package's CPU reference agrees with PyTorch on the package's own input
    x = np.load(r.path / m.reference["inputs"][0])
    ref = np.load(r.path / m.reference["outputs"][0])
    with torch.no_grad():
        expect = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ref, expect, rtol=1e-4, atol=1e-6)
    # stored weights round-trip through the runtime's reader
    from reef_rocm.package.files import ModelPackage

    pkg = ModelPackage.load(r.path)
    w = next(b for b in m.params() if b.shape == [8, 3, 3, 3])
    assert pkg.buffer_contents(w).shape == (8, 3, 3, 3)


def test_torch_export_program(tmp_path):
    torch.manual_seed(1)
    net = SmallNet().eval()
    x = torch.rand(1, 3, 16, 16)
    ep = torch.export.export(net, (x,))
    pt2 = tmp_path / "small_net.pt2"
    torch.export.save(ep, str(pt2))
    r = compile_model(str(pt2), "cuda:sm_90", out_dir=tmp_path / "pk", variants="plain",
                      progress=False)  # fmt: skip
    m = r.manifest
    assert m.model["kind"] == "torch"
    xin = np.load(r.path / m.reference["inputs"][0])
    with torch.no_grad():
        expect = net(torch.from_numpy(xin)).numpy()
    np.testing.assert_allclose(
        np.load(r.path / m.reference["outputs"][0]), expect, rtol=1e-4, atol=1e-6
    )
