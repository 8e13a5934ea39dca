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
    for call in (d.query, d.kill_waves, d.reset_process,
                 lambda: d.reset_queue(0x7F0000000000),
                 lambda: d.reset_queues([0x7F0000000000, 0x7F0000100000])):
        with pytest.raises(BackendUnavailable, match="does not exist"):
            call()


def test_device_on_unpatched_driver_raises_backend_unavailable(tmp_path: Path) -> None:
    dev = tmp_path / "kfd"
    dev.write_bytes(b"")
    d = kfd.KfdDevice(41231, dev_path=str(dev))
    with pytest.raises(BackendUnavailable, match="patch is not loaded"):
        d.kill_waves()
    with pytest.raises(BackendUnavailable, match="patch is not loaded"):
        d.reset_process()
    d.close()


def test_unpatched_update_queue_reaches_the_driver(tmp_path: Path) -> None:
    # AMDKFD_IOC_UPDATE_QUEUE is stock amdkfd, so on a plain file the ioctl itself is
    # rejected (ENOTTY) rather than refused by argument checks.
    dev = tmp_path / "kfd"
    dev.write_bytes(b"")
    with kfd.KfdDevice(41231, dev_path=str(dev)) as d:
        with pytest.raises(BackendUnavailable, match="AMDKFD_IOC_UPDATE_QUEUE"):
            d.suspend_queue(3, 0x7F0000000000, 4096, priority=7)


def test_argument_validation() -> None:
    with pytest.raises(ValueError):
        kfd.KfdDevice(0)
    d = kfd.KfdDevice(1, dev_path="/nonexistent/kfd")
    with pytest.raises(ValueError):
        d.reset_queue(0)
    with pytest.raises(ValueError, match="1 to 4"):
        d.reset_queues([])
    with pytest.raises(ValueError, match="1 to 4"):
        d.reset_queues([0x1000 * (i + 1) for i in range(5)])
    with pytest.raises(ValueError, match="twice"):
        d.reset_queues([0x1000, 0x1000])
    with pytest.raises(ValueError, match="percentage"):
        d.update_queue(1, 0x1000, 4096, 101, 7)
    with pytest.raises(ValueError, match="priority"):
        d.update_queue(1, 0x1000, 4096, 0, 16)
    with pytest.raises(ValueError, match="power of two"):
        d.update_queue(1, 0x1000, 3000, 0, 7)


def test_all_devices_follow_topology(tmp_path: Path) -> None:
    devs = kfd.KfdDevice.all(str(tmp_path / "kfd"), _fake_topology(tmp_path / "sys"))
    assert [d.gpu_id for d in devs] == [41231, 5123]


def test_ops_names_and_status_helpers() -> None:
    assert kfd.ops_names(kfd.REEF_KFD_OP_KILL_WAVES | kfd.REEF_KFD_OP_RESET_QUEUES) == [
        "kill_waves", "reset_queues"]
    gpu = kfd.GpuKfdStatus(7, "vega20", 90006, ["kill_waves"], "no_hws", 1)
    st = kfd.KfdStatus(True, True, "2.0", {7: gpu})
    assert st.supports(7, "kill_waves") and not st.supports(7, "reset_queues")
    assert st.any_kill
    assert st.describe()[0] == "kfd patch: version 2.0"


def test_reset_queue_keeps_its_1_0_name() -> None:
    gpu = kfd.GpuKfdStatus(7, "gfx90a", 90010, ["reset_process", "reset_queues"], "hws", 1)
    st = kfd.KfdStatus(True, True, "2.0", {7: gpu})
    assert st.supports(7, "reset_queue") and st.supports(7, "reset_queues")
    assert st.any_kill  # a process reset ends the process's waves
    assert not st.supports(7, "kill_waves")  # no SQ kill with HWS


def _status(ops: list[str], sched: str, patch: bool = True) -> kfd.KfdStatus:
    gpu = kfd.GpuKfdStatus(7, "gfx90a", 90010, ops, sched, 1)
    return kfd.KfdStatus(True, patch, "2.0" if patch else None, {7: gpu} if patch else {})


def test_preemption_options_follow_the_scheduling_mode() -> None:
    hws = kfd.preemption_options(_status(["reset_process", "reset_queues"], "hws"), 7)
    assert [o.name for o in hws] == ["reset_queues", "reset_process", "queue_suspend"]
    assert "doorbell" in hws[0].mechanism and "PASID" in hws[1].mechanism
    assert "device-wide" in hws[2].expected_cost and not hws[2].needs_patch
    no_hws = kfd.preemption_options(
        _status(["kill_waves", "reset_process", "reset_queues"], "no_hws"), 7)
    assert [o.name for o in no_hws] == ["reset_queues", "kill_waves", "reset_process",
                                        "queue_suspend"]
    assert "HQD" in no_hws[0].mechanism
    assert "no other queue" in no_hws[-1].expected_cost
    assert not any(o.verified_on_hardware for o in hws + no_hws)


def test_preemption_options_without_patch(tmp_path: Path) -> None:
    param = tmp_path / "sched_policy"
    param.write_text("2\n")
    assert kfd.module_sched_policy(param) == "no_hws"
    assert kfd.module_sched_policy(tmp_path / "absent") == ""
    st = _status([], "", patch=False)
    opts = kfd.preemption_options(st, 7, sched_policy="no_hws")
    assert [o.name for o in opts] == ["queue_suspend"] and "HQD" in opts[0].mechanism
    # unknown policy: the costlier HWS label
    assert "device-wide" in kfd.preemption_options(st, 7, sched_policy="")[0].expected_cost
    assert kfd.preemption_options(kfd.KfdStatus(False, False, None), 7) == []


def test_require_gpu_needs_every_gpu_to_answer() -> None:
    ok = kfd.GpuKfdStatus(7, "gfx90a", 90010, ["reset_queues"], "hws", 1)
    bad = kfd.GpuKfdStatus(8, "gfx90a", 90010, error="query failed")
    assert kfd.status_names_every_gpu(kfd.KfdStatus(True, True, "2.0", {7: ok}))
    assert not kfd.status_names_every_gpu(kfd.KfdStatus(True, True, "2.0", {7: ok, 8: bad}))
    assert not kfd.status_names_every_gpu(kfd.KfdStatus(True, True, "2.0", {}))
    assert not kfd.status_names_every_gpu(kfd.KfdStatus(True, False, None, {7: ok}))


def test_module_cli_require_patch(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--require-patch"]) == 1
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--require-gpu"]) == 1
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--json"]) == 0
    assert kfd.main(["--dev", str(tmp_path / "kfd"), "--options",
                     "--sysfs", str(_fake_topology(tmp_path / "sys"))]) == 0
    assert '"patch_loaded": false' in capsys.readouterr().out
