"""tools/validate-kfd-patch.sh and its C program, as far as they run without an AMD GPU.

The hardware run itself (two processes, one resets its queues, the other's results stay
correct) needs a patched driver on an MI-series GPU: see docs/kfd_patch.md.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tools" / "validate-kfd-patch.sh"
SRC = ROOT / "tools" / "kfd-validate" / "reef_validate.c"
HSA_H = Path("/usr/include/hsa/hsa.h")


def test_refuses_cleanly_without_the_patch(tmp_path: Path) -> None:
    # No /dev/kfd here (or no patch): setup error, exit 2, nothing built
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run(["bash", str(SCRIPT), "--out", str(tmp_path / "w")], env=env,
                       capture_output=True, text=True, timeout=60)
    if Path("/dev/kfd").exists():
        pytest.skip("/dev/kfd exists: this is a GPU machine, run the script itself")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "patch is not loaded" in r.stderr
    assert not (tmp_path / "w").exists()


def test_help_and_usage() -> None:
    r = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--gpu-id" in r.stdout
    assert subprocess.run(["bash", str(SCRIPT), "--bogus"],
                          capture_output=True).returncode == 2


@pytest.mark.skipif(not HSA_H.exists() or shutil.which("gcc") is None,
                    reason="needs gcc and the HSA headers (Debian: libhsa-runtime-dev)")
def test_validator_builds_and_its_host_reference_is_right(tmp_path: Path) -> None:
    # -Werror against the real hsa.h and reef_kfd.h; selftest checks the LCG jump-ahead
    # that verifies every GPU result against plain stepping
    exe = tmp_path / "reef_validate"
    subprocess.run(["gcc", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                    f"-I{ROOT / 'kfd_patch' / 'include' / 'uapi'}", str(SRC), "-o", str(exe),
                    "-lhsa-runtime64"], check=True)
    r = subprocess.run([str(exe), "selftest"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "SELFTEST PASS" in r.stdout, r.stdout
    assert subprocess.run([str(exe)], capture_output=True).returncode == 2
