"""Behaviour of reef_rocm.rocm.kfd where there is no patched /dev/kfd (every machine here).

What happens on a real patched driver is not tested here: see docs/kfd_patch.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reef_rocm.errors import BackendUnavailable
from reef_rocm.rocm import kfd


def _fake_topology(root: Path) -> Path:
    """A KFD sysfs tree with one CPU node and two GPU nodes, as amdkfd lays it out."""
    nodes = root / "topology" / "nodes"
    for node, gpu_id, name, gfx in [(0, 0, "", 0), (1, 41231, "vega20", 90006),
                                    (2, 5123, "gfx942", 90402)]:
        d = nodes / str(node)
        d.mkdir(parents=True)
        (d / "gpu_id").write_text(f"{gpu_id}\n")
        (d / "name").write_text(f"{name}\n")
        (d / "properties").write_text(
            f"cpu_cores_count 0\nsimd_count 240\ngfx_target_version {gfx}\nvendor_id 4098\n")
    return root


def test_topology_lists_gpu_nodes_only(tmp_path: Path) -> None:
    gpus = kfd.topology_gpus(_fake_topology(tmp_path))
    assert [(g.node, g.gpu_id, g.name, g.gfx_target_version) for g in gpus] == [
        (1, 41231, "vega20", 90006), (2, 5123, "gfx942", 90402)]


def test_topology_absent_is_empty(tmp_path: Path) -> None:
    assert kfd.topology_gpus(tmp_path / "nope") == []


def test_status_without_dev_kfd(tmp_path: Path) -> None:
    st = kfd.kfd_status(str(tmp_path / "kfd"), _fake_topology(tmp_path / "sys"))
    assert not st.dev_kfd and not st.patch_loaded and st.patch_version is None
    assert "does not exist" in st.reason
    assert not st.supports(41231, "kill_waves")
    assert not st.any_kill
    assert st.describe() == [f"kfd patch: not available ({st.reason})"]


def test_status_with_unpatched_driver(tmp_path: Path) -> None:
    # A regular file answers every ioctl with ENOTTY, as stock amdkfd answers unknown
    # numbers: the binding must report "patch not loaded", not crash.
    dev = tmp_path / "kfd"
    dev.write_bytes(b"")
    st = kfd.kfd_status(str(dev), _fake_topology(tmp_path / "sys"))
    assert st.dev_kfd and not st.patch_loaded
    assert "not loaded" in st.reason


def test_device_without_dev_kfd_raises_backend_unavailable(tmp_path: Path) -> None:
    d = kfd.KfdDevice(41231, dev_path=str(tmp_path / "kfd"))
    for call in (d.query, d.kill_waves, lambda: d.reset_queue(0x7F0000000000)):
        with pytest.raises(BackendUnavailable, match="does not exist"):
            call()


def test_device_on_unpatched_driver_raises_backend_unavailable(tmp_path: Path) -> None:
    dev = tmp_path / "kfd"
    dev.write_bytes(b"")
    d = kfd.KfdDevice(41231, dev_path=str(dev))
    with pytest.raises(BackendUnavailable, match="patch is not loaded"):
        d.kill_waves()
    d.close()


def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        kfd.KfdDevice(0)
    d = kfd.KfdDevice(1, dev_path="/nonexistent/kfd")
    with pytest.raises(ValueError):
        d.reset_queue(0)
    with pytest.raises(ValueError):
        d.kill_waves(ring_base=0)


def test_all_devices_follow_topology(tmp_path: Path) -> None:
    devs = kfd.KfdDevice.all(str(tmp_path / "kfd"), _fake_topology(tmp_path / "sys"))
    assert [d.gpu_id for d in devs] == [41231, 5123]


def test_ops_names_and_status_helpers() -> None:
    assert kfd.ops_names(kfd.REEF_KFD_OP_KILL_WAVES | kfd.REEF_KFD_OP_RESET_QUEUE) == [
        "kill_waves", "reset_queue"]
    gpu = kfd.GpuKfdStatus(7, "vega20", 90006, ["kill_waves"], "hws", 1)
    st = kfd.KfdStatus(True, True, "1.0", {7: gpu})
    assert st.supports(7, "kill_waves") and not st.supports(7, "reset_queue")
    assert st.any_kill
    assert st.describe()[0] == "kfd patch: version 1.0"


def test_module_cli_require_patch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--require-patch"]) == 1
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--json"]) == 0
    assert '"patch_loaded": false' in capsys.readouterr().out
