"""tools/install-kfd-patch.sh and tools/uninstall-kfd-patch.sh without changing the system."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "tools" / "install-kfd-patch.sh"
UNINSTALL = ROOT / "tools" / "uninstall-kfd-patch.sh"
DEST = Path("/usr/src/reef-amdgpu-2.0.0")


def _env(tmp_path: Path) -> dict[str, str]:
    # Empty sysfs stand-ins: whatever the machine has, the scripts see no AMD GPU.
    for d in ("kfd", "pci", "efivars"):
        (tmp_path / d).mkdir(exist_ok=True)
    return {**os.environ, "REEF_KFD_SYSFS": str(tmp_path / "kfd"),
            "REEF_PCI_SYSFS": str(tmp_path / "pci"), "REEF_EFIVARS": str(tmp_path / "efivars")}


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", *args], env=env, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)


def test_dry_run_shows_every_step_and_passes(tmp_path: Path) -> None:
    existed = DEST.exists()
    r = _run([str(INSTALL), "--dry-run", "--kernel", "6.1.0-99-amd64"], _env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for check in ("privileges", "patch series", "Secure Boot", "amdgpu-dkms", "AMD GPU"):
        assert check in out, check
    for step in ("mkdir -p /usr/src/reef-amdgpu-2.0.0", "dkms add -m reef-amdgpu",
                 "dkms build -m reef-amdgpu -v 2.0.0 -k 6.1.0-99-amd64",
                 "dkms install -m reef-amdgpu", "depmod -a 6.1.0-99-amd64",
                 "update-initramfs -u -k 6.1.0-99-amd64", "udevadm settle",
                 "modprobe amdgpu", "--require-patch --require-gpu"):
        assert step in out, step
    assert "a real run would refuse" in out and "no AMD GPU found" in out
    assert DEST.exists() == existed  # nothing was created


def test_dry_run_rejects_unsupported_kernel(tmp_path: Path) -> None:
    r = _run([str(INSTALL), "--dry-run", "--kernel", "5.15.0-1-amd64"], _env(tmp_path))
    assert r.returncode == 0
    assert "no patch series for kernel 5.15.0-1-amd64" in r.stdout


def test_real_run_refuses_cleanly_without_amd_gpu(tmp_path: Path) -> None:
    existed = DEST.exists()
    r = _run([str(INSTALL), "--yes"], _env(tmp_path))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "refusing to install; nothing was changed" in r.stdout
    assert "+ " not in r.stdout  # no command was run
    assert DEST.exists() == existed


def test_bad_argument_is_a_usage_error(tmp_path: Path) -> None:
    assert _run([str(INSTALL), "--bogus"], _env(tmp_path)).returncode == 2
    assert _run([str(UNINSTALL), "--bogus"], _env(tmp_path)).returncode == 2


def test_uninstall_dry_run(tmp_path: Path) -> None:
    r = _run([str(UNINSTALL), "--dry-run"], _env(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "nothing was changed" in r.stdout or "not installed" in r.stdout


def _fake_bin(tmp_path: Path, script: dict[str, str]) -> dict[str, str]:
    """A PATH whose dkms/modprobe/... are stubs that log their calls (no system change)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    for tool in ("dkms", "depmod", "modprobe", "update-initramfs", "udevadm", "modinfo",
                 "make", "gcc", "patch", "tar", "xz", "dpkg-query", "mokutil", "id"):
        body = script.get(tool, "")
        (bin_dir / tool).write_text(
            f"#!/bin/bash\necho \"{tool} $*\" >> {log}\n{body}\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    env = _env(tmp_path)
    env["PATH"] = f"{bin_dir}:{env['PATH']}"
    env["REEF_SRC_ROOT"] = str(tmp_path / "src")  # never the real /usr/src
    return env


def test_uninstall_rebuilds_initramfs_and_survives_busy_amdgpu(tmp_path: Path) -> None:
    # dkms reports the package for two kernels; modprobe -r fails as for a busy module
    env = _fake_bin(tmp_path, {
        "dkms": 'if [ "$1" = status ]; then echo "reef-amdgpu/1.0.0, 6.1.0-27-amd64,'
                ' x86_64: installed"; echo "reef-amdgpu/1.0.0, 6.12.9-amd64, x86_64:'
                ' installed"; fi',
        "modprobe": '[ "$1" = -r ] && exit 1',
        "id": 'echo 0; exit 0',
    })
    r = _run([str(UNINSTALL), "--yes", "--reload"], env)
    calls = (tmp_path / "calls.log").read_text()
    assert "dkms remove -m reef-amdgpu -v 1.0.0 --all" in calls
    assert "update-initramfs -u -k 6.1.0-27-amd64" in calls
    assert "update-initramfs -u -k 6.12.9-amd64" in calls
    assert "cannot be unloaded" in r.stdout  # not fatal, reported
    assert "modprobe amdgpu" not in calls.replace("modprobe -r amdgpu", "")
