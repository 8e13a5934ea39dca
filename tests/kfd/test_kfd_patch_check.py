"""Runs tools/kfd-patch-check.sh: apply the series to Debian's kernel sources, build every
amdkfd object with W=1 (no new warnings), checkpatch --strict, compile the uapi header."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TARBALL_6_1 = Path(os.environ.get("REEF_LINUX_6_1_TARBALL", "/usr/src/linux-source-6.1.tar.xz"))
CACHE = Path(os.environ.get("REEF_CACHE", Path.home() / ".cache" / "reef_rocm"))
TARBALL_6_12 = Path(os.environ.get("REEF_LINUX_6_12_TARBALL",
                                   CACHE / "debs" / "usr" / "src" / "linux-source-6.12.tar.xz"))


@pytest.mark.slow
@pytest.mark.skipif(not TARBALL_6_1.exists(),
                    reason=f"{TARBALL_6_1} absent (apt-get install linux-source-6.1; "
                    "tools/fetch-kernel-sources.sh also fetches 6.12)")
def test_kfd_patch_check() -> None:
    r = subprocess.run(["bash", str(ROOT / "tools" / "kfd-patch-check.sh")],
                       capture_output=True, text=True, timeout=1500)
    print(r.stdout[-20000:])
    print(r.stderr[-5000:])
    assert r.returncode == 0, "kfd-patch-check failed (output above)"
    assert "6.1: no new warnings" in r.stdout
    if TARBALL_6_12.exists():  # fetched by tools/fetch-kernel-sources.sh
        assert "6.12: no new warnings" in r.stdout
    assert "kfd-patch-check: all checks passed" in r.stdout
