"""Clear errors when libhsa-runtime64 or /dev/kfd is missing, and other refusals."""

from __future__ import annotations

import os

import pytest

from reef_rocm import gpu
from reef_rocm.errors import BackendUnavailable, UnsupportedError
from reef_rocm.rocm.hsa import _ffi
from reef_rocm.rocm.hsa.runtime import HsaRuntime


class FailingInit:
    """A library whose hsa_init fails the way ROCr's does without /dev/kfd."""

    path = "stub"

    def hsa_init(self):
        return _ffi.HSA_STATUS_ERROR_OUT_OF_RESOURCES

    def status_text(self, status):
        return f"HSA_STATUS_ERROR_OUT_OF_RESOURCES ({status:#x})"


def test_missing_library_is_named(monkeypatch):
    with pytest.raises(BackendUnavailable, match="libhsa-runtime64 not found.*install"):
        _ffi.load("/nonexistent/libhsa-runtime64.so.1")
    monkeypatch.setattr(_ffi, "LIBRARY_NAMES", ("libhsa-runtime64-does-not-exist.so",))
    monkeypatch.setattr(_ffi.ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(_ffi, "_loaded", None)
    with pytest.raises(BackendUnavailable, match="libhsa-runtime64 not found"):
        _ffi.library()
    report = gpu.probe("hsa")
    assert not report.available and "libhsa-runtime64 not found" in report.reason


def test_missing_dev_kfd_is_named(tmp_path):
    missing = str(tmp_path / "kfd")
    with pytest.raises(BackendUnavailable, match=f"hsa_init failed .*{missing} does not exist"):
        HsaRuntime(FailingInit(), dev_kfd=missing)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may open any file: no permission error")
def test_unreadable_dev_kfd_is_named(tmp_path):
    node = tmp_path / "kfd"
    node.write_text("")
    node.chmod(0)
    with pytest.raises(BackendUnavailable, match="render"):
        HsaRuntime(FailingInit(), dev_kfd=str(node))


def test_real_library_without_kfd():
    """Where the real libhsa-runtime64 is installed but there is no /dev/kfd (CI), opening
    the backend fails naming /dev/kfd, and probe says the same without raising."""
    if os.path.exists(_ffi.DEV_KFD):
        pytest.skip("this machine has /dev/kfd")
    try:
        _ffi.load()
    except BackendUnavailable:
        pytest.skip("libhsa-runtime64 not installed here (apt install libhsa-runtime64-1)")
    with pytest.raises(BackendUnavailable, match="/dev/kfd does not exist"):
        gpu.open_device("hsa")
    report = gpu.probe("hsa")
    assert not report.available
    assert "/dev/kfd does not exist" in report.reason and "library" in report.versions


def test_options_and_machine_checks():
    with pytest.raises(TypeError, match="queue_size"):
        gpu.open_device("hsa", launch_form="params")
    with pytest.raises(UnsupportedError, match="x86-64"):
        _ffi.check_store_ordering("aarch64")
    _ffi.check_store_ordering("x86_64")
