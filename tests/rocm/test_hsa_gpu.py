"""On a machine with an AMD GPU and ROCm: the validation checks of tools/validate-hsa.py as
tests (each PASS or SKIP with its reason). Skips everywhere else, including NVIDIA hosts."""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from pathlib import Path

import pytest

from reef_rocm import gpu

pytestmark = pytest.mark.gpu

TOOL = Path(__file__).resolve().parents[2] / "tools" / "validate-hsa.py"


@pytest.fixture(scope="module")
def validator():
    report = gpu.probe("hsa")
    if not report.available:
        pytest.skip(f"no AMD GPU through HSA: {report.reason}")
    if not shutil.which("hipcc"):
        pytest.skip("hipcc not installed: cannot build hip_kernels/hsa_kernels.hip")
    spec = importlib.util.spec_from_file_location("validate_hsa", TOOL)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    dev = gpu.open_device("hsa")
    with tempfile.TemporaryDirectory() as tmp:
        image = mod.build(dev.info.arch, Path(tmp))
    v = mod.Validator(dev, image)
    yield mod, v
    dev.close()


@pytest.mark.parametrize("check", ["dispatch", "accounting", "cap", "events", "deferred_write",
                                   "cu_mask", "reset", "kill"])
def test_validation_check(validator, check):
    mod, v = validator
    try:
        detail = getattr(v, f"check_{check}")()
    except mod.Skip as e:
        pytest.skip(str(e))
    assert detail
