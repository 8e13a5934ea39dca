"""The tuning database: TVM MetaSchedule's JSON database layout, plus what we measured.

A database is a directory with MetaSchedule's two files (the names
``ms.database.create("json", work_dir=...)`` uses):

- ``database_workload.json``: one line per workload, ``[structural_hash, payload]``;
- ``database_tuning_record.json``: one line per measured schedule,
  ``[workload_index, [trace_json, run_secs, target_json, args_info_json]]`` - exactly
  ``TuningRecord.as_json()``, so TVM parses it with ``TuningRecord.from_json``.

The workload payload in TVM's own files is base64 of ``tvm.ir.save_json(mod)``. That
serializer segfaults in this TVM build (0.27.0.post1, tvm-ffi 0.1.15: any ``PrimType`` or
``IntImm``), so our payload is ``{"tvmscript": mod.script()}``, which TVM parses back with
``tvm.script.from_source``; ``TuneDatabase.to_tvm()`` builds TVM's own database
(``ms.database.MemoryDatabase``) from the files, which ``ApplyDatabase`` /
``query_schedule`` use. A third file, ``reef_measured.json``, keeps every measured
candidate (valid or not) and the default schedule's time per workload: what ``reef tune``
skips when resumed and what a tuned schedule must beat to be applied.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from reef_rocm.compiler.tune.bundle import load_bundle
from reef_rocm.errors import PackageError

WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
MEASURED_FILE = "reef_measured.json"


def _read_lines(path: Path) -> list[Any]:
    if not path.is_file():
        return []
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise PackageError(f"{path}:{n}: corrupt JSON ({e})") from None
    return out


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class TuneDatabase:
    """A tuning database directory (created on first write)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.workloads: list[list[Any]] = _read_lines(self.path / WORKLOAD_FILE)
        self.records: list[list[Any]] = _read_lines(self.path / RECORD_FILE)
        mpath = self.path / MEASURED_FILE
        try:
            self.measured: dict[str, Any] = json.loads(mpath.read_text()) if mpath.is_file() else {}
        except json.JSONDecodeError as e:
            raise PackageError(f"{mpath}: corrupt JSON ({e})") from None
        for i, w in enumerate(self.workloads):
            if not (isinstance(w, list) and len(w) == 2 and isinstance(w[0], str)):
                raise PackageError(
                    f"{self.path / WORKLOAD_FILE}: line {i + 1} is not [hash, payload]"
                )
        for i, r in enumerate(self.records):
            if not (
                isinstance(r, list)
                and len(r) == 2
                and isinstance(r[0], int)
                and 0 <= r[0] < len(self.workloads)
            ):
                raise PackageError(f"{self.path / RECORD_FILE}: line {i + 1} names no workload")

    # ---------------------------------------------------------------- queries
    def workload_index(self, workload_hash: str) -> int | None:
        return next((i for i, w in enumerate(self.workloads) if w[0] == workload_hash), None)

    def measured_keys(self, workload_hash: str) -> set[str]:
        """Candidate keys measured for this workload (valid or not): a resumed run skips them."""
        return set(self.measured.get(workload_hash, {}).get("candidates", {}))

    def skip_map(self) -> dict[str, set[str]]:
        return {h: self.measured_keys(h) for h in self.measured}

    def default_us(self, workload_hash: str) -> float | None:
        return self.measured.get(workload_hash, {}).get("default_us")

    def best(self, workload_hash: str) -> tuple[float, Any] | None:
        """(seconds, trace JSON) of the fastest record of this workload, or None."""
        i = self.workload_index(workload_hash)
        recs = [r[1] for r in self.records if r[0] == i]
        if not recs:
            return None
        r = min(recs, key=lambda r: _mean(r[1]))
        return _mean(r[1]), r[0]

    def top_traces(self, workload_hash: str, k: int = 8) -> list[Any]:
        """Trace JSON of the ``k`` fastest records of this workload, fastest first (the
        parents of the next round's evolutionary step)."""
        i = self.workload_index(workload_hash)
        recs = sorted((r[1] for r in self.records if r[0] == i), key=lambda r: _mean(r[1]))
        return [r[0] for r in recs[:k]]

    def parents_map(self, k: int = 8) -> dict[str, list[Any]]:
        return {w[0]: self.top_traces(w[0], k) for w in self.workloads}

    def summary(self) -> list[dict[str, Any]]:
        out = []
        for h, m in self.measured.items():
            b = self.best(h)
            out.append(
                {
                    "workload_hash": h,
                    "name": m.get("name"),
                    "default_us": m.get("default_us"),
                    "best_us": None if b is None else b[0] * 1e6,
                    "measured": len(m.get("candidates", {})),
                    "valid": sum(1 for c in m.get("candidates", {}).values() if c["valid"]),
                }
            )
        return out

    # ---------------------------------------------------------------- import
    def import_timings(
        self, timings: dict[str, Any] | str | Path, bundle: str | Path | None = None
    ) -> dict[str, int]:
        """Record a ``reef tune measure`` result; ``bundle`` defaults to the one it names.

        Every row must name a task and candidate of the bundle with the same key, else
        PackageError (nothing is written). Re-importing the same timings adds nothing; a
        workload marked ``withheld`` in reef_measured.json (records that built but computed
        wrong outputs on a GPU) gets its timings recorded but no records."""
        doc = _load_timings(timings)
        b = load_bundle(bundle if bundle is not None else doc.get("bundle_path", ""))
        details: dict[int, dict[str, Any]] = {}
        rows = doc["results"]
        for n, r in enumerate(rows):  # check everything before changing anything
            task = next((t for t in b.tasks if t.id == r.get("task")), None)
            if task is None:
                raise PackageError(f"timings row {n}: task {r.get('task')!r} is not in {b.root}")
            cand = next((c for c in task.candidates if c["id"] == r.get("candidate")), None)
            if cand is None or cand["key"] != r.get("key"):
                raise PackageError(
                    f"timings row {n}: candidate {r.get('candidate')!r} of task {task.id} is "
                    f"not in {b.root} (or has another key): timings from another bundle?"
                )
            if task.workload_hash != r.get("workload_hash"):
                raise PackageError(f"timings row {n}: workload hash differs from the bundle's")
            if task.id not in details:
                path = b.root / task.raw.get("detail", f"tasks/t{task.id}.json")
                try:
                    details[task.id] = json.loads(path.read_text())
                except (OSError, json.JSONDecodeError) as e:
                    raise PackageError(f"{path}: cannot read task detail ({e})") from None
        added = {"records": 0, "measured": 0, "workloads": 0}
        for r in rows:
            d = details[r["task"]]
            h = r["workload_hash"]
            m = self.measured.setdefault(h, {"name": d["name"], "candidates": {}})
            if r["kind"] == "default":
                if r["valid"]:
                    m["default_us"] = r["us_median"]
                continue
            if r["key"] in m["candidates"]:
                continue
            m["candidates"][r["key"]] = {
                "valid": bool(r["valid"]),
                "us": r.get("us_median"),
                "error": r.get("error"),
            }
            added["measured"] += 1
            if not r["valid"] or m.get("withheld"):
                continue  # withheld: its records gave wrong outputs on a GPU; keep none
            wi = self.workload_index(h)
            if wi is None:
                self.workloads.append([h, {"tvmscript": d["workload_tvmscript"]}])
                wi = len(self.workloads) - 1
                added["workloads"] += 1
            trace = next(c["trace"] for c in d["candidates"] if c["id"] == r["candidate"])
            self.records.append([wi, [trace, [r["us_median"] * 1e-6], d["target"], d["args_info"]]])
            added["records"] += 1
        self.save()
        return added

    def forget(self, error_prefix: str, names: set[str] | None = None) -> int:
        """Forget the measured candidates whose error starts with ``error_prefix`` (of the
        workloads named in ``names``, default all), so that the next export may draw and
        measure them again; returns how many. For candidates refused for a reason since
        fixed, e.g. a transform that could not build their package variants."""
        n = 0
        for m in self.measured.values():
            if names is not None and m.get("name") not in names:
                continue
            cands = m.get("candidates", {})
            gone = [k for k, c in cands.items() if (c.get("error") or "").startswith(error_prefix)]
            for key in gone:
                del cands[key]
            n += len(gone)
        return n

    def prune(self, keep: int = 8) -> int:
        """Keep only the ``keep`` fastest records of each workload (the next round's parents;
        ``reef_measured.json`` still lists every measured candidate, so nothing is measured
        twice); returns how many records were dropped. The shipped database is pruned so
        the repository stays small."""
        if keep < 1:
            raise PackageError(f"prune: keep must be >= 1, not {keep}")
        kept: list[list[Any]] = []
        for i in range(len(self.workloads)):
            recs = sorted((r for r in self.records if r[0] == i), key=lambda r: _mean(r[1][1]))
            kept.extend(recs[:keep])
        dropped = len(self.records) - len(kept)
        self.records = kept
        return dropped

    def digest(self) -> str:
        """sha256 of the database files (what a package records it was built with)."""
        import hashlib

        h = hashlib.sha256()
        for name in (WORKLOAD_FILE, RECORD_FILE, MEASURED_FILE):
            p = self.path / name
            h.update(name.encode() + b"\0" + (p.read_bytes() if p.is_file() else b""))
        return h.hexdigest()

    def save(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        _write_atomic(
            self.path / WORKLOAD_FILE, "".join(json.dumps(w) + "\n" for w in self.workloads)
        )
        _write_atomic(self.path / RECORD_FILE, "".join(json.dumps(r) + "\n" for r in self.records))
        _write_atomic(self.path / MEASURED_FILE, json.dumps(self.measured, indent=1) + "\n")

    # ---------------------------------------------------------------- TVM
    def applied(self, only_faster: bool = True) -> set[str]:
        """Workload hashes whose best record is applied (``only_faster``: it beats the
        measured default schedule)."""
        out = set()
        for h, _ in self.workloads:
            b = self.best(h)
            default = self.default_us(h)
            if b is None or (only_faster and default is not None and b[0] * 1e6 >= default):
                continue
            out.add(h)
        return out

    def to_tvm(self, only_faster: bool = True, workloads: set[str] | None = None) -> Any:
        """TVM's ``ms.database.MemoryDatabase`` holding the best record of each workload
        (``only_faster``: only where it beats the measured default schedule; ``workloads``:
        only these hashes, which saves parsing the others' TVMScript)."""
        import tvm
        import tvm.s_tir.meta_schedule as ms

        db = ms.database.MemoryDatabase()
        use = self.applied(only_faster)
        for h, payload in self.workloads:
            if h not in use or (workloads is not None and h not in workloads):
                continue
            b = self.best(h)
            mod = tvm.script.from_source(payload["tvmscript"])
            wl = db.commit_workload(mod)
            i = self.workload_index(h)
            for r in self.records:
                if r[0] == i and _mean(r[1][1]) == b[0]:
                    db.commit_tuning_record(ms.database.TuningRecord.from_json(r[1], wl))
                    break
        return db


def _mean(secs: list[float]) -> float:
    return sum(secs) / len(secs)


def _load_timings(timings: dict[str, Any] | str | Path) -> dict[str, Any]:
    from reef_rocm.compiler.tune.measure import TIMINGS_FORMAT

    if isinstance(timings, dict):
        doc = timings
    else:
        p = Path(timings)
        if not p.is_file():
            raise PackageError(f"{p}: no such timings file")
        try:
            doc = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise PackageError(f"{p}: corrupt JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != TIMINGS_FORMAT:
        raise PackageError(
            f"not a reef tune timings file (format {doc.get('format')!r})"
            if isinstance(doc, dict)
            else "timings: not a JSON object"
        )
    if not isinstance(doc.get("results"), list):
        raise PackageError("timings: no results list")
    return doc
