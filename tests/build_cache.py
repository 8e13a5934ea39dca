"""Compiled test fixtures, built once and kept on disk by content hash.

A key is the SHA-256 of everything that goes into a build (sources or the printed TIR, the
target, tool versions, the toolchain code), so an entry is reused only for the same inputs:
within a session a build runs once however many tests need it, and a second session on the
same machine reuses it. tests/conftest.py opens the cache for the session (under pytest's
cache folder, or ``$REEF_TEST_CACHE``).
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

MAX_AGE_DAYS = 14  # entries unused for this long are removed when a session opens the cache


class BuildCache:
    """Directories of build outputs under ``root``, one per key."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.built = 0  # builds run by this process
        self.reused = 0  # entries found on disk

    @staticmethod
    def key(*parts: str | bytes) -> str:
        h = hashlib.sha256()
        for p in parts:
            data = p.encode() if isinstance(p, str) else p
            h.update(len(data).to_bytes(8, "little"))
            h.update(data)
        return h.hexdigest()[:32]

    def entry(self, key: str, build: Callable[[Path], None]) -> Path:
        """The directory for ``key``; ``build(dir)`` fills it if there is none yet. A build
        that raises leaves nothing behind, so a failure is not cached."""
        path = self.root / key
        if path.is_dir():
            os.utime(path)
            self.reused += 1
            return path
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=self.root))
        try:
            build(tmp)
            tmp.rename(path)
        except OSError:
            if not path.is_dir():  # not a concurrent session that got there first
                raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self.built += 1
        return path

    def prune(self, max_age_days: float = MAX_AGE_DAYS) -> int:
        """Remove entries not used for ``max_age_days``; returns how many."""
        cutoff = time.time() - max_age_days * 86400
        old = [p for p in self.root.iterdir() if p.is_dir() and p.stat().st_mtime < cutoff]
        for p in old:
            shutil.rmtree(p, ignore_errors=True)
        return len(old)


@functools.cache
def tool_version(path: str) -> str:
    """``path --version``'s output (part of every key that names the tool)."""
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return "unavailable"


@functools.cache
def file_digest(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
