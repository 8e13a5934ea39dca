"""Load: 16 client processes for 30 s against one server on a simulated GPU (RT and BE models,
blocking and async inferences): no error, no wrong output, no lost or duplicated completion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from reef_rocm.client import Client
from tests.server.helpers import REPO, spawn_server

pytestmark = pytest.mark.slow

CLIENTS = 16
SECONDS = float(os.environ.get("REEF_TEST_LOAD_S", 30))


def test_sixteen_clients_for_thirty_seconds(packages, tmp_path):
    proc = spawn_server(packages, f"unix:{tmp_path}/s/reef.sock", log=tmp_path / "serve.log")
    try:
        with Client(proc.address, name="watcher") as w:
            mem0 = w.status()["gpus"][0]["memory_in_use_bytes"]
            kids = []
            for i in range(CLIENTS):  # 4 RT clients, 12 BE clients on two models
                pkg, prio = ("chain", "rt") if i < 4 else (("long", "chain")[i % 2], "be")
                kids.append(subprocess.Popen(
                    [sys.executable, "-m", "tests.server.client_proc", "load", proc.address,
                     str(packages), pkg, prio, str(SECONDS), str(i)],
                    cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                ))  # fmt: skip
            results = []
            for k in kids:
                out, err = k.communicate(timeout=SECONDS + 300)
                assert k.returncode == 0, err[-3000:]
                results.append(json.loads(out))
            for i, r in enumerate(results):
                assert r["errors"] == 0, (i, r["first_errors"])
                assert (r["wrong"], r["duplicates"], r["lost"]) == (0, 0, 0), (i, r)
                assert r["completed"] == r["sent"] > 0
            st = w.status()
            assert st["sessions"] == 1 and st["in_flight"] == 0 and st["shm_regions"] == 0
            assert st["gpus"][0]["memory_in_use_bytes"] == mem0
            total = sum(r["completed"] for r in results)
            print(f"{CLIENTS} clients, {SECONDS:.0f} s: {total} inferences, "
                  f"{st['gpus'][0]['preemptions']} preemptions")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
