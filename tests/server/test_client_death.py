"""Clients SIGKILLed mid-inference: their work completes and is discarded, their models and
shared memory are released, and after 200 such deaths the server's device memory in use (the
simulated allocator's books, reported by Status) is back where it started."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from reef_rocm.client import Client
from tests.server.helpers import REPO, spawn_server

DEATHS = int(__import__("os").environ.get("REEF_TEST_DEATHS", 200))


def _reef_shm() -> set[str]:
    return {p.name for p in Path("/dev/shm").glob("reef-*")}


def _shm_mappings(pid: int) -> list[str]:
    return [ln for ln in Path(f"/proc/{pid}/maps").read_text().splitlines() if "/reef-" in ln]


def test_killed_clients_release_everything(packages, tmp_path):
    proc = spawn_server(packages, f"unix:{tmp_path}/s/reef.sock", log=tmp_path / "serve.log")
    try:
        with Client(proc.address, name="watcher") as w:
            base = w.status()
            mem0 = base["gpus"][0]["memory_in_use_bytes"]
            assert mem0 >= 0
            shm0 = _reef_shm()
            r = subprocess.run(
                [sys.executable, "-m", "tests.server.client_proc", "die", proc.address, "long",
                 str(DEATHS)],
                cwd=REPO, capture_output=True, text=True, timeout=600,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr
            res = json.loads(r.stdout)
            assert res == {"killed": DEATHS, "ready": DEATHS}, (res, r.stderr[-2000:])
            deadline = time.monotonic() + 60  # the server notices each death on its own
            while time.monotonic() < deadline:
                st = w.status()
                if st["sessions"] == 1 and st["in_flight"] == 0 and st["shm_regions"] == 0:
                    break
                time.sleep(0.1)
            assert (st["sessions"], st["in_flight"], st["shm_regions"]) == (1, 0, 0), st
            assert st["gpus"][0]["models"] == []
            assert st["gpus"][0]["memory_in_use_bytes"] == mem0
            assert _shm_mappings(proc.pid) == []
            assert _reef_shm() == shm0  # the clients left nothing in /dev/shm
            assert st["gpus"][0]["healthy"]
        log = (tmp_path / "serve.log").read_text()
        ends = re.findall(
            r"\(doomed-\d+\) ended: its stream ended.*; (\d+) inference\(s\) were in", log
        )
        assert len(ends) == DEATHS
        assert sum(int(n) > 0 for n in ends) > 0, "no client died with work in flight"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def test_death_during_blocking_infer_is_discarded(packages, tmp_path):
    """A client killed inside a blocking Infer: the inference still completes on the server
    (scheduler futures are never cancelled), its result is dropped, nothing leaks."""
    proc = spawn_server(packages, f"unix:{tmp_path}/s/reef.sock", log=tmp_path / "serve.log")
    code = (
        "import numpy as np, sys\n"
        "from reef_rocm.client import Client\n"
        "c = Client(sys.argv[1]); m = c.load('long', priority='be')\n"
        "x = np.ones(4096, np.float32)\n"
        "print('ready', flush=True)\n"
        "while True: m.infer(x)\n"
    )
    try:
        with Client(proc.address) as w:
            mem0 = w.status()["gpus"][0]["memory_in_use_bytes"]
            p = subprocess.Popen([sys.executable, "-c", code, proc.address], cwd=REPO,
                                 stdout=subprocess.PIPE, text=True)  # fmt: skip
            assert p.stdout.readline().strip() == "ready"
            time.sleep(0.2)  # inside an Infer with high probability
            p.kill()
            p.wait(timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and w.status()["sessions"] != 1:
                time.sleep(0.05)
            st = w.status()
            assert st["sessions"] == 1 and st["shm_regions"] == 0 and st["in_flight"] == 0
            assert st["gpus"][0]["memory_in_use_bytes"] == mem0
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
