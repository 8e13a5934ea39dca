"""Shared pieces of the DISB tests: synthetic per-kernel profiles (the format
``ModelInstance.profile()`` writes) standing in for the H200 profiles until they are committed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

# (kernels, microseconds each): small enough that a sim run of A takes seconds
SYNTHETIC = {
    "vgg19": (6, 150.0),
    "resnet152": (12, 120.0),
    "densenet201": (10, 90.0),
    "inception_v3": (8, 100.0),
    "distilbert": (5, 80.0),
}


def write_profiles(root: Path, models: dict[str, tuple[int, float]] = SYNTHETIC) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for model, (n, us) in models.items():
        doc = {
            "model": f"{model}-cuda_sm_90",
            "variant": "plain",
            "device": "synthetic test profile (not measured)",
            "kernels": [
                {
                    "index": i,
                    "name": f"{model}_k{i}",
                    "grid": [264, 1, 1],
                    "block": [256, 1, 1],
                    "shared_mem": 0,
                    "us_median": us,
                    "us_min": us * 0.95,
                }
                for i in range(n)
            ],  # fmt: skip
            "total_us_median": n * us,
        }
        (root / f"{model}.json").write_text(json.dumps(doc))
    return root


@pytest.fixture
def profiles(tmp_path: Path) -> Path:
    return write_profiles(tmp_path / "profiles")
