"""The measurement bundle's index (``index.json``): its schema, reading and checking.

No TVM here: ``reef tune measure`` reads bundles on GPU hosts that only have the project's
runtime. A bundle is a directory::

    index.json               this schema (below)
    t<task>.cubin.gz         one code object per task holding every candidate's kernels
                             (kernel names t<task>_c<cand>_kernel...), gzipped
    tasks/t<task>.json       workload (TVMScript) and candidate traces, for ``reef tune import``

index.json::

    {"format": "reef-tune-bundle", "version": 1, "target": "cuda:sm_90", "backend": "cuda",
     "round": 1, "created": ISO date, "git_commit": ..., "tvm": ...,
     "tasks": [{"id": 0, "name": "fused_conv2d8_add4_relu4", "workload_hash": "...",
                "weight_us": 1768.4, "calls": 4, "models": {"vgg19": 4},
                "binary": "t0.cubin.gz", "detail": "tasks/t0.json",
                "params": [{"name": "p0", "dtype": "float32", "shape": [1, 512, 14, 14],
                            "nbytes": 401408, "output": false}, ...],
                "candidates": [{"id": 0, "kind": "default", "key": "default",
                                "kernels": [{"name": "t0_c0_kernel", "grid": [x, y, z],
                                             "block": [x, y, z], "shared_mem": 0,
                                             "args": [{"param": 0} | {"scalar": 3,
                                                                     "dtype": "int32"}]}]},
                               ...]}]}

Candidate 0 of every task is the default (dlight) schedule: the measurement's reference
output and the time a tuned schedule has to beat.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reef_rocm.errors import PackageError

INDEX_FILE = "index.json"
FORMAT = "reef-tune-bundle"
VERSION = 1
DTYPES = ("float32", "float16", "float64", "int8", "uint8", "int32", "int64", "bool")


@dataclass
class BundleTask:
    id: int
    name: str
    workload_hash: str
    binary: str
    params: list[dict[str, Any]]
    candidates: list[dict[str, Any]]
    raw: dict[str, Any]

    @property
    def outputs(self) -> list[int]:
        return [i for i, p in enumerate(self.params) if p["output"]]


@dataclass
class Bundle:
    root: Path
    index: dict[str, Any]
    tasks: list[BundleTask]

    def binary(self, task: BundleTask) -> bytes:
        path = self.root / task.binary
        if not path.is_file():
            raise PackageError(f"{self.root}: task {task.id} binary {task.binary} is missing")
        data = path.read_bytes()
        return gzip.decompress(data) if path.suffix == ".gz" else data

    def candidate(self, task_id: int, cand_id: int) -> dict[str, Any] | None:
        for t in self.tasks:
            if t.id == task_id:
                return next((c for c in t.candidates if c["id"] == cand_id), None)
        return None


def _need(d: dict[str, Any], key: str, types: Any, where: str) -> Any:
    if key not in d:
        raise PackageError(f"{where}: missing field {key!r}")
    if not isinstance(d[key], types):
        raise PackageError(f"{where}: field {key!r} has type {type(d[key]).__name__}")
    return d[key]


def _dim3(v: Any, where: str) -> None:
    if not (isinstance(v, list) and len(v) == 3 and all(isinstance(x, int) and x >= 1 for x in v)):
        raise PackageError(f"{where}: {v!r} is not three positive ints")


def validate_index(index: Any, where: str = INDEX_FILE) -> list[BundleTask]:
    """Check ``index`` against the schema above; PackageError naming the first problem."""
    if not isinstance(index, dict):
        raise PackageError(f"{where}: not a JSON object")
    if index.get("format") != FORMAT:
        raise PackageError(f"{where}: format {index.get('format')!r} is not {FORMAT!r}")
    if index.get("version") != VERSION:
        raise PackageError(
            f"{where}: version {index.get('version')!r}, this reader knows {VERSION}"
        )
    _need(index, "target", str, where)
    _need(index, "backend", str, where)
    tasks = []
    seen_tasks: set[int] = set()
    for ti, t in enumerate(_need(index, "tasks", list, where)):
        tw = f"{where}: tasks[{ti}]"
        if not isinstance(t, dict):
            raise PackageError(f"{tw}: not an object")
        tid = _need(t, "id", int, tw)
        if tid in seen_tasks:
            raise PackageError(f"{tw}: duplicate task id {tid}")
        seen_tasks.add(tid)
        params = _need(t, "params", list, tw)
        for pi, p in enumerate(params):
            pw = f"{tw}.params[{pi}]"
            if _need(p, "dtype", str, pw) not in DTYPES:
                raise PackageError(f"{pw}: dtype {p['dtype']!r} not supported")
            _need(p, "shape", list, pw)
            if _need(p, "nbytes", int, pw) < 1:
                raise PackageError(f"{pw}: nbytes must be positive")
            _need(p, "output", bool, pw)
        if not any(p["output"] for p in params):
            raise PackageError(f"{tw}: no output parameter")
        cands = _need(t, "candidates", list, tw)
        seen: set[int] = set()
        for ci, c in enumerate(cands):
            cw = f"{tw}.candidates[{ci}]"
            cid = _need(c, "id", int, cw)
            if cid in seen:
                raise PackageError(f"{cw}: duplicate candidate id {cid}")
            seen.add(cid)
            _need(c, "kind", str, cw)
            _need(c, "key", str, cw)
            for ki, k in enumerate(_need(c, "kernels", list, cw)):
                kw = f"{cw}.kernels[{ki}]"
                _need(k, "name", str, kw)
                _dim3(_need(k, "grid", list, kw), f"{kw}.grid")
                _dim3(_need(k, "block", list, kw), f"{kw}.block")
                _need(k, "shared_mem", int, kw)
                for ai, a in enumerate(_need(k, "args", list, kw)):
                    if "param" in a:
                        if not (isinstance(a["param"], int) and 0 <= a["param"] < len(params)):
                            raise PackageError(f"{kw}.args[{ai}]: no parameter {a['param']!r}")
                    elif "scalar" not in a or "dtype" not in a:
                        raise PackageError(f"{kw}.args[{ai}]: neither a parameter nor a scalar")
        if cands and cands[0]["kind"] != "default":
            raise PackageError(f"{tw}: candidate 0 must be the default schedule (the reference)")
        tasks.append(
            BundleTask(
                tid,
                _need(t, "name", str, tw),
                _need(t, "workload_hash", str, tw),
                _need(t, "binary", str, tw),
                params,
                cands,
                t,
            )
        )
    return tasks


def load_bundle(path: str | Path) -> Bundle:
    root = Path(path)
    idx = root / INDEX_FILE
    if not root.is_dir():
        raise PackageError(f"{root}: no such bundle directory")
    if not idx.is_file():
        raise PackageError(f"{root}: not a tuning bundle (no {INDEX_FILE})")
    try:
        index = json.loads(idx.read_text())
    except json.JSONDecodeError as e:
        raise PackageError(f"{idx}: corrupt JSON ({e})") from None
    tasks = validate_index(index, str(idx))
    for t in tasks:  # a missing file fails here, before any GPU work
        if not (root / t.binary).is_file():
            raise PackageError(f"{root}: task {t.id} binary {t.binary} is missing")
    return Bundle(root, index, tasks)
