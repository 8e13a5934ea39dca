"""Fixtures for the server tests: simulated model packages and a server on simulated GPUs in
this process (ServerThread). Everything listens on Unix sockets in private temporary
directories. Helpers shared with the client processes live in helpers.py."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

try:  # the generated code checks the grpcio and protobuf versions it needs
    import grpc  # noqa: F401

    from reef_rocm.proto import reef_pb2, reef_pb2_grpc  # noqa: F401
except Exception as _e:  # noqa: BLE001
    if os.environ.get("CI"):
        raise  # CI installs the server extra: a missing one must fail, not skip
    pytest.skip(
        f"no usable grpcio/protobuf ({_e}); pip install -e '.[server]'", allow_module_level=True
    )

from tests.server.helpers import build_packages, sim_devices  # noqa: E402


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> Path:
    return build_packages(tmp_path_factory.mktemp("server_pkgs") / "packages")


@pytest.fixture
def sock_path(tmp_path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    return d / "reef.sock"


@pytest.fixture
def serve(packages, sock_path):
    """``serve(devices=None, **ServeOptions fields)`` -> a started ServerThread."""
    from reef_rocm.server import ServeOptions, ServerThread

    started = []

    def start(devices=None, **kw):
        opts = ServeOptions(packages=packages, listen=f"unix:{sock_path}", **kw)
        srv = ServerThread(opts, devices if devices is not None else sim_devices()).start()
        started.append(srv)
        return srv

    yield start
    for s in started:
        s.stop()
