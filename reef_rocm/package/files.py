"""Reading a model package (no TVM): manifest, code objects, weights, reference tensors."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from reef_rocm.errors import PackageError
from reef_rocm.package.manifest import MANIFEST_FILE, Buffer, Manifest
from reef_rocm.package.weights import GENERATOR, generate


@dataclass
class ModelPackage:
    path: Path
    manifest: Manifest

    @classmethod
    def load(cls, path: str | Path) -> ModelPackage:
        p = Path(path)
        m = Manifest.load(p)
        if m.weights.get("generator") != GENERATOR:
            raise PackageError(
                f"{p}: weights generator {m.weights.get('generator')!r} unknown (this "
                f"runtime has {GENERATOR!r})"
            )
        for v in m.variants.values():
            for rel in (v.binary, v.source):
                if not (p / rel).is_file():
                    raise PackageError(f"{p}: missing {rel}")
        return cls(p, m)

    @property
    def name(self) -> str:
        return str(self.manifest.model["name"])

    def binary(self, variant: str = "plain") -> bytes:
        return (self.path / self.manifest.variant(variant).binary).read_bytes()

    def _read(self, rel: str) -> Path:
        f = self.path / rel
        if not f.is_file():
            raise PackageError(f"{self.path}: missing {rel}")
        return f

    def reference_inputs(self) -> list[np.ndarray]:
        return [np.load(self._read(r)) for r in self.manifest.reference.get("inputs", [])]

    def reference_outputs(self) -> list[np.ndarray]:
        return [np.load(self._read(r)) for r in self.manifest.reference.get("outputs", [])]

    def buffer_contents(self, buf: Buffer, seed: int | None = None) -> np.ndarray:
        """Initial contents of a param/const buffer: generated from the seed or read from
        the package's stored bytes."""
        init = buf.init or {}
        shape = tuple(buf.shape)
        if init.get("kind") == "file":
            n = int(np.prod(shape, dtype=np.int64)) if shape else 1
            arr = np.fromfile(
                self._read(init["path"]), dtype=np.dtype(buf.dtype), count=n, offset=init["offset"]
            )
            if arr.size != n:
                raise PackageError(f"{self.path}: {init['path']} too short for {buf.name}")
            return arr.reshape(shape)
        if not init:
            raise PackageError(f"{self.path}: buffer {buf.id} ({buf.name}) has no init")
        s = self.manifest.weights["seed"] if seed is None else seed
        return _generated(s, buf.name, shape, buf.dtype, init)


# Generated weights are a pure function of (seed, name, shape, dtype, init). Benchmarks load
# the same models again for every policy (DISB D/E: ten models per run), and generating a
# VGG-19's 550 MB costs seconds of CPU, so the process keeps recent results, read-only, up to
# REEF_WEIGHT_CACHE_MB (default 4096; 0 turns it off).
_CACHE: OrderedDict[tuple, np.ndarray] = OrderedDict()
_CACHE_LOCK = threading.Lock()


def _generated(
    seed: int, name: str, shape: tuple[int, ...], dtype: str, init: dict[str, Any]
) -> np.ndarray:
    budget = int(os.environ.get("REEF_WEIGHT_CACHE_MB", "4096")) << 20
    key = (seed, name, shape, dtype, json.dumps(init, sort_keys=True))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    arr = generate(seed, name, shape, dtype, init)
    if 0 < arr.nbytes <= budget:
        arr.flags.writeable = False
        with _CACHE_LOCK:
            _CACHE[key] = arr
            total = sum(a.nbytes for a in _CACHE.values())
            while total > budget:
                _, old = _CACHE.popitem(last=False)
                total -= old.nbytes
    return arr


def find_packages(root: str | Path, target: str | None = None) -> list[Path]:
    """Package directories under ``root`` (optionally for one target, e.g. "cuda:sm_90")."""
    out = []
    for m in sorted(Path(root).glob(f"*/{MANIFEST_FILE}")):
        if m.parent.name.startswith("."):  # a package still being written (build.py)
            continue
        if target is None or m.parent.name.endswith("-" + target.replace(":", "_")):
            out.append(m.parent)
    return out
