"""The numpy answer of a simulated package for any input: the chain of affine steps its
kernel models declare (each kernel's effect and weight buffer), computed here over whole
arrays, independently of the sim, the scheduler and the server."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from reef_rocm.package.files import ModelPackage


def expected_output(path: str | Path, x: np.ndarray) -> np.ndarray:
    pkg = ModelPackage.load(path)
    m = pkg.manifest
    variant = m.variants["plain"]
    module = json.loads(pkg.binary("plain"))
    y = np.asarray(x, np.float32).copy()
    for spec, rec in zip(module["kernels"], variant.kernels, strict=True):
        e = spec["effect"]
        assert e["op"] == "affine", e
        y = y * np.float32(e["scale"]) + np.float32(e["bias"])
        if "weight" in e:
            names = [p["name"] for p in spec["params"]]
            arg = rec.args[names.index(e["weight"])]
            y = y + pkg.buffer_contents(m.buffers[arg["id"]])
    return y.astype(np.float32)
