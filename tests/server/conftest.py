"""Fixtures for the server tests: simulated model packages, a server on simulated GPUs in
this process (ServerThread) or as a `reef serve` subprocess, raw gRPC stubs for protocol
tests. Everything listens on Unix sockets in private temporary directories."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
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

from reef_rocm.gpu import open_device  # noqa: E402
from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SIM = {"compute_units": 8}


def build_packages(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    build_sim_package(root / "chain", "chain", [
        SimKernelPlan("k0", grid=8, block=64, block_time_us=10, blocks_per_cu=1),
        SimKernelPlan("k1", grid=16, block=64, block_time_us=20, blocks_per_cu=1),
        SimKernelPlan("k2", grid=8, block=64, block_time_us=10, blocks_per_cu=1),
    ], elements=256, compute_units=8)  # fmt: skip
    build_sim_package(root / "long", "long", [
        SimKernelPlan(f"l{i}", grid=32, block=64, block_time_us=40, blocks_per_cu=1)
        for i in range(6)
    ], elements=4096, compute_units=8, seed=1)  # fmt: skip
    # a package for another GPU, and one that fails validation
    one = [SimKernelPlan("k0", grid=4, block=64, block_time_us=5)]
    build_sim_package(root / "other_arch", "other_arch", one, arch="sm_90")
    bad = root / "broken"
    build_sim_package(bad, "broken", one)
    (bad / "sim" / "plain.simmod.json").unlink()  # a variant binary missing
    return root


@pytest.fixture(scope="session")
def packages(tmp_path_factory) -> Path:
    return build_packages(tmp_path_factory.mktemp("server_pkgs") / "packages")


@pytest.fixture
def sock_path(tmp_path) -> Path:
    d = tmp_path / "run"
    d.mkdir(mode=0o700)
    os.chmod(d, 0o700)
    return d / "reef.sock"


def sim_devices(n: int = 1, **options):
    return [open_device("sim", i, **{**SIM, **options}) for i in range(n)]


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


def spawn_server(packages: Path, listen: str, *args: str, log: Path,
                 backend: str = "sim") -> subprocess.Popen:  # fmt: skip
    """`reef serve --backend sim` in a subprocess, stderr to ``log``; returns once it answers
    (bounded wait). ``listen`` "127.0.0.1:0" picks a port: ``proc.address`` has it."""
    sim = ["--sim-option", "compute_units=8"] if backend == "sim" else []
    cmd = [sys.executable, "-m", "reef_rocm.cli", "serve", "--packages", str(packages),
           "--backend", backend, *sim, "--listen", listen, *args]  # fmt: skip
    f = open(log, "w")  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=f, text=True)
    f.close()
    proc.address = wait_until_serving(proc, listen, log)
    return proc


def wait_until_serving(proc: subprocess.Popen, listen: str, log: Path,
                       timeout: float = 60.0) -> str:  # fmt: skip
    import grpc

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"reef serve exited with {proc.returncode}: {log.read_text()}")
        m = re.search(r"serving on (\S+)", log.read_text())
        target = listen if listen.startswith("unix:") else m.group(1) if m else None
        if target:  # a TCP port 0 is known from the log only
            ch = grpc.insecure_channel(target)
            try:
                grpc.channel_ready_future(ch).result(timeout=0.5)
                return target
            except grpc.FutureTimeoutError:
                pass
            finally:
                ch.close()
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"reef serve did not answer on {listen} within {timeout} s")


class Raw:
    """A session through the raw generated stub (what a non-Python client would send)."""

    def __init__(self, address: str, **connect) -> None:
        import grpc

        from reef_rocm.proto import SESSION_METADATA_KEY, reef_pb2, reef_pb2_grpc

        self.pb = reef_pb2
        self.channel = grpc.insecure_channel(str(address))
        self.stub = reef_pb2_grpc.ReefStub(self.channel)
        self.events = self.stub.Connect(reef_pb2.ConnectRequest(**connect))
        self.welcome = next(self.events).welcome
        self.md = ((SESSION_METADATA_KEY, self.welcome.token),)

    def __getattr__(self, rpc: str):
        method = getattr(self.stub, rpc)
        return lambda req, **kw: method(req, metadata=self.md, **kw)

    def close(self) -> None:
        self.events.cancel()
        self.channel.close()
