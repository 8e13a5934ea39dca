"""Metadata every benchmark result carries: card, date, git commit, software versions."""

from __future__ import annotations

import datetime
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

from reef_rocm import __version__


def git_commit(root: Path | None = None) -> str:
    """The commit results are recorded against: REEF_GIT_COMMIT when set (tools/run_gpu.sh
    sets it: the GPU host gets a copy of the tree without .git), else git's HEAD with
    "-dirty" when tracked files differ from it, else "unknown"."""
    env = os.environ.get("REEF_GIT_COMMIT")
    if env:
        return env
    root = root or Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_description() -> str:
    """The host CPU as the OS names it, with its core count (for CPU-side results)."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} cores)"


def run_metadata(device: Any = None, command: str | None = None) -> dict[str, Any]:
    """Card, driver, date, git commit, versions and command of a result. With no device the
    "card" is the host CPU (compile times and other CPU results)."""
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "reef_rocm": __version__,
        "python": platform.python_version(),
        "host": platform.node(),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
    }
    if device is not None:
        info = device.info
        meta["card"] = info.name
        meta["backend"] = info.backend
        meta["arch"] = info.arch
        meta["driver"] = info.driver_version
        meta["runtime"] = info.runtime_version
        if info.extra.get("simulated"):
            meta["simulated"] = True
    else:
        meta["card"] = cpu_description()
    return meta


def write_result(
    path: str | Path, doc: dict[str, Any], device: Any = None, command: str | None = None
) -> Path:
    """Write a result JSON: ``run_metadata`` first, then the benchmark's own fields (which
    win on a clash, e.g. a more precise "command"). The one writer every benchmark and record
    uses."""
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**run_metadata(device, command), **doc}, indent=1) + "\n")
    return out
