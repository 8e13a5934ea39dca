"""Metadata every benchmark result carries: card, date, git commit, software versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
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


def run_metadata(device: Any = None) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "reef_rocm": __version__,
        "python": platform.python_version(),
        "host": platform.node(),
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
        meta["card"] = "cpu"
    return meta
