"""Helpers of the server tests (also imported by their client processes): simulated model
packages, simulated devices, a `reef serve` subprocess, raw gRPC sessions."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from reef_rocm.gpu import open_device
from reef_rocm.gpu.sim.packages import SimKernelPlan, build_sim_package

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


def sim_devices(n: int = 1, **options):
    return [open_device("sim", i, **{**SIM, **options}) for i in range(n)]


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
