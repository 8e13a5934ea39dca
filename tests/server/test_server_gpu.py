"""`reef serve` end to end on a real GPU with zoo models: an RT client (VGG-19) and a BE client
(ResNet-152) of one workload in separate sessions, every output checked against the package's
CPU reference, then a SIGTERM shutdown. Packages: $REEF_PACKAGES (default .carry/packages),
built on the CPU machine with ``reef compile --zoo --target cuda:sm_90 --out .carry/packages``."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from reef_rocm.package.files import ModelPackage, find_packages

pytestmark = pytest.mark.gpu

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = Path(os.environ.get("REEF_PACKAGES", ROOT / ".carry" / "packages"))
TARGET = os.environ.get("REEF_TARGET", "cuda:sm_90")


def _pkg(name: str) -> ModelPackage:
    for p in find_packages(PACKAGES, TARGET) if PACKAGES.is_dir() else []:
        pkg = ModelPackage.load(p)
        if pkg.name == name:
            return pkg
    pytest.skip(f"no {TARGET} package of {name} in {PACKAGES}")


def test_serve_zoo_models_on_the_gpu(tmp_path):
    from reef_rocm.gpu import probe

    backend = "cuda" if TARGET.startswith("cuda") else "hip"
    report = probe(backend)
    if not report.available:
        pytest.skip(f"no {backend} GPU: {report.reason}")
    from reef_rocm.client import Client
    from reef_rocm.sched import outputs_match
    from tests.server.helpers import spawn_server

    rt_pkg, be_pkg = _pkg("vgg19"), _pkg("resnet152")
    log = tmp_path / "serve.log"
    sock = tmp_path / "run" / "reef.sock"
    proc = spawn_server(PACKAGES, f"unix:{sock}", "--log-level", "debug", log=log,
                        backend=backend)  # fmt: skip
    try:
        with Client(proc.address, name="obstacle", workload="car") as rc, \
             Client(proc.address, name="fatigue", workload="car") as bc:  # fmt: skip
            rt = rc.load(zoo="vgg19", target=TARGET, priority="rt")
            be = bc.load(zoo="resnet152", target=TARGET, priority="be")
            assert rt.gpu == be.gpu == 0
            xr, xb = rt_pkg.reference_inputs(), be_pkg.reference_inputs()
            refr, refb = rt_pkg.reference_outputs(), be_pkg.reference_outputs()
            be_futs = [be.infer_async(xb) for _ in range(8)]
            for _ in range(8):  # RT while BE is queued: preempts it
                assert outputs_match(rt.infer(xr), refr)
            for f in be_futs:
                assert outputs_match(f.result(timeout=300), refb)
            st = rc.status()
            assert st["gpus"][0]["healthy"] and st["gpus"][0]["info"]["backend"] == backend
            print("preemptions", st["gpus"][0]["preemptions"], "last RT timing", rt.last_timing)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 0
    text = log.read_text()
    assert "server stopped" in text and not sock.exists()
