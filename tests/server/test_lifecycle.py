"""`reef serve` as a process: private Unix socket, TCP on loopback when asked, --log-level,
and a graceful SIGINT/SIGTERM shutdown (in-flight work finished or cancelled, every device
buffer freed, socket and the directory it made removed)."""

from __future__ import annotations

import signal
import stat
import subprocess

import grpc
import numpy as np
import pytest

from reef_rocm.client import Client, RemoteError
from tests.server.helpers import spawn_server


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_shuts_down_cleanly(packages, tmp_path, sig):
    sock = tmp_path / "made-by-server" / "reef.sock"  # the server creates the directory
    log = tmp_path / "serve.log"
    proc = spawn_server(packages, f"unix:{sock}", "--log-level", "debug", log=log)
    try:
        assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
        assert stat.S_IMODE(sock.stat().st_mode) == 0o600
        c = Client(f"unix:{sock}", name="busy")
        m = c.load("long", priority="be")
        futs = [m.infer_async(np.ones(4096, np.float32)) for _ in range(16)]
        proc.send_signal(sig)
        assert proc.wait(timeout=60) == 0
        done = failed = 0
        for f in futs:  # every request is answered: finished, or failed with UNAVAILABLE
            try:
                f.result(timeout=30)
                done += 1
            except RemoteError as e:
                assert e.code == grpc.StatusCode.UNAVAILABLE
                failed += 1
        assert done + failed == 16
        c.close()
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert f"{signal.Signals(sig).name}: shutting down" in text
    assert "GPU 0 closed; device memory in use 0 B" in text  # the sim allocator's books
    assert "server stopped" in text
    assert not sock.exists() and not sock.parent.exists()


def test_tcp_listens_on_loopback_and_log_level_is_honoured(packages, tmp_path):
    log = tmp_path / "serve.log"
    proc = spawn_server(packages, "0", "--log-level", "info", log=log)  # PORT alone: loopback
    try:
        assert proc.address.startswith("127.0.0.1:")
        with Client(proc.address) as c:  # loopback TCP: the client still uses shared memory
            assert c._use_shm
            with c.load("chain", priority="rt") as m:
                assert m.infer(np.zeros(256, np.float32))[0].shape == (256,)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "serving on 127.0.0.1:" in text and " DEBUG " not in text

    log2 = tmp_path / "quiet.log"
    sock = tmp_path / "q" / "reef.sock"
    proc = spawn_server(packages, f"unix:{sock}", "--log-level", "warning", log=log2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    assert " INFO " not in log2.read_text()


def test_refuses_an_open_socket_directory_and_a_live_socket(packages, tmp_path):
    import os
    import sys

    from tests.server.helpers import REPO

    open_dir = tmp_path / "open"
    open_dir.mkdir()
    os.chmod(open_dir, 0o755)
    cmd = [sys.executable, "-m", "reef_rocm.cli", "serve", "--packages", str(packages),
           "--backend", "sim", "--listen", f"unix:{open_dir}/reef.sock"]  # fmt: skip
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "open to other users" in r.stderr

    sock = tmp_path / "p" / "reef.sock"
    proc = spawn_server(packages, f"unix:{sock}", log=tmp_path / "a.log")
    try:
        cmd[-1] = f"unix:{sock}"
        r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and "already listening" in r.stderr
        assert sock.exists()  # the second server did not take the first one's socket
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
