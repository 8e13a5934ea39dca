"""Which compiled package a workload model runs on a GPU: the one whose manifest target the
device loads."""

from __future__ import annotations

import json

import pytest

from reef_rocm.bench.disb.packages import find_model_package
from reef_rocm.bench.disb.workload import WorkloadError


def _pkg(root, name, backend, arch):
    d = root / name
    d.mkdir(parents=True)
    target = {"name": name.split("-", 1)[1].replace("_", ":", 1), "backend": backend, "arch": arch}
    (d / "manifest.json").write_text(json.dumps({"target": target}))
    return d


def test_picks_the_target_the_device_loads(tmp_path):
    _pkg(tmp_path, "vgg19-cuda_sm_80", "cuda", "sm_80")
    want = _pkg(tmp_path, "vgg19-cuda_sm_90", "cuda", "sm_90")
    rocm = _pkg(tmp_path, "vgg19-rocm_gfx90a", "hip", "gfx90a")
    _pkg(tmp_path, "vgg19x-cuda_sm_90", "cuda", "sm_90")  # another model's prefix
    assert find_model_package(tmp_path, "vgg19", "cuda", "sm_90") == want
    assert find_model_package(tmp_path, "vgg19", "hip", "gfx90a") == rocm
    with pytest.raises(
        WorkloadError, match=r"is for cuda:sm_80, cuda:sm_90, rocm:gfx90a.*hip:gfx942"
    ):
        find_model_package(tmp_path, "vgg19", "hip", "gfx942")
    with pytest.raises(WorkloadError, match="no package for model 'resnet152'.*reef compile"):
        find_model_package(tmp_path, "resnet152", "cuda", "sm_90")
